"""DG-Net-style lifter at 9 frames against the temporal ConvNet at 27, and DG-Net without each of
its parts (issue 20), on render-free pose pairs, over seeds.

    python benchmarks/dgnet_ablation.py --seeds 0 1 2 --jobs 2     # about 25 min per seed on 2 cores
    python benchmarks/dgnet_ablation.py --quick                    # 100 steps, 1 seed: a smoke run

Every run is ``python -m css_pose.lifting --data poses`` with the same data (10,000 training
sequences of 81 frames), optimiser, batch (256), steps and seed; only the model differs:

- ``tcn27``: temporal ConvNet, 27 frames, 128 channels;
- ``dg9``: DG-Net-style, 9 frames, 64 channels, depth 2 (DSG distances from the input 2D and the
  features, top-4; DTG top-4; the learnable skeleton prior);
- ``dg9_no_dsg`` (the skeleton prior alone: a fixed-topology GCN), ``dg9_no_dtg`` (identity
  temporal edges only), ``dg9_no_skeleton`` (the dynamic affinity alone).

Each run's scores go to OUT/<config>_s<seed>.json (a finished run is not rerun) and its lifter
to OUT/<config>_s<seed>.pt (DG-Net: with its affinity picture beside it). The table (mean over
seeds, [min, max], and each config's paired difference to ``dg9``) goes to stdout and to
OUT/results.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import sys
from pathlib import Path

import numpy as np

CONFIGS = {
    "tcn27": ["--model", "tcn", "--frames", "27", "--channels", "128"],
    "dg9": ["--model", "dgnet", "--frames", "9", "--channels", "64"],
    "dg9_no_dsg": ["--model", "dgnet", "--frames", "9", "--channels", "64", "--no-dsg"],
    "dg9_no_dtg": ["--model", "dgnet", "--frames", "9", "--channels", "64", "--no-dtg"],
    "dg9_no_skeleton": ["--model", "dgnet", "--frames", "9", "--channels", "64", "--no-skeleton"],
}
SPLITS = (("test", ""), ("held-out motion", "heldout_motion/"), ("rendered test", "rendered_test/"))


def one_run(job: tuple) -> dict:
    """Train and score one (config, seed); its log goes to OUT/<name>.log."""
    config, seed, args = job
    name = f"{config}_s{seed}"
    out = Path(args.out)
    done = out / f"{name}.json"
    if done.exists():
        return json.loads(done.read_text())
    from css_pose.lifting import main
    from css_pose.models.lifter_model import build_lifter, count_parameters

    argv = ["--data", "poses", "--sequences", str(args.sequences), "--eval-sequences",
            str(args.eval_sequences), "--steps", str(args.steps), "--workers", "1",
            "--seed", str(seed), "--save", str(out / f"{name}.pt"), *CONFIGS[config]]  # fmt: skip
    with open(out / f"{name}.log", "w") as log, contextlib.redirect_stdout(log):
        result = main(argv)
    from css_pose.models.lifter_model import load_lifter

    model, payload = load_lifter(out / f"{name}.pt")
    result["parameters"] = count_parameters(model)
    assert count_parameters(build_lifter(payload["model"], payload["frames"], payload["channels"],
                                         **payload["options"])) == result["parameters"]  # fmt: skip
    done.write_text(json.dumps(result, indent=1))
    return result


def table(results: dict[tuple[str, int], dict], seeds: list[int]) -> str:
    head = "| model | seeds | parameters | " + " | ".join(
        f"{s} MPJPE | {s} P-MPJPE" for s, _ in SPLITS
    )
    lines = [head + " |", "|---|---|---:|" + "---:|---:|" * len(SPLITS)]
    for config in CONFIGS:
        runs = [results[(config, s)] for s in seeds if (config, s) in results]
        if not runs:
            continue
        cells = []
        for _, prefix in SPLITS:
            for metric in ("mpjpe", "p_mpjpe"):
                v = np.array([r[f"{prefix}{metric}"] for r in runs])
                cell = f"{v.mean():.1f}" + (
                    f" [{v.min():.1f}, {v.max():.1f}]" if len(v) > 1 else ""
                )
                base = [results.get(("dg9", s)) for s in seeds if (config, s) in results]
                if config != "dg9" and all(base):
                    d = v - np.array([b[f"{prefix}{metric}"] for b in base])
                    cell += f" (dg9 {d.mean():+.1f})"
                cells.append(cell)
        used = ", ".join(str(s) for s in seeds if (config, s) in results)
        lines.append(
            f"| {config} | {used} | {runs[0]['parameters']:,} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--sequences", type=int, default=10000)
    parser.add_argument("--eval-sequences", type=int, default=500)
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (one core each)")
    parser.add_argument("--quick", action="store_true", help="100 steps, 500 sequences")
    parser.add_argument("--table-only", action="store_true",
                        help="only tabulate the finished runs of --seeds and --configs")  # fmt: skip
    parser.add_argument("--out", default="runs/dgnet_ablation")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.sequences, args.eval_sequences = 100, 500, 50
        args.out = args.out + "_quick"
    Path(args.out).mkdir(parents=True, exist_ok=True)
    # Each config's first seed first, so a stopped run has the comparison for one seed.
    jobs = [(c, s, args) for s in args.seeds for c in args.configs]
    if args.table_only:
        done = {(c, s): Path(args.out) / f"{c}_s{s}.json" for c, s, _ in jobs}
        results = {k: json.loads(p.read_text()) for k, p in done.items() if p.exists()}
    else:
        with mp.get_context("spawn").Pool(args.jobs) as pool:
            outs = pool.map(one_run, jobs, chunksize=1)
        results = {(c, s): r for (c, s, _), r in zip(jobs, outs)}
    seeds = sorted({s for _, s in results})
    text = (
        f"{args.steps} steps, batch 256, {args.sequences} training sequences; MPJPE / P-MPJPE "
        "in mm, mean [min, max] over the seeds of the row, (dg9 +x): mean paired difference "
        "to dg9 over those seeds\n\n" + table(results, seeds)
    )
    (Path(args.out) / "results.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    sys.exit(main())
