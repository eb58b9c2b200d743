"""Benchmark the flow-aligned temporal 2D heads (issue 16) on occluded, motion-blurred video.

    python benchmarks/temporal_2d.py --ckpt runs/<css run>/checkpoints/last.ckpt --seeds 0 1 2
    python benchmarks/temporal_2d.py --quick        # tiny data, random init, a few steps (tests)

1. Data: a synthetic set with occluder bars crossing the people and motion blur (the generator's
   ``occluders`` and ``motion_blur`` options), generated once into OUT/data (``--videos`` videos,
   70/15/15 split by video), unless ``--data`` names one. ``--fps`` and ``--families`` make
   faster motion: ``--fps 10 --families fast`` draws only the fast-limbed actions, 3x as far per
   frame (docs/benchmarks.md, issue 16).
2. Every variant trains the same heatmap head (stride 4, spatial fusion) on the same encoder,
   labels (``--label-fraction`` of the training videos, drawn with the seed), steps and flip
   augmentation, and is scored with the flip test on the test videos. Only the centre frame's
   labels are used (``temporal.neighbour_labels=false``), so the clip models see no more labels
   than the single-frame head. Variants: single frame; flow at the input (the centre crop with
   its flows to t - step and t + step as extra channels); plain average of the flow-aligned
   heatmaps; parametric pooling; parametric pooling without warping (the flow's share); with
   ``--oracle`` also parametric pooling warped by the true skeleton motion instead of DIS
   (``temporal.flow_preset=skeleton``: what a perfect flow would give; synthetic data only).
3. Scores: PCK@0.1 over all joints and per joint group (wrists, elbows, knees, ankles), the
   paired differences of the issue's comparisons with 95 % t intervals over seeds, the no-image
   floor (mean pose of the labeled frames) and frames/s of the whole pipeline (flow included)
   against the single-frame model, timed round-robin in one process, with the flow's share.

Writes OUT/temporal_2d.json and the markdown table (stdout and ``--table``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from heads_2d import mean_pose_scores, paired  # noqa: E402

GROUPS = ("wrists", "elbows", "knees", "ankles")
SINGLE = "single frame"
PARAMETRIC = "parametric pooling"
# a diagnostic, not a method: warping by the true skeleton motion of the synthetic clips
ORACLE = "parametric pooling, true skeleton motion"


def variants(
    frames: int, step: int, pool: Sequence[str] = (), oracle: bool = False
) -> list[tuple[str, list[str]]]:
    """(name, train_head.py overrides) of every compared model; ``pool``: more overrides of
    the parametric-pooling models; ``oracle``: also parametric pooling warped by the true motion
    of the skeleton instead of DIS (``temporal.flow_preset=skeleton``, synthetic data only)."""
    clip = [f"temporal.frames={frames}", f"temporal.step={step}", "temporal.neighbour_labels=false"]
    chosen = [
        (SINGLE, ["temporal.frames=0"]),
        (
            "flow at the input",
            [
                "temporal.frames=1",
                f"temporal.step={step}",
                "temporal.neighbour_labels=false",
                "temporal.pooling=none",
                "temporal.input_flow=true",
            ],
        ),  # fmt: skip
        ("average of aligned heatmaps", [*clip, "temporal.pooling=average"]),
        (PARAMETRIC, [*clip, "temporal.pooling=parametric", *pool]),
        (
            "parametric pooling, no warping",
            [*clip, "temporal.pooling=parametric", *pool, "temporal.warp=false"],
        ),  # fmt: skip
    ]
    if oracle:
        skeleton = [*clip, "temporal.pooling=parametric", *pool, "temporal.flow_preset=skeleton"]
        chosen.append((ORACLE, skeleton))
    return chosen


COMPARISONS = (  # (a, b, label): paired PCK@0.1 differences a - b
    (PARAMETRIC, SINGLE, "parametric pooling - single frame"),
    (PARAMETRIC, "average of aligned heatmaps", "parametric pooling - plain average"),
    (PARAMETRIC, "parametric pooling, no warping", "parametric pooling - without warping"),
    (PARAMETRIC, "flow at the input", "parametric pooling - flow at the input"),
    (ORACLE, SINGLE, "true-motion pooling - single frame"),
    (ORACLE, "parametric pooling, no warping", "true-motion pooling - without warping"),
    (ORACLE, PARAMETRIC, "true-motion pooling - DIS pooling"),
)


def make_data(
    root: Path, videos: int, quick: bool, fps: float = 30.0, families: Sequence[str] | None = None
) -> Path:
    """Generate the occluded, motion-blurred set into ``root`` (resumes; same seed, same set).
    fps and families: the generator's (a lower fps moves the people further per frame and
    lengthens the blur; ``families`` limits the actions, e.g. ["fast"] to the fast-limbed ones)."""
    from css_pose.data.synthetic import generate_dataset

    if quick:
        generate_dataset(root, videos=8, frames=12, size=64, seed=11, occluders=True,
                         motion_blur=True, workers=1, val_fraction=0.25, test_fraction=0.25,
                         progress=False, fps=fps, families=families)  # fmt: skip
    else:
        generate_dataset(root, videos=videos, frames=24, size=96, seed=1000, occluders=True,
                         motion_blur=True, fps=fps, families=families)  # fmt: skip
    return root


# Keys added after runs were stored, with the value that reproduces what those runs did.
LEGACY_DEFAULTS = {
    ("temporal", "centre_weight"): 1.0,
    ("temporal", "pool_lr_scale"): 1.0,
    ("temporal", "warp_scale"): 1,
}


def _same_config(stored: dict, wanted: dict, path: tuple = ()) -> bool:
    """Whether a stored run's config is the wanted one; a key the stored run predates matches
    when the wanted value is its ``LEGACY_DEFAULTS`` value."""
    if not (isinstance(stored, dict) and isinstance(wanted, dict)):
        return stored == wanted
    for key in stored.keys() | wanted.keys():
        if key not in stored:
            if (*path, key) not in LEGACY_DEFAULTS or wanted[key] != LEGACY_DEFAULTS[(*path, key)]:
                return False
        elif key not in wanted or not _same_config(stored[key], wanted[key], (*path, key)):
            return False
    return True


def run_variant(argv: list[str]) -> dict:
    """One train_head.py run, or the result.json of a finished run with the same config."""
    from omegaconf import OmegaConf

    from css_pose.heads2d import load_head_config, run_head

    cfg = load_head_config(argv)
    result = Path(cfg.run_dir) / "result.json"
    wanted = OmegaConf.to_container(cfg, resolve=True)
    if result.exists():
        done = json.loads(result.read_text())
        # a run copied or linked from another --out directory is reused too: run_dir only says
        # where it was trained
        skip = ("threads", "device", "run_dir")
        stored = {k: v for k, v in done["config"].items() if k not in skip}
        if _same_config(stored, {k: v for k, v in wanted.items() if k in stored}):
            print(f"reusing {result}", file=sys.stderr)
            return done
    return run_head(cfg, argv).result


def time_pipelines(single_dir: Path, clip_dir: Path, rounds: int, n: int = 64) -> dict:
    """Frames/s of the single-frame model and of the clip model with its DIS flows computed on
    the fly, on ``n`` test clips, median over round-robin rounds; flow share of the clip time."""
    from css_pose.flow import clip_flows
    from css_pose.models.pose_model import load_pose_model, predict
    from css_pose.models.temporal_pose import predict_clip

    single, s_codec, _ = load_pose_model(single_dir / "head.pt")
    clip_model, c_codec, payload = load_pose_model(clip_dir / "head.pt")
    frames_n = payload["temporal"]["frames"]
    rng = np.random.default_rng(0)
    size = single.encoder.in_size
    # Crops of a moving texture: the timing does not depend on their content.
    crops = rng.integers(0, 256, (n, 2 * frames_n + 1, size, size, 3), dtype=np.uint8)
    times: dict[str, list[float]] = {"single": [], "flow": [], "clip": []}
    offsets = range(-frames_n, frames_n + 1)
    for _ in range(rounds):
        start = time.perf_counter()
        predict(single, s_codec, torch.from_numpy(crops[:, frames_n]).permute(0, 3, 1, 2) / 255.0,
                flip_test=False)  # fmt: skip
        times["single"].append(time.perf_counter() - start)
        start = time.perf_counter()
        flows = [clip_flows(c, offsets, payload["temporal"]["flow_preset"]) for c in crops]
        flow_t = time.perf_counter() - start
        flow = torch.stack([torch.stack([torch.from_numpy(f[k]) for k in offsets]) for f in flows])
        clip = torch.from_numpy(crops).permute(0, 1, 4, 2, 3).float() / 255.0
        predict_clip(clip_model, c_codec, clip, flow.permute(0, 1, 4, 2, 3), flip_test=False)
        times["flow"].append(flow_t)
        times["clip"].append(time.perf_counter() - start)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "single_fps": n / med["single"],
        "clip_fps": n / med["clip"],
        "ratio": med["single"] / med["clip"],
        "flow_share": med["flow"] / med["clip"],
        "crops": n,
        "rounds": rounds,
    }


def _cell(values: list[float]) -> str:
    values = [v for v in values if v == v]  # drop NaN (a group never visible)
    if not values:
        return "-"
    mean = statistics.fmean(values)
    return f"{mean:.3f}" if len(values) == 1 else f"{mean:.3f} +- {statistics.stdev(values):.3f}"


def _interval(d: dict) -> str:
    if d["half_width"] is None:
        return f"{d['mean']:+.3f} | {d['wins']} of {d['n']}"
    lo, hi = d["mean"] - d["half_width"], d["mean"] + d["half_width"]
    return f"{d['mean']:+.3f} [{lo:+.3f}, {hi:+.3f}] | {d['wins']} of {d['n']}"


def markdown(results: dict[str, list[dict]], floor: list[dict], timing: dict | None) -> str:
    keys = ["pck@0.1", *(f"pck@0.1/{g}" for g in GROUPS)]
    rows = [
        "| model | PCK@0.1 | " + " | ".join(GROUPS) + " | px error |",
        "|---|---:|" + "---:|" * len(GROUPS) + "---:|",
    ]
    for name, runs in [*results.items(), ("mean pose of the labels (no image, the floor)", floor)]:
        m = [r["metrics"] for r in runs]
        cells = [_cell([x[k] for x in m]) for k in keys]
        rows.append(
            f"| {name} | " + " | ".join(cells) + f" | {_cell([x['px_error'] for x in m])} |"
        )
    rows += ["", "| comparison (paired by seed) | joints | mean difference [95 % interval] | wins |",
             "|---|---|---|---|"]  # fmt: skip
    for a, b, label in COMPARISONS:
        if a in results and b in results:
            for key, joints in (("pck@0.1/wrists", "wrists"), ("pck@0.1/elbows", "elbows"),
                                ("pck@0.1", "all")):  # fmt: skip
                va = [r["metrics"][key] for r in results[a]]
                vb = [r["metrics"][key] for r in results[b]]
                rows.append(f"| {label} | {joints} | {_interval(paired(va, vb))} |")
    if timing:
        rows += [
            "",
            f"Frames/s on {timing['crops']} clips (median of {timing['rounds']} rounds, no flip "
            f"test): single frame {timing['single_fps']:.0f}, parametric pooling with its DIS "
            f"flows {timing['clip_fps']:.0f} ({timing['ratio']:.2f}x the single-frame speed); "
            f"the flow takes {100 * timing['flow_share']:.0f} % of the clip pipeline's time.",
        ]
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ckpt", default=None, help="train.py checkpoint (default: none)")
    parser.add_argument("--quick", action="store_true", help="tiny data and schedule (~1 min)")
    parser.add_argument("--data", type=Path, default=None, help="an existing set to use")
    parser.add_argument("--videos", type=int, default=600)
    parser.add_argument("--fps", type=float, default=30.0, help="of the generated set")
    parser.add_argument("--families", nargs="+", default=None,
                        help="motion families of the generated set (default all; 'fast': the "
                        "fast-limbed ones, css_pose.data.synthetic.motions.FAST_FAMILIES)")  # fmt: skip
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--label-fraction", type=float, default=1.0)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--frames", type=int, default=1, help="neighbours each side (n)")
    parser.add_argument("--step", type=int, default=1, help="frame step between neighbours")
    parser.add_argument(
        "--centre-weight",
        type=float,
        default=None,
        help="temporal.centre_weight of the parametric pooling",
    )
    parser.add_argument(
        "--pool-lr-scale",
        type=float,
        default=None,
        help="temporal.pool_lr_scale of the parametric pooling",
    )
    parser.add_argument(
        "--warp-scale",
        type=int,
        default=None,
        help="temporal.warp_scale of the parametric pooling (warp on a finer grid)",
    )
    parser.add_argument(
        "--crop-box",
        choices=("frame", "centre"),
        default="frame",
        help="frame: each crop around its own frame's box (the crops follow the person); "
        "centre: a clip's crops around its centre frame's box (the person moves in them). "
        "Every variant, the single frame too, reads the same crops (no crop store)",
    )
    parser.add_argument(
        "--variants", nargs="+", default=None, help="train only these (names as in the table)"
    )
    parser.add_argument("--oracle", action="store_true",
                        help=f"also train {ORACLE!r}: the flow's upper bound")  # fmt: skip
    parser.add_argument("--encoder", choices=("frozen", "finetune"), default="finetune")
    parser.add_argument("--encoder-lr-scale", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=5, help="timing rounds")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--table", type=Path, default=None, help="also write the table here")
    args = parser.parse_args(argv)

    from css_pose.config import configure_threads

    configure_threads(None, 0)
    out = args.out or Path("runs/bench-temporal-quick" if args.quick else "runs/bench-temporal")
    root = args.data or make_data(out / "data", args.videos, args.quick, args.fps, args.families)
    steps, seeds = (3, args.seeds[:1]) if args.quick else (args.steps, args.seeds)
    common = [
        f"ckpt={args.ckpt or 'none'}",
        "head=heatmap", "stride=4", "fusion=true",
        f"data.root={root}", "data.num_workers=0",
        f"label_fraction={args.label_fraction}", f"steps={steps}",
        f"encoder={args.encoder}", f"encoder_lr_scale={args.encoder_lr_scale}",
        "logger.wandb.enabled=false", "device=cpu", "num_images=4",
    ]  # fmt: skip
    if args.ckpt is None:
        common += ["model=convnet", "data.size=32" if not args.quick else "data.size=64"]
    if args.crop_box == "centre":
        common += ["data.crop_box=centre", "data.store=false"]
    if args.quick:
        common += ["batch_size=8", "data.probe_stride=4"]
    started = time.time()
    results: dict[str, list[dict]] = {}
    pool = [
        f"temporal.{key}={value}"
        for key, value in (
            ("centre_weight", args.centre_weight),
            ("pool_lr_scale", args.pool_lr_scale),
            ("warp_scale", args.warp_scale),
        )
        if value is not None
    ]
    chosen = variants(args.frames, args.step, pool, args.oracle)
    unknown = set(args.variants or ()) - {name for name, _ in chosen}
    if unknown or (args.variants and SINGLE not in args.variants):
        parser.error(f"--variants: unknown {sorted(unknown)} or no {SINGLE!r}; choose from "
                     f"{[name for name, _ in chosen]}")  # fmt: skip
    for name, overrides in chosen:
        if args.variants and name not in args.variants:
            continue
        tag = name.replace(" ", "_").replace(",", "")
        for seed in seeds:
            run_dir = out / f"{tag}-seed{seed}"
            argv_v = [*common, *overrides, f"seed={seed}", f"run_dir={run_dir}"]
            results.setdefault(name, []).append(run_variant(argv_v))
    first = results[SINGLE][0]
    floor = mean_pose_scores(first, seeds, args.label_fraction)
    tag = PARAMETRIC.replace(" ", "_")
    timing = None
    if PARAMETRIC in results:
        timing = time_pipelines(out / f"single_frame-seed{seeds[0]}", out / f"{tag}-seed{seeds[0]}",
                                2 if args.quick else args.rounds)  # fmt: skip
    manifest = json.loads((Path(root) / "manifest.json").read_text())
    families = " ".join(manifest["options"].get("families") or ["all"])
    header = (
        f"Data: `{root}` (occluders and motion blur, {manifest['fps']:g} fps, motion families "
        f"{families}); encoder `{args.ckpt or 'random init'}` "
        f"({args.encoder}, lr x {args.encoder_lr_scale}); {first['n_labeled']} labeled of "
        f"{first['n_train_frames']} training frames ({len(first['labeled_videos'])} videos); "
        f"test: {first['n_test_frames']} frames; {first['steps']} steps; clips of "
        f"{2 * args.frames + 1} frames, step {args.step}; crops around each "
        f"{'frame' if args.crop_box == 'frame' else 'clip centre'}'s box; seeds {seeds}; "
        f"{time.time() - started:.0f} s.\n\n"
    )
    text = header + markdown(results, floor, timing)
    print(text)
    if args.table:
        args.table.parent.mkdir(parents=True, exist_ok=True)
        args.table.write_text("# Temporal 2D heads\n\nWritten by `python benchmarks/temporal_2d.py "
                              + " ".join(argv or sys.argv[1:]) + "`.\n\n" + text)  # fmt: skip
    summary = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "per_seed": {
            n: [dict(seed=r["seed"], **r["metrics"]) for r in rs] for n, rs in results.items()
        },  # fmt: skip
        "floor": [f["metrics"] for f in floor],
        "timing": timing,
        "flow_seconds": {n: [r.get("flow_seconds") for r in rs] for n, rs in results.items()},
        "flows_cached": {n: [r.get("flows_cached") for r in rs] for n, rs in results.items()},
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "temporal_2d.json").write_text(json.dumps(summary, indent=1, default=float))
    return summary


if __name__ == "__main__":
    main()
