"""Opening a video by backend name (:func:`open_video`) and the per-process reader cache
(:func:`cached_reader`) that DataLoader workers read through.
"""

from __future__ import annotations

import os
import warnings
from collections import OrderedDict

from css_pose.data.video.decord_reader import DecordReader
from css_pose.data.video.frame_folder import FrameFolderReader
from css_pose.data.video.pyav_reader import PyAVReader
from css_pose.data.video.reader import (
    CACHE_VIDEO_MB,
    ReaderFactory,
    VideoReader,
    VideoReadError,
    forget_frames,
    stat_key,
)

BACKENDS = ("decord", "pyav")


# Open readers kept per process by default; each holds a file handle and a decoder.
READER_CACHE_SIZE = 64


def open_video(
    path: str | os.PathLike, backend: str | ReaderFactory = "decord", num_frames: int | None = None
) -> VideoReader:
    """Open ``path`` with ``backend`` ("decord", "pyav", or a ``(path, num_frames)`` factory).

    ``num_frames`` should be the verified count from the index; without it the file is decoded once
    (:func:`probe_video`) to find it. A file that decord cannot open falls back to PyAV with a
    warning. Raises VideoReadError naming the file when no backend can open it.
    """
    path = str(path)
    if callable(backend):
        return backend(path, num_frames)
    if os.path.isdir(path):
        return FrameFolderReader(path, num_frames)
    if backend == "pyav":
        return PyAVReader(path, num_frames)
    if backend != "decord":
        raise ValueError(f"unknown video backend {backend!r}; choose one of {BACKENDS}")
    try:
        return DecordReader(path, num_frames)
    except VideoReadError as e:
        warnings.warn(f"{e}; trying PyAV for this file", RuntimeWarning, stacklevel=2)
        return PyAVReader(path, num_frames)


_CACHE: OrderedDict[tuple[int, str, str], VideoReader] = OrderedDict()


# Readers inherited from a parent process through fork: kept alive, never used nor freed here.
_INHERITED: list[VideoReader] = []


def cached_reader(
    path: str | os.PathLike,
    backend: str | ReaderFactory = "decord",
    num_frames: int | None = None,
    capacity: int = READER_CACHE_SIZE,
    cache_mb: float = 0,
    cache_video_mb: float = CACHE_VIDEO_MB,
    size_hint: tuple[int, int] | None = None,
) -> VideoReader:
    """A reader for ``path`` owned by the calling process, opened on first use.

    The process keeps its ``capacity`` most recently used readers open (reopening costs a demux
    of the file's index); a reader found from a parent process (fork) is set aside, never used.
    A file whose size or mtime changed since its reader opened it gets a new reader.

    ``cache_mb > 0`` turns on the decoded-frame cache (:mod:`css_pose.data.video.reader`) for the "decord" and
    "pyav" backends: videos of at most ``cache_video_mb`` MiB decoded are decoded whole once and
    served from memory, in an LRU cache of at most ``cache_mb`` MiB in this process. Readers from
    a factory are never cached. ``size_hint``: the frames' (width, height) if known (the index
    has it), to size a video up without decoding a frame.
    """
    pid = os.getpid()
    if any(key[0] != pid for key in _CACHE):
        _INHERITED.extend(r for key, r in _CACHE.items() if key[0] != pid)
        for key in [key for key in _CACHE if key[0] != pid]:
            del _CACHE[key]
    key = (pid, backend if isinstance(backend, str) else repr(backend), str(path))
    reader = _CACHE.get(key)
    if reader is not None and reader.file_stat is not None:
        if reader.file_stat != stat_key(str(path)):
            _CACHE.pop(key).close()
            reader = None
    if reader is None:
        reader = open_video(path, backend, num_frames)
        _CACHE[key] = reader
        while len(_CACHE) > capacity:
            _CACHE.popitem(last=False)[1].close()
    _CACHE.move_to_end(key)
    if isinstance(backend, str):
        reader.cache_mb, reader.cache_video_mb = cache_mb, cache_video_mb
        reader.size_hint = size_hint
    return reader


def drop_cached_reader(path: str | os.PathLike) -> None:
    """Close and forget this process's readers and decoded frames of ``path`` (after a read
    error, or a file change)."""
    for key in [key for key in _CACHE if key[0] == os.getpid() and key[2] == str(path)]:
        _CACHE.pop(key).close()
    forget_frames(str(path))


def clear_reader_cache() -> None:
    """Close every reader this process opened and forget the frames it decoded."""
    for key in [key for key in _CACHE if key[0] == os.getpid()]:
        _CACHE.pop(key).close()
    forget_frames()
