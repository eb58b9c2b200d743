"""Render-free 2D/3D pose pairs for lifters (css_pose.data.synthetic.poses, issue 20)."""

from __future__ import annotations

import numpy as np
import pytest

from css_pose.data.synthetic.motions import FAMILIES, sample_angles
from css_pose.data.synthetic.poses import (
    HELD_OUT_FAMILIES,
    IMAGE_PX,
    SPLITS,
    TRAIN_FAMILIES,
    pose_pairs,
)
from css_pose.skeleton import PARENTS


def _families(label: str) -> set[str]:
    return {part for part in label.replace(">", "+").split("+") if part != "random"}


def _fov_deg(seq) -> float:
    return float(np.rad2deg(2 * np.arctan(IMAGE_PX / 2 / seq.camera.focal_length[0])))


@pytest.fixture(scope="module")
def pairs():
    return {split: pose_pairs(split, 40, frames=30, seed=3, cache_dir=None, progress=False)
            for split in SPLITS}  # fmt: skip


def test_2d_is_the_projection_of_3d_and_bones_keep_their_length(pairs):
    for seqs in pairs.values():
        for seq in seqs:
            kp3 = seq.keypoints_3d.astype(np.float64)  # (T, 17, 3) m, camera frame
            assert kp3[..., 2].min() > 0.1  # every joint in front of the camera
            fx, fy = seq.camera.focal_length
            cx, cy = seq.camera.center
            uv = np.stack(
                [fx * kp3[..., 0] / kp3[..., 2] + cx, fy * kp3[..., 1] / kp3[..., 2] + cy], -1
            )
            np.testing.assert_allclose(seq.keypoints_2d, uv, atol=0.05)
            bones = np.linalg.norm(kp3[:, 1:] - kp3[:, [p for p in PARENTS[1:]]], axis=-1)
            np.testing.assert_allclose(bones, bones[:1].repeat(len(bones), 0), atol=1e-4)


def test_held_out_families_and_cameras_never_appear_in_training(pairs):
    train_labels = set().union(*(_families(s.action) for s in pairs["train"]))
    assert train_labels <= set(TRAIN_FAMILIES) and not train_labels & set(HELD_OUT_FAMILIES)
    assert {s.action for s in pairs["train"]} & {"random"}  # random trajectories are drawn
    for seq in pairs["heldout_motion"]:
        assert _families(seq.action) <= set(HELD_OUT_FAMILIES)
    train_fov = [_fov_deg(s) for s in pairs["train"] + pairs["test"]]
    held_fov = [_fov_deg(s) for s in pairs["heldout_camera"]]
    assert 35 <= min(train_fov) and max(train_fov) <= 70
    assert all(f < 25.01 or f > 79.99 for f in held_fov) and min(held_fov) < 25 < 80 < max(held_fov)


def test_the_same_arguments_give_the_same_pairs_and_the_cache_keeps_them(pairs, tmp_path):
    again = pose_pairs("test", 40, frames=30, seed=3, cache_dir=tmp_path, progress=False)
    cached = pose_pairs("test", 40, frames=30, seed=3, cache_dir=tmp_path, progress=False)
    assert len(list(tmp_path.glob("test-*.npz"))) == 1
    for a, b, c in zip(pairs["test"], again, cached, strict=True):
        assert np.array_equal(a.keypoints_2d, b.keypoints_2d)
        assert np.array_equal(b.keypoints_3d, c.keypoints_3d) and b.action == c.action
        assert b.camera == c.camera
    other = pose_pairs("test", 40, frames=30, seed=4, cache_dir=None, progress=False)
    assert not np.array_equal(other[0].keypoints_3d, again[0].keypoints_3d)
    with pytest.raises(ValueError, match="split='val'"):
        pose_pairs("val", 1, cache_dir=None)


def test_sample_angles_draws_only_the_families_it_is_given():
    t = np.arange(60) / 30
    for seed in range(30):
        label, _ = sample_angles(t, 2.0, np.random.default_rng(seed), ["kick", "bend"])
        assert _families(label) <= {"kick", "bend"}
    with pytest.raises(ValueError, match="unknown motion families"):
        sample_angles(t, 2.0, np.random.default_rng(0), ["moonwalk"])
    assert set(FAMILIES) == set(TRAIN_FAMILIES) | set(HELD_OUT_FAMILIES)


def test_lifting_trains_on_pose_pairs_and_scores_every_held_out_split(tmp_path, monkeypatch):
    from css_pose.lifting import main

    monkeypatch.chdir(tmp_path)  # the pairs are cached in data/lift_poses under the cwd
    args = ["--data", "poses", "--sequences", "30", "--eval-sequences", "4", "--steps", "30",
            "--model", "tcn", "--frames", "9", "--channels", "32", "--workers", "1",
            "--no-rendered-test"]  # fmt: skip
    result = main(args)
    assert result["frames"] == 4 * 81
    for split in ("heldout_motion", "heldout_camera"):
        assert 0 < result[f"{split}/mpjpe"] < 2000 and result[f"{split}/frames"] == 4 * 81
    assert len(list((tmp_path / "data" / "lift_poses").glob("*.npz"))) == 4
