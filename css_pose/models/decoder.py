"""Image decoder of CSS: x_hat = D(z_v, z_i).

After Honari et al., "Temporal Representation Learning on Monocular Videos for 3D Human Pose
Estimation", TPAMI 2022: reconstructing frame t from z_v(t) and z_i(s) of another frame s of the
same video forces z_i to hold only what is constant in the video.
"""

from __future__ import annotations

import torch
from torch import nn


class Decoder(nn.Module):
    """[z_v, z_i] -> Linear -> (C0, m, m) -> k x (upsample x2, conv3x3, BN, ReLU) -> conv3x3 ->
    sigmoid, with ``out_size = m * 2**k``. Channels halve at each doubling, from ``base_channels``
    down to at least ``min_channels`` (256 -> 128 -> 64 -> 32 -> 16 -> 16 for out_size 128).

    Args:
        dim_v: size of z_v.
        dim_i: size of z_i.
        out_size: output image side in pixels; must be ``min_size * 2**k`` with k >= 0.
        base_channels: channels C0 of the first (min_size x min_size) map.
        min_size: side of the first map.
        min_channels: floor on the channel count of the upsampling layers.
    """

    def __init__(
        self,
        dim_v: int,
        dim_i: int,
        out_size: int = 128,
        base_channels: int = 256,
        min_size: int = 4,
        min_channels: int = 16,
    ):
        super().__init__()
        if dim_v < 1 or dim_i < 1:
            raise ValueError(f"dim_v and dim_i must be >= 1, got {dim_v}, {dim_i}")
        if base_channels < 1 or min_channels < 1 or min_size < 1:
            raise ValueError("base_channels, min_channels and min_size must be >= 1")
        n_up = (out_size // min_size).bit_length() - 1
        if out_size < min_size or min_size * 2**n_up != out_size:
            raise ValueError(
                f"out_size={out_size} must be min_size * 2**k for an integer k >= 0 "
                f"(min_size={min_size}: {min_size}, {2 * min_size}, {4 * min_size}, ...)"
            )
        self.dim_v, self.dim_i, self.out_size = dim_v, dim_i, out_size
        self.base_channels, self.min_size = base_channels, min_size
        self.fc = nn.Linear(dim_v + dim_i, base_channels * min_size * min_size, bias=False)
        self.fc_norm = nn.Sequential(nn.BatchNorm2d(base_channels), nn.ReLU(inplace=True))
        layers: list[nn.Module] = []
        c_in = base_channels
        for _ in range(n_up):
            c_out = max(c_in // 2, min_channels)
            layers += [
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            ]
            c_in = c_out
        layers += [nn.Conv2d(c_in, 3, 3, padding=1), nn.Sigmoid()]
        self.up = nn.Sequential(*layers)

    def forward(self, z_v: torch.Tensor, z_i: torch.Tensor) -> torch.Tensor:
        """z_v (B, dim_v), z_i (B, dim_i) -> images (B, 3, out_size, out_size) in [0, 1]."""
        ok_v, ok_i = z_v.shape[1:] == (self.dim_v,), z_i.shape[1:] == (self.dim_i,)
        if not (ok_v and ok_i and z_v.shape[0] == z_i.shape[0]):
            raise ValueError(
                f"expected z_v (B, {self.dim_v}) and z_i (B, {self.dim_i}), "
                f"got {tuple(z_v.shape)} and {tuple(z_i.shape)}"
            )
        x = self.fc(torch.cat([z_v, z_i], dim=1))
        x = x.view(-1, self.base_channels, self.min_size, self.min_size)  # (B, C0, m, m)
        return self.up(self.fc_norm(x))
