"""css-pose predict end to end: a head trained on a tiny synthetic set, run over a generated video."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_heads2d import head_args
from test_linear_probe import css_ckpt, one_thread, probe_root  # noqa: F401 (fixtures)
from video_fixtures import (
    damage_packets,
    frame_index,
    frame_pattern,
    person_track,
    write_annotation,
    write_video,
)

from css_pose.checkpoint import CheckpointError, save_torch_file
from css_pose.cli import main as cli
from css_pose.data.detections import load_detections
from css_pose.data.synthetic.io import write_mp4
from css_pose.data.video import VideoReadError, VideoStream, probe_video
from css_pose.heads2d import main as train_head
from css_pose.models.lifter_model import build_lifter, save_lifter
from css_pose.models.pose_model import load_pose_model
from css_pose.predict import run_predict


@pytest.fixture(scope="module")
def trained(css_ckpt, tmp_path_factory):  # noqa: F811
    """A composite head fine-tuned on every labeled training frame; its measured test error."""
    run = tmp_path_factory.mktemp("head")
    result = train_head(
        head_args(css_ckpt, run, head="composite", encoder="finetune", epochs=15, num_images=0)
    )
    return run / "head.pt", result


def labeled_test_video(root: Path) -> tuple[Path, dict]:
    manifest = json.loads((root / "manifest.json").read_text())
    entry = next(v for v in manifest["videos"] if v["split"] == "test")
    with np.load(root / entry["annotation"]) as ann:
        labels = {k: ann[k] for k in ("keypoints_2d", "visibility", "bboxes")}
    return root / entry["video"], labels


def write_detections(path: Path, boxes: np.ndarray) -> Path:
    dets = [
        {"image_id": t, "category_id": 1, "score": 0.9,
         "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]}
        for t, b in enumerate(boxes)
    ]  # fmt: skip
    # A low-score and a non-person detection that must be ignored.
    dets.append({"image_id": 0, "category_id": 1, "score": 0.05, "bbox": [0, 0, 5, 5]})
    dets.append({"image_id": 1, "category_id": 3, "score": 0.99, "bbox": [0, 0, 5, 5]})
    path.write_text(json.dumps(dets))
    return path


def predict_test_video(model: Path, root: Path, tmp_path: Path) -> tuple[Path, dict, Path]:
    """css-pose predict on the set's first test video with its annotated boxes as detections:
    (the video, its labels, predict's --out folder)."""
    video, labels = labeled_test_video(root)
    boxes = write_detections(tmp_path / "dets.json", labels["bboxes"])
    out = tmp_path / "pred"
    assert cli(["predict", "--model", str(model), "--video", str(video), "--boxes", str(boxes),
                "--out", str(out)]) == 0  # fmt: skip
    return video, labels, out


def test_frame_folder_predicts_like_its_video_and_reads_back_as_coco(trained, probe_root, tmp_path):  # noqa: F811
    """A folder of the video's frames (lossless PNG) is a video to predict: same keypoints; and
    keypoints.json read back through the COCO reader is what predict wrote."""
    import cv2

    from css_pose.data.coco import read_coco

    model, _ = trained
    video, labels = labeled_test_video(probe_root)
    folder = tmp_path / "frames"
    folder.mkdir()
    stream = VideoStream.open(video)
    for index, frame in stream.frames():
        cv2.imwrite(str(folder / f"{index + 1:06d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    stream.close()
    boxes = write_detections(tmp_path / "dets.json", labels["bboxes"])
    outs = {}
    for name, source in (("video", video), ("folder", folder)):
        outs[name] = tmp_path / name
        assert cli(["predict", "--model", str(model), "--video", str(source), "--boxes",
                    str(boxes), "--out", str(outs[name])]) == 0  # fmt: skip
    a = json.loads((outs["video"] / "keypoints.json").read_text())
    b = json.loads((outs["folder"] / "keypoints.json").read_text())
    assert len(a) == len(b) == len(labels["bboxes"])
    for x, y in zip(a, b, strict=True):
        assert x["image_id"] == y["image_id"]
        assert np.allclose(x["keypoints"], y["keypoints"], atol=0.02)
    meta = json.loads((outs["folder"] / "meta.json").read_text())
    assert meta["layout"] == "h36m17" and meta["frames"] == len(labels["bboxes"])
    read = read_coco(outs["folder"] / "keypoints.json", layout=meta["layout"])
    for entry, person in zip(b, read.people, strict=True):
        triples = np.asarray(entry["keypoints"]).reshape(17, 3)
        assert person.image_id == entry["image_id"] and person.score == entry["score"]
        assert np.array_equal(person.keypoints, triples[:, :2])
        assert np.allclose(person.scores, triples[:, 2])


def test_predict_matches_ground_truth_within_measured_accuracy(trained, probe_root, tmp_path):  # noqa: F811
    model, result = trained
    video, labels, out = predict_test_video(model, probe_root, tmp_path)

    entries = json.loads((out / "keypoints.json").read_text())
    n = len(labels["bboxes"])
    assert sorted(e["image_id"] for e in entries) == list(range(n))  # one person per frame
    kp = np.array([e["keypoints"] for e in sorted(entries, key=lambda e: e["image_id"])])
    kp = kp.reshape(n, 17, 3)
    assert ((kp[..., 2] >= 0) & (kp[..., 2] <= 1.0 + 1e-6)).all()  # per-joint scores
    vis = labels["visibility"] > 0
    err = np.linalg.norm(kp[..., :2] - labels["keypoints_2d"], axis=-1)[vis].mean()
    # The head's test error is in crop px; a crop covers box_pad x the box's longer side.
    b = labels["bboxes"]
    crop_to_frame = (np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]) * 1.25 / 64).mean()
    measured = result["metrics"]["px_error"] * crop_to_frame
    assert err <= 1.5 * measured + 1.0, (err, measured)
    # ... and far better than an untrained guess would be: the tolerance is meaningful.
    mean_pose = labels["keypoints_2d"][vis].mean(0)
    assert err < 0.8 * np.linalg.norm(labels["keypoints_2d"][vis] - mean_pose, axis=-1).mean()

    info, src = probe_video(out / "overlay.mp4"), probe_video(video)
    assert (info.num_frames, info.width, info.height) == (src.num_frames, src.width, src.height)
    assert info.fps == pytest.approx(src.fps)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["frames"] == n and meta["people"] == n
    assert meta["model_test_metrics"]["px_error"] == pytest.approx(result["metrics"]["px_error"])

    # The video's own annotation (.npz) gives the same boxes, hence the same keypoints.
    run_predict(
        model, video, tmp_path / "npz", boxes_path=video.with_suffix(".npz"), progress=False
    )
    again = json.loads((tmp_path / "npz" / "keypoints.json").read_text())
    # (the JSON boxes went through x, y, w, h in float: equal up to rounding)
    np.testing.assert_allclose(
        [e["keypoints"] for e in again], [e["keypoints"] for e in entries], atol=0.05
    )


def test_whole_frame_odd_size_and_lifter(trained, tmp_path):
    """No detection file: one person per frame from the whole frame; odd sizes keep their size;
    a lifter adds pose3d.json and an animated plot."""
    model, _ = trained
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (7, 49, 65, 3), dtype=np.uint8)
    video = tmp_path / "odd.mkv"
    import av

    with av.open(str(video), "w") as container:
        stream = container.add_stream("ffv1", rate=10)
        stream.width, stream.height, stream.pix_fmt = 65, 49, "bgr0"
        for f in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        container.mux(stream.encode())
    lifter = build_lifter("tcn", 3, channels=16)
    lifter_path = save_lifter(tmp_path / "lifter.pt", lifter, "tcn", 3, 16, {"mpjpe": 1.0})
    out = tmp_path / "pred"
    meta = run_predict(model, video, out, lifter_path=lifter_path, chunk=3, progress=False)
    assert meta["frames"] == 7 and meta["people"] == 7
    info = probe_video(out / "overlay.mp4")
    assert (info.num_frames, info.width, info.height) == (7, 65, 49)
    pose3d = json.loads((out / "pose3d.json").read_text())
    assert len(pose3d["frames"]) == 7
    arr = np.array([f["keypoints_3d"] for f in pose3d["frames"]])
    assert arr.shape == (7, 17, 3) and np.isfinite(arr).all()
    assert probe_video(out / "pose3d.mp4").num_frames == 7


def test_bad_inputs_name_the_file(trained, css_ckpt, tmp_path, capsys):  # noqa: F811
    model, _ = trained
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all")
    with pytest.raises(VideoReadError, match="broken.mp4"):
        run_predict(model, broken, tmp_path / "o1", progress=False)
    assert not (tmp_path / "o1" / "overlay.mp4").exists()
    # A pretraining checkpoint is not a pose model: the message says what to do.
    with pytest.raises(CheckpointError, match="train_head.py"):
        load_pose_model(css_ckpt)
    payload = torch.load(model, weights_only=True)
    payload["joints"] = payload["joints"][:13]
    save_torch_file(payload, tmp_path / "penn.pt")  # a valid file with another skeleton
    with pytest.raises(CheckpointError, match="skeleton mismatch"):
        load_pose_model(tmp_path / "penn.pt")
    payload = torch.load(model, weights_only=True)
    assert payload["layout"] == "h36m17"
    payload["layout"] = "coco17"
    save_torch_file(payload, tmp_path / "coco.pt")  # 17 joints, but in COCO's order
    with pytest.raises(CheckpointError, match=r"coco.pt holds COCO-17 keypoints .* Human3.6M-17"):
        load_pose_model(tmp_path / "coco.pt")
    (tmp_path / "dets.json").write_text('[{"image_id": 0}]')
    with pytest.raises(ValueError, match="dets.json: entry 0"):
        load_detections(tmp_path / "dets.json")
    # The console script prints one line naming the file and exits 1, without a traceback.
    video = tmp_path / "v.mp4"
    write_mp4(video, np.zeros((2, 64, 64, 3), np.uint8), 10)
    code = cli(["predict", "--model", str(css_ckpt), "--video", str(video), "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1 and str(css_ckpt) in err and "Traceback" not in err
    assert cli([]) == 2 and cli(["train"]) == 2
    assert cli(["report", str(tmp_path / "no_run_here")]) == 2
    assert "no_run_here" in capsys.readouterr().err


def _bframe_avi(path: Path, frames: int) -> Path:
    """H.264 with B-frames in AVI, which stamps frames with their decode order."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 128, 96, "yuv420p"
        stream.options = {"g": "12", "x264-params": "bframes=3:b-adapt=0"}
        for i in range(frames):
            image = av.VideoFrame.from_ndarray(frame_pattern(i, 128, 96), format="rgb24")
            container.mux(stream.encode(image))
        container.mux(stream.encode())
    return path


def test_frame_indices_come_from_timestamps(tmp_path):
    """Frames that do not decode leave a gap in the indices; decode-order stamps (AVI with
    B-frames) still give each frame its own index."""
    import av

    damaged = damage_packets(write_video(tmp_path / "v.mp4", 40, gop=1), tmp_path / "bad.mp4",
                             {10, 11, 12, 25})  # fmt: skip
    avi = _bframe_avi(tmp_path / "b.avi", 30)
    with av.open(str(avi)) as container:
        stamps = [f.pts for f in container.decode(video=0)]
    assert stamps != sorted(stamps)  # the case under test: stamps out of presentation order
    for path, expected in [
        (damaged, [i for i in range(40) if i not in (10, 11, 12, 25)]),
        (avi, list(range(30))),
    ]:
        source = VideoStream.open(path)
        try:
            pairs = [(index, frame_index(image)) for index, image in source.frames()]
        finally:
            source.close()
        assert pairs == [(i, i) for i in expected], path.name


def test_undecodable_frames_keep_their_index_and_are_marked_missing(trained, tmp_path, capsys):
    """A video whose frames 10-12 and 25 do not decode: every other frame keeps its true index
    (its boxes and keypoints stay aligned), the missing ones are named in a warning and marked
    missing in keypoints.json, overlay.mp4, meta.json and pose3d.json."""
    import av

    model, _ = trained
    lost = [10, 11, 12, 25]
    video = damage_packets(write_video(tmp_path / "v.mp4", 40, gop=1), tmp_path / "bad.mp4",
                           set(lost))  # fmt: skip
    boxes = write_annotation(tmp_path / "bad.npz", [person_track(40, 128, 96)])
    lifter = build_lifter("tcn", 3, channels=16)
    lifter_path = save_lifter(tmp_path / "lifter.pt", lifter, "tcn", 3, 16, {"mpjpe": 1.0})
    out = tmp_path / "pred"
    meta = run_predict(model, video, out, boxes_path=boxes, lifter_path=lifter_path, chunk=8,
                       progress=False)  # fmt: skip
    decoded = [i for i in range(40) if i not in lost]

    entries = json.loads((out / "keypoints.json").read_text())
    assert [e["image_id"] for e in entries] == decoded
    with np.load(boxes) as ann:
        xyxy = ann["bboxes"]
    for e in entries:  # each frame's own box, not a neighbour's
        x, y, w, h = e["bbox"]
        np.testing.assert_allclose([x, y, x + w, y + h], xyxy[e["image_id"]], atol=0.01)

    assert meta["frames"] == 40 and meta["decoded_frames"] == 36
    assert meta["missing_frames"] == lost
    warning = "[css_pose] warning: " + meta["warnings"][0]
    assert "bad.mp4: 4 of 40 frames did not decode: frames 10-12, 25" in warning
    assert warning in capsys.readouterr().err
    assert json.loads((out / "meta.json").read_text())["missing_frames"] == lost

    # overlay frame i is input frame i; the missing ones are black.
    with av.open(str(out / "overlay.mp4")) as container:
        overlay = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(overlay) == 40
    assert [frame_index(overlay[i]) for i in decoded] == decoded
    assert all(overlay[i].mean() < 2 for i in lost)

    frames = json.loads((out / "pose3d.json").read_text())["frames"]
    assert [f["image_id"] for f in frames] == list(range(40))
    assert [f["image_id"] for f in frames if f["missing"]] == lost
    assert all(f["keypoints_3d"] is None and not f["observed"] for f in frames if f["missing"])
    assert all(np.isfinite(f["keypoints_3d"]).all() for f in frames if not f["missing"])


def test_head_keypoints_for_lifters_equal_predict(trained, probe_root, tmp_path):  # noqa: F811
    """The lifter's head 2D (css_pose.lifting_input) is what css-pose predict writes for the same
    video and boxes, and a second call reads the cache."""
    from css_pose.lifting_input import head_keypoints

    model, _ = trained
    video, _, out = predict_test_video(model, probe_root, tmp_path)
    entries = sorted(json.loads((out / "keypoints.json").read_text()), key=lambda e: e["image_id"])
    written = np.array([e["keypoints"] for e in entries]).reshape(len(entries), 17, 3)[..., :2]
    head = head_keypoints(model, probe_root, splits=("test",), progress=False)
    assert np.allclose(head[video.stem], written, atol=0.02)
    assert list(probe_root.glob("head_2d/*.npz"))
    again = head_keypoints(model, probe_root, splits=("test",), progress=False)
    assert all(np.array_equal(head[k], again[k]) for k in head)


def test_lifter_cli_scores_head_2d_and_trains_on_fitted_noise(trained, probe_root, tmp_path):  # noqa: F811
    """--head-2d scores the rendered test split from the head's 2D as well as from the ground
    truth, fits a noise model on the train split, and --train-2d noise / head train on it."""
    from css_pose.lifting import main as lift
    from css_pose.lifting_input import NoiseModel

    model, _ = trained
    common = ["--synthetic-root", str(probe_root), "--head-2d", str(model), "--model", "tcn",
              "--frames", "3", "--channels", "16", "--steps", "3", "--batch-size", "8"]  # fmt: skip
    noise_path = tmp_path / "noise.json"
    saved = tmp_path / "lifter.pt"
    own = lift(["--data", "synthetic", "--train-2d", "head", "--save-noise", str(noise_path),
                "--save", str(saved), *common])  # fmt: skip
    assert {"mpjpe", "rendered_test_head2d/mpjpe"} <= set(own)
    # The head's 2D is not the ground truth, so the two scores differ.
    assert own["mpjpe"] != own["rendered_test_head2d/mpjpe"]
    # --evaluate scores the saved lifter again without training it.
    again = lift(["--data", "synthetic", "--evaluate", str(saved), *common])
    for key in ("mpjpe", "rendered_test_head2d/mpjpe"):
        assert again[key] == pytest.approx(own[key], rel=1e-5)
    noise = NoiseModel.load(noise_path)
    assert noise.frames > 0 and len(noise.sigma) == 17 and 0 < np.mean(noise.sigma) < 0.2
    poses = lift(["--data", "poses", "--sequences", "20", "--eval-sequences", "4", "--workers", "1",
                  "--train-2d", "noise", *common])  # fmt: skip
    assert {"heldout_motion/mpjpe", "rendered_test/mpjpe", "rendered_test_head2d/mpjpe"} <= set(
        poses
    )
    with pytest.raises(SystemExit, match="needs --head-2d"):
        lift(["--data", "poses", "--train-2d", "noise", "--steps", "1"])


def test_readme_lifter_command_works_on_a_fresh_clone(trained, tmp_path, monkeypatch, capsys):
    """README step 3 in an empty folder that holds step 2's head: it generates the rendered set
    (tiny here) and render-free pairs (few here, with a 2-step schedule appended), scores the
    head's 2D, and saves the lifter where step 4 reads it; a second run reuses the set."""
    import shutil

    from test_lifters import readme_lifter_command

    from css_pose import lifting, lifting_data

    argv = readme_lifter_command()
    assert argv[argv.index("--data") + 1] == "poses" and "--synthetic-root" not in argv
    monkeypatch.chdir(tmp_path)
    head = tmp_path / argv[argv.index("--head-2d") + 1]
    head.parent.mkdir(parents=True)
    shutil.copy(trained[0], head)
    tiny = {"videos": 4, "frames": 12, "size": 64, "seed": 1}
    monkeypatch.setattr(lifting_data, "SYNTHETIC_SET", tiny)
    short = ["--sequences", "20", "--eval-sequences", "4", "--workers", "1", "--steps", "2",
             "--batch-size", "8"]  # fmt: skip
    result = lifting.main([*argv, *short])
    out = capsys.readouterr().out
    assert "generating the synthetic lifting set in data/synthetic_lift" in out
    manifest = json.loads((tmp_path / "data/synthetic_lift/manifest.json").read_text())
    assert len(manifest["videos"]) == 4 and manifest["seed"] == 1
    saved = tmp_path / argv[argv.index("--save") + 1]
    assert saved.is_file() and np.isfinite(result["rendered_test_head2d/mpjpe"])
    lifting.main([*argv, *short])
    assert "generating" not in capsys.readouterr().out
