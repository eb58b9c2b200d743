"""Pose over a video stream, for ``css-pose predict`` (the app, :mod:`css_pose.predict`, writes
the outputs).

- **Inputs**: person boxes per frame (:func:`css_pose.data.detections.load_detections`) and
  frames decoded once, front to back (:class:`css_pose.data.video.VideoStream`).
- **Single-frame models**: each box cropped as in training, run through the model, keypoints
  mapped back to frame px (:func:`predict_chunk`, :class:`SingleFrames`).
- **Clip models**: a ring buffer of the last 2 n step + 1 decoded frames and their person crops
  (:class:`ClipStream`); frame t is predicted once frame t + n step has been decoded.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from einops import rearrange

from css_pose.codecs.heatmap import HeatmapCodec
from css_pose.crowd import box_iou
from css_pose.data.transforms import crop_matrix, transform_points, warp_crop, whole_frame_box
from css_pose.flow import DIS_PRESETS
from css_pose.models.dkd import DKDStream, build_dkd, step_streams
from css_pose.models.pose_model import predict
from css_pose.models.temporal_pose import clip_frame_indices, crop_clip_flows, predict_clip
from css_pose.skeleton import NUM_JOINTS
from css_pose.tracking import follow_boxes

# --- inputs ---------------------------------------------------------------------------------------


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


@dataclass
class _Followed:
    """One person DKD follows: their last box (4,) xyxy px, frame and crop (3, S, S), and
    the DKD state carried from that crop."""

    box: np.ndarray
    frame: int
    crop: torch.Tensor
    stream: DKDStream


class DKDFrames:
    """A DKD model (a 2D model file with a ``dkd`` section, :mod:`css_pose.models.dkd`): every
    person box of each frame, each person followed frame by frame with a DKD state of their own.
    A box continues the person of the previous frame's box it overlaps most (IoU at least
    ``min_iou``, :func:`follow_boxes`); a box that continues no one starts a new person. The
    initializer (the file's 2D model) runs on a person's first frame, every ``interval`` frames,
    when the confidence drops (the section's ``min_confidence``), after a frame that did not
    decode, and at a scene cut (the person's crop changes by more than ``cut`` in mean absolute
    value, in [0, 1] units). There is no flip test: the state runs through the unmirrored
    crops. ``initialised`` and ``cuts`` count initializer runs and scene cuts over all people."""

    def __init__(self, model, codec, payload: dict, boxes, box_pad: float, size: int, device,
                 cut: float = 0.25, min_iou: float = 0.3):  # fmt: skip
        section = payload["dkd"]
        if not isinstance(codec, HeatmapCodec) or codec.stride != section["stride"]:
            raise ValueError(
                f"{payload.get('source', 'the model')}: a DKD file needs a heatmap initializer at "
                f"the small network's stride {section['stride']}, got {type(codec).__name__}"
                + (f" at stride {codec.stride}" if hasattr(codec, "stride") else "")
            )
        self.small = build_dkd(section, len(payload["joints"]), payload.get("source", ""))
        self.small.to(device)
        self.initializer = lambda x: model(x)["heatmaps"]
        self.section = section
        self.codec, self.boxes, self.box_pad, self.size = codec, boxes, box_pad, size
        self.device, self.cut, self.min_iou = device, cut, min_iou
        self.followed: list[_Followed] = []  # the people of the last frame
        self.initialised = self.cuts = 0

    def push(self, index: int, image: np.ndarray) -> list[Ready]:
        return [Ready(index, image)]

    def finish(self) -> list[Ready]:
        return []

    def _stream(self) -> DKDStream:
        return DKDStream(self.small, self.initializer, self.section["interval"],
                         self.section["min_confidence"])  # fmt: skip

    def predict(self, ready: list[Ready]) -> list[Person]:
        people = []
        for r in ready:  # in frame order: the states run from one frame to the next
            rows, pad = frame_boxes(self.boxes, r.index, r.image.shape[1], r.image.shape[0],
                                    self.box_pad)  # fmt: skip
            if not len(rows):
                self.followed = []
                continue
            # Only people of the frame just before continue: a frame that did not decode, or
            # one without the person, starts them again.
            live = [f for f in self.followed if f.frame == r.index - 1]
            pairs = follow_boxes(np.array([f.box for f in live]).reshape(-1, 4), rows,
                                 self.min_iou)  # fmt: skip
            crops, matrices, streams = [], [], []
            for i, row in enumerate(rows):
                matrices.append(crop_matrix(row[:4], self.size, pad))
                crop = torch.from_numpy(warp_crop(r.image, matrices[-1], self.size))
                crops.append(crop.permute(2, 0, 1).float().div_(255.0).to(self.device))
                if i in pairs:
                    streams.append(live[pairs[i]].stream)
                    if (crops[-1] - live[pairs[i]].crop).abs().mean() > self.cut:
                        streams[-1].reset()
                        self.cuts += 1
                else:
                    streams.append(self._stream())
            before = sum(s.initialised for s in streams)
            heatmaps = step_streams(streams, torch.stack(crops))  # every person in one batch
            self.initialised += sum(s.initialised for s in streams) - before
            kp, scores = self.codec.decode({"heatmaps": heatmaps})
            followed = []
            for i, row in enumerate(rows):
                followed.append(_Followed(row[:4].copy(), r.index, crops[i], streams[i]))
                people.append(_to_frame(r.index, row, matrices[i], kp[i].cpu().numpy(),
                                        scores[i].cpu().numpy()))  # fmt: skip
            self.followed = followed
        return people


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


def frame_stream(model, codec, payload: dict, boxes, device, flip_test: bool):
    """The per-frame, clip (temporal head) or DKD state that ``predict_stream`` drives."""
    crop = (boxes, payload["crop"]["box_pad"], payload["crop"]["size"], device, flip_test)
    temporal = payload.get("temporal")
    if payload.get("dkd"):
        return DKDFrames(model, codec, payload, *crop[:4])
    if temporal:
        if temporal["flow_preset"] not in DIS_PRESETS:
            raise ValueError(f"predict needs a model trained with a DIS flow_preset {tuple(DIS_PRESETS)}, "
                             f"not {temporal['flow_preset']} (true motion of labelled clips)")  # fmt: skip
        return ClipStream(model, codec, *crop, temporal["step"], temporal["flow_preset"])
    return SingleFrames(model, codec, *crop)


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
