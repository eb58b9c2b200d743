"""Invariance of the time-invariant latent z_i across the frames of one video.

Time-invariant term of CSS (Honari et al., "Temporal Representation Learning on Monocular Videos for
3D Human Pose Estimation", TPAMI 2022); the optional contrast is InfoNCE as in SimCLR (Chen et al.,
"A Simple Framework for Contrastive Learning of Visual Representations", ICML 2020).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn

MODES = ("cosine", "l2")


class InvarianceLoss(nn.Module):
    """Pull the z_i of the N frames of each sample (one video) to their centroid.

    Agreement term, for z (B, N, D):

        cosine: u_bn = z_bn / |z_bn|,  c_b = mean_n u_bn,  L_agree = mean_{b,n} (1 - cos(u_bn, c_b))
        l2:     c_b = mean_n z_bn,     L_agree = mean_{b,n} |z_bn - c_b|^2   (squared, summed over D)

    With ``contrast_temperature`` tau set, a cross-video InfoNCE term is added (weight 1). Over all
    M = B N frames with cosine similarity s and video ids v: for every ordered pair (i, j), i != j,
    of frames of the same video (positives),

        L_ij = -log( exp(s_ij / tau) / (exp(s_ij / tau) + sum_{l: v_l != v_i} exp(s_il / tau)) )

    and L_contrast = mean over those pairs. Samples sharing a video id count as the same video.

    Args:
        mode: ``cosine`` or ``l2``.
        contrast_temperature: tau > 0 to add the contrast term, or ``None``.
    """

    def __init__(self, mode: str = "cosine", contrast_temperature: float | None = None):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if contrast_temperature is not None and contrast_temperature <= 0:
            raise ValueError(
                f"contrast_temperature must be > 0 or None, got {contrast_temperature}"
            )
        self.mode = mode
        self.contrast_temperature = contrast_temperature

    def agreement(self, z: torch.Tensor) -> torch.Tensor:
        """(B, N, D) latents of N >= 2 frames per sample -> scalar agreement term."""
        if z.ndim != 3 or z.shape[1] < 2:
            raise ValueError(f"expected z (B, N >= 2, D), got {tuple(z.shape)}")
        if self.mode == "cosine":
            u = F.normalize(z, dim=-1)
            centroid = u.mean(dim=1, keepdim=True)  # (B, 1, D)
            return (1 - F.cosine_similarity(u, centroid, dim=-1)).mean()
        centroid = z.mean(dim=1, keepdim=True)  # (B, 1, D)
        return (z - centroid).pow(2).sum(dim=-1).mean()

    def contrast(self, z: torch.Tensor, video_ids: torch.Tensor) -> torch.Tensor:
        """z (B, N, D) and video_ids (B,) -> scalar cross-video InfoNCE term."""
        if self.contrast_temperature is None:
            raise RuntimeError("contrast() needs contrast_temperature")
        b, n, _ = z.shape
        if video_ids.shape != (b,):
            raise ValueError(f"video_ids must be (B,) = ({b},), got {tuple(video_ids.shape)}")
        u = F.normalize(rearrange(z, "b n d -> (b n) d"), dim=-1)  # (M, D)
        ids = repeat(video_ids, "b -> (b n)", n=n)  # (M,)
        sim = torch.einsum("id,jd->ij", u, u) / self.contrast_temperature  # (M, M)
        same = ids[:, None] == ids[None, :]
        positive = same & ~torch.eye(b * n, dtype=torch.bool, device=z.device)
        neg_lse = torch.logsumexp(sim.masked_fill(same, float("-inf")), dim=1, keepdim=True)
        pair_loss = torch.logaddexp(sim, neg_lse) - sim  # (M, M)
        return pair_loss[positive].mean()

    def forward(self, z: torch.Tensor, video_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Args:
            z: (B, N, D) time-invariant latents of N >= 2 frames of one video per sample.
            video_ids: (B,) integer video ids; required when ``contrast_temperature`` is set.
        Returns:
            scalar loss: L_agree (+ L_contrast).
        """
        loss = self.agreement(z)
        if self.contrast_temperature is not None:
            if video_ids is None:
                raise ValueError("video_ids are required when contrast_temperature is set")
            loss = loss + self.contrast(z, video_ids)
        return loss
