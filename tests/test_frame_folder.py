"""Folders of numbered frames are videos: probing, random access against PyAV, the index (with an
annotation beside the folder), a damaged image, and the crop store and dataset on top."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from css_pose.data.index import index_videos
from css_pose.data.video import (
    FRAME_FOLDER_FPS,
    FrameFolderReader,
    VideoReadError,
    cached_reader,
    frame_files,
    open_video,
    probe_video,
)


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    from css_pose.data.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("ff") / "synth"
    generate_dataset(root, videos=2, frames=8, size=64, seed=9, workers=1, progress=False)
    return root


def to_folder(video: Path, folder: Path, start: int = 1, ext: str = ".png") -> np.ndarray:
    """Write every frame of ``video`` as numbered images (lossless PNG); its (T, H, W, 3) RGB."""
    with open_video(video, "pyav") as reader:
        frames = reader.get_batch(range(reader.num_frames))
    folder.mkdir(parents=True)
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"{i + start:05d}{ext}"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    return frames


def test_folder_reads_like_its_video(synth, tmp_path):
    video = sorted(synth.rglob("*.mp4"))[0]
    frames = to_folder(video, tmp_path / "clip", start=0)
    (tmp_path / "clip" / "notes.txt").write_text("not a frame")
    (tmp_path / "clip" / "cover.png").write_bytes(b"")  # not numbered: ignored
    info = probe_video(tmp_path / "clip")
    assert (info.num_frames, info.width, info.height, info.fps) == (8, 64, 64, FRAME_FOLDER_FPS)
    with open_video(tmp_path / "clip") as reader:  # any backend name: a folder is a folder
        assert isinstance(reader, FrameFolderReader) and reader.size == (64, 64)
        assert np.array_equal(reader.get_batch([5, 0, 5]), frames[[5, 0, 5]])
        with pytest.raises(IndexError, match="outside the 8 decodable frames"):
            reader.get_batch([8])
    reader = cached_reader(tmp_path / "clip", "pyav", 8, cache_mb=64)
    assert np.array_equal(reader.get_batch([7, 2]), frames[[7, 2]])


def test_numeric_order_not_name_order(tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    for n in (10, 9, 100, 1):  # "100" sorts before "9" as text
        image = np.full((4, 6, 3), n, np.uint8)
        cv2.imwrite(str(folder / f"{n}.png"), image)
    assert [Path(f).stem for f in frame_files(folder)] == ["1", "9", "10", "100"]
    with open_video(folder) as reader:
        assert reader.get_batch([0, 1, 2, 3])[:, 0, 0, 0].tolist() == [1, 9, 10, 100]


def test_damaged_image_ends_the_usable_part(synth, tmp_path):
    video = sorted(synth.rglob("*.mp4"))[0]
    to_folder(video, tmp_path / "clip")
    (tmp_path / "clip" / "00005.png").write_bytes(b"truncated")
    assert probe_video(tmp_path / "clip").num_frames == 4
    assert probe_video(tmp_path / "clip").reported_frames == 8
    with pytest.raises(VideoReadError, match="without numbered images"):
        probe_video(tmp_path)  # a folder of folders is not a frame folder
    (tmp_path / "clip" / "00001.png").write_bytes(b"")
    with pytest.raises(VideoReadError, match="00001.png: the first frame does not decode"):
        probe_video(tmp_path / "clip")


def test_index_dataset_and_store_take_frame_folders(synth, tmp_path):
    from css_pose.data.dataset import VideoClipDataset
    from css_pose.data.store import CropStore

    root = tmp_path / "mixed"
    videos = sorted(synth.rglob("*.mp4"))
    frames = to_folder(videos[0], root / "seq" / "clip0")
    shutil.copy(videos[0].with_suffix(".npz"), root / "seq" / "clip0.npz")
    shutil.copy(videos[1], root / "clip1.mp4")  # a file video beside it, unlabelled
    index = index_videos(root, cache=False, workers=1)
    assert not index.problems
    by_path = {v.rel_path: v for v in index.videos}
    assert set(by_path) == {"seq/clip0", "clip1.mp4"}
    folder = by_path["seq/clip0"]
    assert folder.num_frames == 8 and folder.labeled and folder.num_persons == 1
    assert not by_path["clip1.mp4"].labeled
    # The dataset reads the folder's person crops; the crop store holds the same ones.
    plain = VideoClipDataset([folder], mode="frame", size=32, augment=None, backend="pyav")
    store = CropStore.build([folder], 32, store_dir=tmp_path / "stores", progress=False)
    stored = VideoClipDataset([folder], mode="frame", size=32, augment=None, store=store)
    a, b = plain[3], stored[3]
    assert np.abs(a["frames"].numpy() - b["frames"].numpy()).mean() < 0.02
    assert np.array_equal(a["keypoints_2d"].numpy(), b["keypoints_2d"].numpy())
    assert frames.shape == (8, 64, 64, 3)
