"""Load and validate per-video annotation npz files.

Format (``ROOT/videos/NAME.npz`` beside ``NAME.mp4``); T frames, J joints, optional leading person
axis P (then ``track_ids`` (P,) names the tracks):

- ``keypoints_2d`` float (T, J, 2) image pixels, pixel centres at integer coordinates (required);
- ``visibility`` (T, J), nonzero = visible (required);
- ``keypoints_3d`` float (T, J, 3) camera coordinates, mm;
- ``bboxes`` float (T, 4) x1, y1, x2, y2 pixels; NaN or empty boxes mark frames without the person;
- ``camera`` (4,) fx, fy, cx, cy; ``fps``; ``joint_names`` (J,).
"""

from __future__ import annotations

import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from css_pose.skeleton import JOINT_NAMES, NUM_JOINTS

REQUIRED_KEYS = ("keypoints_2d", "visibility")


class AnnotationError(ValueError):
    """An annotation file is unreadable or inconsistent; the message names the file and the problem."""


@dataclass(frozen=True)
class Annotation:
    """Labels of one video, always with a person axis.

    ``keypoints_2d`` (P, T, J, 2) float32 px; ``visibility`` (P, T, J) float32 in {0, 1};
    ``keypoints_3d`` (P, T, J, 3) float32 mm, or None; ``boxes`` (P, T, 4) float32 xyxy px, where
    frames without the person hold the nearest frame's box (from ``bboxes``, else from the extent
    of the visible keypoints); ``present`` (P, T) bool, the frames in which each person appears;
    ``track_ids`` (P,) int64; ``camera`` (4,) float32 fx, fy, cx, cy, or None.
    """

    keypoints_2d: np.ndarray
    visibility: np.ndarray
    keypoints_3d: np.ndarray | None
    boxes: np.ndarray
    present: np.ndarray
    track_ids: np.ndarray
    camera: np.ndarray | None

    @property
    def num_persons(self) -> int:
        return self.keypoints_2d.shape[0]

    def span(self, person: int) -> tuple[int, int]:
        """Frames ``[start, stop)`` from the first to the last in which ``person`` appears."""
        frames = np.flatnonzero(self.present[person])
        return (int(frames[0]), int(frames[-1]) + 1) if len(frames) else (0, 0)


def _fill_gaps(boxes: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Replace the box of every frame without the person by the nearest frame's box."""
    filled = boxes.copy()
    for p in range(boxes.shape[0]):
        frames = np.flatnonzero(present[p])
        if len(frames) == 0:
            filled[p] = 0.0
            continue
        t = np.arange(boxes.shape[1])
        right = np.clip(np.searchsorted(frames, t), 0, len(frames) - 1)
        left = np.clip(right - 1, 0, len(frames) - 1)
        nearest = np.where(t - frames[left] <= frames[right] - t, frames[left], frames[right])
        filled[p] = boxes[p, nearest]
    return filled


def _keypoint_boxes(kp: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """(P, T, 4) extent of the visible keypoints; NaN where none is visible."""
    masked = np.where(visible[..., None], kp, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN frames stay NaN
        return np.concatenate([np.nanmin(masked, axis=2), np.nanmax(masked, axis=2)], axis=-1)


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of the npz archive at ``path``, with the required keys; AnnotationError if not."""
    try:
        npz = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise AnnotationError(f"{path}: not a readable npz file ({e})") from e
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise AnnotationError(f"{path}: holds a single array, not an npz archive of named arrays")
    data = {}
    with npz:
        for key in npz.files:
            try:
                data[key] = npz[key]
            except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
                # Names saved as a Python-object array only serve as a check: drop them.
                if key != "joint_names":
                    raise AnnotationError(f"{path}: cannot read {key} ({e})") from e
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise AnnotationError(f"{path}: missing key(s) {missing}; found {sorted(data)}")
    return data


def _check_shapes(path: Path, data: dict, persons: int, frames: int, joints: int) -> None:
    """AnnotationError naming the first array whose shape disagrees with (P, T, J), or joint
    names other than the canonical skeleton's."""
    expected = {
        "visibility": (persons, frames, joints),
        "keypoints_3d": (persons, frames, joints, 3),
        "bboxes": (persons, frames, 4),
        "camera": (4,),
        "track_ids": (persons,),
        "joint_names": (joints,),
    }
    for key, shape in expected.items():
        if key in data and np.shape(data[key]) != shape:
            raise AnnotationError(
                f"{path}: {key} has shape {np.shape(data[key])}, expected {shape}"
            )
    if "joint_names" in data and tuple(str(n) for n in data["joint_names"]) != JOINT_NAMES:
        raise AnnotationError(
            f"{path}: joint_names differ from the canonical skeleton {JOINT_NAMES}"
        )


def load_annotation(
    path: str | Path, num_frames: int | None = None, num_joints: int = NUM_JOINTS
) -> Annotation:
    """Read ``path`` and check keys, shapes and the frame count against the video's.

    ``num_frames`` is the video's decodable frame count (None skips that check). Keypoints that are
    NaN count as not visible. Raises AnnotationError naming the file and the problem.
    """
    path = Path(path)
    data = _read_npz(path)
    kp = np.asarray(data["keypoints_2d"], np.float32)
    if kp.ndim not in (3, 4) or kp.shape[-1] != 2:
        raise AnnotationError(
            f"{path}: keypoints_2d has shape {kp.shape}, expected (T,J,2) or (P,T,J,2)"
        )
    if kp.ndim == 3:  # one person, no person axis
        per_person = ("keypoints_2d", "visibility", "keypoints_3d", "bboxes")
        data = {k: np.asarray(v)[None] if k in per_person else v for k, v in data.items()}
        if "track_ids" in data:
            data["track_ids"] = np.reshape(data["track_ids"], -1)
        kp = kp[None]
    persons, frames, joints = kp.shape[:3]
    if joints != num_joints:
        raise AnnotationError(f"{path}: {joints} joints, expected {num_joints} (Human3.6M order)")
    if num_frames is not None and frames != num_frames:
        raise AnnotationError(
            f"{path}: {frames} annotated frames but the video decodes {num_frames}"
        )
    _check_shapes(path, data, persons, frames, joints)
    finite = np.isfinite(kp).all(-1)
    visibility = ((np.asarray(data["visibility"]) > 0) & finite).astype(np.float32)
    kp = np.where(finite[..., None], kp, 0.0).astype(np.float32)
    if "bboxes" in data:
        boxes = np.asarray(data["bboxes"], np.float32)
        present = np.isfinite(boxes).all(-1) & (boxes[..., 2] > boxes[..., 0])
        present &= boxes[..., 3] > boxes[..., 1]
    else:
        boxes = _keypoint_boxes(kp, visibility > 0).astype(np.float32)
        present = visibility.any(-1)
    kp3 = data.get("keypoints_3d")
    camera = data.get("camera")
    return Annotation(
        keypoints_2d=kp,
        visibility=visibility,
        keypoints_3d=None if kp3 is None else np.nan_to_num(kp3.astype(np.float32)),
        boxes=_fill_gaps(np.where(present[..., None], boxes, 0.0).astype(np.float32), present),
        present=present,
        track_ids=np.asarray(data.get("track_ids", np.arange(persons)), np.int64),
        camera=None if camera is None else np.asarray(camera, np.float32),
    )
