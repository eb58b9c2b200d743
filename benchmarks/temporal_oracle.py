"""How much could fusing neighbouring frames gain, with perfect alignment? (issue 16)

Takes the single-frame model of a finished ``benchmarks/temporal_2d.py`` run and predicts every
frame of each test clip (2n + 1 frames, step s, flip test as in its config). Each neighbour's
keypoints are then brought onto the centre frame in three ways and fused with the centre's:

- ``none``: not moved (what pooling without warping assumes);
- ``DIS``: moved back by the DIS flow of the clip (the flow the temporal heads warp with),
  read at the centre frame's prediction;
- ``oracle``: moved back by the true motion of that joint between the two crops (ground truth;
  no method can do this, it bounds what alignment can give).

Fusion is the mean of the 2n + 1 estimates, or their mean weighted by the model's peak scores.
The ``heatmaps`` rows fuse at the heatmap level instead, as the temporal heads do: the same
single-frame network's heatmaps of the clip, warped onto the centre (by no flow, the DIS flow,
or the true skeleton motion, ``css_pose.flow.skeleton_flow``) and averaged, untrained. The
``true heatmaps of a neighbour`` rows take no network at all: a neighbour's ground-truth
heatmaps warped onto the centre frame, on the heatmap grid and at crop pixels, show what the
warp itself loses.
PCK@0.1 on the centre frames' visible joints, as in the benchmark. The oracle rows bound the gain
that temporal fusion of this per-frame model can bring; the DIS rows show how much of it the
flow delivers. A standalone check with no training: seconds per run.

Usage: python benchmarks/temporal_oracle.py --runs runs/fast-temporal-s1 --frames 2 --step 1
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import torch
from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from temporal_occluded import split_pck  # noqa: E402

ALIGN = ("none", "DIS", "oracle")


def fuse(pred, scores, flows, gt, align: str, weighted: bool) -> torch.Tensor:
    """(N, J, 2) centre-frame keypoints from the clip's per-frame predictions.

    pred (N, T, J, 2) crop px, each in its own frame's crop; scores (N, T, J); flows (N, T, 2, S, S)
    px, crop_c(p) ~ crop_k(p + flows[:, k](p)); gt (N, T, J, 2) true crop px.
    """
    c = pred.shape[1] // 2
    if align == "none":
        est = pred
    elif align == "oracle":
        est = pred - (gt - gt[:, c : c + 1])
    elif align == "DIS":
        size = flows.shape[-1]
        xy = pred[:, c].round().long().clamp(0, size - 1)  # (N, J, 2)
        n = torch.arange(len(pred))[:, None]
        moved = [
            flows[:, k].float()[n, :, xy[..., 1], xy[..., 0]] for k in range(pred.shape[1])
        ]  # each (N, J, 2)
        est = pred - torch.stack(moved, 1)
    else:
        raise ValueError(f"align must be one of {ALIGN}, got {align!r}")
    w = scores.clamp_min(1e-6) if weighted else torch.ones_like(scores)
    return (est * w[..., None]).sum(1) / w.sum(1)[..., None]


def warp_precision(model, codec, clips, flows: dict, score) -> dict[str, dict]:
    """PCK rows of perfect heatmaps: each neighbour's ground-truth heatmaps, warped onto the
    centre frame by each of ``flows`` ({name: (N, T, 2, S, S) px or None for no warping}),
    decoded and scored against the centre's joints, averaged over the neighbours. ``grid``: as
    the temporal heads align (``TemporalPoseModel.align``) on the heatmap grid, ``grid x2`` with
    ``warp_scale=2``; ``crop``: at crop pixels (stride 1) with the flow as computed. What warping
    alone loses, before any network error."""
    from css_pose.codecs.heatmap import HeatmapCodec
    from css_pose.flow import warp
    from css_pose.models.temporal_pose import TemporalPoseModel

    size, frames = clips.frames.shape[-1], clips.frame_idx.shape[1] // 2
    fine = HeatmapCodec(size, stride=1, sigma=codec.sigma * codec.stride)
    c = frames
    ones = torch.ones_like(clips.visibility)
    rows, grids = {}, ("grid", "grid x2", "crop")
    for grid in grids:  # the true heatmaps are encoded once per grid
        cod = fine if grid == "crop" else codec
        truth = torch.stack([cod.encode(clips.keypoints[:, k], ones[:, k])["heatmaps"]
                             for k in range(2 * frames + 1)], 1)  # fmt: skip
        for name, flow in flows.items():
            maps = truth
            if flow is not None and grid == "crop":
                maps = torch.stack([warp(maps[:, k], flow[:, k].float())[0]
                                    for k in range(2 * frames + 1)], 1)  # fmt: skip
            elif flow is not None:
                align = TemporalPoseModel(model.encoder, model.head, frames, "average",
                                          warp_scale=2 if grid == "grid x2" else 1)  # fmt: skip
                maps = align.align(maps, flow.float())[0]
            per_k = [score(cod.decode({"heatmaps": maps[:, k]})[0])
                     for k in range(2 * frames + 1) if k != c]  # fmt: skip
            rows[name, grid] = {key: sum(r[key] for r in per_k) / len(per_k) for key in per_k[0]}
    return {f"true heatmaps of a neighbour, {n}, {g}": rows[n, g] for n in flows for g in grids}


def evaluate(run_dir: Path, frames: int, step: int) -> dict[str, dict]:
    """PCK rows of one single-frame run (module docstring)."""
    from css_pose.apps.support import frame_datamodule
    from css_pose.data.clips import load_clips
    from css_pose.flow import SKELETON
    from css_pose.models.pose_model import load_pose_model, predict
    from css_pose.models.temporal_pose import TemporalPoseModel
    from css_pose.temporal2d import predict_clips

    cfg = OmegaConf.create(json.loads((run_dir / "result.json").read_text())["config"])
    model, codec, _ = load_pose_model(run_dir / "head.pt")
    data = frame_datamodule(cfg).probe_dataloader("test").dataset
    clips = load_clips(data, range(len(data)), frames, step, cfg.temporal.flow_preset, "test")
    truth = load_clips(data, range(len(data)), frames, step, SKELETON, "true motion").flows
    kp, sc = [], []
    with torch.no_grad():
        for idx in torch.arange(len(clips)).split(cfg.batch_size):
            images = clips.images(idx)  # (B, T, 3, S, S)
            k, s = predict(model, codec, images.flatten(0, 1), cfg.flip_test)
            kp.append(k.view(*images.shape[:2], *k.shape[1:]))
            sc.append(s.view(*images.shape[:2], -1))
    pred, scores = torch.cat(kp), torch.cat(sc)
    c = pred.shape[1] // 2
    gt, visible = clips.keypoints[:, c], clips.visibility[:, c] > 0

    def score(p):
        return split_pck(p, gt, visible, torch.ones_like(visible))

    rows = {"single frame": score(pred[:, c])}
    for align in ALIGN:
        for weighted in (False, True):
            fused = fuse(pred, scores, clips.flows, clips.keypoints, align, weighted)
            rows[f"{align}, {'score-weighted' if weighted else 'mean'}"] = score(fused)
    for align, flows, scale in (("none", None, 1), ("DIS", clips.flows, 1),
                                ("DIS", clips.flows, 2), ("oracle", truth, 1),
                                ("oracle", truth, 2)):  # fmt: skip
        temporal = TemporalPoseModel(model.encoder, model.head, frames, "average",
                                     flows is not None, warp_scale=scale)  # fmt: skip
        fused = predict_clips(temporal, codec, clips if flows is None else
                              dataclasses.replace(clips, flows=flows), cfg.flip_test,
                              cfg.batch_size, "cpu")  # fmt: skip
        grid = ", warp_scale 2" if scale > 1 else ""
        rows[f"heatmaps: {align}, average{grid}"] = score(fused)
    flows = {"no warping": None, "DIS": clips.flows, "true motion": truth}
    return rows | warp_precision(model, codec, clips, flows, score)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, required=True, help="temporal_2d.py --out folder")
    parser.add_argument("--frames", type=int, default=2, help="neighbours each side (n)")
    parser.add_argument("--step", type=int, default=1)
    parser.add_argument("--table", type=Path, default=None)
    args = parser.parse_args(argv)
    from css_pose.config import configure_threads

    configure_threads(None, 0)
    runs = sorted(args.runs.glob("single_frame-seed*/head.pt"))
    if not runs:
        parser.error(f"no single_frame-seed*/head.pt under {args.runs}; run temporal_2d.py first")
    per_seed = {p.parent.name: evaluate(p.parent, args.frames, args.step) for p in runs}
    cols = ("visible", "visible/wrists", "visible/elbows")
    lines = [
        f"Written by `python benchmarks/temporal_oracle.py --runs {args.runs} --frames "
        f"{args.frames} --step {args.step}`: the single-frame model's predictions on clips of "
        f"{2 * args.frames + 1} frames, step {args.step}, fused on the centre frame (module "
        "docstring); PCK@0.1 on the centre frames' visible joints, mean over seeds "
        f"({', '.join(per_seed)}).",
        "",
        "| fusion | all | wrists | elbows |",
        "|---|---:|---:|---:|",
    ]
    names = next(iter(per_seed.values())).keys()
    for name in names:
        cells = [sum(r[name][c] for r in per_seed.values()) / len(per_seed) for c in cols]
        lines.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in cells) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.table:
        args.table.write_text(text)
    return per_seed


if __name__ == "__main__":
    main()
