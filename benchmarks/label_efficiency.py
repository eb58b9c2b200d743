"""Label efficiency: does the pretraining pay off with 1 % of the labels? (issue 4)

    python benchmarks/label_efficiency.py            # the full study, by hand (~1.5 h on 2 cores)
    python benchmarks/label_efficiency.py --quick    # tiny data and schedules (what the tests run)
    python benchmarks/label_efficiency.py --table docs/label_efficiency_results.md

Stages, in this order; each skips the runs whose output is already on disk, so an interrupted
study picks up where it stopped and the tables can be rebuilt from the files alone:

1. Pretraining with one schedule for every method (``python train.py``'s demo schedule: the same
   data, backbone, crop size, epochs, steps and samples per batch; seed 0): CSS, plain temporal
   contrastive (no split, no decoder) and SimCLR; then the ablations, CSS without the
   reconstruction term, without the gradual-transition term, and without the z_v / z_i split.
2. Frozen encoder: a linear probe on each method's feature (z_v; SimCLR has only the pooled
   backbone) to root-relative 3D pose, at each label fraction with each seed, scored on the test
   videos (appearance and motion seeds never seen in training). "random init" probes the same
   architecture untrained (``ckpt=none``).
3. Ablation: the frozen probe at 10 % labels on the ablated encoders.
4. Fine-tuned encoder (lr x 0.1, BatchNorm statistics frozen), every method, fraction and seed.
5. Supervised from scratch: encoder and linear head trained on the same labels for the same steps.

A seed picks the labeled frames and the head's initialisation; pretraining uses seed 0 for all.
Probes train a fixed number of optimiser steps (``steps``), whatever the label count.

Writes OUT/label_efficiency.json (every run's metrics), OUT/label_efficiency.md (tables, also
printed) and OUT/label_efficiency.png (3D MPJPE against label fraction, log x axis).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

FRACTIONS = (0.01, 0.05, 0.1, 1.0)
METHODS = {  # name -> train.py overrides, probed feature
    "css": (["method=css"], "z_v"),
    "plain_temporal": (["method=plain_temporal"], "z_v"),
    "simclr": (["method=simclr"], "backbone"),
}
ABLATIONS = {
    "css - reconstruction": ["method=css", "method.weights.reconstruction=0"],
    "css - gradual transition": ["method=css", "method.weights.gradual=0"],
    "css - split": ["method=css", "method.split=false"],
}
ABLATION_FRACTION = 0.1
RANDOM = "random init"
SUPERVISED = "supervised"
MEAN_POSE = "mean pose (no image)"
# Issue 4's targets (frozen encoder, 3D MPJPE): CSS / random init and CSS / plain temporal.
TARGETS = {RANDOM: 0.7, "plain_temporal": 0.85}


def slug(name: str) -> str:
    return name.replace(" - ", "-no-").replace(" ", "_")


# --- quick mode -----------------------------------------------------------------------------------
def quick_dataset(root: Path) -> Path:
    """A 10-video synthetic set (64 px, 32 frames), generated once into ``root``."""
    from css_pose.data.synthetic import generate_dataset

    if not (root / "manifest.json").exists():
        generate_dataset(
            root,
            videos=10,
            frames=32,
            size=64,
            seed=5,
            workers=1,
            val_fraction=0.2,
            test_fraction=0.2,
            progress=False,
        )
    return root


def quick_train_overrides(root: Path, method: list[str]) -> list[str]:
    """A ConvNet and two epochs of eight samples: seconds per method on a CPU."""
    base = [
        "model=convnet",
        f"data.root={root}",
        "data.batch_size=4",
        "data.num_workers=0",
        "data.samples_per_epoch=8",
        "data.val_samples=4",
        "data.sampling.d_neg=10",
        "data.sampling.gt_max=6",
        "trainer.max_epochs=2",
        "trainer.enable_progress_bar=false",
        "trainer.log_every_n_steps=1",
        "logger.wandb.enabled=false",
        "optim.warmup_steps=0",
        "probe.enabled=false",
        "images.every_n_epochs=5",
    ]
    if "method=simclr" not in method:
        base += [
            "method.dim_v=32",
            "method.dim_i=16",
            "method.proj_hidden=64",
            "method.proj_dim=32",
            "method.decoder_channels=32",
        ]
    return base


# --- runs -----------------------------------------------------------------------------------------
def pretrain(name: str, overrides: list[str], out: Path, extra: list[str]) -> dict:
    """Pretrain one method into OUT/pretrain/<name> (skipped when it finished before)."""
    from css_pose.runner import main as train_main

    run_dir = out / "pretrain" / slug(name)
    summary = run_dir / "summary.json"
    if not summary.exists():
        print(f"\n[label_efficiency] pretraining {name} -> {run_dir}", flush=True)
        train_main([*overrides, *extra, f"run_dir={run_dir}"])
    return json.loads(summary.read_text())


def probe(run_dir: Path, argv: list[str]) -> dict:
    """One linear_probe.py run into ``run_dir`` (skipped when its result.json exists)."""
    from css_pose.linear_probe import load_probe_config, run_probe

    result = run_dir / "result.json"
    if not result.exists():
        argv = [*argv, f"run_dir={run_dir}"]
        run_probe(load_probe_config(argv), argv)
    return json.loads(result.read_text())


def record(rows: list[dict], method: str, encoder: str, fraction: float, seed: int, r: dict):
    rows.append(
        {
            "method": method,
            "encoder": encoder,
            "fraction": fraction,
            "seed": seed,
            "n_labeled": r["n_labeled"],
            "n_test_frames": r["n_test_frames"],
            "test_split": r["test_split"],
            "feature": r["config"]["feature"],
            "checkpoint": r["checkpoint"],
            "metrics": r["metrics"],
        }
    )


def mean_pose_runs(probe_args: list[str], fractions, seeds) -> list[dict]:
    """The no-image baseline: the mean root-relative 3D pose of the labeled frames (the same
    frames the probes get at each fraction and seed), predicted for every test frame."""
    import torch

    from css_pose.linear_probe import (
        compute_metrics,
        load_probe_config,
        prepare_labeled_run,
        select_labeled,
        targets_of,
    )

    # One set-up: the labeled subsets are select_labeled(n, fraction, seed), as in every probe.
    run = prepare_labeled_run(load_probe_config(probe_args), probe_args)
    test = [targets_of(b, "3d") for b in run.test_loader]
    test_kp = torch.cat([kp for kp, _ in test])
    test_mask = torch.cat([m for _, m in test])
    train = [targets_of(b, "3d") for b in run.train_loader]
    train_kp = torch.cat([kp for kp, _ in train])
    train_ok = torch.cat([m for _, m in train]).all(1)
    rows = []
    for seed in seeds:
        for fraction in fractions:
            chosen = select_labeled(len(train_kp), fraction, seed)
            mean = train_kp[chosen[train_ok[chosen]]].mean(0, keepdim=True).expand_as(test_kp)
            rows.append(
                {
                    "method": MEAN_POSE,
                    "encoder": "none",
                    "fraction": fraction,
                    "seed": seed,
                    "n_labeled": len(chosen),
                    "n_test_frames": len(test_kp),
                    "test_split": run.test_split,
                    "feature": "none",
                    "checkpoint": "none",
                    "metrics": compute_metrics(mean, test_kp, test_mask, "3d"),
                }
            )
    return rows


# --- tables ---------------------------------------------------------------------------------------
def cell(rows: list[dict], metric: str = "mpjpe") -> tuple[float, float, int] | None:
    values = [r["metrics"][metric] for r in rows if math.isfinite(r["metrics"][metric])]
    if not values:
        return None
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return statistics.mean(values), std, len(values)


def fmt(c: tuple[float, float, int] | None) -> str:
    if c is None:
        return "not run"
    mean, std, n = c
    return f"{mean:.1f} ± {std:.1f} (n={n})" if n > 1 else f"{mean:.1f} (n=1)"


def select(rows, **keys) -> list[dict]:
    return [r for r in rows if all(r[k] == v for k, v in keys.items())]


def markdown(study: dict) -> str:
    rows, fractions = study["runs"], study["fractions"]
    labels = {}
    for r in rows:
        labels.setdefault(r["fraction"], r["n_labeled"])
    head = " | ".join(f"{f:g} ({labels.get(f, '?')} frames)" for f in fractions)
    lines = [
        f"Test split: {rows[0]['n_test_frames'] if rows else '?'} frames of held-out videos. "
        f"Cells: 3D MPJPE in mm, mean ± std over seeds {study['seeds']} (n = runs).",
        "",
    ]
    methods = [*study["methods"], RANDOM]
    for encoder in ("frozen", "finetune"):
        lines += [
            f"**{encoder} encoder**, linear probe",
            "",
            f"| method | {head} |",
            "|---|" + "---|" * len(fractions),
        ]
        for m in methods:
            cells = [
                fmt(cell(select(rows, method=m, encoder=encoder, fraction=f))) for f in fractions
            ]
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        if encoder == "frozen":
            cells = [fmt(cell(select(rows, method=MEAN_POSE, fraction=f))) for f in fractions]
            lines.append(f"| {MEAN_POSE} | " + " | ".join(cells) + " |")
        if encoder == "finetune":
            cells = [fmt(cell(select(rows, method=SUPERVISED, fraction=f))) for f in fractions]
            lines.append(f"| {SUPERVISED} from scratch | " + " | ".join(cells) + " |")
        lines.append("")

    lines += [
        "**Targets** (frozen encoder): CSS MPJPE / baseline MPJPE, means over seeds",
        "",
        "| fraction | CSS / random init (target <= 0.7) | CSS / plain temporal (target <= 0.85) |",
        "|---|---|---|",
    ]
    for f in fractions:
        css = cell(select(rows, method="css", encoder="frozen", fraction=f))
        ratios = []
        for base, target in TARGETS.items():
            other = cell(select(rows, method=base, encoder="frozen", fraction=f))
            if css is None or other is None:
                ratios.append("not run")
            else:
                ratio = css[0] / other[0]
                ratios.append(f"{ratio:.3f} ({'met' if ratio <= target else 'missed'})")
        lines.append(f"| {f:g} | " + " | ".join(ratios) + " |")
    lines.append("")

    if study.get("ablation_fraction") is not None:
        f = study["ablation_fraction"]
        lines += [
            f"**Ablation**: frozen linear probe at {f:g} labels; online probe (ridge on val "
            "videos, end of pretraining) beside it",
            "",
            "| encoder | test MPJPE (mm) | online probe z_v, end of pretraining (mm) | pretraining steps, s |",
            "|---|---|---|---|",
        ]
        for m in ["css", *study["ablations"]]:
            c = cell(select(rows, method=m, encoder="frozen", fraction=f))
            s = study["pretraining"].get(m, {})
            online = (s.get("probe_final") or {}).get("mpjpe")
            online_s = f"{online:.1f}" if online is not None else "off"
            cost = f"{s.get('global_step', '?')}, {s.get('train_seconds', '?')}"
            lines.append(f"| {m} | {fmt(c)} | {online_s} | {cost} |")
        lines.append("")

    lines += ["**Pretraining** (the same schedule for every method)", ""]
    lines += [
        "| method | steps | seconds | online probe at init -> end (mm; z_v, SimCLR backbone) |",
        "|---|---|---|---|",
    ]
    for m, s in study["pretraining"].items():
        init = (s.get("probe_initial") or {}).get("mpjpe")
        end = (s.get("probe_final") or {}).get("mpjpe")
        probe_s = f"{init:.1f} -> {end:.1f}" if init is not None and end is not None else "off"
        lines.append(f"| {m} | {s.get('global_step')} | {s.get('train_seconds')} | {probe_s} |")
    return "\n".join(lines) + "\n"


def plot(study: dict, path: Path) -> Path:
    """3D MPJPE against label fraction (log x), one line per method; frozen solid, fine-tuned
    dashed, supervised dotted; error bars are the std over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, fractions = study["runs"], study["fractions"]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    colors = {}
    curves = [(m, e) for e in ("frozen", "finetune") for m in [*study["methods"], RANDOM]]
    curves += [(SUPERVISED, None), (MEAN_POSE, None)]
    for method, encoder in curves:
        pts = []
        for f in fractions:
            keys = {"method": method, "fraction": f}
            if encoder:
                keys["encoder"] = encoder
            c = cell(select(rows, **keys))
            if c is not None:
                pts.append((f, c[0], c[1]))
        if not pts:
            continue
        xs, ys, es = zip(*pts)
        style = {"frozen": "-", "finetune": "--", None: ":"}[encoder]
        if method == MEAN_POSE:
            colors.setdefault(method, "0.4")
        line = ax.errorbar(
            xs,
            ys,
            yerr=es,
            fmt=style + "o",
            capsize=3,
            color=colors.get(method),
            label=f"{method} ({encoder})"
            if encoder
            else (method if method == MEAN_POSE else f"{method} from scratch"),
        )
        colors.setdefault(method, line[0].get_color())
    ax.set_xscale("log")
    ax.set_xticks(list(fractions))
    ax.set_xticklabels([f"{f:g}" for f in fractions])
    ax.set_xlabel("label fraction (of labeled training frames)")
    ax.set_ylabel("test 3D MPJPE (mm), lower is better")
    ax.set_title("Label efficiency on the synthetic benchmark")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def write(study: dict, out: Path, table: Path | None) -> str:
    text = markdown(study)
    (out / "label_efficiency.json").write_text(json.dumps(study, indent=2))
    (out / "label_efficiency.md").write_text(text)
    if study["runs"]:
        plot(study, out / "label_efficiency.png")
    if table is not None:
        table.parent.mkdir(parents=True, exist_ok=True)
        table.write_text(
            "<!-- written by benchmarks/label_efficiency.py; command: "
            f"{study['command']} -->\n\n" + text
        )
    return text


# --- the study ------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny data and schedules (~2 min)")
    parser.add_argument("--out", default=None, help="default runs/label-efficiency[-quick]")
    parser.add_argument("--seeds", type=int, nargs="+", default=None)
    parser.add_argument("--fractions", type=float, nargs="+", default=None)
    parser.add_argument("--frozen-steps", type=int, default=300, help="probe optimiser steps")
    parser.add_argument("--finetune-steps", type=int, default=100)
    parser.add_argument(
        "--stages",
        nargs="+",
        default=["frozen", "ablation", "finetune", "supervised"],
        choices=["frozen", "ablation", "finetune", "supervised"],
    )
    parser.add_argument("--table", type=Path, default=None, help="also write the tables here")
    args = parser.parse_args(argv)

    out = Path(
        args.out or ("runs/label-efficiency-quick" if args.quick else "runs/label-efficiency")
    )
    out.mkdir(parents=True, exist_ok=True)
    seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    fractions = tuple(args.fractions or ((0.1, 1.0) if args.quick else FRACTIONS))
    ablations = dict(list(ABLATIONS.items())[:1]) if args.quick else ABLATIONS
    ablation_fraction = fractions[0] if args.quick else ABLATION_FRACTION
    frozen_steps, finetune_steps = (
        (20, 4) if args.quick else (args.frozen_steps, args.finetune_steps)
    )

    root = quick_dataset(out / "data") if args.quick else None
    probe_common = ["logger.wandb.enabled=false", "target=3d", "probe=linear", "device=cpu"]
    random_args: list[str] = []
    if args.quick:
        probe_common += ["batch_size=8", "data.num_workers=0"]
        random_args = [
            a
            for a in quick_train_overrides(root, ["method=css"])
            if a.split("=")[0] in ("model", "data.root") or a.startswith("method.d")
        ]
        random_args = [a for a in random_args if not a.startswith("method.decoder")]
    else:
        probe_common += ["batch_size=32"]

    study = {
        "command": "python benchmarks/label_efficiency.py " + " ".join(argv or sys.argv[1:]),
        "quick": args.quick,
        "seeds": seeds,
        "fractions": list(fractions),
        "methods": list(METHODS),
        "ablations": list(ablations),
        "ablation_fraction": ablation_fraction if "ablation" in args.stages else None,
        "probe_steps": {"frozen": frozen_steps, "finetune": finetune_steps},
        "pretraining": {},
        "runs": [],
    }
    started = time.time()

    def extra_for(overrides):
        return quick_train_overrides(root, overrides) if args.quick else []

    ckpts = {}
    todo = dict(METHODS)
    todo.update(
        {name: (o, "z_v") for name, o in ablations.items()} if "ablation" in args.stages else {}
    )
    for name, (overrides, _) in todo.items():
        summary = pretrain(name, overrides, out, extra_for(overrides))
        study["pretraining"][name] = {
            k: summary.get(k)
            for k in ("global_step", "train_seconds", "probe_initial", "probe_final", "encoder")
        }
        ckpts[name] = summary["last_checkpoint"]

    def run(method: str, encoder: str, fraction: float, seed: int, extra: list[str]):
        steps = frozen_steps if encoder == "frozen" else finetune_steps
        run_dir = out / "probe" / slug(method) / encoder / f"f{fraction:g}-s{seed}"
        argv_ = [
            *probe_common,
            f"label_fraction={fraction}",
            f"seed={seed}",
            f"steps={steps}",
            *extra,
        ]
        if method != SUPERVISED:
            argv_.append(f"encoder={encoder}")
        record(study["runs"], method, encoder, fraction, seed, probe(run_dir, argv_))
        write(study, out, args.table)

    def by_method(method: str) -> list[str]:
        if method == RANDOM:
            return ["ckpt=none", "feature=z_v", *random_args]
        return [f"ckpt={ckpts[method]}", f"feature={METHODS.get(method, (None, 'z_v'))[1]}"]

    if "frozen" in args.stages:
        cache = out / "mean_pose.json"
        if not cache.exists():
            rows = mean_pose_runs([*probe_common, "ckpt=none", *random_args], fractions, seeds)
            cache.write_text(json.dumps(rows, indent=2))
        study["runs"] += json.loads(cache.read_text())

    for encoder in ("frozen", "finetune"):
        if encoder not in args.stages:
            continue
        for method in [*METHODS, RANDOM]:
            for fraction in fractions:
                for seed in seeds:
                    run(method, encoder, fraction, seed, by_method(method))
        if encoder == "frozen" and "ablation" in args.stages:
            for method in ablations:
                for seed in seeds:
                    run(method, "frozen", ablation_fraction, seed, by_method(method))
    if "supervised" in args.stages:
        for fraction in fractions:
            for seed in seeds:
                run(
                    SUPERVISED,
                    "finetune",
                    fraction,
                    seed,
                    ["ckpt=none", "mode=supervised", "feature=backbone", *random_args],
                )

    study["seconds"] = round(time.time() - started, 1)
    text = write(study, out, args.table)
    print("\n" + text)
    print(
        f"[label_efficiency] {len(study['runs'])} probe runs, {study['seconds']} s; "
        f"JSON, table and plot in {out}/"
    )
    return study


if __name__ == "__main__":
    main()
