"""Random rotation, zoom and shift of a batch of labelled crops with their keypoints (torch), the
geometric augmentation of the 2D heads (``augment.*`` of configs/head.yaml).
"""

from __future__ import annotations

import torch
from torch import nn


def random_affine(
    frames: torch.Tensor,
    keypoints: torch.Tensor,
    generator: torch.Generator,
    rotate_deg: float,
    scale: float,
    translate: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate, scale and shift each crop at random about its centre, and its keypoints with it.

    Args:
        frames: (B, 3, S, S) crops in [0, 1].
        keypoints: (B, J, 2) crop px (pixel centres at integer coordinates, as the loaders give).
        rotate_deg: angles drawn from U(-rotate_deg, rotate_deg) degrees.
        scale: zoom factors drawn from U(1 - scale, 1 + scale) (> 1 enlarges the person).
        translate: shifts drawn from U(-translate, translate) x the crop side, per axis.

    Returns:
        (frames, keypoints) transformed; pixels brought in from outside the crop repeat its
        border. Keypoints pushed out of the crop keep their coordinates: the codecs give them zero
        weight.
    """
    b, _, h, w = frames.shape
    if h != w:
        raise ValueError(f"random_affine needs square crops, got {h}x{w}")

    def draw(half_width: float, size: tuple[int, ...]) -> torch.Tensor:
        return (torch.rand(size, generator=generator) * 2 - 1) * half_width

    angle = torch.deg2rad(draw(rotate_deg, (b,)))
    zoom = 1 + draw(scale, (b,))
    shift = draw(2 * translate, (b, 2))  # normalised units: the crop spans [-1, 1]
    cos, sin = torch.cos(angle), torch.sin(angle)
    # Forward map in normalised coordinates u' = zoom * R u + shift (u = (2x + 1) / S - 1).
    rot = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
    fwd = zoom.view(b, 1, 1) * rot
    # affine_grid wants the inverse: for every output pixel, where to read in the input.
    inv = rot.transpose(1, 2) / zoom.view(b, 1, 1)
    theta = torch.cat([inv, -(inv @ shift.unsqueeze(-1))], dim=2).to(frames)
    grid = nn.functional.affine_grid(theta, list(frames.shape), align_corners=False)
    out = nn.functional.grid_sample(
        frames, grid, mode="bilinear", padding_mode="border", align_corners=False
    )
    u = (2 * keypoints + 1) / w - 1
    u = u @ fwd.transpose(1, 2).to(u) + shift.unsqueeze(1).to(u)
    return out, ((u + 1) * w - 1) / 2
