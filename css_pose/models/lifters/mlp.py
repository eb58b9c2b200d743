"""Martinez-style single-frame lifter (Martinez et al., "A simple yet effective baseline for 3d
human pose estimation", ICCV 2017)."""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from css_pose.skeleton import NUM_JOINTS, ROOT


class _ResidualBlock(nn.Module):
    """x + 2 x (Linear -> BN -> ReLU -> Dropout)."""

    def __init__(self, width: int, dropout: float):
        super().__init__()
        layers = []
        for _ in range(2):
            layers += [
                nn.Linear(width, width),
                nn.BatchNorm1d(width),
                nn.ReLU(),
                nn.Dropout(dropout),
            ]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class MLPLifter(nn.Module):
    """2D keypoints of ``frames`` frames (flattened) -> 3D pose of the centre frame.

    Input (B, frames, J, 2) normalised 2D; output (B, J, 3) root-relative (root joint exactly 0),
    in the units of the training targets (metres in css_pose.lifting). Defaults are the paper's
    (width 1024, 2 residual blocks, dropout 0.5); ``frames=1`` is the paper's model.
    """

    def __init__(
        self,
        frames: int = 1,
        width: int = 1024,
        blocks: int = 2,
        dropout: float = 0.5,
        joints: int = NUM_JOINTS,
    ):
        super().__init__()
        if frames < 1 or frames % 2 == 0:
            raise ValueError(f"frames must be odd and >= 1, got {frames}")
        self.frames, self.joints = frames, joints
        self.inp = nn.Sequential(
            nn.Linear(frames * joints * 2, width),
            nn.BatchNorm1d(width),
            nn.ReLU(),
            nn.Dropout(dropout),
        )
        self.blocks = nn.Sequential(*(_ResidualBlock(width, dropout) for _ in range(blocks)))
        self.out = nn.Linear(width, joints * 3)

    def receptive_field(self) -> int:
        return self.frames

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1:] != (self.frames, self.joints, 2):
            raise ValueError(f"expected (B, {self.frames}, {self.joints}, 2), got {tuple(x.shape)}")
        y = self.out(self.blocks(self.inp(rearrange(x, "b t j d -> b (t j d)"))))
        y = rearrange(y, "b (j d) -> b j d", d=3)
        return y - y[:, ROOT : ROOT + 1]
