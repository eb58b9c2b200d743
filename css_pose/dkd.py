"""Training dynamic kernel distillation on clips (issue 17; the model: :mod:`css_pose.models.dkd`).

The large initializer is a trained, frozen 2D heatmap model (``train_head.py``'s ``head.pt``). Its
heatmaps of each clip's first frame are computed once (:func:`initial_heatmaps`). The small
network then learns to carry them through the clip (:func:`train_dkd`):
- the loss is the heatmap codec's loss on every later frame;
- with ``adv_weight`` > 0, a :class:`~css_pose.models.dkd.TemporalDiscriminator` is trained
  against it. It sees the ground-truth target sequences as real and the predicted ones as fake,
  with hinge losses, and the small network's loss gains ``adv_weight`` x its adversarial loss.
  The predictions reach it as Gaussians at their soft-argmax joints
  (:func:`~css_pose.models.dkd.soft_keypoint_maps`), the form of the targets. Raw predicted
  heatmaps differ from the targets in shape (a sigmoid's background), and on them the
  discriminator won outright (docs/benchmarks.md), judging looks instead of motion.

Both players' losses are logged per step. When the discriminator wins outright, the training
stops with :class:`DiscriminatorWinsError` and says what to change. It wins outright when its
loss stays below ``win_loss`` for ``win_steps`` steps in a row.

Clips: :class:`~css_pose.data.clips.Clips` (crops (N, T, 3, S, S) uint8, keypoints (N, T, J, 2)
crop px, visibility (N, T, J)), read by :func:`css_pose.data.clips.load_clips`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from css_pose.apps.support import frame_datamodule
from css_pose.checkpoint import CheckpointError, read_torch_file, save_torch_file
from css_pose.config import compose_config, configure_threads
from css_pose.data.clips import load_clips
from css_pose.metrics import pck_tight
from css_pose.models.dkd import (
    DKDModel,
    DKDStream,
    TemporalDiscriminator,
    dkd_section,
    hinge_losses,
    soft_keypoint_maps,
)
from css_pose.models.pose_model import load_pose_model
from css_pose.skeleton import NUM_JOINTS


class DiscriminatorWinsError(RuntimeError):
    """The temporal discriminator separated real from predicted sequences for too long."""


@torch.no_grad()
def initial_heatmaps(large, frames: torch.Tensor, batch: int, device) -> torch.Tensor:
    """The initializer's heatmaps (N, J, h, w) of crops (N, 3, S, S) uint8 or float in [0, 1]."""
    large.eval()
    out = []
    for chunk in frames.split(batch):
        x = chunk.float().div(255.0) if chunk.dtype == torch.uint8 else chunk
        out.append(large(x.to(device))["heatmaps"].float().cpu())
    return torch.cat(out)


# Longer than 60 lines: the training loop with both players, read top to bottom.
def train_dkd(
    model: DKDModel,
    clips,
    first: torch.Tensor,
    codec,
    steps: int,
    batch: int = 32,
    lr: float = 2e-3,
    seed: int = 0,
    adv_weight: float = 0.0,
    win_loss: float = 0.05,
    win_steps: int = 200,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> dict[str, list[float]]:
    """Train ``model`` (and, with ``adv_weight`` > 0, a discriminator) for ``steps`` steps of
    ``batch`` clips; ``first`` (N, J, h, w) holds the initializer's heatmaps of each clip's frame
    0. AdamW, cosine schedule, random mirroring off (the initializer's heatmaps are of the
    unmirrored crop). Returns the per-step losses: ``pose``, and ``disc`` and ``adversarial``
    when the discriminator is on.

    Raises:
        DiscriminatorWinsError: its loss stayed below ``win_loss`` for ``win_steps`` steps.
    """
    gen = torch.Generator().manual_seed(seed)
    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1))
    disc = d_opt = None
    if adv_weight > 0:
        disc = TemporalDiscriminator(model.joints).to(device)
        d_opt = torch.optim.Adam(disc.parameters(), lr=lr, betas=(0.5, 0.9))
    history: dict[str, list[float]] = {"pose": []}
    if disc is not None:
        history.update(disc=[], adversarial=[])
    winning = 0
    bar = tqdm(range(steps), desc="DKD", file=sys.stderr, disable=not progress)
    for _ in bar:
        idx = torch.randint(len(clips), (batch,), generator=gen)
        clip = clips.images(idx).to(device)
        kp, vis = clips.keypoints[idx].to(device), clips.visibility[idx].to(device)
        pred = model.forward_clip(clip, first[idx].to(device))  # (B, T, J, h, w)
        later = pred[:, 1:].flatten(0, 1)
        targets = codec.encode(kp[:, 1:].flatten(0, 1), vis[:, 1:].flatten(0, 1))
        pose = sum(codec.loss({"heatmaps": later}, targets).values())
        loss = pose
        if disc is not None:
            real = targets["heatmaps"].unflatten(0, (batch, -1))
            fake = soft_keypoint_maps(later, targets["heatmap_weights"], codec.sigma)
            fake = fake.unflatten(0, (batch, -1))
            d_loss, _ = hinge_losses(disc(real), disc(fake.detach()))
            d_opt.zero_grad(set_to_none=True)
            d_loss.backward()
            d_opt.step()
            _, adversarial = hinge_losses(disc(real).detach(), disc(fake))
            loss = pose + adv_weight * adversarial
            history["disc"].append(d_loss.item())
            history["adversarial"].append(adversarial.item())
            winning = winning + 1 if d_loss.item() < win_loss else 0
            if winning >= win_steps:
                raise DiscriminatorWinsError(
                    f"the temporal discriminator's loss stayed below {win_loss} for {win_steps} "
                    f"steps (last {d_loss.item():.4f}; the pose network's adversarial loss "
                    f"{adversarial.item():.3f}): it tells predicted from true sequences "
                    "apart and its gradient no longer helps; lower adv_weight (now "
                    f"{adv_weight}) or train without it (adv_weight=0)"
                )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        history["pose"].append(pose.item())
        bar.set_postfix(pose=f"{pose.item():.4g}")
    return history


def train_frames(
    net, clips, codec, steps: int, batch: int = 32, lr: float = 2e-3, seed: int = 0,
    device: str | torch.device = "cpu", progress: bool = True,
) -> list[float]:  # fmt: skip
    """Train a single-frame heatmap network ``net`` (crops -> {"heatmaps"}) on every frame of
    the clips, batches of ``batch`` x T crops: the small encoder alone, for comparison."""
    gen = torch.Generator().manual_seed(seed)
    net.to(device).train()
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1))
    losses = []
    for _ in tqdm(range(steps), desc="small alone", file=sys.stderr, disable=not progress):
        idx = torch.randint(len(clips), (batch,), generator=gen)
        x = clips.images(idx).flatten(0, 1).to(device)
        kp = clips.keypoints[idx].flatten(0, 1).to(device)
        vis = clips.visibility[idx].flatten(0, 1).to(device)
        loss = sum(codec.loss(net(x), codec.encode(kp, vis)).values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    return losses


def clip_rows(dataset, n: int, count: int, seed: int, fold=None) -> list[int]:
    """``count`` frame-mode rows (drawn with ``seed``) whose clip t-n..t+n lies in its track;
    with ``fold`` (a function of the video index), only rows of videos where it is true."""
    ok = [i for i, (k, t) in enumerate(dataset.frames.tolist())
          if dataset.tracks[k].start <= t - n and t + n < dataset.tracks[k].stop
          and (fold is None or fold(dataset.tracks[k].video))]  # fmt: skip
    pick = np.random.default_rng(seed).permutation(len(ok))[:count]
    return sorted(ok[i] for i in pick)


def score(heatmaps: torch.Tensor, codec, clips) -> dict:
    """PCK@0.2 and jitter of heatmaps (N, T, J, h, w) against the clips' labels; PCK@0.2 at each
    frame of the clips (frame 0 first: DKD's initializer frame), and pooled over the first k
    frames of every clip for k = 1..T (for DKD: a stream that runs the initializer every k
    frames)."""
    n, t = heatmaps.shape[:2]
    kp, _ = codec.decode({"heatmaps": heatmaps.flatten(0, 1)})
    kp = kp.view(n, t, NUM_JOINTS, 2)
    gt, vis = clips.keypoints, clips.visibility > 0
    pck = float(pck_tight(kp.flatten(0, 1), gt.flatten(0, 1), vis.flatten(0, 1), 0.2))
    both = vis[:, 2:] & vis[:, 1:-1] & vis[:, :-2]

    def jitter(k):
        return float((k[:, 2:] - 2 * k[:, 1:-1] + k[:, :-2]).norm(dim=-1)[both].mean())

    by_frame = [float(pck_tight(kp[:, i], gt[:, i], vis[:, i], 0.2)) for i in range(t)]
    first = [float(pck_tight(kp[:, :k].flatten(0, 1), gt[:, :k].flatten(0, 1),
                             vis[:, :k].flatten(0, 1), 0.2)) for k in range(1, t + 1)]  # fmt: skip
    return {"pck@0.2": pck, "jitter_px": jitter(kp), "gt_jitter_px": jitter(gt),
            "pck@0.2_by_frame": by_frame, "pck@0.2_first_frames": first}  # fmt: skip


def run_dkd(model, large_maps_fn, clips, interval: int) -> tuple[torch.Tensor, float, int]:
    """Stream every test clip (all clips at once, frame by frame): heatmaps (N, T, J, h, w),
    seconds, frames that ran the initializer."""
    stream = DKDStream(model.eval(), large_maps_fn, interval=interval)
    images = clips.images(torch.arange(len(clips)))
    start = time.perf_counter()
    maps = [stream.step(images[:, t]) for t in range(images.shape[1])]
    return torch.stack(maps, 1), time.perf_counter() - start, stream.initialised


def parse(argv=None):
    p = argparse.ArgumentParser(
        prog="css-pose dkd",
        description="Train a DKD model file from a trained 2D heatmap model (the initializer) on "
        "clips of a labelled video folder; css-pose predict --model runs it frame by frame.",
    )
    p.add_argument("--large", type=Path, required=True, help="the initializer: train_head.py's "
                   "head.pt (a heatmap head)")  # fmt: skip
    p.add_argument("--root", type=Path, default=Path("data/synthetic-bench"),
                   help="labelled videos (the benchmark set by default)")  # fmt: skip
    p.add_argument("--out", type=Path, required=True, help="the DKD model file to write")
    p.add_argument("--frames", type=int, default=4, help="n: training clips of 2n + 1 frames")
    p.add_argument("--train-clips", type=int, default=3000)
    p.add_argument("--test-clips", type=int, default=600)
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch", type=int, default=16, help="clips per step")
    p.add_argument("--width", type=int, default=16,
                   help="small encoder channels; 16 and 3,000 steps were chosen on held-out "
                   "training videos (docs/benchmarks.md)")  # fmt: skip
    p.add_argument("--adv-weight", type=float, default=0.0,
                   help="the temporal discriminator's weight; 0 (default): none. 0.01 scored "
                   "1.7 PCK@0.2 points lower on the benchmark set (docs/benchmarks.md)")  # fmt: skip
    p.add_argument("--interval", type=int, default=None,
                   help="frames between initializer runs at prediction (default 2n + 1)")  # fmt: skip
    p.add_argument("--min-confidence", type=float, default=0.0,
                   help="re-run the initializer when the mean peak falls below this")  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    return p.parse_args(argv)


def clip_data(large_payload: dict, root: Path, n: int, train_clips: int, test_clips: int,
              validation: bool = False):  # fmt: skip
    """Training and test clips of 2n + 1 frames from the labelled videos under ``root``, at the
    initializer's crop size (the frame-mode data of a probe run). With ``validation``, both come
    from the training videos: every fifth video (index % 5 == 0) gives the held-out clips, the
    others the training clips, so settings can be chosen without seeing the test videos."""
    size = large_payload["crop"]["size"]
    cfg = compose_config("probe", ["ckpt=none", f"data.root={root}", f"data.size={size}",
                                   "data.num_workers=0"])  # fmt: skip
    dm = frame_datamodule(cfg)
    splits = ("train", "train") if validation else ("train", "test")
    sets = [dm.probe_dataloader(split).dataset for split in splits]
    folds = (lambda v: v % 5 != 0, lambda v: v % 5 == 0) if validation else (None, None)
    read = dict(frames=n, step=1, preset="medium")
    return tuple(
        load_clips(data, clip_rows(data, n, count, seed, fold), desc=f"{name} clips", **read)
        for data, count, seed, fold, name in zip(
            sets, (train_clips, test_clips), (0, 1), folds,
            ("train", "validation" if validation else "test"), strict=True)
    )  # fmt: skip


def main(argv=None) -> dict:
    """``css-pose dkd``: train, score on the test clips against the initializer, write the file."""
    args = parse(argv)
    configure_threads(args.threads)
    large, codec, payload = load_pose_model(args.large, "cpu")
    if not hasattr(codec, "sigma"):
        raise ValueError(f"{args.large}: DKD needs a heatmap head as its initializer "
                         f"(train_head.py head=heatmap), got {type(codec).__name__}")  # fmt: skip
    train, test = clip_data(payload, args.root, args.frames, args.train_clips, args.test_clips)
    t = 2 * args.frames + 1
    first = initial_heatmaps(large, train.frames[:, 0], 64, "cpu")
    torch.manual_seed(args.seed)
    model = DKDModel(NUM_JOINTS, args.width)
    history = train_dkd(model, train, first, codec, args.steps, args.batch, seed=args.seed,
                        adv_weight=args.adv_weight)  # fmt: skip
    interval = args.interval or t
    maps, _, _ = run_dkd(model, lambda x: large(x)["heatmaps"], test, interval)
    with torch.no_grad():
        images = test.images(torch.arange(len(test)))
        every = torch.stack([large(images[:, i])["heatmaps"] for i in range(t)], 1)
    metrics = {"dkd": score(maps, codec, test), "initializer_every_frame": score(every, codec, test),
               "test_clips": len(test), "clip_frames": t, "interval": interval}  # fmt: skip
    out = read_torch_file(args.large, "model")
    out["dkd"] = dkd_section(model, interval, args.min_confidence, metrics)
    out["dkd"]["train_loss"] = history["pose"][-1]
    save_torch_file(out, args.out)
    print(f"[css_pose] DKD on {len(test)} test clips of {t} frames: PCK@0.2 "
          f"{metrics['dkd']['pck@0.2']:.3f} (the initializer on every frame: "
          f"{metrics['initializer_every_frame']['pck@0.2']:.3f}) -> {args.out}")  # fmt: skip
    return metrics


def run_cli(argv=None) -> None:
    """Console entry: a bad file or setting is one line, not a traceback."""
    try:
        main(argv)
    except (CheckpointError, ValueError, DiscriminatorWinsError) as err:
        sys.exit(f"css-pose dkd: error: {err}")
