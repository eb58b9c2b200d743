"""How fast the pose changes within the benchmark's videos: mean distance between the poses of two
frames of one video, as a function of the frames between them (the gap).

The CSS losses assume that near frames (positives, 1..d_pos apart) have similar poses and far ones
(negatives, >= d_neg apart) different poses; this table shows at which gap the distance stops
growing for a given frame rate, i.e. how to choose the video length and the sampling distances.

    python benchmarks/pose_change.py --root data/synthetic-bench [--videos 400]

Distances: body-frame 3D (mm, orientation removed, docs/metrics.md) and 2D in the person box
(% of max(box w, h)), averaged over joints, frame pairs and training videos.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from css_pose.config import configure_threads
from css_pose.metrics import body_frame, root_relative


def pose_change(root: Path, videos: int, split: str = "train") -> tuple[float, dict[int, tuple]]:
    """(fps, {gap: (body-frame 3D distance mm, 2D distance as a fraction of the box side)})."""
    manifest = json.loads((root / "manifest.json").read_text())
    entries = [v for v in manifest["videos"] if v["split"] == split][:videos]
    sums: dict[int, list[tuple[float, float]]] = {}
    for entry in entries:
        with np.load(root / entry["annotation"]) as ann:
            kp3, kp2, box = ann["keypoints_3d"], ann["keypoints_2d"], ann["bboxes"]
        body = body_frame(root_relative(torch.from_numpy(kp3).double())).numpy()  # (T, J, 3)
        side = np.maximum(box[:, 2] - box[:, 0], box[:, 3] - box[:, 1])[:, None, None]
        in_box = (kp2 - (box[:, None, :2] + box[:, None, 2:]) / 2) / side  # (T, J, 2)
        for gap in range(1, len(body)):
            d3 = np.linalg.norm(body[gap:] - body[:-gap], axis=-1).mean()
            d2 = np.linalg.norm(in_box[gap:] - in_box[:-gap], axis=-1).mean()
            sums.setdefault(gap, []).append((d3, d2))
    return float(manifest["fps"]), {g: tuple(np.mean(v, axis=0)) for g, v in sums.items()}


def main() -> None:
    configure_threads()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default="data/synthetic-bench")
    ap.add_argument("--videos", type=int, default=400, help="training videos averaged")
    args = ap.parse_args()
    fps, table = pose_change(Path(args.root), args.videos)
    print(f"{args.root}: {fps:g} fps, first {args.videos} training videos")
    print("| gap (frames) | gap (s) | body-frame 3D distance (mm) | 2D distance (% of box) |")
    print("|---:|---:|---:|---:|")
    for gap, (d3, d2) in table.items():
        print(f"| {gap} | {gap / fps:.2f} | {d3:.1f} | {100 * d2:.1f} |")


if __name__ == "__main__":
    main()
