"""JHMDB and Penn Action keypoint labels (MATLAB ``.mat``), and their conversion to css_pose
annotations beside the datasets' frame folders.

- **JHMDB** ``joint_positions/<class>/<video>/joint_positions.mat``: ``pos_img`` (2, 15, T) image
  px (x, y) of the 15 JHMDB joints (:data:`css_pose.layouts` ``jhmdb15``), every joint labelled in
  every frame (puppet-fitted, so occluded joints have positions too); ``scale`` and ``viewpoint``
  are not used. Frames: ``Rename_Images/<class>/<video>/00001.png`` ...
- **Penn Action** ``labels/<id>.mat``: ``x``, ``y`` (T, 13) image px and ``visibility`` (T, 13) of
  the 13 Penn joints (``penn13``), ``bbox`` (T, 4) x1, y1, x2, y2 px, ``nframes``, ``action``,
  ``train`` (1 train, -1 test). Frames: ``frames/<id>/000001.jpg`` ...

:func:`read_jhmdb` and :func:`read_penn_action` return :class:`MatLabels` in the dataset's own
layout; :func:`write_annotation` converts them to css_pose's Human3.6M-17 skeleton by joint name
(joints the dataset lacks are invisible and NaN, never invented) and writes ``<frames>.npz``
beside the frame folder, which the index then reads as that folder's annotation
(``docs/data_format.md``). Malformed files raise :class:`MatLabelError` naming the file and the
field. These are trusted-format readers (``scipy.io.loadmat``, no pickle).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from css_pose.data.synthetic.io import save_npz
from css_pose.layouts import CANONICAL, Layout, convert, get_layout
from css_pose.skeleton import JOINT_NAMES


class MatLabelError(ValueError):
    """A .mat label file that cannot be read; the message names the file and the field."""


@dataclass
class MatLabels:
    """One video's labels: keypoints (T, J, 2) px, visibility (T, J) in {0, 1}, boxes (T, 4) xyxy
    px or None, in ``layout``; ``meta`` holds the dataset's other fields (action, split)."""

    path: Path
    layout: Layout
    keypoints: np.ndarray
    visibility: np.ndarray
    boxes: np.ndarray | None
    meta: dict

    @property
    def num_frames(self) -> int:
        return len(self.keypoints)


def _load(path: Path) -> dict:
    from scipy.io import loadmat

    try:
        return loadmat(str(path), squeeze_me=False)
    except FileNotFoundError:
        raise MatLabelError(f"{path}: no such file") from None
    except Exception as e:  # scipy raises ValueError, TypeError, MatReadError ... on bad files
        raise MatLabelError(f"{path}: not a readable .mat file ({e})") from None


def _field(data: dict, path: Path, key: str) -> np.ndarray:
    if key not in data:
        found = sorted(k for k in data if not k.startswith("__"))
        raise MatLabelError(f"{path}: field '{key}' is missing; found {found}")
    return np.asarray(data[key])


def _finite(path: Path, key: str, values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, np.float64)
    if not np.isfinite(values).all():
        bad = np.argwhere(~np.isfinite(values))[0].tolist()
        raise MatLabelError(f"{path}: field '{key}' holds NaN or infinite values (first at {bad})")
    return values


def read_jhmdb(path: str | os.PathLike) -> MatLabels:
    """Read a JHMDB ``joint_positions.mat`` (module docstring); every joint visible."""
    path = Path(path)
    data = _load(path)
    pos = _finite(path, "pos_img", _field(data, path, "pos_img"))
    layout = get_layout("jhmdb15")
    if pos.ndim != 3 or pos.shape[:2] != (2, len(layout)):
        raise MatLabelError(
            f"{path}: field 'pos_img' has shape {pos.shape}, expected (2, {len(layout)}, T)"
        )
    keypoints = pos.transpose(2, 1, 0).astype(np.float32)  # (T, 15, 2)
    visibility = np.ones(keypoints.shape[:2], np.float32)
    return MatLabels(path, layout, keypoints, visibility, None, {"dataset": "jhmdb"})


def read_penn_action(path: str | os.PathLike) -> MatLabels:
    """Read a Penn Action ``labels/<id>.mat`` (module docstring)."""
    path = Path(path)
    data = _load(path)
    layout = get_layout("penn13")
    x = _finite(path, "x", _field(data, path, "x"))
    y = _finite(path, "y", _field(data, path, "y"))
    vis = _finite(path, "visibility", _field(data, path, "visibility"))
    for key, arr in (("x", x), ("y", y), ("visibility", vis)):
        if arr.ndim != 2 or arr.shape[1] != len(layout):
            raise MatLabelError(
                f"{path}: field '{key}' has shape {arr.shape}, expected (T, {len(layout)})"
            )
    if not (x.shape == y.shape == vis.shape):
        raise MatLabelError(
            f"{path}: fields 'x' {x.shape}, 'y' {y.shape} and 'visibility' {vis.shape} differ"
        )
    frames = len(x)
    if "nframes" in data and int(np.asarray(data["nframes"]).reshape(-1)[0]) != frames:
        n = int(np.asarray(data["nframes"]).reshape(-1)[0])
        raise MatLabelError(f"{path}: field 'nframes' says {n}, 'x' has {frames} frames")
    boxes = None
    if "bbox" in data:
        boxes = _finite(path, "bbox", np.asarray(data["bbox"]))
        if boxes.shape != (frames, 4):
            raise MatLabelError(
                f"{path}: field 'bbox' has shape {boxes.shape}, expected ({frames}, 4)"
            )
        boxes = boxes.astype(np.float32)
    meta = {"dataset": "penn_action"}
    if "action" in data:
        meta["action"] = str(np.asarray(data["action"]).reshape(-1)[0])
    if "train" in data:
        meta["split"] = "train" if int(np.asarray(data["train"]).reshape(-1)[0]) == 1 else "test"
    keypoints = np.stack([x, y], axis=-1).astype(np.float32)
    return MatLabels(path, layout, keypoints, (vis > 0).astype(np.float32), boxes, meta)


def write_annotation(labels: MatLabels, frames: str | os.PathLike) -> Path:
    """Convert ``labels`` to Human3.6M-17 and write ``<frames>.npz`` beside the frame folder
    ``frames`` (a css_pose annotation, ``docs/data_format.md``); returns its path.

    Raises MatLabelError when the folder's frame count differs from the labels' (the labels
    would be assigned to the wrong frames).
    """
    from css_pose.data.video import frame_files

    frames = Path(frames)
    count = len(frame_files(frames))
    if count != labels.num_frames:
        raise MatLabelError(
            f"{labels.path}: {labels.num_frames} labelled frames, but {frames} holds {count} "
            "numbered images"
        )
    kp, vis = convert(labels.keypoints, labels.visibility, labels.layout, CANONICAL)
    out = frames.with_name(frames.name + ".npz")
    arrays = {
        "keypoints_2d": kp.astype(np.float32),
        "visibility": vis.astype(np.float32),
        "joint_names": np.array(JOINT_NAMES),
    }
    if labels.boxes is not None:
        arrays["bboxes"] = labels.boxes
    save_npz(out, arrays)  # atomic, no pickle, like the synthetic annotations
    return out
