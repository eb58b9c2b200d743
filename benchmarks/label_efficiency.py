"""Label efficiency: how much does pretraining save when labels are whole videos? (issue 13)

    python benchmarks/label_efficiency.py                 # the full study, by hand (see below)
    python benchmarks/label_efficiency.py --quick         # tiny data and schedules (the tests)
    python benchmarks/label_efficiency.py --table docs/label_efficiency_results.md

The labels are drawn as whole training videos (``label_unit=video``): at a fraction f, max(1,
round(f * videos)) videos with every labeled frame (every ``data.probe_stride``-th). A seed picks
the videos; every method gets the same videos at the same (fraction, seed), so differences are
paired. Scores come from the test videos, which share no appearance or motion seed with training.

Stages, in this order; each skips what is already on disk, so an interrupted study resumes and
the tables can be rebuilt from the files alone:

1. Pretraining, one schedule for every method (the defaults of ``train.py`` with
   ``--pretrain-overrides``; seed 0): CSS, plain temporal contrastive and SimCLR.
2. The frozen-feature ceiling: an encoder trained with full supervision on every training label
   (``linear_probe.py mode=supervised target=2d label_fraction=1``).
3. Frozen encoders: features of every training frame (and of its mirror image, for the flip
   augmentation) and every test frame are computed once per encoder; then, per (fraction, seed),
   closed-form ridge regression with the penalty chosen by cross-validation grouped by labeled
   video (no test or validation labels are used) to 2D keypoints, camera-frame 3D and body-frame
   3D. Rows: CSS z_v (and z_i), plain temporal z_v, SimCLR backbone, random init z_v (the CSS
   architecture untrained), raw pixels (16x16 RGB), the supervised encoder (ceiling) and the mean
   pose of the labeled frames (floor, no image).
4. Fine-tuned encoders (``linear_probe.py encoder=finetune target=2d``, lr x 0.1, BatchNorm
   statistics frozen, ``--finetune-steps`` steps whatever the label count) for CSS, plain temporal
   and SimCLR, and supervised from scratch (``mode=supervised``) on the same labels and steps.
   Fractions run in the order 1 %, 10 %, 5 %, 100 %, so a partial run holds the target cells.

Writes OUT/label_efficiency.json (every run's metrics), OUT/label_efficiency.md (tables, also
printed) and OUT/label_efficiency.png (PCK@0.1 against label fraction).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch

FRACTIONS = (0.01, 0.05, 0.1, 1.0)
FINETUNE_ORDER = (0.01, 0.1, 0.05, 1.0)
PRETRAINED = {  # name -> train.py overrides, frozen feature(s), fine-tuned feature
    "css": (["method=css"], ("z_v", "z_i"), "z_v"),
    "plain_temporal": (["method=plain_temporal"], ("z_v",), "z_v"),
    "simclr": (["method=simclr"], ("backbone",), "backbone"),
}
RANDOM = "random init"
PIXELS = "raw pixels"
CEILING = "supervised encoder (ceiling)"
FLOOR = "mean pose (floor)"
SUPERVISED = "supervised from scratch"
PIXEL_SIZE = 16
# Ridge penalties (standardised features) tried by grouped cross-validation; with a single labeled
# video there is nothing to cross-validate and FALLBACK_ALPHA is used.
ALPHAS = (1.0, 10.0, 100.0, 1000.0, 10000.0)
FALLBACK_ALPHA = 100.0
TARGET_KINDS = ("kp2d", "kp3d", "body3d")
# Issue 13's targets at 1 % and 10 % (frozen): PCK gain over random init and pixels, body-frame
# MPJPE ratio; fine-tuned CSS at 1 %: px error ratio to supervised from scratch.
PCK_GAIN, BODY_RATIO, FINETUNE_RATIO = 0.10, 0.75, 0.85
# Two-sided 95 % Student t quantiles by degrees of freedom (paired intervals over seeds).
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def frozen_rows() -> list[str]:
    rows = []
    for name, (_, feats, _) in PRETRAINED.items():
        rows += [name if f == feats[0] else f"{name} {f}" for f in feats]
    return [*rows, RANDOM, PIXELS, CEILING, FLOOR]


# --- quick mode -----------------------------------------------------------------------------------
def quick_dataset(root: Path) -> Path:
    """A 16-video synthetic set (64 px, 24 frames), generated once into ``root``."""
    from css_pose.data.synthetic import generate_dataset

    if not (root / "manifest.json").exists():
        generate_dataset(
            root,
            videos=16,
            frames=24,
            size=64,
            seed=5,
            workers=1,
            val_fraction=0.125,
            test_fraction=0.125,
            progress=False,
        )
    return root


def quick_train_overrides(root: Path, method: str) -> list[str]:
    """Two epochs of eight samples: seconds per method on a CPU."""
    base = [
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
        "optim.warmup_steps=0",
        "probe.enabled=false",
        "images.every_n_epochs=5",
    ]
    if method != "simclr":
        base += ["method.dim_v=16", "method.dim_i=8", "method.proj_hidden=32", "method.proj_dim=16"]
        base += ["method.decoder_channels=16"] if method == "css" else []
    return base


# --- runs -----------------------------------------------------------------------------------------
def pretrain(name: str, overrides: list[str], out: Path) -> dict:
    """Pretrain one method into OUT/pretrain/<name> (skipped when it finished before)."""
    from css_pose.runner import main as train_main

    run_dir = out / "pretrain" / name
    summary = run_dir / "summary.json"
    if not summary.exists():
        print(f"\n[label_efficiency] pretraining {name} -> {run_dir}", flush=True)
        train_main([*overrides, f"run_dir={run_dir}"])
    return json.loads(summary.read_text())


def probe(run_dir: Path, argv: list[str]) -> dict:
    """One linear_probe.py run into ``run_dir`` (skipped when its result.json exists)."""
    from css_pose.linear_probe import load_probe_config, run_probe

    result = run_dir / "result.json"
    if not result.exists():
        argv = [*argv, f"run_dir={run_dir}"]
        run_probe(load_probe_config(argv), argv)
    return json.loads(result.read_text())


def encoders(out: Path, ckpts: dict[str, str], ceiling_dir: Path, probe_args: list[str]):
    """(row name, method module or None for pixels, feature) for every frozen row but the floor."""
    from css_pose.apps.support import random_init_config
    from css_pose.checkpoint import load_method, load_strict, read_torch_file
    from css_pose.linear_probe import load_probe_config
    from css_pose.methods import build_method

    rows = []
    for name, (_, feats, _) in PRETRAINED.items():
        method, _ = load_method(ckpts[name])
        rows += [(name if f == feats[0] else f"{name} {f}", method, f) for f in feats]
    torch.manual_seed(0)
    cfg = load_probe_config([*probe_args, "ckpt=none"])
    rows.append((RANDOM, build_method(random_init_config(cfg)), "z_v"))
    rows.append((PIXELS, None, "pixels"))
    result = json.loads((ceiling_dir / "result.json").read_text())
    ceiling = build_method(random_init_config(load_probe_config(ceiling_argv(probe_args, 1))))
    state = read_torch_file(ceiling_dir / "probe.pt", "model")  # hash-checked
    load_strict(ceiling, state["encoder"], ceiling_dir / "probe.pt")
    rows.append((CEILING, ceiling, result["config"]["feature"]))
    return rows


def ceiling_argv(probe_args: list[str], steps: int) -> list[str]:
    return [
        *probe_args,
        "ckpt=none",
        "mode=supervised",
        "feature=z_v",
        "target=2d",
        "label_fraction=1.0",
        f"steps={steps}",
        "batch_size=64",
    ]


@torch.no_grad()
def extract(method, frames: torch.Tensor, feature: str, mirror: bool, chunk: int = 512):
    """(N, D) features of uint8 crops ``frames`` (N, 3, S, S) (mirrored left-right with
    ``mirror``); ``method`` None: the crop itself, area-resized to PIXEL_SIZE, flattened."""
    if method is not None:
        method.eval()
    out = []
    for part in frames.split(chunk):
        x = part.float().div_(255.0)
        if mirror:
            x = x.flip(-1)
        if method is None:
            out.append(torch.nn.functional.adaptive_avg_pool2d(x, PIXEL_SIZE).flatten(1))
        else:
            out.append(method.features(x)[feature].float())
    return torch.cat(out)


def collect(loader) -> dict[str, torch.Tensor]:
    """Crops (N, 3, S, S) uint8 and targets of every frame of ``loader``, with the targets of the
    mirrored crops: kp2d (N, J, 2) crop px, kp3d / body3d (N, J, 3) mm, visibility (N, J)."""
    from css_pose.probe.model import mirror_frame_batch, targets_of

    parts: dict[str, list] = {}
    for batch in loader:
        flipped = mirror_frame_batch(batch, torch.ones(len(batch["frames"]), dtype=torch.bool))
        parts.setdefault("frames", []).append(batch["frames"].mul(255).round().byte())
        for prefix, b in (("", batch), ("mirror_", flipped)):
            kp2, vis = targets_of(b, "2d")
            for key, value in (
                ("kp2d", kp2.float()),
                ("visibility", vis),
                ("kp3d", targets_of(b, "3d")[0].float()),
                ("body3d", targets_of(b, "body3d")[0].float()),
            ):
                parts.setdefault(prefix + key, []).append(value)
    return {k: torch.cat(v) for k, v in parts.items()}


class FrozenData:
    """Every training frame (plain and mirrored) and every test frame, decoded once (crops kept
    as uint8 in OUT/features/frames.pt) and read by every encoder in the same order."""

    def __init__(self, probe_args: list[str], out: Path):
        from css_pose.apps.support import frame_datamodule, frame_videos, make_loader
        from css_pose.linear_probe import load_probe_config

        cfg = load_probe_config([*probe_args, "ckpt=none"])
        dm = frame_datamodule(cfg)
        train = dm.probe_dataloader("train")
        self.videos = frame_videos(train.dataset, range(len(train.dataset)))
        names = sorted(set(self.videos))
        self.video_ids = torch.tensor([names.index(v) for v in self.videos])
        self.n_test_videos = len(dm.probe_dataloader("test").dataset.videos)
        cache = out / "features" / "frames.pt"
        if cache.exists():
            saved = torch.load(cache, weights_only=True)
        else:
            t0 = time.time()
            saved = {
                "train": collect(make_loader(train.dataset, train, cfg.data.batch_size, False, 0)),
                "test": collect(dm.probe_dataloader("test")),
            }
            cache.parent.mkdir(parents=True, exist_ok=True)
            torch.save(saved, cache)
            print(f"[label_efficiency] decoded {len(saved['train']['frames'])} training and "
                  f"{len(saved['test']['frames'])} test crops in {time.time() - t0:.0f} s")  # fmt: skip
        if len(saved["train"]["frames"]) != len(self.videos):
            raise RuntimeError(f"{cache} does not match the dataset; delete it and rerun")
        t = saved["train"]
        self.train = {k: t[k] for k in (*TARGET_KINDS, "visibility")}
        self.mirror = {k: t[f"mirror_{k}"] for k in (*TARGET_KINDS, "visibility")}
        self.test = {k: saved["test"][k] for k in (*TARGET_KINDS, "visibility")}
        self.frames = {"train": t["frames"], "test": saved["test"]["frames"]}
        self.n_test = len(self.test["kp2d"])

    def features(self, out: Path, name: str, method, feature: str) -> dict[str, torch.Tensor]:
        path = out / "features" / f"{name.replace(' ', '_')}.pt"
        if path.exists():
            return torch.load(path, weights_only=True)
        t0 = time.time()
        feats = {
            "train": extract(method, self.frames["train"], feature, False),
            "mirror": extract(method, self.frames["train"], feature, True),
            "test": extract(method, self.frames["test"], feature, False),
        }
        torch.save(feats, path)
        n = sum(len(v) for v in feats.values())
        print(f"[label_efficiency] {name}: {n} frames -> {feats['train'].shape[1]}-d features "
              f"in {time.time() - t0:.0f} s", flush=True)  # fmt: skip
        return feats


def fit_frozen(data: FrozenData, feats: dict | None, chosen: torch.Tensor) -> dict[str, float]:
    """Ridge from features to each target on the chosen frames and their mirrors; test scores.
    ``feats`` None: the floor (the mean pose of the chosen, unmirrored frames)."""
    from css_pose.methods.callbacks import score_probe
    from css_pose.probe.ridge import RidgeProbe, fit_ridge_cv_many

    gt = {**{k: data.test[k] for k in TARGET_KINDS}, "visibility": data.test["visibility"]}
    n_test = data.n_test
    if feats is None:
        pred = {k: data.train[k][chosen].mean(0, keepdim=True).expand(n_test, -1, -1)
                for k in TARGET_KINDS}  # fmt: skip
        return score_probe(pred, gt, 0.1)
    x = torch.cat([feats["train"][chosen], feats["mirror"][chosen]])
    groups = data.video_ids[chosen].repeat(2)
    n_folds = min(5, len(torch.unique(groups)))
    ys = {k: torch.cat([data.train[k][chosen], data.mirror[k][chosen]]).flatten(1)
          for k in TARGET_KINDS}  # fmt: skip
    if n_folds >= 2:
        ridges = {k: r for k, (r, _) in fit_ridge_cv_many(x, ys, ALPHAS, n_folds, groups).items()}
    else:
        ridges = {k: RidgeProbe(FALLBACK_ALPHA).fit(x, y) for k, y in ys.items()}
    pred = {k: ridges[k].predict(feats["test"]).float().reshape(gt[k].shape) for k in TARGET_KINDS}
    return score_probe(pred, gt, 0.1)


# --- statistics and tables ------------------------------------------------------------------------
def select(rows, **keys) -> list[dict]:
    return [r for r in rows if all(r.get(k) == v for k, v in keys.items())]


def values(rows, metric: str) -> dict[int, float]:
    return {r["seed"]: r["metrics"][metric] for r in rows if math.isfinite(r["metrics"][metric])}


def mean_std(v: dict[int, float]) -> tuple[float, float, int] | None:
    if not v:
        return None
    xs = list(v.values())
    return statistics.mean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0), len(xs)


def paired(a: dict[int, float], b: dict[int, float]) -> tuple[float, float, int] | None:
    """Mean of a - b over the seeds both have, and the half-width of its 95 % t interval."""
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return None
    d = [a[s] - b[s] for s in seeds]
    if len(d) == 1:
        return d[0], math.nan, 1
    half = T95.get(len(d) - 1, 1.96) * statistics.stdev(d) / math.sqrt(len(d))
    return statistics.mean(d), half, len(d)


def fmt(c, digits: int = 3) -> str:
    if c is None:
        return "not run"
    mean, std, n = c
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if n > 1 else f"{mean:.{digits}f} (n=1)"


def fmt_paired(c, digits: int = 3) -> str:
    if c is None:
        return "not run"
    mean, half, n = c
    return f"{mean:+.{digits}f} [{mean - half:+.{digits}f}, {mean + half:+.{digits}f}]" if n > 1 \
        else f"{mean:+.{digits}f} (n=1)"  # fmt: skip


def labels_saved(rows, fractions) -> str:
    """Smallest fraction at which fine-tuned CSS reaches supervised-from-scratch at 10 % (PCK)."""
    ref = mean_std(values(select(rows, method=SUPERVISED, fraction=0.1), "pck"))
    if ref is None:
        return "not measured (no supervised-from-scratch run at 10 %)"
    for f in sorted(fractions):
        c = mean_std(values(select(rows, method="css", encoder="finetune", fraction=f), "pck"))
        if c is not None and c[0] >= ref[0]:
            return (f"fine-tuned CSS reaches supervised from scratch at 10 % (PCK@0.1 {ref[0]:.3f})"
                    f" at {f:g} of the videos ({c[0]:.3f})")  # fmt: skip
    return (f"fine-tuned CSS does not reach supervised from scratch at 10 % (PCK@0.1 {ref[0]:.3f}) "
            "at any measured fraction")  # fmt: skip


def markdown(study: dict) -> str:
    rows, fractions = study["runs"], study["fractions"]
    videos = {r["fraction"]: r["n_videos"] for r in rows if "n_videos" in r}
    frames = {r["fraction"]: r["n_labeled"] for r in rows}
    head = " | ".join(f"{f:g} ({videos.get(f, '?')} videos, {frames.get(f, '?')} fr)"
                      for f in fractions)  # fmt: skip
    sep = "|---|" + "---|" * len(fractions)
    n_test = next((r["n_test_frames"] for r in rows), "?")
    lines = [
        f"Test: {n_test} frames of {study.get('n_test_videos', '?')} held-out videos. Labels: whole "
        f"training videos (of {study.get('n_train_videos', '?')}), the same videos for every "
        f"method at each (fraction, seed); seeds {study['seeds']}. Cells: mean ± std over seeds.",
        "",
    ]
    for metric, title, digits in (
        ("pck", "2D PCK@0.1 (higher is better)", 3),
        ("body_mpjpe", "body-frame 3D MPJPE, mm (lower is better)", 1),
        ("mpjpe", "camera-frame 3D MPJPE, mm (lower is better)", 1),
    ):
        lines += [f"**Frozen encoder, ridge probe: {title}**", "", f"| encoder | {head} |", sep]
        for m in frozen_rows():
            cells = [fmt(mean_std(values(select(rows, method=m, encoder="frozen", fraction=f),
                                         metric)), digits) for f in fractions]  # fmt: skip
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        lines.append("")

    lines += [
        "**Paired differences, frozen CSS z_v minus each baseline** (mean over seeds, 95 % t "
        "interval): PCK@0.1 points; body-frame MPJPE as CSS / baseline",
        "",
        "| baseline | fraction | PCK@0.1 difference | body MPJPE ratio | met |",
        "|---|---|---|---|---|",
    ]
    for base in (RANDOM, PIXELS, "plain_temporal", "simclr", FLOOR):
        for f in fractions:
            css = select(rows, method="css", encoder="frozen", fraction=f)
            other = select(rows, method=base, encoder="frozen", fraction=f)
            d = paired(values(css, "pck"), values(other, "pck"))
            a, b = mean_std(values(css, "body_mpjpe")), mean_std(values(other, "body_mpjpe"))
            ratio = a[0] / b[0] if a and b else None
            met = ""
            if f in (0.01, 0.1) and d is not None and ratio is not None:
                if base in (RANDOM, PIXELS):
                    ok = d[0] >= PCK_GAIN and ratio <= BODY_RATIO
                    met = f"{'yes' if ok else 'no'} (target +{PCK_GAIN:g}, <= {BODY_RATIO:g}x)"
                elif base != FLOOR:
                    ok = d[0] > 0 and (d[1] != d[1] or d[0] - d[1] > 0)
                    met = f"{'yes' if ok else 'no'} (target: beats it)"
            r_s = f"{ratio:.3f}" if ratio is not None else "not run"
            lines.append(f"| {base} | {f:g} | {fmt_paired(d)} | {r_s} | {met} |")
    lines.append("")

    lines += [
        f"**Fine-tuned encoder, linear head to 2D** ({study['finetune_steps']} steps of "
        "batch 64 whatever the label count; supervised from scratch: the same steps, encoder "
        "at the full learning rate): PCK@0.1 / mean px error",
        "",
        f"| method | {head} |",
        sep,
    ]
    for m in [*PRETRAINED, SUPERVISED]:
        cells = []
        for f in fractions:
            sel = select(rows, method=m, encoder="finetune", fraction=f)
            p, e = mean_std(values(sel, "pck")), mean_std(values(sel, "px_error"))
            cells.append("not run" if p is None else f"{fmt(p)} / {e[0]:.2f} px")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines.append("")
    lines += ["| fraction | fine-tuned CSS px error / supervised from scratch | PCK@0.1 difference "
              "(paired) | met (target <= 0.85x at 1 %) |", "|---|---|---|---|"]  # fmt: skip
    for f in fractions:
        css = select(rows, method="css", encoder="finetune", fraction=f)
        sup = select(rows, method=SUPERVISED, encoder="finetune", fraction=f)
        a, b = mean_std(values(css, "px_error")), mean_std(values(sup, "px_error"))
        d = paired(values(css, "pck"), values(sup, "pck"))
        if a is None or b is None:
            lines.append(f"| {f:g} | not run | not run | |")
            continue
        ratio = a[0] / b[0]
        met = ("yes" if ratio <= FINETUNE_RATIO else "no") if f == 0.01 else ""
        lines.append(f"| {f:g} | {ratio:.3f} | {fmt_paired(d)} | {met} |")
    lines += ["", f"Labels saved: {labels_saved(rows, fractions)}.", ""]

    lines += ["**Pretraining** (one schedule for every method)", ""]
    lines += [
        "| method | steps | training s | online probe PCK@0.1 at init -> end (z_v; SimCLR backbone) |",
        "|---|---|---|---|",
    ]  # fmt: skip
    for m, s in study["pretraining"].items():
        feat = "backbone" if m == "simclr" else "z_v"
        init = (s.get("probe_initial") or {}).get(f"{feat}_pck")
        end = (s.get("probe_final") or {}).get(f"{feat}_pck")
        probe_s = f"{init:.3f} -> {end:.3f}" if init is not None and end is not None else "off"
        lines.append(f"| {m} | {s.get('global_step')} | {s.get('train_seconds')} | {probe_s} |")
    return "\n".join(lines) + "\n"


def plot(study: dict, path: Path) -> Path:
    """PCK@0.1 against label fraction (log x); frozen solid, fine-tuned dashed, error bars: std."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, fractions = study["runs"], study["fractions"]
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    curves = [(m, "frozen") for m in frozen_rows()]
    curves += [(m, "finetune") for m in [*PRETRAINED, SUPERVISED]]
    colors: dict[str, str] = {FLOOR: "0.4", CEILING: "0.1"}
    for method, encoder in curves:
        pts = []
        for f in fractions:
            c = mean_std(values(select(rows, method=method, encoder=encoder, fraction=f), "pck"))
            if c is not None:
                pts.append((f, c[0], c[1]))
        if not pts:
            continue
        xs, ys, es = zip(*pts)
        line = ax.errorbar(xs, ys, yerr=es, fmt=("-" if encoder == "frozen" else "--") + "o",
                           capsize=3, color=colors.get(method), label=f"{method} ({encoder})",
                           markersize=4)  # fmt: skip
        colors.setdefault(method, line[0].get_color())
    ax.set_xscale("log")
    ax.set_xticks(list(fractions))
    ax.set_xticklabels([f"{f:g}" for f in fractions])
    ax.set_xlabel("label fraction (whole training videos)")
    ax.set_ylabel("test 2D PCK@0.1, higher is better")
    ax.set_title("Label efficiency on the synthetic benchmark set")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=6, ncol=2)
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
    parser.add_argument("--pretrain-overrides", nargs="*", default=None,
                        help="train.py overrides for every method (default: 20 epochs)")  # fmt: skip
    parser.add_argument("--ceiling-steps", type=int, default=4000)
    parser.add_argument("--finetune-steps", type=int, default=400)
    parser.add_argument("--finetune-fractions", type=float, nargs="+", default=None,
                        help="fine-tune only at these fractions (default: all)")  # fmt: skip
    parser.add_argument("--stages", nargs="+", default=["frozen", "finetune"],
                        choices=["frozen", "finetune"])  # fmt: skip
    parser.add_argument("--table", type=Path, default=None, help="also write the tables here")
    args = parser.parse_args(argv)

    from css_pose.config import configure_threads

    configure_threads(None, 0)
    out = Path(
        args.out or ("runs/label-efficiency-quick" if args.quick else "runs/label-efficiency")
    )
    out.mkdir(parents=True, exist_ok=True)
    seeds = args.seeds or ([0, 1] if args.quick else [0, 1, 2])
    fractions = tuple(args.fractions or ((0.1, 1.0) if args.quick else FRACTIONS))
    ft_fractions = [f for f in FINETUNE_ORDER if f in fractions]
    ft_fractions += [f for f in fractions if f not in ft_fractions]
    if args.finetune_fractions:
        ft_fractions = [f for f in ft_fractions if f in args.finetune_fractions]
    ceiling_steps, finetune_steps = (
        (10, 4) if args.quick else (args.ceiling_steps, args.finetune_steps)
    )
    # In-process loading: the crop store makes it cheap, and the cores stay with torch.
    common = ["logger.wandb.enabled=false", "device=cpu", "label_unit=video", "data.num_workers=0"]
    pre_common = ["logger.wandb.enabled=false"]
    if args.quick:
        root = quick_dataset(out / "data")
        common += [f"data.root={root}", "data.batch_size=8"]
        common += ["method.dim_v=16", "method.dim_i=8", "method.proj_hidden=32"]
        common += ["method.proj_dim=16"]
    else:
        pre_common += args.pretrain_overrides or [
            "trainer.max_epochs=20",
            "probe.every_n_epochs=4",
            "images.every_n_epochs=4",
        ]

    study = {
        "command": "python benchmarks/label_efficiency.py " + " ".join(argv or sys.argv[1:]),
        "quick": args.quick,
        "seeds": seeds,
        "fractions": list(fractions),
        "finetune_steps": finetune_steps,
        "ceiling_steps": ceiling_steps,
        "pretraining": {},
        "runs": [],
    }
    started = time.time()

    ckpts = {}
    for name, (overrides, _, _) in PRETRAINED.items():
        extra = quick_train_overrides(root, name) if args.quick else []
        summary = pretrain(name, [*overrides, *pre_common, *extra], out)
        study["pretraining"][name] = {
            k: summary.get(k)
            for k in ("global_step", "train_seconds", "probe_initial", "probe_final", "encoder")
        }
        ckpts[name] = summary["last_checkpoint"]

    ceiling_dir = out / "ceiling"
    print(f"\n[label_efficiency] ceiling encoder -> {ceiling_dir}", flush=True)
    ceiling = probe(ceiling_dir, ceiling_argv(common, ceiling_steps))
    study["ceiling_run"] = {"steps": ceiling_steps, "metrics": ceiling["metrics"]}

    from css_pose.apps.support import select_labeled

    data = FrozenData(common, out)
    n_videos = len(set(data.videos))
    study["n_train_videos"] = n_videos
    study["n_test_videos"] = data.n_test_videos
    draws = {
        (f, s): select_labeled(len(data.videos), f, s, data.videos)
        for f in fractions
        for s in seeds
    }

    def record(method, encoder, fraction, seed, metrics, n_labeled, feature):
        study["runs"].append(
            {
                "method": method,
                "encoder": encoder,
                "fraction": fraction,
                "seed": seed,
                "n_videos": max(1, round(fraction * n_videos)),
                "n_labeled": n_labeled,
                "n_test_frames": data.n_test,
                "feature": feature,
                "metrics": metrics,
            }
        )

    if "frozen" in args.stages:
        frozen_cache = out / "frozen.json"
        done = json.loads(frozen_cache.read_text()) if frozen_cache.exists() else []
        key = {(r["method"], r["fraction"], r["seed"]) for r in done}
        study["runs"] += done
        todo = [(FLOOR, None, "none"), *encoders(out, ckpts, ceiling_dir, common)]
        for name, method, feature in todo:
            missing = [(f, s) for f in fractions for s in seeds if (name, f, s) not in key]
            if not missing:
                continue
            feats = None if name == FLOOR else data.features(out, name, method, feature)
            t0 = time.time()
            for f, s in missing:
                metrics = fit_frozen(data, feats, draws[(f, s)])
                record(name, "frozen", f, s, metrics, len(draws[(f, s)]), feature)
            print(f"[label_efficiency] frozen {name}: {len(missing)} fits in "
                  f"{time.time() - t0:.0f} s", flush=True)  # fmt: skip
            frozen_cache.write_text(
                json.dumps([r for r in study["runs"] if r["encoder"] == "frozen"], indent=2)
            )
            write(study, out, args.table)

    if "finetune" in args.stages:
        for f in ft_fractions:
            for s in seeds:
                for m in [*PRETRAINED, SUPERVISED]:
                    run_dir = out / "finetune" / m.replace(" ", "_") / f"f{f:g}-s{s}"
                    argv_ = [*common, "target=2d", f"label_fraction={f}", f"seed={s}",
                             f"steps={finetune_steps}", "batch_size=64"]  # fmt: skip
                    if m == SUPERVISED:
                        argv_ += ["ckpt=none", "mode=supervised", "feature=z_v"]
                    else:
                        argv_ += [f"ckpt={ckpts[m]}", "encoder=finetune",
                                  f"feature={PRETRAINED[m][2]}"]  # fmt: skip
                    r = probe(run_dir, argv_)
                    record(m, "finetune", f, s, r["metrics"], r["n_labeled"], PRETRAINED.get(
                        m, (None, None, "z_v"))[2])  # fmt: skip
                    write(study, out, args.table)

    study["seconds"] = round(time.time() - started, 1)
    text = write(study, out, args.table)
    print("\n" + text)
    print(
        f"[label_efficiency] {len(study['runs'])} runs, {study['seconds']} s; "
        f"JSON, tables and plot in {out}/"
    )
    return study


if __name__ == "__main__":
    main()
