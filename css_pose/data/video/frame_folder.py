"""Folders of numbered frames as videos.

A **frame folder** (PoseTrack, JHMDB and Penn Action ship their videos this way) is a directory of
images (:data:`IMAGE_EXTENSIONS`) whose names are integers, e.g. ``000001.jpg``: frame ``i`` is the
i-th image in numeric order (whatever number the first has). It has no timestamps, so its frame
rate is :data:`FRAME_FOLDER_FPS`. Every function of :mod:`css_pose.data.video` that takes a video
path takes such a folder (``backend`` is ignored for them). The folder's own size and mtime
identify its version: adding, removing or renaming an image changes them, rewriting an image in
place does not (touch the folder after that).
"""

from __future__ import annotations

import os

import numpy as np

from css_pose.data.video.reader import VideoInfo, VideoReader, VideoReadError, stat_key

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


# Frames/s of a frame folder, which has no timestamps (most datasets' are 25-30).
FRAME_FOLDER_FPS = 30.0


def frame_files(folder: str | os.PathLike) -> list[str]:
    """The images of a frame folder in frame order: files with an image extension whose name
    (without it) is an integer, sorted by that integer; [] when there are none."""
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    numbered = []
    for name in names:
        stem, ext = os.path.splitext(name)
        if ext.lower() in IMAGE_EXTENSIONS and stem.isdigit() and not name.startswith("."):
            numbered.append((int(stem), name))
    return [os.path.join(str(folder), name) for _, name in sorted(numbered)]


def is_frame_folder(path: str | os.PathLike) -> bool:
    """A directory holding at least one numbered image (:func:`frame_files`)."""
    return os.path.isdir(path) and bool(frame_files(path))


def read_image(path: str) -> np.ndarray | None:
    """(H, W, 3) uint8 RGB, or None when the file does not decode."""
    import cv2

    image = cv2.imread(path, cv2.IMREAD_COLOR)
    return None if image is None else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def probe_frame_folder(path: str) -> VideoInfo:
    """:func:`probe_video` of a frame folder: every image is decoded; the usable frames are
    those from the first up to the first image that does not decode or has another size."""
    files = frame_files(path)
    if not files:
        raise VideoReadError(
            f"{path}: a folder without numbered images ({'/'.join(IMAGE_EXTENSIONS)} named "
            "by integers, e.g. 000001.jpg)"
        )
    size = None
    count = 0
    for file in files:
        image = read_image(file)
        if image is None or (size is not None and image.shape[:2] != size):
            break
        size = image.shape[:2]
        count += 1
    if not count:
        raise VideoReadError(f"{files[0]}: the first frame does not decode")
    return VideoInfo(count, FRAME_FOLDER_FPS, size[1], size[0], len(files))


class FrameFolderReader(VideoReader):
    """Random access to a frame folder (module docstring): one image file per frame."""

    def __init__(self, path: str | os.PathLike, num_frames: int | None = None):
        self.path = str(path)
        self.file_stat = stat_key(self.path)
        self._files = frame_files(self.path)
        if num_frames is None:
            num_frames = probe_frame_folder(self.path).num_frames
        if len(self._files) < num_frames:
            raise VideoReadError(
                f"{self.path}: {len(self._files)} numbered images, but {num_frames} frames "
                "were expected (images removed since it was indexed?)"
            )
        self.num_frames = num_frames
        self.fps = FRAME_FOLDER_FPS
        first = read_image(self._files[0])
        if first is None:
            raise VideoReadError(f"{self._files[0]}: does not decode")
        self.size = (first.shape[1], first.shape[0])

    def _read_sorted(self, indices: list[int]) -> np.ndarray:
        frames = []
        for i in indices:
            image = read_image(self._files[i])
            if image is None or (image.shape[1], image.shape[0]) != self.size:
                raise VideoReadError(
                    f"{self._files[i]}: frame {i} does not decode, or is not "
                    f"{self.size[0]}x{self.size[1]} like the first"
                )
            frames.append(image)
        return np.stack(frames)

    def close(self) -> None:
        pass
