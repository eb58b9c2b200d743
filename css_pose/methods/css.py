"""CSS-style pretraining: disentangled time-variant / time-invariant latents.

Design (shared/methods.md section 1), after Honari et al., "Temporal Representation Learning on
Monocular Videos for 3D Human Pose Estimation", TPAMI 2022:

- encoder E -> pooled features h -> z_v (time-variant, pose) and z_i (time-invariant, appearance);
- temporal InfoNCE on a projection of z_v: near frames positive, far frames of the same video and all
  frames of other videos negative;
- gradual transition on z_v: similarity falls as the temporal distance grows;
- invariance on z_i: every frame of one video agrees;
- reconstruction with a swap: x_hat(t) = D(z_v(t), z_i(s)) for another frame s of the same video.

With ``split=false`` the two heads are concatenated into one latent z that takes every loss (no
swap, no invariance term): the "plain temporal" baseline and the "no split" ablation.
"""

from __future__ import annotations

import torch
from einops import rearrange
from lightly.models.modules import SimCLRProjectionHead
from omegaconf import DictConfig

from css_pose.data.sampling import ContrastiveLayout
from css_pose.losses import (
    GradualTransitionLoss,
    InvarianceLoss,
    ReconstructionLoss,
    TemporalInfoNCE,
)
from css_pose.methods.base import PretrainMethod
from css_pose.models.decoder import Decoder
from css_pose.models.latent import LatentHeads


class CSSMethod(PretrainMethod):
    """Contrastive self-supervision with a time-variant / time-invariant split.

    Batches come from ``VideoClipDataset(mode="contrastive")``: ``frames`` (B, N, 3, H, W) in
    :class:`~css_pose.data.sampling.ContrastiveLayout` order (anchor, positives, negatives,
    transition), ``video_idx`` (B,).
    """

    def __init__(self, model_cfg, method_cfg: DictConfig, optim_cfg, img_size: int, sampling):
        super().__init__(model_cfg, method_cfg, optim_cfg, img_size)
        m = method_cfg
        self.n_pos, self.n_neg, self.n_gt = (
            int(sampling.n_pos),
            int(sampling.n_neg),
            int(sampling.n_gt),
        )
        if self.n_pos < 1 or self.n_neg < 1:
            raise ValueError("CSS needs data.sampling.n_pos >= 1 and data.sampling.n_neg >= 1")
        self.layout = ContrastiveLayout(self.n_pos, self.n_neg, self.n_gt)
        self.split = bool(m.split)
        self.w = {k: float(v) for k, v in m.weights.items()}
        self.heads = LatentHeads(
            self.encoder.out_channels,
            dim_v=m.dim_v,
            dim_i=m.dim_i,
            spatial_v=m.spatial_v,
            feature_size=self.encoder.feature_size,
        )
        contrast_dim = m.dim_v if self.split else m.dim_v + m.dim_i
        self.projection = SimCLRProjectionHead(contrast_dim, m.proj_hidden, m.proj_dim)
        self.contrastive = TemporalInfoNCE(
            temperature=m.temperature, gather_distributed=True, cross_video=m.cross_video_negatives
        )
        self.gradual = GradualTransitionLoss(margin=m.gt_margin)
        self.invariance = InvarianceLoss(
            mode=m.invariance, contrast_temperature=m.invariance_contrast_temperature
        )
        self.decoder = None
        if self.w["reconstruction"] > 0:
            self.decoder = Decoder(
                m.dim_v, m.dim_i, out_size=img_size, base_channels=m.decoder_channels
            )
            self.reconstruction = ReconstructionLoss(ssim_weight=m.ssim_weight)
        if self.w["gradual"] > 0 and self.n_gt < 2:
            raise ValueError("the gradual-transition loss needs data.sampling.n_gt >= 2")

    def latents(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, N, 3, H, W) -> z_v (B, N, Dv), z_i (B, N, Di), h (B, N, C)."""
        b = frames.shape[0]
        z_v, z_i, h = self.heads(self.encode_frames(frames))
        return tuple(rearrange(t, "(b n) d -> b n d", b=b) for t in (z_v, z_i, h))

    def training_loss(self, batch: dict) -> dict[str, torch.Tensor]:
        frames = batch["frames"]
        z_v, z_i, _ = self.latents(frames)
        z = z_v if self.split else torch.cat([z_v, z_i], dim=-1)
        p = self.projection(rearrange(z, "b n d -> (b n) d"))
        p = rearrange(p, "(b n) d -> b n d", b=frames.shape[0])
        at = self.layout
        terms = {
            "loss_contrastive": self.contrastive(
                p[:, at.anchor], p[:, at.positives], p[:, at.negatives], batch["video_idx"]
            )
        }
        total = self.w["contrastive"] * terms["loss_contrastive"]
        if self.w["gradual"] > 0:
            terms["loss_gradual"] = self.gradual(z[:, at.anchor], z[:, at.transition])
            total = total + self.w["gradual"] * terms["loss_gradual"]
        if self.split and self.w["invariance"] > 0:
            terms["loss_invariance"] = self.invariance(z_i, batch["video_idx"])
            total = total + self.w["invariance"] * terms["loss_invariance"]
        if self.decoder is not None:
            recon = self.reconstruct(z_v, z_i)
            terms["loss_reconstruction"] = self.reconstruction(
                rearrange(recon, "b n c h w -> (b n) c h w"),
                rearrange(frames, "b n c h w -> (b n) c h w"),
            )
            total = total + self.w["reconstruction"] * terms["loss_reconstruction"]
        terms["loss"] = total
        return terms

    def reconstruct(self, z_v: torch.Tensor, z_i: torch.Tensor) -> torch.Tensor:
        """Decode every frame; with the split, frame n takes z_i of frame (n + 1) mod N (a swap).

        Args:
            z_v: (B, N, Dv); z_i: (B, N, Di).
        Returns:
            (B, N, 3, H, W) in [0, 1].
        """
        b = z_v.shape[0]
        if self.split:
            z_i = torch.roll(z_i, shifts=-1, dims=1)
        out = self.decoder(rearrange(z_v, "b n d -> (b n) d"), rearrange(z_i, "b n d -> (b n) d"))
        return rearrange(out, "(b n) c h w -> b n c h w", b=b)

    @torch.no_grad()
    def decode_swap(
        self, pose_frames: torch.Tensor, appearance_frames: torch.Tensor
    ) -> torch.Tensor:
        """Swap grid: pose from row r, appearance from column c.

        Args:
            pose_frames, appearance_frames: (R, 3, H, W) and (C, 3, H, W) in [0, 1].
        Returns:
            (R, C, 3, H, W) in [0, 1].
        """
        if self.decoder is None:
            raise RuntimeError("this method has no decoder (method.weights.reconstruction is 0)")
        z_v, _, _ = self.heads(self.encoder(pose_frames))
        _, z_i, _ = self.heads(self.encoder(appearance_frames))
        r, c = z_v.shape[0], z_i.shape[0]
        zv = z_v[:, None].expand(r, c, -1).reshape(r * c, -1)
        zi = z_i[None, :].expand(r, c, -1).reshape(r * c, -1)
        return rearrange(self.decoder(zv, zi), "(r c) ch h w -> r c ch h w", r=r)

    def features(self, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        z_v, z_i, h = self.heads(self.encoder(frames))
        if not self.split:
            return {"z_v": torch.cat([z_v, z_i], dim=-1), "backbone": h}
        return {"z_v": z_v, "z_i": z_i, "backbone": h}
