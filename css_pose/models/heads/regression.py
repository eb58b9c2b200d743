"""Direct coordinate regression (the baseline of shared/methods.md section 2): the encoder's last
map, globally averaged (``pool="mean"``) or flattened (``pool="flatten"``, DeepPose style: the
fully connected layer sees where in the map each feature is), and a small MLP straight to (J, 2)
crop-normalised coordinates, which :class:`css_pose.codecs.RegressionCodec` scales to pixels.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from einops import reduce
from torch import nn

from css_pose.skeleton import NUM_JOINTS


class RegressionHead(nn.Module):
    """Encoder stage maps -> crop-normalised coordinates (B, J, 2).

    Global average pooling (or flattening) -> Linear -> ReLU -> Linear; the output bias starts at
    the crop centre.

    Args:
        in_channels: channels of the encoder's last map.
        num_joints: J.
        hidden: MLP hidden width.
        pool: "mean" (global average pooling) or "flatten" (the whole map, C x h x w inputs).
        map_size: (h, w) of the last map; required for ``pool="flatten"``.
    """

    def __init__(
        self,
        in_channels: int,
        num_joints: int = NUM_JOINTS,
        hidden: int = 256,
        pool: str = "mean",
        map_size: tuple[int, int] | None = None,
    ):
        super().__init__()
        if min(in_channels, num_joints, hidden) < 1:
            raise ValueError("in_channels, num_joints and hidden must be >= 1")
        if pool not in ("mean", "flatten"):
            raise ValueError(f"pool={pool!r}: use 'mean' or 'flatten'")
        if pool == "flatten" and (map_size is None or min(map_size) < 1):
            raise ValueError("pool='flatten' needs map_size=(h, w) of the encoder's last map")
        self.num_joints, self.pool = num_joints, pool
        self.map_size = tuple(map_size) if pool == "flatten" else None
        inputs = in_channels * (map_size[0] * map_size[1] if pool == "flatten" else 1)
        self.mlp = nn.Sequential(
            nn.Linear(inputs, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, num_joints * 2)
        )
        nn.init.normal_(self.mlp[-1].weight, std=1e-3)
        nn.init.constant_(self.mlp[-1].bias, 0.5)

    def forward(self, features: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        """features: encoder stage maps, the last (B, in_channels, h, w) -> ``coords`` (B, J, 2)."""
        last = features[-1]
        if self.pool == "mean":
            pooled = reduce(last, "b c h w -> b c", "mean")
        else:
            if tuple(last.shape[-2:]) != self.map_size:
                raise ValueError(
                    f"regression head built for {self.map_size} maps, got {tuple(last.shape[-2:])}"
                )
            pooled = last.flatten(1)
        return {"coords": self.mlp(pooled).view(-1, self.num_joints, 2)}
