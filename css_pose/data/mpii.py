"""MPII-style keypoint JSON: the list-of-people form that pose toolkits convert MPII Human Pose
to (one record per person, 16 joints in MPII's order, :mod:`css_pose.layouts` ``mpii16``).

Each record: ``image`` (file name), ``joints`` [[x, y] x 16] image px (an unlabelled joint is
written as -1, -1 or 0, 0 with visibility 0), ``joints_vis`` [16] 0/1, and optional ``center``
[x, y] px and ``scale`` (person height / 200 px, MPII's convention). A malformed record raises
:class:`MpiiFormatError` naming the file, the record and the field; with ``skip_bad=True`` it is
left out and listed in ``problems``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from css_pose.data.coco import read_json
from css_pose.layouts import Layout, get_layout

MPII_SCALE_PX = 200.0  # MPII's "scale" unit: a person box of scale 1 is 200 px tall


class MpiiFormatError(ValueError):
    """An MPII-style JSON file or record that cannot be read; names the file, record and field."""


@dataclass
class MpiiPerson:
    """One person: keypoints (16, 2) px, visibility (16,) 0/1 (0 for an unlabelled joint, whose
    coordinates are 0), ``center`` (2,) px or None, ``scale`` (person height / 200 px) or None."""

    image: str
    keypoints: np.ndarray
    visibility: np.ndarray
    center: np.ndarray | None = None
    scale: float | None = None


@dataclass
class MpiiKeypoints:
    path: Path
    layout: Layout
    people: list[MpiiPerson]
    problems: list[str] = field(default_factory=list)


def _numbers(value, shape: tuple[int, ...]) -> np.ndarray | None:
    try:
        arr = np.asarray(value, np.float64)
    except (TypeError, ValueError):
        return None
    return arr if arr.shape == shape else None


def read_mpii_json(path: str | os.PathLike, skip_bad: bool = False) -> MpiiKeypoints:
    """Read an MPII-style JSON list of people (module docstring)."""
    path = Path(path)
    layout = get_layout("mpii16")
    joints = len(layout)
    data = read_json(path, MpiiFormatError)
    if not isinstance(data, list):
        raise MpiiFormatError(f"{path}: top level is {type(data).__name__}, not a list of people")
    problems: list[str] = []
    people = []

    def fail(record: str, what: str) -> None:
        message = f"{path}: {record}: {what}"
        if not skip_bad:
            raise MpiiFormatError(message)
        problems.append(message)

    for i, rec in enumerate(data):
        record = f"[{i}]"
        if not isinstance(rec, dict):
            fail(record, "not an object")
            continue
        if not isinstance(rec.get("image"), str):
            fail(record, "field 'image' is missing or not a file name")
            continue
        record += f" ({rec['image']})"
        kp = _numbers(rec.get("joints"), (joints, 2))
        if kp is None:
            fail(record, f"field 'joints' is missing or not {joints} [x, y] pairs")
            continue
        vis = _numbers(rec.get("joints_vis"), (joints,))
        if vis is None:
            fail(record, f"field 'joints_vis' is missing or not {joints} numbers")
            continue
        if not np.isfinite(kp).all():
            fail(record, "field 'joints' holds NaN or infinite values")
            continue
        visible = (vis > 0) & (kp >= 0).all(-1)  # MPII writes unlabelled joints as -1, -1
        center = None
        if rec.get("center") is not None:
            center = _numbers(rec["center"], (2,))
            if center is None or not np.isfinite(center).all():
                fail(record, "field 'center' is not [x, y]")
                continue
        scale = rec.get("scale")
        if scale is not None and (
            not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale <= 0
        ):
            fail(record, f"field 'scale' is {scale!r}, not a positive number")
            continue
        people.append(
            MpiiPerson(
                rec["image"],
                np.where(visible[:, None], kp, 0.0).astype(np.float32),
                visible.astype(np.float32),
                center,
                None if scale is None else float(scale),
            )
        )
    return MpiiKeypoints(path, layout, people, problems)
