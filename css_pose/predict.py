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
runs on the same single pass: a ring buffer (:class:`~css_pose.video_pose.ClipStream`) keeps the last 2 n step + 1
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
css_pose.data.video), not from counting decoded frames: a frame that does not decode (a damaged
packet) keeps its index, so later frames and their ``--boxes`` stay aligned. Such frames are listed
in a warning and in ``meta.json``. ``--video`` may also be a folder of numbered frames
(:mod:`css_pose.data.video`): frame ``i`` is its i-th image, at 30 frames/s.

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

# Longer than 400 lines: 60 of them are the module docstring, which documents every output file.

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from css_pose.artifacts.atomic import write_json
from css_pose.config import configure_threads
from css_pose.data.detections import PERSON, load_detections
from css_pose.data.video import (
    VideoReadError,
    VideoStream,
    VideoWriter,
)
from css_pose.layouts import CANONICAL, LAYOUTS, convert, get_layout
from css_pose.models.pose_model import load_pose_model
from css_pose.skeleton import JOINT_NAMES, NUM_JOINTS
from css_pose.video_pose import (
    ClipStream,
    Person,
    Ready,
    fill_track,
    frame_stream,
    predict_stream,
)
from css_pose.viz import animate_3d, draw_skeleton


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


# Longer than 60 lines: the outline of css-pose predict; each step is one call.
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
    lifter = None
    if lifter_path is not None:
        from css_pose.models.lifter_model import load_lifter

        lifter, lifter_payload = load_lifter(lifter_path)
    boxes = load_detections(boxes_path, min_box_score) if boxes_path else None
    stream = frame_stream(model, codec, payload, boxes, dev, flip_test)

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        source = VideoStream.open(video)
    except VideoReadError as err:
        raise VideoReadError(
            f"{err}. Check the path; if the file plays elsewhere, re-encode it "
            "(ffmpeg -i IN -c:v libx264 -pix_fmt yuv420p OUT.mp4) and pass OUT.mp4"
        ) from err
    overlay = _Overlay(out / "overlay.mp4", source, payload, layout, progress)
    try:
        with overlay.writer:
            for ready, people in predict_stream(
                _note_gaps(source.frames(), overlay.missing), stream, chunk
            ):
                overlay.write(ready, people)
            if overlay.written == 0:
                raise VideoReadError(f"{video}: no decodable frames")
    finally:
        overlay.bar.close()
        source.close()

    meta = _meta(
        video, model_path, boxes_path, boxes, source, payload, stream, overlay, layout,
        lifted=lifter is not None,
    )  # fmt: skip
    for warning in meta["warnings"]:
        print(f"[css_pose] warning: {warning}", file=sys.stderr)
    write_json(out / "keypoints.json", overlay.entries)

    if lifter is not None:
        write_pose3d(lifter, lifter_path, lifter_payload, overlay.best, overlay.missing,
                     overlay.written, source, out, progress)  # fmt: skip
        meta["outputs"].update({"pose3d": "pose3d.json", "pose3d_video": "pose3d.mp4"})
    write_json(out / "meta.json", meta)
    meta["first_people"] = overlay.entries[:3]
    return meta


class _Overlay:
    """overlay.mp4 written frame by frame, with the COCO entries, each frame's best-scoring person
    (for the lifter) and the indices of frames that did not decode, gathered on the way."""

    def __init__(self, path: Path, source: VideoStream, payload: dict, layout: str, progress: bool):
        self.writer = VideoWriter(path, source.width, source.height, source.fps)
        self.source, self.layout = source, layout
        # Joints without a single visible training label (the pelvis of a model trained on
        # COCO-17 labels) are not reported: score 0 at (0, 0), not drawn.
        trained = payload.get("trained_joints", [True] * NUM_JOINTS)
        self.untrained = ~np.asarray(trained, bool)
        self.entries: list[dict] = []
        self.best: dict[int, Person] = {}  # frame -> best-scoring person, for the lifter
        self.missing: list[int] = []  # frame indices that did not decode
        self.written = 0  # overlay frames written: the next frame index
        self.bar = tqdm(
            total=source.reported_frames or None, unit="frame", desc="predict",
            disable=not progress, file=sys.stderr,
        )  # fmt: skip

    def write(self, ready: Ready, people: list[Person]) -> None:
        drawn, untrained = ready.image, self.untrained
        for person in people:
            person.keypoints[untrained], person.scores[untrained] = 0.0, 0.0
            self.entries.append(coco_entry(person, self.layout, ~untrained))
            best = self.best.get(person.frame)
            if best is None or person.box_score > best.box_score:
                self.best[person.frame] = person
            shown = person.keypoints.astype(np.float64)
            shown[untrained] = np.nan  # draw_skeleton skips them and their bones
            drawn = draw_skeleton(drawn, shown)
        # A frame that did not decode stays in the overlay as a black frame, so that overlay
        # frame i is input frame i.
        for _ in range(self.written, ready.index):
            self.writer.write(np.zeros((self.source.height, self.source.width, 3), np.uint8))
        self.writer.write(drawn)
        self.bar.update(ready.index + 1 - self.written)
        self.written = ready.index + 1


def _meta(
    video, model_path, boxes_path, boxes, source: VideoStream, payload: dict, stream,
    overlay: _Overlay, layout: str, lifted: bool,
) -> dict:  # fmt: skip
    """meta.json's content (module docstring), with a warning per problem met on the way."""
    n_frames, missing = overlay.written, overlay.missing
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
        "untrained_joints": [n for n, u in zip(JOINT_NAMES, overlay.untrained, strict=True) if u],
        "boxes": str(boxes_path) if boxes_path else "whole frame",
        "people": len(overlay.entries),
        "frames_with_people": len(overlay.best),
        "model_test_metrics": payload.get("metrics", {}),
        "outputs": {"keypoints": "keypoints.json", "overlay": "overlay.mp4"},
        "warnings": [],
    }
    if payload.get("temporal"):
        meta["temporal"] = temporal_meta(payload["temporal"], stream)
    if payload.get("dkd"):
        section = payload["dkd"]
        meta["dkd"] = {
            "interval": section["interval"],
            "min_confidence": section["min_confidence"],
            "initializer_frames": stream.initialised,
            "scene_cuts": stream.cuts,
            "metrics": section["metrics"],
        }
    if missing:
        meta["warnings"].append(
            f"{video}: {len(missing)} of {n_frames} frames did not decode: frames "
            f"{_ranges(missing)}; they are marked missing (no keypoints, black overlay frames), "
            "later frames keep their own index"
        )
    if lifted and overlay.untrained.any():
        meta["warnings"].append(
            f"the model was never trained on {', '.join(meta['untrained_joints'])}; the lifter "
            "gets them as (0, 0), so its 3D is unreliable"
        )
    unused = sorted(f for f in (boxes or {}) if f >= n_frames)
    if unused:
        meta["warnings"].append(
            f"{len(unused)} detections name frames past the video's end (first: {unused[0]}); "
            "image_id must be the 0-based frame index"
        )
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


# --- command line ---------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> dict:
    """``css-pose predict``: parse the command line, run one person or several per frame."""
    parser = _parser()
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


def _parser() -> argparse.ArgumentParser:
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
    return parser


def format_person(entry: dict, joints: list[str]) -> str:
    """A keypoints.json entry as a table: frame, box score, then joint, x, y (frame px), score."""
    kps = np.asarray(entry["keypoints"]).reshape(-1, 3)
    lines = [f"frame {entry['image_id']}: person, score {entry['score']:.3f}"]
    lines += [
        f"  {name:12s} {x:8.2f} {y:8.2f}  {score:.3f}"
        for name, (x, y, score) in zip(joints, kps, strict=True)
    ]
    return "\n".join(lines)
