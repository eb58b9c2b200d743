"""Latent heads of CSS: a time-variant z_v (pose) and a time-invariant z_i (appearance).

After Honari et al., "Temporal Representation Learning on Monocular Videos for 3D Human Pose
Estimation", TPAMI 2022.
"""

from __future__ import annotations

import torch
from torch import nn


def _mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(in_dim, hidden, bias=False),
        nn.BatchNorm1d(hidden),
        nn.ReLU(inplace=True),
        nn.Linear(hidden, out_dim),
    )


class LatentHeads(nn.Module):
    """Two MLPs (Linear-BN-ReLU-Linear) on the encoder features: -> z_v and -> z_i.

    z_i always reads the globally pooled features h: appearance does not depend on where things
    are. With ``spatial_v=True`` z_v reads the whole flattened feature map instead, keeping where
    each limb is, which pooling discards.

    Args:
        in_channels: channels C of the encoder feature map.
        dim_v: size of the time-variant latent z_v.
        dim_i: size of the time-invariant latent z_i.
        hidden: hidden width of both MLPs; ``None`` uses ``in_channels``.
        spatial_v: z_v from the flattened (C, h, w) map; needs ``feature_size`` (h = w).
        feature_size: side of the encoder feature map (``Encoder.feature_size``).

    In training mode BatchNorm needs more than one sample per batch.
    """

    def __init__(
        self,
        in_channels: int,
        dim_v: int = 256,
        dim_i: int = 128,
        hidden: int | None = None,
        spatial_v: bool = False,
        feature_size: int | None = None,
    ):
        super().__init__()
        hidden = in_channels if hidden is None else hidden
        for name, value in (
            ("in_channels", in_channels),
            ("dim_v", dim_v),
            ("dim_i", dim_i),
            ("hidden", hidden),
        ):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if spatial_v and not feature_size:
            raise ValueError("spatial_v=True needs feature_size (the encoder map side)")
        self.dim_v, self.dim_i, self.spatial_v = dim_v, dim_i, spatial_v
        v_in = in_channels * feature_size**2 if spatial_v else in_channels
        self.head_v = _mlp(v_in, hidden, dim_v)
        self.head_i = _mlp(in_channels, hidden, dim_i)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, C, h, w) feature map -> z_v (B, dim_v), z_i (B, dim_i), pooled h (B, C)."""
        if features.ndim != 4:
            raise ValueError(f"expected a feature map (B, C, h, w), got {tuple(features.shape)}")
        h = features.mean(dim=(2, 3))  # (B, C)
        z_v = self.head_v(features.flatten(1) if self.spatial_v else h)  # (B, C h w) or (B, C)
        return z_v, self.head_i(h), h
