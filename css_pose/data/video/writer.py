"""Writing videos: H.264 mp4 fed one frame at a time, published atomically."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from css_pose.artifacts.atomic import publish, temporary_sibling


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
