"""``css-pose export SRC OUT``: a labelled folder (e.g. the synthetic set) as users' data look.

Writes every video of ``SRC`` (indexed as ``data.root`` would be) as a folder of numbered PNG
frames, ``OUT/videos/<name>/000000.png`` ..., and the labels of a few of its frames as one COCO
keypoints annotation file, ``OUT/labels.json``: every ``label_every``-th frame of a
``label_fraction`` share of the annotated videos (drawn with ``seed``), converted by joint name to
``layout`` (COCO-17 by default; joints it lacks are not written). With ``boxes``, also
``OUT/boxes.json``: the person box of every frame of every video with its track id, as a detector
and tracker would give them (here the true boxes). No manifest is written, so the splits come
from the file names' hash, as for any folder of the user's.

It exists so that the raw-videos-plus-few-labels workflow (``docs/own_data.md``) can be tried,
and tested, end to end without a download.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from css_pose.artifacts.atomic import write_json
from css_pose.data.coco import CocoImage, CocoPerson, write_coco
from css_pose.data.index import index_videos
from css_pose.data.loading import load_annotation
from css_pose.data.video import open_video
from css_pose.layouts import LAYOUTS, convert


def export_coco(
    src: str | os.PathLike,
    out: str | os.PathLike,
    layout: str = "coco17",
    label_fraction: float = 1.0,
    label_every: int = 1,
    limit: int | None = None,
    seed: int = 0,
    boxes: bool = False,
) -> dict:
    """Export ``src`` to ``out`` (module docstring); returns counts: videos, frames, labelled
    images, people.

    Raises:
        ValueError: a bad argument, or ``out`` already holding exported videos.
    """
    if not 0 < label_fraction <= 1:
        raise ValueError(f"label_fraction={label_fraction} must be in (0, 1]")
    if label_every < 1:
        raise ValueError(f"label_every={label_every} must be >= 1")
    out = Path(out)
    if (out / "videos").exists() and any((out / "videos").iterdir()):
        raise ValueError(f"{out / 'videos'} is not empty; export into a new folder")
    videos = index_videos(src).videos[:limit]
    annotated = [v.rel_path for v in videos if v.labeled]
    rng = np.random.default_rng(seed)
    count = max(1, round(label_fraction * len(annotated))) if annotated else 0
    chosen = set(rng.choice(annotated, size=count, replace=False).tolist()) if count else set()
    images, people = [], []
    box_images, box_records = [], []
    frames_written = 0
    for entry in tqdm(videos, desc="export", unit="video", file=sys.stderr):
        name = Path(entry.rel_path).with_suffix("").name
        folder = out / "videos" / name
        if folder.exists():
            raise ValueError(f"two videos named {name!r} in {src}; export them separately")
        folder.mkdir(parents=True)
        with open_video(entry.path, "pyav", entry.num_frames) as reader:
            frames = reader.get_batch(range(entry.num_frames))
        for t, frame in enumerate(frames):
            cv2.imwrite(str(folder / f"{t:06d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        frames_written += len(frames)
        ann = load_annotation(entry.annotation, entry.num_frames) if entry.labeled else None
        if boxes and ann is not None:
            _add_boxes(ann, entry.num_frames, name, box_images, box_records)
        if entry.rel_path in chosen:
            _add_labels(ann, entry, name, layout, label_every, images, people)
    write_coco(out / "labels.json", layout, images, people)
    if boxes:
        write_json(out / "boxes.json", {"images": box_images, "annotations": box_records})
    return {
        "videos": len(videos),
        "frames": frames_written,
        "labelled_videos": len(chosen),
        "labelled_images": len(images),
        "people": len(people),
    }


def _add_boxes(ann, frames: int, name: str, images: list, records: list) -> None:
    """Append every frame of one exported video to ``images`` and its people's boxes (COCO
    detection records with their track ids) to ``records``."""
    for t in range(frames):
        images.append(
            {"id": len(images) + 1, "file_name": f"videos/{name}/{t:06d}.png", "frame_index": t}
        )
        for p in np.flatnonzero(ann.present[:, t]):
            x1, y1, x2, y2 = (round(float(v), 3) for v in ann.boxes[p, t])
            records.append(
                {"image_id": len(images), "category_id": 1, "score": 1.0,
                 "bbox": [x1, y1, round(x2 - x1, 3), round(y2 - y1, 3)],
                 "track_id": int(ann.track_ids[p])}
            )  # fmt: skip


def _add_labels(ann, entry, name: str, layout: str, every: int, images: list, people: list):
    """Append every ``every``-th frame of one labelled video to ``images`` and the people in it,
    keypoints converted to ``layout``, to ``people``."""
    for t in range(0, entry.num_frames, every):
        image_id = len(images) + 1
        path = f"videos/{name}/{t:06d}.png"
        images.append(CocoImage(image_id, path, entry.width, entry.height, frame_index=t))
        for p in range(ann.num_persons):
            if not ann.present[p, t]:
                continue
            kp, vis = convert(ann.keypoints_2d[p, t], ann.visibility[p, t], "h36m17", layout)
            labelled = vis > 0
            x1, y1, x2, y2 = ann.boxes[p, t]
            people.append(
                CocoPerson(
                    image_id,
                    np.where(labelled[:, None], kp, 0.0),
                    np.where(labelled, 2, 0),
                    box=np.array([x1, y1, x2 - x1, y2 - y1]),
                    track_id=int(ann.track_ids[p]),
                    id=len(people) + 1,
                )
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="css-pose export",
        description="Write a labelled folder of videos (e.g. the synthetic set) as frame folders "
        "and one COCO keypoints file with the labels of a few frames.",
    )
    parser.add_argument("src", type=Path, help="folder of videos with css_pose .npz annotations")
    parser.add_argument("out", type=Path, help="new output folder")
    parser.add_argument("--layout", choices=sorted(LAYOUTS), default="coco17")
    parser.add_argument("--label-fraction", type=float, default=1.0,
                        help="share of the annotated videos whose labels are written")  # fmt: skip
    parser.add_argument("--label-every", type=int, default=1,
                        help="label every k-th frame of those videos")  # fmt: skip
    parser.add_argument("--limit", type=int, default=None, help="export the first N videos")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--boxes", action="store_true",
                        help="also write boxes.json: every frame's person boxes")  # fmt: skip
    args = parser.parse_args(argv)
    counts = export_coco(
        args.src, args.out, args.layout, args.label_fraction, args.label_every, args.limit,
        args.seed, args.boxes,
    )  # fmt: skip
    print(
        f"[css_pose] exported {counts['videos']} videos ({counts['frames']} frames) to "
        f"{args.out / 'videos'}; labels of {counts['people']} people in "
        f"{counts['labelled_images']} frames of {counts['labelled_videos']} videos -> "
        f"{args.out / 'labels.json'}"
        + (f"; boxes of every frame -> {args.out / 'boxes.json'}" if args.boxes else "")
    )
    return 0
