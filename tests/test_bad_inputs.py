"""Bad files never crash or hang loading: each gets a message naming it, good videos keep flowing."""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader
from video_fixtures import make_video_set, person_track, truncate, write_annotation, write_video

from css_pose.data.datamodule import VideoDataModule
from css_pose.data.dataset import VideoClipDataset
from css_pose.data.index import VideoIndexError, index_videos
from css_pose.data.loading import AnnotationError, load_annotation
from css_pose.data.video import clear_reader_cache

FRAMES = 40
SAMPLING = dict(d_neg=12, n_gt=3, gt_max=8)


@pytest.fixture(autouse=True)
def _close_readers():
    yield
    clear_reader_cache()


def _write_bad_files(videos) -> None:
    """Every kind of bad input, beside good videos, in folder ``videos``."""
    (videos / "zero_bytes.mp4").write_bytes(b"")
    truncate(write_video(videos / "cut_half.mp4", FRAMES), 0.5)  # index (moov) cut off
    truncate(write_video(videos / "cut_prefix.mkv", FRAMES), 0.6)  # a decodable prefix
    truncate(write_video(videos / "cut_faststart.mp4", FRAMES, faststart=True), 0.6)
    (videos / "text.mp4").write_text("this is not a video\n" * 20)
    write_video(videos / "too_short.mp4", 8)
    write_video(videos / "no_npz_keys.mp4", FRAMES)
    np.savez(videos / "no_npz_keys.npz", something=np.zeros(3))
    write_video(videos / "wrong_shape.mp4", FRAMES)
    write_annotation(videos / "wrong_shape.npz", [person_track(FRAMES - 5, 128, 96)])
    write_video(videos / "not_npz.mp4", FRAMES)
    (videos / "not_npz.npz").write_text("garbage")


@pytest.fixture(scope="module")
def messy_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("messy")
    make_video_set(root, [FRAMES] * 3)
    _write_bad_files(root / "videos")
    return root


def _index(root, **kw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        index = index_videos(root, **kw)
    return index, [str(w.message) for w in caught]


def test_index_skips_bad_files_with_one_warning_naming_each(messy_root):
    index, messages = _index(messy_root, cache=False)
    assert len(messages) == 1
    message = messages[0]
    for name, why in [
        ("zero_bytes.mp4", "empty file"),
        ("cut_half.mp4", "not a readable video"),
        ("text.mp4", "not a readable video"),
        ("no_npz_keys.npz", "missing key(s) ['keypoints_2d', 'visibility']"),
        ("wrong_shape.npz", "35 annotated frames but the video decodes 40"),
        ("not_npz.npz", "not a readable npz file"),
    ]:
        line = next(line for line in message.splitlines() if name in line)
        assert why in line
    kept = {v.rel_path.split("/")[-1]: v for v in index.videos}
    assert set(kept) == {
        "vid_000.mp4",
        "vid_001.mp4",
        "vid_002.mp4",
        "cut_prefix.mkv",
        "cut_faststart.mp4",
        "too_short.mp4",
        "no_npz_keys.mp4",
        "wrong_shape.mp4",
        "not_npz.mp4",
    }
    assert 15 < kept["cut_prefix.mkv"].num_frames < FRAMES
    assert 15 < kept["cut_faststart.mp4"].num_frames < FRAMES
    assert not kept["wrong_shape.mp4"].labeled and kept["vid_000.mp4"].labeled


def test_bad_files_are_remembered_by_the_cache(messy_root, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(messy_root, root)
    first, _ = _index(root)
    second, messages = _index(root)
    assert first.problems == second.problems and len(messages) == 1


def test_strict_raises_naming_the_file(messy_root):
    with pytest.raises(VideoIndexError, match=r"(zero_bytes|cut_half|text)\.mp4|\.npz"):
        index_videos(messy_root, strict=True, cache=False)


def test_no_usable_video_is_a_clear_error(tmp_path):
    (tmp_path / "a.mp4").write_bytes(b"")
    with pytest.raises(VideoIndexError, match=f"no usable video under {tmp_path}"):
        _index(tmp_path, cache=False)
    with pytest.raises(VideoIndexError, match="no such folder"):
        index_videos(tmp_path / "missing")


@pytest.mark.parametrize(
    ("arrays", "problem"),
    [
        ({"keypoints_2d": np.zeros((10, 17, 2))}, "missing key(s) ['visibility']"),
        (
            {"keypoints_2d": np.zeros((10, 17, 3)), "visibility": np.ones((10, 17))},
            "keypoints_2d has shape",
        ),
        ({"keypoints_2d": np.zeros((10, 15, 2)), "visibility": np.ones((10, 15))}, "15 joints"),
        (
            {"keypoints_2d": np.zeros((10, 17, 2)), "visibility": np.ones((9, 17))},
            "visibility has shape",
        ),
        (
            {
                "keypoints_2d": np.zeros((10, 17, 2)),
                "visibility": np.ones((10, 17)),
                "bboxes": np.zeros((10, 5)),
            },
            "bboxes has shape",
        ),
        (
            {
                "keypoints_2d": np.zeros((10, 17, 2)),
                "visibility": np.ones((10, 17)),
                "joint_names": np.array([f"j{i}" for i in range(17)]),
            },
            "joint_names differ",
        ),
    ],
)
def test_malformed_annotations_name_file_and_problem(tmp_path, arrays, problem):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(AnnotationError) as error:
        load_annotation(path, num_frames=10)
    assert str(path) in str(error.value) and problem in str(error.value)


def test_a_single_array_file_is_not_an_annotation(tmp_path):
    path = tmp_path / "one.npz"
    with open(path, "wb") as f:
        np.save(f, np.zeros(3))
    with pytest.raises(AnnotationError, match="one.npz: holds a single array"):
        load_annotation(path)


def test_short_videos_are_excluded_with_a_warning_naming_them(messy_root):
    index, _ = _index(messy_root, cache=False)
    with pytest.warns(UserWarning, match=r"too_short\.mp4 \(person 0\): 8 frames"):
        ds = VideoClipDataset(index.videos, "contrastive", 32, **SAMPLING)
    assert all(ds.videos[t.video].num_frames >= 13 for t in ds.tracks)


@pytest.mark.timeout(60)
def test_dataloader_with_workers_runs_through_every_bad_input(messy_root):
    dm = VideoDataModule(
        messy_root,
        batch_size=4,
        num_workers=2,
        samples_per_epoch=32,
        val_samples=8,
        sampling=SAMPLING,
        cache=False,
        val_fraction=0.0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dm.setup("fit")
    seen = set()
    for _ in range(2):
        for batch in dm.train_dataloader():
            assert torch.isfinite(batch["frames"]).all()
            seen.update(batch["video_idx"].tolist())
    assert len(seen) == len(dm.train_set.tracks)  # every usable video delivered samples


@pytest.mark.timeout(60)
def test_a_file_changed_after_indexing_is_replaced_by_another_sample(tmp_path):
    make_video_set(tmp_path, [FRAMES] * 3)
    index = index_videos(tmp_path, cache=False)
    ds = VideoClipDataset(index.videos, "contrastive", 32, samples_per_epoch=12, **SAMPLING)
    changed = tmp_path / "videos" / "vid_001.mp4"
    truncate(changed, 0.5)

    with pytest.warns(UserWarning, match=r"vid_001\.mp4: changed on disk since it was indexed"):
        sample = ds[1]  # item 1 belongs to vid_001
    assert sample["video_idx"] != 1 and sample["sample_idx"] == 1

    loader = DataLoader(ds, batch_size=4, num_workers=2)
    videos = torch.cat([b["video_idx"] for b in loader])
    assert len(videos) == 12 and 1 not in videos.tolist()


@pytest.mark.timeout(60)
def test_bounded_retries_end_in_a_clear_error(tmp_path):
    make_video_set(tmp_path, [FRAMES] * 2, labeled=False)
    index = index_videos(tmp_path, cache=False)
    ds = VideoClipDataset(index.videos, "views", 32, max_retries=3)
    for path in (tmp_path / "videos").glob("*.mp4"):
        path.write_bytes(b"gone")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(RuntimeError, match="every one of the 2 videos failed to read"):
            ds[0]
