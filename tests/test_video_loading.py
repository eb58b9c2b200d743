"""Behaviour of video decoding, indexing, sampling, crops, augmentation and the data module."""

from __future__ import annotations

import contextlib
import os
import shutil

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader
from video_fixtures import (
    frame_index,
    make_video_set,
    person_track,
    truncate,
    write_annotation,
    write_video,
)

from css_pose.data import index as index_module
from css_pose.data.datamodule import (
    EpochDataLoader,
    EpochRandomSampler,
    VideoDataModule,
    seed_worker,
)
from css_pose.data.dataset import VideoClipDataset
from css_pose.data.index import INDEX_FILE, index_videos
from css_pose.data.sampling import min_contrastive_length, sample_clip, sample_contrastive
from css_pose.data.transforms import (
    GRAY,
    AugmentConfig,
    ViewParams,
    apply_colour,
    colour_matrix,
)
from css_pose.data.video import (
    DecordReader,
    PyAVReader,
    VideoReadError,
    cached_reader,
    clear_reader_cache,
    frame_cache_info,
    open_video,
    probe_video,
)
from css_pose.skeleton import flip_permutation

NO_COLOUR = dict(brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0, grayscale_p=0.0)


@pytest.fixture(scope="module")
def video_set(tmp_path_factory):
    """Eight labeled 60-frame videos, 128x96, keyframe every 12 frames, with B-frames."""
    root = tmp_path_factory.mktemp("videos")
    make_video_set(root, [60] * 8)
    return root


@pytest.fixture(autouse=True)
def _close_readers():
    yield
    clear_reader_cache()


# --- decoding -------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_decord_and_pyav_return_the_same_frames(tmp_path, suffix):
    path = write_video(tmp_path / f"v{suffix}", 90, gop=16)
    rng = np.random.default_rng(0)
    with (
        open_video(path, "decord", 90) as dec,
        open_video(path, "pyav", 90) as pav,
        PyAVReader(path, 90, seek_gap=0) as naive,
    ):
        assert isinstance(dec, DecordReader)
        for _ in range(10):
            idx = rng.choice(90, 5, replace=False).tolist()  # unsorted on purpose
            a, b, c = dec.get_batch(idx), pav.get_batch(idx), naive.get_batch(idx)
            assert [frame_index(f) for f in a] == idx
            assert [frame_index(f) for f in b] == idx
            assert np.abs(a.astype(int) - b).max() <= 2
            assert np.array_equal(b, c)


def test_avi_without_timestamps_falls_back_to_pyav(tmp_path):
    path = write_video(tmp_path / "v.avi", 40)
    with pytest.warns(RuntimeWarning, match="v.avi: decord sees no usable frame timestamps"):
        reader = open_video(path, "decord", 40)
    with reader:
        assert isinstance(reader, PyAVReader)
        idx = [3, 17, 18, 39]
        assert [frame_index(f) for f in reader.get_batch(idx)] == idx


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".avi"])
def test_probe_counts_the_decodable_frames_of_a_truncated_file(tmp_path, suffix):
    path = truncate(write_video(tmp_path / f"cut{suffix}", 100, faststart=True), 0.5)
    info = probe_video(path)
    assert 20 < info.num_frames < 70
    n = info.num_frames
    for backend in ("pyav", "decord"):
        # decord refuses cut mp4/avi files (PyAV takes over, with a warning) but reads cut mkv
        falls_back = backend == "decord" and suffix != ".mkv"
        with pytest.warns(RuntimeWarning) if falls_back else contextlib.nullcontext():
            reader = open_video(path, backend, n)
        with reader:
            assert isinstance(
                reader, PyAVReader if falls_back or backend == "pyav" else DecordReader
            )
            every = reader.get_batch(list(range(n)))
            assert [frame_index(f) for f in every] == list(range(n))
            with pytest.raises(IndexError, match="cut"):
                reader.get_batch([n])


def test_unreadable_files_raise_naming_the_file(tmp_path):
    (tmp_path / "text.mp4").write_text("not a video")
    (tmp_path / "empty.mp4").write_bytes(b"")
    for name in ("text.mp4", "empty.mp4"):
        with pytest.raises(VideoReadError, match=name):
            probe_video(tmp_path / name)
        with pytest.raises(VideoReadError, match=name), pytest.warns(RuntimeWarning):
            open_video(tmp_path / name, "decord", 10)


# --- decoded-frame cache --------------------------------------------------------------------

MB = 2**20


def _cached(path, backend="decord", num_frames=None, cache_mb=64, cache_video_mb=64):
    return cached_reader(
        path, backend, num_frames, cache_mb=cache_mb, cache_video_mb=cache_video_mb
    )


def _cached_paths() -> list[str]:
    return [path for _, path, _, _ in frame_cache_info()["entries"]]


def test_cached_frames_equal_uncached_decord_and_pyav_frames(tmp_path):
    path = write_video(tmp_path / "v.mp4", 90, gop=16)
    rng = np.random.default_rng(1)
    with open_video(path, "decord", 90) as dec, open_video(path, "pyav", 90) as pav:
        cached_dec, cached_pav = _cached(path, "decord", 90), _cached(path, "pyav", 90)
        for _ in range(10):
            idx = rng.integers(0, 90, 6).tolist()  # unsorted, repeats allowed
            a, b = cached_dec.get_batch(idx), cached_pav.get_batch(idx)
            assert [frame_index(f) for f in a] == idx == [frame_index(f) for f in b]
            assert np.array_equal(a, dec.get_batch(idx))
            assert np.array_equal(b, pav.get_batch(idx))
            assert np.abs(a.astype(int) - b).max() <= 2
            a[:] = 0  # a copy: the cache is not written through
        assert np.array_equal(cached_dec.get_batch([0, 89]), dec.get_batch([0, 89]))
        with pytest.raises(IndexError, match="v.mp4"):
            cached_dec.get_batch([90])
    info = frame_cache_info()
    assert sorted(e[0] for e in info["entries"]) == ["DecordReader", "PyAVReader"]
    assert info["bytes"] == 2 * 90 * 96 * 128 * 3


def test_frame_cache_evicts_least_recently_used_videos_within_its_byte_bound(tmp_path):
    paths = [str(write_video(tmp_path / f"v{i}.mp4", 20, gop=10)) for i in range(3)]
    one = 20 * 96 * 128 * 3  # decoded bytes per video, 0.7 MiB
    bound = 2.5 * one / MB  # room for two videos
    for path in paths:
        _cached(path, cache_mb=bound).get_batch([3])
        assert frame_cache_info()["bytes"] <= bound * MB
    assert _cached_paths() == paths[1:]
    _cached(paths[1], cache_mb=bound).get_batch([5])  # a hit makes v1 the most recent
    _cached(paths[0], cache_mb=bound).get_batch([5])  # so v2 goes
    assert _cached_paths() == [paths[1], paths[0]]
    assert frame_cache_info()["bytes"] == 2 * one
    # A smaller bound on a later read evicts down to it.
    _cached(paths[2], cache_mb=1.5 * one / MB).get_batch([5])
    assert _cached_paths() == [paths[2]]


def test_a_modified_file_is_decoded_again(tmp_path):
    path = write_video(tmp_path / "v.mp4", 30, gop=10)
    assert [frame_index(f) for f in _cached(path, num_frames=30).get_batch([4, 20])] == [4, 20]
    (entry,) = frame_cache_info()["entries"]

    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touch: same content
    assert [frame_index(f) for f in _cached(path, num_frames=30).get_batch([4, 20])] == [4, 20]
    (touched,) = frame_cache_info()["entries"]
    assert touched[3] == entry[3] + 10**9  # a new entry, the old one dropped

    write_video(path, 30, gop=10, static=True)  # rewritten: every frame now carries index 0
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2 * 10**9))
    assert [frame_index(f) for f in _cached(path, num_frames=30).get_batch([4, 20])] == [0, 0]
    assert len(frame_cache_info()["entries"]) == 1


def test_videos_over_the_threshold_or_with_the_cache_off_are_not_cached(tmp_path):
    path = write_video(tmp_path / "v.mp4", 40, gop=10)  # 1.4 MiB decoded
    for backend in ("decord", "pyav"):
        for cache_mb, cache_video_mb in [(64, 1), (1, 64), (0, 64)]:
            reader = _cached(path, backend, 40, cache_mb, cache_video_mb)
            assert [frame_index(f) for f in reader.get_batch([33, 2])] == [33, 2]
            assert frame_cache_info() == {"entries": [], "bytes": 0}
        _cached(path, backend, 40, 2, 2).get_batch([1])
        assert len(frame_cache_info()["entries"]) == 1
        clear_reader_cache()


class _CacheReport(torch.utils.data.Dataset):
    def __init__(self, path):
        self.path = path

    def __len__(self):
        return 1

    def __getitem__(self, index):
        _cached(self.path, num_frames=30).get_batch([1])
        return {"pid": os.getpid(), "cached": _cached_paths()}


@pytest.mark.timeout(60)
def test_workers_never_use_frames_cached_by_their_parent(tmp_path):
    mine, theirs = (str(write_video(tmp_path / f"{n}.mp4", 30, gop=10)) for n in "ab")
    _cached(mine, num_frames=30).get_batch([1])
    loader = DataLoader(_CacheReport(theirs), batch_size=None, num_workers=1)
    (report,) = list(loader)
    assert report["pid"] != os.getpid()
    assert report["cached"] == [theirs]
    assert _cached_paths() == [mine]


def test_dataset_samples_are_the_same_with_and_without_the_cache(video_set):
    videos = index_videos(video_set, cache=False).videos
    off, on = (
        VideoClipDataset(videos, "contrastive", 64, d_neg=20, seed=3, cache_mb=mb) for mb in (0, 64)
    )
    for i in range(4):
        assert torch.equal(off[i]["frames"], on[i]["frames"])
    assert len(frame_cache_info()["entries"]) == 4
    dm = VideoDataModule(video_set, num_workers=0, cache=False, cache_mb=7, cache_video_mb=3)
    dm.setup("fit")
    assert (dm.train_set.cache_mb, dm.train_set.cache_video_mb) == (7, 3)


# --- index ----------------------------------------------------------------------------------


def test_index_measures_videos_and_attaches_annotations(video_set):
    index = index_videos(video_set, cache=False)
    assert len(index) == 8 and not index.problems
    entry = index.videos[0]
    assert (entry.num_frames, entry.fps, entry.width, entry.height) == (60, 25.0, 128, 96)
    assert entry.labeled and entry.num_persons == 1
    assert entry.rel_path == "videos/vid_000.mp4"


def test_index_cache_is_reused_and_invalidated_by_size_and_mtime(tmp_path, monkeypatch):
    make_video_set(tmp_path, [30, 30, 30], labeled=False)
    calls = []
    real_probe = index_module.probe_video
    monkeypatch.setattr(index_module, "probe_video", lambda p: calls.append(p) or real_probe(p))

    assert len(index_videos(tmp_path)) == 3 and len(calls) == 3
    assert not (tmp_path / INDEX_FILE).exists()  # the video folder is only read
    index_videos(tmp_path)
    assert len(calls) == 3  # all cached

    target = tmp_path / "videos" / "vid_001.mp4"
    write_video(target, 45)  # new size
    index = index_videos(tmp_path)
    assert [c.name for c in calls[3:]] == ["vid_001.mp4"]
    assert [v.num_frames for v in index.videos] == [30, 45, 30]

    st_ = target.stat()
    os.utime(target, ns=(st_.st_atime_ns, st_.st_mtime_ns + 10**9))  # same size, new mtime
    index_videos(tmp_path)
    assert [c.name for c in calls[4:]] == ["vid_001.mp4"]

    truncate(target, 0.5)  # the cache must not keep the old frame count
    with pytest.warns(UserWarning, match="vid_001.mp4: not a readable video"):
        cut = index_videos(tmp_path)
    assert [v.name for v in cut.videos] == ["videos/vid_000", "videos/vid_002"]


def test_index_cache_lives_in_the_user_cache(tmp_path, monkeypatch):
    root = tmp_path / "data"
    make_video_set(root, [20, 20], labeled=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    index_videos(root)
    assert len(list((tmp_path / "cache" / "css_pose").glob("index-*.json"))) == 1
    assert not (root / INDEX_FILE).exists()
    monkeypatch.setattr(index_module, "probe_video", lambda p: pytest.fail("cache not used"))
    assert len(index_videos(root)) == 2


def test_split_by_hash_is_stable_and_disjoint(video_set):
    index = index_videos(video_set, cache=False)
    train, val = index.split("train", 0.3), index.split("val", 0.3)
    assert {v.rel_path for v in train}.isdisjoint(v.rel_path for v in val)
    assert len(train) + len(val) == 8 and len(val) >= 1
    assert [v.rel_path for v in index.split("val", 0.3)] == [v.rel_path for v in val]


def test_manifest_assigns_splits(tmp_path):
    make_video_set(tmp_path, [30] * 4, manifest_splits=["train", "val", "test", "train"])
    index = index_videos(tmp_path, cache=False)
    assert [v.name for v in index.split("train")] == ["vid_000", "vid_003"]
    assert [v.name for v in index.split("val")] == ["vid_001"]
    assert [v.name for v in index.split("test")] == ["vid_002"]


# --- sampling rules -------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    length=st.integers(1, 200),
    d_pos=st.integers(1, 6),
    gap=st.integers(1, 40),
    n_pos=st.integers(0, 6),
    n_neg=st.integers(0, 6),
    n_gt=st.integers(0, 6),
    extra=st.integers(0, 20),
    seed=st.integers(0, 2**32 - 1),
)
def test_contrastive_sampling_obeys_distance_rules(
    length, d_pos, gap, n_pos, n_neg, n_gt, extra, seed
):
    d_neg, gt_max = d_pos + gap, n_gt + extra
    rng = np.random.default_rng(seed)
    if length < min_contrastive_length(n_pos, n_neg, d_neg, n_gt):
        with pytest.raises(ValueError, match="shorter"):
            sample_contrastive(rng, length, n_pos, d_pos, n_neg, d_neg, n_gt, gt_max)
        return
    draw = sample_contrastive(rng, length, n_pos, d_pos, n_neg, d_neg, n_gt, gt_max)
    t = draw.anchor
    frames = draw.frame_indices()
    assert len(frames) == 1 + n_pos + n_neg + n_gt
    assert ((frames >= 0) & (frames < length)).all()
    assert frames[0] == t
    dist_pos = np.abs(draw.positives - t)
    assert ((dist_pos >= 1) & (dist_pos <= d_pos)).all()
    assert (np.abs(draw.negatives - t) >= d_neg).all()
    # distinct whenever there are enough candidates
    window = min(t, d_pos) + min(length - 1 - t, d_pos)
    if n_pos <= window:
        assert len(set(draw.positives)) == n_pos
    if n_neg <= max(t - d_neg + 1, 0) + max(length - t - d_neg, 0):
        assert len(set(draw.negatives)) == n_neg
    offsets = draw.gt_offsets
    assert offsets.dtype == np.int64 and len(offsets) == n_gt
    assert (np.diff(offsets) > 0).all() and (offsets >= 1).all() and (offsets <= gt_max).all()
    steps = draw.transition - t
    assert (np.abs(steps) == offsets).all()
    assert len(set(np.sign(steps))) <= 1  # one direction for all


@settings(max_examples=100, deadline=None)
@given(length=st.integers(1, 100), clip_len=st.integers(1, 10), stride=st.integers(1, 5))
def test_clip_sampling_is_contiguous_with_stride(length, clip_len, stride):
    rng = np.random.default_rng(length)
    if length < (clip_len - 1) * stride + 1:
        with pytest.raises(ValueError):
            sample_clip(rng, length, clip_len, stride)
        return
    clip = sample_clip(rng, length, clip_len, stride)
    assert (np.diff(clip) == stride).all() and clip[0] >= 0 and clip[-1] < length


def test_dataset_frames_are_the_sampled_frames(video_set):
    index = index_videos(video_set, cache=False)
    ds = VideoClipDataset(index.videos, "contrastive", 96, d_neg=20, box_pad=100.0)
    for i in range(5):
        s = ds[i]
        assert s["frames"].shape == (1 + 1 + 1 + 3, 3, 96, 96)
        assert s["video_idx"] == i % len(ds.tracks)
        assert s["gt_offsets"].tolist() == sorted(set(s["gt_offsets"].tolist()))


# --- crops and augmentation -----------------------------------------------------------------


def _dot_centre(image: np.ndarray) -> np.ndarray:
    """(x, y) px centroid of the white dot in a (3, H, W) float crop in [0, 1]."""
    white = (image.min(0) > 0.8).astype(np.float64)
    white[:14] = 0  # ignore the index code band at the top of the frame
    ys, xs = np.nonzero(white)
    assert len(xs) > 3, "dot not found in the crop"
    return np.array([xs.mean(), ys.mean()])


@pytest.fixture(scope="module")
def dot_video(tmp_path_factory):
    """One 40-frame 192x144 video; joint 1 (right hip) of its annotated person is a white dot."""
    root = tmp_path_factory.mktemp("dot")
    track = person_track(40, 192, 144, seed=3, box_size=60.0)
    track["keypoints_2d"] = np.round(track["keypoints_2d"])  # dots drawn on pixel centres
    track["keypoints_2d"][:, 1] += [0.0, 20.0]  # keep the dot below the code band
    path = write_video(
        root / "videos" / "dot.mp4", 40, 192, 144, dots=track["keypoints_2d"][:, 1:2]
    )
    write_annotation(path.with_suffix(".npz"), [track])
    return root


def test_keypoints_land_on_the_dot_in_the_crop(dot_video):
    index = index_videos(dot_video, cache=False)
    ds = VideoClipDataset(index.videos, "frame", 96, frame_stride=7)
    for i in range(len(ds)):
        s = ds[i]
        kp = s["keypoints_2d"][1].numpy()
        assert np.linalg.norm(_dot_centre(s["frames"].numpy()) - kp) < 1.5
        assert s["has_labels"] and s["visibility"][1] == 1


def test_flipped_and_jittered_views_keep_labels_on_the_dot(dot_video):
    index = index_videos(dot_video, cache=False)
    aug = AugmentConfig(**NO_COLOUR, scale=0.25, translate=0.1, flip_p=0.5)
    ds = VideoClipDataset(index.videos, "views", 96, augment=aug, samples_per_epoch=12)
    right_hip_after_flip = int(np.flatnonzero(flip_permutation() == 1)[0])
    flips = 0
    for i in range(len(ds)):
        s = ds[i]
        for v in range(2):
            centre = _dot_centre(s["frames"][v].numpy())
            d_kept = np.linalg.norm(centre - s["keypoints_2d"][v, 1].numpy())
            d_flip = np.linalg.norm(centre - s["keypoints_2d"][v, right_hip_after_flip].numpy())
            assert min(d_kept, d_flip) < 1.5
            flips += d_flip < d_kept
    assert 0 < flips < 24  # both flipped and unflipped views occurred


def test_whole_frame_is_letterboxed_without_annotation(tmp_path):
    make_video_set(tmp_path, [10], labeled=False, width=128, height=96)
    ds = VideoClipDataset(
        index_videos(tmp_path, cache=False).videos, "frame", 64, labeled_only=False
    )
    frame = ds[0]["frames"]
    assert not ds[0]["has_labels"] and ds[0]["keypoints_2d"].abs().sum() == 0
    assert frame[:, :7].abs().max() == 0 and frame[:, -7:].abs().max() == 0  # 8 px bands
    assert frame[:, 9:-9].mean() > 0.1


def test_colour_maps_match_their_definitions():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    assert np.array_equal(apply_colour(frames, ViewParams()), frames)
    darker = apply_colour(frames, ViewParams(brightness=0.5))
    assert np.abs(darker.astype(int) - frames // 2).max() <= 1
    gray = apply_colour(frames, ViewParams(grayscale=True)).astype(int)
    assert np.abs(gray - gray[..., :1]).max() <= 1
    assert np.abs(gray[..., 0] - frames @ GRAY).max() <= 1
    flat = apply_colour(frames, ViewParams(contrast=0.0)).astype(int)  # all -> mean gray
    assert np.ptp(flat) <= 1 and abs(flat.mean() - (frames @ GRAY).mean()) <= 1
    for hue in (0.1, 0.25, -0.4):  # a hue rotation keeps the luma
        np.testing.assert_allclose(GRAY @ colour_matrix(ViewParams(hue=hue)), GRAY, atol=1e-3)


def test_one_appearance_augmentation_per_sample(tmp_path):
    write_video(tmp_path / "static.mp4", 40, static=True)
    index = index_videos(tmp_path, cache=False)
    aug = AugmentConfig(grayscale_p=0.0)
    ds = VideoClipDataset(index.videos, "contrastive", 64, augment=aug, d_neg=10)
    plain = VideoClipDataset(index.videos, "contrastive", 64, d_neg=10)
    a, b = ds[0]["frames"], ds[1]["frames"]
    assert (a - a[0]).abs().max() < 2 / 255  # every frame of a sample: same parameters
    assert (b - b[0]).abs().max() < 2 / 255
    assert (a[0] - b[0]).abs().mean() > 0.02  # other samples: other parameters
    assert (plain[0]["frames"][0] - plain[1]["frames"][0]).abs().max() < 2 / 255


def test_frame_scope_augments_every_frame_on_its_own(tmp_path):
    write_video(tmp_path / "static.mp4", 40, static=True)
    index = index_videos(tmp_path, cache=False)
    aug = AugmentConfig(grayscale_p=0.0, scale=0.0, translate=0.0)
    ds = VideoClipDataset(
        index.videos, "contrastive", 64, augment=aug, d_neg=10, augment_scope="frame"
    )
    frames = ds[0]["frames"]  # a static video: only the augmentation differs between frames
    diffs = [(frames[i] - frames[0]).abs().mean() for i in range(1, len(frames))]
    assert min(diffs) > 0.01
    with pytest.raises(ValueError, match="augment_scope"):
        VideoClipDataset(index.videos, "contrastive", 64, d_neg=10, augment_scope="video")


def test_views_are_augmented_independently(tmp_path):
    write_video(tmp_path / "static.mp4", 20, static=True)
    ds = VideoClipDataset(
        index_videos(tmp_path, cache=False).videos, "views", 64, augment=AugmentConfig()
    )
    views = ds[0]["frames"]
    assert (views[0] - views[1]).abs().mean() > 0.02


def test_multi_person_tracks_are_items_centred_on_each_person(tmp_path):
    path = write_video(tmp_path / "videos" / "two.mp4", 30, 192, 144)
    left, right = person_track(30, 192, 144, seed=1), person_track(30, 192, 144, seed=2)
    right["bboxes"][:, [0, 2]] += 50
    right["keypoints_2d"][..., 0] += 50
    right["bboxes"][:5] = np.nan  # person 1 enters at frame 5
    write_annotation(path.with_suffix(".npz"), [left, right])
    index = index_videos(tmp_path, cache=False)
    assert index.videos[0].num_persons == 2
    ds = VideoClipDataset(index.videos, "frame", 64)
    assert [(t.person, t.start, t.stop) for t in ds.tracks] == [(0, 0, 30), (1, 5, 30)]
    assert len(ds) == 30 + 25
    for i in (0, 40):
        s = ds[i]
        centre = s["keypoints_2d"].mean(0)
        assert (centre - 31.5).abs().max() < 12  # the person sits near the crop centre


# --- reproducibility, epochs, DDP -----------------------------------------------------------


def test_samples_are_reproducible_per_seed_epoch_and_index(video_set):
    videos = index_videos(video_set, cache=False).videos
    make = lambda: VideoClipDataset(videos, "contrastive", 48, d_neg=20, augment=AugmentConfig())  # noqa: E731
    ds, again = make(), make()
    assert torch.equal(ds[5]["frames"], again[5]["frames"])
    assert torch.equal(ds[5]["frame_idx"], again[5]["frame_idx"])
    ds.set_epoch(1)
    assert not torch.equal(ds[5]["frames"], again[5]["frames"])


@pytest.mark.timeout(60)
def test_epoch_reaches_persistent_workers(video_set):
    videos = index_videos(video_set, cache=False).videos
    ds = VideoClipDataset(videos, "contrastive", 32, d_neg=20, samples_per_epoch=16)
    sampler = EpochRandomSampler(ds, seed=0)
    loader = EpochDataLoader(
        ds, batch_size=4, sampler=sampler, num_workers=2, persistent_workers=True
    )
    by_epoch = []
    for epoch in range(2):
        sampler.set_epoch(epoch)
        batches = list(loader)
        assert ds.epoch == epoch
        got = {int(i): f for b in batches for i, f in zip(b["sample_idx"], b["frame_idx"])}
        for i in (0, 7):  # what the workers sampled == what this process samples for the epoch
            assert torch.equal(got[i], ds[i]["frame_idx"])
        by_epoch.append(got)
    assert any(not torch.equal(by_epoch[0][i], by_epoch[1][i]) for i in range(16))


# --- data module ----------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_datamodule_splits_by_video_and_probes_val_frames(video_set):
    dm = VideoDataModule(
        video_set,
        batch_size=4,
        num_workers=0,
        samples_per_epoch=8,
        val_samples=4,
        val_fraction=0.3,
        probe_stride=4,
        cache=False,
        sampling={"d_neg": 20},
    )
    dm.setup("fit")
    train = {v.rel_path for v in dm.train_set.videos}
    val = {v.rel_path for v in dm.val_set.videos}
    assert train.isdisjoint(val) and len(train | val) == 8

    batch = next(iter(dm.train_dataloader()))
    assert batch["frames"].shape == (4, 6, 3, 128, 128)
    assert batch["gt_offsets"].shape == (4, 3)
    val_batch = next(iter(dm.val_dataloader()))
    assert not torch.equal(val_batch["frames"][0, 0], batch["frames"][0, 0])

    probe = dm.probe_dataloader()
    frames = [b for b in probe]
    assert all(b["has_labels"].all() for b in frames)
    video_idx = torch.cat([b["video_idx"] for b in frames])
    assert {dm.val_set.videos[i].rel_path for i in video_idx.tolist()} == val
    frame_idx = torch.cat([b["frame_idx"] for b in frames])
    assert (frame_idx % 4 == 0).all()
    assert len(video_idx) == 15 * len(val)


def test_datamodule_rejects_unknown_sampling_keys(video_set):
    with pytest.raises(ValueError, match="d_nge"):
        VideoDataModule(video_set, sampling={"d_nge": 3})


def test_plain_dataloader_collates_every_mode(video_set, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(video_set, root)
    videos = index_videos(root, cache=False).videos
    for mode, n in (("contrastive", (6,)), ("clip", (8,)), ("frame", ()), ("views", (2,))):
        ds = VideoClipDataset(videos, mode, 32, d_neg=20, samples_per_epoch=4)
        batch = next(iter(DataLoader(ds, batch_size=4)))
        assert batch["frames"].shape == (4, *n, 3, 32, 32)  # frame mode: no frame axis
        assert batch["frames"].min() >= 0 and batch["frames"].max() <= 1
        assert batch["keypoints_2d"].shape == (4, *n, 17, 2)
        assert batch["has_labels"].dtype == torch.bool


@pytest.mark.timeout(60)
def test_workers_do_not_deadlock_after_opencv_ran_threaded_in_this_process(video_set):
    import cv2

    big = np.zeros((1080, 1920, 3), np.uint8)
    cv2.GaussianBlur(big, (31, 31), 5)  # starts OpenCV's thread pool in this process
    videos = index_videos(video_set, cache=False).videos
    ds = VideoClipDataset(videos, "views", 64, augment=AugmentConfig(), samples_per_epoch=16)
    ds[0]  # crops and colour jitter in this process before the workers fork
    cv2.GaussianBlur(big, (31, 31), 5)
    batches = list(DataLoader(ds, batch_size=4, num_workers=2, worker_init_fn=seed_worker))
    assert sum(len(b["frames"]) for b in batches) == 16


def test_reads_the_synthetic_generator_layout(tmp_path):
    synthetic = pytest.importorskip("css_pose.data.synthetic")
    synthetic.generate_dataset(
        tmp_path, videos=3, frames=30, size=64, seed=0, people=2, workers=1, progress=False
    )
    index = index_videos(tmp_path, cache=False)
    assert not index.problems and len(index) == 3
    assert all(
        v.num_persons == 2 and v.manifest_split in ("train", "val", "test") for v in index.videos
    )
    ds = VideoClipDataset(index.videos, "frame", 64, frame_stride=10)
    for i in range(len(ds)):
        s = ds[i]
        visible = s["visibility"] > 0
        assert visible.any() and s["has_labels"]
        centre = s["keypoints_2d"][visible].mean(0)
        assert (centre - 31.5).abs().max() < 16  # crops are centred on their person
        assert s["keypoints_3d"][:, 2].min() > 0  # in front of the camera, mm
