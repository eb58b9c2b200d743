"""Score ``css-pose predict`` on whole test videos against their annotations, in frame pixels.

    python benchmarks/predict_videos.py --model runs/<head run>/head.pt --root data/synthetic-bench

For each test-split video of the set (``--videos`` of them, in manifest order), runs the predict
path as a user would (decode, crop with the annotation's boxes, predict with the flip test, map
back to frame px) and scores every frame of every video against the annotation: PCK@0.1 and
PCK@0.2 with the project's definition (threshold x the longer side of the tight box of the
visible ground-truth joints, pooled over visible joints, docs/metrics.md) and mean px error,
frame px. PCK does not depend on the scale, so it can be compared with the head's own test score
(crop px, every ``data.probe_stride``-th frame), which the table prints beside it. Writes
OUT/predict_videos.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch


def keypoints_of(path: Path, n_frames: int) -> np.ndarray:
    """(T, 17, 2) frame px of the best-scoring person of each frame of keypoints.json (NaN where
    the frame has no entry)."""
    out = np.full((n_frames, 17, 2), np.nan, np.float32)
    best = np.full(n_frames, -np.inf)
    for entry in json.loads(path.read_text()):
        t = entry["image_id"]
        if entry["score"] > best[t]:
            best[t] = entry["score"]
            out[t] = np.asarray(entry["keypoints"], np.float32).reshape(17, 3)[:, :2]
    return out


def score_frames(pred: torch.Tensor, gt: torch.Tensor, visible: torch.Tensor) -> dict:
    """PCK@0.1 and @0.2 (:func:`~css_pose.metrics.pck_tight`) and frame-px errors of predictions
    (N, J, 2) frame px (NaN: no prediction) against the annotation (N, J, 2) and its visibility
    (N, J) bool."""
    from css_pose.metrics import pck_tight

    missing = int(torch.isnan(pred).any(-1).any(-1).sum())
    visible = visible & ~torch.isnan(pred).any(-1)
    err = torch.linalg.vector_norm(pred - gt, dim=-1)[visible]
    return {
        "frames_without_prediction": missing,
        "pck@0.1": float(pck_tight(pred, gt, visible, 0.1)),
        "pck@0.2": float(pck_tight(pred, gt, visible, 0.2)),
        "px_error_frame": float(err.mean()),
        "px_error_frame_median": float(err.median()),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, type=Path, help="head.pt of train_head.py")
    parser.add_argument("--root", type=Path, default=Path("data/synthetic-bench"))
    parser.add_argument("--videos", type=int, default=150, help="test videos to run")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-predict"))
    args = parser.parse_args(argv)

    from css_pose.config import configure_threads
    from css_pose.predict import run_predict

    configure_threads(None, 0)
    manifest = json.loads((args.root / "manifest.json").read_text())
    videos = [v for v in manifest["videos"] if v["split"] == "test"][: args.videos]
    if not videos:
        raise SystemExit(f"{args.root / 'manifest.json'} lists no test-split video")
    preds, gts, vis = [], [], []
    started = time.perf_counter()
    for v in videos:
        out = args.out / v["name"]
        meta = run_predict(args.model, args.root / v["video"], out,
                           boxes_path=args.root / v["annotation"], progress=False)  # fmt: skip
        with np.load(args.root / v["annotation"]) as ann:
            gt, visible = ann["keypoints_2d"], ann["visibility"] > 0
        preds.append(keypoints_of(out / "keypoints.json", meta["frames"])[: len(gt)])
        gts.append(gt)
        vis.append(visible)
    seconds = time.perf_counter() - started
    pred, gt = torch.from_numpy(np.concatenate(preds)), torch.from_numpy(np.concatenate(gts))
    visible = torch.from_numpy(np.concatenate(vis))
    head = json.loads((args.model.parent / "result.json").read_text())
    result = {
        "model": str(args.model),
        "videos": len(videos),
        "frames": len(pred),
        **score_frames(pred, gt, visible),
        "seconds": round(seconds, 1),
        "head_test": {k: head["metrics"][k] for k in ("pck@0.1", "pck@0.2", "px_error")},
        "head_test_frames": head["n_test_frames"],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "predict_videos.json").write_text(json.dumps(result, indent=1))
    h = result["head_test"]
    print(
        "| path | frames | PCK@0.1 | PCK@0.2 | px error |\n|---|---:|---:|---:|---:|\n"
        f"| css-pose predict, {len(videos)} test videos, every frame (frame px) | {len(pred)} | "
        f"{result['pck@0.1']:.3f} | {result['pck@0.2']:.3f} | {result['px_error_frame']:.2f} |\n"
        f"| the head's own test score (crop px) | {result['head_test_frames']} | "
        f"{h['pck@0.1']:.3f} | {h['pck@0.2']:.3f} | {h['px_error']:.2f} |\n\n"
        f"{result['frames_without_prediction']} frames without a prediction; {seconds:.0f} s "
        f"for {len(videos)} videos."
    )
    return result


if __name__ == "__main__":
    main()
