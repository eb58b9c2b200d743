"""``css-pose inspect``: the counts it prints for a video folder, an annotation npz and COCO /
PoseTrack files, a problem line for each unusable thing, and the exit status."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from css_pose.cli import main as cli
from css_pose.data.coco import CocoImage, CocoPerson, write_coco
from css_pose.layouts import get_layout


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from css_pose.data.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("inspect") / "videos"
    generate_dataset(root, videos=3, frames=6, size=64, seed=5, workers=1, progress=False)
    return root


def run(capsys, *args) -> tuple[int, str]:
    code = cli(["inspect", *map(str, args)])
    return code, capsys.readouterr().out


def test_folder_counts_videos_frames_and_people(folder, capsys, tmp_path):
    code, out = run(capsys, folder)
    assert code == 0 and out.strip().endswith("ok"), out
    assert "3 usable video(s), 18 decodable frames" in out
    assert "annotated: 3 video(s), 3 person track(s); unlabelled: 0" in out
    assert "sizes: 64x64" in out
    # A broken video and an annotation that does not fit are named, and the status says so.
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    (copy / "videos" / "broken.mp4").write_bytes(b"not a video")
    first = sorted((copy / "videos").glob("*.npz"))[0]
    first.write_bytes(b"garbage")
    code, out = run(capsys, copy)
    assert code == 1 and "unusable" in out.splitlines()[-1]
    assert "2 usable video(s)" not in out  # the video with a bad annotation stays, unlabelled
    assert "3 usable video(s)" in out and "unlabelled: 1" in out
    problems = [line for line in out.splitlines() if "problem:" in line]
    assert len(problems) == 2, out
    assert any("broken.mp4" in line for line in problems)
    assert any(first.name in line for line in problems)
    code, out = run(capsys, tmp_path / "nowhere")
    assert code == 1 and "nowhere: no such file or folder" in out


def test_annotation_npz(folder, capsys, tmp_path):
    path = sorted(folder.rglob("*.npz"))[0]
    code, out = run(capsys, path)
    assert code == 0 and "css_pose annotation, layout h36m17" in out
    assert "frames: 6; people: 1 in 6 person-frame(s)" in out and "3D: yes" in out
    bad = tmp_path / "bad.npz"
    np.savez(bad, something=np.zeros(3))
    code, out = run(capsys, bad)
    assert code == 1 and "problem:" in out and "missing key(s)" in out


def test_coco_file_counts_and_problems(capsys, tmp_path):
    layout = get_layout("posetrack18")
    images = [CocoImage(i, f"v/{i:06d}.jpg", frame=i, video="v", labeled=i < 3) for i in range(4)]
    vis = np.full(17, 2)
    vis[[3, 4]] = 0  # PoseTrack never labels the ears
    vis[5] = 1
    people = [
        CocoPerson(i, np.full((17, 2), 10.0), vis, track_id=t) for i in range(3) for t in (0, 1)
    ]
    path = tmp_path / "pt.json"
    write_coco(path, layout, images, people)
    code, out = run(capsys, path)
    assert code == 0, out
    assert "keypoint annotations, layout posetrack18" in out
    assert "images: 4 (1 marked is_labeled=false) in 1 video(s)" in out
    assert "people: 6 in 3 image(s), 2 track id(s)" in out
    assert "joints: 90 labelled of 102, 84 visible" in out
    assert "never labelled: l_ear, r_ear" in out
    # One malformed record: named, the rest counted, exit status 1.
    data = json.loads(path.read_text())
    data["annotations"][2]["keypoints"][7] = "x"
    path.write_text(json.dumps(data))
    code, out = run(capsys, path)
    assert code == 1 and "people: 5 in 3 image(s)" in out
    assert "problem:" in out and "annotations[2]" in out and "field 'keypoints'" in out


def test_results_file_needs_a_layout(capsys, tmp_path):
    path = tmp_path / "keypoints.json"
    kps = np.concatenate([np.zeros((17, 2)), np.full((17, 1), 0.9)], axis=1).reshape(-1)
    path.write_text(json.dumps([{"image_id": i, "keypoints": kps.tolist()} for i in range(5)]))
    code, out = run(capsys, path)
    assert code == 1 and "pass its layout" in out
    code, out = run(capsys, "--layout", "h36m17", path)
    assert code == 0 and "keypoint results, layout h36m17" in out
    assert "people: 5 in 5 image(s)" in out and "joints: 85 labelled of 85" in out
