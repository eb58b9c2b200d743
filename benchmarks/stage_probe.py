"""Ridge probes on every ConvNet stage of the label-efficiency study's frozen encoders.

    python benchmarks/stage_probe.py --study runs/le2

Run after ``benchmarks/label_efficiency.py --out STUDY`` (it reuses the study's decoded crops,
its pretrained checkpoints and its ceiling encoder). For each encoder and each of the stages 2-4
(stride 4, 8 and 16; stage 2's 8x8 map average-pooled to 4x4 so every probe sees 1-2 thousand
dimensions), the flattened map of every training crop and its mirror image is regressed to 2D,
camera-frame 3D and body-frame 3D with the same grouped-cross-validated ridge as the study, at
1 % and 10 % of the training videos, seeds 0-2. It asks whether pretraining put pose anywhere in
the network, or only failed to carry it to z_v. Prints a markdown table of 2D PCK@0.1 (mean over
the seeds) and writes STUDY/stage_probe.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import label_efficiency as le  # noqa: E402

STAGES = (2, 3, 4)  # 1-based ConvNet stages; stage 1 (stride 2) is 8,192-d even pooled
POOL = 4  # maps wider than this are average-pooled to POOL x POOL cells


@torch.no_grad()
def stage_features(method, frames: torch.Tensor, stage: int, mirror: bool) -> torch.Tensor:
    """(N, C * h * w) flattened map of 1-based ``stage`` for uint8 crops (N, 3, S, S)."""
    method.eval()
    out = []
    for part in frames.split(512):
        x = part.float().div_(255.0)
        if mirror:
            x = x.flip(-1)
        f = method.encoder.forward_stages(x)[stage - 1]
        if f.shape[-1] > POOL:
            f = torch.nn.functional.adaptive_avg_pool2d(f, POOL)
        out.append(f.flatten(1))
    return torch.cat(out)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--study", type=Path, default=Path("runs/label-efficiency"))
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.01, 0.1])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args(argv)

    from css_pose.apps.support import select_labeled
    from css_pose.config import configure_threads

    configure_threads(None, 0)
    study = json.loads((args.study / "label_efficiency.json").read_text())
    common = ["logger.wandb.enabled=false", "device=cpu", "label_unit=video", "data.num_workers=0"]
    data = le.FrozenData(common, args.study)
    ckpts = {}
    for name in le.PRETRAINED:
        found = sorted((args.study / "pretrain" / name).rglob("last.ckpt"))
        if not found:
            raise SystemExit(f"no last.ckpt under {args.study / 'pretrain' / name}: run "
                             f"benchmarks/label_efficiency.py --out {args.study} first")  # fmt: skip
        ckpts[name] = str(found[-1])
    seen, encoders = set(), []
    for name, method, _ in le.encoders(args.study, ckpts, args.study / "ceiling", common):
        if method is not None and id(method) not in seen:
            seen.add(id(method))
            encoders.append((name, method))
    draws = {(f, s): select_labeled(len(data.videos), f, s, data.videos)
             for f in args.fractions for s in args.seeds}  # fmt: skip
    results: dict = {"study": study.get("command"), "seeds": args.seeds, "rows": {}}
    for name, method in encoders:
        for stage in STAGES:
            t0 = time.time()
            feats = {
                "train": stage_features(method, data.frames["train"], stage, False),
                "mirror": stage_features(method, data.frames["train"], stage, True),
                "test": stage_features(method, data.frames["test"], stage, False),
            }
            row = results["rows"].setdefault(f"{name} stage {stage}", {})
            row["dims"] = feats["train"].shape[1]
            for (f, _seed), chosen in draws.items():
                row.setdefault(str(f), []).append(le.fit_frozen(data, feats, chosen))
            pck = {f: statistics.fmean(m["pck"] for m in row[str(f)]) for f in args.fractions}
            print(f"[stage_probe] {name} stage {stage} ({row['dims']}-d): "
                  + ", ".join(f"{f:g}: {v:.3f}" for f, v in pck.items())
                  + f" ({time.time() - t0:.0f} s)", flush=True)  # fmt: skip
    lines = ["| encoder | " + " | ".join(f"stage {s}" for s in STAGES) + " |",
             "|---|" + "---:|" * len(STAGES)]  # fmt: skip
    for name, _ in encoders:
        cells = []
        for stage in STAGES:
            row = results["rows"][f"{name} stage {stage}"]
            cells.append(" / ".join(
                f"{statistics.fmean(m['pck'] for m in row[str(f)]):.3f}"
                for f in args.fractions))  # fmt: skip
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    print("\n2D PCK@0.1 at " + " / ".join(f"{f:g}" for f in args.fractions)
          + " of the training videos (mean over seeds)\n\n" + "\n".join(lines))  # fmt: skip
    (args.study / "stage_probe.json").write_text(json.dumps(results, indent=1, default=float))
    return results


if __name__ == "__main__":
    main()
