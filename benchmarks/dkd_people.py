"""DKD on crowded video (issue 17): every person followed with a DKD state of their own, against
the large model (the DKD file's initializer) run on every person box of every frame.

    python benchmarks/dkd_people.py --dkd runs/dkd.pt --out runs/bench-dkd-people

1. **Data**: ``--videos`` synthetic videos of ``--people`` people each, with occluder bars and
   motion blur (seed 23), generated into OUT/data unless ``--root`` names a set. Neither model
   was trained on them: the DKD file's networks learn from one-person videos.
2. **Boxes**: the true boxes of the people present in each frame, as ``css-pose predict --boxes``
   reads them from an annotation. People cross and overlap, so a box can continue the wrong
   person; such swaps show up in the scores.
3. **Models**: the same streams as ``css-pose predict`` (:mod:`css_pose.video_pose`): the
   initializer alone on every box (no flip test), and DKD (:class:`~css_pose.video_pose.DKDFrames`).
4. **Scores**: PCK@0.2 and PCK@0.1 (``pck_tight``) over the visible joints of every person-frame; jitter (the
   mean frame-to-frame keypoint acceleration, frame px, over joints visible in three frames in a
   row of a person); people-frames per second of each stream (crop cutting included), timed in
   the same run, alternating, median of ``--rounds``; the share of person-frames that ran the
   initializer. The floor places the mean pose of these videos' people (in box units, no image)
   in each box.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from css_pose.config import configure_threads
from css_pose.data.index import index_videos
from css_pose.data.loading import load_annotation
from css_pose.data.video import open_video
from css_pose.metrics import pck_tight
from css_pose.models.pose_model import load_pose_model
from css_pose.video_pose import DKDFrames, Ready, SingleFrames

sys.path.insert(0, str(Path(__file__).resolve().parent))
from crowd import mean_unit_pose  # noqa: E402


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dkd", type=Path, required=True, help="a DKD model file (css-pose dkd)")
    p.add_argument("--root", type=Path, default=None, help="default: OUT/data, generated")
    p.add_argument("--videos", type=int, default=30)
    p.add_argument("--people", type=int, default=3)
    p.add_argument("--size", type=int, default=128, help="frame size of generated videos, px")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path("runs/bench-dkd-people"))
    return p.parse_args(argv)


def load_videos(root: Path) -> list[tuple]:
    """(annotation, frames (T, H, W, 3) uint8, boxes {t: (P_t, 5)}, people present [t] -> ids)."""
    out = []
    for entry in index_videos(root).videos:
        ann = load_annotation(entry.annotation, entry.num_frames)
        with open_video(entry.path, "pyav", entry.num_frames) as reader:
            frames = reader.get_batch(range(entry.num_frames))
        present = [np.flatnonzero(ann.present[:, t]) for t in range(entry.num_frames)]
        boxes = {t: np.concatenate([ann.boxes[p, t], np.ones((len(p), 1))], 1).astype(np.float32)
                 for t, p in enumerate(present) if len(p)}  # fmt: skip
        out.append((ann, frames, boxes, present))
    return out


def run(stream_for, videos) -> tuple[list[np.ndarray], float, list]:
    """Each video's keypoints (P, T, J, 2) frame px (NaN where the person is absent), the
    seconds spent and the streams: one fresh stream per video, frame by frame."""
    preds, seconds, streams = [], 0.0, []
    for ann, frames, boxes, present in videos:
        stream = stream_for(boxes)
        streams.append(stream)
        kp = np.full(ann.keypoints_2d.shape, np.nan, np.float32)
        start = time.perf_counter()
        for t, image in enumerate(frames):
            people = stream.predict([Ready(t, image)])
            for p, person in zip(present[t], people, strict=True):
                assert np.allclose(person.box, ann.boxes[p, t])  # returned in box order
                kp[p, t] = person.keypoints
        seconds += time.perf_counter() - start
        preds.append(kp)
    return preds, seconds, streams


def score(preds: list[np.ndarray], videos) -> dict:
    """PCK@0.2 over every visible joint of every person-frame, and jitter in frame px."""
    p, g, v, accel = [], [], [], []
    for kp, (ann, _, _, _) in zip(preds, videos, strict=True):
        seen = ann.present[..., None] & (ann.visibility > 0)
        p.append(kp[ann.present]), g.append(ann.keypoints_2d[ann.present])
        v.append(seen[ann.present])
        both = seen[:, 2:] & seen[:, 1:-1] & seen[:, :-2]
        accel.append(np.linalg.norm(kp[:, 2:] - 2 * kp[:, 1:-1] + kp[:, :-2], axis=-1)[both])
    p, g, v = (torch.from_numpy(np.concatenate(a)) for a in (p, g, v))
    return {"pck@0.2": float(pck_tight(p, g, v, 0.2)), "pck@0.1": float(pck_tight(p, g, v, 0.1)),
            "jitter_px": float(np.concatenate(accel).mean()), "person_frames": len(p)}  # fmt: skip


def floor(videos) -> list[np.ndarray]:
    """The mean visible pose of these videos' people in box units, placed in every box."""
    unit = mean_unit_pose(ann for ann, *_ in videos)
    return [ann.boxes[..., None, :2] + unit * (ann.boxes[..., None, 2:] - ann.boxes[..., None, :2])
            for ann, *_ in videos]  # fmt: skip


def main(argv=None) -> dict:
    args = parse(argv)
    configure_threads(args.threads)
    root = args.root or args.out / "data"
    if not (root / "manifest.json").exists():
        from css_pose.data.synthetic import generate_dataset

        generate_dataset(root, videos=args.videos, frames=24, size=args.size, seed=23,
                         people=args.people, occluders=True, motion_blur=True)  # fmt: skip
    videos = load_videos(root)
    model, codec, payload = load_pose_model(args.dkd, "cpu")
    crop = (payload["crop"]["box_pad"], payload["crop"]["size"], torch.device("cpu"))
    streams = {
        "large, every person-frame": lambda boxes: SingleFrames(model, codec, boxes, *crop, False),
        "DKD, a state per person": lambda boxes: DKDFrames(model, codec, payload, boxes, *crop),
    }
    rows = {"floor (mean pose in each box, no image)": score(floor(videos), videos)}
    times: dict[str, list[float]] = {k: [] for k in streams}
    inits = {}
    for _ in range(args.rounds):  # alternating: both see the same machine load
        for name, make in streams.items():
            preds, seconds, made = run(make, videos)
            times[name].append(seconds)
            rows[name] = score(preds, videos)
            if name.startswith("DKD"):
                inits = {"initializer_person_frames": sum(s.initialised for s in made),
                         "scene_cuts": sum(s.cuts for s in made)}  # fmt: skip
    for name in streams:
        rows[name]["person_frames_per_s"] = rows[name]["person_frames"] / float(
            np.median(times[name])
        )
    rows["DKD, a state per person"].update(inits)
    ratio = rows["DKD, a state per person"]["person_frames_per_s"] / rows[
        "large, every person-frame"]["person_frames_per_s"]  # fmt: skip
    summary = {"args": {k: str(v) for k, v in vars(args).items()}, "videos": len(videos),
               "rows": rows, "speed_ratio": ratio}  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(summary, indent=1))
    print("| model | PCK@0.2 | PCK@0.1 | jitter, px | person-frames/s |\n|---|---:|---:|---:|---:|")
    for name, r in rows.items():
        print(f"| {name} | {r['pck@0.2']:.3f} | {r['pck@0.1']:.3f} | {r['jitter_px']:.2f} | "
              f"{r.get('person_frames_per_s', float('nan')):,.0f} |")  # fmt: skip
    print(f"DKD / large speed: {ratio:.2f}x; {json.dumps(inits)}")
    return summary


if __name__ == "__main__":
    main()
