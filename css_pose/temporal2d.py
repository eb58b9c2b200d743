"""Flow-aligned temporal 2D pose head: what ``python train_head.py temporal.frames=n`` runs.

After Pfister et al., "Flowing ConvNets for Human Pose Estimation in Videos", ICCV 2015
(shared/methods.md section 2). For every labeled (and every test) frame t, the person crops of
frames t - n*step .. t + n*step of the same track (T = 2n + 1 crops, each the crop frame mode
gives for its own frame) go through the per-frame heatmap network (encoder + heatmap head with
spatial fusion) as one batch. The neighbours' heatmaps, every stage, are warped onto frame t by
the DIS flow between the centre crop and theirs (:mod:`css_pose.flow`) and pooled
(:class:`~css_pose.models.heads.ParametricPooling` or
:func:`~css_pose.models.heads.average_pooling`). All crops are person-centred, so the flow between
crops is the limb motion relative to the box: the coordinates the heatmaps live in.

Crops and flows are read and computed once per run and kept in memory (:class:`Clips`). The rest
of the protocol is :mod:`css_pose.heads2d`'s: labels, flip train and flip test, metrics, head.pt.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
from einops import rearrange
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from css_pose.apps.support import (
    epoch_budget,
    frame_videos,
    git_commit,
    prepare_labeled_run,
    save_label_choice,
)
from css_pose.artifacts.runs import run_folder
from css_pose.config import ConfigError
from css_pose.data.clips import Clips, load_clips
from css_pose.flip import mirror_batch, mirror_flows
from css_pose.flow import DIS_PRESETS, SKELETON
from css_pose.heads2d import HeadRun, format_result, score_2d
from css_pose.methods.loggers import build_loggers, finish_loggers
from css_pose.models.pose_model import build_head, save_pose_model
from css_pose.models.temporal_pose import (
    TemporalPoseModel,
    predict_clip,
    temporal_cost,
)
from css_pose.sheets import heatmap_sheet, overlay_sheet, temporal_strip
from css_pose.skeleton import JOINT_GROUPS
from css_pose.viz import save_png

TEMPORAL_CHOICES = {
    "pooling": ("parametric", "average", "none"),
    "flow_preset": (*DIS_PRESETS, SKELETON),
}
TEMPORAL_FLAGS = ("warp", "input_flow", "neighbour_labels")
# The strip picture (images/temporal_strip.png): test clips shown.
STRIP_CLIPS = 4


# --- config ---------------------------------------------------------------------------------------
def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_temporal_config(cfg: DictConfig) -> None:
    """Raise a one-line ConfigError naming the key on a bad ``temporal.*`` value, or on a
    combination the temporal head does not run (another head, input_flow with pooling,
    geometric augmentation)."""
    t = cfg.temporal
    if not _is_int(t.frames) or t.frames < 0:
        raise ConfigError(
            f"temporal.frames={t.frames} must be an integer >= 0 (neighbours each side; "
            "0 = single frame)"
        )
    if not _is_int(t.step) or t.step < 1:
        raise ConfigError(f"temporal.step={t.step} must be an integer >= 1 (frames)")
    for key, allowed in TEMPORAL_CHOICES.items():
        if t[key] not in allowed:
            raise ConfigError(f"temporal.{key}={t[key]} is not one of {'|'.join(allowed)}")
    for key in TEMPORAL_FLAGS:
        if not isinstance(t[key], bool):
            raise ConfigError(f"temporal.{key}={t[key]} is not one of true|false")
    if not isinstance(t.centre_weight, (int, float)) or not 0.0 <= t.centre_weight <= 1.0:
        raise ConfigError(f"temporal.centre_weight={t.centre_weight} must be a number in [0, 1]")
    if not _is_int(t.get("warp_scale", 1)) or t.get("warp_scale", 1) < 1:
        raise ConfigError(f"temporal.warp_scale={t.warp_scale} must be an integer >= 1")
    if not isinstance(t.pool_lr_scale, (int, float)) or t.pool_lr_scale <= 0:
        raise ConfigError(f"temporal.pool_lr_scale={t.pool_lr_scale} must be a number > 0")
    if t.frames == 0:
        return
    if cfg.head != "heatmap":
        raise ConfigError(f"temporal.frames={t.frames} needs head=heatmap, got head={cfg.head}")
    if t.input_flow and (t.frames != 1 or t.pooling != "none"):
        raise ConfigError(
            "temporal.input_flow=true stacks the flows to t - step and t + step on the centre "
            "crop and pools nothing: set temporal.frames=1 temporal.pooling=none"
        )
    if any(v > 0 for v in cfg.augment.values()):
        raise ConfigError(
            "augment.* must be 0 with temporal.frames > 0 (the random affine does not move the "
            "neighbours' crops and flows yet)"
        )


def mirror_clips(
    clip: torch.Tensor,
    flows: torch.Tensor,
    keypoints: torch.Tensor,
    visibility: torch.Tensor,
    which: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mirror the clips where ``which`` (B,) is True: all T crops (B, T, 3, S, S), keypoints
    (B, T, J, 2) px and visibility (B, T, J) as :func:`~css_pose.flip.mirror_batch` (left and
    right joints swap), flows (B, T, 2, S, S) as :func:`mirror_flows`."""
    t = clip.shape[1]
    f, k, v = mirror_batch(
        rearrange(clip, "b t c h w -> (b t) c h w"),
        rearrange(keypoints, "b t j d -> (b t) j d"),
        rearrange(visibility, "b t j -> (b t) j"),
        which.repeat_interleave(t),
    )
    flows = torch.where(which.view(-1, 1, 1, 1, 1), mirror_flows(flows), flows)
    return (
        rearrange(f, "(b t) c h w -> b t c h w", t=t),
        flows,
        rearrange(k, "(b t) j d -> b t j d", t=t),
        rearrange(v, "(b t) j -> b t j", t=t),
    )


def temporal_loss(
    codec,
    outputs: dict,
    keypoints: torch.Tensor,
    visibility: torch.Tensor,
    centre: int,
    neighbour_labels: bool,
) -> dict[str, torch.Tensor]:
    """Codec loss (every stage) of the pooled heatmaps against frame t's labels, plus of the
    per-frame heatmaps against their own frames' labels: the centre's, and with
    ``neighbour_labels`` every frame's (invisible joints weigh 0).

    Args:
        keypoints: (B, T, J, 2) crop px; visibility: (B, T, J); centre: n.
    Returns:
        ``pooled_heatmap_stage{k}`` and ``frame_heatmap_stage{k}`` scalars; the loss is their sum.
    """
    target = codec.encode(keypoints[:, centre], visibility[:, centre])
    terms = {f"pooled_{k}": v for k, v in codec.loss(outputs, target).items()}
    frame_stages = outputs["frame_stages"]
    count = frame_stages[0].shape[1]
    labelled = list(range(count)) if neighbour_labels and count > 1 else [centre]
    maps = [0] if count == 1 else labelled
    stages = [rearrange(s[:, maps], "b t j h w -> (b t) j h w") for s in frame_stages]
    target = codec.encode(
        rearrange(keypoints[:, labelled], "b t j d -> (b t) j d"),
        rearrange(visibility[:, labelled], "b t j -> (b t) j"),
    )
    terms.update({f"frame_{k}": v for k, v in codec.loss({"stages": stages}, target).items()})
    return terms


# --- training -------------------------------------------------------------------------------------
@torch.no_grad()
def cached_stages(
    model: TemporalPoseModel, clips: Clips, mirrored: bool, batch_size: int, device
) -> list[torch.Tensor | None]:
    """Frozen encoder (eval mode): stage maps of every crop of ``clips`` (each clip mirrored with
    ``mirrored``), (N * T, C, h, w) on the CPU, only those the head reads (the last, and the
    mid-level one with fusion; None for the others). Memory: N x T x (sum of their C x h x w) x 4
    bytes per orientation, e.g. 2,520 x 3 crops of 32 px through the ConvNet: 89 MiB."""
    model.encoder.eval()
    head = model.head
    keep = {len(model.encoder.stage_channels) - 1}
    if head.fusion is not None:
        keep.add(head.mid_level_index)
    chunks = []
    for idx in torch.arange(len(clips)).split(batch_size):
        clip, flows = clips.images(idx), clips.flows[idx]
        if mirrored:
            clip, flows = clip.flip(-1), mirror_flows(flows)
        stages = model.encode(model.encoder_input(clip.to(device), flows.to(device)))
        chunks.append([s.cpu() if i in keep else None for i, s in enumerate(stages)])
    return [torch.cat([c[i] for c in chunks]) if i in keep else None for i in range(len(chunks[0]))]


def _pick(cache: list, idx: torch.Tensor, which: torch.Tensor, frames: int, device) -> list:
    """Cached stage maps of clips ``idx`` (B,), mirrored where ``which`` (B,), on ``device``."""
    rows = (idx[:, None] * frames + torch.arange(frames)).flatten()
    sel = which.repeat_interleave(frames).view(-1, 1, 1, 1)
    return [
        None if p is None else torch.where(sel, m[rows], p[rows]).to(device)
        for p, m in zip(*cache, strict=True)
    ]


# Longer than 60 lines: the training loop, read top to bottom.
def train_temporal(
    model: TemporalPoseModel, codec, clips: Clips, cfg: DictConfig, device, loggers
) -> tuple[list[float], int, int]:
    """Train the head and the pooling (and the encoder with ``encoder=finetune``, the flow conv
    with ``input_flow``) on the labeled clips; half of the clips mirrored with ``flip_train``.

    Returns:
        (mean loss per epoch, epochs, optimiser steps per epoch).
    """
    finetune = cfg.encoder == "finetune"
    model.encoder.requires_grad_(finetune)
    cache = None
    if not finetune and not model.input_flow:
        # Frozen: every crop's stage maps (and its mirror's) are computed once.
        plain = cached_stages(model, clips, False, cfg.batch_size, device)
        mirrored = (
            cached_stages(model, clips, True, cfg.batch_size, device) if cfg.flip_train else plain
        )
        cache = [plain, mirrored]
    named = list(model.temporal.named_parameters())
    pool = [p for name, p in named if name.startswith("pool.")]
    other = [p for name, p in named if not name.startswith("pool.")]
    groups = [{"params": [*model.head.parameters(), *other], "lr": cfg.lr}]
    if pool:
        groups.append({"params": pool, "lr": cfg.lr * cfg.temporal.pool_lr_scale})
    if finetune:
        groups.append({"params": model.encoder.parameters(), "lr": cfg.lr * cfg.encoder_lr_scale})
    opt = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
    per_epoch = -(-len(clips) // cfg.batch_size)
    epochs = epoch_budget(cfg, per_epoch)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=[g["lr"] for g in groups], total_steps=max(epochs * per_epoch, 1), pct_start=0.1
    )
    gen = torch.Generator().manual_seed(cfg.seed)
    losses: list[float] = []
    bar = tqdm(range(epochs), desc=f"temporal head n={model.centre}", file=sys.stderr)
    for epoch in bar:
        model.train()
        model.encoder.eval()  # BatchNorm statistics stay as pretrained
        total = 0.0
        for idx in torch.randperm(len(clips), generator=gen).split(cfg.batch_size):
            which = (torch.rand(len(idx), generator=gen) < 0.5) & cfg.flip_train
            clip, flows, kp, vis = mirror_clips(
                clips.images(idx),
                clips.flows[idx],
                clips.keypoints[idx],
                clips.visibility[idx],
                which,
            )
            flows = flows.to(device)
            if cache is None:
                outputs = model(clip.to(device), flows)
            else:
                outputs = model.decode_stages(
                    _pick(cache, idx, which, model.num_frames, device), flows
                )
            terms = temporal_loss(
                codec,
                outputs,
                kp.to(device),
                vis.to(device),
                model.centre,
                cfg.temporal.neighbour_labels,
            )
            loss = sum(terms.values())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
        losses.append(total / per_epoch)
        bar.set_postfix(loss=f"{losses[-1]:.4g}")
        for logger in loggers:
            logger.log_metrics({"train/loss": losses[-1], "epoch": epoch}, step=epoch)
    return losses, epochs, per_epoch


# --- evaluation and the run -----------------------------------------------------------------------
@torch.no_grad()
def predict_clips(
    model: TemporalPoseModel, codec, clips: Clips, flip_test: bool, batch_size: int, device
) -> torch.Tensor:
    """(N, J, 2) crop px keypoints of the centre frame of every clip, on the CPU."""
    preds = []
    for idx in torch.arange(len(clips)).split(batch_size):
        clip, flows = clips.images(idx).to(device), clips.flows[idx].to(device)
        preds.append(predict_clip(model, codec, clip, flows, flip_test)[0].cpu())
    return torch.cat(preds)


def _save_images(model, clips: Clips, pred, gt, visible, cfg, run_dir: Path, device) -> dict:
    """The overlay and heatmap sheets of evenly spread test clips' centre crops; {key: path}."""
    n = len(clips)
    if not n or cfg.num_images < 1:
        return {}
    idx = torch.from_numpy(np.linspace(0, n - 1, min(cfg.num_images, n)).round().astype(int))
    idx = idx.unique()
    centre = clips.images(idx)[:, model.centre]
    sheet = overlay_sheet(list(centre), pred[idx], gt[idx], visible[idx])
    model.eval()
    with torch.no_grad():
        heat = model(clips.images(idx).to(device), clips.flows[idx].to(device))["heatmaps"]
    return {
        "test_predictions": save_png(run_dir / "images" / "test_predictions.png", sheet),
        "test_heatmaps": save_png(
            run_dir / "images" / "test_heatmaps.png",
            heatmap_sheet(centre, heat.cpu(), ncols=cfg.num_images // 2 or 1),
        ),
    }


def _save_strip(model, clips: Clips, cfg, run_dir: Path, device) -> dict:
    """images/temporal_strip.png for up to STRIP_CLIPS evenly spread test clips; {key: path}
    (nothing for ``input_flow`` models, which have no per-frame heatmaps)."""
    count = min(STRIP_CLIPS, cfg.num_images, len(clips))
    if count < 1 or model.input_flow:
        return {}
    idx = torch.from_numpy(np.linspace(0, len(clips) - 1, count).round().astype(int)).unique()
    clip, flows = clips.images(idx).to(device), clips.flows[idx].float().to(device)
    strip = temporal_strip(model, clip, flows, JOINT_GROUPS["wrists"][0], cfg.temporal.step)
    return {"temporal_strip": save_png(run_dir / "images" / "temporal_strip.png", strip)}


def run_temporal_head(cfg: DictConfig, argv: list[str] | None = None) -> HeadRun:
    """:func:`css_pose.heads2d.run_head` with ``temporal.frames`` > 0: read the labeled and test
    clips and their flows once, train, score the centre frames on the test split, write
    result.json (``flow_seconds``: the flow precompute of each part), images and head.pt.

    Raises:
        CheckpointError: the checkpoint file is unusable. ValueError: no per-frame crops.
    """
    run = prepare_labeled_run(cfg, argv)
    cfg, device, t = run.cfg, run.device, run.cfg.temporal
    head, codec = build_head(cfg, run.method.encoder)
    model = TemporalPoseModel.from_config(run.method.encoder, head, t).to(device)
    read = dict(frames=t.frames, step=t.step, preset=t.flow_preset)
    train = load_clips(run.train_loader.dataset, run.chosen.tolist(), desc="labeled clips", **read)
    test_set = run.test_loader.dataset
    test = load_clips(test_set, range(len(test_set)), desc="test clips", **read)

    run_dir = run_folder(cfg.run_dir, "head")
    save_label_choice(run_dir, cfg, run.train_loader.dataset, run.chosen)
    hparams = OmegaConf.to_container(cfg, resolve=True)
    loggers = build_loggers(cfg, run_dir, hparams)
    losses, epochs, per_epoch = train_temporal(model, codec, train, cfg, device, loggers)

    pred = predict_clips(model, codec, test, cfg.flip_test, cfg.batch_size, device)
    gt, visible = test.keypoints[:, model.centre], test.visibility[:, model.centre] > 0
    metrics = score_2d(pred, gt, visible, cfg.pck_alphas)
    images = _save_images(model, test, pred, gt, visible, cfg, run_dir, device)
    images.update(_save_strip(model, test, cfg, run_dir, device))
    result = {
        "checkpoint": run.source,
        "config": hparams,
        "seed": cfg.seed,
        "n_train_frames": len(run.train_loader.dataset),
        "n_labeled": len(run.labeled),
        "labeled_videos": sorted(set(frame_videos(run.train_loader.dataset, run.chosen.tolist()))),
        "test_split": run.test_split,
        "n_test_frames": len(pred),
        "stride": codec.stride,
        "epochs": epochs,
        "steps": epochs * per_epoch,
        "train_loss": losses,
        "metrics": metrics,
        "cost": temporal_cost(model, model.encoder.in_size),
        "flow_seconds": {"labeled": train.flow_seconds, "test": test.flow_seconds},
        "flows_cached": {"labeled": train.flows_cached, "test": test.flows_cached},
        "git_commit": git_commit(),
    }
    (run_dir / "result.json").write_text(json.dumps(result, indent=2))
    box_pad = float(getattr(run.train_loader.dataset, "box_pad", 1.25))
    trained = (train.visibility[:, model.centre] > 0).any(0).tolist()
    save_pose_model(run_dir / "head.pt", model, cfg, box_pad, metrics, run.source, trained)
    finish_loggers(loggers, run.test_split, metrics, images, epochs)
    result["run_dir"] = str(run_dir)
    print(format_temporal_result(result))
    return HeadRun(result, model, codec)


def format_temporal_result(r: dict) -> str:
    """:func:`~css_pose.heads2d.format_result` with a line on the clips and the flow time."""
    t, flow = r["config"]["temporal"], r["flow_seconds"]
    cached = r.get("flows_cached", {})

    def seconds(part: str) -> str:
        return "read from the cache" if cached.get(part) else f"{flow[part]:.2f} s"

    per_clip = f" per clip of {2 * t['frames'] + 1} crops (flow not counted)"
    lines = format_result(r).replace(" per crop", per_clip).split("\n")
    kind = "flow at the input" if t["input_flow"] else f"{t['pooling']} pooling"
    lines.insert(
        -2,
        f"  temporal   : n={t['frames']} step {t['step']}, {kind}, warp {t['warp']}; DIS "
        f"{t['flow_preset']} flow precompute: labeled {seconds('labeled')}, test "
        f"{seconds('test')}",
    )
    return "\n".join(lines)
