"""SimCLR baseline (Chen et al., "A Simple Framework for Contrastive Learning of Visual
Representations", ICML 2020) with lightly's projection head and NT-Xent loss.

Batches come from ``VideoClipDataset(mode="views")``: ``frames`` (B, 2, 3, H, W), two independently
augmented views of one frame.
"""

from __future__ import annotations

import torch
from einops import rearrange
from lightly.loss import NTXentLoss
from lightly.models.modules import SimCLRProjectionHead

from css_pose.methods.base import PretrainMethod


class SimCLRMethod(PretrainMethod):
    def __init__(self, model_cfg, method_cfg, optim_cfg, img_size: int):
        super().__init__(model_cfg, method_cfg, optim_cfg, img_size)
        self.projection = SimCLRProjectionHead(
            self.encoder.out_channels, method_cfg.proj_hidden, method_cfg.proj_dim
        )
        self.criterion = NTXentLoss(temperature=method_cfg.temperature, gather_distributed=True)

    def pooled(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> globally pooled encoder features (B, C)."""
        return self.encoder(frames).mean(dim=(2, 3))

    def training_loss(self, batch: dict) -> dict[str, torch.Tensor]:
        frames = batch["frames"]
        if frames.shape[1] != 2:
            raise ValueError(f"SimCLR needs two views per sample, got frames {tuple(frames.shape)}")
        h = self.encode_frames(frames).mean(dim=(2, 3))
        p = rearrange(self.projection(h), "(b n) d -> b n d", n=2)
        loss = self.criterion(p[:, 0], p[:, 1])
        return {"loss_contrastive": loss, "loss": loss}

    def features(self, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"backbone": self.pooled(frames)}
