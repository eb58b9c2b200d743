"""What ``python train_head.py`` does: fine-tune a 2D pose head on a pretrained encoder, score it.

Heads and codecs: :mod:`css_pose.models.heads`, :mod:`css_pose.codecs` (shared/methods.md sections
2 and 3). Protocol as the probe's (:mod:`css_pose.linear_probe`): the labels are a random
``label_fraction`` of the labeled frames of the TRAINING videos; the scores come from the test
videos. The encoder is frozen or fine-tuned at a lower learning rate (BatchNorm statistics frozen).
Training crops are mirrored at random (left/right joints swap) and, with ``augment.*``, rotated,
zoomed and shifted at random with their keypoints (:func:`random_affine`); test predictions average
the crop and its mirror (flip test).

Metrics: PCK@a pooled over visible joints, threshold a x max(w, h) of the tight box around the
visible ground-truth joints; mean pixel error over visible joints (crop px).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from css_pose.apps.support import (
    epoch_budget,
    frame_videos,
    git_commit,
    label_source,
    make_loader,
    prepare_labeled_run,
    save_label_choice,
)
from css_pose.artifacts.runs import run_folder
from css_pose.checkpoint import CheckpointError
from css_pose.config import ConfigError, compose_config, parse_cli, run_friendly
from css_pose.data.crop_affine import random_affine
from css_pose.flip import mirror_batch
from css_pose.methods.loggers import build_loggers, finish_loggers
from css_pose.metrics import pck_tight
from css_pose.models.heads.cost import head_cost
from css_pose.models.pose_model import PoseModel, build_head, predict, save_pose_model
from css_pose.sheets import heatmap_sheet, overlay_sheet
from css_pose.skeleton import JOINT_GROUPS
from css_pose.viz import save_png

HELP = """usage: python train_head.py ckpt=PATH|none [key=value ...]

Fine-tune a 2D pose head on an encoder pretrained by train.py and score it on the test videos.

Keys (configs/head.yaml): head=heatmap|composite|regression  stride=4|8  fusion=true|false
  sigma_px  radius  regression_pool=mean|flatten  eval_split=test|val  encoder=frozen|finetune  encoder_lr_scale  label_fraction=0.1  seed  epochs
  steps  lr  batch_size  flip_train  augment.rotate_deg|scale|translate  flip_test  run_dir
  temporal.frames=0  temporal.step  temporal.pooling=parametric|average|none  temporal.warp
  temporal.input_flow  temporal.flow_preset  temporal.neighbour_labels
  data.*  (with ckpt=none: model=...)

Examples:
  python train_head.py ckpt=runs/css-.../checkpoints/last.ckpt                 heatmap, stride 4
  python train_head.py ckpt=... head=composite                                 stride 8 + offsets
  python train_head.py ckpt=... head=heatmap stride=8 fusion=false encoder=finetune
  python train_head.py ckpt=... temporal.frames=1                  flow-aligned pooling of 3 frames
"""

CHOICES = {
    "head": ("heatmap", "composite", "regression"),
    "encoder": ("frozen", "finetune"),
    "label_unit": ("video", "frame"),
    "regression_pool": ("mean", "flatten"),
    "eval_split": ("test", "val"),
}


def load_head_config(argv: list[str]) -> DictConfig:
    """Compose ``configs/head.yaml``; ConfigError on a bad key, choice, stride or fraction."""
    cfg = compose_config("head", argv)
    if OmegaConf.is_missing(cfg, "ckpt"):
        raise ConfigError("ckpt is required: ckpt=PATH (a train.py checkpoint) or ckpt=none")
    for key, allowed in CHOICES.items():
        if cfg[key] not in allowed:
            raise ConfigError(f"{key}={cfg[key]} is not one of {'|'.join(allowed)}")
    if not 0 < cfg.label_fraction <= 1:
        raise ConfigError(f"label_fraction={cfg.label_fraction} must be in (0, 1]")
    if cfg.stride is not None and cfg.stride not in (1, 2, 4, 8, 16, 32):
        raise ConfigError(f"stride={cfg.stride} must be a power of two up to 32 (or null)")
    from css_pose.temporal2d import check_temporal_config  # it imports this module

    check_temporal_config(cfg)
    return cfg


def label_mean(kp: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
    """The no-image baseline (the floor): the mean of labelled keypoints (N, J, 2) crop px over
    the frames where each joint is visible (``vis`` (N, J)), (J, 2)."""
    w = (vis > 0).float()[..., None]
    return (kp * w).sum(0) / w.sum(0).clamp_min(1)


def score_2d(
    pred: torch.Tensor, gt: torch.Tensor, visible: torch.Tensor, alphas
) -> dict[str, float]:
    """PCK@a for each a (:func:`~css_pose.metrics.pck_tight`: tight box of the visible GT joints,
    pooled over visible joints) and mean px error, (N, J, 2) crop px; ``pck@0.1/<group>`` pools
    the joints of each :data:`~css_pose.skeleton.JOINT_GROUPS` group only (NaN if none visible)."""
    out = {f"pck@{a:g}": float(pck_tight(pred, gt, visible, a)) for a in alphas}
    out["px_error"] = float(torch.linalg.vector_norm(pred - gt, dim=-1)[visible].mean())
    _, per_joint = pck_tight(pred, gt, visible, 0.1, per_joint=True)
    counts = visible.sum(0).float()  # (J,) visible samples of each joint
    for group, joints in JOINT_GROUPS.items():
        idx = list(joints)
        seen = counts[idx].sum()
        hits = (per_joint[idx].nan_to_num(0.0) * counts[idx]).sum()
        out[f"pck@0.1/{group}"] = float(hits / seen) if seen > 0 else float("nan")
    return out


def load_labeled(dataset, like, batch_size: int) -> tuple[torch.Tensor, ...]:
    """All frames of a labeled subset in memory: crops (N, 3, S, S), keypoints (N, J, 2) crop px,
    visibility (N, J)."""
    frames, kps, viss = [], [], []
    for batch in make_loader(dataset, like, batch_size, False, 0):
        frames.append(batch["frames"])
        kps.append(batch["keypoints_2d"])
        viss.append(batch["visibility"])
    return torch.cat(frames), torch.cat(kps), torch.cat(viss)


@torch.no_grad()
def encode_frozen(encoder, frames: torch.Tensor, batch_size: int, device) -> list[torch.Tensor]:
    """Stage maps of a frozen encoder (eval mode) for crops (N, 3, S, S), kept on the CPU."""
    encoder.eval()
    chunks = [encoder.forward_stages(f.to(device)) for f in frames.split(batch_size)]
    return [torch.cat([c[i].cpu() for c in chunks]) for i in range(len(chunks[0]))]


@dataclass
class HeadRun:
    """What :func:`run_head` returns: the result dict (also result.json) and the trained model."""

    result: dict
    model: PoseModel
    codec: object


def run_head(cfg: DictConfig, argv: list[str] | None = None) -> HeadRun:
    """Build (or load) the encoder, train the head on the labeled fraction, score it on test.
    With ``temporal.frames`` > 0 the clip model of :mod:`css_pose.temporal2d` does it instead.

    Raises:
        CheckpointError: the checkpoint file is unusable (names the file and the keys).
        ValueError: no labeled frame, or the stride does not fit the crop.
    """
    if cfg.temporal.frames > 0:
        from css_pose.temporal2d import run_temporal_head

        return run_temporal_head(cfg, argv)
    run = prepare_labeled_run(cfg, argv)
    cfg, device, train_loader, test_loader = run.cfg, run.device, run.train_loader, run.test_loader
    head, codec = build_head(cfg, run.method.encoder)
    model = PoseModel(run.method.encoder, head).to(device)
    frames, kp, vis = load_labeled(run.labeled, train_loader, cfg.data.batch_size)
    run_dir = run_folder(cfg.run_dir, "head")
    save_label_choice(run_dir, cfg, train_loader.dataset, run.chosen)
    hparams = OmegaConf.to_container(cfg, resolve=True)
    loggers = build_loggers(cfg, run_dir, hparams)
    losses, epochs, steps = train_head(model, codec, frames, kp, vis, cfg, device, loggers)

    pred, gt, visible, crops = predict_test_split(model, codec, test_loader, cfg, device)
    metrics = score_2d(pred, gt, visible, cfg.pck_alphas)
    floor = score_2d(label_mean(kp, vis).expand_as(gt), gt, visible, cfg.pck_alphas)
    shown = _save_sheets(run_dir, model, crops, pred, gt, visible, cfg, device)
    result = {
        "checkpoint": run.source,
        "config": hparams,
        "seed": cfg.seed,
        "n_train_frames": len(train_loader.dataset),
        "n_labeled": len(run.labeled),
        "labeled_videos": sorted(set(frame_videos(train_loader.dataset, run.chosen.tolist()))),
        "test_split": run.test_split,
        "n_test_frames": len(pred),
        "stride": getattr(codec, "stride", None),
        "epochs": epochs,
        "steps": steps,
        "train_loss": losses,
        "metrics": metrics,
        "mean_pose": floor,
        "cost": head_cost(model.encoder, head, model.encoder.in_size),
        "git_commit": git_commit(),
    }
    (run_dir / "result.json").write_text(json.dumps(result, indent=2))
    save_pose_model(
        run_dir / "head.pt",
        model,
        cfg,
        box_pad=float(getattr(train_loader.dataset, "box_pad", 1.25)),
        metrics=metrics,
        source=run.source,
        trained_joints=(vis > 0).any(0).tolist(),
    )
    finish_loggers(loggers, run.test_split, metrics, shown, epochs)
    result["run_dir"] = str(run_dir)
    print(format_result(result))
    return HeadRun(result, model, codec)


def train_head(
    model: PoseModel, codec, frames, kp, vis, cfg: DictConfig, device, loggers
) -> tuple[list[float], int, int]:
    """Train ``model``'s head (and, with ``encoder=finetune``, its encoder at ``encoder_lr_scale``
    x the learning rate) on the labelled crops (N, 3, S, S), keypoints (N, J, 2) crop px and
    visibility (N, J): AdamW, one-cycle schedule, random mirroring (``flip_train``) and the random
    affine of ``augment.*``. The encoder's BatchNorm statistics stay as pretrained.

    Returns:
        (mean loss of each epoch, epochs, steps).
    """
    head, finetune = model.head, cfg.encoder == "finetune"
    aug = (cfg.augment.rotate_deg, cfg.augment.scale, cfg.augment.translate)
    augment = any(a > 0 for a in aug)
    stages = None
    if not finetune:
        model.encoder.requires_grad_(False)
    if not finetune and not augment:
        # Frozen, no geometric augmentation: the stage maps of every labeled crop and of its
        # mirror are computed once.
        stages = [
            encode_frozen(model.encoder, f, cfg.data.batch_size, device)
            for f in (frames, frames.flip(-1))
        ]
    groups = [{"params": head.parameters(), "lr": cfg.lr}]
    if finetune:
        groups.append({"params": model.encoder.parameters(), "lr": cfg.lr * cfg.encoder_lr_scale})
    opt = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
    per_epoch = -(-len(frames) // cfg.batch_size)
    epochs = epoch_budget(cfg, per_epoch)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=[g["lr"] for g in groups], total_steps=max(epochs * per_epoch, 1),
        pct_start=0.1,
    )  # fmt: skip
    gen = torch.Generator().manual_seed(cfg.seed)
    losses: list[float] = []
    bar = tqdm(range(epochs), desc=f"{cfg.head} head", file=sys.stderr)
    for epoch in bar:
        head.train()
        model.encoder.eval()  # frozen or fine-tuned, its BatchNorm statistics stay
        total = 0.0
        for idx in torch.randperm(len(frames), generator=gen).split(cfg.batch_size):
            which = torch.rand(len(idx), generator=gen) < 0.5
            if not cfg.flip_train:
                which[:] = False
            f, k, v = mirror_batch(frames[idx], kp[idx], vis[idx], which)
            if augment:
                f, k = random_affine(f, k, gen, *aug)
            k, v = k.to(device), v.to(device)
            if stages is None:
                with torch.set_grad_enabled(finetune):
                    maps = model.encoder.forward_stages(f.to(device))
            else:
                sel = which.view(-1, 1, 1, 1)
                maps = [torch.where(sel, m[idx], o[idx]).to(device)
                        for o, m in zip(*stages, strict=True)]  # fmt: skip
            loss = sum(codec.loss(head(maps), codec.encode(k, v)).values())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
        losses.append(total / per_epoch)
        bar.set_postfix(loss=f"{losses[-1]:.4g}")
        for logger in loggers:
            logger.log_metrics({"train/loss": losses[-1], "epoch": epoch}, step=epoch)
    return losses, epochs, epochs * per_epoch


@torch.no_grad()
def predict_test_split(model: PoseModel, codec, test_loader, cfg: DictConfig, device):
    """Predictions (N, J, 2), ground truth (N, J, 2) crop px and visibility (N, J) of every test
    frame (flip test with ``flip_test``), and ``num_images`` (index, crop) pairs spread evenly
    over the test frames for the overlay sheet."""
    n_test = len(test_loader.dataset)
    show = set(np.linspace(0, n_test - 1, min(cfg.num_images, n_test)).round().astype(int).tolist())
    preds, gts, viss, crops, seen = [], [], [], [], 0
    for batch in test_loader:
        frames = batch["frames"].to(device)
        kp, _ = predict(model, codec, frames, cfg.flip_test)
        preds.append(kp.cpu())
        gts.append(batch["keypoints_2d"])
        viss.append(batch["visibility"] > 0)
        keep = [i for i in range(len(frames)) if seen + i in show]
        crops += [(seen + i, batch["frames"][i]) for i in keep]
        seen += len(frames)
    return torch.cat(preds), torch.cat(gts), torch.cat(viss), crops


def _save_sheets(run_dir: Path, model, crops, pred, gt, visible, cfg, device) -> dict:
    """images/test_predictions.png (predictions next to the truth) and, for a heatmap head,
    images/test_heatmaps.png of the ``crops``; {name: path} of those written."""
    if not crops:
        return {}
    idx = [i for i, _ in crops]
    sheet = overlay_sheet([c for _, c in crops], pred[idx], gt[idx], visible[idx])
    written = {"test_predictions": save_png(run_dir / "images" / "test_predictions.png", sheet)}
    shown = torch.stack([c for _, c in crops])
    model.eval()
    with torch.no_grad():
        outputs = model(shown.to(device))
    if "heatmaps" in outputs:
        written["test_heatmaps"] = save_png(
            run_dir / "images" / "test_heatmaps.png",
            heatmap_sheet(shown, outputs["heatmaps"].cpu(), ncols=cfg.num_images // 2 or 1),
        )
    return written


def format_result(r: dict) -> str:
    c, m, cost = r["config"], r["metrics"], r["cost"]
    lines = [
        "",
        "=" * 72,
        f"css_pose 2D head: {c['head']} (stride {r['stride'] or '-'}, fusion {c['fusion']}), "
        f"{c['encoder']} encoder",
        f"  encoder    : {r['checkpoint']}",
        f"  labels     : {r['n_labeled']} of {r['n_train_frames']} training frames "
        + label_source(c, r["seed"]),
        f"  scored on  : {r['n_test_frames']} frames of the {r['test_split']} split"
        f" (flip test {c['flip_test']})",
    ]
    floor = r.get("mean_pose")
    if floor is None:
        lines += [f"  {k:18s} {v:9.3f}" for k, v in m.items()]
    else:
        lines.append(f"  {'':18s} {'head':>9s}  floor (the labels' mean pose, no image)")
        lines += [f"  {k:18s} {v:9.3f}  {floor[k]:9.3f}" for k, v in m.items()]
    lines += [
        f"  GFLOPs     : head {cost['head_gflops']:.4f}, total {cost['total_gflops']:.4f} per crop",
        f"  result     : {r['run_dir']}/result.json",
        "=" * 72,
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict | None:
    cfg, argv = parse_cli(argv, HELP, load_head_config)
    if cfg is None:
        return None
    return run_head(cfg, argv).result


def run_cli(argv: list[str] | None = None) -> None:
    """Console entry: one-line errors for config and checkpoint mistakes instead of a traceback."""
    run_friendly(lambda: main(argv), {CheckpointError: (1, ""), ValueError: (1, "")})


__all__ = ["load_head_config", "run_head"]
