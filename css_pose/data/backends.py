"""Video decoding backends: decord (fast) and PyAV (fallback and reference), and folders of
numbered frames.

A **frame folder** (PoseTrack, JHMDB and Penn Action ship their videos this way) is a directory of
images (:data:`IMAGE_EXTENSIONS`) whose names are integers, e.g. ``000001.jpg``: frame ``i`` is the
i-th image in numeric order (whatever number the first has). It has no timestamps, so its frame
rate is :data:`FRAME_FOLDER_FPS`. Every function here that takes a video path takes such a folder
(:func:`probe_video`, :func:`open_video`, :func:`cached_reader`; ``backend`` is ignored for them).
The folder's own size and mtime identify its version: adding, removing or renaming an image
changes them, rewriting an image in place does not (touch the folder after that).

Both return frames by index in presentation order as uint8 RGB arrays. Frame ``i`` is the frame
whose timestamp is ``start + i / fps``, so the two backends agree on constant-frame-rate video.

decord is fast but unmaintained, and it has traps that this module guards against:

- a reader created before ``fork`` must never be used (or freed) in a DataLoader worker, so readers
  are opened lazily, per process, through :func:`cached_reader` (keyed by ``(pid, backend, path)``);
- ``get_batch`` can hang when asked for frames past the real end of a file whose header
  over-reports its length, so every reader is bounded by a *verified* decodable frame count
  (:func:`probe_video`, stored by the index) and indices are validated against it;
- ``num_threads=1`` always (more threads deadlock in some builds and oversubscribe workers);
- when decord cannot open or read a file, that file falls back to PyAV with a warning.

Decoded-frame cache: decord seeks to the keyframe before every wanted frame, so a clip of 5 random
frames costs about as much as decoding a GOP per frame, while decoding a whole short video in one
sequential pass costs little more than one such clip. Readers handed out by :func:`cached_reader`
with ``cache_mb > 0`` therefore decode a *short* video (decoded size, ``num_frames x H x W x 3``
bytes, at most ``cache_video_mb``) whole, once per process, and serve every later read from memory.
The cache is per process, LRU, bounded by ``cache_mb`` of decoded frames in that process: with W
DataLoader workers it holds up to ``W x cache_mb`` in all (plus the main process, if it reads).
Entries are keyed by ``(pid, backend, path, file size, mtime)``, so a changed file is never served
stale and a forked worker never uses (nor counts) frames decoded by its parent. Larger videos, and
every read when ``cache_mb=0``, take the sorted ``get_batch`` path. Size ``cache_mb`` to hold the
decoded videos each worker reads: when they do not fit, LRU evicts videos that come back later and
each such miss decodes a whole video again.
"""

from __future__ import annotations

import os
import re
import warnings
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from css_pose.artifacts.atomic import publish, temporary_sibling

BACKENDS = ("decord", "pyav")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
# Frames/s of a frame folder, which has no timestamps (most datasets' are 25-30).
FRAME_FOLDER_FPS = 30.0
# Open readers kept per process by default; each holds a file handle and a decoder.
READER_CACHE_SIZE = 64
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


def _open_container(path: str) -> tuple[av.container.InputContainer, av.video.stream.VideoStream]:
    if not os.path.isfile(path):
        raise VideoReadError(f"{path}: no such file")
    if os.path.getsize(path) == 0:
        raise VideoReadError(f"{path}: empty file (0 bytes)")
    try:
        container = av.open(path)
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as e:
        raise VideoReadError(f"{path}: not a readable video ({e})") from e
    if not container.streams.video:
        container.close()
        raise VideoReadError(f"{path}: no video stream")
    return container, container.streams.video[0]


def _stream_rate(path: str, stream: av.video.stream.VideoStream) -> Fraction:
    rate = stream.average_rate or stream.guessed_rate
    if not rate or rate <= 0:
        raise VideoReadError(f"{path}: unknown frame rate")
    return Fraction(rate)


class _PtsToIndex:
    """Maps a frame's pts (stream time_base units) to its frame index, and back, at constant fps.

    Index 0 is the frame with pts ``start``, the first presented frame (not the stream's
    start_time: AVI with B-frames, for one, starts presenting at pts 1).
    """

    def __init__(self, stream: av.video.stream.VideoStream, rate: Fraction, start: int):
        self.start = start
        self.ticks_per_frame = 1 / (Fraction(stream.time_base) * rate)

    def index(self, pts: int) -> int:
        return round((pts - self.start) / self.ticks_per_frame)

    def pts(self, index: int) -> int:
        return self.start + int(index * self.ticks_per_frame)


def _decode(container: av.container.InputContainer, stream) -> Iterator[av.VideoFrame]:
    """Decoded frames from the current position.

    Packets the demuxer flags as corrupt (the cut-off last packet of a truncated file) are dropped
    and packets that fail to decode are skipped, so the decoder never conceals a broken frame.
    """
    for packet in container.demux(stream):
        if packet.is_corrupt:
            continue
        try:
            yield from packet.decode()
        except av.error.InvalidDataError:
            continue


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Decode a whole file to measure its real frame count, frame rate and size.

    The count is the number of frames ``0, 1, ..., n-1`` that decode without a gap, so a truncated
    or corrupt file reports what can really be read, whatever its header says. Raises
    VideoReadError (naming the file) when nothing decodes.
    """
    path = str(path)
    if os.path.isdir(path):
        return _probe_frame_folder(path)
    container, stream = _open_container(path)
    try:
        rate = _stream_rate(path, stream)
        stream.codec_context.thread_type = "AUTO"
        pts: list[int] = []
        decoded = 0
        for frame in _decode(container, stream):
            decoded += 1
            if frame.pts is not None:
                pts.append(frame.pts)
        if not decoded:
            raise VideoReadError(f"{path}: no decodable frames")
        if not pts:
            raise VideoReadError(f"{path}: frames carry no timestamps (remux it into mp4 or mkv)")
        # Frames that decode, in order, and whose timestamps leave no gap: a corrupt packet in the
        # middle of a file ends the usable part there.
        mapping = _PtsToIndex(stream, rate, min(pts))
        seen = {mapping.index(p) for p in pts}
        count = 0
        while count < decoded and count in seen:
            count += 1
        return VideoInfo(count, float(rate), stream.width, stream.height, stream.frames or 0)
    except av.FFmpegError as e:
        raise VideoReadError(f"{path}: decoding failed ({e})") from e
    finally:
        container.close()


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


def _file_stat(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def frame_cache_info() -> dict:
    """This process's decoded-frame cache: ``entries``, (reader class, path, file size, mtime_ns)
    from least to most recently used, and the ``bytes`` of frames they hold."""
    return {"entries": [key[1:] for key in _FRAMES.keys()], "bytes": _FRAMES.nbytes}


def clear_frame_cache() -> None:
    """Forget every decoded video this process cached."""
    _FRAMES.drop()


class PyAVReader(VideoReader):
    """PyAV reader: seek to the keyframe before the first wanted frame, then decode forward.

    After a wanted frame it keeps decoding forward to the next one unless that is more than
    ``seek_gap`` frames ahead, in which case it seeks again (``seek_gap=0``: a seek per frame).
    Frame indices count decoded frames from the keyframe a seek lands on, so they agree with
    :func:`probe_video` and with decord.
    """

    def __init__(self, path: str | os.PathLike, num_frames: int | None = None, seek_gap: int = 32):
        self.path = str(path)
        self.seek_gap = seek_gap
        self.file_stat = _file_stat(self.path)
        self._open()
        rate = _stream_rate(self.path, self._stream)
        try:
            first = next(f for f in _decode(self._container, self._stream) if f.pts is not None)
        except (StopIteration, av.FFmpegError) as e:
            self._container.close()
            raise VideoReadError(f"{self.path}: no decodable frames") from e
        self._map = _PtsToIndex(self._stream, rate, first.pts)
        self.fps = float(rate)
        self.size = (self._stream.width, self._stream.height)
        if num_frames is None:
            num_frames = probe_video(self.path).num_frames
        self.num_frames = num_frames

    def _frames(self, first_index: int | None = None) -> Iterator[tuple[int, av.VideoFrame]]:
        """(index, frame) pairs decoded from the current position.

        The decoder emits frames in presentation order, so frames are counted from the first one,
        whose index is ``first_index`` or comes from its pts. Per-frame pts are not trusted:
        AVI, for one, labels reordered frames with decode timestamps.
        """
        for k, frame in enumerate(_decode(self._container, self._stream)):
            if first_index is None:
                if frame.pts is None:
                    raise VideoReadError(f"{self.path}: frames carry no timestamps")
                first_index = self._map.index(frame.pts)
            yield first_index + k, frame

    def _seek(self, index: int) -> Iterator[tuple[int, av.VideoFrame]]:
        """(index, frame) pairs decoded from a keyframe at or before ``index``."""
        back = 0
        while index - back > 0:
            target = self._map.pts(index - back)
            self._container.seek(target, stream=self._stream, backward=True, any_frame=False)
            frames = self._frames()
            first = next(frames, None)
            if first is not None and first[0] <= index:
                yield first
                yield from frames
                return
            # The demuxer landed after the target (a file without a seek index): aim earlier.
            back = max(2 * back, 1)
        self._open()
        yield from self._frames(first_index=0)

    def _read_sorted(self, indices: list[int]) -> np.ndarray:
        out: dict[int, np.ndarray] = {}
        frames: Iterator[tuple[int, av.VideoFrame]] = iter(())
        position = self.num_frames  # nothing decoded yet: the first wanted frame needs a seek
        try:
            for want in indices:
                if want <= position or want - position > self.seek_gap:
                    frames = self._seek(want)
                hit = next(((i, f) for i, f in frames if i >= want), None)
                if hit is None:  # stream ended: force a seek for the next wanted frame
                    position = self.num_frames
                    continue
                position, frame = hit
                if position == want:
                    out[want] = self._rgb.reformat(frame, format="rgb24").to_ndarray()
        except av.FFmpegError as e:
            raise VideoReadError(f"{self.path}: decoding failed ({e})") from e
        missing = [i for i in indices if i not in out]
        if missing:
            raise VideoReadError(f"{self.path}: frames {missing[:8]} did not decode")
        return np.stack([out[i] for i in indices])

    def _open(self) -> None:
        """(Re)open the file, positioned at its start."""
        if getattr(self, "_container", None) is not None:
            self._container.close()
        self._container, self._stream = _open_container(self.path)
        self._stream.codec_context.thread_count = 1
        # One converter per reader keeps its swscale context: 5-10x faster than a new one per frame.
        self._rgb = VideoReformatter()

    def close(self) -> None:
        self._container.close()


class DecordReader(VideoReader):
    """decord reader: one sorted ``get_batch`` per call, bounded by the verified frame count.

    When decord fails on a read, the reader warns once and serves this file with PyAV from then on.
    """

    def __init__(self, path: str | os.PathLike, num_frames: int | None = None):
        import decord

        self.path = str(path)
        if not os.path.isfile(self.path) or os.path.getsize(self.path) == 0:
            raise VideoReadError(f"{self.path}: missing or empty file")
        self.file_stat = _file_stat(self.path)
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


class VideoWriter:
    """H.264 mp4 of (H, W, 3) uint8 RGB frames, fed one at a time (bounded memory),, written under a temporary name and renamed when closed.

    Odd frame sizes are encoded as yuv444p (4:2:0 needs even sides), so the output always has the
    input's exact size."""

    def __init__(
        self,
        path: str | os.PathLike,
        width: int,
        height: int,
        fps: float | Fraction,
        options: dict[str, str] | None = None,
        threads: int | None = None,
    ):
        """``options``: libx264 options (default crf 20, preset veryfast); ``threads``: encoder
        threads (None: FFmpeg's choice; 1 makes the output byte-stable)."""
        self.path = Path(path)
        self.tmp = temporary_sibling(self.path)
        self.container = av.open(str(self.tmp), "w", format="mp4")
        rate = Fraction(fps).limit_denominator(1001)
        self.stream = self.container.add_stream("libx264", rate=rate)
        even = width % 2 == 0 and height % 2 == 0
        self.stream.width, self.stream.height = width, height
        self.stream.pix_fmt = "yuv420p" if even else "yuv444p"
        if threads is not None:
            self.stream.codec_context.thread_count = threads
        self.stream.options = options or {"crf": "20", "preset": "veryfast"}
        self.count = 0

    def write(self, frame: np.ndarray) -> None:
        self.container.mux(self.stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        self.count += 1

    def close(self) -> Path:
        self.container.mux(self.stream.encode())
        self.container.close()
        publish([(self.tmp, self.path)])
        return self.path

    def abort(self) -> None:
        try:
            self.container.close()
        finally:
            self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        """Close (the file appears) when the block ends normally; abort (nothing is left
        behind) when it raises."""
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _decord_message(error: Exception) -> str:
    """decord's error text without its timestamp and source-file prefix."""
    return re.sub(r"^\[[\d:]+\] \S+: ", "", str(error).strip().splitlines()[0])


ReaderFactory = Callable[[str, int | None], VideoReader]


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


def _read_image(path: str) -> np.ndarray | None:
    """(H, W, 3) uint8 RGB, or None when the file does not decode."""
    import cv2

    image = cv2.imread(path, cv2.IMREAD_COLOR)
    return None if image is None else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _probe_frame_folder(path: str) -> VideoInfo:
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
        image = _read_image(file)
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
        self.file_stat = _file_stat(self.path)
        self._files = frame_files(self.path)
        if num_frames is None:
            num_frames = _probe_frame_folder(self.path).num_frames
        if len(self._files) < num_frames:
            raise VideoReadError(
                f"{self.path}: {len(self._files)} numbered images, but {num_frames} frames "
                "were expected (images removed since it was indexed?)"
            )
        self.num_frames = num_frames
        self.fps = FRAME_FOLDER_FPS
        first = _read_image(self._files[0])
        if first is None:
            raise VideoReadError(f"{self._files[0]}: does not decode")
        self.size = (first.shape[1], first.shape[0])

    def _read_sorted(self, indices: list[int]) -> np.ndarray:
        frames = []
        for i in indices:
            image = _read_image(self._files[i])
            if image is None or (image.shape[1], image.shape[0]) != self.size:
                raise VideoReadError(
                    f"{self._files[i]}: frame {i} does not decode, or is not "
                    f"{self.size[0]}x{self.size[1]} like the first"
                )
            frames.append(image)
        return np.stack(frames)

    def close(self) -> None:
        pass


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

    ``cache_mb > 0`` turns on the decoded-frame cache (module docstring) for the "decord" and
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
        if reader.file_stat != _file_stat(str(path)):
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
    _FRAMES.drop(str(path))


def clear_reader_cache() -> None:
    """Close every reader this process opened and forget the frames it decoded."""
    for key in [key for key in _CACHE if key[0] == os.getpid()]:
        _CACHE.pop(key).close()
    _FRAMES.drop()
