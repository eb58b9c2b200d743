"""decord: the fast reader. It is unmaintained, and has traps that this package guards against:

- a reader created before ``fork`` must never be used (or freed) in a DataLoader worker, so readers
  are opened lazily, per process, through :func:`css_pose.data.video.cached_reader` (keyed by
  ``(pid, backend, path)``);
- ``get_batch`` can hang when asked for frames past the real end of a file whose header
  over-reports its length, so every reader is bounded by a *verified* decodable frame count
  (:func:`css_pose.data.video.probe_video`, stored by the index) and indices are validated
  against it;
- ``num_threads=1`` always (more threads deadlock in some builds and oversubscribe workers);
- when decord cannot open or read a file, that file falls back to PyAV with a warning.
"""

from __future__ import annotations

import os
import re
import warnings

import numpy as np

from css_pose.data.video.pyav_reader import PyAVReader, probe_video
from css_pose.data.video.reader import VideoReader, VideoReadError, stat_key


class DecordReader(VideoReader):
    """decord reader: one sorted ``get_batch`` per call, bounded by the verified frame count.

    When decord fails on a read, the reader warns once and serves this file with PyAV from then on.
    """

    def __init__(self, path: str | os.PathLike, num_frames: int | None = None):
        import decord

        self.path = str(path)
        if not os.path.isfile(self.path) or os.path.getsize(self.path) == 0:
            raise VideoReadError(f"{self.path}: missing or empty file")
        self.file_stat = stat_key(self.path)
        decord.logging.set_level(decord.logging.QUIET)
        try:
            self._vr = decord.VideoReader(self.path, ctx=decord.cpu(0), num_threads=1)
        except (RuntimeError, decord.DECORDError) as e:
            raise VideoReadError(
                f"{self.path}: decord cannot open it ({_decord_message(e)})"
            ) from e
        if num_frames is None:
            num_frames = probe_video(self.path).num_frames
        if len(self._vr) < num_frames:
            raise VideoReadError(
                f"{self.path}: decord lists {len(self._vr)} of its {num_frames} frames"
            )
        # decord may list more frames than decode (a header that over-reports): never ask for those.
        self.num_frames = num_frames
        self.fps = float(self._vr.get_avg_fps())
        # decord seeks by packet timestamps; without them (AVI, for one) it returns wrong frames.
        starts = self._vr.get_frame_timestamp(np.arange(self.num_frames))[:, 0].astype(np.float64)
        steps = np.diff(starts) * self.fps
        if abs(starts[0]) > 1e5 or not np.all(np.abs(steps - 1) < 0.5):
            raise VideoReadError(f"{self.path}: decord sees no usable frame timestamps")
        self._size: tuple[int, int] | None = None
        self._fallback: PyAVReader | None = None

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) px; decord reports it only with a frame, so one is read if needed."""
        if self._size is None:
            self._read_sorted([0])
        return self._size

    def _read_sorted(self, indices: list[int]) -> np.ndarray:
        if self._fallback is None:
            try:
                frames = self._vr.get_batch(indices).asnumpy()
                self._size = (frames.shape[2], frames.shape[1])
                return frames
            except Exception as e:  # decord raises bare DECORDError/RuntimeError subclasses
                warnings.warn(
                    f"{self.path}: decord failed ({_decord_message(e)}); reading it with PyAV",
                    RuntimeWarning,
                    stacklevel=2,
                )
                self._fallback = PyAVReader(self.path, self.num_frames)
                self._size = self._fallback.size
        return self._fallback._read_sorted(indices)

    def close(self) -> None:
        self._vr = None
        if self._fallback is not None:
            self._fallback.close()


def _decord_message(error: Exception) -> str:
    """decord's error text without its timestamp and source-file prefix."""
    return re.sub(r"^\[[\d:]+\] \S+: ", "", str(error).strip().splitlines()[0])
