"""COCO keypoints JSON: read and write person annotations and keypoint results.

Two shapes of file are read:

- **annotations** (a dict): ``images`` (``id``, ``file_name``, optional ``width``, ``height`` and
  PoseTrack 2018's ``frame_id``, ``vid_id`` and ``is_labeled``), ``annotations`` (``image_id``, ``keypoints``
  [x1, y1, v1, ...] with v 0 not labelled, 1 labelled but hidden, 2 visible; optional ``bbox``
  [x, y, w, h], ``track_id``, ``id``) and ``categories`` whose person entry lists the joint
  names in ``keypoints``;
- **results** (a list): ``image_id``, ``keypoints`` [x1, y1, s1, ...] with a score per joint,
  ``score``, optional ``bbox``, as ``css-pose predict`` and COCO evaluation use.

The skeleton layout (:mod:`css_pose.layouts`) comes from the category's joint names, or from the
``layout`` argument for results files, which carry none. Coordinates are image px as in the file.

A malformed record (a missing key, a wrong keypoint count, a NaN or infinite coordinate, an
``image_id`` with no image) raises :class:`CocoFormatError` naming the file, the record and the
field. With ``skip_bad=True`` the record is left out instead, the rest keeps loading, and each
problem is one line of :attr:`CocoKeypoints.problems`.
"""

# Longer than 400 lines: the COCO reader and writer stay together, so one file shows the whole format.

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from css_pose.artifacts.atomic import write_json
from css_pose.layouts import LAYOUTS, Layout, get_layout

PERSON = 1
# COCO's file names of the joints, and ours (css_pose.layouts): "left_" -> "l_".
_ALIASES = {"left_": "l_", "right_": "r_"}


class CocoFormatError(ValueError):
    """A COCO file that cannot be read as keypoints; the message names the file, the record and
    the field."""


def _our_name(name: str) -> str:
    for theirs, ours in _ALIASES.items():
        if name.startswith(theirs):
            return ours + name[len(theirs) :]
    return name


def _their_name(name: str) -> str:
    for theirs, ours in _ALIASES.items():
        if name.startswith(ours):
            return theirs + name[len(ours) :]
    return name


def read_json(path: Path, error: type[ValueError]):
    """The parsed JSON of ``path``; ``error`` naming the file when it is missing or unreadable."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except (OSError, ValueError) as e:
        raise error(f"{path}: not readable as JSON ({e})") from None


def layout_from_names(names: Iterable[str]) -> Layout:
    """The layout whose joints are ``names`` in this order (COCO spelling "left_x" or ours
    "l_x"); CocoFormatError listing the known layouts when none is."""
    ours = tuple(_our_name(str(n)) for n in names)
    for layout in LAYOUTS.values():
        if layout.joints == ours:
            return layout
    raise CocoFormatError(
        f"no known skeleton layout has the joints {list(names)}; known: "
        + "; ".join(f"{k} {list(v.joints)}" for k, v in LAYOUTS.items())
    )


@dataclass
class CocoImage:
    """One image (a video frame): ``file_name`` as in the file; ``frame`` the PoseTrack
    ``frame_id`` or None; ``video`` the ``vid_id`` or None; ``labeled`` False for a PoseTrack
    frame with ``is_labeled`` false (in the video, not annotated: its absence of people means
    nothing); ``frame_index`` css_pose's 0-based index of the frame in its video
    (:mod:`css_pose.data.labels`), or None."""

    id: int
    file_name: str
    width: int | None = None
    height: int | None = None
    frame: int | None = None
    video: str | None = None
    labeled: bool = True
    frame_index: int | None = None


@dataclass
class CocoPerson:
    """One person in one image: keypoints (J, 2) image px; visibility (J,) 0 not labelled,
    1 hidden, 2 visible (for results: 2 where the score is > 0); scores (J,) (results) or None;
    box (4,) x, y, w, h px or None."""

    image_id: int
    keypoints: np.ndarray
    visibility: np.ndarray
    box: np.ndarray | None = None
    scores: np.ndarray | None = None
    score: float | None = None
    track_id: int | None = None
    id: int | None = None


@dataclass
class CocoKeypoints:
    """What :func:`read_coco` found: the layout, images by id, people, and the records skipped."""

    path: Path
    layout: Layout
    images: dict[int, CocoImage]
    people: list[CocoPerson]
    problems: list[str] = field(default_factory=list)
    is_results: bool = False

    def by_image(self) -> dict[int, list[CocoPerson]]:
        """image id -> its people, in file order."""
        out: dict[int, list[CocoPerson]] = {}
        for p in self.people:
            out.setdefault(p.image_id, []).append(p)
        return out


class _Reader:
    def __init__(self, path: Path, skip_bad: bool):
        self.path, self.skip_bad, self.problems = path, skip_bad, []

    def fail(self, record: str, what: str) -> None:
        message = f"{self.path}: {record}: {what}"
        if not self.skip_bad:
            raise CocoFormatError(message)
        self.problems.append(message)

    def number_list(self, rec: dict, key: str, record: str, length: int | None) -> list | None:
        value = rec.get(key)
        if not isinstance(value, list):
            self.fail(record, f"field '{key}' is missing or not a list")
            return None
        if length is not None and len(value) != length:
            self.fail(record, f"field '{key}' has {len(value)} numbers, expected {length}")
            return None
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            self.fail(record, f"field '{key}' holds something other than numbers")
            return None
        if not all(math.isfinite(v) for v in value):
            self.fail(record, f"field '{key}' holds NaN or infinite values")
            return None
        return value


def read_coco(
    path: str | os.PathLike, layout: str | Layout | None = None, skip_bad: bool = False
) -> CocoKeypoints:
    """Read a COCO keypoints annotations or results file (module docstring).

    Args:
        path: the JSON file.
        layout: the skeleton layout; needed for results files (they carry no joint names);
            for annotation files it must agree with the category's joint names.
        skip_bad: leave malformed records out (listed in ``problems``) instead of raising.

    Raises:
        CocoFormatError: unreadable JSON, a missing or inconsistent top-level field, a malformed
            record (without ``skip_bad``); the message names the file, the record and the field.
    """
    path = Path(path)
    data = read_json(path, CocoFormatError)
    reader = _Reader(path, skip_bad)
    if isinstance(data, list):
        if layout is None:
            raise CocoFormatError(
                f"{path}: a keypoint results file names no joints; pass its layout "
                f"(one of {', '.join(LAYOUTS)})"
            )
        found = get_layout(layout)
        people = _read_people(reader, data, found, None, results=True)
        return CocoKeypoints(path, found, {}, people, reader.problems, is_results=True)
    if not isinstance(data, dict):
        raise CocoFormatError(f"{path}: top level is {type(data).__name__}, not a dict or list")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise CocoFormatError(f"{path}: top-level field '{key}' is missing or not a list")
    person = [c for c in data["categories"] if isinstance(c, dict) and c.get("id") == PERSON]
    if not person or not isinstance(person[0].get("keypoints"), list):
        raise CocoFormatError(
            f"{path}: categories: no person category (id {PERSON}) with a 'keypoints' list of "
            "joint names"
        )
    found = layout_from_names(person[0]["keypoints"])
    if layout is not None and get_layout(layout).name != found.name:
        want = get_layout(layout)
        raise CocoFormatError(
            f"{path}: its joints are {found.title} ({found.name}), not {want.title} "
            f"({want.name}); read it as {found.name} and convert with css_pose.layouts.convert"
        )
    images = _read_images(reader, data["images"])
    people = _read_people(reader, data["annotations"], found, images, results=False)
    return CocoKeypoints(path, found, images, people, reader.problems)


@dataclass
class CocoBox:
    """One person box: ``box`` (4,) x, y, w, h px; ``score`` (1.0 when the file has none)."""

    image_id: int
    box: np.ndarray
    score: float = 1.0
    track_id: int | None = None


def read_coco_boxes(
    path: str | os.PathLike, skip_bad: bool = False
) -> tuple[dict[int, CocoImage], list[CocoBox], list[str]]:
    """Person boxes of a COCO file with ``images`` and ``annotations`` (``image_id``, ``bbox``,
    optional ``score``, ``track_id`` and ``category_id``; keypoints and categories are not
    needed): (images by id, boxes of category 1 or without a category, problems). Malformed
    records raise :class:`CocoFormatError` naming the file, the record and the field, or with
    ``skip_bad`` are left out and listed."""
    path = Path(path)
    data = read_json(path, CocoFormatError)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise CocoFormatError(
            f"{path}: a box file needs 'images' (id, file_name) and 'annotations' (image_id, "
            "bbox [x, y, w, h]); detection results without 'images' name no video frames"
        )
    if not isinstance(data.get("annotations"), list):
        raise CocoFormatError(f"{path}: top-level field 'annotations' is missing or not a list")
    reader = _Reader(path, skip_bad)
    images = _read_images(reader, data["images"])
    boxes = []
    for i, rec in enumerate(data["annotations"]):
        record = f"annotations[{i}]"
        if not isinstance(rec, dict):
            reader.fail(record, "not an object")
            continue
        if rec.get("image_id") not in images:
            reader.fail(record, f"image_id {rec.get('image_id')!r} has no entry in 'images'")
            continue
        if rec.get("category_id", PERSON) != PERSON:
            continue
        box = reader.number_list(rec, "bbox", record, 4)
        if box is None:
            continue
        score = rec.get("score", 1.0)
        if not isinstance(score, (int, float)) or not math.isfinite(score):
            reader.fail(record, "field 'score' is not a number")
            continue
        boxes.append(CocoBox(rec["image_id"], np.asarray(box, np.float64), float(score),
                             rec.get("track_id")))  # fmt: skip
    return images, boxes, reader.problems


def _read_images(reader: _Reader, records: list) -> dict[int, CocoImage]:
    images: dict[int, CocoImage] = {}
    for i, rec in enumerate(records):
        record = f"images[{i}]"
        if not isinstance(rec, dict):
            reader.fail(record, "not an object")
            continue
        if not isinstance(rec.get("id"), int):
            reader.fail(record, "field 'id' is missing or not an integer")
            continue
        if not isinstance(rec.get("file_name"), str):
            reader.fail(f"{record} (id {rec['id']})", "field 'file_name' is missing")
            continue
        if rec["id"] in images:
            reader.fail(f"{record} (id {rec['id']})", "repeats an earlier image id")
            continue
        frame = rec.get("frame_id", rec.get("frame"))
        video = rec.get("vid_id", rec.get("video"))
        index = rec.get("frame_index")
        if index is not None and (not isinstance(index, int) or index < 0):
            reader.fail(f"{record} (id {rec['id']})", "field 'frame_index' is not an integer >= 0")
            continue
        images[rec["id"]] = CocoImage(
            rec["id"],
            rec["file_name"],
            rec.get("width"),
            rec.get("height"),
            int(frame) if isinstance(frame, (int, float)) else None,
            None if video is None else str(video),
            bool(rec.get("is_labeled", True)),
            index,
        )
    return images


def _read_people(
    reader: _Reader,
    records: list,
    layout: Layout,
    images: dict[int, CocoImage] | None,
    results: bool,
) -> list[CocoPerson]:
    people = []
    kind = "results" if results else "annotations"
    for i, rec in enumerate(records):
        record = f"{kind}[{i}]"
        if not isinstance(rec, dict):
            reader.fail(record, "not an object")
            continue
        if "id" in rec:
            record += f" (id {rec['id']})"
        image_id = rec.get("image_id")
        if not isinstance(image_id, int):
            reader.fail(record, "field 'image_id' is missing or not an integer")
            continue
        if images is not None and image_id not in images:
            reader.fail(record, f"image_id {image_id} has no entry in 'images'")
            continue
        if rec.get("category_id", PERSON) != PERSON:
            continue  # not a person
        values = reader.number_list(rec, "keypoints", record, 3 * len(layout))
        if values is None:
            continue
        triples = np.asarray(values, np.float64).reshape(len(layout), 3)
        box = None
        if rec.get("bbox") is not None:
            b = reader.number_list(rec, "bbox", record, 4)
            if b is None:
                continue
            box = np.asarray(b, np.float64)
        if results:
            scores = triples[:, 2].astype(np.float32)
            visibility = np.where(scores > 0, 2, 0).astype(np.int64)
        else:
            scores = None
            flags = triples[:, 2]
            if not np.isin(flags, (0, 1, 2)).all():
                reader.fail(record, "field 'keypoints' has visibility flags other than 0, 1, 2")
                continue
            visibility = flags.astype(np.int64)
        score = rec.get("score")
        people.append(
            CocoPerson(
                image_id,
                triples[:, :2].copy(),
                visibility,
                box,
                scores,
                float(score) if isinstance(score, (int, float)) else None,
                rec.get("track_id"),
                rec.get("id"),
            )
        )
    return people


def write_coco(
    path: str | os.PathLike,
    layout: str | Layout,
    images: Iterable[CocoImage],
    people: Iterable[CocoPerson],
) -> None:
    """Write a COCO keypoints annotations file (module docstring): the person category with
    ``layout``'s joint names in COCO spelling and its limbs as ``skeleton`` (1-based), every
    image, every person (keypoints as [x, y, v] with v 0/1/2; a joint with v 0 is written as
    0, 0, 0). Written to a temporary file and renamed, so a reader never sees half a file."""
    layout = get_layout(layout)
    path = Path(path)
    records = []
    for n, p in enumerate(people):
        kp, vis = np.asarray(p.keypoints, np.float64), np.asarray(p.visibility).astype(int)
        if kp.shape != (len(layout), 2) or vis.shape != (len(layout),):
            raise ValueError(
                f"person {n}: keypoints {kp.shape} / visibility {vis.shape} are not "
                f"{layout.title} ({len(layout)} joints)"
            )
        triples = np.concatenate([np.where(vis[:, None] > 0, kp, 0.0), vis[:, None]], axis=1)
        rec = {
            "id": p.id if p.id is not None else n + 1,
            "image_id": int(p.image_id),
            "category_id": PERSON,
            "keypoints": [round(float(v), 3) for v in triples.reshape(-1)],
            "num_keypoints": int((vis > 0).sum()),
        }
        if p.box is not None:
            rec["bbox"] = [round(float(v), 3) for v in p.box]
        if p.track_id is not None:
            rec["track_id"] = int(p.track_id)
        records.append(rec)
    image_records = []
    for im in images:
        rec = {"id": int(im.id), "file_name": im.file_name}
        for key, value in (("width", im.width), ("height", im.height)):
            if value is not None:
                rec[key] = int(value)
        if im.frame is not None:
            rec["frame_id"] = int(im.frame)
        if im.video is not None:
            rec["vid_id"] = im.video
        if not im.labeled:
            rec["is_labeled"] = False
        if im.frame_index is not None:
            rec["frame_index"] = int(im.frame_index)
        image_records.append(rec)
    data = {
        "images": image_records,
        "annotations": records,
        "categories": [
            {
                "id": PERSON,
                "name": "person",
                "supercategory": "person",
                "keypoints": [_their_name(j) for j in layout.joints],
                "skeleton": [[a + 1, b + 1] for a, b in layout.limbs],
            }
        ],
    }
    write_json(path, data)
