"""A few labelled frames for a folder of raw videos: ``data.labels=FILE`` (COCO or PoseTrack JSON).

:func:`attach_labels` matches every labelled image of a COCO keypoints annotation file
(:mod:`css_pose.data.coco`) to a frame of a video indexed under ``data.root``, converts the
keypoints to css_pose's skeleton by joint name (:mod:`css_pose.layouts`; joints the file's layout
lacks are invisible), and writes one css_pose annotation npz per labelled video into the user
cache (never into the data root, which is only read). The datamodule then gives the pretraining
every video (unlabelled, whole frames) and the probes and heads the labelled frames, split by
video as the index splits them.

Matching an image to a frame (``file_name`` as written in the file, ``/`` or ``\\`` separators):

- **Video**: the image's folder names the video. ``clips/walk01/000012.jpg`` matches the video
  ``walk01.mp4`` or the frame folder ``walk01`` anywhere under the root; when several videos have
  that name, the one whose path relative to the root ends with the most of the image's folders
  wins (``clips/walk01`` beats ``other/walk01``), and a tie is a problem.
- **Frame**: the image record's ``frame_index`` (0-based) when present (css_pose writes it).
  Otherwise, in a frame folder, the position of the named file among its numbered images (the
  file must exist), and in a video file the number in the file name, 0-based (``000012.jpg`` is
  frame 12). A frame beyond the video's decodable frames is a problem.
- An image whose ``width`` / ``height`` differ from the video's frame size is a problem (labels
  made on resized frames would land in the wrong place).
- PoseTrack frames marked ``is_labeled: false`` are not labels and are left out.

People: with ``track_id`` on every person of a video, one track per id; otherwise person k of an
image is track k (fine for probes and heads, which use single frames). A person's box is the
file's ``bbox`` (x, y, w, h), else the extent of its labelled joints; a person with neither is
left out. A joint flagged 1 (labelled, hidden) or 2 (visible) counts as labelled.
"""

# Longer than 400 lines: matching labelled images to videos and writing their annotations is one workflow, and 28 lines are the module docstring that describes it.

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from css_pose.data.coco import (
    CocoFormatError,
    CocoImage,
    CocoKeypoints,
    read_coco,
    read_coco_boxes,
    read_json,
)
from css_pose.data.index import VideoEntry, VideoIndex, _unit_hash
from css_pose.data.synthetic.io import save_npz
from css_pose.data.video import frame_files
from css_pose.layouts import convert
from css_pose.skeleton import JOINT_NAMES, NUM_JOINTS

LABELS_FORMAT = 1


class LabelMatchError(ValueError):
    """Labels that do not fit the videos; the message names the file, the image and the fix."""


@dataclass
class VideoLabels:
    """What :func:`attach_labels` made of a labels file.

    ``entries`` are the index's videos (same order) with ``annotation`` set to the written npz
    for the labelled ones and None for the rest. ``frames`` maps a labelled video's ``rel_path``
    to its labelled frame indices (sorted). ``problems`` lists the images left out, one line each.
    """

    path: Path
    layout: str
    entries: list[VideoEntry]
    frames: dict[str, list[int]]
    people: int
    images: int
    problems: list[str] = field(default_factory=list)
    directory: Path | None = None

    def summary(self) -> str:
        videos = len(self.frames)
        frames = sum(len(f) for f in self.frames.values())
        text = (
            f"[css_pose] labels {self.path} ({self.layout}): {self.people} people in {frames} "
            f"frames of {videos} video(s), of {len(self.entries)} indexed"
        )
        if self.problems:
            text += f"; {len(self.problems)} image(s) left out (see the warning)"
        return text


def _parts(name: str) -> tuple[str, ...]:
    return PurePosixPath(name.replace("\\", "/")).parts


def _video_parts(entry: VideoEntry) -> tuple[str, ...]:
    """The video's path relative to the root without the file extension, as parts."""
    rel = PurePosixPath(entry.rel_path)
    return (rel.parent / rel.stem).parts if Path(entry.path).is_file() else rel.parts


def match_image(image: CocoImage, videos: dict[str, list[VideoEntry]]) -> tuple[VideoEntry, int]:
    """The video and 0-based frame index of ``image`` (module docstring); ``videos`` maps a
    video's name (last path part, no extension) to the videos of that name.

    Raises:
        LabelMatchError: no video, two equally good videos, no such frame, another frame size.
    """
    parts = _parts(image.file_name)
    folder = parts[:-1]
    what = f"image {image.id} ({image.file_name})"
    if not folder:
        raise LabelMatchError(
            f"{what}: the file name has no folder, so it names no video; write file names as "
            "VIDEO/FRAME.jpg, e.g. walk01/000012.jpg for frame 12 of walk01.mp4"
        )
    entry = _best_video(what, folder, videos)
    frame = _frame_of(what, image, entry, parts[-1])
    if frame >= entry.num_frames:
        raise LabelMatchError(
            f"{what}: frame {frame} is beyond {entry.rel_path}, which decodes "
            f"{entry.num_frames} frames"
        )
    for axis, mine, theirs in (
        ("width", image.width, entry.width),
        ("height", image.height, entry.height),
    ):
        if mine is not None and mine != theirs:
            raise LabelMatchError(
                f"{what}: {axis} {mine} px but {entry.rel_path} is {entry.width}x{entry.height}; "
                "label the video's own frames (or resize the keypoints)"
            )
    return entry, frame


def _best_video(what: str, folder: tuple, videos: dict[str, list[VideoEntry]]) -> VideoEntry:
    """The video named ``folder[-1]`` whose path shares the most trailing folders with
    ``folder``; LabelMatchError when there is none or two tie."""
    candidates = []
    for entry in videos.get(folder[-1], []):
        vparts = _video_parts(entry)
        common = 0
        while common < min(len(vparts), len(folder)) and (
            vparts[-1 - common] == folder[-1 - common]
        ):
            common += 1
        candidates.append((common, entry))
    if not candidates:
        raise LabelMatchError(
            f"{what}: no video named {folder[-1]!r} (a video file {folder[-1]}.mp4 or a frame "
            "folder) under the data root"
        )
    best = max(c for c, _ in candidates)
    winners = [e for c, e in candidates if c == best]
    if len(winners) > 1:
        raise LabelMatchError(
            f"{what}: matches {len(winners)} videos equally well ("
            + ", ".join(e.rel_path for e in winners[:3])
            + "); give the image's folders as in the data root"
        )
    return winners[0]


def _frame_of(what: str, image: CocoImage, entry: VideoEntry, file: str) -> int:
    """The 0-based frame index of ``image`` in ``entry``: its ``frame_index``, else the position
    of ``file`` in a frame folder, else the number ``file`` is named by."""
    if image.frame_index is not None:
        return image.frame_index
    if not Path(entry.path).is_file():
        names = [os.path.basename(f) for f in frame_files(entry.path)]
        if file not in names:
            raise LabelMatchError(f"{what}: the frame folder {entry.path} has no image {file}")
        return names.index(file)
    stem = PurePosixPath(file).stem
    if not stem.isdigit():
        raise LabelMatchError(
            f"{what}: {file!r} holds no frame number; name it by its 0-based frame "
            "index (000012.jpg) or give the image a 'frame_index'"
        )
    return int(stem)


def _labels_directory(path: Path, index: VideoIndex, kind: str = "labels") -> Path:
    """A cache folder per ``kind`` ("labels" or "boxes"), file version and index state."""
    st = path.stat()
    key = {
        "format": LABELS_FORMAT,
        "kind": kind,
        "labels": [str(path.resolve()), st.st_size, st.st_mtime_ns],
        "root": str(index.root),
        "videos": [[v.rel_path, v.size_bytes, v.mtime_ns, v.num_frames] for v in index.videos],
    }
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "css_pose"
    return cache / kind / f"{path.stem}-{digest}"


def _annotation_arrays(
    entry: VideoEntry, people: list[tuple[int, int | None, object]], layout: str
) -> dict[str, np.ndarray]:
    """(frame, track id or None, CocoPerson) of one video -> css_pose npz arrays."""
    tracked = all(t is not None for _, t, _ in people)
    if tracked:
        ids = sorted({int(t) for _, t, _ in people})
        slot = {k: ids.index(int(t)) for k, (_, t, _) in enumerate(people)}
    else:
        seen: dict[int, int] = {}
        slot = {}
        for k, (frame, _, _) in enumerate(people):
            slot[k] = seen.get(frame, 0)
            seen[frame] = slot[k] + 1
        ids = list(range(max(seen.values(), default=0)))
    count, frames = len(ids), entry.num_frames
    kp = np.full((count, frames, NUM_JOINTS, 2), np.nan, np.float32)
    vis = np.zeros((count, frames, NUM_JOINTS), np.float32)
    boxes = np.full((count, frames, 4), np.nan, np.float32)
    for k, (frame, _, person) in enumerate(people):
        p = slot[k]
        labelled = person.visibility > 0
        ours, ours_vis = convert(person.keypoints, labelled.astype(np.float32), layout, "h36m17")
        kp[p, frame], vis[p, frame] = ours, ours_vis
        if person.box is not None and person.box[2] > 0 and person.box[3] > 0:
            x, y, w, h = person.box
            boxes[p, frame] = (x, y, x + w, y + h)
        elif labelled.sum() >= 2:
            pts = person.keypoints[labelled]
            lo, hi = pts.min(0), pts.max(0)
            if (hi > lo).all():
                boxes[p, frame] = (*lo, *hi)
    return {
        "keypoints_2d": kp,
        "visibility": vis,
        "bboxes": boxes,
        "track_ids": np.asarray(ids, np.int64),
        "joint_names": np.array(JOINT_NAMES),  # the layout the keypoints were converted to
    }


def split_by_video(entries: list[VideoEntry], val_fraction: float) -> list[VideoEntry]:
    """``entries`` with every split fixed (``manifest_split``), so that val gets labels.

    A split named by ``manifest.json`` stays. The labelled videos are split among themselves:
    round(val_fraction x n) of them (at least one when there are two or more) go to val, those
    with the lowest hash of their path, the rest to train. An unlabelled video goes to val when
    its hash is below ``val_fraction``, as :meth:`VideoIndex.split` does. The hash keeps a video
    in its split whatever else is in the folder or the labels file.
    """
    labelled = sorted(
        (v for v in entries if v.manifest_split is None and v.labeled),
        key=lambda v: _unit_hash(v.rel_path),
    )
    count = round(val_fraction * len(labelled))
    if val_fraction > 0 and len(labelled) >= 2:
        count = max(1, count)
    val = {v.rel_path for v in labelled[:count]}
    out = []
    for v in entries:
        if v.manifest_split is None:
            hashed_val = not v.labeled and _unit_hash(v.rel_path) < val_fraction
            split = "val" if v.rel_path in val or hashed_val else "train"
            v = dataclasses.replace(v, manifest_split=split)
        out.append(v)
    return out


def _same_arrays(path: Path, arrays: dict[str, np.ndarray]) -> bool:
    try:
        with np.load(path, allow_pickle=False) as old:
            return set(old.files) == set(arrays) and all(
                np.array_equal(old[k], v, equal_nan=np.asarray(v).dtype.kind == "f")
                for k, v in arrays.items()
            )
    except (OSError, ValueError, EOFError):
        return False


def _locate(
    path: Path,
    images: dict[int, CocoImage],
    index: VideoIndex,
    skip_bad: bool,
    problems: list[str],
) -> dict[int, tuple[VideoEntry, int]]:
    """image id -> (video, frame) of every labelled image that matches a frame; the others
    raise LabelMatchError naming ``path``, or with ``skip_bad`` are appended to ``problems``."""
    by_name: dict[str, list[VideoEntry]] = {}
    for entry in index.videos:
        by_name.setdefault(_video_parts(entry)[-1], []).append(entry)
    located: dict[int, tuple[VideoEntry, int]] = {}
    for image in images.values():
        if not image.labeled:
            continue
        try:
            located[image.id] = match_image(image, by_name)
        except LabelMatchError as e:
            if not skip_bad:
                raise LabelMatchError(f"{path}: {e}") from None
            problems.append(f"{path}: {e}")
    return located


def _write_annotations(
    index: VideoIndex, arrays: dict[str, dict[str, np.ndarray]], out: Path
) -> list[VideoEntry]:
    """Write each video's arrays to ``out/<rel_path>.npz`` (unless the file already holds
    them); the index's entries with ``annotation`` pointing there, None for the others."""
    entries = []
    for entry in index.videos:
        mine = arrays.get(entry.rel_path)
        if mine is None:
            entries.append(dataclasses.replace(entry, annotation=None, num_persons=0))
            continue
        target = out / f"{entry.rel_path}.npz"
        if not _same_arrays(target, mine):  # unchanged files keep their mtime (crop stores)
            target.parent.mkdir(parents=True, exist_ok=True)
            save_npz(target, mine)
        entries.append(
            dataclasses.replace(entry, annotation=str(target), num_persons=len(mine["track_ids"]))
        )
    return entries


def attach_boxes(
    index: VideoIndex,
    boxes: str | os.PathLike,
    min_score: float = 0.3,
    skip_bad: bool = False,
    directory: str | os.PathLike | None = None,
) -> tuple[list[VideoEntry], list[str]]:
    """Person boxes for training on raw video (``data.boxes``): (the index's entries with an
    annotation of boxes and no keypoints for each video the file covers, problems).

    ``boxes`` is a COCO file with ``images`` and ``annotations`` holding ``bbox`` (x, y, w, h
    px) and optionally ``score`` and ``track_id`` (:func:`~css_pose.data.coco.read_coco_boxes`);
    images are matched to frames as labels are (module docstring). Boxes scoring below
    ``min_score`` are dropped. With ``track_id`` on every box of a video, one track per id;
    otherwise one track, the best-scoring box of each frame. Frames without a box take the
    nearest frame's box, and a track spans its first to its last box.

    Raises:
        CocoFormatError / LabelMatchError: as :func:`attach_labels`, naming the file.
    """
    path = Path(boxes)
    images, found, problems = read_coco_boxes(path, skip_bad=skip_bad)
    located = _locate(path, images, index, skip_bad, problems)
    per_video: dict[str, list] = {}
    for box in found:
        if box.image_id in located and box.score >= min_score and box.box[2:].min() > 0:
            entry, frame = located[box.image_id]
            per_video.setdefault(entry.rel_path, []).append((frame, box))
    if not per_video:
        raise LabelMatchError(
            f"{path}: no person box (score >= {min_score}) matches a frame of the {len(index)} "
            f"video(s) under {index.root}" + (f"; e.g. {problems[0]}" if problems else "")
        )
    arrays = {}
    for entry in index.videos:
        mine = per_video.get(entry.rel_path)
        if not mine:
            continue
        tracked = all(b.track_id is not None for _, b in mine)
        ids = sorted({int(b.track_id) for _, b in mine}) if tracked else [0]
        xyxy = np.full((len(ids), entry.num_frames, 4), np.nan, np.float32)
        best = np.full((len(ids), entry.num_frames), -np.inf)
        for frame, b in mine:
            p = ids.index(int(b.track_id)) if tracked else 0
            if b.score > best[p, frame]:
                best[p, frame] = b.score
                x, y, w, h = b.box
                xyxy[p, frame] = (x, y, x + w, y + h)
        arrays[entry.rel_path] = {
            "keypoints_2d": np.zeros((len(ids), entry.num_frames, NUM_JOINTS, 2), np.float32),
            "visibility": np.zeros((len(ids), entry.num_frames, NUM_JOINTS), np.float32),
            "bboxes": xyxy,
            "track_ids": np.asarray(ids, np.int64),
            "joint_names": np.array(JOINT_NAMES),
        }
    out = Path(directory) if directory is not None else _labels_directory(path, index, "boxes")
    return _write_annotations(index, arrays, out), problems


def attach_labels(
    index: VideoIndex,
    labels: str | os.PathLike,
    skip_bad: bool = False,
    directory: str | os.PathLike | None = None,
) -> VideoLabels:
    """Match the labels file to ``index``'s videos and write their annotations (module docstring).

    Args:
        index: the videos under ``data.root``.
        labels: a COCO / PoseTrack keypoints annotation file (not a results file: labels need
            joint names and image file names).
        skip_bad: leave malformed records and unmatched images out (listed in ``problems``)
            instead of raising.
        directory: where the npz files go (default: the user cache, one folder per labels file
            version and index state; reused while both are unchanged).

    Raises:
        CocoFormatError: a malformed file or record (names the file, the record and the field).
        LabelMatchError: an image that matches no frame (names the file and the image), or no
            labelled frame at all.
    """
    path = Path(labels)
    if isinstance(read_json(path, CocoFormatError), list):
        raise CocoFormatError(
            f"{path}: a keypoint results file (a list) has no image file names to match to "
            "videos; data.labels needs an annotation file with 'images', 'annotations' and "
            "'categories'"
        )
    coco: CocoKeypoints = read_coco(path, skip_bad=skip_bad)
    problems = list(coco.problems)
    located = _locate(path, coco.images, index, skip_bad, problems)
    per_video: dict[str, list] = {}
    frames: dict[str, set[int]] = {}
    for person in coco.people:
        if person.image_id not in located:
            continue
        entry, frame = located[person.image_id]
        per_video.setdefault(entry.rel_path, []).append((frame, person.track_id, person))
    for entry, frame in located.values():
        frames.setdefault(entry.rel_path, set()).add(frame)
    if not per_video:
        raise LabelMatchError(
            f"{path}: no labelled person matches a frame of the {len(index)} video(s) under "
            f"{index.root}" + (f"; e.g. {problems[0]}" if problems else "")
        )
    out = Path(directory) if directory is not None else _labels_directory(path, index)
    arrays = {
        entry.rel_path: _annotation_arrays(entry, per_video[entry.rel_path], coco.layout.name)
        for entry in index.videos
        if entry.rel_path in per_video
    }
    entries = _write_annotations(index, arrays, out)
    return VideoLabels(
        path=path,
        layout=coco.layout.name,
        entries=entries,
        frames={k: sorted(v) for k, v in frames.items() if k in per_video},
        people=sum(len(p) for p in per_video.values()),
        images=len(located),
        problems=problems,
        directory=out,
    )
