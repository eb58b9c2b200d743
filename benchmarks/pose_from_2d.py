"""How much of the 3D pose a linear map can read from ground-truth 2D keypoints (probe ceiling).

    python benchmarks/pose_from_2d.py [--root data/synthetic] [--stride 4]

Ridge regression (alpha by video-grouped 5-fold CV) from root-relative 2D keypoints, scaled by
their largest distance to the pelvis, to root-relative 3D joints (mm, camera frame); fitted on
every ``stride``-th frame of the training videos, scored (MPJPE) on the test videos. "no left/right"
sorts each left/right joint pair by image x, so the features no longer say which limb is which
(what an image feature must infer from appearance). The mean pose of the training frames is the
no-information reference.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from css_pose.config import configure_threads
from css_pose.probe import fit_ridge_cv
from css_pose.skeleton import FLIP_PAIRS


def load(root: Path, split: str, stride: int):
    manifest = json.loads((root / "manifest.json").read_text())
    k2, k3, groups = [], [], []
    for i, video in enumerate(manifest["videos"]):
        if video["split"] != split:
            continue
        # The annotation npz holds a few object fields (names, spec); ours, so trusted.
        ann = np.load(root / video["annotation"], allow_pickle=True)
        k2.append(ann["keypoints_2d"][::stride])
        k3.append(ann["keypoints_3d"][::stride])
        groups += [i] * len(k2[-1])
    k3 = np.concatenate(k3)
    return np.concatenate(k2), k3 - k3[:, :1], np.array(groups)


def features(k2: np.ndarray, lr_identity: bool) -> torch.Tensor:
    """(N, J, 2) px -> (N, 2J) pelvis-relative, scale-normalised keypoints."""
    c = k2 - k2[:, :1]
    c = c / np.linalg.norm(c, axis=-1).max(1)[:, None, None]
    if not lr_identity:
        c = c.copy()
        for a, b in FLIP_PAIRS:
            left_first = (c[:, a, 0] < c[:, b, 0])[:, None]
            lo, hi = np.where(left_first, c[:, a], c[:, b]), np.where(left_first, c[:, b], c[:, a])
            c[:, a], c[:, b] = lo, hi
    return torch.tensor(c.reshape(len(c), -1))


def main() -> None:
    configure_threads()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", default="data/synthetic")
    parser.add_argument("--stride", type=int, default=4)
    args = parser.parse_args()
    root = Path(args.root)
    tr2, tr3, groups = load(root, "train", args.stride)
    te2, te3, _ = load(root, "test", args.stride)
    mean = tr3.mean(0)
    print(f"train {len(tr2)} frames, test {len(te2)} frames")
    print("| features | test MPJPE (mm) |\n|---|---:|")
    print(f"| mean training pose | {np.linalg.norm(te3 - mean, axis=-1).mean():.1f} |")
    y = torch.tensor(tr3.reshape(len(tr3), -1))
    for name, lr_identity in (("GT 2D keypoints", True), ("GT 2D, no left/right", False)):
        probe, _ = fit_ridge_cv(
            features(tr2, lr_identity),
            y,
            alphas=[1e-3, 1e-2, 0.1, 1, 10, 100, 1000],
            groups=torch.tensor(groups),
        )
        pred = probe.predict(features(te2, lr_identity)).numpy().reshape(te3.shape)
        print(f"| {name} | {np.linalg.norm(pred - te3, axis=-1).mean():.1f} |")


if __name__ == "__main__":
    main()
