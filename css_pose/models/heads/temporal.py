"""Temporal pooling of flow-aligned heatmaps (Pfister et al., "Flowing ConvNets for Human Pose
Estimation in Videos", ICCV 2015; shared/methods.md section 2).

The heatmaps of frames t - n .. t + n are first warped onto frame t (:func:`css_pose.flow.warp`
with :func:`css_pose.flow.clip_flows`), giving aligned heatmaps (B, T, J, h, w), T = 2n + 1, with
the centre frame at index n. These modules pool them into frame t's heatmaps (B, J, h, w).
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from css_pose.skeleton import NUM_JOINTS


def _check_aligned(aligned: torch.Tensor, num_frames: int | None, num_joints: int | None) -> None:
    """Raise unless ``aligned`` is (B, T, J, h, w), with the given T and J where they are set."""
    t = "T" if num_frames is None else f"T={num_frames}"
    j = "J" if num_joints is None else f"J={num_joints}"
    if (
        aligned.ndim != 5
        or (num_frames is not None and aligned.shape[1] != num_frames)
        or (num_joints is not None and aligned.shape[2] != num_joints)
    ):
        raise ValueError(
            f"aligned heatmaps must be (B, {t}, {j}, h, w), got {tuple(aligned.shape)}; "
            "stack the warped frames on dim 1"
        )


class ParametricPooling(nn.Module):
    """Learned per-joint weighting of T aligned heatmaps: (B, T, J, h, w) -> (B, J, h, w).

    ``out[b, j] = sum_t weight[j, t] * aligned[b, t, j] + bias[j]``, as a grouped 1x1 convolution
    (groups = J over J * T channels, each group the T frames of one joint). The weights start at
    ``centre_init`` on the centre frame and ``neighbour_init`` on every other frame, the bias at
    0, so with the defaults (1, 0) the output at initialisation is exactly the centre frame's
    heatmaps (in fp32; a TF32 convolution on a GPU rounds them).

    Args:
        num_frames: T = 2n + 1, odd; the centre frame is index n.
        num_joints: J.
        centre_init: initial weight of the centre frame.
        neighbour_init: initial weight of each other frame.
        bias: learn a per-joint bias.
    """

    def __init__(
        self,
        num_frames: int,
        num_joints: int = NUM_JOINTS,
        centre_init: float = 1.0,
        neighbour_init: float = 0.0,
        bias: bool = True,
    ):
        super().__init__()
        if num_frames < 1 or num_frames % 2 == 0:
            raise ValueError(f"num_frames must be odd (2n + 1 around the centre), got {num_frames}")
        if num_joints < 1:
            raise ValueError(f"num_joints must be >= 1, got {num_joints}")
        self.num_frames = num_frames
        self.num_joints = num_joints
        self.centre = num_frames // 2
        self.conv = nn.Conv2d(num_joints * num_frames, num_joints, 1, groups=num_joints, bias=bias)
        with torch.no_grad():
            self.conv.weight.fill_(neighbour_init)  # (J, T, 1, 1)
            self.conv.weight[:, self.centre] = centre_init
            if bias:
                self.conv.bias.zero_()

    def forward(self, aligned: torch.Tensor) -> torch.Tensor:
        """aligned (B, T, J, h, w) heatmaps warped onto the centre frame -> (B, J, h, w)."""
        _check_aligned(aligned, self.num_frames, self.num_joints)
        return self.conv(rearrange(aligned, "b t j h w -> b (j t) h w"))


def average_pooling(aligned: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of T aligned heatmaps over the frames whose sample is valid (the unlearned baseline).

    Args:
        aligned: (B, T, J, h, w) heatmaps warped onto the centre frame.
        valid: optional (B, T, 1, h, w) or (B, T, J, h, w) bool, e.g. :func:`css_pose.flow.warp`'s
            mask stacked over frames; False samples (out of their frame) are left out of the mean.
            A cell no frame covers is 0.
    Returns:
        (B, J, h, w).
    """
    _check_aligned(aligned, None, None)
    if valid is None:
        return aligned.mean(dim=1)
    batch, frames, joints, height, width = aligned.shape
    if valid.dtype != torch.bool or valid.shape not in (
        (batch, frames, 1, height, width),
        aligned.shape,
    ):
        raise ValueError(
            f"valid must be bool (B, T, 1, h, w) = {(batch, frames, 1, height, width)} or "
            f"(B, T, J, h, w), got {tuple(valid.shape)} {valid.dtype}"
        )
    total = torch.where(valid, aligned, torch.zeros_like(aligned)).sum(dim=1)
    count = valid.sum(dim=1).clamp_min(1).to(aligned.dtype)
    return total / count
