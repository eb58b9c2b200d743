"""PyAV: the reference decoder, the fallback for files decord cannot read, and the probe that
measures how many frames of a file really decode (:func:`probe_video`).

Frame ``i`` is the frame whose timestamp is ``start + i / fps``, so PyAV and decord agree on
constant-frame-rate video.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from fractions import Fraction

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from css_pose.data.video.frame_folder import probe_frame_folder
from css_pose.data.video.reader import VideoInfo, VideoReader, VideoReadError, stat_key


def open_container(path: str) -> tuple[av.container.InputContainer, av.video.stream.VideoStream]:
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


class PtsToIndex:
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


def decode_frames(container: av.container.InputContainer, stream) -> Iterator[av.VideoFrame]:
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
        return probe_frame_folder(path)
    container, stream = open_container(path)
    try:
        rate = _stream_rate(path, stream)
        stream.codec_context.thread_type = "AUTO"
        pts: list[int] = []
        decoded = 0
        for frame in decode_frames(container, stream):
            decoded += 1
            if frame.pts is not None:
                pts.append(frame.pts)
        if not decoded:
            raise VideoReadError(f"{path}: no decodable frames")
        if not pts:
            raise VideoReadError(f"{path}: frames carry no timestamps (remux it into mp4 or mkv)")
        # Frames that decode, in order, and whose timestamps leave no gap: a corrupt packet in the
        # middle of a file ends the usable part there.
        mapping = PtsToIndex(stream, rate, min(pts))
        seen = {mapping.index(p) for p in pts}
        count = 0
        while count < decoded and count in seen:
            count += 1
        return VideoInfo(count, float(rate), stream.width, stream.height, stream.frames or 0)
    except av.FFmpegError as e:
        raise VideoReadError(f"{path}: decoding failed ({e})") from e
    finally:
        container.close()


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
        self.file_stat = stat_key(self.path)
        self._open()
        rate = _stream_rate(self.path, self._stream)
        try:
            first = next(
                f for f in decode_frames(self._container, self._stream) if f.pts is not None
            )
        except (StopIteration, av.FFmpegError) as e:
            self._container.close()
            raise VideoReadError(f"{self.path}: no decodable frames") from e
        self._map = PtsToIndex(self._stream, rate, first.pts)
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
        for k, frame in enumerate(decode_frames(self._container, self._stream)):
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
        self._container, self._stream = open_container(self.path)
        self._stream.codec_context.thread_count = 1
        # One converter per reader keeps its swscale context: 5-10x faster than a new one per frame.
        self._rgb = VideoReformatter()

    def close(self) -> None:
        self._container.close()
