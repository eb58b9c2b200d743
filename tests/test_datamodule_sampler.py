"""The training sampler: distinct samples per DDP rank, and the right epoch on resume."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from video_fixtures import write_video

from css_pose.data.datamodule import EpochDataLoader, EpochRandomSampler, VideoDataModule
from css_pose.data.dataset import VideoClipDataset
from css_pose.data.index import index_videos


def _dataset(root, n=40):
    for i in range(3):
        write_video(root / f"v{i}.mp4", 48, width=32, height=32)
    videos = index_videos(root, cache=False).videos
    return VideoClipDataset(videos, "contrastive", 32, d_neg=20, samples_per_epoch=n)


def test_ranks_get_disjoint_samples_covering_the_epoch(tmp_path):
    ds = _dataset(tmp_path)
    seen = []
    for rank in range(2):
        sampler = EpochRandomSampler(ds, seed=0, epoch=3, rank=rank, world_size=2)
        loader = EpochDataLoader(ds, batch_size=8, sampler=sampler)
        assert len(sampler) == 20
        seen.append({int(i) for batch in loader for i in batch["sample_idx"]})
        assert ds.epoch == 3
    assert seen[0].isdisjoint(seen[1])
    assert seen[0] | seen[1] == set(range(40))


def test_train_loader_starts_at_the_trainers_epoch(tmp_path):
    """A resumed run (trainer at epoch 2) must draw epoch 2's samples on its first pass."""
    _dataset(tmp_path)
    dm = VideoDataModule(
        tmp_path,
        size=32,
        batch_size=4,
        num_workers=0,
        samples_per_epoch=8,
        sampling={"d_neg": 20},
        augment=False,
        cache=False,
    )
    fresh = [b["frame_idx"] for b in dm.train_dataloader()]
    dm.trainer = SimpleNamespace(
        current_epoch=1,
        fit_loop=SimpleNamespace(
            epoch_progress=SimpleNamespace(current=SimpleNamespace(processed=2))
        ),
    )
    resumed = dm.train_dataloader()
    assert resumed.sampler.epoch == 2
    first_pass = [b["frame_idx"] for b in resumed]
    dm.trainer = None
    reference = dm.train_dataloader()
    reference.sampler.set_epoch(2)
    expected = [b["frame_idx"] for b in reference]
    assert all((a == b).all() for a, b in zip(first_pass, expected))
    assert any((a != b).any() for a, b in zip(first_pass, fresh))


def test_sample_crop_box_uses_one_box_for_every_frame(tmp_path):
    """crop_box="sample": every frame of a sample is cropped from the union of their boxes."""
    from css_pose.data.loading import load_annotation
    from css_pose.data.synthetic import generate_dataset
    from css_pose.data.transforms import crop_matrix, transform_points

    generate_dataset(tmp_path, videos=2, frames=40, size=64, seed=1, workers=1, progress=False)
    videos = index_videos(tmp_path, cache=False).videos
    ds = VideoClipDataset(
        videos, "contrastive", 32, d_neg=10, gt_max=6, crop_box="sample", samples_per_epoch=4
    )
    item = ds[0]
    entry = ds.videos[int(item["video_idx"])]
    ann = load_annotation(entry.annotation, entry.num_frames)
    idx = item["frame_idx"].numpy()
    boxes = ann.boxes[0, idx]
    union = np.concatenate([boxes[:, :2].min(0), boxes[:, 2:].max(0)])
    matrix = crop_matrix(union, 32, ds.box_pad)
    expected = transform_points(ann.keypoints_2d[0, idx], matrix)
    assert np.allclose(item["keypoints_2d"].numpy(), expected, atol=1e-3)


def test_centre_crop_box_cuts_a_clip_around_its_centre_frame(tmp_path):
    """crop_box="centre": every frame of a clip is cropped around the centre frame's box, so the
    centre crop is frame mode's and the neighbours' keypoints are mapped into it."""
    from css_pose.data.loading import load_annotation
    from css_pose.data.synthetic import generate_dataset
    from css_pose.data.transforms import crop_matrix, transform_points

    generate_dataset(tmp_path, videos=1, frames=40, size=64, seed=1, workers=1, progress=False)
    videos = index_videos(tmp_path, cache=False).videos
    ann = load_annotation(videos[0].annotation, videos[0].num_frames)
    kw = dict(d_neg=10, gt_max=6, samples_per_epoch=4, augment=None, mode="frame")
    centre = VideoClipDataset(videos, size=32, crop_box="centre", **kw)
    frame = VideoClipDataset(videos, size=32, crop_box="frame", **kw)
    idx = np.array([10, 14, 18, 22, 26])
    a, b = centre.load_frames(0, idx), frame.load_frames(0, idx)
    assert np.allclose(a["frames"][2].numpy(), b["frames"][2].numpy())
    matrix = crop_matrix(ann.boxes[0, 18], 32, centre.box_pad)
    expected = transform_points(ann.keypoints_2d[0, idx], matrix)
    assert np.allclose(a["keypoints_2d"].numpy(), expected, atol=1e-3)
