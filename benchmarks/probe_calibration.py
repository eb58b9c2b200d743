"""Calibrate the online probe: what a ridge regressor reaches from reference features.

Runs the online probe's exact protocol (closed-form ridge, alpha by grouped CV, fitted on half of
the validation videos, scored on the other half; 3D MPJPE root-relative in mm, PCK@0.1) on
features whose information content is known, next to a random-init and (optionally) a trained
encoder:

- ``noise``: 256 Gaussian numbers per frame (no information: the ridge falls back to the mean pose);
- ``pixels``: the crop, grey, area-downsampled to 16x16;
- ``gt_2d``: the ground-truth 2D keypoints in crop pixels (a perfect 2D pose detector);
- ``random_*``: z_v / z_i / backbone of the configured encoder at random init (seed 0);
- ``trained_*``: the same from ``--ckpt``.

    python benchmarks/probe_calibration.py [--ckpt runs/.../checkpoints/last.ckpt] [overrides...]

Extra arguments are train.py overrides (e.g. ``data.root=...``); with ``--ckpt`` the checkpoint's
own config is used.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F

from css_pose.checkpoint import load_method
from css_pose.config import compose_config, configure_threads
from css_pose.data.setup import build_datamodule, prepare_data
from css_pose.methods import build_method
from css_pose.methods.callbacks import _collect, ridge_probe
from css_pose.runner import probe_features


def main() -> None:
    configure_threads()
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--ckpt", default=None)
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    torch.manual_seed(0)
    trained = None
    if args.ckpt:
        trained, cfg = load_method(args.ckpt)
    else:
        cfg = compose_config("train", args.overrides)
    dm = build_datamodule(cfg, prepare_data(cfg))
    dm.setup("fit")
    loader = dm.probe_dataloader

    data = _collect(build_method(cfg).eval(), loader())
    data = {k.replace("feat/", "feat/random_"): v for k, v in data.items()}
    if trained is not None:
        for k, v in _collect(trained, loader()).items():
            if k.startswith("feat/"):
                data[k.replace("feat/", "feat/trained_")] = v
    pixels = [F.interpolate(b["frames"].mean(1, keepdim=True), size=16, mode="area").flatten(1)
              for b in loader()]  # fmt: skip
    data["feat/pixels"] = torch.cat(pixels)
    data["feat/gt_2d"] = data["keypoints_2d"].flatten(1)
    data["feat/noise"] = torch.randn(
        len(data["video_idx"]), 256, generator=torch.Generator().manual_seed(0)
    )

    res = ridge_probe(data, list(cfg.probe.alphas), cfg.probe.pck_alpha)
    n_vid = len(torch.unique(data["video_idx"]))
    print(f"\nonline-probe protocol on {Path(cfg.data.root)} val split: {len(data['video_idx'])} frames, "
          f"{n_vid} videos (fit on {(n_vid + 1) // 2}, scored on {n_vid // 2}); encoder {cfg.model.name}, "
          f"{cfg.data.size} px")  # fmt: skip
    print("| feature | 3D MPJPE (mm) | PCK@0.1 |")
    print("|---|---:|---:|")
    for name in probe_features(res):
        print(f"| {name} | {res[name + '_mpjpe']:.1f} | {res[name + '_pck']:.3f} |")


if __name__ == "__main__":
    main()
