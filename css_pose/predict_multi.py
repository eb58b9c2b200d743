"""``css-pose predict --people multi``: every person of a crowded video, refined along the flow
and tracked (shared/methods.md section 6; the parts are in :mod:`css_pose.crowd`).

1. **Per frame**: each detection of ``--boxes`` is cropped and run through the single-frame model,
   as plain ``css-pose predict`` does.
2. **Refinement**: for frame t, the people of frames t-k..t+k (online: t-k..t) are carried to t
   along DIS flow between consecutive whole frames, matched by OKS and fused (``--fusion``:
   weighted mean of the keypoints, their median, or the average of their heatmaps); people the
   detector missed in t but found around it are recovered (:func:`~css_pose.crowd.refine_poses`).
   The video is decoded twice, and only 2k + 2 frames and their flows are held at a time.
3. **Tracks**: ids carried from frame to frame by OKS; a track missed for up to 3 frames
   keeps its id (:class:`~css_pose.tracking.Tracker`).

Writes into ``--out``: ``keypoints.json`` (COCO keypoint results with ``track_id`` and
``recovered``), ``posetrack.json`` (a PoseTrack-2018-style annotation file: every frame an
image, every person an annotation with its ``track_id``; read it with
:func:`css_pose.data.coco.read_coco`), ``overlay.mp4`` (each person's skeleton and a box in its
track's colour, with the id) and ``meta.json``. Every frame that decodes is in the overlay and
in ``posetrack.json``, with or without people.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from css_pose.artifacts.atomic import write_json
from css_pose.crowd import FUSIONS, FramePerson, refine_poses
from css_pose.data.coco import CocoImage, CocoPerson, write_coco
from css_pose.data.detections import load_detections
from css_pose.data.video import VideoReadError, VideoStream, VideoWriter
from css_pose.flow import dense_flow
from css_pose.layouts import CANONICAL
from css_pose.metrics.oks import layout_sigmas
from css_pose.models.pose_model import load_pose_model
from css_pose.skeleton import NUM_JOINTS
from css_pose.tracking import Tracker
from css_pose.video_pose import predict_chunk
from css_pose.viz import draw_skeleton


def track_colour(track: int) -> tuple[int, int, int]:
    """A stable RGB colour per track id (golden-angle hues)."""
    hue = int((track * 137.508) % 180)
    bgr = cv2.cvtColor(np.uint8([[[hue, 220, 255]]]), cv2.COLOR_HSV2RGB)[0, 0]
    return tuple(int(c) for c in bgr)


def _people_per_frame(model, codec, payload, video, boxes, device, flip_test, chunk, progress,
                      heatmaps=False):  # fmt: skip
    """Pass 1: {frame index: [FramePerson]} of every decoded frame, and the stream's facts.
    ``heatmaps``: keep each person's heatmaps too (float16, for heatmap fusion)."""
    untrained = ~np.asarray(payload.get("trained_joints", [True] * NUM_JOINTS), bool)
    size, pad = payload["crop"]["size"], payload["crop"]["box_pad"]
    source = VideoStream.open(video)
    found: dict[int, list[FramePerson]] = {}
    pending: list[tuple[int, np.ndarray]] = []
    bar = tqdm(total=source.reported_frames or None, unit="frame", desc="predict people",
               disable=not progress, file=sys.stderr)  # fmt: skip

    def run(batch):
        for index, _ in batch:
            found[index] = []
        people = predict_chunk(model, codec, [im for _, im in batch], [i for i, _ in batch],
                               boxes, pad, size, device, flip_test, heatmaps)  # fmt: skip
        for p in people:
            kp = p.keypoints.astype(np.float64)
            kp[untrained] = np.nan  # never labelled in training: not reported
            sc = p.scores.astype(np.float64)
            sc[untrained] = 0.0
            maps = None if p.heatmaps is None else p.heatmaps.astype(np.float16)
            found[p.frame].append(FramePerson(kp, sc, np.asarray(p.box, np.float64), p.box_score,
                                              heatmaps=maps, heatmap_to_frame=p.heatmap_to_frame))  # fmt: skip
        bar.update(len(batch))

    try:
        for index, image in source.frames():
            pending.append((index, image))
            if len(pending) >= chunk:
                run(pending)
                pending = []
        if pending:
            run(pending)
    finally:
        bar.close()
        source.close()
    if not found:
        raise VideoReadError(f"{video}: no decodable frames")
    facts = (source.width, source.height, source.fps)
    return found, facts, untrained


# Longer than 60 lines: the outline of css-pose predict --people multi; each step is one call.
def run_predict_multi(
    model_path: str | Path,
    video: str | Path,
    out: str | Path,
    boxes_path: str | Path,
    k: int = 2,
    online: bool = False,
    fusion: str = "mean",
    min_box_score: float = 0.3,
    flip_test: bool = True,
    device: str = "auto",
    chunk: int = 32,
    progress: bool = True,
) -> dict:
    """Every person of ``video`` (module docstring); returns ``meta.json``'s content.

    ``fusion``: how a person's candidates are combined (:data:`~css_pose.crowd.FUSIONS`);
    "heatmap" needs a heatmap head and keeps every person's heatmaps in memory (float16,
    J x h x w each: 2 KB at 32 px crops and stride 4).

    Raises CheckpointError (bad model), VideoReadError (unreadable video) or ValueError (bad
    detection file; a clip model, which this mode does not take; heatmap fusion with a head
    that has no heatmaps), each naming the file.
    """
    if fusion not in FUSIONS:
        raise ValueError(f"unknown fusion {fusion!r}; choose one of {FUSIONS}")
    dev = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    )
    model, codec, payload = load_pose_model(model_path, dev)
    if payload.get("temporal"):
        raise ValueError(
            f"{model_path}: a clip model; --people multi refines single-frame poses along the "
            "flow itself, so give it a single-frame head (train_head.py without temporal.frames)"
        )
    boxes = load_detections(boxes_path, min_box_score)
    start = time.perf_counter()
    found, facts, untrained = _people_per_frame(
        model, codec, payload, video, boxes, dev, flip_test, chunk, progress, fusion == "heatmap"
    )
    pose_seconds = time.perf_counter() - start
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    run = _Refinement(found, facts, untrained, Path(video), out, k, online, fusion, progress)
    run.run()
    write_json(out / "keypoints.json", run.entries)
    write_coco(out / "posetrack.json", CANONICAL, run.images, run.people)
    meta = {
        "video": str(video),
        "model": str(model_path),
        "boxes": str(boxes_path),
        "mode": "online" if online else "offline",
        "k": k,
        "fusion": fusion,
        "frames": run.written,
        "decoded_frames": len(found),
        "people": len(run.entries),
        "recovered": int(sum(e["recovered"] for e in run.entries)),
        "tracks": run.tracker.count,
        "layout": CANONICAL,
        "untrained_joints": [int(j) for j in np.flatnonzero(untrained)],
        "frames_per_second": {
            name: round(len(found) / max(seconds, 1e-9), 1)
            for name, seconds in (
                ("pose", pose_seconds),
                ("flow", run.flow_seconds),
                ("refine", run.refine_seconds),
            )
        },  # fmt: skip
        "outputs": {
            "keypoints": "keypoints.json",
            "posetrack": "posetrack.json",
            "overlay": "overlay.mp4",
        },  # fmt: skip
    }
    write_json(out / "meta.json", meta)
    return meta


class _Refinement:
    """Pass 2 of :func:`run_predict_multi`: decode the video again, compute the flows between
    neighbours, refine and track each frame once its k next frames are in (offline) or at once
    (online), draw the overlay and collect the outputs. Holds 2k + 2 frames and their flows."""

    def __init__(self, found, facts, untrained, video: Path, out: Path, k, online, fusion,
                 progress):  # fmt: skip
        self.found, self.untrained, self.video = found, untrained, video
        self.width, self.height, self.fps = facts
        self.k, self.online, self.fusion, self.progress = k, online, fusion, progress
        self.sigmas, _ = layout_sigmas(CANONICAL)
        self.sigmas[untrained] = 0.0
        self.tracker = Tracker(self.sigmas)
        self.writer = VideoWriter(out / "overlay.mp4", self.width, self.height, self.fps)
        self.frames: dict[int, np.ndarray] = {}
        self.fwd: dict[int, np.ndarray] = {}  # t -> flow from frame t to t + 1
        self.bwd: dict[int, np.ndarray] = {}  # t -> flow from frame t + 1 to t
        self.entries: list[dict] = []
        self.images: list[CocoImage] = []
        self.people: list[CocoPerson] = []
        self.last = max(found)
        self.written = 0
        self.flow_seconds = self.refine_seconds = 0.0

    def run(self) -> None:
        source = VideoStream.open(self.video)
        self.bar = tqdm(total=self.last + 1, unit="frame", desc="refine and track",
                        disable=not self.progress, file=sys.stderr)  # fmt: skip
        try:
            with self.writer:
                ready = 0  # the next frame to emit
                for index, image in source.frames():
                    self._add(index, image)
                    while ready in self.found and (self.online or ready + self.k <= index):
                        self._emit(ready)
                        ready += 1
                        while ready <= self.last and ready not in self.found:
                            ready += 1
                    for old in [i for i in self.frames if i < ready - self.k - 1]:
                        self.frames.pop(old)
                        self.fwd.pop(old, None)
                        self.bwd.pop(old, None)
                for t in range(ready, self.last + 1):
                    if t in self.found:
                        self._emit(t)
        finally:
            self.bar.close()
            source.close()

    def _add(self, index: int, image: np.ndarray) -> None:
        self.frames[index] = image
        if index - 1 in self.frames:
            s = time.perf_counter()
            self.fwd[index - 1] = dense_flow(self.frames[index - 1], image)
            self.bwd[index - 1] = dense_flow(image, self.frames[index - 1])
            self.flow_seconds += time.perf_counter() - s

    def _contiguous(self, t: int) -> list[int]:
        """The frames around t, k each side (past only online), with no gap of frame or flow."""
        lo, hi = t, t
        while lo - 1 >= max(0, t - self.k) and lo - 1 in self.frames and lo - 1 in self.fwd:
            lo -= 1
        while (not self.online and hi + 1 <= min(self.last, t + self.k)
               and hi + 1 in self.frames and hi in self.fwd):  # fmt: skip
            hi += 1
        return list(range(lo, hi + 1))

    def _emit(self, t: int) -> None:
        seq = self._contiguous(t)
        s = time.perf_counter()
        refined = refine_poses(
            [self.found.get(i, []) for i in seq],
            [self.fwd[i] for i in seq[:-1]],
            None if self.online else [self.bwd[i] for i in seq[:-1]],
            self.sigmas,
            k=self.k,
            fusion=self.fusion,
        )[seq.index(t)]
        self.refine_seconds += time.perf_counter() - s
        self.tracker.update(refined)
        drawn = self.frames[t]
        for _ in range(self.written, t):  # frames that did not decode: black, as in plain predict
            self.writer.write(np.zeros((self.height, self.width, 3), np.uint8))
        for person in refined:
            drawn = self._record(t, person, drawn)
        self.images.append(
            CocoImage(
                t + 1,
                f"{self.video.stem}/{t:06d}.jpg",
                self.width,
                self.height,
                frame=t,
                video=self.video.stem,
                frame_index=t,
            )  # fmt: skip
        )
        self.writer.write(drawn)
        self.written = t + 1
        self.bar.update(1)

    def _record(self, t: int, person: FramePerson, drawn: np.ndarray) -> np.ndarray:
        """Draw ``person`` on frame t (skeleton, box and id in its track's colour) and add it to
        the outputs; returns the drawn frame."""
        colour = track_colour(person.track)
        x1, y1, x2, y2 = (int(round(v)) for v in person.box)
        drawn = draw_skeleton(drawn, person.keypoints)
        cv2.rectangle(drawn, (x1, y1), (x2, y2), colour, 1)
        cv2.putText(drawn, str(person.track), (x1 + 1, max(y1 - 2, 8)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.3, colour, 1, cv2.LINE_AA)  # fmt: skip
        kp = np.nan_to_num(person.keypoints)
        sc = np.where(np.isfinite(person.keypoints).all(-1), person.scores, 0.0)
        box = [float(v) for v in (x1, y1, x2 - x1, y2 - y1)]
        self.entries.append({
            "image_id": t, "category_id": 1, "track_id": int(person.track),
            "recovered": bool(person.recovered),
            "keypoints": [round(float(v), 2) for v in np.c_[kp, sc].reshape(-1)],
            "score": round(float(person.score * np.clip(sc[~self.untrained], 0, 1).mean()), 4),
            "bbox": [round(v, 2) for v in box],
        })  # fmt: skip
        self.people.append(
            CocoPerson(
                t + 1,
                kp,
                np.where(sc > 0, 2, 0),
                np.array(box),
                track_id=int(person.track),
                id=len(self.people) + 1,
            )  # fmt: skip
        )
        return drawn
