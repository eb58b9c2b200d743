"""Does DIS optical flow follow the synthetic people's limbs? Whole frames, several resolutions.

The temporal heads (issue 16) warp heatmaps by DIS flow between 32 px person crops. This check
takes the flow out of the crops: it renders small synthetic sets (occluders and motion blur, as
``benchmarks/temporal_2d.py``) at each ``--sizes`` frame side, computes DIS between whole frames
t and t + k, and moves every joint visible in both frames by the flow read at its position.
Errors are in "crop px": frame px x 25 / max side of the person box, so 2.5 is the PCK@0.1
threshold at any resolution (25 is the box side in a 32 px crop). Rows per set and offset k:

- ``DIS <preset>``: |joint_t + flow(joint_t) - joint_{t+k}|;
- ``no motion``: |joint_t - joint_{t+k}|;
- ``box shift``: |joint_t + box-centre shift - joint_{t+k}|, what crops that follow the person
  already give without any flow.

    python benchmarks/flow_limbs.py --fps 10 --families fast --sizes 96 192 --offsets 1 2
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def decode_grey(path: Path) -> list[np.ndarray]:
    """Every frame of a video, grey uint8 (H, W), through the project's PyAV reader."""
    from css_pose.data.video.pyav_reader import decode_frames, open_container

    container, stream = open_container(str(path))
    with container:
        return [f.to_ndarray(format="gray") for f in decode_frames(container, stream)]


def joint_errors(root: Path, offset: int, presets: list[str]) -> dict[str, dict[str, float]]:
    """{row: {"all": mean, "wrists": mean}} crop px over every video of the set at ``root``."""
    import cv2

    from css_pose.flow import DIS_PRESETS
    from css_pose.skeleton import JOINT_GROUPS

    dis = {p: cv2.DISOpticalFlow_create(DIS_PRESETS[p]) for p in presets}
    errors: dict[str, list[np.ndarray]] = {r: [] for r in (*presets, "no motion", "box shift")}
    wrist_mask = []
    manifest = json.loads((root / "manifest.json").read_text())
    for entry in manifest["videos"]:
        with np.load(root / entry["annotation"]) as ann:
            kp, vis, box = ann["keypoints_2d"], ann["visibility"] > 0, ann["bboxes"]
        frames = decode_grey(root / entry["video"])
        size = frames[0].shape[0]
        for t in range(len(frames) - offset):
            both = vis[t] & vis[t + offset]
            scale = 25.0 / max(box[t, 2] - box[t, 0], box[t, 3] - box[t, 1], 1e-6)
            target = kp[t + offset]
            xy = np.clip(np.round(kp[t]).astype(int), 0, size - 1)
            shift = (box[t + offset, :2] + box[t + offset, 2:] - box[t, :2] - box[t, 2:]) / 2
            guesses = {"no motion": kp[t], "box shift": kp[t] + shift}
            for p, d in dis.items():
                flow = d.calc(frames[t], frames[t + offset], None)
                guesses[p] = kp[t] + flow[xy[:, 1], xy[:, 0]]
            for row, guess in guesses.items():
                errors[row].append(np.linalg.norm(guess - target, axis=1)[both] * scale)
            wrist_mask.append(np.isin(np.arange(len(both)), JOINT_GROUPS["wrists"])[both])
    wrists = np.concatenate(wrist_mask)
    out = {}
    for row, parts in errors.items():
        e = np.concatenate(parts)
        out[row] = {"all": float(e.mean()), "wrists": float(e[wrists].mean()), "pairs": len(e)}
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[96, 192], help="frame sides px")
    parser.add_argument("--offsets", type=int, nargs="+", default=[1, 2], help="frames apart")
    parser.add_argument("--fps", type=float, default=10.0)
    parser.add_argument("--families", nargs="+", default=["fast"],
                        help="motion families ('fast': the fast-limbed ones; 'all')")  # fmt: skip
    parser.add_argument("--videos", type=int, default=40)
    parser.add_argument("--presets", nargs="+", default=["medium", "fast"])
    parser.add_argument("--out", type=Path, default=Path("runs/flow-limbs"))
    args = parser.parse_args(argv)
    import cv2

    from css_pose.data.synthetic import generate_dataset
    from css_pose.data.synthetic.motions import resolve_families

    cv2.setNumThreads(1)
    families = resolve_families(args.families)
    results, lines = (
        {},
        ["| frame side | k | row | all joints | wrists |", "|---:|---:|---|---:|---:|"],
    )
    for size in args.sizes:
        root = args.out / f"set{size}"
        generate_dataset(root, videos=args.videos, frames=24, size=size, seed=1000, fps=args.fps,
                         occluders=True, motion_blur=True, families=families,
                         progress=False)  # fmt: skip
        for k in args.offsets:
            rows = joint_errors(root, k, args.presets)
            results[f"{size}/{k}"] = rows
            for row, v in rows.items():
                lines.append(f"| {size} | {k} | {row} | {v['all']:.2f} | {v['wrists']:.2f} |")
    text = (
        f"Joint end-point errors in crop px (PCK@0.1 threshold 2.5), {args.videos} videos per "
        f"size, {args.fps:g} fps, families {' '.join(families or ['all'])}:\n\n"
        + "\n".join(lines)
        + "\n"
    )
    print(text)
    (args.out / "flow_limbs.json").write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
