"""Score one ``css-pose predict`` output folder against a synthetic video's annotation: the 2D
keypoints (frame px error, PCK@0.1 / 0.2 of the tight box of the visible joints) and, when
predict ran with ``--lifter``, the 3D (MPJPE and P-MPJPE in mm, root-relative).

    python benchmarks/score_predict.py runs/predict data/synthetic-bench/videos/synth_00004.npz

The README's full path ends with this (docs/benchmarks.md, "README full path").
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from css_pose.metrics import mpjpe, p_mpjpe, pck_tight, root_relative


def score(out: Path, annotation: Path) -> dict[str, float]:
    with np.load(annotation) as ann:
        gt2d, vis, gt3d = ann["keypoints_2d"], ann["visibility"] > 0, ann["keypoints_3d"]
    n = len(gt2d)
    pred = np.full((n, 17, 2), np.nan, np.float32)
    best = np.full(n, -np.inf)
    for e in json.loads((out / "keypoints.json").read_text()):
        t = e["image_id"]
        if e["score"] > best[t]:
            best[t], pred[t] = e["score"], np.asarray(e["keypoints"]).reshape(17, 3)[:, :2]
    found = ~np.isnan(pred).any(axis=(1, 2))
    p2, g2, v = (torch.from_numpy(a[found]) for a in (pred, gt2d.astype(np.float32), vis))
    result = {
        "frames": int(n),
        "frames_with_a_person": int(found.sum()),
        "px_error": float(np.linalg.norm(pred - gt2d, axis=-1)[found][vis[found]].mean()),
        "pck@0.1": float(pck_tight(p2, g2, v, 0.1)),
        "pck@0.2": float(pck_tight(p2, g2, v, 0.2)),
    }
    pose3d = out / "pose3d.json"
    if pose3d.exists():
        frames = json.loads(pose3d.read_text())["frames"]
        keep = [f["image_id"] for f in frames if f["keypoints_3d"] is not None]
        p3 = torch.tensor([frames[t]["keypoints_3d"] for t in keep], dtype=torch.float32)
        g3 = root_relative(torch.from_numpy(gt3d[keep].astype(np.float32)))  # mm
        result.update(mpjpe_mm=float(mpjpe(p3, g3)), p_mpjpe_mm=float(p_mpjpe(p3, g3)))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path, help="css-pose predict's --out folder")
    parser.add_argument("annotation", type=Path, help="the video's css_pose annotation .npz")
    args = parser.parse_args()
    print(json.dumps(score(args.out, args.annotation), indent=1))


if __name__ == "__main__":
    main()
