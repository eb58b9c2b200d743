"""``css-pose predict``: run a trained 2D pose model (and optionally a lifter) over a video.

    css-pose predict --model runs/head-X/head.pt --video clip.mp4 --out predictions/
    css-pose predict --model head.pt --video clip.mp4 --boxes detections.json --out predictions/
    css-pose predict --model head.pt --video clip.mp4 --lifter lifter.pt --out predictions/

The video is decoded once, front to back, in chunks of ``--chunk`` frames (PyAV), so memory stays
bounded whatever its length and resolution. Person boxes come from a COCO-format detection file
(``image_id`` = 0-based frame index, ``bbox`` = [x, y, w, h] px, optional ``score`` and
``category_id``; people are category 1), from a css_pose annotation ``.npz`` (its ``bboxes``),
or are the whole frame when no file is given. Each box is
cropped as in training (square, ``box_pad`` x its longer side) and the keypoints are mapped back to
frame pixels.

A temporal (clip) model, trained with ``train_head.py temporal.frames=n`` (css_pose.temporal2d),
runs on the same single pass: a ring buffer (:class:`ClipStream`) keeps the last 2 n step + 1
decoded frames and their person crops, and frame t is predicted once frame t + n step has been
decoded, from the crops of frames t - n step .. t + n step and the DIS flows between them. Each
crop is cut with its own frame's box of the same person, as in training: with one box per frame
(or the whole frame) that box; with several, the one with the largest IoU with frame t's box (no
overlapping box: the person is taken as absent there). A neighbour past either end of the video
repeats the edge frame; one that did not decode, or without the person, repeats the nearest frame
towards t that has them. Memory stays bounded by 2 n step + 1 + ``--chunk`` frames whatever the
video's length; the outputs are the same as a single-frame model's, and ``meta.json`` gains
``temporal`` (the model's temporal settings, ``clip_frames``, ``buffer_frames`` and
``flow_seconds``, the time spent computing flow).

Frame indices come from the frames' timestamps (frame ``i`` is shown at ``start + i / fps``, as in
css_pose.data.backends), not from counting decoded frames: a frame that does not decode (a damaged
packet) keeps its index, so later frames and their ``--boxes`` stay aligned. Such frames are listed
in a warning and in ``meta.json``. ``--video`` may also be a folder of numbered frames
(:mod:`css_pose.data.backends`): frame ``i`` is its i-th image, at 30 frames/s.

Writes into ``--out``:

- ``keypoints.json``: COCO keypoint results, one entry per person per frame: ``image_id`` (frame
  index), ``category_id`` 1, ``keypoints`` [x1, y1, s1, ..., x17, y17, s17] (frame px and the
  per-joint score), ``score`` (mean score of the joints the model was trained on), ``bbox``
  [x, y, w, h]. Joints are ``meta.json``'s ``joints``: the model's 17 Human3.6M joints, or with
  ``--layout`` another layout's, converted by joint name (a joint the model lacks, such as COCO's
  eyes, is 0, 0 with score 0). A joint without a single visible label in the model's training
  (``meta.json``'s ``untrained_joints``, e.g. the pelvis of a model trained on COCO-17 labels)
  is 0, 0 with score 0 and is not drawn. Frames that did not decode have no entry.
  ``--show N`` prints the first N entries as tables (joint, x, y, score).
- ``overlay.mp4``: the input with the skeleton drawn on each frame (same frame count, size, rate);
  a frame that did not decode is black.
- ``meta.json``: the video, model, joint names, frame count (``frames``: the last frame index + 1),
  ``decoded_frames``, ``missing_frames`` (indices that did not decode), ``warnings``, the
  model's measured test error and, for a clip model, ``temporal`` (above).
- with ``--lifter``: ``pose3d.json`` (per frame, root-relative 3D of the best-scoring person, mm,
  camera axes x right, y down, z forward; ``keypoints_3d`` null and ``missing`` true for a frame
  that did not decode) and ``pose3d.mp4``, an animated 3D plot.
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import sys
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
from einops import rearrange
from tqdm import tqdm

from css_pose.artifacts.atomic import write_json
from css_pose.codecs.heatmap import HeatmapCodec
from css_pose.config import configure_threads
from css_pose.crowd import box_iou
from css_pose.data.backends import (
    FRAME_FOLDER_FPS,
    FrameFolderReader,
    VideoReadError,
    VideoWriter,
    _decode,
    _open_container,
    _PtsToIndex,
    _read_image,
    frame_files,
)
from css_pose.data.transforms import crop_matrix, transform_points, warp_crop, whole_frame_box
from css_pose.layouts import CANONICAL, LAYOUTS, convert, get_layout
from css_pose.models.pose_model import load_pose_model, predict
from css_pose.models.temporal_pose import clip_frame_indices, crop_clip_flows, predict_clip
from css_pose.skeleton import JOINT_NAMES, NUM_JOINTS
from css_pose.viz import draw_skeleton

PERSON = 1
# Frames held back to sort timestamps that a container gives in decode order (AVI with B-frames);
# H.264 and HEVC reorder at most 16 frames.
REORDER = 16


# --- inputs ---------------------------------------------------------------------------------------
def load_detections(path: str | Path, min_score: float = 0.0) -> dict[int, np.ndarray]:
    """COCO detection results -> {frame index: (P, 5) xyxy px + score}, best score first.

    The file is a JSON list of ``{"image_id": frame, "bbox": [x, y, w, h], "score": s,
    "category_id": 1}`` (a dict with an ``annotations`` list is accepted too); entries of another
    category or below ``min_score`` are dropped. Raises ValueError naming the file and the fix.
    """
    path = Path(path)
    if path.suffix == ".npz":
        return _annotation_boxes(path)
    hint = (
        'expected a JSON list of {"image_id": <0-based frame index>, "bbox": [x, y, w, h], '
        '"score": <0..1>, "category_id": 1} (COCO detection results)'
    )
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as err:
        raise ValueError(f"{path}: no such detection file; {hint}") from err
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not readable JSON ({err}); {hint}") from err
    if isinstance(data, dict):
        data = data.get("annotations")
    if not isinstance(data, list):
        raise ValueError(f"{path}: {hint}")
    boxes: dict[int, list[list[float]]] = {}
    for i, det in enumerate(data):
        try:
            frame = int(det["image_id"])
            x, y, w, h = (float(v) for v in det["bbox"])
            score = float(det.get("score", 1.0))
            category = int(det.get("category_id", PERSON))
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{path}: entry {i} is malformed ({err!r}); {hint}") from err
        if frame < 0 or w <= 0 or h <= 0 or not all(map(math.isfinite, (x, y, w, h))):
            raise ValueError(f"{path}: entry {i} has a bad frame index or box {det['bbox']}")
        if category == PERSON and score >= min_score:
            boxes.setdefault(frame, []).append([x, y, x + w, y + h, score])
    return {
        f: np.array(sorted(b, key=lambda r: -r[4]), np.float32).reshape(-1, 5)
        for f, b in boxes.items()
    }


def _annotation_boxes(path: Path) -> dict[int, np.ndarray]:
    """Person boxes of a css_pose annotation (``bboxes`` (T, 4) or (P, T, 4) xyxy px, see
    docs/data_format.md), e.g. the ground-truth boxes of a synthetic video, score 1."""
    try:
        with np.load(path, allow_pickle=False) as data:
            boxes = np.asarray(data["bboxes"], np.float32)
    except (OSError, KeyError, ValueError) as err:
        raise ValueError(
            f"{path}: not a css_pose annotation with 'bboxes' ({err}); pass COCO detections "
            "as JSON instead"
        ) from err
    if boxes.ndim == 2:
        boxes = boxes[None]
    if boxes.ndim != 3 or boxes.shape[-1] != 4:
        raise ValueError(f"{path}: 'bboxes' has shape {boxes.shape}; expected (T, 4) or (P, T, 4)")
    out = {}
    for t in range(boxes.shape[1]):
        rows = [
            [*b, 1.0] for b in boxes[:, t] if np.isfinite(b).all() and b[2] > b[0] and b[3] > b[1]
        ]
        if rows:
            out[t] = np.array(rows, np.float32)
    return out


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
        """The stream of a video file, or of a frame folder (:mod:`css_pose.data.backends`)."""
        if Path(path).is_dir():
            return FrameFolderStream.open(path)
        container, stream = _open_container(str(path))
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
        mapping: _PtsToIndex | None = None

        def release() -> tuple[int, np.ndarray]:
            nonlocal mapping, last
            pts = heapq.heappop(stamps)
            mapping = mapping or _PtsToIndex(self._stream, self.fps, pts)
            last = max(mapping.index(pts), last + 1)
            return last, held.popleft().to_ndarray(format="rgb24")

        try:
            for frame in _decode(self._container, self._stream):
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
            image = _read_image(file)
            if image is not None and image.shape[:2] == (self.height, self.width):
                yield index, image

    def close(self) -> None:
        pass


# --- the pass over the video ----------------------------------------------------------------------
@dataclass
class Person:
    frame: int
    box: np.ndarray  # (4,) xyxy px
    box_score: float
    keypoints: np.ndarray  # (J, 2) frame px
    scores: np.ndarray  # (J,)
    heatmaps: np.ndarray | None = None  # (J, h, w) float32, only with keep_heatmaps
    heatmap_to_frame: np.ndarray | None = None  # (2, 3) heatmap cell (x, y) -> frame px


def frame_boxes(boxes, index: int, width: int, height: int, box_pad: float):
    """(P, 5) xyxy px + score person boxes of frame ``index`` and their crop pad: the detections
    (``box_pad``), or the whole frame (pad 1) when ``boxes`` is None."""
    if boxes is None:
        return np.array([[*whole_frame_box(width, height), 1.0]], np.float32), 1.0
    return boxes.get(index, np.zeros((0, 5), np.float32)), box_pad


def _to_frame(index: int, row: np.ndarray, matrix: np.ndarray, kp, scores) -> Person:
    """A person from crop px keypoints (J, 2) of the crop ``matrix`` (2, 3) cut around ``row``."""
    inverse = np.linalg.inv(np.vstack([matrix, [0, 0, 1]]))[:2]
    return Person(index, row[:4], float(row[4]), transform_points(kp, inverse), scores)


def predict_chunk(
    model, codec, frames: list[np.ndarray], indices: list[int], boxes, box_pad: float, size: int,
    device: torch.device, flip_test: bool, keep_heatmaps: bool = False,
) -> list[Person]:  # fmt: skip
    """Crop every person of ``frames`` (whose frame indices are ``indices``), run the model, and
    map the keypoints back to frame pixels. ``keep_heatmaps`` (a heatmap head only) also keeps
    each person's heatmaps and their cell -> frame px affine, for heatmap fusion
    (:func:`css_pose.crowd.fuse_heatmaps`)."""
    if keep_heatmaps and not isinstance(codec, HeatmapCodec):
        raise ValueError(
            f"heatmap fusion needs a heatmap head, this one decodes with {type(codec).__name__}; "
            "fuse with 'mean' or 'median' instead"
        )
    crops, metas = [], []
    for image, index in zip(frames, indices):
        found, pad = frame_boxes(boxes, index, image.shape[1], image.shape[0], box_pad)
        for row in found:
            matrix = crop_matrix(row[:4], size, pad)
            crops.append(warp_crop(image, matrix, size))
            metas.append((index, row, matrix))
    if not crops:
        return []
    batch = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float().div_(255.0)
    with torch.no_grad():
        kp, scores, outputs = predict(model, codec, batch.to(device), flip_test, outputs=True)
    people = [
        _to_frame(index, row, matrix, k, s)
        for (index, row, matrix), k, s in zip(metas, kp.cpu().numpy(), scores.cpu().numpy())
    ]
    if keep_heatmaps:
        s = codec.stride  # cell c covers crop px c * s .. c * s + s - 1, centre c * s + (s - 1) / 2
        cell_to_crop = np.array([[s, 0.0, (s - 1) / 2], [0.0, s, (s - 1) / 2], [0.0, 0.0, 1.0]])
        maps = outputs["heatmaps"].float().cpu().numpy()
        for person, (_, _, matrix), m in zip(people, metas, maps, strict=True):
            person.heatmaps = m
            person.heatmap_to_frame = (
                np.linalg.inv(np.vstack([matrix, [0, 0, 1]])) @ cell_to_crop
            )[:2]
    return people


@dataclass
class Ready:
    """A decoded frame whose people can be predicted now: its index, its (H, W, 3) uint8 RGB image
    and, for a clip model, one :class:`ClipJob` per person (None for a single-frame model)."""

    index: int
    image: np.ndarray
    jobs: list[ClipJob] | None = None


@dataclass
class SingleFrames:
    """A single-frame model: every decoded frame is ready at once."""

    model: torch.nn.Module
    codec: object
    boxes: dict | None
    box_pad: float
    size: int
    device: torch.device
    flip_test: bool

    def push(self, index: int, image: np.ndarray) -> list[Ready]:
        return [Ready(index, image)]

    def finish(self) -> list[Ready]:
        return []

    def predict(self, ready: list[Ready]) -> list[Person]:
        return predict_chunk(
            self.model, self.codec, [r.image for r in ready], [r.index for r in ready],
            self.boxes, self.box_pad, self.size, self.device, self.flip_test,
        )  # fmt: skip


# --- clip models: a ring buffer of decoded frames -------------------------------------------------
@dataclass
class ClipJob:
    """One person's clip around a centre frame: the model's input and the way back to frame px."""

    row: np.ndarray  # (5,) the centre frame's box, xyxy px + score
    matrix: np.ndarray  # (2, 3) frame px -> centre crop px
    crops: np.ndarray  # (T, S, S, 3) uint8 RGB, the centre at index n
    flows: np.ndarray  # (T, S, S, 2) float32 px; flows[k] warps crop k onto the centre crop
    frame_idx: np.ndarray  # (T,) int64 the video frame of each crop


@dataclass
class _Buffered:
    """A decoded frame in the ring buffer with its people's crops, cut once when it arrives."""

    index: int
    image: np.ndarray  # (H, W, 3) uint8 RGB, kept for the overlay
    rows: np.ndarray  # (P, 5) xyxy px + score
    matrices: list[np.ndarray]  # P x (2, 3) frame px -> crop px
    crops: np.ndarray  # (P, S, S, 3) uint8 RGB


def match_person(rows: np.ndarray, box: np.ndarray) -> int | None:
    """The row of ``rows`` (P, 5) that is the person of ``box`` (4,) xyxy px in another frame: the
    only box when there is one, else the largest IoU (ties: the first, best-scoring); None when
    the frame has no box, or several and none overlaps (the person is absent there)."""
    if len(rows) <= 1:
        return 0 if len(rows) else None
    iou = box_iou(rows[:, :4], box)[:, 0]
    return int(iou.argmax()) if iou.max() > 0 else None


class ClipStream:
    """Clips for a :class:`~css_pose.models.temporal_pose.TemporalPoseModel` from frames decoded once, front
    to back, holding only a ring buffer of the last 2 n step + 1 decoded frames (and their crops).

    Frame t is ready once frame t + n step has been decoded (or passed: a gap), or at the end.
    Its clip, per person box of frame t, is the crops of frames t - n step .. t + n step, each cut
    with that frame's own box of the same person (:func:`match_person` against frame t's box), as
    in training. A neighbour past either end of the video is clamped to it
    (:func:`~css_pose.models.temporal_pose.clip_frame_indices`: the edge frame repeats); one that did not
    decode, or where the person is absent, is replaced by the nearest frame towards t that has
    them. The DIS flows from the centre crop to each neighbour's are computed per clip (a repeated
    frame once, the centre's a zero field): a pair (centre, neighbour) of crops never recurs in
    another clip (there the centre differs), so there is nothing to reuse across clips.
    """

    def __init__(self, model, codec, boxes, box_pad: float, size: int, device, flip_test: bool,
                 step: int, preset: str):  # fmt: skip
        self.model, self.codec, self.boxes, self.box_pad = model, codec, boxes, box_pad
        self.size, self.device, self.flip_test = size, device, flip_test
        self.frames, self.step, self.preset = model.centre, step, preset
        self.span = model.centre * step  # frames each side of the centre
        self.ring: deque[_Buffered] = deque(maxlen=2 * self.span + 1)
        self.next = 0  # the first frame index not yet handed out
        self.flow_seconds = 0.0  # time in DIS

    def push(self, index: int, image: np.ndarray) -> list[Ready]:
        """Buffer decoded frame ``index`` (H, W, 3) uint8 RGB; the frames now ready, in order."""
        rows, pad = frame_boxes(self.boxes, index, image.shape[1], image.shape[0], self.box_pad)
        matrices = [crop_matrix(row[:4], self.size, pad) for row in rows]
        crops = np.stack([warp_crop(image, m, self.size) for m in matrices]) if len(rows) else None
        self.ring.append(_Buffered(index, image, rows, matrices, crops))
        # Every frame still waiting is within span of the newest, so its neighbours are buffered.
        return self._release(index - self.span, stop=index + self.span + 1)

    def finish(self) -> list[Ready]:
        """The frames still waiting, their clips clamped at the last decoded frame."""
        last = self.ring[-1].index if self.ring else -1
        return self._release(last, stop=last + 1)

    def _release(self, upto: int, stop: int) -> list[Ready]:
        """Frames ``self.next`` .. ``upto`` of the ring as Ready, the video ending before ``stop``."""
        by_index = {b.index: b for b in self.ring}
        ready = []
        for index in sorted(i for i in by_index if self.next <= i <= upto):
            centre = by_index[index]
            jobs = [self._clip(by_index, centre, p, stop) for p in range(len(centre.rows))]
            ready.append(Ready(index, centre.image, jobs))
            self.next = index + 1
        return ready

    def _clip(self, by_index: dict, centre: _Buffered, person: int, stop: int) -> ClipJob:
        """Person ``person`` of frame ``centre``: its crops and flows (see the class docstring)."""
        wanted = clip_frame_indices(centre.index, 0, stop, self.frames, self.step)
        found = [self._neighbour(by_index, centre, person, int(j)) for j in wanted]
        crops, idx = np.stack([c for c, _ in found]), np.array([j for _, j in found], np.int64)
        start = time.perf_counter()
        flows = crop_clip_flows(crops, idx, self.frames, self.preset)
        self.flow_seconds += time.perf_counter() - start
        return ClipJob(centre.rows[person], centre.matrices[person], crops, flows, idx)

    @staticmethod
    def _neighbour(by_index: dict, centre: _Buffered, person: int, j: int):
        """(S, S, 3) uint8 crop of the person in frame ``j``, or in the nearest frame towards the
        centre that was decoded and has them, and that frame's index."""
        box = centre.rows[person, :4]
        while j != centre.index:
            frame = by_index.get(j)
            q = None if frame is None else match_person(frame.rows, box)
            if q is not None:
                return frame.crops[q], j
            j += 1 if j < centre.index else -1
        return centre.crops[person], j

    def predict(self, ready: list[Ready]) -> list[Person]:
        """Run the clip model on every person of ``ready`` (one batch); keypoints in frame px."""
        jobs = [(r.index, job) for r in ready for job in r.jobs]
        if not jobs:
            return []
        clip = torch.from_numpy(np.stack([j.crops for _, j in jobs]))
        clip = rearrange(clip, "b t h w c -> b t c h w").float().div_(255.0)
        flows = rearrange(torch.from_numpy(np.stack([j.flows for _, j in jobs])),
                          "b t h w d -> b t d h w")  # fmt: skip
        kp, scores = predict_clip(
            self.model, self.codec, clip.to(self.device), flows.to(self.device), self.flip_test
        )
        return [
            _to_frame(index, job.row, job.matrix, k, s)
            for (index, job), k, s in zip(jobs, kp.cpu().numpy(), scores.cpu().numpy())
        ]


def predict_stream(
    frames: Iterable[tuple[int, np.ndarray]], stream: SingleFrames | ClipStream, chunk: int
) -> Iterator[tuple[Ready, list[Person]]]:
    """(frame, its people) for every decoded frame of ``frames`` ((index, (H, W, 3) uint8 RGB)
    pairs, in order), in order; the model runs on ``chunk`` ready frames at a time."""
    pending: list[Ready] = []
    for index, image in frames:
        pending.extend(stream.push(index, image))
        if len(pending) >= chunk:
            yield from _with_people(stream, pending)
            pending = []
    pending.extend(stream.finish())
    if pending:
        yield from _with_people(stream, pending)


def _with_people(stream, ready: list[Ready]) -> list[tuple[Ready, list[Person]]]:
    people: dict[int, list[Person]] = {}
    for person in stream.predict(ready):
        people.setdefault(person.frame, []).append(person)
    return [(r, people.get(r.index, [])) for r in ready]


def coco_entry(person: Person, layout: str = CANONICAL, trained: np.ndarray | None = None) -> dict:
    """One keypoints.json entry; keypoints in ``layout`` (converted by joint name from the
    model's Human3.6M-17; a joint the model lacks is written 0, 0 with score 0). ``score`` is
    the mean score of the model's ``trained`` joints (default: all)."""
    keypoints, scores = person.keypoints, person.scores
    score = float(scores.mean() if trained is None or not trained.any() else scores[trained].mean())
    if layout != CANONICAL:
        keypoints, scores = convert(keypoints, scores, CANONICAL, layout)
        keypoints = np.nan_to_num(keypoints)
    kps = np.concatenate([keypoints, scores[:, None]], axis=1)
    x1, y1, x2, y2 = (float(v) for v in person.box)
    return {
        "image_id": person.frame,
        "category_id": PERSON,
        "keypoints": [round(float(v), 2) for v in kps.reshape(-1)],
        "score": round(score, 4),
        "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
    }


def _note_gaps(frames: Iterable[tuple[int, np.ndarray]], missing: list[int]):
    """``frames`` unchanged, appending to ``missing`` the indices they skip (did not decode)."""
    last = -1
    for index, image in frames:
        missing.extend(range(last + 1, index))
        last = index
        yield index, image


def run_predict(
    model_path: str | Path,
    video: str | Path,
    out: str | Path,
    boxes_path: str | Path | None = None,
    lifter_path: str | Path | None = None,
    chunk: int = 32,
    min_box_score: float = 0.3,
    flip_test: bool = True,
    device: str = "auto",
    progress: bool = True,
    layout: str = CANONICAL,
) -> dict:
    """Predict keypoints for every frame of ``video``; see the module docstring for the outputs.
    ``layout`` is the skeleton layout of keypoints.json (:mod:`css_pose.layouts`).

    Returns ``meta.json``'s content. Raises CheckpointError (bad model or lifter file),
    VideoReadError (unreadable video) or ValueError (bad detection file), each naming the file.
    """
    dev = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    )
    layout = get_layout(layout).name
    model, codec, payload = load_pose_model(model_path, dev)
    # Joints without a single visible training label (the pelvis of a model trained on COCO-17
    # labels) are not reported: score 0 at (0, 0), not drawn.
    untrained = ~np.asarray(payload.get("trained_joints", [True] * NUM_JOINTS), bool)
    lifter = None
    if lifter_path is not None:
        from css_pose.models.lifter_model import load_lifter

        lifter, lifter_payload = load_lifter(lifter_path)
    boxes = load_detections(boxes_path, min_box_score) if boxes_path else None
    crop = (boxes, payload["crop"]["box_pad"], payload["crop"]["size"], dev, flip_test)
    temporal = payload.get("temporal")
    if temporal:
        stream = ClipStream(model, codec, *crop, temporal["step"], temporal["flow_preset"])
    else:
        stream = SingleFrames(model, codec, *crop)

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        source = VideoStream.open(video)
    except VideoReadError as err:
        raise VideoReadError(
            f"{err}. Check the path; if the file plays elsewhere, re-encode it "
            "(ffmpeg -i IN -c:v libx264 -pix_fmt yuv420p OUT.mp4) and pass OUT.mp4"
        ) from err
    writer = VideoWriter(out / "overlay.mp4", source.width, source.height, source.fps)
    entries: list[dict] = []
    best: dict[int, Person] = {}  # frame -> best-scoring person, for the lifter
    missing: list[int] = []  # frame indices that did not decode
    written = 0  # overlay frames written: the next frame index
    bar = tqdm(
        total=source.reported_frames or None, unit="frame", desc="predict", disable=not progress,
        file=sys.stderr,
    )  # fmt: skip

    def write(ready: Ready, people: list[Person]) -> None:
        nonlocal written
        drawn = ready.image
        for person in people:
            person.keypoints[untrained], person.scores[untrained] = 0.0, 0.0
            entries.append(coco_entry(person, layout, ~untrained))
            if person.frame not in best or person.box_score > best[person.frame].box_score:
                best[person.frame] = person
            shown = person.keypoints.astype(np.float64)
            shown[untrained] = np.nan  # draw_skeleton skips them and their bones
            drawn = draw_skeleton(drawn, shown)
        # A frame that did not decode stays in the overlay as a black frame, so that overlay
        # frame i is input frame i.
        for _ in range(written, ready.index):
            writer.write(np.zeros((source.height, source.width, 3), np.uint8))
        writer.write(drawn)
        bar.update(ready.index + 1 - written)
        written = ready.index + 1

    try:
        with writer:
            for ready, people in predict_stream(
                _note_gaps(source.frames(), missing), stream, chunk
            ):
                write(ready, people)
            if written == 0:
                raise VideoReadError(f"{video}: no decodable frames")
    finally:
        bar.close()
        source.close()

    n_frames = written
    unused = sorted(f for f in (boxes or {}) if f >= n_frames)
    meta = {
        "video": str(video),
        "model": str(model_path),
        "frames": n_frames,
        "decoded_frames": n_frames - len(missing),
        "missing_frames": missing,
        "width": source.width,
        "height": source.height,
        "fps": float(source.fps),
        "joints": list(get_layout(layout).joints),
        "layout": layout,  # css_pose.layouts: read keypoints.json with this layout
        "untrained_joints": [n for n, u in zip(JOINT_NAMES, untrained, strict=True) if u],
        "boxes": str(boxes_path) if boxes_path else "whole frame",
        "people": len(entries),
        "frames_with_people": len(best),
        "model_test_metrics": payload.get("metrics", {}),
        "outputs": {"keypoints": "keypoints.json", "overlay": "overlay.mp4"},
        "warnings": [],
    }
    if temporal:
        meta["temporal"] = temporal_meta(temporal, stream)
    if missing:
        meta["warnings"].append(
            f"{video}: {len(missing)} of {n_frames} frames did not decode: frames "
            f"{_ranges(missing)}; they are marked missing (no keypoints, black overlay frames), "
            "later frames keep their own index"
        )
    if lifter is not None and untrained.any():
        meta["warnings"].append(
            f"the model was never trained on {', '.join(meta['untrained_joints'])}; the lifter "
            "gets them as (0, 0), so its 3D is unreliable"
        )
    if unused:
        meta["warnings"].append(
            f"{len(unused)} detections name frames past the video's end (first: {unused[0]}); "
            "image_id must be the 0-based frame index"
        )
    for warning in meta["warnings"]:
        print(f"[css_pose] warning: {warning}", file=sys.stderr)
    write_json(out / "keypoints.json", entries)

    if lifter is not None:
        write_pose3d(lifter, lifter_path, lifter_payload, best, missing, n_frames, source, out,
                     progress)  # fmt: skip
        meta["outputs"].update({"pose3d": "pose3d.json", "pose3d_video": "pose3d.mp4"})
    write_json(out / "meta.json", meta)
    meta["first_people"] = entries[:3]
    return meta


def temporal_meta(temporal: dict, stream: ClipStream) -> dict:
    """meta.json's ``temporal``: the clip model's settings (head.pt's ``temporal``), the clip and
    ring buffer lengths (frames) and the seconds spent in DIS flow."""
    return {
        **temporal,
        "clip_frames": 2 * temporal["frames"] + 1,
        "buffer_frames": stream.ring.maxlen,
        "flow_seconds": round(stream.flow_seconds, 3),
        "matching": "in each neighbour frame: its only box, else the largest IoU with the centre "
        "frame's box; no box or no overlap: the nearest frame towards the centre repeats",
    }


def write_pose3d(
    lifter, lifter_path, lifter_payload: dict, best: dict[int, Person], missing: list[int],
    n_frames: int, source: VideoStream, out: Path, progress: bool,
) -> None:  # fmt: skip
    """pose3d.json and pose3d.mp4: the best person of each frame lifted to 3D (module docstring).
    Raises ValueError when no frame has a person."""
    if not best:
        raise ValueError(f"{source.path}: no person found in any frame; nothing to lift")
    from css_pose.models.lifter_model import lift_sequence

    track = fill_track(best, n_frames)
    gone = set(missing)
    pose3d = 1000.0 * lift_sequence(lifter, track, source.width, source.height)  # mm
    write_json(
        out / "pose3d.json",
        {
            "units": "mm, root-relative, camera axes (x right, y down, z forward)",
            "joints": list(JOINT_NAMES),
            "layout": CANONICAL,
            "lifter": str(lifter_path),
            "lifter_test_metrics": lifter_payload.get("result", {}),
            "frames": [
                {
                    "image_id": t,
                    "keypoints_3d": None if t in gone else np.round(p, 1).tolist(),
                    "observed": t in best,
                    "missing": t in gone,
                }
                for t, p in enumerate(pose3d)
            ],
        },
    )
    animate_3d(pose3d, out / "pose3d.mp4", source.fps, progress=progress)


def fill_track(best: dict[int, Person], n_frames: int) -> np.ndarray:
    """(T, J, 2) keypoints of the best person per frame; frames without one take the nearest
    earlier frame's pose (the first found pose before it)."""
    track = np.zeros((n_frames, NUM_JOINTS, 2), np.float32)
    first = min(best)
    last = best[first].keypoints
    for t in range(n_frames):
        if t in best:
            last = best[t].keypoints
        track[t] = last
    return track


def _ranges(indices: list[int], limit: int = 20) -> str:
    """Sorted frame indices as "3, 10-12, 25", at most ``limit`` runs (then "...")."""
    runs: list[list[int]] = []
    for i in indices:
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    text = [f"{a}" if a == b else f"{a}-{b}" for a, b in runs[:limit]]
    return ", ".join(text + (["..."] if len(runs) > limit else []))


# --- 3D animation ---------------------------------------------------------------------------------
def animate_3d(pose3d: np.ndarray, path: Path, fps: Fraction, progress: bool = True) -> Path:
    """Render (T, 17, 3) mm poses as an mp4 of a rotating-free 3D skeleton plot (matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from css_pose.skeleton import BONES, joint_side
    from css_pose.viz import SIDE_COLOURS

    colours = {side: tuple(c / 255 for c in rgb) for side, rgb in SIDE_COLOURS.items()}
    span = max(float(np.abs(pose3d).max()), 1.0)
    fig = plt.figure(figsize=(4, 4), dpi=80)
    ax = fig.add_subplot(projection="3d")
    writer = None
    try:
        for t, pose in enumerate(
            tqdm(pose3d, desc="3D plot", disable=not progress, file=sys.stderr)
        ):
            ax.cla()
            # Camera axes to plot axes: x right, z (depth) into the page, -y up.
            xs, ys, zs = pose[:, 0], pose[:, 2], -pose[:, 1]
            for parent, child in BONES:
                ax.plot(
                    [xs[parent], xs[child]], [ys[parent], ys[child]], [zs[parent], zs[child]],
                    color=colours[joint_side(child)], lw=2,
                )  # fmt: skip
            ax.scatter(xs, ys, zs, s=6, color="k")
            ax.set_xlim(-span, span)
            ax.set_ylim(-span, span)
            ax.set_zlim(-span, span)
            ax.set_xlabel("x (mm)")
            ax.set_ylabel("depth (mm)")
            ax.set_zlabel("up (mm)")
            ax.set_title(f"frame {t}")
            fig.canvas.draw()
            image = np.asarray(fig.canvas.buffer_rgba())[..., :3]
            if writer is None:
                h, w = image.shape[:2]
                writer = VideoWriter(path, w - w % 2, h - h % 2, fps)
            writer.write(np.ascontiguousarray(image[: writer.stream.height, : writer.stream.width]))
        if writer is not None:
            writer.close()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    finally:
        plt.close(fig)
    return path


# --- command line ---------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        prog="css-pose predict",
        description="Run a trained 2D pose model (train_head.py's head.pt, single-frame or "
        "temporal) over a video.",
    )
    parser.add_argument("--model", "--ckpt", dest="model", required=True,
                        help="head.pt written by train_head.py")  # fmt: skip
    parser.add_argument(
        "--video",
        required=True,
        help="input video (any length and size), or a folder of numbered frames",
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument(
        "--boxes",
        help="COCO detection results JSON, or a css_pose annotation .npz (default: "
        "the whole frame)",
    )
    parser.add_argument(
        "--layout",
        choices=sorted(LAYOUTS),
        default=CANONICAL,
        help="skeleton layout of keypoints.json (default: the model's own, h36m17); joints the "
        "model lacks get score 0",
    )
    parser.add_argument("--show", type=int, default=1,
                        help="print the keypoints of the first N people found")  # fmt: skip
    parser.add_argument("--lifter", help="lifter file from python -m css_pose.lifting --save")
    parser.add_argument("--chunk", type=int, default=32,
                        help="frames per model batch (clip models: centre frames)")  # fmt: skip
    parser.add_argument("--min-box-score", type=float, default=0.3)
    parser.add_argument("--no-flip-test", action="store_true", help="faster, a little less exact")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch/OpenCV threads (default: the available cores)")  # fmt: skip
    parser.add_argument(
        "--people",
        choices=("single", "multi"),
        default="single",
        help="multi: every detection of --boxes, refined along the optical flow and tracked "
        "(css_pose.predict_multi; writes posetrack.json too)",
    )
    parser.add_argument("--refine-frames", type=int, default=2,
                        help="--people multi: neighbours each side carried to a frame")  # fmt: skip
    parser.add_argument("--online", action="store_true",
                        help="--people multi: past frames only (no look-ahead)")  # fmt: skip
    parser.add_argument("--fusion", choices=("mean", "median", "heatmap"), default="mean",
                        help="--people multi: combine a person's carried poses by their weighted "
                        "mean, median, or the average of their heatmaps (a heatmap head)")  # fmt: skip
    args = parser.parse_args(argv)
    if args.chunk < 1:
        parser.error("--chunk must be >= 1")
    configure_threads(args.threads)
    if args.people == "multi":
        if not args.boxes:
            parser.error("--people multi needs --boxes (a detection file with every person)")
        if args.lifter or args.layout != CANONICAL:
            parser.error("--people multi writes Human3.6M-17 keypoints and takes no --lifter")
        from css_pose.predict_multi import run_predict_multi

        meta = run_predict_multi(
            args.model, args.video, args.out, args.boxes, args.refine_frames, args.online,
            args.fusion, args.min_box_score, not args.no_flip_test, args.device, args.chunk,
        )  # fmt: skip
        out = Path(args.out)
        print(
            f"[css_pose] {meta['frames']} frames, {meta['people']} people in {meta['tracks']} "
            f"tracks ({meta['recovered']} recovered where the detector missed them) -> "
            f"{out / 'keypoints.json'}, {out / 'posetrack.json'}, {out / 'overlay.mp4'}"
        )
        return meta
    meta = run_predict(
        args.model, args.video, args.out, args.boxes, args.lifter, args.chunk,
        args.min_box_score, not args.no_flip_test, args.device, layout=args.layout,
    )  # fmt: skip
    out = Path(args.out)
    print(
        f"[css_pose] {meta['frames']} frames, {meta['people']} people -> "
        f"{out / 'keypoints.json'}, {out / 'overlay.mp4'}"
        + (f", {out / 'pose3d.mp4'}" if "pose3d" in meta["outputs"] else "")
    )
    for entry in meta.pop("first_people")[: max(args.show, 0)]:
        print(format_person(entry, meta["joints"]))
    return meta


def format_person(entry: dict, joints: list[str]) -> str:
    """A keypoints.json entry as a table: frame, box score, then joint, x, y (frame px), score."""
    kps = np.asarray(entry["keypoints"]).reshape(-1, 3)
    lines = [f"frame {entry['image_id']}: person, score {entry['score']:.3f}"]
    lines += [
        f"  {name:12s} {x:8.2f} {y:8.2f}  {score:.3f}"
        for name, (x, y, score) in zip(joints, kps, strict=True)
    ]
    return "\n".join(lines)
