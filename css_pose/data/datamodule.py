"""The data of a run over a folder of videos: train/val split by video, plus a probe loader.

DDP: the training sampler shards one seeded permutation across ranks (run the Trainer with
``use_distributed_sampler=False``), so every rank draws distinct item indices. Samples depend on the epoch; since
DataLoader workers hold their own copies of the dataset, :class:`EpochDataLoader` hands the
sampler's epoch (set by Lightning before each epoch) to the dataset's shared-memory epoch counter
before every pass, which reaches persistent workers too.
"""

# Longer than 400 lines: VideoDataModule is one class (288 lines) that owns the splits, the crop stores and every loader built on them.

from __future__ import annotations

import dataclasses
import random
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import fields
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from css_pose.data.dataset import VideoClipDataset
from css_pose.data.index import VideoEntry, VideoIndex, index_videos
from css_pose.data.labels import VideoLabels, attach_boxes, attach_labels, split_by_video
from css_pose.data.store import CropStore
from css_pose.data.transforms import AugmentConfig
from css_pose.data.video import CACHE_VIDEO_MB, FRAME_CACHE_MB, ReaderFactory

SAMPLING_KEYS = ("n_pos", "d_pos", "n_neg", "d_neg", "n_gt", "gt_max", "clip_len", "clip_stride")


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: per-worker numpy and ``random`` seeds.

    No ``cv2.setNumThreads`` here: in a worker forked after OpenCV started its thread pool in the
    parent, it waits forever for the parent's threads.
    """
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)  # noqa: NPY002 - third-party transforms may draw from the global RNG
    random.seed(seed)


class EpochRandomSampler(Sampler[int]):
    """A permutation seeded by (seed, epoch), sharded across DDP ranks, with ``set_epoch``.

    Lightning builds the first loader iterator of a run before it calls ``set_epoch``; a run resumed
    at epoch e would then draw epoch 0's samples. The datamodule therefore creates this sampler
    already at the trainer's current epoch, and for a run resumed inside an epoch with ``start``:
    the number of this rank's samples of that epoch already trained on, which its first pass skips
    (later epochs start at 0). ``len`` stays the full shard: Lightning counts the skipped batches as
    fetched. Under torch.distributed each rank takes every world-th index of the same permutation
    (the tail that does not divide evenly is dropped), so ranks see distinct samples;
    ``Trainer(use_distributed_sampler=False)`` keeps Lightning from replacing it.
    """

    def __init__(
        self,
        data_source,
        seed: int = 0,
        epoch: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        start: int = 0,
    ):
        self.data_source = data_source
        self.seed = seed
        self.epoch = epoch
        self.rank, self.world_size = rank, world_size
        self.start = start

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.start = 0
        self.epoch = epoch

    def _world(self) -> tuple[int, int]:
        if self.world_size is not None:
            return self.rank or 0, self.world_size
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        return 0, 1

    def __len__(self) -> int:
        return len(self.data_source) // self._world()[1]

    def __iter__(self) -> Iterator[int]:
        rank, world = self._world()
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        perm = torch.randperm(len(self.data_source), generator=generator).tolist()
        return iter(perm[: len(self) * world][rank::world][self.start :])


class EpochDataLoader(DataLoader):
    """DataLoader that tells its dataset the sampler's epoch before each pass over the data."""

    def __iter__(self):
        epoch = getattr(self.sampler, "epoch", None)
        if epoch is not None and hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        return super().__iter__()


def _resume_position(trainer) -> tuple[int, int]:
    """(epoch, its batches already trained) at which the trainer's next training pass starts.

    The epoch is the one Lightning will pass to ``set_epoch``: a run resumed after epoch k reports
    ``current_epoch`` k - 1 here but processes epoch k. A run restored from a checkpoint taken
    inside an epoch (``checkpoints/interrupted.ckpt``) has ``processed`` batches of it behind it;
    Lightning runs only the rest of the epoch but does not skip them in the loader.
    """
    fit_loop = getattr(trainer, "fit_loop", None)
    if fit_loop is None:
        return trainer.current_epoch, 0
    epochs = fit_loop.epoch_progress.current
    if getattr(fit_loop, "restarting", False) and epochs.ready > epochs.processed:
        return epochs.processed, fit_loop.epoch_loop.batch_progress.current.processed
    return epochs.processed, 0


def _augment_config(augment: bool | AugmentConfig | Mapping | None) -> AugmentConfig | None:
    if isinstance(augment, AugmentConfig) or augment is None:
        return augment
    if isinstance(augment, bool):
        return AugmentConfig() if augment else None
    known = {f.name for f in fields(AugmentConfig)}
    unknown = sorted(set(augment) - known)
    if unknown:
        raise ValueError(f"unknown augment key(s) {unknown}; known: {sorted(known)}")
    return AugmentConfig(**dict(augment))


def _warn_left_out(path: Path, problems: list[str]) -> None:
    if problems:
        lines = "\n".join(f"  {p}" for p in problems)
        warnings.warn(f"{len(problems)} record(s) of {path} left out:\n{lines}", stacklevel=4)


class VideoDataModule:
    """Train/val loaders of :class:`~css_pose.data.dataset.VideoClipDataset` split by video.

    Args:
        root: folder of videos (and optional npz annotations / manifest.json).
        mode: dataset mode for train and val ("contrastive", "clip", "frame", "views").
        size: crop side in px.
        batch_size, num_workers: per loader (workers persist across epochs when > 0).
        samples_per_epoch, val_samples: samples per train / val epoch (not in frame mode).
        sampling: n_pos, d_pos, n_neg, d_neg, n_gt, gt_max, clip_len, clip_stride (frames).
        augment: True (defaults), False, or AugmentConfig fields; training only.
        val_fraction: share of videos hashed into val when no manifest assigns splits.
        seed: sampling seed (train uses it, val uses seed + 1).
        backend: "decord", "pyav" or a reader factory.
        probe_stride: probe frames are every k-th labeled frame.
        box_pad: crop side / max(box w, h).
        strict, cache: passed to :func:`~css_pose.data.index.index_videos`.
        cache_mb, cache_video_mb: decoded-frame cache per process (each worker), MiB, and the
            largest decoded video it takes; ``cache_mb=0`` turns it off. RAM: up to
            ``num_workers x cache_mb`` per loader. See :class:`VideoClipDataset`.
        crop_box: "frame" or "sample" (one union box per sample); see :class:`VideoClipDataset`.
        augment_scope: "sample" or "frame" (one augmentation per frame); training only.
        store: read crops from a :class:`~css_pose.data.store.CropStore` per split (built in
            ``prepare_data`` for train and val, on first use for a probe's split) instead of
            decoding videos; ``crop_box="frame"`` only. Disk: frames x (size x margin)^2 x 3
            bytes per split, in ``store_dir`` (default ``$XDG_CACHE_HOME/css_pose/stores``, else
            ``~/.cache/css_pose/stores``).
        store_margin: stored crop side / ``size`` (context for scale and shift augmentation).
        labels: a COCO / PoseTrack keypoints file labelling a few frames of the videos under
            ``root`` (:mod:`css_pose.data.labels`). Then training (pretraining) uses every video
            as unlabelled whole frames, and the probe loaders use the labelled frames; npz
            files beside the videos are not read.
        labels_skip_bad: leave malformed records and unmatched images of ``labels`` and
            ``boxes`` out (one warning) instead of raising.
        boxes: a COCO file of person boxes for the frames of the videos under ``root``
            (:func:`~css_pose.data.labels.attach_boxes`): training crops around them instead of
            taking whole frames; the probes still use the labels.
        boxes_min_score: boxes scoring below it are dropped.
    """

    # Longer than 60 lines: the argument checks and one attribute per argument.
    def __init__(
        self,
        root: str | Path,
        mode: str = "contrastive",
        size: int = 128,
        batch_size: int = 16,
        num_workers: int = 2,
        samples_per_epoch: int | None = 512,
        val_samples: int | None = 64,
        sampling: Mapping[str, int] | None = None,
        augment: bool | AugmentConfig | Mapping = True,
        val_fraction: float = 0.15,
        seed: int = 0,
        backend: str | ReaderFactory = "decord",
        probe_stride: int = 4,
        box_pad: float = 1.25,
        strict: bool = False,
        cache: bool = True,
        cache_mb: float = FRAME_CACHE_MB,
        cache_video_mb: float = CACHE_VIDEO_MB,
        crop_box: str = "frame",
        augment_scope: str = "sample",
        store: bool = False,
        store_dir: str | Path | None = None,
        store_margin: float = 1.5,
        labels: str | Path | None = None,
        labels_skip_bad: bool = False,
        boxes: str | Path | None = None,
        boxes_min_score: float = 0.3,
    ):
        sampling = dict(sampling or {})
        unknown = sorted(set(sampling) - set(SAMPLING_KEYS))
        if unknown:
            raise ValueError(f"unknown sampling key(s) {unknown}; known: {list(SAMPLING_KEYS)}")
        self.root, self.mode, self.size = Path(root), mode, size
        self.trainer = None  # the Lightning trainer, when one runs this data (methods/data.py)
        self.batch_size, self.num_workers = batch_size, num_workers
        self.samples_per_epoch, self.val_samples = samples_per_epoch, val_samples
        self.sampling, self.augment = sampling, _augment_config(augment)
        self.val_fraction, self.seed, self.backend = val_fraction, seed, backend
        self.probe_stride, self.box_pad = probe_stride, box_pad
        self.strict, self.cache = strict, cache
        self.cache_mb, self.cache_video_mb = cache_mb, cache_video_mb
        self.crop_box, self.augment_scope = crop_box, augment_scope
        if store and crop_box != "frame":
            warnings.warn(
                f"store=True is not used with crop_box={crop_box!r} (the store holds per-frame "
                "crops); videos are decoded as without it",
                stacklevel=2,
            )
        self.store = store and crop_box == "frame"
        self.store_dir, self.store_margin = store_dir, store_margin
        self._stores: dict[tuple[VideoEntry, ...], CropStore] = {}
        self.labels_path = None if labels is None else Path(labels)
        self.labels_skip_bad = labels_skip_bad
        self.boxes_path = None if boxes is None else Path(boxes)
        self.boxes_min_score = boxes_min_score
        self.labels: VideoLabels | None = None
        self.index: VideoIndex | None = None
        # The videos the probes read: ``index``, or with ``labels`` the labelled entries.
        self.label_index: VideoIndex | None = None
        self._indexes: tuple[VideoIndex, VideoIndex] | None = None
        self.train_set: VideoClipDataset | None = None
        self.val_set: VideoClipDataset | None = None
        self._probe_loaders: dict[str, DataLoader] = {}

    def _index(self) -> tuple[VideoIndex, VideoIndex]:
        """(videos for training, videos for the probes): the same index without ``labels`` and
        ``boxes``. With ``labels`` the probes' videos carry the labels file's annotations and
        every split is fixed by :func:`~css_pose.data.labels.split_by_video`; training's videos
        carry ``boxes``' boxes, or none (whole frames). Built once per datamodule (``prepare_data``
        and ``setup`` share it), so the labels and boxes are matched once."""
        if self._indexes is None:
            self._indexes = self._build_index()
        return self._indexes

    def _build_index(self) -> tuple[VideoIndex, VideoIndex]:
        index = index_videos(self.root, strict=self.strict, cache=self.cache)
        if self.labels_path is None and self.boxes_path is None:
            return index, index
        labelled = index.videos
        if self.labels_path is not None:
            self.labels = attach_labels(index, self.labels_path, skip_bad=self.labels_skip_bad)
            _warn_left_out(self.labels_path, self.labels.problems)
            labelled = split_by_video(self.labels.entries, self.val_fraction)
        if self.boxes_path is not None and self.mode != "frame":  # frame mode: labels only
            boxed, problems = attach_boxes(
                index, self.boxes_path, self.boxes_min_score, skip_bad=self.labels_skip_bad
            )
            _warn_left_out(self.boxes_path, problems)
        else:
            boxed = [dataclasses.replace(v, annotation=None, num_persons=0) for v in index.videos]
        split = {v.rel_path: v.manifest_split for v in labelled}
        raw = [dataclasses.replace(v, manifest_split=split[v.rel_path]) for v in boxed]
        return (
            VideoIndex(index.root, raw, index.problems),
            VideoIndex(index.root, labelled, index.problems),
        )

    def prepare_data(self) -> None:
        """Build the index cache and the crop stores once (rank 0) so that every rank's ``setup``
        only reads them."""
        index, labelled = self._index()
        if self.mode == "frame":
            index = labelled
        for split in ("train", "val"):
            videos = index.split(split, self.val_fraction)
            if self.store and videos:
                self._crop_store(videos)

    def setup(self, stage: str | None = None) -> None:
        if self.index is not None:
            return
        self.index, self.label_index = self._index()
        # Frame mode (probes, heads, supervised training) is about labelled frames.
        source = self.label_index if self.mode == "frame" else self.index
        train = source.split("train", self.val_fraction)
        if not train:
            raise ValueError(f"{self.root}: the train split has no video (check manifest.json)")
        if self.mode == "frame" and self.labels_path and not any(v.labeled for v in train):
            raise ValueError(
                f"{self.labels_path}: none of its labelled videos is in the train split "
                f"({self.labels.summary().removeprefix('[css_pose] ')}); label frames of more "
                "videos"
            )
        if self.mode == "frame":  # labelled frames only: store and read only labelled videos
            train = [v for v in train if v.labeled]
            if not train:
                raise ValueError(
                    f"{self.root}: frame mode: no labeled video in the train split; add .npz "
                    "annotations beside some of its videos, or give data.labels"
                )
        self.train_set = self._dataset(train, self.samples_per_epoch, self.augment, self.seed)
        val = source.split("val", self.val_fraction)
        if self.mode == "frame":
            val = [v for v in val if v.labeled]
        if val:
            self.val_set = self._dataset(val, self.val_samples, None, self.seed + 1)

    def _crop_store(self, videos: list[VideoEntry]) -> CropStore | None:
        """The split's crop store, built or checked once per datamodule; None when off."""
        if not self.store:
            return None
        key = tuple(sorted(videos, key=lambda v: v.path))
        if key not in self._stores:
            self._stores[key] = CropStore.build(
                videos,
                self.size,
                margin=self.store_margin,
                box_pad=self.box_pad,
                store_dir=self.store_dir,
                backend=self.backend,
            )
        return self._stores[key]

    def _dataset(self, videos, samples: int | None, augment, seed: int, **kw) -> VideoClipDataset:
        kw.setdefault("mode", self.mode)
        return VideoClipDataset(
            videos,
            size=self.size,
            samples_per_epoch=samples,
            augment=augment,
            box_pad=self.box_pad,
            backend=self.backend,
            seed=seed,
            cache_mb=self.cache_mb,
            cache_video_mb=self.cache_video_mb,
            crop_box=self.crop_box,
            augment_scope=self.augment_scope,
            store=self._crop_store(videos),
            **self.sampling,
            **kw,
        )

    def _loader(self, dataset, cls=DataLoader, **kw) -> DataLoader:
        return cls(
            dataset,
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            worker_init_fn=seed_worker,
            **kw,
        )

    def train_dataloader(self) -> DataLoader:
        """Shuffled, sharded across DDP ranks, drop_last; epoch-aware samples (module docstring).

        With ``self.trainer`` set (the Lightning trainer; :class:`css_pose.methods.data.LightningData`
        sets it), a run resumed inside an epoch draws only the batches of that epoch it has not
        trained on, so that it sees the same samples as a run that was never stopped."""
        self.setup()
        epoch, done = 0, 0
        trainer = self.trainer
        if trainer is not None:
            epoch, done = _resume_position(trainer)
        sampler = EpochRandomSampler(
            self.train_set, seed=self.seed, epoch=epoch, start=done * self.batch_size
        )
        return self._loader(self.train_set, EpochDataLoader, sampler=sampler, drop_last=True)

    def val_dataloader(self) -> DataLoader | list:
        """Fixed val samples (epoch 0 always); [] when the val split is empty."""
        self.setup()
        return [] if self.val_set is None else self._loader(self.val_set)

    def probe_dataloader(self, split: str = "val", labeled_only: bool = True) -> DataLoader:
        """Frames (frame mode, every ``probe_stride``-th) of ``split``, in order: the labeled ones,
        or with ``labeled_only=False`` every video's (unlabeled videos as whole frames).

        Batches carry ``video_idx`` into the dataset's video list (the split's labeled videos,
        or all of them with ``labeled_only=False``), so a probe can fit on some
        videos and score on others. Raises ValueError when the split has no labeled frame
        (no video at all with ``labeled_only=False``).
        """
        self.setup()
        key = (split, labeled_only)
        if key not in self._probe_loaders:
            videos = self.label_index.split(split, self.val_fraction)
            if labeled_only and not any(v.labeled for v in videos):
                source = (
                    f"labels in {self.labels_path} for some of its videos"
                    if self.labels_path
                    else ".npz annotations beside some of its videos"
                )
                raise ValueError(
                    f"{self.root}: the {split} split has no labeled video; the probe needs "
                    + source
                )
            if not videos:
                raise ValueError(f"{self.root}: the {split} split has no video")
            if labeled_only:  # a few labelled videos among many: store and read only those
                videos = [v for v in videos if v.labeled]
            dataset = self._dataset(
                videos,
                None,
                None,
                self.seed,
                mode="frame",
                frame_stride=self.probe_stride,
                labeled_only=labeled_only,
            )
            self._probe_loaders[key] = self._loader(dataset)
        return self._probe_loaders[key]

    def has_labels(self, split: str = "val") -> bool:
        """Whether any video of ``split`` has annotations (the probes need some)."""
        self.setup()
        return any(v.labeled for v in self.label_index.split(split, self.val_fraction))
