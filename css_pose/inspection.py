"""``css-pose inspect PATH [PATH ...]``: what css_pose finds in a video folder or a keypoints file,
and every problem, one line each, before a long job.

- A **folder** is indexed as ``data.root`` would be (:func:`css_pose.data.index.index_videos`,
  without writing its cache): videos, decodable frames, annotated videos and people, and each
  unusable video or annotation.
- A css_pose annotation **.npz** is checked as the loaders check it.
- **A folder and a keypoints file** together are also matched as ``data.root`` and
  ``data.labels`` would be (:mod:`css_pose.data.labels`): the labelled frames found in the
  videos, and each image that matches no frame.
- A COCO file with ``images`` and ``annotations`` but no ``categories`` is read as person boxes
  (``data.boxes``): images, boxes, track ids.
- Any other file is read as COCO or PoseTrack 2018 keypoints (:func:`css_pose.data.coco.read_coco`,
  every record checked): its skeleton layout, images (and how many are labelled), videos, people,
  tracks, labelled and visible joints, and each malformed record. A results file (a list, as
  ``css-pose predict`` writes) needs ``--layout``.

The exit status is 0 when everything found is usable, 1 when something is not (a problem line was
printed, or nothing usable was found), 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np

from css_pose.data.coco import CocoFormatError, read_coco, read_coco_boxes
from css_pose.layouts import LAYOUTS


def is_box_file(path: Path) -> bool:
    """A COCO file with images and annotations but no keypoint categories (``data.boxes``)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return (
        isinstance(data, dict)
        and isinstance(data.get("images"), list)
        and isinstance(data.get("annotations"), list)
        and "categories" not in data
    )


def inspect_boxes(path: Path) -> tuple[list[str], list[str]]:
    """(summary lines, problem lines) of a person-box file (``data.boxes``)."""
    images, boxes, problems = read_coco_boxes(path, skip_bad=True)
    tracks = {b.track_id for b in boxes if b.track_id is not None}
    lines = [
        f"{path}: person boxes",
        f"  images: {len(images)}; boxes: {len(boxes)} in {len({b.image_id for b in boxes})} "
        f"image(s)" + (f", {len(tracks)} track id(s)" if tracks else ""),
    ]
    if not boxes:
        problems.append(f"{path}: no usable person box")
    return lines, problems


def inspect_json(path: Path, layout: str | None) -> tuple[list[str], list[str]]:
    """(summary lines, problem lines) of a COCO / PoseTrack keypoints file, or a box file."""
    if is_box_file(path):
        return inspect_boxes(path)
    try:
        found = read_coco(path, layout=layout, skip_bad=True)
    except (CocoFormatError, KeyError) as e:
        return [], [str(e).strip("'\"")]
    people = found.people
    labelled = sum(int((p.visibility > 0).sum()) for p in people)
    visible = sum(int((p.visibility == 2).sum()) for p in people)
    joints = len(found.layout)
    kind = "keypoint results" if found.is_results else "keypoint annotations"
    lines = [f"{path}: {kind}, layout {found.layout.name} ({found.layout.title}, {joints} joints)"]
    if not found.is_results:
        images = found.images.values()
        unlabeled = sum(not im.labeled for im in images)
        videos = {im.video for im in images if im.video is not None}
        lines.append(
            f"  images: {len(found.images)}"
            + (f" ({unlabeled} marked is_labeled=false)" if unlabeled else "")
            + (f" in {len(videos)} video(s)" if videos else "")
        )
    frames = {p.image_id for p in people}
    tracks = {p.track_id for p in people if p.track_id is not None}
    lines.append(
        f"  people: {len(people)} in {len(frames)} image(s)"
        + (f", {len(tracks)} track id(s)" if tracks else "")
    )
    lines.append(
        f"  joints: {labelled} labelled of {len(people) * joints}"
        + ("" if found.is_results else f", {visible} visible")
    )
    if people:
        per_joint = np.mean([p.visibility > 0 for p in people], axis=0)
        never = [found.layout.joints[j] for j in np.flatnonzero(per_joint == 0)]
        if never:
            lines.append(f"  never labelled: {', '.join(never)}")
    problems = list(found.problems)
    if not people:
        problems.append(f"{path}: no usable person annotation")
    return lines, problems


def inspect_npz(path: Path) -> tuple[list[str], list[str]]:
    """(summary lines, problem lines) of a css_pose annotation .npz (docs/data_format.md)."""
    from css_pose.data.loading import AnnotationError, load_annotation

    try:
        ann = load_annotation(path)
    except AnnotationError as e:
        return [], [str(e)]
    people, frames, joints = ann.keypoints_2d.shape[:3]
    shown = int(ann.present.sum())
    lines = [
        f"{path}: css_pose annotation, layout h36m17 (Human3.6M-17, {joints} joints)",
        f"  frames: {frames}; people: {people} in {shown} person-frame(s)",
        f"  joints: {int(ann.visibility[ann.present].sum())} visible of {shown * joints}; "
        f"3D: {'yes' if ann.keypoints_3d is not None else 'no'}; "
        f"camera: {'yes' if ann.camera is not None else 'no'}",
    ]
    return lines, []


def inspect_folder(path: Path) -> tuple[list[str], list[str]]:
    """(summary lines, problem lines) of a folder of videos, indexed without writing a cache."""
    from css_pose.data.index import VideoIndexError, index_videos

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its problems are printed below, one line each
            index = index_videos(path, cache=False, workers=2)
    except VideoIndexError as e:
        return [], [str(e)]
    videos = index.videos
    labelled = [v for v in videos if v.labeled]
    frames = sum(v.num_frames for v in videos)
    lines = [
        f"{index.root}: {len(videos)} usable video(s), {frames} decodable frames",
        f"  annotated: {len(labelled)} video(s), {sum(v.num_persons for v in labelled)} "
        f"person track(s); unlabelled: {len(videos) - len(labelled)}",
    ]
    if videos:
        sizes = sorted({(v.width, v.height) for v in videos})
        shown = ", ".join(f"{w}x{h}" for w, h in sizes[:4]) + (" ..." if len(sizes) > 4 else "")
        rates = sorted({round(v.fps, 2) for v in videos})
        lines.append(f"  sizes: {shown}; frame rates: {', '.join(f'{r:g}' for r in rates[:4])}")
    problems = [f"{index.root / rel}: {why}" for rel, why in index.problems.items()]
    return lines, problems


def inspect_labels(folder: Path, labels: Path, boxes: bool) -> tuple[list[str], list[str]]:
    """(summary lines, problem lines) of ``data.root=folder data.labels=labels`` (or
    ``data.boxes=labels``): which images match a frame of a video (:mod:`css_pose.data.labels`),
    and each one that does not."""
    import tempfile

    from css_pose.data.index import VideoIndexError, index_videos
    from css_pose.data.labels import LabelMatchError, attach_boxes, attach_labels

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            index = index_videos(folder, cache=False, workers=2)
        with tempfile.TemporaryDirectory() as tmp:
            if boxes:
                entries, problems = attach_boxes(index, labels, skip_bad=True, directory=tmp)
                boxed = sum(v.annotation is not None for v in entries)
                return [
                    f"{labels} on {index.root}: person boxes for {boxed} video(s) (of "
                    f"{len(index)}); {len(problems)} record(s) left out"
                ], problems
            found = attach_labels(index, labels, skip_bad=True, directory=tmp)
    except (VideoIndexError, CocoFormatError, LabelMatchError) as e:
        return [], [str(e)]
    frames = sum(len(f) for f in found.frames.values())
    lines = [
        f"{labels} on {index.root}: {found.people} labelled people in {frames} frames of "
        f"{len(found.frames)} video(s) (of {len(index)}); {len(found.problems)} record(s) "
        "left out"
    ]
    return lines, found.problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="css-pose inspect",
        description="What css_pose finds in video folders and keypoint files, and every problem.",
    )
    parser.add_argument(
        "paths", nargs="+", type=Path, help="a folder of videos, a .json or an annotation .npz"
    )
    parser.add_argument(
        "--layout",
        choices=sorted(LAYOUTS),
        default=None,
        help="skeleton layout of a keypoint results file (annotation files name their joints)",
    )
    args = parser.parse_args(argv)
    unusable = False
    for path in args.paths:
        if path.is_dir():
            lines, problems = inspect_folder(path)
        elif path.suffix.lower() == ".npz" and path.is_file():
            lines, problems = inspect_npz(path)
        elif path.is_file():
            lines, problems = inspect_json(path, args.layout)
        else:
            lines, problems = [], [f"{path}: no such file or folder"]
        for line in lines:
            print(line)
        for line in problems:
            print(f"  problem: {line}")
        unusable |= bool(problems) or not lines
    folders = [p for p in args.paths if p.is_dir()]
    label_files = [p for p in args.paths if p.is_file() and p.suffix.lower() == ".json"]
    if len(folders) == 1:
        for labels in label_files:
            lines, problems = inspect_labels(folders[0], labels, is_box_file(labels))
            for line in lines:
                print(line)
            for line in problems:
                print(f"  problem: {line}")
            unusable |= bool(problems) or not lines
    print("unusable: see the problem lines" if unusable else "ok")
    return 1 if unusable else 0
