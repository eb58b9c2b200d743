"""Shared LightningModule plumbing for every pretraining method.

A method subclasses :class:`PretrainMethod` and implements ``training_loss`` (a dict of named loss
terms plus ``loss``) and ``features`` (the representations the probes read). The base class owns the
encoder, the optimiser and schedule, throughput logging and the non-finite-loss guard.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from einops import rearrange
from omegaconf import DictConfig

from css_pose.models.encoders import build_encoder


class NonFiniteLossError(FloatingPointError):
    """Raised when a loss term is NaN or infinite; the last good state is saved first."""


class PretrainMethod(pl.LightningModule):
    """Base class: encoder + optimiser + logging.

    Args:
        model_cfg: ``configs/model/*.yaml`` (encoder name, optional local weights).
        method_cfg: ``configs/method/*.yaml``.
        optim_cfg: ``optim`` section of ``configs/train.yaml``.
        img_size: input crop size in pixels (square).
    """

    def __init__(
        self, model_cfg: DictConfig, method_cfg: DictConfig, optim_cfg: DictConfig, img_size: int
    ):
        super().__init__()
        self.model_cfg = model_cfg
        self.method_cfg = method_cfg
        self.optim_cfg = optim_cfg
        self.img_size = img_size
        self.encoder = build_encoder(
            model_cfg.name,
            weights_path=model_cfg.weights_path,
            in_size=img_size,
            width=model_cfg.get("width"),
        )
        self._step_t0: float | None = None
        # The composed train config as plain containers; stored in every checkpoint so that a
        # checkpoint can be rebuilt and loaded with ``torch.load(weights_only=True)``.
        self.run_config: dict | None = None

    # --- what a method implements -------------------------------------------------------------
    def training_loss(self, batch: dict) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def features(self, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        """Representations of single frames, for probes.

        Args:
            frames: (B, 3, H, W) in [0, 1].
        Returns:
            name -> (B, D); always holds ``backbone`` (pooled encoder features).
        """
        raise NotImplementedError

    # --- shared ---------------------------------------------------------------------------------
    def encode_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, N, 3, H, W) -> encoder feature maps ((B N), C, h, w)."""
        return self.encoder(rearrange(frames, "b n c h w -> (b n) c h w"))

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        terms = self.training_loss(batch)
        self._check_finite(terms)
        bsz = batch["frames"].shape[0]
        for name, value in terms.items():
            self.log(f"train/{name}", value.detach(), prog_bar=name == "loss", batch_size=bsz)
        return terms["loss"]

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        terms = self.training_loss(batch)
        bsz = batch["frames"].shape[0]
        for name, value in terms.items():
            self.log(f"val/{name}", value, sync_dist=True, batch_size=bsz)

    def on_train_batch_start(self, batch: dict, batch_idx: int) -> None:
        self._step_t0 = time.perf_counter()

    def on_train_batch_end(self, outputs, batch: dict, batch_idx: int) -> None:
        if self._step_t0 is None:
            return
        dt = time.perf_counter() - self._step_t0
        frames = batch["frames"].shape[0] * batch["frames"].shape[1] * self.trainer.world_size
        self.log("train/frames_per_s", frames / max(dt, 1e-9), batch_size=1)

    def _check_finite(self, terms: dict[str, torch.Tensor]) -> None:
        bad = [k for k, v in terms.items() if not torch.isfinite(v).all()]
        if not bad:
            return
        path = None
        if self.trainer is not None and self.trainer.log_dir is not None:
            run_dir = Path(self.trainer.default_root_dir)
            path = run_dir / "checkpoints" / "last_good.ckpt"
            # The optimiser has not stepped on this batch yet: the weights are the last good state.
            self.trainer.save_checkpoint(path)
        raise NonFiniteLossError(
            f"non-finite loss term(s) {bad} at global step {self.global_step}"
            + (f"; the last good state is saved in {path}" if path else "")
            + ". Lower optim.lr, enable trainer.gradient_clip_val, or check the input data; "
            "resume with `python train.py resume=<checkpoint>`."
        )

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["css_pose_config"] = self.run_config

    def planned_steps(self) -> int:
        """Optimiser steps the run is planned for (the LR schedule's length).

        Computed from the train loader's length rather than ``trainer.estimated_stepping_batches``:
        that property makes Lightning build the train iterator before a checkpoint is restored, and
        a resumed run would then draw its first epoch's samples for epoch 0.
        """
        trainer = self.trainer
        if trainer.max_steps and trainer.max_steps > 0:
            return trainer.max_steps
        per_epoch = len(trainer.datamodule.train_dataloader())
        limit = trainer.limit_train_batches
        if isinstance(limit, int):
            per_epoch = min(per_epoch, limit)
        elif limit is not None:
            per_epoch = int(per_epoch * limit)
        per_epoch //= trainer.accumulate_grad_batches
        return max(per_epoch * max(trainer.max_epochs or 1, 1), 1)

    def configure_optimizers(self):
        opt = torch.optim.AdamW(
            self.parameters(), lr=self.optim_cfg.lr, weight_decay=self.optim_cfg.weight_decay
        )
        total = self.planned_steps()
        warmup = min(int(self.optim_cfg.warmup_steps), max(total - 1, 0))
        floor = float(self.optim_cfg.min_lr_ratio)

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / (warmup + 1)
            progress = min((step - warmup) / max(total - warmup, 1), 1.0)
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {
            "optimizer": opt,
            "lr_scheduler": {"scheduler": sched, "interval": "step", "name": "train/lr"},
        }
