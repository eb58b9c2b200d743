"""Direct coordinate regression (the baseline of shared/methods.md section 2): global average
pooling and a small MLP straight to (J, 2) crop-normalised coordinates, which
:class:`css_pose.codecs.RegressionCodec` scales to pixels.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from einops import reduce
from torch import nn

from css_pose.skeleton import NUM_JOINTS


class RegressionHead(nn.Module):
    """Encoder stage maps -> crop-normalised coordinates (B, J, 2).

    Global average pooling -> Linear -> ReLU -> Linear; the output bias starts at the crop centre.

    Args:
        in_channels: channels of the encoder's last map.
        num_joints: J.
        hidden: MLP hidden width.
    """

    def __init__(self, in_channels: int, num_joints: int = NUM_JOINTS, hidden: int = 256):
        super().__init__()
        if min(in_channels, num_joints, hidden) < 1:
            raise ValueError("in_channels, num_joints and hidden must be >= 1")
        self.num_joints = num_joints
        self.mlp = nn.Sequential(
            nn.Linear(in_channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, num_joints * 2)
        )
        nn.init.normal_(self.mlp[-1].weight, std=1e-3)
        nn.init.constant_(self.mlp[-1].bias, 0.5)

    def forward(self, features: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        """features: encoder stage maps, the last (B, in_channels, h, w) -> ``coords`` (B, J, 2)."""
        pooled = reduce(features[-1], "b c h w -> b c", "mean")
        return {"coords": self.mlp(pooled).view(-1, self.num_joints, 2)}
