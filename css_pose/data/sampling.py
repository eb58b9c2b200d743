"""Which frames a training sample uses: pure functions of a length and an RNG, no decoding.

Times are frame indices in ``[0, length)`` of one track (a video, or the span of frames in which
one annotated person appears); the dataset adds the track's first frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ContrastiveLayout:
    """Where each part of a contrastive sample sits on its frame axis: the one definition that
    the dataset writes (:meth:`ContrastiveDraw.frame_indices`) and the methods read by name.

    Frames are ordered [anchor, positives (n_pos), negatives (n_neg), transition (n_gt)], so a
    sample's ``frames`` is (N, 3, H, W) with N = :attr:`length`; index a batch's frame axis with
    these, e.g. ``z[:, layout.negatives]``.
    """

    n_pos: int
    n_neg: int
    n_gt: int
    anchor: int = 0

    @classmethod
    def of(cls, sampling) -> ContrastiveLayout:
        """From a sampling config (mapping with n_pos, n_neg, n_gt)."""
        return cls(int(sampling["n_pos"]), int(sampling["n_neg"]), int(sampling["n_gt"]))

    @property
    def positives(self) -> slice:
        return slice(1, 1 + self.n_pos)

    @property
    def negatives(self) -> slice:
        return slice(1 + self.n_pos, 1 + self.n_pos + self.n_neg)

    @property
    def transition(self) -> slice:
        return slice(1 + self.n_pos + self.n_neg, self.length)

    @property
    def length(self) -> int:
        return 1 + self.n_pos + self.n_neg + self.n_gt


@dataclass(frozen=True)
class ContrastiveDraw:
    """Frames of one contrastive sample.

    ``anchor`` t; ``positives`` (n_pos,) with 1 <= |t-p| <= d_pos; ``negatives`` (n_neg,) with
    |t-n| >= d_neg; ``transition`` (n_gt,) = t + s * ``gt_offsets`` for one direction s = +-1 and
    offsets 1 <= d_1 < ... < d_k <= gt_max. All int64 frame indices.
    """

    anchor: int
    positives: np.ndarray
    negatives: np.ndarray
    transition: np.ndarray
    gt_offsets: np.ndarray

    def frame_indices(self) -> np.ndarray:
        """(1 + n_pos + n_neg + n_gt,) int64 frames in :class:`ContrastiveLayout` order."""
        layout = ContrastiveLayout(len(self.positives), len(self.negatives), len(self.transition))
        out = np.empty(layout.length, np.int64)
        out[layout.anchor] = self.anchor
        out[layout.positives] = self.positives
        out[layout.negatives] = self.negatives
        out[layout.transition] = self.transition
        return out


def check_contrastive_params(
    n_pos: int, d_pos: int, n_neg: int, d_neg: int, n_gt: int, gt_max: int
) -> None:
    """Raise ValueError naming the first inconsistent contrastive sampling parameter."""
    if min(n_pos, n_neg, n_gt) < 0:
        raise ValueError(f"n_pos, n_neg, n_gt must be >= 0, got {n_pos}, {n_neg}, {n_gt}")
    if d_pos < 1:
        raise ValueError(f"d_pos must be >= 1 frame, got {d_pos}")
    if d_neg <= d_pos:
        raise ValueError(
            f"d_neg ({d_neg}) must exceed d_pos ({d_pos}) so negatives are not positives"
        )
    if gt_max < n_gt:
        raise ValueError(f"gt_max ({gt_max}) must be >= n_gt ({n_gt}): offsets are distinct frames")


def min_contrastive_length(n_pos: int, n_neg: int, d_neg: int, n_gt: int) -> int:
    """Shortest track (frames) on which :func:`sample_contrastive` can draw every frame."""
    need = 1
    if n_pos:
        need = max(need, 2)
    if n_neg:
        need = max(need, d_neg + 1)
    if n_gt:
        need = max(need, n_gt + 1)
    return need


def _choose(rng: np.random.Generator, count: int, k: int) -> np.ndarray:
    """k draws from range(count): distinct when count allows, with repeats otherwise."""
    return rng.choice(count, size=k, replace=k > count).astype(np.int64)


def sample_contrastive(
    rng: np.random.Generator,
    length: int,
    n_pos: int,
    d_pos: int,
    n_neg: int,
    d_neg: int,
    n_gt: int,
    gt_max: int,
) -> ContrastiveDraw:
    """Draw anchor, positives, negatives and gradual-transition frames in a track of ``length``.

    The anchor is uniform over the frames from which every requested frame can be drawn.
    Positives and negatives are distinct when enough candidates exist, repeated otherwise. The
    transition direction is uniform over the directions with room for ``n_gt`` offsets, and the
    offsets are distinct, sorted draws from ``1..min(room, gt_max)``.
    Raises ValueError when ``length < min_contrastive_length(...)``.
    """
    check_contrastive_params(n_pos, d_pos, n_neg, d_neg, n_gt, gt_max)
    need = min_contrastive_length(n_pos, n_neg, d_neg, n_gt)
    if length < need:
        raise ValueError(f"a track of {length} frames is shorter than the {need} needed")
    # Anchors near the middle of a short track have neither a negative nor room for the
    # transition frames: valid anchors are [0, length - m) and [m, length).
    m = max(d_neg if n_neg else 0, n_gt)
    if length >= 2 * m:
        anchor = int(rng.integers(length))
    else:
        u = int(rng.integers(2 * (length - m)))
        anchor = u if u < length - m else m + u - (length - m)

    lo, hi = max(anchor - d_pos, 0), min(anchor + d_pos, length - 1)
    near = np.array([t for t in range(lo, hi + 1) if t != anchor], np.int64)
    positives = near[_choose(rng, len(near), n_pos)] if n_pos else np.zeros(0, np.int64)

    before = max(anchor - d_neg + 1, 0)  # frames [0, anchor - d_neg]
    after = max(length - anchor - d_neg, 0)  # frames [anchor + d_neg, length)
    u = _choose(rng, before + after, n_neg) if n_neg else np.zeros(0, np.int64)
    negatives = np.where(u < before, u, anchor + d_neg + u - before)

    offsets = np.zeros(0, np.int64)
    sign = 1
    if n_gt:
        rooms = {1: length - 1 - anchor, -1: anchor}
        signs = [s for s, room in rooms.items() if min(room, gt_max) >= n_gt]
        sign = signs[int(rng.integers(len(signs)))]
        offsets = np.sort(_choose(rng, min(rooms[sign], gt_max), n_gt) + 1)
    return ContrastiveDraw(anchor, positives, negatives, anchor + sign * offsets, offsets)


def clip_span(clip_len: int, stride: int) -> int:
    """Frames covered by ``clip_len`` frames taken every ``stride`` frames."""
    if clip_len < 1 or stride < 1:
        raise ValueError(f"clip_len and clip_stride must be >= 1, got {clip_len}, {stride}")
    return (clip_len - 1) * stride + 1


def sample_clip(rng: np.random.Generator, length: int, clip_len: int, stride: int) -> np.ndarray:
    """(clip_len,) int64 frames ``start + stride * k``, start uniform over the starts that fit."""
    span = clip_span(clip_len, stride)
    if length < span:
        raise ValueError(f"a track of {length} frames is shorter than the clip span {span}")
    start = int(rng.integers(length - span + 1))
    return start + stride * np.arange(clip_len, dtype=np.int64)
