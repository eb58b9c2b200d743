"""VideoPose3D-style temporal ConvNet lifter (Pavllo et al., "3D human pose estimation in video with
temporal convolutions and semi-supervised training", CVPR 2019)."""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from css_pose.models.lifters.base import WindowLifter
from css_pose.skeleton import NUM_JOINTS, ROOT


class TemporalConvLifter(WindowLifter):
    """Dilated temporal convolutions over all joints' 2D -> 3D pose of the centre frame.

    Block i convolves with width ``filter_widths[i]`` at dilation prod(filter_widths[:i]), so the
    receptive field is prod(filter_widths) (3,3,3,3 -> 81; [3]*n -> 3^n; [1,1] -> 1). Because only
    the centre frame is predicted, each dilated conv is computed as a conv with stride = width
    (VideoPose3D's single-frame training model): for one window it gives exactly the dilated
    conv's output at the centre, without computing the frames nobody reads.

    Input (B, T, J, 2) normalised 2D with T = receptive_field(); output (B, J, 3) root-relative
    (root exactly 0) in the units of the targets.
    """

    def __init__(
        self,
        filter_widths: list[int] | tuple[int, ...] = (3, 3, 3),
        channels: int = 1024,
        dropout: float = 0.25,
        joints: int = NUM_JOINTS,
    ):
        super().__init__(filter_widths, joints)
        w0 = filter_widths[0]
        self.expand = nn.Sequential(
            nn.Conv1d(joints * 2, channels, w0, stride=w0, bias=False),
            nn.BatchNorm1d(channels),
            nn.ReLU(),
            nn.Dropout(dropout),
        )
        self.layers = nn.ModuleList(
            nn.Sequential(
                nn.Conv1d(channels, channels, w, stride=w, bias=False),
                nn.BatchNorm1d(channels),
                nn.ReLU(),
                nn.Dropout(dropout),
                nn.Conv1d(channels, channels, 1, bias=False),
                nn.BatchNorm1d(channels),
                nn.ReLU(),
                nn.Dropout(dropout),
            )
            for w in filter_widths[1:]
        )
        self.shrink = nn.Conv1d(channels, joints * 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        h = self.expand(rearrange(x, "b t j d -> b (j d) t"))
        for w, layer in zip(self.filter_widths[1:], self.layers):
            h = h[:, :, w // 2 :: w] + layer(h)  # residual: the centre frame of each group
        y = rearrange(self.shrink(h), "b (j d) 1 -> b j d", d=3)
        return y - y[:, ROOT : ROOT + 1]
