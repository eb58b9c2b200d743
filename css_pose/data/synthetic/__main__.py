"""Command line: ``python -m css_pose.data.synthetic --out DIR --videos N --frames T --size S``."""

from __future__ import annotations

import argparse
import time

from css_pose.data.synthetic.generate import generate_dataset


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m css_pose.data.synthetic",
        description="Render synthetic pose videos with exact 2D/3D keypoints (docs/data_format.md).",
    )
    parser.add_argument("--out", required=True, help="output folder (manifest.json, videos/)")
    parser.add_argument("--videos", type=int, default=64)
    parser.add_argument("--frames", type=int, default=None,
                        help="frames per video (default 120, or the whole --motion file)")  # fmt: skip
    parser.add_argument("--size", type=int, default=128, help="square frame side, px (even)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--people", type=int, default=1, help="people per video")
    parser.add_argument("--occluders", action="store_true", help="bars crossing in front")
    parser.add_argument("--motion-blur", action="store_true")
    parser.add_argument("--pan", action="store_true", help="slow camera pan")
    parser.add_argument("--motion", default=None,
                        help=".npz with keypoints_3d (T, 17, 3) in mm, y up, rendered as person 0")  # fmt: skip
    parser.add_argument("--families", nargs="+", default=None,
                        help="draw the people's actions from these motion families only "
                        "(default all; 'fast': run wave kick arm_circles punch jumping_jacks jump)")  # fmt: skip
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        manifest = generate_dataset(
            args.out,
            videos=args.videos,
            frames=args.frames,
            size=args.size,
            seed=args.seed,
            fps=args.fps,
            people=args.people,
            occluders=args.occluders,
            motion_blur=args.motion_blur,
            pan=args.pan,
            motion=args.motion,
            families=args.families,
            workers=args.workers,
        )
    except ValueError as e:
        parser.error(str(e))
    print(f"wrote {manifest} in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
