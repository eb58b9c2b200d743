"""What ``python linear_probe.py`` does: fit a pose head on a pretrained encoder, score it on test.

Protocol (shared/methods.md, section 1 "Probe"): a linear or 2-hidden-layer MLP head reads one
feature of the encoder (``z_v``, ``z_i`` or ``backbone``) and regresses root-relative 3D joints in
camera coordinates (mm), the body-frame 3D pose (mm, orientation removed) or 2D keypoints (crop px).
The encoder is frozen (features computed once) or fine-tuned at a lower learning rate. With
``flip_train`` half of the training crops are mirrored with their labels (left/right swap). The
labels are a random ``label_fraction`` of the TRAINING videos, every labeled frame of each
(``label_unit=video``; ``frame`` draws single frames); the scores come from the test videos, which
never share a video with the labels. Metric definitions:
docs/metrics.md.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field

import torch
from einops import rearrange
from omegaconf import DictConfig, OmegaConf
from torch import nn
from tqdm import tqdm

from css_pose.apps.support import (
    epoch_budget,
    frame_videos,
    git_commit,
    label_source,
    make_loader,
    no_ckpt,
    prepare_labeled_run,
    save_label_choice,
)
from css_pose.artifacts.runs import run_folder
from css_pose.checkpoint import save_torch_file
from css_pose.config import ConfigError, compose_config, parse_cli, run_friendly
from css_pose.methods.loggers import build_loggers, finish_loggers
from css_pose.probe.batches import (
    cached_batches,
    collect_features,
    encoder_batches,
    labeled_in_memory,
    memory_batches,
)
from css_pose.probe.model import (
    PoseProbe,
    Standardize,
    check_feature,
    compute_metrics,
    make_head,
    probe_loss,
)

HELP = """usage: python linear_probe.py ckpt=PATH|none [key=value ...]

Fit a pose head on an encoder pretrained by train.py and score it on the test videos.

Keys (configs/probe.yaml): probe=linear|mlp  hidden=256  target=3d|2d|body3d
  feature=z_v|z_i|backbone  encoder=frozen|finetune  encoder_lr_scale=0.1  label_fraction=1.0
  label_unit=video|frame
  flip_train=true  pck_alpha=0.1  seed  epochs  steps  lr  lr_schedule=constant|onecycle
  batch_size  mode=probe|supervised  run_dir
  data.*  (with ckpt=none: model=...  method=...)
Examples:
  python linear_probe.py ckpt=runs/css-20260101-120000/checkpoints/last.ckpt label_fraction=0.05
  python linear_probe.py ckpt=none model=resnet18 target=2d            random-init baseline
  python linear_probe.py ckpt=none mode=supervised label_fraction=0.1  supervised baseline
  python linear_probe.py ckpt=PATH --cfg                               print the config and exit
"""
CHOICES = {
    "mode": ("probe", "supervised"),
    "probe": ("linear", "mlp"),
    "target": ("3d", "2d", "body3d"),
    "feature": ("z_v", "z_i", "backbone"),
    "label_unit": ("video", "frame"),
    "encoder": ("frozen", "finetune"),
    "lr_schedule": ("constant", "onecycle"),
    "eval_split": ("test", "val"),
}


def load_probe_config(argv: list[str]) -> DictConfig:
    """Compose ``configs/probe.yaml``; with a checkpoint, its data config under the data.* overrides.

    Raises:
        ConfigError: unknown key, bad choice, missing ``ckpt``, bad ``label_fraction``.
    """
    cfg = compose_config("probe", argv)
    if OmegaConf.is_missing(cfg, "ckpt"):
        raise ConfigError("ckpt is required: ckpt=PATH (a train.py checkpoint) or ckpt=none")
    for key, allowed in CHOICES.items():
        if cfg[key] not in allowed:
            raise ConfigError(f"{key}={cfg[key]} is not one of {'|'.join(allowed)}")
    if not 0 < cfg.label_fraction <= 1:
        raise ConfigError(f"label_fraction={cfg.label_fraction} must be in (0, 1]")
    if cfg.mode == "supervised" and not no_ckpt(cfg):
        raise ConfigError("mode=supervised trains the encoder from scratch; set ckpt=none")
    return cfg


# --- training -------------------------------------------------------------------------------------
@dataclass
class ProbeRun:
    """What :func:`run_probe` returns: the result dict (also result.json), the encoder's method
    module and the fitted probe."""

    result: dict
    method: nn.Module
    probe: PoseProbe
    losses: list[float] = field(default_factory=list)


def run_probe(cfg: DictConfig, argv: list[str] | None = None) -> ProbeRun:
    """Build (or load) the encoder, fit the probe, score it on the test split, write result.json.

    Args:
        cfg: from :func:`load_probe_config`.
        argv: the overrides ``cfg`` came from; with a checkpoint, its data.* keys override the
            checkpoint's data config.
    Raises:
        CheckpointError: the checkpoint file is unusable (names the file and the keys).
        ValueError: the method has no such feature (names the available ones), or no labels.
    """
    run = prepare_labeled_run(cfg, argv)
    method, cfg, device, test_loader = run.method, run.cfg, run.device, run.test_loader
    method.to(device)
    dim = check_feature(method, cfg.feature, cfg.data.size)
    train_set, labeled = run.train_loader.dataset, run.labeled
    in_order = make_loader(labeled, run.train_loader, cfg.data.batch_size, False, cfg.seed)
    probe, data = _build_probe(method, in_order, cfg, dim, len(labeled), device)
    run_dir = run_folder(cfg.run_dir, "probe")
    save_label_choice(run_dir, cfg, train_set, run.chosen)
    hparams = OmegaConf.to_container(cfg, resolve=True)
    loggers = build_loggers(cfg, run_dir, hparams)
    losses, epochs = _fit_probe(probe, method, run, in_order, data, cfg, device, loggers)

    probe.eval()
    test_feats, test_kps, test_masks = collect_features(
        method, test_loader, cfg.feature, cfg.target, device
    )
    with torch.no_grad():
        pred = probe.joints(test_feats.to(device)).cpu()
    metrics = compute_metrics(pred, test_kps, test_masks, cfg.target, cfg.pck_alpha)
    # No-image baseline: the mean label of the (unmirrored) labeled training frames, for every
    # test frame.
    mean = rearrange(probe.target_norm.mean.cpu(), "(j k) -> 1 j k", k=probe.k)
    mean_pose = compute_metrics(
        mean.expand_as(test_kps), test_kps, test_masks, cfg.target, cfg.pck_alpha
    )
    result = {
        "checkpoint": run.source,
        "config": hparams,
        "seed": cfg.seed,
        "n_train_frames": len(train_set),
        "n_labeled": len(labeled),
        "labeled_videos": sorted(set(frame_videos(train_set, run.chosen.tolist()))),
        "test_split": run.test_split,
        "n_test_frames": len(test_loader.dataset),
        "note": run.note,
        "epochs": epochs,
        "train_loss": losses,
        "metrics": metrics,
        "mean_pose": mean_pose,
        "git_commit": git_commit(),
    }
    (run_dir / "result.json").write_text(json.dumps(result, indent=2))
    trained = cfg.mode == "supervised" or cfg.encoder == "finetune"
    save_torch_file(
        {"probe": probe.state_dict(), "encoder": method.state_dict() if trained else None},
        run_dir / "probe.pt",
    )
    floor = {f"mean_pose_{k}": v for k, v in mean_pose.items()}
    finish_loggers(loggers, run.test_split, {**metrics, **floor}, {}, epochs)
    result["run_dir"] = str(run_dir)
    print(format_result(result))
    return ProbeRun(result, method, probe, losses)


def _build_probe(method, in_order, cfg: DictConfig, dim: int, n_labeled: int, device):
    """The probe on ``dim`` features, standardised by the features and labels of the labelled
    frames (read in order); returns (probe, (features, keypoints, masks) of those frames)."""
    k = 2 if cfg.target == "2d" else 3
    # Fine-tuning keeps BatchNorm statistics frozen (eval mode): a few labeled frames in small
    # batches would give noisy batch statistics, and the feature standardisation below stays valid.
    # From scratch (supervised) BatchNorm trains, so the standardisation uses train-mode features.
    supervised = cfg.mode == "supervised"
    feats, kps, masks = collect_features(
        method, in_order, cfg.feature, cfg.target, device, supervised
    )
    if not masks.any():
        raise ValueError(f"none of the {n_labeled} labeled frames has a usable {cfg.target} label")
    flat = rearrange(kps, "n j k -> n (j k)")
    probe = PoseProbe(
        make_head(dim, flat.shape[1], cfg.probe, cfg.hidden),
        # A near-constant feature (a dead ReLU unit) must not be amplified: once a fine-tuned
        # encoder moves it, a tiny std would blow the head's input up.
        Standardize(feats, max(0.1 * feats.std(0).mean().item(), 1e-8)),
        Standardize(flat, 1.0, masks.repeat_interleave(k, dim=1)),
        k,
    ).to(device)
    return probe, (feats, kps, masks)


def _fit_probe(probe, method, run, in_order, data, cfg: DictConfig, device, loggers):
    """Train the probe (and the encoder, when supervised or fine-tuned) for the epoch budget;
    a frozen encoder's features, mirrored ones too, are computed once. Returns (mean loss of
    each epoch, epochs)."""
    supervised = cfg.mode == "supervised"
    train_encoder = supervised or cfg.encoder == "finetune"
    in_memory = labeled_in_memory(in_order, cfg.target) if train_encoder else None
    mirrored = None
    if cfg.flip_train and not train_encoder:
        mirrored = collect_features(method, in_order, cfg.feature, cfg.target, device, mirror=True)
    groups = [{"params": probe.head.parameters(), "lr": cfg.lr}]
    if train_encoder:
        scale = 1.0 if supervised else cfg.encoder_lr_scale
        groups.append({"params": method.parameters(), "lr": cfg.lr * scale})
    else:
        method.requires_grad_(False)
    opt = torch.optim.Adam(groups, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    shuffled = None
    if train_encoder and in_memory is None:
        shuffled = make_loader(run.labeled, run.train_loader, cfg.batch_size, True, cfg.seed)
    per_epoch = math.ceil(len(run.labeled) / cfg.batch_size)
    epochs = epoch_budget(cfg, per_epoch)
    sched = None
    if cfg.lr_schedule == "onecycle":
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=[g["lr"] for g in groups], total_steps=epochs * per_epoch, pct_start=0.1
        )
    losses = []
    bar = tqdm(range(epochs), desc=f"probe {cfg.probe} on {cfg.feature}", file=sys.stderr)
    for epoch in bar:
        total, steps = 0.0, 0
        probe.train()
        if not train_encoder:
            batches = cached_batches(data, mirrored, cfg.batch_size, gen)
        else:
            method.train(supervised)
            batches = (memory_batches(method, in_memory, cfg, gen, device) if in_memory is not None
                       else encoder_batches(method, shuffled, cfg, gen, device))  # fmt: skip
        for f, kp, m in batches:
            loss = probe_loss(probe, f.to(device), kp.to(device), m.to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            total, steps = total + loss.item(), steps + 1
        losses.append(total / max(steps, 1))
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
        for logger in loggers:
            logger.log_metrics({"probe/train_loss": losses[-1], "epoch": epoch}, step=epoch)
    return losses, epochs


def format_result(r: dict) -> str:
    c = r["config"]
    units = {"mpjpe": "mm", "n_mpjpe": "mm", "p_mpjpe": "mm", "body_mpjpe": "mm", "px_error": "px"}
    lines = [
        "",
        "=" * 72,
        f"css_pose probe: {c['probe']} head on {c['feature']} ({c['encoder']} encoder, mode "
        f"{c['mode']}), target {c['target']}",
        f"  encoder    : {r['checkpoint']}",
        f"  labels     : {r['n_labeled']} of {r['n_train_frames']} training frames "
        + label_source(c, r["seed"]),
        f"  scored on  : {r['n_test_frames']} frames of the {r['test_split']} split",
        f"  train loss : {r['train_loss'][0]:.4f} -> {r['train_loss'][-1]:.4f}"
        if r["train_loss"]
        else "  train loss : (0 epochs)",
        f"  flip train : {c['flip_train']}",
        "  metric          value  mean pose (no image)",
    ]
    for name, value in r["metrics"].items():
        unit = units.get(name, "")
        lines.append(f"  {name:10s} {value:9.3f} {r['mean_pose'][name]:9.3f}  {unit}")
    lines += [f"  result     : {r['run_dir']}/result.json", "=" * 72]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    """Entry point of ``linear_probe.py``; returns the result it writes to result.json."""
    cfg, argv = parse_cli(argv, HELP, load_probe_config)
    if cfg is None:
        return {}
    return run_probe(cfg, argv).result


def run_cli(argv: list[str] | None = None) -> None:
    """Console entry: one-line errors for config and checkpoint mistakes instead of a traceback."""
    from css_pose.checkpoint import CheckpointError

    run_friendly(lambda: main(argv), {CheckpointError: (1, ""), ValueError: (1, "")})
