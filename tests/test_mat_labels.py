"""JHMDB and Penn Action .mat labels on small files written here in their layouts: reading,
malformed files, and conversion to a css_pose annotation that the index reads beside a frame
folder."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from scipy.io import savemat

from css_pose.data.index import index_videos
from css_pose.data.loading import load_annotation
from css_pose.data.mat_labels import (
    MatLabelError,
    read_jhmdb,
    read_penn_action,
    write_annotation,
)
from css_pose.layouts import get_layout


def frame_folder(path, frames: int, first: int = 1, digits: int = 5):
    path.mkdir(parents=True)
    for i in range(frames):
        cv2.imwrite(
            str(path / f"{i + first:0{digits}d}.png"), np.full((48, 64, 3), 20 * i, np.uint8)
        )
    return path


def penn_fields(frames: int = 6, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "action": np.array(["tennis_serve"]),
        "pose": np.array(["back"]),
        "x": rng.uniform(5, 60, (frames, 13)),
        "y": rng.uniform(5, 45, (frames, 13)),
        "visibility": rng.integers(0, 2, (frames, 13)).astype(np.uint8),
        "train": np.array([[-1]]),
        "bbox": np.tile([2.0, 3.0, 62.0, 46.0], (frames, 1)),
        "dimensions": np.array([[48, 64, frames]]),
        "nframes": np.array([[frames]]),
    }


def test_jhmdb_reads_and_converts_by_joint_name(tmp_path):
    rng = np.random.default_rng(1)
    pos = rng.uniform(0, 60, (2, 15, 7))
    savemat(tmp_path / "joint_positions.mat", {"pos_img": pos, "pos_world": pos / 60,
                                               "scale": np.ones((1, 7)), "viewpoint": "E"})  # fmt: skip
    labels = read_jhmdb(tmp_path / "joint_positions.mat")
    assert labels.layout.name == "jhmdb15" and labels.keypoints.shape == (7, 15, 2)
    jhmdb = get_layout("jhmdb15")
    wrist = jhmdb.index("l_wrist")
    assert np.allclose(labels.keypoints[3, wrist], pos[:, wrist, 3])
    assert (labels.visibility == 1).all()
    frames = frame_folder(tmp_path / "Rename_Images" / "wave" / "clip_a", 7)
    npz = write_annotation(labels, frames)
    assert npz == frames.with_name("clip_a.npz")
    ann = load_annotation(npz, num_frames=7)
    h36m = get_layout("h36m17")
    assert np.allclose(ann.keypoints_2d[0, 3, h36m.index("l_wrist")], pos[:, wrist, 3])
    for joint in ("pelvis", "spine", "thorax", "neck_nose", "head_top"):  # JHMDB has none of these
        assert (ann.visibility[0, :, h36m.index(joint)] == 0).all(), joint
    # The index reads it as the frame folder's annotation.
    index = index_videos(tmp_path / "Rename_Images", cache=False, workers=1)
    (video,) = index.videos
    assert video.rel_path == "wave/clip_a" and video.labeled and video.num_frames == 7


def test_penn_action_reads_boxes_visibility_and_split(tmp_path):
    fields = penn_fields()
    savemat(tmp_path / "0001.mat", fields)
    labels = read_penn_action(tmp_path / "0001.mat")
    assert labels.layout.name == "penn13" and labels.keypoints.shape == (6, 13, 2)
    assert np.allclose(labels.keypoints[..., 0], fields["x"])
    assert np.array_equal(labels.visibility, fields["visibility"].astype(np.float32))
    assert labels.boxes.shape == (6, 4) and labels.meta == {
        "dataset": "penn_action", "action": "tennis_serve", "split": "test"}  # fmt: skip
    frames = frame_folder(tmp_path / "frames" / "0001", 6, digits=6)
    ann = load_annotation(write_annotation(labels, frames), num_frames=6)
    penn, h36m = get_layout("penn13"), get_layout("h36m17")
    for name in ("r_knee", "l_elbow"):
        a, b = penn.index(name), h36m.index(name)
        assert np.array_equal(ann.visibility[0, :, b], labels.visibility[:, a])
    assert (ann.visibility[0, :, h36m.index("head_top")] == 0).all()  # Penn's head is its centre
    assert np.allclose(ann.boxes[0], labels.boxes)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.pop("x"), "field 'x' is missing"),
        (lambda f: f.update(y=f["y"][:, :12]), "field 'y' has shape (6, 12), expected (T, 13)"),
        (lambda f: f["x"].__setitem__((2, 4), np.nan), "field 'x' holds NaN or infinite values (first at [2, 4])"),
        (lambda f: f.update(nframes=np.array([[9]])), "field 'nframes' says 9, 'x' has 6 frames"),
        (lambda f: f.update(bbox=np.zeros((5, 4))), "field 'bbox' has shape (5, 4), expected (6, 4)"),
    ],
)  # fmt: skip
def test_malformed_penn_files_name_the_field(tmp_path, change, message):
    fields = penn_fields()
    change(fields)
    savemat(tmp_path / "bad.mat", fields)
    with pytest.raises(MatLabelError) as err:
        read_penn_action(tmp_path / "bad.mat")
    assert str(err.value).startswith(str(tmp_path / "bad.mat")) and message in str(err.value)


def test_unreadable_files_and_frame_count_mismatch(tmp_path):
    (tmp_path / "x.mat").write_bytes(b"not matlab")
    with pytest.raises(MatLabelError, match="x.mat: not a readable .mat file"):
        read_jhmdb(tmp_path / "x.mat")
    with pytest.raises(MatLabelError, match="no such file"):
        read_jhmdb(tmp_path / "missing.mat")
    savemat(tmp_path / "j.mat", {"pos_img": np.zeros((2, 14, 3))})
    with pytest.raises(
        MatLabelError, match=r"'pos_img' has shape \(2, 14, 3\), expected \(2, 15, T\)"
    ):
        read_jhmdb(tmp_path / "j.mat")
    savemat(tmp_path / "p.mat", penn_fields(frames=6))
    frames = frame_folder(tmp_path / "frames" / "0002", 5)
    with pytest.raises(MatLabelError, match="6 labelled frames, but .* holds 5 numbered images"):
        write_annotation(read_penn_action(tmp_path / "p.mat"), frames)
    assert not (tmp_path / "frames" / "0002.npz").exists()
