"""Time the default synthetic set (64 videos x 120 frames at 128 px) end to end.

Usage: python benchmarks/synthetic_speed.py [--workers W] [--out DIR]
Prints the wall-clock seconds of ``generate_dataset`` (rendering, encoding, writing) and frames/s.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from css_pose.config import configure_threads
from css_pose.data.synthetic import generate_dataset


def main() -> None:
    configure_threads()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--out", default=None, help="keep the set here (default: a temp folder)")
    parser.add_argument("--videos", type=int, default=64)
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--size", type=int, default=128)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        start = time.perf_counter()
        generate_dataset(out, videos=args.videos, frames=args.frames, size=args.size,
                         workers=args.workers, progress=False)  # fmt: skip
        seconds = time.perf_counter() - start
    frames = args.videos * args.frames
    print(f"{args.videos} videos x {args.frames} frames at {args.size} px: {seconds:.1f} s "
          f"({frames / seconds:.0f} frames/s)")  # fmt: skip


if __name__ == "__main__":
    main()
