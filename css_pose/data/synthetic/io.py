"""Files of the synthetic set: H.264 videos, byte-stable npz annotations, external motion files.

Writers go through a temporary name (:mod:`css_pose.artifacts.atomic`), so an interrupted run
never leaves a file under its final name that looks complete.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from css_pose.artifacts.atomic import atomic_path
from css_pose.data.video import VideoWriter
from css_pose.skeleton import NUM_JOINTS

GOP = 30
CRF = 18


def write_mp4(path: str | Path, frames: np.ndarray, fps: float, crf: int = CRF, gop: int = GOP):
    """Encode (T, H, W, 3) uint8 RGB frames as H.264 (libx264, yuv420p, constant fps).

    H and W must be even (yuv420p). One encoder thread and a fixed GOP (keyframe every ``gop``
    frames, no scene-cut keyframes) make the output byte-identical for identical input.
    """
    _, h, w, _ = frames.shape
    writer = VideoWriter(
        path,
        w,
        h,
        fps,
        options={
            "crf": str(crf),
            "preset": "fast",
            "threads": "1",
            "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0",
        },
        threads=1,
    )
    with writer:
        for frame in frames:
            writer.write(frame)


def save_npz(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    """Like ``np.savez_compressed`` but byte-stable: fixed zip timestamps, keys in the given order.

    Object arrays are refused, so every file loads with ``np.load`` without ``allow_pickle``.
    """
    path = Path(path)
    with (
        atomic_path(path, mkdir=False) as tmp,
        zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf,
    ):
        for key, value in arrays.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            with zf.open(info, "w") as f:
                np.lib.format.write_array(f, np.asarray(value), allow_pickle=False)


def load_motion_file(path: str | Path) -> np.ndarray:
    """Read an external motion for ``--motion``: key ``keypoints_3d``, (T, 17, 3), mm.

    Convention (docs/data_format.md): canonical 17-joint order, body-centred world, right-handed,
    y up, z the direction the person faces at yaw 0 (towards a camera at azimuth 0), x to the
    person's left; millimetres. Returns (T, 17, 3) float64. Raises ValueError naming the file and
    the fix when the key, shape, values or units are wrong.
    """
    path = Path(path)
    hint = (
        "expected key 'keypoints_3d' with shape (T, 17, 3) in millimetres, Human3.6M joint order, "
        "y up, x to the person's left, z forward (see docs/data_format.md)"
    )
    try:
        with np.load(path, allow_pickle=False) as data:
            if "keypoints_3d" not in data:
                raise ValueError(f"{path}: no 'keypoints_3d' (keys: {sorted(data.files)}); {hint}")
            kp = np.asarray(data["keypoints_3d"], dtype=np.float64)
    except (OSError, zipfile.BadZipFile) as e:
        raise ValueError(f"{path}: cannot read as .npz ({e}); {hint}") from e
    if kp.ndim != 3 or kp.shape[1:] != (NUM_JOINTS, 3) or len(kp) < 1:
        fix = " Transpose to (T, 17, 3)." if kp.shape[-2:] == (3, NUM_JOINTS) else ""
        raise ValueError(f"{path}: 'keypoints_3d' has shape {kp.shape}; {hint}.{fix}")
    if not np.isfinite(kp).all():
        raise ValueError(f"{path}: 'keypoints_3d' holds NaN or inf; fill or drop those frames.")
    extent = np.ptp(kp, axis=1).max()
    if extent < 50:
        raise ValueError(
            f"{path}: body extent is {extent:.3g}, too small for millimetres; "
            "multiply metres by 1000."
        )
    return kp
