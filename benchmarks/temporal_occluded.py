"""Where temporal pooling could help most, and PCK does not look: joints hidden in the test frame.

PCK (shared/methods.md) counts visible joints only, and the training loss weighs invisible joints
0, so `benchmarks/temporal_2d.py` never scores a joint behind an occluder bar. The synthetic
generator still knows where such a joint is. This script re-scores the finished runs of a
temporal benchmark (each ``<variant>-seed<k>/head.pt`` under ``--runs``) on the same test frames,
split by visibility:

- ``visible``: the benchmark's own PCK@0.1 (check: equals result.json's);
- ``hidden``: joints inside the crop with visibility 0 (an occluder, another body part in front),
  scored against their true position with the same threshold (0.1 x max side of the tight box of
  the frame's visible joints).

It also checks the flow itself on the widest test clips: for each joint visible in both the
centre frame and a neighbour, the neighbour's true position against the centre position moved by
the DIS flow (what warping assumes) and against the centre position unmoved (what pooling without
warping assumes), in crop px.

Usage: python benchmarks/temporal_occluded.py --runs runs/bench-temporal-n2s2 [--table T.md]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch
from omegaconf import OmegaConf

GROUPS = ("wrists", "elbows")


def split_pck(pred, gt, visible, inside, alpha: float = 0.1) -> dict[str, float]:
    """PCK@alpha of visible joints and of hidden joints inside the crop, overall and per group;
    the threshold is alpha x max(w, h) of the tight box of each frame's visible joints."""
    from css_pose.skeleton import JOINT_GROUPS

    big = torch.finfo(gt.dtype).max
    lo = torch.where(visible[..., None], gt, big).amin(1)
    hi = torch.where(visible[..., None], gt, -big).amax(1)
    thr = alpha * (hi - lo).amax(-1, keepdim=True)  # (N, 1)
    hit = torch.linalg.vector_norm(pred - gt, dim=-1) <= thr
    ok = visible.any(1, keepdim=True)
    masks = {"visible": visible & ok, "hidden": ~visible & inside & ok}
    out = {}
    for name, mask in masks.items():
        out[name] = float(hit[mask].float().mean())
        out[f"{name}_count"] = int(mask.sum())
        for group, joints in JOINT_GROUPS.items():
            if group in GROUPS:
                m = mask[:, list(joints)]
                out[f"{name}/{group}"] = float(hit[:, list(joints)][m].float().mean())
    return out


def flow_check(clips) -> dict[str, float]:
    """Mean end-point error (crop px) of the neighbours' joints predicted by the flow at the
    centre joint, and by no motion, over joints visible in both frames; and the mean motion."""
    c = clips.frame_idx.shape[1] // 2
    kp, vis = clips.keypoints, clips.visibility > 0
    size = clips.frames.shape[-1]
    centre = kp[:, c]  # (N, J, 2)
    x = centre[..., 0].round().long().clamp(0, size - 1)
    y = centre[..., 1].round().long().clamp(0, size - 1)
    n = torch.arange(len(kp))[:, None]
    from css_pose.skeleton import JOINT_GROUPS

    wrist = torch.zeros(kp.shape[2], dtype=torch.bool)
    wrist[list(JOINT_GROUPS["wrists"])] = True
    flow_err, zero_err, wrists = [], [], []
    for k in range(kp.shape[1]):
        if k == c:
            continue
        flow = clips.flows[:, k].float()  # (N, 2, S, S): crop_c(p) ~ crop_k(p + flow(p))
        moved = centre + torch.stack([flow[n, 0, y, x], flow[n, 1, y, x]], dim=-1)
        both = vis[:, c] & vis[:, k] & (clips.frame_idx[:, k] != clips.frame_idx[:, c])[:, None]
        flow_err.append(torch.linalg.vector_norm(moved - kp[:, k], dim=-1)[both])
        zero_err.append(torch.linalg.vector_norm(centre - kp[:, k], dim=-1)[both])
        wrists.append(wrist.expand_as(both)[both])
    flow_e, zero_e, w = torch.cat(flow_err), torch.cat(zero_err), torch.cat(wrists)
    return {
        "pairs": len(flow_e),
        "flow_epe": float(flow_e.mean()),
        "no_motion_epe": float(zero_e.mean()),
        "wrist_flow_epe": float(flow_e[w].mean()),
        "wrist_no_motion_epe": float(zero_e[w].mean()),
    }


def score_run(run_dir: Path, cache: dict) -> dict:
    from css_pose.apps.support import frame_datamodule
    from css_pose.data.clips import load_clips
    from css_pose.models.pose_model import load_pose_model, predict
    from css_pose.models.temporal_pose import TemporalPoseModel
    from css_pose.temporal2d import predict_clips

    result = json.loads((run_dir / "result.json").read_text())
    cfg = OmegaConf.create(result["config"])
    model, codec, _ = load_pose_model(run_dir / "head.pt")
    t = cfg.temporal
    frames = t.frames if isinstance(model, TemporalPoseModel) else 0
    key = (frames, t.step, t.flow_preset)
    if key not in cache:
        if "dataset" not in cache:
            cache["dataset"] = frame_datamodule(cfg).probe_dataloader("test").dataset
        data = cache["dataset"]
        cache[key] = load_clips(data, range(len(data)), frames, t.step, t.flow_preset, "test")
    clips = cache[key]
    if frames:
        pred = predict_clips(model, codec, clips, cfg.flip_test, cfg.batch_size, "cpu")
    else:
        with torch.no_grad():
            pred = torch.cat(
                [
                    predict(model, codec, clips.images(i)[:, 0], cfg.flip_test)[0]
                    for i in torch.arange(len(clips)).split(cfg.batch_size)
                ]
            )
    c = clips.frame_idx.shape[1] // 2
    gt, visible = clips.keypoints[:, c], clips.visibility[:, c] > 0
    size = clips.frames.shape[-1]
    inside = ((gt >= -0.5) & (gt <= size - 0.5)).all(-1)
    scores = split_pck(pred, gt, visible, inside)
    scores["benchmark_pck"] = result["metrics"]["pck@0.1"]
    return scores


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, required=True, help="temporal_2d.py --out folder")
    parser.add_argument("--table", type=Path, default=None)
    args = parser.parse_args(argv)
    from css_pose.config import configure_threads

    configure_threads(None, 0)
    runs: dict[str, list[dict]] = {}
    cache: dict = {}
    for run_dir in sorted(p for p in args.runs.iterdir() if (p / "head.pt").exists()):
        name = run_dir.name.rsplit("-seed", 1)[0].replace("_", " ")
        print(f"scoring {run_dir}", file=sys.stderr)
        runs.setdefault(name, []).append(score_run(run_dir, cache))
    cols = ["visible", "visible/wrists", "visible/elbows", "hidden", "hidden/wrists",
            "hidden/elbows"]  # fmt: skip
    first = next(iter(runs.values()))[0]
    lines = [
        "# Temporal heads on visible and hidden joints",
        "",
        f"Written by `python benchmarks/temporal_occluded.py --runs {args.runs}`. PCK@0.1 on the "
        f"test frames' visible joints ({first['visible_count']}) and on the joints hidden in "
        f"the frame but inside the crop ({first['hidden_count']}); mean +- sd over seeds.",
        "",
        "| model | seeds | " + " | ".join(cols) + " |",
        "|---|---:|" + "---:|" * len(cols),
    ]
    for name, rs in runs.items():
        cells = []
        for c in cols:
            v = [r[c] for r in rs]
            sd = statistics.stdev(v) if len(v) > 1 else 0.0
            cells.append(f"{statistics.mean(v):.3f} +- {sd:.3f}")
        lines.append(f"| {name} | {len(rs)} | " + " | ".join(cells) + " |")
    widest = max((k for k in cache if isinstance(k, tuple)), key=lambda k: (k[0], k[1]))
    check = flow_check(cache[widest])
    lines += [
        "",
        f"Flow check on the test clips of {2 * widest[0] + 1} frames, step {widest[1]} "
        f"({check['pairs']} joint pairs visible in the centre frame and a neighbour): the "
        f"neighbour's joint is {check['no_motion_epe']:.2f} crop px from the centre joint "
        f"(no motion assumed) and {check['flow_epe']:.2f} px from the centre joint moved by the "
        f"DIS {widest[2]} flow; for the wrists {check['wrist_no_motion_epe']:.2f} and "
        f"{check['wrist_flow_epe']:.2f} px.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.table:
        args.table.write_text(text)
    return {"runs": runs, "flow_check": check}


if __name__ == "__main__":
    main()
