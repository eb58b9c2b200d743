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
from css_pose.flip import flip_joints, mirror_batch
from css_pose.methods.loggers import build_loggers, finish_loggers
from css_pose.metrics import body_frame, mpjpe, n_mpjpe, p_mpjpe, pck_tight, root_relative

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


# --- model ----------------------------------------------------------------------------------------
class Standardize(nn.Module):
    """(x - mean) / std per column, with fixed statistics of the training labels or features.

    Args:
        x: (N, D) samples. weight: (N, D) 0/1, entries to count (default all).
        min_std: floor of std, so that a constant column (the root joint) stays finite.
    """

    def __init__(self, x: torch.Tensor, min_std: float, weight: torch.Tensor | None = None):
        super().__init__()
        w = torch.ones_like(x) if weight is None else weight.to(x.dtype)
        n = w.sum(0).clamp_min(1)
        mean = (x * w).sum(0) / n
        var = ((x - mean).pow(2) * w).sum(0) / n
        self.register_buffer("mean", mean)
        self.register_buffer("std", var.sqrt().clamp_min(min_std))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y * self.std + self.mean


def make_head(dim_in: int, dim_out: int, kind: str, hidden: int = 256) -> nn.Module:
    """``linear``: one layer; ``mlp``: 2 hidden layers of ``hidden`` units with ReLU. (B, D) -> (B, out)."""
    if kind == "linear":
        return nn.Linear(dim_in, dim_out)
    if kind == "mlp":
        return nn.Sequential(
            nn.Linear(dim_in, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, dim_out),
        )
    raise ValueError(f"unknown head {kind!r}; choose linear or mlp")


class PoseProbe(nn.Module):
    """Standardised feature -> head -> joints in label units.

    ``forward`` maps features (B, D) to standardised targets (B, J*k); ``joints`` to (B, J, k)
    in mm (3D, body-frame 3D) or crop px (2D).
    """

    def __init__(self, head: nn.Module, feat_norm: Standardize, target_norm: Standardize, k: int):
        super().__init__()
        self.head, self.feat_norm, self.target_norm, self.k = head, feat_norm, target_norm, k

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.head(self.feat_norm(feats))

    def joints(self, feats: torch.Tensor) -> torch.Tensor:
        flat = self.target_norm.inverse(self(feats))
        return rearrange(flat, "b (j k) -> b j k", k=self.k)


def targets_of(batch: dict, target: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels of a frame-mode batch: (B, J, k) joints and (B, J) bool mask of the joints to fit.

    3d: root-relative ``keypoints_3d`` in camera coordinates, mm, every joint of a labeled sample.
    body3d: the same pose in its body frame (:func:`~css_pose.metrics.body_frame`), mm. 2d:
    ``keypoints_2d``, crop px, visible joints.
    """
    labeled = batch["has_labels"].bool()[:, None]  # (B, 1)
    if target in ("3d", "body3d"):
        kp = root_relative(batch["keypoints_3d"][:, 0])
        if target == "body3d":
            kp = body_frame(kp)
        return kp, labeled.expand(kp.shape[:2])
    return batch["keypoints_2d"][:, 0], batch["visibility"][:, 0].bool() & labeled


def compute_metrics(
    pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor, target: str, pck_alpha: float = 0.1
) -> dict[str, float]:
    """Scores of predictions (B, J, k) against labels (B, J, k) over the mask (B, J) bool.

    2d (crop px): ``pck`` at ``pck_alpha``, ``pck@0.1``, ``pck@0.2``
    (:func:`~css_pose.metrics.pck_tight`: reference max(w, h) of the tight box of the visible GT
    joints, pooled over visible joints and frames) and ``px_error`` (mean px). 3d (root-relative
    camera frame, mm): ``mpjpe``, ``n_mpjpe``, ``p_mpjpe``. body3d (body frame, mm):
    ``body_mpjpe``. Definitions: docs/metrics.md.
    """
    if target == "3d":
        return {
            "mpjpe": float(mpjpe(pred, gt, mask)),
            "n_mpjpe": float(n_mpjpe(pred, gt, mask)),
            "p_mpjpe": float(p_mpjpe(pred, gt, mask)),
        }
    if target == "body3d":
        return {"body_mpjpe": float(mpjpe(pred, gt, mask))}
    out = {"pck": float(pck_tight(pred, gt, mask, pck_alpha))}
    out.update({f"pck@{a:g}": float(pck_tight(pred, gt, mask, a)) for a in (0.1, 0.2)})
    out["px_error"] = float(torch.linalg.vector_norm(pred - gt, dim=-1)[mask].mean())
    return out


def mirror_frame_batch(batch: dict, which: torch.Tensor) -> dict:
    """A frame-mode batch with the samples where ``which`` (B,) is True mirrored left-right.

    The crop flips and its 2D keypoints go to x -> W - 1 - x with left and right joints swapped
    (:func:`css_pose.flip.mirror_batch`); the 3D pose goes to x -> -x in camera coordinates with
    the same swap (:func:`css_pose.flip.flip_joints`). Targets read from the result by
    :func:`targets_of` (the body frame too) are those of the mirrored crops.
    """
    frames, kp2, vis = mirror_batch(
        batch["frames"][:, 0], batch["keypoints_2d"][:, 0], batch["visibility"][:, 0], which
    )
    kp3 = batch["keypoints_3d"][:, 0]
    _, _, kp3_mirrored = flip_joints(kp2.numpy(), vis.numpy(), kp3.numpy())
    kp3 = torch.where(which.view(-1, 1, 1), torch.from_numpy(kp3_mirrored), kp3)
    mirrored = {"frames": frames, "keypoints_2d": kp2, "visibility": vis, "keypoints_3d": kp3}
    return {**batch, **{k: rearrange(v, "b ... -> b 1 ...") for k, v in mirrored.items()}}


# --- training -------------------------------------------------------------------------------------
@dataclass
class ProbeRun:
    """What :func:`run_probe` returns: the result dict (also result.json), the encoder's method
    module and the fitted probe."""

    result: dict
    method: nn.Module
    probe: PoseProbe
    losses: list[float] = field(default_factory=list)


def _features(method, frames: torch.Tensor, feature: str) -> torch.Tensor:
    return method.features(rearrange(frames, "b 1 c h w -> b c h w"))[feature]


@torch.no_grad()
def _collect(
    method,
    loader,
    feature: str,
    target: str,
    device,
    train_mode: bool = False,
    mirror: bool = False,
) -> tuple[torch.Tensor, ...]:
    """Features (N, D) and labels (N, J, k), masks (N, J) of every frame of ``loader``; with
    ``mirror``, of the mirrored frames (:func:`mirror_frame_batch`)."""
    method.train(train_mode)
    feats, kps, masks = [], [], []
    for batch in loader:
        if mirror:
            batch = mirror_frame_batch(batch, torch.ones(len(batch["frames"]), dtype=torch.bool))
        feats.append(_features(method, batch["frames"].to(device), feature).float().cpu())
        kp, m = targets_of(batch, target)
        kps.append(kp.float())
        masks.append(m)
    return torch.cat(feats), torch.cat(kps), torch.cat(masks)


def _coin(n: int, gen: torch.Generator) -> torch.Tensor:
    """(n,) bool, each True with probability 1/2: which samples to mirror."""
    return torch.rand(n, generator=gen) < 0.5


def _choose(which: torch.Tensor, plain: torch.Tensor, mirrored: torch.Tensor) -> torch.Tensor:
    """Per sample, ``mirrored`` where ``which`` (B,) is True, else ``plain`` (B, ...)."""
    return torch.where(which.view(-1, *[1] * (plain.ndim - 1)), mirrored, plain)


def _encoder_batches(method, loader, cfg: DictConfig, gen: torch.Generator, device):
    """Training batches (features, labels, masks) through the trained encoder; with
    ``cfg.flip_train`` each crop is mirrored with its labels with probability 1/2."""
    for b in loader:
        if cfg.flip_train:
            b = mirror_frame_batch(b, _coin(len(b["frames"]), gen))
        yield _features(method, b["frames"].to(device), cfg.feature), *targets_of(b, cfg.target)


# Labeled crops up to this size are held in memory while the encoder trains (4 GiB: 25,200 crops at
# 32 px take 77 MB as uint8); beyond it each epoch reads them through the DataLoader again.
IN_MEMORY_BYTES = 4 * 2**30


@dataclass
class LabeledFrames:
    """Every labeled crop of a run in memory, with the targets of the crop and of its mirror image.

    frames (N, 3, S, S): uint8 when the crops are exact multiples of 1/255 (crop-store frames
    are), else float32 in [0, 1]. kp / mirror_kp (N, J, k) and mask / mirror_mask (N, J) bool:
    :func:`targets_of` of the crop and of the mirrored crop (:func:`mirror_frame_batch`).
    """

    frames: torch.Tensor
    kp: torch.Tensor
    mask: torch.Tensor
    mirror_kp: torch.Tensor
    mirror_mask: torch.Tensor

    def images(self, idx: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) float32 in [0, 1] of the listed crops."""
        x = self.frames[idx]
        return x.float().div_(255.0) if x.dtype == torch.uint8 else x


def labeled_in_memory(loader, target: str) -> LabeledFrames | None:
    """:class:`LabeledFrames` of every frame of ``loader`` (in order), or None when the crops would
    take more than ``IN_MEMORY_BYTES``. Reading crops once instead of every epoch takes the loader
    out of the training step (docs/benchmarks.md, "The ceiling")."""
    dataset = loader.dataset
    if not len(dataset):
        return None
    size = int(dataset[0]["frames"].shape[-1])
    if len(dataset) * 3 * size * size > IN_MEMORY_BYTES:
        return None
    parts: dict[str, list[torch.Tensor]] = {}
    exact = True
    for batch in loader:
        x = batch["frames"][:, 0]
        as_bytes = x.mul(255.0).round_()
        exact = exact and torch.equal(as_bytes.div(255.0), x)
        parts.setdefault("bytes", []).append(as_bytes.byte())
        parts.setdefault("float", []).append(x)
        mirrored = mirror_frame_batch(batch, torch.ones(len(x), dtype=torch.bool))
        for prefix, b in (("", batch), ("mirror_", mirrored)):
            kp, mask = targets_of(b, target)
            parts.setdefault(prefix + "kp", []).append(kp.float())
            parts.setdefault(prefix + "mask", []).append(mask)
    out = {k: torch.cat(v) for k, v in parts.items() if k not in ("bytes", "float")}
    frames = torch.cat(parts["bytes"] if exact else parts["float"])
    return LabeledFrames(frames, **out)


def _memory_batches(method, data: LabeledFrames, cfg: DictConfig, gen: torch.Generator, device):
    """Shuffled training batches (features, labels, masks) from crops in memory; with
    ``cfg.flip_train`` each crop is mirrored with its labels with probability 1/2 (the same
    mirroring as :func:`_encoder_batches`)."""
    for idx in torch.randperm(len(data.frames), generator=gen).split(cfg.batch_size):
        x, kp, mask = data.images(idx), data.kp[idx], data.mask[idx]
        if cfg.flip_train:
            which = _coin(len(idx), gen)
            x = _choose(which, x, x.flip(-1))
            kp = _choose(which, kp, data.mirror_kp[idx])
            mask = _choose(which, mask, data.mirror_mask[idx])
        feats = method.features(x.to(device))[cfg.feature]
        yield feats, kp, mask


def _cached_batches(plain: tuple, mirrored: tuple | None, batch_size: int, gen: torch.Generator):
    """Shuffled training batches of precomputed (features, labels, masks); with ``mirrored`` (the
    same for the mirrored crops) each sample is taken mirrored with probability 1/2."""
    for i in torch.randperm(len(plain[0]), generator=gen).split(batch_size):
        if mirrored is None:
            yield tuple(t[i] for t in plain)
        else:
            which = _coin(len(i), gen)
            yield tuple(_choose(which, a[i], m[i]) for a, m in zip(plain, mirrored, strict=True))


def _loss(probe: PoseProbe, feats, kp, mask) -> torch.Tensor:
    """MSE in standardised label units over the masked joints."""
    err = (probe(feats) - probe.target_norm(rearrange(kp, "b j k -> b (j k)"))).pow(2)
    err = rearrange(err, "b (j k) -> b j k", k=probe.k)
    w = mask[..., None].to(err.dtype).expand_as(err)
    return (err * w).sum() / w.sum().clamp_min(1)


def check_feature(method, feature: str, size: int) -> int:
    """Dimension of ``feature``; ValueError naming the available ones when the method lacks it."""
    was_training = method.training
    method.eval()
    with torch.no_grad():
        device = next(method.parameters()).device
        feats = method.features(torch.rand(1, 3, size, size, device=device))
    method.train(was_training)
    if feature not in feats:
        raise ValueError(
            f"feature={feature} is not produced by method {method.method_cfg.name}; "
            f"available features: {', '.join(sorted(feats))}"
        )
    return feats[feature].shape[-1]


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
    test_feats, test_kps, test_masks = _collect(
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
    feats, kps, masks = _collect(method, in_order, cfg.feature, cfg.target, device, supervised)
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
        mirrored = _collect(method, in_order, cfg.feature, cfg.target, device, mirror=True)
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
            batches = _cached_batches(data, mirrored, cfg.batch_size, gen)
        else:
            method.train(supervised)
            batches = (_memory_batches(method, in_memory, cfg, gen, device) if in_memory is not None
                       else _encoder_batches(method, shuffled, cfg, gen, device))  # fmt: skip
        for f, kp, m in batches:
            loss = _loss(probe, f.to(device), kp.to(device), m.to(device))
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
