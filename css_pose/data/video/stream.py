"""Reading a whole video front to back, one frame at a time (bounded memory), with frame indices
from the timestamps: what ``css-pose predict`` streams. A frame that does not decode leaves a gap
in the indices instead of shifting every later frame.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from css_pose.data.video.frame_folder import (
    FRAME_FOLDER_FPS,
    FrameFolderReader,
    frame_files,
    read_image,
)
from css_pose.data.video.pyav_reader import PtsToIndex, decode_frames, open_container
from css_pose.data.video.reader import VideoReadError

# Frames held back to sort timestamps that a container gives in decode order (AVI with B-frames);
# H.264 and HEVC reorder at most 16 frames.
REORDER = 16


@dataclass
class VideoStream:
    """An open input video: frames come out of :meth:`frames` one at a time, front to back."""

    path: str
    width: int
    height: int
    fps: Fraction
    reported_frames: int
    _container: av.container.InputContainer
    _stream: av.video.stream.VideoStream

    @classmethod
    def open(cls, path: str | Path) -> VideoStream | FrameFolderStream:
        """The stream of a video file, or of a frame folder (:mod:`css_pose.data.video`)."""
        if Path(path).is_dir():
            return FrameFolderStream.open(path)
        container, stream = open_container(str(path))
        rate = stream.average_rate or stream.guessed_rate or 30
        stream.codec_context.thread_type = "AUTO"
        return cls(
            str(path), stream.width, stream.height, Fraction(rate), stream.frames or 0,
            container, stream,
        )  # fmt: skip

    def frames(self) -> Iterator[tuple[int, np.ndarray]]:
        """(frame index, (H, W, 3) uint8 RGB frame) pairs in presentation order.

        The index comes from the timestamp (module docstring), so frames that do not decode
        leave a gap. The decoder emits frames in presentation order but some containers (AVI)
        stamp them in decode order, so each frame takes the smallest timestamp among the next
        ``REORDER`` frames' (its own when they are in order). A frame without a timestamp, or
        one that would repeat an index, takes the next index.
        """
        ticks = 1 / (Fraction(self._stream.time_base) * self.fps)
        held: deque[av.VideoFrame] = deque()
        stamps: list = []  # min-heap of the held frames' timestamps
        latest, last = None, -1
        mapping: PtsToIndex | None = None

        def release() -> tuple[int, np.ndarray]:
            nonlocal mapping, last
            pts = heapq.heappop(stamps)
            mapping = mapping or PtsToIndex(self._stream, self.fps, pts)
            last = max(mapping.index(pts), last + 1)
            return last, held.popleft().to_ndarray(format="rgb24")

        try:
            for frame in decode_frames(self._container, self._stream):
                pts = frame.pts if frame.pts is not None else (latest or 0) + ticks
                latest = pts if latest is None else max(latest, pts)
                held.append(frame)
                heapq.heappush(stamps, pts)
                if len(held) > REORDER:
                    yield release()
            while held:
                yield release()
        except av.FFmpegError as err:
            raise VideoReadError(f"{self.path}: decoding failed ({err})") from err

    def close(self) -> None:
        self._container.close()


@dataclass
class FrameFolderStream:
    """:class:`VideoStream` of a folder of numbered frames: frame i is its i-th image; an image
    that does not decode (or has another size than the first) leaves a gap, as a damaged packet
    does in a video file."""

    path: str
    width: int
    height: int
    fps: Fraction
    reported_frames: int
    _files: list[str]

    @classmethod
    def open(cls, path: str | Path) -> FrameFolderStream:
        files = frame_files(path)
        if not files:
            raise VideoReadError(f"{path}: a folder without numbered images (e.g. 000001.jpg)")
        reader = FrameFolderReader(path, num_frames=1)  # size from the first image
        width, height = reader.size
        return cls(str(path), width, height, Fraction(FRAME_FOLDER_FPS), len(files), files)

    def frames(self) -> Iterator[tuple[int, np.ndarray]]:
        for index, file in enumerate(self._files):
            image = read_image(file)
            if image is not None and image.shape[:2] == (self.height, self.width):
                yield index, image

    def close(self) -> None:
        pass
