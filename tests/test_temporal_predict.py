"""css-pose predict with a temporal (clip) head.pt: the streaming ring buffer against the batch path.

A tiny clip head (n = 2 neighbours each side, step 2: clips of 5 crops spanning 9 frames, average
pooling of the warped heatmaps, so every neighbour and every flow moves the result) trained for
one epoch on test_temporal_head's synthetic set (16-frame videos at 64 px, 32 px crops).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from einops import rearrange
from test_temporal_head import head_args, one_thread, root  # noqa: F401 (fixtures)

from css_pose.data.detections import load_detections
from css_pose.data.synthetic.io import write_mp4
from css_pose.data.transforms import crop_matrix, transform_points, warp_crop, whole_frame_box
from css_pose.data.video import VideoStream, probe_video
from css_pose.heads2d import main as train_head
from css_pose.models.lifter_model import build_lifter, save_lifter
from css_pose.models.pose_model import load_pose_model
from css_pose.models.temporal_pose import clip_frame_indices, crop_clip_flows, predict_clip
from css_pose.predict import run_predict
from css_pose.video_pose import ClipStream, predict_stream

FRAMES, STEP = 2, 2
SPAN = FRAMES * STEP  # frames each side of the centre
TRACK_A, TRACK_B = 0.9, 0.95  # detection scores that name the two people of the two-box video


@pytest.fixture(scope="module")
def clip_head(root, tmp_path_factory):  # noqa: F811
    run = tmp_path_factory.mktemp("clip_head")
    extra = {
        "epochs": 1,
        "num_images": 0,
        "temporal.frames": FRAMES,
        "temporal.step": STEP,
        "temporal.pooling": "average",
        "temporal.flow_preset": "fast",
    }
    train_head(head_args(root, run, **extra))
    return run / "head.pt"


@pytest.fixture(scope="module")
def test_video(root) -> tuple[Path, np.ndarray]:  # noqa: F811
    """A synthetic test video (16 frames, 64 px) and its person's boxes (T, 4) xyxy px."""
    manifest = json.loads((root / "manifest.json").read_text())
    entry = next(v for v in manifest["videos"] if v["split"] == "test")
    with np.load(root / entry["annotation"]) as ann:
        boxes = ann["bboxes"].reshape(-1, *ann["bboxes"].shape[-2:])[0]
    return root / entry["video"], boxes


def decode(video: Path) -> list[np.ndarray]:
    source = VideoStream.open(video)
    try:
        return [image for _, image in source.frames()]
    finally:
        source.close()


def stream_people(model_path: Path, video: Path, boxes, chunk: int = 3) -> dict:
    """{(frame, box score): (J, 2) frame px} from the streaming path (unrounded)."""
    model, codec, payload = load_pose_model(model_path)
    t = payload["temporal"]
    stream = ClipStream(model, codec, boxes, payload["crop"]["box_pad"], payload["crop"]["size"],
                        torch.device("cpu"), True, t["step"], t["flow_preset"])  # fmt: skip
    source = VideoStream.open(video)
    try:
        return {
            (p.frame, round(p.box_score, 4)): p.keypoints
            for _, people in predict_stream(source.frames(), stream, chunk)
            for p in people
        }
    finally:
        source.close()


def batch_keypoints(model_path: Path, frames: list[np.ndarray], track: np.ndarray | None):
    """The batch path: every clip of the decoded ``frames`` built at once with the person's boxes
    ``track`` (T, 4) xyxy px (None: the whole frame), predict_clip on all, back to frame px.
    Returns (T, J, 2) frame px and the keypoints with every crop replaced by the centre's."""
    model, codec, payload = load_pose_model(model_path)
    t, size = payload["temporal"], payload["crop"]["size"]
    pad = 1.0 if track is None else payload["crop"]["box_pad"]
    if track is None:
        track = np.stack([whole_frame_box(f.shape[1], f.shape[0]) for f in frames])
    clips, flows, centres = [], [], []
    for c in range(len(frames)):
        idx = clip_frame_indices(c, 0, len(frames), t["frames"], t["step"])
        matrices = [crop_matrix(track[j], size, pad) for j in idx]
        crops = np.stack([warp_crop(frames[j], m, size) for j, m in zip(idx, matrices)])
        clips.append(crops)
        flows.append(crop_clip_flows(crops, idx, t["frames"], t["flow_preset"]))
        centres.append(matrices[t["frames"]])
    clip = rearrange(torch.from_numpy(np.stack(clips)), "b t h w c -> b t c h w").float() / 255
    flow = rearrange(torch.from_numpy(np.stack(flows)), "b t h w d -> b t d h w")

    def to_frame(kp: torch.Tensor) -> np.ndarray:
        return np.stack([
            transform_points(k, np.linalg.inv(np.vstack([m, [0, 0, 1]]))[:2])
            for k, m in zip(kp.numpy(), centres)
        ])  # fmt: skip

    still = clip[:, t["frames"] : t["frames"] + 1].expand_as(clip)
    return (
        to_frame(predict_clip(model, codec, clip, flow, True)[0]),
        to_frame(predict_clip(model, codec, still, torch.zeros_like(flow), True)[0]),
    )


def write_two_people(path: Path, boxes: np.ndarray) -> Path:
    """COCO detections of the real person, boxes (T, 4) xyxy px, score TRACK_A, and of a small
    box drifting in a corner, score TRACK_B (higher: first in each frame's rows)."""
    t = np.arange(len(boxes), dtype=np.float32)[:, None]
    other = np.concatenate([2 + 0.5 * t, np.full_like(t, 2), 20 + 0.5 * t, np.full_like(t, 20)], 1)
    dets = [
        {"image_id": i, "category_id": 1, "score": s,
         "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]}
        for i in range(len(boxes)) for b, s in ((boxes[i], TRACK_A), (other[i], TRACK_B))
    ]  # fmt: skip
    path.write_text(json.dumps(dets))
    return path


def test_streaming_equals_the_batch_path_with_two_people(clip_head, test_video, tmp_path):
    """Two boxes per frame: each person's clips (matched by IoU in the neighbour frames) give the
    keypoints of the batch path built from that person's own boxes, to 1e-4 px."""
    video, _ = test_video
    frames = decode(video)
    dets = write_two_people(tmp_path / "dets.json", test_video[1])
    boxes = load_detections(dets)  # the boxes as predict reads them, float32 from x, y, w, h
    got = stream_people(clip_head, video, boxes)
    assert len(got) == 2 * len(frames)
    for score in (TRACK_A, TRACK_B):
        track = np.stack([next(r[:4] for r in boxes[i] if r[4] == np.float32(score))
                          for i in range(len(frames))])  # fmt: skip
        expected, centre_only = batch_keypoints(clip_head, frames, track)
        stream = np.stack([got[(i, score)] for i in range(len(frames))])
        np.testing.assert_allclose(stream, expected, atol=1e-4, rtol=0)
        # The neighbours move the keypoints: the comparison checks the clips, not the centre alone.
        assert np.abs(expected - centre_only).max() > 0.05
    # The written keypoints are the same, rounded to 0.01 px.
    run_predict(clip_head, video, tmp_path / "out", boxes_path=dets, chunk=4, progress=False)
    entries = json.loads((tmp_path / "out" / "keypoints.json").read_text())
    assert len(entries) == 2 * len(frames)
    for e in entries:
        kp = np.reshape(e["keypoints"], (-1, 3))[:, :2]
        np.testing.assert_allclose(kp, got[(e["image_id"], _score(e, boxes))], atol=0.006)


def _score(entry: dict, boxes: dict) -> float:
    """The detection score of a keypoints.json entry's box (matched by its left edge)."""
    rows = boxes[entry["image_id"]]
    return round(float(rows[np.abs(rows[:, 0] - entry["bbox"][0]).argmin(), 4]), 4)


@pytest.mark.parametrize("length", [1, 3])
def test_video_shorter_than_the_clip_span(clip_head, test_video, tmp_path, length):
    """1 or 3 frames against clips spanning 2 * SPAN + 1 = 9: every neighbour is clamped."""
    video = tmp_path / "short.mp4"
    write_mp4(video, np.stack(decode(test_video[0])[:length]), 10)
    frames = decode(video)  # re-decoded: the batch path sees the same pixels
    got = stream_people(clip_head, video, None)
    expected, _ = batch_keypoints(clip_head, frames, None)
    assert sorted(got) == [(i, 1.0) for i in range(length)]
    np.testing.assert_allclose(np.stack([got[(i, 1.0)] for i in range(length)]), expected,
                               atol=1e-4, rtol=0)  # fmt: skip
    meta = run_predict(clip_head, video, tmp_path / "out", progress=False)
    assert meta["frames"] == meta["people"] == length
    assert probe_video(tmp_path / "out" / "overlay.mp4").num_frames == length


def test_ring_buffer_holds_at_most_the_clip_span(clip_head, test_video):
    model, codec, payload = load_pose_model(clip_head)
    stream = ClipStream(model, codec, None, 1.25, payload["crop"]["size"], torch.device("cpu"),
                        False, STEP, "fast")  # fmt: skip
    assert stream.ring.maxlen == 2 * SPAN + 1
    frames = [f.copy() for f in decode(test_video[0]) * 3]  # 48 frames: the buffer turns over
    released: list[int] = []
    for index, image in enumerate(frames):
        released += [r.index for r in stream.push(index, image)]
        assert len(stream.ring) <= 2 * SPAN + 1
        assert len({id(b.image) for b in stream.ring}) == len(stream.ring)
        # Frame t leaves once t + SPAN is in: at most SPAN frames wait.
        assert released == list(range(max(index - SPAN + 1, 0)))
    released += [r.index for r in stream.finish()]
    assert released == list(range(len(frames)))


def test_gaps_and_absent_people_repeat_the_nearest_frame_towards_the_centre(clip_head):
    """A neighbour that did not decode, or where no box overlaps the person, is replaced by the
    nearest frame on the way to the centre that has them; the other person keeps its own boxes."""
    model, codec, payload = load_pose_model(clip_head)
    a = np.array([20, 20, 44, 44, 0.9], np.float32)
    b = np.array([0, 0, 12, 12, 0.8], np.float32)
    boxes = {i: np.stack([a, b]) for i in range(13)}
    boxes[8] = np.array([[50, 0, 62, 12, 0.9], [50, 50, 62, 62, 0.8]], np.float32)  # others
    stream = ClipStream(model, codec, boxes, 1.25, payload["crop"]["size"], torch.device("cpu"),
                        False, STEP, "fast")  # fmt: skip
    rng = np.random.default_rng(0)
    ready = []
    for index in [i for i in range(13) if i != 4]:  # frame 4 did not decode
        ready += stream.push(index, rng.integers(0, 255, (64, 64, 3), np.uint8))
    ready = {r.index: r for r in ready + stream.finish()}
    assert sorted(ready) == [i for i in range(13) if i != 4]
    clip = {r: [j.frame_idx.tolist() for j in ready[r].jobs] for r in (0, 6, 8, 10, 12)}
    assert clip[0] == [[0, 0, 0, 2, 3]] * 2  # clamped at 0; 4 -> 3
    assert clip[6] == [[2, 5, 6, 7, 10]] * 2  # 4 -> 5; a and b are absent from 8 -> 7
    assert clip[8] == [[8] * 5] * 2  # frame 8's people are in no other frame
    assert clip[10] == [[6, 9, 10, 12, 12]] * 2  # the video ends at 12
    assert clip[12] == [[9, 10, 12, 12, 12]] * 2
    job = ready[6].jobs[1]  # person b's crops are cut with b's boxes
    assert np.array_equal(job.row, b) and not job.flows[2].any()


def test_meta_records_the_temporal_settings_and_outputs_match_single_frame(
    clip_head, test_video, tmp_path
):
    video, boxes = test_video
    lifter = save_lifter(tmp_path / "lifter.pt", build_lifter("tcn", 3, channels=16), "tcn", 3,
                         16, {"mpjpe": 1.0})  # fmt: skip
    out = tmp_path / "pred"
    meta = run_predict(clip_head, video, out, boxes_path=video.with_suffix(".npz"),
                       lifter_path=lifter, chunk=5, progress=False)  # fmt: skip
    n = len(boxes)
    t = meta["temporal"]
    assert (t["frames"], t["step"], t["pooling"], t["flow_preset"]) == (2, 2, "average", "fast")
    assert t["clip_frames"] == 5 and t["buffer_frames"] == 9 and t["flow_seconds"] > 0
    assert json.loads((out / "meta.json").read_text())["temporal"] == t
    assert meta["frames"] == meta["people"] == n
    assert [e["image_id"] for e in json.loads((out / "keypoints.json").read_text())] == list(
        range(n)
    )
    assert probe_video(out / "overlay.mp4").num_frames == n
    assert len(json.loads((out / "pose3d.json").read_text())["frames"]) == n
    assert set(meta["outputs"]) == {"keypoints", "overlay", "pose3d", "pose3d_video"}


def test_predict_refuses_a_model_trained_on_the_true_skeleton_motion():
    from css_pose.video_pose import frame_stream

    payload = {
        "crop": {"box_pad": 1.25, "size": 32},
        "temporal": {"step": 1, "flow_preset": "skeleton"},
    }
    with pytest.raises(ValueError, match="DIS flow_preset"):
        frame_stream(None, None, payload, None, "cpu", False)
