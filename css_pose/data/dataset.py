"""Map-style dataset of person-centred video samples for self-supervised and supervised training.

Items are tracks: one per (video, annotated person), or one per unlabeled video (whole frame).
Every sample is a pure function of (seed, epoch, item index): ``set_epoch`` changes it, and the
same index at the same epoch gives the same frames and augmentation in any process.

Modes (N frames per sample):
- ``contrastive``: [anchor, positives..., negatives..., transition...] (see ``sampling``), plus
  ``gt_offsets``;
- ``clip``: ``clip_len`` frames every ``clip_stride`` frames;
- ``frame``: one frame; the dataset lists every ``frame_stride``-th frame of each track;
- ``views``: one frame twice, augmented independently (SimCLR).

A sample is a dict of tensors:
``frames`` (N, 3, S, S) float32 in [0, 1]; ``frame_idx`` (N,) int64; ``video_idx``, ``person_idx``,
``sample_idx`` int64 scalars; ``keypoints_2d`` (N, J, 2) float32 crop px; ``visibility`` (N, J)
float32 (0 also where the point falls outside the crop); ``keypoints_3d`` (N, J, 3) float32 mm,
camera coordinates; ``has_labels`` bool scalar (False: label tensors are zeros); and in contrastive
mode ``gt_offsets`` (n_gt,) int64. In frame mode the per-frame tensors (:data:`PER_FRAME_KEYS`)
have no N axis: ``frames`` (3, S, S), ``frame_idx`` a scalar, ``keypoints_2d`` (J, 2), ...
"""

# Longer than 400 lines: VideoClipDataset is one class (342 lines) whose four sampling modes share the cropping, the crop store and the augmentation.

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from css_pose.data.index import VideoEntry
from css_pose.data.loading import Annotation, AnnotationError, load_annotation
from css_pose.data.sampling import (
    check_contrastive_params,
    clip_span,
    min_contrastive_length,
    sample_clip,
    sample_contrastive,
)
from css_pose.data.store import CropStore, stored_to_crop
from css_pose.data.transforms import (
    AugmentConfig,
    ViewParams,
    apply_colour,
    crop_matrix,
    draw_view_params,
    transform_points,
    warp_crop,
    whole_frame_box,
)
from css_pose.data.video import (
    CACHE_VIDEO_MB,
    FRAME_CACHE_MB,
    ReaderFactory,
    VideoReadError,
    cached_reader,
    drop_cached_reader,
)
from css_pose.flip import flip_joints
from css_pose.skeleton import NUM_JOINTS

MODES = ("contrastive", "clip", "frame", "views")
# The keys of a sample with one entry per frame (the N axis); frame mode drops that axis.
PER_FRAME_KEYS = ("frames", "frame_idx", "keypoints_2d", "visibility", "keypoints_3d")


@dataclass(frozen=True)
class Track:
    """One item: person ``person`` of video ``video`` (an index into the dataset's videos).

    The person appears in frames [start, stop). An unlabeled video is one track, person 0, over
    all its frames.
    """

    video: int
    person: int
    start: int
    stop: int


class VideoClipDataset(Dataset):
    """Samples of ``videos`` (entries of one split of a :class:`~css_pose.data.index.VideoIndex`).

    Args:
        videos: the videos; ``video_idx`` in samples indexes this list.
        mode: "contrastive", "clip", "frame" or "views".
        size: crop side S in px.
        samples_per_epoch: length in contrastive/clip/views modes (default: 8 per track).
        n_pos, d_pos, n_neg, d_neg, n_gt, gt_max: contrastive rules, in frames.
        clip_len, clip_stride: clip mode.
        frame_stride: frame mode lists every k-th frame of each track.
        labeled_only: frame mode lists annotated tracks only.
        augment: augmentation ranges, or None for none (validation).
        box_pad: crop side / max(box w, h) for annotated people.
        backend: "decord", "pyav", or a ``(path, num_frames) -> VideoReader`` factory.
        seed: base of every sample's RNG.
        max_retries: other samples tried when a video fails to read, before raising.
        cache_mb: decoded-frame cache per process (each DataLoader worker, or the main process
            with no workers), MiB; 0 turns it off. Videos of at most ``cache_video_mb`` MiB
            decoded (frames x H x W x 3 bytes) are decoded whole once per process and then read
            from memory (LRU); larger ones are read with one sorted seek-and-decode per sample.
            With W workers the cache can take W x ``cache_mb`` of RAM.
            "decord"/"pyav" backends only; see :mod:`css_pose.data.video`.
        cache_video_mb: largest decoded video, in MiB, that the cache takes.
        crop_box: "frame" crops every frame around its own box; "sample" crops all frames of a
            sample around the union of their boxes, so zoom and background do not change within
            a sample and only the person moves; "centre" crops all frames around the box of the
            middle frame (a clip's centre frame), so the centre crop is the one "frame" gives
            and the person moves in the neighbours' crops, as in a fixed camera.
        augment_scope: "sample" draws one augmentation for all frames of a sample (views mode:
            one per view), so colours stay constant within it; "frame" draws one per frame
            (never a flip), so a contrastive loss between frames cannot match them by colour.
        store: decoded crops (:class:`~css_pose.data.store.CropStore`) built with the same
            ``size`` and ``box_pad`` from these videos (or more); every mode then reads frames
            from it instead of decoding, and the crop is its stored row warped by the same
            frame -> crop matrix as without it (labels are unchanged; pixels differ by one more
            bilinear resampling). Used with ``crop_box="frame"`` only: "sample" and "centre"
            crop around boxes the store does not hold, so they keep decoding.
    """

    # Longer than 60 lines: the argument checks and one attribute per argument.
    def __init__(
        self,
        videos: Sequence[VideoEntry],
        mode: str = "contrastive",
        size: int = 128,
        *,
        samples_per_epoch: int | None = None,
        n_pos: int = 1,
        d_pos: int = 2,
        n_neg: int = 1,
        d_neg: int = 24,
        n_gt: int = 3,
        gt_max: int = 12,
        clip_len: int = 8,
        clip_stride: int = 1,
        frame_stride: int = 1,
        labeled_only: bool = True,
        augment: AugmentConfig | None = None,
        box_pad: float = 1.25,
        backend: str | ReaderFactory = "decord",
        seed: int = 0,
        max_retries: int = 8,
        cache_mb: float = FRAME_CACHE_MB,
        cache_video_mb: float = CACHE_VIDEO_MB,
        crop_box: str = "frame",
        augment_scope: str = "sample",
        store: CropStore | None = None,
    ):
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; choose one of {MODES}")
        if crop_box not in ("frame", "sample", "centre"):
            raise ValueError(f"crop_box must be 'frame', 'sample' or 'centre', got {crop_box!r}")
        if augment_scope not in ("sample", "frame"):
            raise ValueError(f"augment_scope must be 'sample' or 'frame', got {augment_scope!r}")
        if store is not None and (store.size, store.box_pad) != (size, box_pad):
            raise ValueError(
                f"the crop store {store.directory} holds crops for size={store.size}, "
                f"box_pad={store.box_pad}; this dataset uses size={size}, box_pad={box_pad}"
            )
        if mode == "contrastive":
            check_contrastive_params(n_pos, d_pos, n_neg, d_neg, n_gt, gt_max)
        self.videos = list(videos)
        self.mode, self.size, self.augment, self.box_pad = mode, size, augment, box_pad
        self.backend, self.seed, self.max_retries = backend, seed, max_retries
        self.cache_mb, self.cache_video_mb = cache_mb, cache_video_mb
        self.crop_box, self.augment_scope = crop_box, augment_scope
        self.store = store if crop_box == "frame" else None
        self.contrastive = dict(
            n_pos=n_pos, d_pos=d_pos, n_neg=n_neg, d_neg=d_neg, n_gt=n_gt, gt_max=gt_max
        )
        self.clip_len, self.clip_stride = clip_len, clip_stride
        self.annotations = self._load_annotations()
        self.tracks = self._eligible_tracks(self._all_tracks())
        if mode == "frame":
            self.frames = self._list_frames(frame_stride, labeled_only)
            if len(self.frames) == 0:
                raise ValueError(
                    f"frame mode: no {'labeled ' if labeled_only else ''}frames in "
                    f"{len(self.videos)} video(s); add .npz annotations beside the videos"
                )
        self.samples_per_epoch = samples_per_epoch or 8 * len(self.tracks)
        # Shared memory: set in the main process, read by every DataLoader worker.
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self._bad_videos: set[int] = set()  # per process: videos that failed to read

    def _load_annotations(self) -> dict[int, Annotation]:
        annotations = {}
        for v, entry in enumerate(self.videos):
            if entry.annotation is None:
                continue
            try:
                annotations[v] = load_annotation(entry.annotation, entry.num_frames)
            except AnnotationError as e:
                warnings.warn(f"{e}; {entry.path} is used unlabeled", stacklevel=3)
        return annotations

    def _all_tracks(self) -> list[Track]:
        tracks = []
        for v, entry in enumerate(self.videos):
            ann = self.annotations.get(v)
            if ann is None:
                tracks.append(Track(v, 0, 0, entry.num_frames))
                continue
            for p in range(ann.num_persons):
                start, stop = ann.span(p)
                if stop > start:
                    tracks.append(Track(v, p, start, stop))
        return tracks

    def _min_length(self) -> tuple[int, str]:
        if self.mode == "contrastive":
            c = self.contrastive
            need = min_contrastive_length(c["n_pos"], c["n_neg"], c["d_neg"], c["n_gt"])
            return need, f"contrastive sampling (d_neg={c['d_neg']}, n_gt={c['n_gt']})"
        if self.mode == "clip":
            span = clip_span(self.clip_len, self.clip_stride)
            return span, f"a clip of {self.clip_len} frames every {self.clip_stride}"
        return 1, "one frame"

    def _eligible_tracks(self, tracks: list[Track]) -> list[Track]:
        need, rule = self._min_length()
        short = [t for t in tracks if t.stop - t.start < need]
        if short:
            lines = "\n".join(
                f"  {self.videos[t.video].path} (person {t.person}): {t.stop - t.start} frames"
                for t in short
            )
            warnings.warn(
                f"{len(short)} track(s) shorter than the {need} frames needed for {rule} "
                f"are excluded:\n{lines}",
                stacklevel=3,
            )
        kept = [t for t in tracks if t.stop - t.start >= need]
        if not kept:
            raise ValueError(
                f"{self.mode} mode: none of {len(self.videos)} video(s) has a track of {need} "
                f"frames needed for {rule}; use longer videos or smaller sampling distances"
            )
        return kept

    def _list_frames(self, stride: int, labeled_only: bool) -> np.ndarray:
        """(M, 2) int64 rows (track index, frame) for frame mode."""
        rows = []
        for k, t in enumerate(self.tracks):
            ann = self.annotations.get(t.video)
            if ann is None and labeled_only:
                continue
            frames = np.arange(t.start, t.stop, stride)
            if ann is not None:
                frames = frames[ann.present[t.person, frames]]
            rows.append(np.stack([np.full_like(frames, k), frames], -1))
        return np.concatenate(rows) if rows else np.zeros((0, 2), np.int64)

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        """Select the samples of ``epoch``; visible to running DataLoader workers."""
        self._epoch.fill_(epoch)

    def __len__(self) -> int:
        return len(self.frames) if self.mode == "frame" else self.samples_per_epoch

    def _good_tracks(self) -> np.ndarray:
        """Indices of the tracks whose video has not failed to read in this process."""
        good = [k for k, t in enumerate(self.tracks) if t.video not in self._bad_videos]
        if not good:
            raise RuntimeError(f"every one of the {len(self.videos)} videos failed to read")
        return np.array(good)

    def _draw(
        self, index: int, attempt: int, rng: np.random.Generator
    ) -> tuple[int, np.ndarray, np.ndarray | None]:
        """(track index, (N,) frame indices, gt offsets or None) for one sample."""
        if self.mode == "frame":
            if attempt > 0:  # the sample's video failed to read: any frame of a working one
                rows = np.flatnonzero(np.isin(self.frames[:, 0], self._good_tracks()))
                index = int(rows[rng.integers(len(rows))])
            k, t = self.frames[index]
            return int(k), np.array([t]), None
        if attempt == 0:
            k = index % len(self.tracks)
        else:
            good = self._good_tracks()
            k = int(good[rng.integers(len(good))])
        track = self.tracks[k]
        length = track.stop - track.start
        if self.mode == "contrastive":
            draw = sample_contrastive(rng, length, **self.contrastive)
            return k, track.start + draw.frame_indices(), draw.gt_offsets
        if self.mode == "clip":
            return k, track.start + sample_clip(rng, length, self.clip_len, self.clip_stride), None
        t = track.start + int(rng.integers(length))
        return k, np.array([t, t] if self.mode == "views" else [t]), None

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        index = int(index)
        failures = []
        for attempt in range(self.max_retries + 1):
            rng = np.random.default_rng([self.seed, self.epoch, index, attempt])
            k, frame_idx, offsets = self._draw(index, attempt, rng)
            entry = self.videos[self.tracks[k].video]
            try:
                sample = self._load(self.tracks[k], frame_idx, rng)
            except VideoReadError as e:
                self._bad_videos.add(self.tracks[k].video)
                drop_cached_reader(entry.path)
                failures.append(str(e))
                warnings.warn(f"{e}; using a sample of another video instead", stacklevel=2)
                continue
            sample["sample_idx"] = torch.tensor(index)
            if self.mode == "frame":  # one frame: its tensors carry no frame axis
                sample.update({key: sample[key][0] for key in PER_FRAME_KEYS})
            if self.mode == "contrastive":
                sample["gt_offsets"] = torch.from_numpy(offsets)
            return sample
        raise RuntimeError(
            f"sample {index}: {len(failures)} video reads failed in a row:\n  "
            + "\n  ".join(failures)
        )

    def load_frames(self, track: int, frame_idx: np.ndarray) -> dict[str, torch.Tensor]:
        """The sample of track ``track`` (an index into ``tracks``) at frames ``frame_idx`` (N,),
        each in the track's [start, stop): one read (from the store when there is one) and the
        keys of a sample (``frames`` (N, 3, S, S), labels per frame). With
        ``crop_box="frame"`` each crop is the one frame mode gives for that frame; the
        augmentation, if any, is drawn once for the N frames. No retry: a failed read raises
        VideoReadError."""
        rng = np.random.default_rng([self.seed, self.epoch, track, int(frame_idx[0])])
        return self._load(self.tracks[track], np.asarray(frame_idx, np.int64), rng)

    def _read(self, entry: VideoEntry, frame_idx: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 frames, one sorted read of the unique indices."""
        try:
            st = os.stat(entry.path)
        except OSError as e:
            raise VideoReadError(f"{entry.path}: cannot read it any more ({e})") from e
        if (st.st_size, st.st_mtime_ns) != (entry.size_bytes, entry.mtime_ns):
            # A changed file may no longer hold the indexed frames; decord can hang on those.
            raise VideoReadError(f"{entry.path}: changed on disk since it was indexed; re-index")
        reader = cached_reader(
            entry.path,
            self.backend,
            entry.num_frames,
            cache_mb=self.cache_mb,
            cache_video_mb=self.cache_video_mb,
            size_hint=(entry.width, entry.height),
        )
        unique, inverse = np.unique(frame_idx, return_inverse=True)
        return reader.get_batch(unique.tolist())[inverse]

    def _load(
        self, track: Track, frame_idx: np.ndarray, rng: np.random.Generator
    ) -> dict[str, torch.Tensor]:
        entry = self.videos[track.video]
        if self.store is None:
            images, stored = self._read(entry, frame_idx), None
        else:
            images, stored = self.store.read(entry, track.person, frame_idx)
        n = len(frame_idx)
        ann = self.annotations.get(track.video)
        if ann is None:
            boxes = np.repeat(whole_frame_box(entry.width, entry.height)[None], n, 0)
            pad = 1.0
        else:
            boxes, pad = ann.boxes[track.person, frame_idx], self.box_pad
            if self.crop_box == "sample":
                union = np.concatenate([boxes[:, :2].min(0), boxes[:, 2:].max(0)])
                boxes = np.repeat(union[None], n, 0)
            elif self.crop_box == "centre":
                boxes = np.repeat(boxes[n // 2][None], n, 0)

        # One augmentation for the whole sample (views mode: one per view; augment_scope
        # "frame": one per frame).
        flip = self.mode == "views"
        views = 2 if flip else 1
        if self.augment_scope == "frame" and self.augment is not None:
            views = n
        params = [draw_view_params(rng, self.augment, allow_flip=flip) for _ in range(views)]
        group = np.arange(n) * views // n  # view of each frame
        matrices = [crop_matrix(boxes[i], self.size, pad, params[group[i]]) for i in range(n)]
        warps = matrices if stored is None else stored_to_crop(np.stack(matrices), stored)
        crops = np.stack([warp_crop(images[i], warps[i], self.size) for i in range(n)])
        for v in range(views):
            if self.augment is not None:
                crops[group == v] = apply_colour(crops[group == v], params[v])
        # (N, S, S, 3) uint8 -> (N, 3, S, S) float32 in [0, 1]
        frames = torch.from_numpy(np.ascontiguousarray(crops.transpose(0, 3, 1, 2)))

        labels = self._labels(ann, track.person, frame_idx, matrices, [params[g] for g in group])
        return {
            "frames": frames.float().div_(255.0),
            "frame_idx": torch.from_numpy(frame_idx.astype(np.int64)),
            "video_idx": torch.tensor(track.video),
            "person_idx": torch.tensor(track.person),
            **labels,
        }

    def _labels(
        self,
        ann: Annotation | None,
        person: int,
        frame_idx: np.ndarray,
        matrices: list[np.ndarray],
        params: list[ViewParams],
    ) -> dict[str, torch.Tensor]:
        """Label tensors in crop coordinates (zeros and has_labels=False without an annotation)."""
        n = len(frame_idx)
        kp2 = np.zeros((n, NUM_JOINTS, 2), np.float32)
        vis = np.zeros((n, NUM_JOINTS), np.float32)
        kp3 = np.zeros((n, NUM_JOINTS, 3), np.float32)
        if ann is not None:
            for i, t in enumerate(frame_idx):
                kp2[i] = transform_points(ann.keypoints_2d[person, t], matrices[i])
                vis[i] = ann.visibility[person, t]
                if ann.keypoints_3d is not None:
                    kp3[i] = ann.keypoints_3d[person, t]
                if params[i].flip:
                    kp2[i], vis[i], kp3[i] = flip_joints(kp2[i], vis[i], kp3[i])
            inside = ((kp2 >= -0.5) & (kp2 <= self.size - 0.5)).all(-1)
            vis *= inside
        return {
            "keypoints_2d": torch.from_numpy(kp2),
            "visibility": torch.from_numpy(vis),
            "keypoints_3d": torch.from_numpy(kp3),
            "has_labels": torch.tensor(ann is not None),
        }
