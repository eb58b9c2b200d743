"""Benchmark the 2D pose heads on one pretrained encoder (issue: 2D pose heads).

    python benchmarks/heads_2d.py --ckpt runs/<css run>/checkpoints/last.ckpt
    python benchmarks/heads_2d.py                  # pretrains CSS first (python train.py, ~6 min)
    python benchmarks/heads_2d.py --ckpt ... --seeds 0 1 2 --encoder finetune

Variants: heatmap stride 4 (with spatial fusion), heatmap stride 8, heatmap stride 4 without
fusion, composite stride 8 (sparse heatmap + offsets), direct coordinate regression. Every variant
trains with the same labels (``--label-fraction`` of the training frames, drawn with the seed),
optimiser, epochs and flip augmentation, and is scored with the flip test on the test videos:
PCK@0.1 and PCK@0.2 (pooled over visible joints, threshold x max(w, h) of the tight GT box), mean
pixel error, head and total GFLOPs per crop (torch.utils.flop_counter) and parameters. Frames/s
is the speed of encoder + head + decode (no flip test) on batches of test crops, timed round-robin
over the variants in the same process (median of rounds) and given as a ratio to heatmap stride 4.
The last row is the no-image baseline: the mean keypoints of the labeled frames, for every crop.
The markdown table goes to stdout and to docs/heads_2d_results.md; the raw numbers to JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from css_pose.apps.support import frame_datamodule, frame_videos, select_labeled
from css_pose.heads2d import load_head_config, run_head, score_2d
from css_pose.models.pose_model import predict

CEILING = "heatmap s4 + fusion, every label (ceiling)"
VARIANTS = (
    ("heatmap s4 + fusion", ["head=heatmap", "stride=4", "fusion=true"]),
    ("heatmap s8 + fusion", ["head=heatmap", "stride=8", "fusion=true"]),
    ("heatmap s4, no fusion", ["head=heatmap", "stride=4", "fusion=false"]),
    ("composite s8", ["head=composite", "stride=8"]),
    ("direct regression", ["head=regression"]),
    # At 32 px crops stride 8 leaves a 4 x 4 grid; stride 4 gives the 8 x 8 grid that stride 8
    # gives at 64 px. The flattened map lets regression's MLP see where each feature is.
    ("composite s4", ["head=composite", "stride=4"]),
    ("direct regression, flattened map", ["head=regression", "regression_pool=flatten"]),
)
DEFAULT_VARIANTS = VARIANTS[:5]


def pretrain(run_dir: Path) -> Path:
    """Run ``python train.py`` (the CSS demo schedule) into ``run_dir``; returns last.ckpt."""
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    if not ckpt.exists():
        subprocess.run([sys.executable, "train.py", f"run_dir={run_dir}"], check=True)
    return ckpt


# Settings that decide a head run's outcome; a finished run is reused only when all match.
RUN_KEYS = ("head", "stride", "fusion", "seed", "label_fraction", "epochs", "steps", "encoder",
            "encoder_lr_scale", "lr", "batch_size", "sigma_px", "radius", "flip_train",
            "flip_test", "augment")  # fmt: skip


def finished_run(cfg) -> tuple[dict, tuple] | None:
    """(result, (model, codec)) of a finished run in ``cfg.run_dir`` made with the same
    checkpoint and settings (so an interrupted or extended benchmark resumes), else None."""
    from omegaconf import OmegaConf

    from css_pose.models.pose_model import load_pose_model

    run_dir = Path(cfg.run_dir)
    if not (run_dir / "result.json").exists() or not (run_dir / "head.pt").exists():
        return None
    result = json.loads((run_dir / "result.json").read_text())
    wanted = OmegaConf.to_container(cfg, resolve=True)
    stored = result.get("config", {})
    if result.get("checkpoint") != str(cfg.ckpt) or any(
        stored.get(k) != wanted.get(k) for k in RUN_KEYS
    ):
        return None
    model, codec, _ = load_pose_model(run_dir / "head.pt")
    result["run_dir"] = str(run_dir.resolve())
    return result, (model, codec)


def time_models(models, frames: torch.Tensor, rounds: int) -> list[float]:
    """Frames/s of each (model, codec) on ``frames``, median over round-robin rounds."""
    times: list[list[float]] = [[] for _ in models]
    for _ in range(rounds):
        for i, (model, codec) in enumerate(models):
            start = time.perf_counter()
            predict(model, codec, frames, flip_test=False)
            times[i].append(time.perf_counter() - start)
    return [len(frames) / statistics.median(t) for t in times]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ckpt", help="pretrained train.py checkpoint (default: pretrain CSS)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--label-fraction", type=float, default=0.1)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--steps", type=int, default=None,
                        help="optimiser steps per head run instead of --epochs")  # fmt: skip
    parser.add_argument("--encoder", choices=("frozen", "finetune"), default="frozen")
    parser.add_argument("--encoder-lr-scale", type=float, default=None,
                        help="fine-tuned encoder's lr as a multiple of the head's (default 0.1)")  # fmt: skip
    parser.add_argument("--ceiling", action="store_true",
                        help="add a ceiling row: heatmap s4 trained on every label (seed 0)")  # fmt: skip
    parser.add_argument("--variants", nargs="+", default=None, choices=[v[0] for v in VARIANTS],
                        metavar="NAME", help="heads to run, by row name (default: the first five)")  # fmt: skip
    parser.add_argument("--eval-split", choices=("test", "val"), default="test",
                        help="score on val to choose settings without the test videos")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=5, help="timing rounds")
    parser.add_argument("--out", default="runs/bench-heads2d")
    parser.add_argument("--table", default="docs/heads_2d_results.md")
    args = parser.parse_args(argv)

    out = Path(args.out)
    ckpt = Path(args.ckpt) if args.ckpt else pretrain(out / "pretrain")
    started = time.time()
    results: dict[str, list[dict]] = {}
    models = {}
    reused = 0
    schedule = [f"epochs={args.epochs}"] + ([f"steps={args.steps}"] if args.steps else [])
    if args.encoder_lr_scale is not None:
        schedule.append(f"encoder_lr_scale={args.encoder_lr_scale}")
    chosen = [v for v in VARIANTS if v[0] in args.variants] if args.variants else DEFAULT_VARIANTS
    schedule.append(f"eval_split={args.eval_split}")
    jobs = [(name, overrides, seed, args.label_fraction) for name, overrides in chosen
            for seed in args.seeds]  # fmt: skip
    if args.ceiling:
        jobs.append((CEILING, VARIANTS[0][1], 0, 1.0))
    for name, overrides, seed, fraction in jobs:
        tag = name.replace(" ", "_").replace(",", "").replace("+", "plus")
        tag = tag.replace("(", "").replace(")", "")
        argv_v = [
            f"ckpt={ckpt}",
            *overrides,
            f"seed={seed}",
            f"label_fraction={fraction}",
            *schedule,
            f"encoder={args.encoder}",
            f"run_dir={out / f'{tag}-seed{seed}'}",
            "logger.wandb.enabled=false",
        ]
        cfg = load_head_config(argv_v)
        done = finished_run(cfg)
        if done is not None:
            print(f"{name}, seed {seed}: reusing {cfg.run_dir}/result.json", file=sys.stderr)
            reused += 1
            result, model = done
        else:
            run = run_head(cfg, argv_v)
            result, model = run.result, (run.model, run.codec)
        results.setdefault(name, []).append(result)
        if name != CEILING:
            models.setdefault(name, model)

    first = next(iter(results.values()))[0]
    test_frames = _test_crops(first)
    fps = dict(
        zip(models, time_models(list(models.values()), test_frames, args.rounds), strict=True)
    )
    baseline = mean_pose_scores(first, args.seeds, args.label_fraction)
    ceiling = results.pop(CEILING, None)
    rows = _table(results, fps, baseline, ceiling) + [""] + target_rows(results, baseline)
    unit = first["config"].get("label_unit", "frame")
    videos = f" ({len(first['labeled_videos'])} videos)" if unit == "video" else ""
    steps = f"{first['steps']} steps of {first['config']['batch_size']}"
    header = (
        f"Encoder: `{ckpt}` ({args.encoder}); labels: {first['n_labeled']} of "
        f"{first['n_train_frames']} training frames{videos}, drawn by {unit} (label fraction "
        f"{args.label_fraction}); test: {first['n_test_frames']} frames of the "
        f"{first['test_split']} split; seeds {args.seeds}; {steps}; flip test on; "
        f"{time.time() - started:.0f} s"
        f"{f' ({reused} finished runs reused from {out})' if reused else ''}.\n"
    )
    text = header + "\n" + "\n".join(rows) + "\n"
    print(text)
    Path(args.table).parent.mkdir(parents=True, exist_ok=True)
    Path(args.table).write_text(
        "# 2D pose heads\n\nWritten by `python benchmarks/heads_2d.py "
        + " ".join(argv or sys.argv[1:])
        + "`.\n\n"
        + text
    )
    seed_plot(results, baseline, Path(args.table).with_suffix(".png"), args.encoder)
    # Per-seed metrics beside the table (the raw JSON with configs and losses stays in --out).
    per_seed = {n: [dict(seed=r["seed"], **r["metrics"]) for r in rs] for n, rs in results.items()}
    summary = {"fps": fps, "per_seed": per_seed, "mean_pose": [b["metrics"] for b in baseline]}
    if ceiling:
        summary["ceiling"] = [r["metrics"] for r in ceiling]
    Path(args.table).with_suffix(".json").write_text(json.dumps(summary, indent=1))
    raw = {"args": vars(args), "fps": fps, "results": results, "mean_pose": baseline,
           "ceiling": ceiling}  # fmt: skip
    (out / "heads_2d.json").write_text(json.dumps(raw, indent=2, default=str))


def _datamodule(result: dict):
    from omegaconf import OmegaConf

    return frame_datamodule(OmegaConf.create(result["config"]))


def _test_crops(result: dict) -> torch.Tensor:
    """64 test crops, for timing."""
    frames = [b["frames"] for b in _datamodule(result).probe_dataloader(result["test_split"])]
    return torch.cat(frames)[:64]


def mean_pose_scores(result: dict, seeds: list[int], fraction: float) -> list[dict]:
    """Scores of the no-image baseline: the mean keypoints (crop px) of each seed's labeled
    frames (drawn as the head runs drew them: whole videos with ``label_unit=video``), predicted
    for every test crop."""
    dm = _datamodule(result)
    train_set = dm.probe_dataloader("train").dataset
    by_video = result["config"].get("label_unit", "frame") == "video"
    videos = frame_videos(train_set, range(len(train_set))) if by_video else None

    def grab(split):
        kp, vis = [], []
        for batch in dm.probe_dataloader(split):
            kp.append(batch["keypoints_2d"])
            vis.append(batch["visibility"] > 0)
        return torch.cat(kp), torch.cat(vis)

    train_kp, train_vis = grab("train")
    test_kp, test_vis = grab(result["test_split"])
    out = []
    for seed in seeds:
        idx = select_labeled(len(train_kp), fraction, seed, videos)
        w = train_vis[idx].float()[..., None]
        mean = (train_kp[idx] * w).sum(0) / w.sum(0).clamp_min(1)
        metrics = score_2d(mean.expand_as(test_kp), test_kp, test_vis, (0.1, 0.2))
        out.append({"metrics": metrics, "cost": None})
    return out


# Two-sided 95 % quantiles of Student's t for 1..20 degrees of freedom (1.96 beyond).
T_975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
         2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086)  # fmt: skip

# The issue's targets, each a paired comparison of PCK@0.1 on the same seeds (same labels).
TARGETS = (
    ("composite s8", "heatmap s4 + fusion", "composite s8 >= heatmap s4 (at <= 0.6x head GFLOPs)"),
    ("heatmap s4 + fusion", "heatmap s4, no fusion", "spatial fusion > single stage"),
    ("heatmap s4 + fusion", "direct regression", "heatmap s4 > direct regression"),
    ("heatmap s8 + fusion", "direct regression", "heatmap s8 > direct regression"),
    ("composite s4", "composite s8", "composite s4 > composite s8 (32 px crops)"),
    ("direct regression, flattened map", "direct regression", "flattened map > pooled map"),
)


def pck01(runs: list[dict]) -> list[float]:
    """PCK@0.1 of each run (result dicts, or the baseline's), in seed order."""
    return [r["metrics"]["pck@0.1"] for r in runs]


def paired(a: list[float], b: list[float]) -> dict:
    """Mean of a - b over paired seeds, its 95 % t interval (None for one seed), wins of a."""
    diff = [x - y for x, y in zip(a, b, strict=True)]
    mean = statistics.fmean(diff)
    half = None
    if len(diff) > 1:
        t = T_975[len(diff) - 2] if len(diff) - 1 <= len(T_975) else 1.96
        half = t * statistics.stdev(diff) / len(diff) ** 0.5
    return {"mean": mean, "half_width": half, "wins": sum(d > 0 for d in diff), "n": len(diff)}


def target_rows(results: dict[str, list[dict]], baseline: list[dict]) -> list[str]:
    """Markdown rows: each target's paired PCK@0.1 difference, and each head minus the no-image
    baseline, as mean [95 % interval] and wins over seeds."""

    def fmt(d: dict) -> str:
        ci = (
            ""
            if d["half_width"] is None
            else (f" [{d['mean'] - d['half_width']:+.3f}, {d['mean'] + d['half_width']:+.3f}]")
        )
        return f"{d['mean']:+.3f}{ci} | {d['wins']} of {d['n']}"

    rows = [
        "| comparison (PCK@0.1, paired by seed) | mean difference [95 % interval] | wins |",
        "|---|---|---|",
    ]
    for a, b, label in TARGETS:
        if a in results and b in results:
            extra = ""
            if a == "composite s8":
                ratio = results[a][0]["cost"]["head_gflops"] / results[b][0]["cost"]["head_gflops"]
                extra = f" (head GFLOPs {ratio:.3f}x)"
            rows.append(f"| {label}{extra} | {fmt(paired(pck01(results[a]), pck01(results[b])))} |")
    base = pck01(baseline)
    for name, runs in results.items():
        rows.append(f"| {name} - mean training pose | {fmt(paired(pck01(runs), base))} |")
    return rows


def seed_plot(
    results: dict[str, list[dict]], baseline: list[dict], path: Path, encoder: str = "frozen"
) -> Path:
    """PCK@0.1 of every head and seed: one column per head, one grey line per seed joining its
    heads (the pairs behind the target rows), the mean as a black bar, the no-image baseline's
    seed range as a band. Written as a PNG to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    values = [pck01(results[n]) for n in names]
    base = pck01(baseline)
    fig, ax = plt.subplots(figsize=(8, 4.2), dpi=120)
    ax.axhspan(min(base), max(base), color="tab:orange", alpha=0.25, lw=0)
    ax.axhline(statistics.fmean(base), color="tab:orange", lw=1.5, label="mean training pose")
    for seed_values in zip(*values, strict=True):
        ax.plot(range(len(names)), seed_values, color="0.6", lw=0.8, marker="o", ms=3)
    for i, v in enumerate(values):
        ax.hlines(statistics.fmean(v), i - 0.25, i + 0.25, color="k", lw=2.5)
    ax.set_xticks(range(len(names)), [n.replace(" + ", "\n+ ").replace(", ", ",\n") for n in names])
    ax.set_ylabel("PCK@0.1 (test videos)")
    ax.set_title(f"2D heads, {encoder} encoder, {len(values[0])} seeds (grey lines: one seed each)")
    ax.legend(loc="lower right", frameon=False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _table(
    results: dict[str, list[dict]],
    fps: dict[str, float],
    baseline: list[dict],
    ceiling: list[dict] | None = None,
) -> list[str]:
    def cell(values: list[float], fmt: str) -> str:
        mean = statistics.fmean(values)
        if len(values) == 1:
            return format(mean, fmt)
        return f"{format(mean, fmt)} +- {format(statistics.stdev(values), fmt)}"

    base = VARIANTS[0][0] if VARIANTS[0][0] in fps else next(iter(fps))
    base_fps = fps[base]
    rows = [
        "| head | PCK@0.1 | PCK@0.2 | px error | head GFLOPs | total GFLOPs | head params | "
        f"frames/s | x {base} |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, runs in results.items():
        m = [r["metrics"] for r in runs]
        cost = runs[0]["cost"]
        rows.append(
            f"| {name} | {cell([x['pck@0.1'] for x in m], '.3f')} | "
            f"{cell([x['pck@0.2'] for x in m], '.3f')} | {cell([x['px_error'] for x in m], '.2f')} | "
            f"{cost['head_gflops']:.4f} | {cost['total_gflops']:.4f} | {cost['head_params']:,} | "
            f"{fps[name]:.0f} | {fps[name] / base_fps:.2f} |"
        )
    extra = [(CEILING + ", same schedule", ceiling)] if ceiling else []
    for name, runs in [("mean training pose (no image, the floor)", baseline), *extra]:
        m = [r["metrics"] for r in runs]
        rows.append(
            f"| {name} | {cell([x['pck@0.1'] for x in m], '.3f')} | "
            f"{cell([x['pck@0.2'] for x in m], '.3f')} | {cell([x['px_error'] for x in m], '.2f')} "
            "| - | - | - | - | - |"
        )
    return rows


if __name__ == "__main__":
    main()
