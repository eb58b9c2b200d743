"""VideoPose3D npz format: reading, world -> camera, normalisation, splits, averaging, export."""

from __future__ import annotations

import math

import numpy as np
import pytest

from css_pose.data.h36m import (
    H36M_32_TO_17,
    H36M_CAMERAS,
    Camera,
    action_wise_mean,
    export_synthetic_to_videopose3d,
    load_videopose3d,
    normalize_screen_coordinates,
    quaternion_to_matrix,
    split_subjects,
    world_to_camera,
)
from css_pose.data.synthetic import generate_dataset
from css_pose.layouts import LayoutMismatchError

ACTIONS = ("Walking", "Walking 1")


@pytest.fixture
def fake_h36m(tmp_path):
    """A 2-subject (S1 train, S9 test) pair in the exact VideoPose3D layout."""
    rng = np.random.default_rng(0)
    positions_3d, positions_2d = {}, {}
    for subject in ("S1", "S9"):
        positions_3d[subject] = {a: rng.normal(size=(5 + i, 32, 3)) for i, a in enumerate(ACTIONS)}
        positions_2d[subject] = {
            a: [rng.uniform(0, 1000, size=(len(p), 17, 2)).astype(np.float32) for _ in range(4)]
            for a, p in positions_3d[subject].items()
        }
    metadata = {"layout_name": "h36m", "num_joints": 17, "keypoints_symmetry": [[4], [1]]}
    path_3d, path_2d = tmp_path / "data_3d_h36m.npz", tmp_path / "data_2d_h36m_gt.npz"
    np.savez_compressed(path_3d, positions_3d=np.array(positions_3d, dtype=object))
    np.savez_compressed(
        path_2d,
        positions_2d=np.array(positions_2d, dtype=object),
        metadata=np.array(metadata, dtype=object),
    )
    return path_3d, path_2d, positions_3d, positions_2d


def test_reader_selects_joints_and_moves_to_each_camera(fake_h36m):
    path_3d, path_2d, positions_3d, positions_2d = fake_h36m
    sequences = load_videopose3d(path_3d, path_2d)
    assert len(sequences) == 2 * 2 * 4
    seq = next(s for s in sequences if (s.subject, s.action) == ("S9", "Walking 1") and
               s.camera.id == "58860488")  # fmt: skip
    world = positions_3d["S9"]["Walking 1"][:, list(H36M_32_TO_17)]
    assert seq.keypoints_3d.shape == (6, 17, 3)
    np.testing.assert_allclose(seq.keypoints_2d, positions_2d["S9"]["Walking 1"][2])
    # Independent check of the transform: R^T (X - t) with R from the quaternion.
    camera = H36M_CAMERAS["S9"][2]
    rotation = quaternion_to_matrix(camera.orientation)
    expected = np.einsum("ij,tki->tkj", rotation, world - np.array(camera.translation) / 1000)
    np.testing.assert_allclose(seq.keypoints_3d, expected, atol=1e-5)


def test_world_to_camera_by_hand():
    # Camera rotated 90 degrees about z (camera x axis = world y axis), centred at x = 1 m.
    s = math.sqrt(0.5)
    camera = Camera("c", (0, 0), (1, 1), 10, 10, (s, 0.0, 0.0, s), (1000.0, 0.0, 0.0))
    points = np.array([[1.0, 1.0, 0.0], [1.0, 0.0, 2.0], [2.0, 0.0, 0.0]])
    # X - t = (0,1,0), (0,0,2), (1,0,0); R^T maps world y -> camera x, world x -> camera -y.
    expected = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 2.0], [0.0, -1.0, 0.0]])
    np.testing.assert_allclose(world_to_camera(points, camera), expected, atol=1e-6)


def test_camera_table_rotations_are_proper():
    assert set(H36M_CAMERAS) == {"S1", "S5", "S6", "S7", "S8", "S9", "S11"}
    for cameras in H36M_CAMERAS.values():
        assert [c.id for c in cameras] == ["54138969", "55011271", "58860488", "60457274"]
        for camera in cameras:
            assert abs(np.linalg.norm(camera.orientation) - 1) < 1e-4
            r = quaternion_to_matrix(camera.orientation)
            np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-9)
            assert abs(np.linalg.det(r) - 1) < 1e-9


def test_normalize_screen_coordinates():
    xy = np.array([[0.0, 0.0], [1000.0, 1002.0], [500.0, 501.0]])
    out = normalize_screen_coordinates(xy, 1000, 1002)
    np.testing.assert_allclose(out, [[-1, -1.002], [1, 1.002], [0, 0]], atol=1e-6)


def test_splits():
    assert split_subjects({"S1", "S5", "S9", "S11", "S6", "S7", "S8"}) == (
        ("S1", "S5", "S6", "S7", "S8"),
        ("S9", "S11"),
    )
    assert split_subjects({"train", "val", "test"}) == (("train",), ("test",))
    assert split_subjects({"S1", "S9"}) == (("S1",), ("S9",))


def test_action_wise_mean_weights_frames_within_and_actions_equally():
    mean, per_action = action_wise_mean(
        [("Walking 1", 10.0, 100), ("Walking", 20.0, 300), ("Eating", 40.0, 10)]
    )
    assert per_action == {"Eating": 40.0, "Walking": 17.5}
    assert mean == pytest.approx(28.75)


def _write_2d(path, positions_2d, metadata):
    np.savez(path, positions_2d=np.array(positions_2d, dtype=object),
             metadata=np.array(metadata, dtype=object))  # fmt: skip
    return path


def test_wrong_joint_count_is_an_error(fake_h36m, tmp_path):
    path_3d, _, _, positions_2d = fake_h36m
    metadata = {"layout_name": "h36m", "num_joints": 16, "keypoints_symmetry": [[], []]}
    bad = _write_2d(tmp_path / "bad_2d.npz", positions_2d, metadata)
    with pytest.raises(ValueError, match="17 2D joints"):
        load_videopose3d(path_3d, bad)


def test_coco_ordered_2d_is_refused_with_both_layouts_named(fake_h36m, tmp_path):
    """VideoPose3D's COCO detections have 17 joints too: the joint count cannot catch them."""
    path_3d, _, _, positions_2d = fake_h36m
    metadata = {"layout_name": "coco", "num_joints": 17, "keypoints_symmetry": [[1], [2]]}
    coco = _write_2d(tmp_path / "data_2d_h36m_detectron_pt_coco.npz", positions_2d, metadata)
    with pytest.raises(LayoutMismatchError) as err:
        load_videopose3d(path_3d, coco)
    text = str(err.value)
    assert str(coco) in text and "COCO-17" in text and "Human3.6M-17" in text, text
    assert "css_pose.layouts.convert" in text
    metadata["layout_name"] = "openpose25"
    other = _write_2d(tmp_path / "other.npz", positions_2d, metadata)
    with pytest.raises(ValueError, match="layout_name='openpose25' is not one of h36m, coco"):
        load_videopose3d(path_3d, other)


def test_synthetic_export_round_trip(tmp_path):
    root = tmp_path / "synth"
    generate_dataset(root, videos=4, frames=6, size=64, seed=3, workers=1, progress=False)
    path_3d, path_2d = export_synthetic_to_videopose3d(root, tmp_path / "vp3d")
    sequences = load_videopose3d(path_3d, path_2d)
    assert len(sequences) == 4
    for seq in sequences:
        with np.load(root / "videos" / f"{seq.action}.npz") as ann:
            np.testing.assert_allclose(seq.keypoints_3d * 1000, ann["keypoints_3d"], rtol=1e-6)
            np.testing.assert_array_equal(seq.keypoints_2d, ann["keypoints_2d"])
        assert (seq.camera.res_w, seq.camera.res_h) == (64, 64)
    assert {s.subject for s in sequences} <= {"train", "val", "test"}
