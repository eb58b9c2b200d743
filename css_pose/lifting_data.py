"""The data lifters train and are scored on (:mod:`css_pose.lifting`): normalised 2D and
root-relative 3D per sequence (:class:`LiftingData`), from VideoPose3D npz files or the rendered
synthetic set (generated on first use), optionally with a 2D head's keypoints as input."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from css_pose.data.h36m import (
    PoseSequence,
    export_synthetic_to_videopose3d,
    load_videopose3d,
    split_subjects,
)
from css_pose.metrics import root_relative

# The synthetic set that ``--data synthetic`` reads unless ``--synthetic-root`` names another; it is
# generated there on first use, with the settings benchmarks/lifting.py uses for the same folder.
SYNTHETIC_ROOT = "data/synthetic_lift"
SYNTHETIC_SET = {"videos": 48, "frames": 120, "size": 128, "seed": 5}


@dataclass
class LiftingData:
    """Sequences ready for lifting.

    inputs[i]: (T_i, 17, 2) normalised 2D. targets[i]: (T_i, 17, 3) root-relative metres.
    actions[i]: action name (for action-wise averaging). res_w[i]: image width px (to express
    pixel noise in normalised units).
    """

    inputs: list[np.ndarray]
    targets: list[np.ndarray]
    actions: list[str]
    res_w: list[int]

    @classmethod
    def from_sequences(cls, sequences: list[PoseSequence]) -> LiftingData:
        return cls(
            [s.normalized_2d() for s in sequences],
            [root_relative(torch.from_numpy(s.keypoints_3d)).numpy() for s in sequences],
            [s.action for s in sequences],
            [s.camera.res_w for s in sequences],
        )

    def __len__(self) -> int:
        return sum(len(t) for t in self.targets)


def load_lifting_data(path_3d: str | Path, path_2d: str | Path) -> tuple[LiftingData, LiftingData]:
    """(train, test) from a VideoPose3D npz pair with the split of
    :func:`css_pose.data.h36m.split_subjects`."""
    sequences = load_videopose3d(path_3d, path_2d)
    train, test = split_subjects({s.subject for s in sequences})
    return (
        LiftingData.from_sequences([s for s in sequences if s.subject in train]),
        LiftingData.from_sequences([s for s in sequences if s.subject in test]),
    )


def load_synthetic_lifting_data(synth_root: str | Path) -> tuple[LiftingData, LiftingData]:
    """(train, test) of a synthetic set, through its VideoPose3D export (written to
    SYNTH_ROOT/videopose3d if missing), so it is read by the same code as Human3.6M."""
    out = Path(synth_root) / "videopose3d"
    path_3d, path_2d = out / "data_3d_synthetic.npz", out / "data_2d_synthetic_gt.npz"
    if not (path_3d.exists() and path_2d.exists()):
        path_3d, path_2d = export_synthetic_to_videopose3d(synth_root, out)
    return load_lifting_data(path_3d, path_2d)


def prepare_synthetic_set(root: str | Path = SYNTHETIC_ROOT) -> Path:
    """The synthetic lifting set at ``root``: the default folder (``SYNTHETIC_ROOT``) is
    generated with ``SYNTHETIC_SET`` when it has no manifest yet (an interrupted generation
    resumes); any other folder must hold a generated set already.

    Raises FileNotFoundError naming the missing manifest and how to make it.
    """
    root = Path(root)
    if (root / "manifest.json").exists():
        return root
    if root != Path(SYNTHETIC_ROOT):
        raise FileNotFoundError(
            f"{root / 'manifest.json'}: no such file; generate a set there with "
            f"python -m css_pose.data.synthetic --out {root}, or leave out --synthetic-root to use "
            f"{SYNTHETIC_ROOT} (generated on first use)"
        )
    from css_pose.data.synthetic import generate_dataset

    print(
        f"[css_pose] generating the synthetic lifting set in {root} "
        f"({SYNTHETIC_SET['videos']} videos x {SYNTHETIC_SET['frames']} frames, once)"
    )
    generate_dataset(root, **SYNTHETIC_SET)
    return root


def head_inputs(data: LiftingData, head: dict[str, np.ndarray]) -> LiftingData:
    """``data`` (a rendered set's split, actions = video names) with the head's 2D as input."""
    from css_pose.data.h36m import normalize_screen_coordinates

    inputs = [normalize_screen_coordinates(head[a], w, w) for a, w in zip(data.actions, data.res_w)]
    return LiftingData(inputs, data.targets, data.actions, data.res_w)
