"""Decoded-crop store: samples equal the decode path's, rebuilds when stale or damaged, safe writes."""

from __future__ import annotations

import errno
import json
import os
import pickle
import warnings

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader
from video_fixtures import make_video_set

from css_pose.data import store_build as store_module
from css_pose.data.datamodule import VideoDataModule
from css_pose.data.dataset import VideoClipDataset
from css_pose.data.index import index_videos
from css_pose.data.store import META, CropStore, CropStoreError
from css_pose.data.synthetic import generate_dataset
from css_pose.data.transforms import AugmentConfig
from css_pose.data.video import VideoReadError, open_video

SIZE = 64
SAMPLING = dict(n_pos=1, d_pos=2, n_neg=1, d_neg=8, n_gt=2, gt_max=6)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    generate_dataset(root, videos=4, frames=24, size=64, workers=1, progress=False)
    return root


def build(videos, store_dir, **kw):
    return CropStore.build(videos, SIZE, store_dir=store_dir, progress=False, **kw)


def store_warnings(record) -> list[str]:
    return [str(w.message) for w in record if "crop store" in str(w.message)]


def compare(videos, store, mode, augment, count=16):
    """Mean abs pixel difference (0-255) of the store's samples against the decode path's, after
    checking that every other tensor is identical."""
    kw = dict(samples_per_epoch=count, augment=augment, cache_mb=0)
    if mode == "contrastive":
        kw.update(SAMPLING)
    plain = VideoClipDataset(videos, mode, SIZE, **kw)
    stored = VideoClipDataset(videos, mode, SIZE, store=store, **kw)
    diffs = []
    for i in np.linspace(0, len(plain) - 1, count).astype(int):
        a, b = plain[i], stored[i]
        assert a.keys() == b.keys()
        for key in a:
            if key != "frames":
                assert torch.equal(a[key], b[key]), key
        diffs.append((a["frames"] - b["frames"]).abs().mean().item() * 255)
    return float(np.mean(diffs))


@pytest.mark.parametrize("mode", ["contrastive", "frame"])
@pytest.mark.parametrize("augment", [None, AugmentConfig()], ids=["plain", "augmented"])
def test_store_samples_equal_the_decode_path(synthetic, tmp_path, mode, augment):
    videos = index_videos(synthetic).videos
    store = build(videos, tmp_path)
    assert store.side == round(SIZE * 1.5)
    diff = compare(videos, store, mode, augment)
    # Without augmentation the second warp is the identity; with it, one more bilinear resampling.
    assert diff < (0.01 if augment is None else 3.0)


def test_unlabeled_videos_store_the_whole_frame(tmp_path):
    make_video_set(tmp_path / "data", [20, 20], labeled=False, width=96, height=64)
    videos = index_videos(tmp_path / "data").videos
    store = build(videos, tmp_path / "stores")
    assert store.num_rows == 40
    assert compare(videos, store, "contrastive", AugmentConfig(), count=8) < 3.0


def test_long_videos_are_decoded_and_written_in_chunks(synthetic, tmp_path, monkeypatch):
    videos = index_videos(synthetic).videos
    whole = build(videos, tmp_path / "whole")
    monkeypatch.setattr(store_module, "DECODE_MB", 0.1)  # 8 frames of 64x64 per decoded batch
    monkeypatch.setattr(store_module, "WRITE_ROWS", 5)
    chunked = build(videos, tmp_path / "chunked")
    assert np.array_equal(chunked.crops, whole.crops)
    assert np.array_equal(chunked.matrices, whole.matrices)


def test_a_stale_store_is_rebuilt_with_one_message(synthetic, tmp_path):
    videos = index_videos(synthetic).videos
    first = build(videos, tmp_path)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        again = build(videos, tmp_path)
    assert again.directory == first.directory and not store_warnings(record)

    st = os.stat(videos[0].path)
    os.utime(videos[0].path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    try:
        changed = index_videos(synthetic).videos
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            rebuilt = build(changed, tmp_path)
        messages = store_warnings(record)
        assert len(messages) == 1 and "stale" in messages[0] and videos[0].path in messages[0]
        assert rebuilt.directory == first.directory  # rebuilt in place, no second copy
        assert compare(changed, rebuilt, "frame", None, count=4) < 0.01
    finally:
        os.utime(videos[0].path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_a_truncated_array_is_rebuilt(synthetic, tmp_path):
    videos = index_videos(synthetic).videos
    store = build(videos, tmp_path)
    crops = store.directory / "crops.npy"
    full = crops.stat().st_size
    os.truncate(crops, full // 2)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        rebuilt = build(videos, tmp_path)
    messages = store_warnings(record)
    assert len(messages) == 1 and "crops.npy" in messages[0]
    assert crops.stat().st_size == full
    assert rebuilt.crops.shape == (store.num_rows, store.side, store.side, 3)


def test_a_full_disk_names_the_folder_and_keeps_the_previous_store(
    synthetic, tmp_path, monkeypatch
):
    videos = index_videos(synthetic).videos
    other = build(videos[:2], tmp_path)  # another store in the same folder
    previous = build(videos, tmp_path)
    before = {p.name: p.read_bytes() for p in previous.directory.iterdir()}
    st = os.stat(videos[0].path)
    os.utime(videos[0].path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    calls = []

    def full_disk(fd, data, offset):
        calls.append(offset)
        if len(calls) > 2:  # the header and one video's crops were written
            raise OSError(errno.ENOSPC, "No space left on device")
        os.pwrite(fd, data, offset)

    monkeypatch.setattr(store_module, "_write", full_disk)
    try:
        changed = index_videos(synthetic).videos
        with pytest.warns(UserWarning, match="stale"):
            with pytest.raises(CropStoreError, match="disk is full") as error:
                build(changed, tmp_path)
    finally:
        os.utime(videos[0].path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert str(previous.directory) in str(error.value) and "MiB" in str(error.value)
    assert not list(tmp_path.rglob("*.tmp"))
    assert {p.name: p.read_bytes() for p in previous.directory.iterdir()} == before
    monkeypatch.undo()
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        reopened = build(videos, tmp_path)
        build(videos[:2], tmp_path)
    assert not store_warnings(record)
    assert np.array_equal(reopened.crops, previous.crops)
    assert other.num_rows == 48


def test_videos_that_fail_to_decode_are_left_out(synthetic, tmp_path):
    videos = index_videos(synthetic).videos
    bad = videos[1].path

    def reader(path, num_frames):
        if path == bad:
            raise VideoReadError(f"{path}: cannot decode (simulated)")
        return open_video(path, "pyav", num_frames)

    with pytest.warns(UserWarning, match="failed to decode") as record:
        store = build(videos, tmp_path, backend=reader)
    assert any(bad in str(w.message) for w in record)
    assert store.num_rows == 72 and bad in store.failed
    with pytest.raises(VideoReadError, match="failed to decode"):
        store.read(videos[1], 0, np.array([0]))
    dataset = VideoClipDataset(videos, "frame", SIZE, store=store, cache_mb=0)
    with pytest.warns(UserWarning, match="another video"):
        samples = [dataset[i] for i in range(24, 48)]  # the frames of the bad video
    assert all(int(s["video_idx"]) != 1 for s in samples)


@pytest.mark.timeout(60)
def test_workers_read_the_store_without_copying_it(synthetic, tmp_path):
    videos = index_videos(synthetic).videos
    store = build(videos, tmp_path)
    assert store.crops is not None  # opened here: workers must not receive it pickled
    assert len(pickle.dumps(store)) < 20_000
    dataset = VideoClipDataset(
        videos, "contrastive", SIZE, store=store, samples_per_epoch=8, **SAMPLING
    )
    serial = list(DataLoader(dataset, batch_size=4))
    parallel = list(DataLoader(dataset, batch_size=4, num_workers=2))
    for a, b in zip(serial, parallel):
        assert torch.equal(a["frames"], b["frames"])


def test_datamodule_builds_stores_in_the_user_cache(synthetic, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    dm = VideoDataModule(
        synthetic, size=SIZE, num_workers=0, batch_size=2, sampling=SAMPLING, store=True
    )
    dm.prepare_data()
    dm.setup()
    stores = list((tmp_path / "cache" / "css_pose" / "stores").glob(f"*/{META}"))
    assert len(stores) == 2  # train and val
    assert dm.train_set.store is not None and dm.val_set.store is not None
    meta = json.loads((dm.train_set.store.directory / META).read_text())
    assert sorted(meta["tracks"]) == sorted(v.path for v in dm.index.split("train", 0.15))
    batch = next(iter(dm.train_dataloader()))
    assert batch["frames"].shape == (2, 5, 3, SIZE, SIZE)
    assert not any(p.is_relative_to(synthetic) for p in stores)
