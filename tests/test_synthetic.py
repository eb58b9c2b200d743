"""Behaviour of the synthetic pose-video generator and the overlay helpers."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from css_pose.data.synthetic import Occluder, generate_dataset, load_motion_file, render_video
from css_pose.data.synthetic.body import forward_kinematics, sample_body_shape
from css_pose.data.synthetic.generate import assign_splits
from css_pose.skeleton import BONES, JOINT_NAMES
from css_pose.viz import SIDE_COLOURS, contact_sheet, draw_skeleton, save_png

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """Four tiny single-person videos, rendered in this process."""
    out = tmp_path_factory.mktemp("synth")
    generate_dataset(out, videos=4, frames=16, size=64, seed=7, workers=1, progress=False)
    return out


def _manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def _load(out: Path, entry: dict) -> dict[str, np.ndarray]:
    with np.load(out / entry["annotation"], allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def _decode(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def _assert_same_video(a: Path, b: Path, entry: dict) -> None:
    """The two sets' copies of ``entry`` are the same video: the same annotation (floats to 1e-3)
    and decoded frames within 0.5 grey levels on average. Repeated runs on our machines give
    identical bytes, but one CI run rendered a few pixels differently from the same seeds (the
    mdat differed by 24 bytes), so equality of bytes is not what this asserts."""
    ann_a, ann_b = _load(a, entry), _load(b, entry)
    assert ann_a.keys() == ann_b.keys()
    for key, value in ann_a.items():
        if np.issubdtype(value.dtype, np.floating):
            np.testing.assert_allclose(value, ann_b[key], rtol=0, atol=1e-3, err_msg=key)
        else:
            np.testing.assert_array_equal(value, ann_b[key], err_msg=key)
    fa, fb = _decode(a / entry["video"]), _decode(b / entry["video"])
    assert fa.shape == fb.shape
    assert np.abs(fa.astype(np.int16) - fb).mean() < 0.5


def _bone_lengths(kp3d: np.ndarray) -> np.ndarray:
    """(..., 17, 3) -> (..., 16) mm."""
    return np.stack(
        [np.linalg.norm(kp3d[..., c, :] - kp3d[..., p, :], axis=-1) for p, c in BONES], -1
    )


def test_manifest_and_annotation_layout(dataset):
    manifest = _manifest(dataset)
    assert manifest["format"] == "css_pose.synthetic/1"
    assert (manifest["seed"], manifest["size"], manifest["frames"], manifest["people"]) == (
        7,
        64,
        16,
        1,
    )
    assert len(manifest["videos"]) == 4
    for entry in manifest["videos"]:
        assert (dataset / entry["video"]).exists()
        ann = _load(dataset, entry)
        assert ann["keypoints_2d"].dtype == np.float32 and ann["keypoints_2d"].shape == (16, 17, 2)
        assert ann["visibility"].dtype == np.uint8 and set(np.unique(ann["visibility"])) <= {0, 1}
        assert ann["keypoints_3d"].shape == (16, 17, 3) and ann["bboxes"].shape == (16, 4)
        assert ann["camera"].shape == (4,) and float(ann["fps"]) == 30.0
        assert tuple(ann["joint_names"]) == JOINT_NAMES
        assert entry["motions"] and all(m in str(ann["motion"]) for m in entry["motions"])
        assert int(ann["appearance_seed"]) == entry["appearance_seed"]


def test_projection_of_3d_keypoints_gives_2d_keypoints(dataset):
    for entry in _manifest(dataset)["videos"]:
        ann = _load(dataset, entry)
        fx, fy, cx, cy = ann["camera"].astype(np.float64)
        x, y, z = np.moveaxis(ann["keypoints_3d"].astype(np.float64), -1, 0)
        uv = np.stack([fx * x / z + cx, fy * y / z + cy], axis=-1)
        np.testing.assert_allclose(uv, ann["keypoints_2d"], atol=1e-3)
        # People stand 1-10 m in front of the camera, mostly inside the 64 px frame.
        assert 1000 < z.min() and z.max() < 10000
        inside = (uv > -0.5) & (uv < 63.5)
        assert inside.all(axis=-1).mean() > 0.9


def test_bone_lengths_constant_within_video_and_differ_between_videos(dataset):
    per_video = []
    for entry in _manifest(dataset)["videos"]:
        bones = _bone_lengths(_load(dataset, entry)["keypoints_3d"].astype(np.float64))
        np.testing.assert_allclose(bones, np.broadcast_to(bones[0], bones.shape), rtol=1e-4)
        per_video.append(bones[0])
    per_video = np.stack(per_video)
    # Left and right limbs are symmetric; bodies differ between videos.
    assert np.allclose(per_video[:, 1:3], per_video[:, 4:6])
    for i in range(len(per_video)):
        for j in range(i):
            assert np.abs(per_video[i] - per_video[j]).max() > 5.0


def test_boxes_hold_every_keypoint_in_the_image(dataset):
    for entry in _manifest(dataset)["videos"]:
        ann = _load(dataset, entry)
        kp, box = ann["keypoints_2d"], ann["bboxes"]
        inside = ((kp > -0.5) & (kp < 63.5)).all(-1)
        lo, hi = box[:, None, :2], box[:, None, 2:]
        held = ((kp >= lo) & (kp <= hi)).all(-1)
        assert held[inside].all()
        assert (box[:, 2:] > box[:, :2]).all() and box.min() >= -0.5 and box.max() <= 63.5


def test_splits_disjoint_in_appearance_and_motion_seeds(dataset):
    splits = assign_splits(20, seed=3)
    assert (splits.count("train"), splits.count("val"), splits.count("test")) == (14, 3, 3)
    assert sorted(set(assign_splits(3, seed=0))) == ["test", "train", "val"]
    videos = _manifest(dataset)["videos"]
    assert {v["split"] for v in videos} == {"train", "val", "test"}
    for key in ("appearance_seed", "motion_seed"):
        by_split = {
            s: {v[key] for v in videos if v["split"] == s} for s in ("train", "val", "test")
        }
        assert not by_split["train"] & by_split["val"]
        assert not by_split["train"] & by_split["test"]
        assert not by_split["val"] & by_split["test"]


def test_person_is_drawn_where_keypoints_and_box_say(dataset):
    entry = _manifest(dataset)["videos"][0]
    ann = _load(dataset, entry)
    decoded = _decode(dataset / entry["video"]).astype(np.int32)
    assert decoded.shape == (16, 64, 64, 3)
    plate = render_video(frames=16, size=64, appearance_seed=entry["appearance_seed"],
                         motion_seed=entry["motion_seed"], draw_people=False)  # fmt: skip
    np.testing.assert_array_equal(plate.annotation["keypoints_2d"], ann["keypoints_2d"])
    diff = np.abs(decoded - plate.frames.astype(np.int32)).max(axis=-1)
    t, j = np.nonzero(ann["visibility"])
    x, y = np.round(ann["keypoints_2d"][t, j]).astype(int).T
    assert (diff[t, y, x] > 25).mean() > 0.85
    in_box = np.zeros(diff.shape, bool)
    for k, (x0, y0, x1, y1) in enumerate(np.round(ann["bboxes"]).astype(int)):
        in_box[k, max(y0 - 1, 0) : y1 + 2, max(x0 - 1, 0) : x1 + 2] = True
    assert diff[in_box].mean() > 3 * diff[~in_box].mean()


def test_occluder_hides_exactly_the_joints_it_covers():
    kwargs = {"frames": 12, "size": 96, "appearance_seed": 5, "motion_seed": 6}
    free = render_video(**kwargs).annotation
    edge = float(np.median(free["keypoints_2d"][..., 0]))  # about half the joints lie left of it
    wall = Occluder(x0=edge / 2, x1=edge / 2, t0=0, t1=0, y0=-1, y1=97, width=edge + 1,
                    colour=(200, 30, 30))  # fmt: skip
    hidden = render_video(occluders=[wall], **kwargs)
    x = free["keypoints_2d"][..., 0]
    covered, clear = x < edge - 1.5, x > edge + 1.5
    assert covered.sum() > 20 and clear.sum() > 20
    assert (hidden.annotation["visibility"][covered] == 0).all()
    np.testing.assert_array_equal(hidden.annotation["visibility"][clear], free["visibility"][clear])
    assert free["visibility"][clear].mean() > 0.5  # the rest hide behind the body itself
    # The bar is drawn in front of the person, in its own colour (0.7 shade at its left edge).
    assert np.abs(hidden.frames[:, 48, 1].astype(int) - [140, 21, 21]).max() <= 2


def test_joints_outside_the_frame_are_invisible():
    video = render_video(frames=8, size=64, appearance_seed=1, motion_seed=2, fill=(2.5, 2.5))
    kp, vis = video.annotation["keypoints_2d"], video.annotation["visibility"]
    outside = ((kp < -0.5) | (kp >= 63.5)).any(-1)
    assert outside.sum() > 10 and (~outside).sum() > 10
    assert (vis[outside] == 0).all()
    assert vis[~outside].mean() > 0.5


def test_far_arm_hides_behind_the_trunk_when_seen_from_the_side():
    # A person standing still while turning a full circle shows the camera every side of the body.
    frames = 36
    angles = {"root_yaw": np.linspace(0, 360, frames, endpoint=False)}
    joints = forward_kinematics(angles, sample_body_shape(np.random.default_rng(0)))
    joints[..., 1] += 1000.0  # feet roughly on the floor; the renderer only needs y up
    vis = render_video(size=96, motion=joints, appearance_seed=2, motion_seed=3).annotation[
        "visibility"
    ]
    for elbow in (JOINT_NAMES.index("l_elbow"), JOINT_NAMES.index("r_elbow")):
        assert 0 < vis[:, elbow].sum() < frames
    assert vis[:, JOINT_NAMES.index("head")].all()


def test_same_seed_same_video_and_other_seed_differs(dataset, tmp_path):
    generate_dataset(tmp_path / "again", videos=4, frames=16, size=64, seed=7, workers=2,
                     progress=False)  # fmt: skip
    for entry in _manifest(dataset)["videos"]:
        _assert_same_video(dataset, tmp_path / "again", entry)
    generate_dataset(tmp_path / "other", videos=1, frames=16, size=64, seed=8, workers=1,
                     progress=False)  # fmt: skip
    other = _load(tmp_path / "other", _manifest(tmp_path / "other")["videos"][0])
    first = _load(dataset, _manifest(dataset)["videos"][0])
    assert not np.allclose(other["keypoints_3d"], first["keypoints_3d"])


def test_rerun_renders_only_missing_videos(tmp_path):
    generate_dataset(tmp_path, videos=3, frames=8, size=64, seed=1, workers=1, progress=False)
    videos = sorted((tmp_path / "videos").iterdir())
    stamps = {p.name: p.stat().st_mtime_ns for p in videos}
    (tmp_path / "videos" / "synth_00001.npz").unlink()  # as if interrupted before the npz
    generate_dataset(tmp_path, videos=3, frames=8, size=64, seed=1, workers=1, progress=False)
    changed = {p.name for p in videos if p.stat().st_mtime_ns != stamps[p.name]}
    assert changed == {"synth_00001.mp4", "synth_00001.npz"}
    assert not list((tmp_path / "videos").glob(".*tmp"))


def test_families_limit_the_actions_and_keep_older_sets_valid(tmp_path):
    from css_pose.data.synthetic.generate import VideoSpec

    generate_dataset(tmp_path, videos=6, frames=8, size=64, seed=3, workers=1, progress=False,
                     families=["wave", "punch"])  # fmt: skip
    manifest = _manifest(tmp_path)
    assert manifest["options"]["families"] == ["wave", "punch"]
    used = {f for v in manifest["videos"] for f in v["motions"]}
    assert used and used <= {"wave", "punch"}
    # A spec without families writes the JSON of the sets made before the option existed, so
    # those sets are reused, not rendered again.
    spec = VideoSpec("v", "train", 1, 2, 8, 64, 30.0, 1, False, False, False, None)
    assert "families" not in json.loads(spec.to_json())
    with pytest.raises(ValueError, match="wavy"):
        generate_dataset(tmp_path / "bad", videos=2, families=["wavy"], progress=False)


def test_multi_person_layout_has_person_axis_and_track_ids():
    video = render_video(frames=10, size=64, people=3, appearance_seed=4, motion_seed=4,
                         occluders=True, motion_blur=True, pan=True)  # fmt: skip
    ann = video.annotation
    assert ann["keypoints_2d"].shape == (3, 10, 17, 2)
    assert ann["keypoints_3d"].shape == (3, 10, 17, 3)
    assert ann["visibility"].shape == (3, 10, 17) and ann["bboxes"].shape == (3, 10, 4)
    np.testing.assert_array_equal(ann["track_ids"], [0, 1, 2])
    assert ann["track_ids"].dtype == np.int64 and ann["motion"].shape == (3,)
    # Different people, different bodies.
    bones = _bone_lengths(ann["keypoints_3d"][:, 0].astype(np.float64))
    assert np.abs(bones[0] - bones[1]).max() > 5 and np.abs(bones[1] - bones[2]).max() > 5
    assert video.frames.shape == (10, 64, 64, 3)


def test_motion_file_round_trip(tmp_path):
    seeds = {"appearance_seed": 11, "motion_seed": 12}
    first = render_video(frames=12, size=64, **seeds).annotation
    # Camera -> world with the stored extrinsics gives the motion in the documented world frame.
    rt = first["world_to_camera"].astype(np.float64)
    world = np.einsum("tji,tkj->tki", rt[:, :, :3], first["keypoints_3d"] - rt[:, None, :, 3])
    assert np.allclose(world[:, JOINT_NAMES.index("head"), 1], 1500, atol=450)  # y up, mm
    path = tmp_path / "motion.npz"
    np.savez(path, keypoints_3d=world.astype(np.float32))
    second = render_video(size=64, motion=load_motion_file(path), **seeds).annotation
    np.testing.assert_allclose(second["keypoints_3d"], first["keypoints_3d"], atol=0.05)
    np.testing.assert_allclose(second["keypoints_2d"], first["keypoints_2d"], atol=0.01)
    assert str(second["motion"]) == "external"
    # Through the dataset API: every video renders the file, each with its own look and camera.
    manifest = generate_dataset(tmp_path / "set", videos=2, size=64, motion=path, workers=1,
                                progress=False)  # fmt: skip
    entries = json.loads(manifest.read_text())["videos"]
    assert [e["motions"] for e in entries] == [["external"], ["external"]]
    assert [e["frames"] for e in entries] == [12, 12]


@pytest.mark.parametrize(
    ("array", "message"),
    [(np.zeros((10, 16, 3)), "shape"), (np.ones((10, 3, 17)), "Transpose"),
     (np.random.default_rng(0).random((5, 17, 3)), "metres")],
)  # fmt: skip
def test_bad_motion_file_names_the_file_and_the_fix(tmp_path, array, message):
    path = tmp_path / "bad_motion.npz"
    np.savez(path, keypoints_3d=array)
    with pytest.raises(ValueError, match=message) as err:
        load_motion_file(path)
    assert "bad_motion.npz" in str(err.value)


def test_cli_runs_and_rejects_bad_motion(tmp_path):
    cmd = [sys.executable, "-m", "css_pose.data.synthetic", "--out", str(tmp_path / "cli"),
           "--videos", "3", "--frames", "6", "--size", "64", "--seed", "2", "--workers", "1"]  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    manifest = _manifest(tmp_path / "cli")
    assert sorted(v["split"] for v in manifest["videos"]) == ["test", "train", "val"]
    assert len(_decode(tmp_path / "cli" / manifest["videos"][0]["video"])) == 6
    bad = tmp_path / "wrong.npz"
    np.savez(bad, keypoints_3d=np.zeros((4, 17)))
    done = subprocess.run([*cmd, "--motion", str(bad)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 2 and "wrong.npz" in done.stderr


def test_draw_skeleton_colours_sides_and_keeps_input():
    image = np.zeros((128, 128, 3), np.uint8)
    kp = np.full((17, 2), np.nan)  # joints without a position are skipped, with their bones
    kp[JOINT_NAMES.index("l_wrist")] = (20, 20)
    kp[JOINT_NAMES.index("r_wrist")] = (100, 20)
    vis = np.ones(17, np.uint8)
    vis[JOINT_NAMES.index("r_wrist")] = 0
    out = draw_skeleton(image, kp, vis)
    assert image.max() == 0 and out is not image
    assert tuple(out[20, 20]) == SIDE_COLOURS["l"]
    # An invisible joint is a ring: its centre stays dark, its rim takes the side colour.
    assert out[20, 100].max() == 0 and out[20, 102, 0] > 100


def test_contact_sheet_and_png(tmp_path):
    tiles = [np.full((20, 30, 3), v, np.uint8) for v in (10, 100, 200)]
    sheet = contact_sheet(tiles, ncols=2, labels=["a", "b", "c"])
    assert sheet.shape == (40, 60, 3)
    assert sheet[19, 59, 0] == 100 and sheet[39, 29, 0] == 200 and sheet[39, 59, 0] == 0
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[..., 0] = 255  # pure red
    path = save_png(tmp_path / "sub" / "red.png", rgb)
    assert tuple(cv2.imread(str(path))[0, 0]) == (0, 0, 255)  # BGR on disk


@pytest.mark.slow
def test_default_set_renders_within_a_minute(tmp_path):
    start = time.perf_counter()
    generate_dataset(tmp_path, progress=False)  # 64 videos x 120 frames at 128 px
    assert time.perf_counter() - start < 60


def _crawl(frames: int = 12) -> np.ndarray:
    """(T, 17, 3) world mm: on hands and knees, crawling 1 m along z, the head 6 cm above the
    floor, so the clip is long along z and low."""
    swing = 15 * np.sin(np.linspace(0, 2 * np.pi, frames))
    angles = {
        "l_hip_flex": 90 + swing, "r_hip_flex": 90 - swing, "l_knee": np.full(frames, 90.0),
        "r_knee": np.full(frames, 90.0), "l_shoulder_flex": 90 - swing,
        "r_shoulder_flex": 90 + swing, "torso_pitch": np.full(frames, 30.0),
        "neck_pitch": np.full(frames, 40.0),
    }  # fmt: skip
    upright = forward_kinematics(angles, sample_body_shape(np.random.default_rng(0)))
    # Tip the upright pose forward by 90 degrees: the torso along +z, the thighs pointing down.
    joints = np.stack([upright[..., 0], -upright[..., 2], upright[..., 1]], axis=-1)
    joints[..., 2] += np.linspace(0, 1000, frames)[:, None]
    joints[..., 1] += 80 - joints[..., 1].min()
    joints[:, JOINT_NAMES.index("head"), 1] = 60.0
    return joints


def test_motion_near_the_floor_gets_another_camera_draw(tmp_path):
    """Seen from straight ahead, the crawl runs into the camera (dataset seed 17's first camera
    draw for video 0 does); the camera is drawn again, deterministically, until it frames it."""
    path = tmp_path / "crawl.npz"
    np.savez(path, keypoints_3d=_crawl())
    sets = [tmp_path / "a", tmp_path / "b"]
    for out in sets:
        generate_dataset(out, videos=2, size=64, seed=17, motion=path, workers=1, progress=False)
    for entry in _manifest(sets[0])["videos"]:
        ann = _load(sets[0], entry)
        assert ann["keypoints_3d"][..., 2].min() > 100  # in front of the camera
        _assert_same_video(sets[0], sets[1], entry)


def test_motion_no_camera_can_frame_says_what_was_tried(tmp_path):
    # A flat clip 5 cm across (just large enough for load_motion_file): any camera that frames
    # it stands closer than 10 cm.
    flat = np.random.default_rng(0).uniform(-20, 20, (12, 17, 3))
    flat[..., 1] = 100 + 0.05 * flat[..., 1]
    flat[:, 0, 0], flat[:, 1, 0] = -26, 26
    path = tmp_path / "flat_motion.npz"
    np.savez(path, keypoints_3d=flat)
    with pytest.raises(ValueError) as err:
        generate_dataset(tmp_path / "set", videos=1, size=64, motion=path, workers=1,
                         progress=False)  # fmt: skip
    message = str(err.value)
    for part in ("synth_00000", "flat_motion.npz", "the external motion", "100 mm in front",
                 "all 16 camera draws", "the framed points span", "metres instead of mm"):  # fmt: skip
        assert part in message, message
