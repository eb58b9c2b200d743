"""The reader interface every video backend implements (:class:`VideoReader`: frames by index, in
presentation order, as uint8 RGB), its errors and probe result, and the per-process cache of
decoded short videos.

Decoded-frame cache: decord seeks to the keyframe before every wanted frame, so a clip of 5 random
frames costs about as much as decoding a GOP per frame, while decoding a whole short video in one
sequential pass costs little more than one such clip. Readers handed out by
:func:`css_pose.data.video.cached_reader` with ``cache_mb > 0`` therefore decode a *short* video
(decoded size, ``num_frames x H x W x 3`` bytes, at most ``cache_video_mb``) whole, once per
process, and serve every later read from memory. The cache is per process, LRU, bounded by
``cache_mb`` of decoded frames in that process: with W DataLoader workers it holds up to
``W x cache_mb`` in all (plus the main process, if it reads). Entries are keyed by
``(pid, backend, path, file size, mtime)``, so a changed file is never served stale and a forked
worker never uses (nor counts) frames decoded by its parent. Larger videos, and every read when
``cache_mb=0``, take the sorted ``get_batch`` path. Size ``cache_mb`` to hold the decoded videos
each worker reads: when they do not fit, LRU evicts videos that come back later and each such
miss decodes a whole video again.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

# Decoded-frame cache defaults (MiB): capacity per process, and the largest video decoded whole.
FRAME_CACHE_MB = 1024


CACHE_VIDEO_MB = 64


_MB = 2**20


class VideoReadError(RuntimeError):
    """A video file cannot be opened or decoded; the message names the file and the reason."""


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe_video` measured by decoding a file.

    ``num_frames`` is the number of frames that actually decode, counted from frame 0 without a gap;
    ``reported_frames`` is what the container header claims (0 when it claims nothing).
    ``fps`` is frames per second, ``width``/``height`` are pixels.
    """

    num_frames: int
    fps: float
    width: int
    height: int
    reported_frames: int


class VideoReader(ABC):
    """Random access to the frames of one video.

    Attributes: ``path``; ``num_frames`` (verified decodable count); ``fps`` (frames/s);
    ``size`` = (width, height) in pixels. Use as a context manager or call :meth:`close`.
    """

    path: str
    num_frames: int
    fps: float
    size: tuple[int, int]
    # Decoded-frame cache (module docstring): capacity of this process's cache and the largest
    # decoded video (MiB) this reader puts in it. Off unless set (by :func:`cached_reader`).
    cache_mb: float = 0
    cache_video_mb: float = CACHE_VIDEO_MB
    # (st_size, st_mtime_ns) of the file when the reader opened it; None: unknown, never cached.
    file_stat: tuple[int, int] | None = None
    # (width, height) known beforehand (the index's), so that deciding whether to cache a video
    # needs no decoded frame (decord reports the size only with one); None: ask ``size``.
    size_hint: tuple[int, int] | None = None

    @abstractmethod
    def _read_sorted(self, indices: list[int]) -> np.ndarray:
        """Frames for sorted, unique, in-range ``indices``: (N, H, W, 3) uint8 RGB."""

    def get_batch(self, indices: Sequence[int]) -> np.ndarray:
        """Frames at ``indices`` (any order, repeats allowed): (N, H, W, 3) uint8 RGB.

        The file is read once, in sorted order of the unique indices; the result is reordered to
        match ``indices``. Raises IndexError (naming the file) for an index outside
        ``[0, num_frames)`` and VideoReadError when decoding fails.
        """
        wanted = np.asarray(indices, dtype=np.int64)
        if wanted.size == 0:
            w, h = self.size
            return np.zeros((0, h, w, 3), np.uint8)
        if wanted.min() < 0 or wanted.max() >= self.num_frames:
            raise IndexError(
                f"{self.path}: frame indices {wanted.min()}..{wanted.max()} outside the "
                f"{self.num_frames} decodable frames"
            )
        every = self._cached_frames()
        if every is not None:
            return every[wanted]  # a copy: callers may write to it
        unique = np.unique(wanted)
        frames = self._read_sorted(unique.tolist())
        return frames[np.searchsorted(unique, wanted)]

    def _cached_frames(self) -> np.ndarray | None:
        """All ``num_frames`` frames from this process's cache (decoded whole on a miss).

        None when the cache is off for this reader or the video is larger than
        ``min(cache_video_mb, cache_mb)``.
        """
        if self.cache_mb <= 0 or self.file_stat is None:
            return None
        width, height = self.size_hint or self.size
        nbytes = self.num_frames * height * width * 3
        if nbytes > min(self.cache_video_mb, self.cache_mb) * _MB:
            return None
        key = (os.getpid(), type(self).__name__, self.path, *self.file_stat)
        frames = _FRAMES.get(key)
        if frames is None:
            # One sequential pass from frame 0, never past the verified frame count. decord: one
            # get_batch of 0..n-1 (17 ms for 120 frames of 128 px here, a next() loop 22 ms);
            # it holds the video twice while it converts to numpy. PyAV: decode forward.
            frames = self._read_sorted(list(range(self.num_frames)))
            frames.flags.writeable = False
            _FRAMES.put(key, frames, int(self.cache_mb * _MB))
        return frames

    @abstractmethod
    def close(self) -> None:
        """Release the file and the decoder."""

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _FrameCache:
    """Decoded videos of this process, least recently used first, bounded by total bytes."""

    def __init__(self) -> None:
        self._pid = os.getpid()
        self._items: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self.nbytes = 0

    def _own(self) -> None:
        # After fork: the parent's frames are not this process's to use or to count.
        if self._pid != os.getpid():
            self._pid, self._items, self.nbytes = os.getpid(), OrderedDict(), 0

    def get(self, key: tuple) -> np.ndarray | None:
        self._own()
        frames = self._items.get(key)
        if frames is not None:
            self._items.move_to_end(key)
        return frames

    def put(self, key: tuple, frames: np.ndarray, capacity: int) -> None:
        """Keep ``frames`` under ``key``, evicting least recently used videos to fit ``capacity``."""
        self._own()
        for old in [k for k in self._items if k[2] == key[2] and k[3:] != key[3:]]:
            self.nbytes -= self._items.pop(old).nbytes  # an older version of the file
        if frames.nbytes > capacity:
            return
        while self._items and self.nbytes + frames.nbytes > capacity:
            self.nbytes -= self._items.popitem(last=False)[1].nbytes
        self._items[key] = frames
        self.nbytes += frames.nbytes

    def drop(self, path: str | None = None) -> None:
        """Forget the frames of ``path`` (None: of every file)."""
        self._own()
        for key in [k for k in self._items if path is None or k[2] == path]:
            self.nbytes -= self._items.pop(key).nbytes

    def keys(self) -> list[tuple]:
        self._own()
        return list(self._items)


_FRAMES = _FrameCache()


def stat_key(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def frame_cache_info() -> dict:
    """This process's decoded-frame cache: ``entries``, (reader class, path, file size, mtime_ns)
    from least to most recently used, and the ``bytes`` of frames they hold."""
    return {"entries": [key[1:] for key in _FRAMES.keys()], "bytes": _FRAMES.nbytes}


def forget_frames(path: str | None = None) -> None:
    """Forget the decoded frames this process cached of ``path`` (None: of every file)."""
    _FRAMES.drop(path)


def clear_frame_cache() -> None:
    """Forget every decoded video this process cached."""
    forget_frames()


ReaderFactory = Callable[[str, int | None], VideoReader]
