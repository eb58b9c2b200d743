"""Benchmark the 2D -> 3D lifters: MLP (1 frame), temporal ConvNet and DG-Net-style at 1/9/27 frames.

    python benchmarks/lifting.py            # synthetic set, ~10 min on 2 busy CPU cores
    python benchmarks/lifting.py --quick    # fewer steps, < 3 min
    python benchmarks/lifting.py --h36m-3d data_3d_h36m.npz --h36m-2d data_2d_h36m_gt.npz

Protocol: every model trains on clean ground-truth 2D (projected, normalised) with the same
optimiser, batch, steps, learning-rate schedule and seed, with flip augmentation; it is tested
with flip test-time augmentation on clean input and, train-clean/test-corrupt, on input with
Gaussian noise (sigma 2 and 5 px, in pixels before normalisation) and with 10 % of the (frame,
joint) entries dropped (set to 0 after normalisation). DG-Net's channels are the largest multiple
of 16 (at most --dgnet-max-channels, a CPU time cap) whose parameter count does not exceed the
TCN's at the same frames. Errors are mm, action-wise averaged (one action per synthetic video).
The markdown table goes to stdout and to docs/lifting_results.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from css_pose.data.synthetic import generate_dataset
from css_pose.lifting import evaluate, load_lifting_data, load_synthetic_lifting_data, train_lifter
from css_pose.models.lifter_model import build_lifter, count_parameters

CORRUPTIONS = (("clean", 0.0, 0.0), ("noise 2px", 2.0, 0.0), ("noise 5px", 5.0, 0.0),
               ("drop 10%", 0.0, 0.1))  # fmt: skip


def dgnet_channels(frames: int, budget: int, cap: int) -> int:
    """Largest multiple of 16 <= cap whose DG-Net has at most ``budget`` parameters."""
    for channels in range(cap, 0, -16):
        if count_parameters(build_lifter("dgnet", frames, channels)) <= budget:
            return channels
    raise ValueError(f"no DG-Net with <= {budget} parameters")


def run(train, test, frame_counts, args) -> list[str]:
    """Train and test every model; returns markdown table rows."""
    rows = []
    configs = [("mlp", 1, args.mlp_width)]
    for frames in frame_counts:
        tcn_params = count_parameters(build_lifter("tcn", frames, args.tcn_channels))
        dg = dgnet_channels(frames, tcn_params, args.dgnet_max_channels)
        configs += [("tcn", frames, args.tcn_channels), ("dgnet", frames, dg)]
    for name, frames, channels in configs:
        torch.manual_seed(args.seed)
        model = build_lifter(name, frames, channels)
        start = time.perf_counter()
        train_lifter(model, train, args.steps, args.batch_size, args.lr, seed=args.seed)
        seconds = time.perf_counter() - start
        results = [
            evaluate(model, test, noise_px=n, drop=d, seed=args.seed) for _, n, d in CORRUPTIONS
        ]
        params = count_parameters(model)
        print(f"{name} {frames} frames, {channels} channels: {params:,} parameters, "
              f"{seconds:.0f} s", file=sys.stderr)  # fmt: skip
        cells = [f"{r['mpjpe']:.1f} / {r['p_mpjpe']:.1f}" for r in results]
        rows.append(f"| {name} | {frames} | {channels} | {params:,} | " + " | ".join(cells)
                    + f" | {seconds:.0f} |")  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="300 steps instead of 1500")
    parser.add_argument("--synthetic-root", default="data/synthetic_lift")
    parser.add_argument("--h36m-3d", help="VideoPose3D data_3d file (trusted: pickle)")
    parser.add_argument("--h36m-2d", help="VideoPose3D data_2d file (trusted: pickle)")
    parser.add_argument("--frames", type=int, nargs="+", default=[1, 9, 27])
    parser.add_argument("--steps", type=int)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--tcn-channels", type=int, default=128)
    parser.add_argument("--dgnet-max-channels", type=int, default=64)
    parser.add_argument("--mlp-width", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="1 is faster than 2 when another process shares the cores")  # fmt: skip
    parser.add_argument("--out", default="docs/lifting_results.md")
    args = parser.parse_args()
    args.steps = args.steps or (300 if args.quick else 1500)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()

    datasets = []
    root = Path(args.synthetic_root)
    if not (root / "manifest.json").exists():
        generate_dataset(root, videos=48, frames=120, size=128, seed=5, workers=1, progress=False)
    datasets.append(("synthetic (48 videos x 120 frames, 128 px, seed 5)",
                     *load_synthetic_lifting_data(root)))  # fmt: skip
    if args.h36m_3d and args.h36m_2d:
        datasets.append((f"VideoPose3D {Path(args.h36m_2d).name}",
                         *load_lifting_data(args.h36m_3d, args.h36m_2d)))  # fmt: skip

    header = ("| model | frames | channels | params | clean | noise 2px | noise 5px | drop 10% "
              "| train s |\n|---|---|---|---|---|---|---|---|---|")  # fmt: skip
    lines = ["# Lifting benchmark", "", f"Command: `python {' '.join(sys.argv)}`", "",
             f"Seed {args.seed}; {args.steps} steps, batch {args.batch_size}, Adam(amsgrad) lr "
             f"{args.lr} decayed to lr/10, flip augmentation at train and test time; trained on "
             "clean 2D, tested on clean and corrupted 2D. Cells: MPJPE / P-MPJPE in mm, "
             "action-wise mean. See the docstring of benchmarks/lifting.py for the protocol.", ""]  # fmt: skip
    for title, train, test in datasets:
        lines += [f"## {title}", "", f"{len(train)} train frames, {len(test)} test frames.", "",
                  header, *run(train, test, args.frames, args), ""]  # fmt: skip
    lines.append(f"Total runtime {time.perf_counter() - start:.0f} s "
                 f"({torch.get_num_threads()} torch thread(s), CPU).")  # fmt: skip
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
