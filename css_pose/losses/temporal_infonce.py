"""Temporal InfoNCE with same-video hard negatives and cross-video negatives.

Temporal contrastive term of CSS (Honari et al., "Temporal Representation Learning on Monocular
Videos for 3D Human Pose Estimation", TPAMI 2022), in the InfoNCE / NT-Xent form of SimCLR (Chen et
al., "A Simple Framework for Contrastive Learning of Visual Representations", ICML 2020).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from lightly.utils import dist
from torch import nn


class TemporalInfoNCE(nn.Module):
    """InfoNCE where near frames of a video are positives and far frames and other videos are not.

    With cosine similarity s(u, v) = <u, v> / (|u| |v|) and temperature tau, for sample b with
    anchor a_b, positives p_b1..p_bP and same-video negatives n_b1..n_bK:

        L_bp = -log( exp(s(a_b, p_bp) / tau) / (exp(s(a_b, p_bp) / tau) + sum_{x in N_b} exp(s(a_b, x) / tau)) )
        N_b  = {n_b1..n_bK} + {every frame (anchor, positives, negatives) of every sample c in the
                batch with video_ids[c] != video_ids[b]}
        L    = mean over b and p of L_bp

    Frames of other samples from the same video as b are masked out (they are neither positives
    nor negatives). With ``gather_distributed=True`` and torch.distributed running, the
    cross-video frames (and video ids) of all ranks are gathered with gradient, so the mean of the
    per-rank losses equals the loss on the concatenated batch; every rank must use the same
    batch size. Without torch.distributed the flag has no effect.

    Args:
        temperature: tau > 0.
        gather_distributed: gather cross-video negatives from all ranks.
        cross_video: use frames of other videos as negatives. Off, only the same-video negatives
            remain: easy cross-video negatives can be told apart by appearance alone, which pulls
            appearance into a latent meant to carry pose.
    """

    def __init__(
        self, temperature: float = 0.1, gather_distributed: bool = False, cross_video: bool = True
    ):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature
        self.gather_distributed = gather_distributed
        self.cross_video = cross_video

    def forward(
        self,
        anchor: torch.Tensor,
        positives: torch.Tensor,
        negatives: torch.Tensor,
        video_ids: torch.Tensor,
    ) -> torch.Tensor:
        """Args:
            anchor: (B, D).
            positives: (B, P, D), P >= 1.
            negatives: (B, K, D), same-video hard negatives (K may be 0).
            video_ids: (B,) integer video id of each sample.
        Returns:
            scalar loss.
        """
        b, d = anchor.shape
        if positives.ndim != 3 or positives.shape[0] != b or positives.shape[2] != d:
            raise ValueError(f"positives must be (B, P, D), got {tuple(positives.shape)}")
        if positives.shape[1] < 1:
            raise ValueError("need at least one positive per anchor")
        if negatives.ndim != 3 or negatives.shape[0] != b or negatives.shape[2] != d:
            raise ValueError(f"negatives must be (B, K, D), got {tuple(negatives.shape)}")
        if video_ids.shape != (b,):
            raise ValueError(f"video_ids must be (B,) = ({b},), got {tuple(video_ids.shape)}")

        anchor = F.normalize(anchor, dim=-1)
        positives = F.normalize(positives, dim=-1)
        negatives = F.normalize(negatives, dim=-1)
        frames = torch.cat([anchor[:, None], positives, negatives], dim=1)  # (B, F, D)
        all_frames, all_ids = frames, video_ids
        if self.cross_video and self.gather_distributed and dist.world_size() > 1:
            all_frames = torch.cat(dist.gather(frames), dim=0)  # (W B, F, D)
            all_ids = torch.cat(dist.gather(video_ids), dim=0)  # (W B,)

        pos = torch.einsum("bd,bpd->bp", anchor, positives) / self.temperature  # (B, P)
        neg = torch.einsum("bd,bkd->bk", anchor, negatives) / self.temperature  # (B, K)
        cross = torch.einsum("bd,cfd->bcf", anchor, all_frames) / self.temperature  # (B, C, F)
        same_video = video_ids[:, None] == all_ids[None, :]  # (B, C), includes the sample itself
        cross = cross.masked_fill(same_video[:, :, None], float("-inf"))
        if not self.cross_video and neg.shape[1] == 0:
            raise ValueError("cross_video=False needs same-video negatives (K >= 1)")
        neg_all = (
            torch.cat([neg, rearrange(cross, "b c f -> b (c f)")], dim=1)
            if self.cross_video
            else neg
        )
        # -log(e^pos / (e^pos + sum e^neg)) = logaddexp(pos, logsumexp(neg)) - pos
        neg_lse = torch.logsumexp(neg_all, dim=1, keepdim=True)  # (B, 1)
        return (torch.logaddexp(pos, neg_lse) - pos).mean()
