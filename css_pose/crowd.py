"""Building blocks of multi-person pose in crowded video (shared/methods.md section 6, issue 19).

- :func:`match_people`: one-to-one matching of people across frames (Hungarian assignment on OKS
  or box IoU, with a minimum similarity).
- :func:`propagate`: move poses from one frame to another with optical flow sampled at the joints.
- :func:`fuse` and :func:`fuse_heatmaps`: combine a person's candidate poses (its own and the
  propagated ones) into one.
- :func:`refine_poses`: the second pass over a video that does all three for every person.

Elsewhere: OKS and COCO keypoint AP in :mod:`css_pose.metrics.oks`, track ids in
:mod:`css_pose.tracking`, the simulated detector of the benchmarks in
:mod:`css_pose.data.simulated_detector`.

Coordinates are image px, keypoints (J, 2), boxes x1, y1, x2, y2 unless a docstring says
otherwise. Sigmas are COCO's, mapped to the layout in use by joint name
(:func:`css_pose.metrics.oks.layout_sigmas`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from css_pose.codecs.heatmap import refine_peaks
from css_pose.metrics.oks import oks


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) IoU of boxes a (N, 4) and b (M, 4), x1 y1 x2 y2 px."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(hi - lo, 0, None).prod(-1)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(-1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def keypoint_box(keypoints: np.ndarray, visible: np.ndarray | None = None) -> np.ndarray:
    """x1 y1 x2 y2 of the (visible) keypoints; zeros when none is."""
    kp = np.asarray(keypoints, np.float64)
    use = np.ones(len(kp), bool) if visible is None else np.asarray(visible) > 0
    use &= np.isfinite(kp).all(-1)
    if not use.any():
        return np.zeros(4)
    return np.concatenate([kp[use].min(0), kp[use].max(0)])


def match_people(
    a: Sequence[np.ndarray],
    b: Sequence[np.ndarray],
    metric: str = "oks",
    sigmas: np.ndarray | None = None,
    min_similarity: float = 0.3,
) -> list[tuple[int, int]]:
    """Pairs (i, j) matching people ``a[i]`` to ``b[j]`` one to one, maximising the total
    similarity (Hungarian assignment), keeping pairs of similarity >= ``min_similarity``.

    ``metric`` "oks": ``a`` and ``b`` hold keypoints (J, 2) and the OKS uses every joint with a
    sigma and the area of ``b[j]``'s keypoint box; "iou": they hold boxes (4,).
    """
    from scipy.optimize import linear_sum_assignment

    if len(a) == 0 or len(b) == 0:
        return []
    sim = np.zeros((len(a), len(b)))
    if metric == "oks":
        if sigmas is None:
            raise ValueError("match_people(metric='oks') needs the layout's sigmas")
        for j, kb in enumerate(b):
            box = keypoint_box(kb)
            area = float(np.prod(box[2:] - box[:2]))
            for i, ka in enumerate(a):
                sim[i, j] = oks(ka, kb, np.ones(len(kb)), area, sigmas)
    elif metric == "iou":
        sim = box_iou(np.stack(a), np.stack(b))
    else:
        raise ValueError(f"unknown metric {metric!r}; choose 'oks' or 'iou'")
    rows, cols = linear_sum_assignment(-sim)
    return [
        (int(i), int(j)) for i, j in zip(rows, cols, strict=True) if sim[i, j] >= min_similarity
    ]


def propagate(keypoints: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Keypoints (..., J, 2) of one frame moved to another by ``flow`` (H, W, 2), the
    displacement in px from the first frame to the other at each pixel (OpenCV's convention:
    ``calcOpticalFlow*(first, other)``), sampled bilinearly at each joint. Joints outside the
    image take the nearest border pixel's flow; NaN joints stay NaN."""
    kp = np.asarray(keypoints, np.float64)
    h, w = flow.shape[:2]
    x = np.clip(kp[..., 0], 0, w - 1)
    y = np.clip(kp[..., 1], 0, h - 1)
    finite = np.isfinite(x) & np.isfinite(y)
    x, y = np.where(finite, x, 0), np.where(finite, y, 0)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    f = np.asarray(flow, np.float64)
    sampled = (
        f[y0, x0] * (1 - fx) * (1 - fy)
        + f[y0, x1] * fx * (1 - fy)
        + f[y1, x0] * (1 - fx) * fy
        + f[y1, x1] * fx * fy
    )
    out = kp + sampled
    out[~finite] = np.nan
    return out


FUSIONS = ("mean", "median", "heatmap")


def fuse(
    candidates: np.ndarray,
    scores: np.ndarray,
    how: str = "mean",
    weights: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One pose from C candidates of the same person: keypoints (C, J, 2) and scores (C, J) ->
    (J, 2), (J,).

    ``weights`` (C,) (default 1) say how much each candidate counts, e.g. less for poses carried
    from further away. "mean": per joint, the mean of the candidates weighted by weight x score
    (an unscored joint, all weights 0, takes the plain mean); "median": the per-coordinate
    median. The fused score of a joint is the weighted mean of the candidates' scores, so
    fusing does not change the scale of the scores (they rank people for AP). NaN candidates
    are left out.
    """
    if how not in FUSIONS:
        raise ValueError(f"unknown fusion {how!r}; choose one of {FUSIONS}")
    kp = np.asarray(candidates, np.float64)
    s = np.asarray(scores, np.float64).copy()
    weight = np.ones(len(kp)) if weights is None else np.asarray(weights, np.float64)
    finite = np.isfinite(kp).all(-1)
    s[~finite] = 0.0
    kp = np.where(finite[..., None], kp, 0.0)
    if how == "median":
        masked = np.where(finite[..., None], kp, np.nan)
        with np.errstate(all="ignore"), contextlib.suppress(RuntimeWarning):
            fused = np.nanmedian(masked, axis=0)
    else:
        w = (s * weight[:, None])[..., None]
        total = w.sum(0)
        plain = kp.sum(0) / np.maximum(finite.sum(0), 1)[..., None]
        fused = np.where(total > 0, (kp * w).sum(0) / np.where(total > 0, total, 1), plain)
        fused[~finite.any(0)] = np.nan
    present = finite * weight[:, None]
    return fused, (s * weight[:, None]).sum(0) / np.maximum(present.sum(0), np.spacing(1))


def fuse_heatmaps(
    target_to_frame: np.ndarray,
    shape: tuple[int, int],
    heatmaps: Sequence[np.ndarray],
    to_frame: Sequence[np.ndarray],
    shifts: np.ndarray,
    weights: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Heatmap averaging: one pose from C candidates' heatmaps -> keypoints (J, 2) frame px and
    scores (J,).

    Candidate c's heatmaps (J, h_c, w_c) lie on the cell grid of its own crop; ``to_frame[c]``
    (2, 3) maps its cells (x, y) to frame px, and ``shifts[c]`` (J, 2) px moves joint j's map (the
    flow displacement that carried the joint to this frame; NaN: the candidate lacks the joint).
    Each map is resampled (bicubic, 0 outside its crop) onto the target grid of ``shape``
    (h, w), whose cells ``target_to_frame`` (2, 3) maps to frame px, and the maps are averaged
    with ``weights`` (C,) (default 1). A joint's keypoint is the peak of its average (argmax and
    the quadratic fit of :func:`~css_pose.codecs.heatmap.refine_peaks`), its score the peak's
    value. Unlike averaging keypoints, a candidate far from the others only adds a second, lower
    mode instead of pulling the joint towards it. A joint no candidate has is NaN with score 0.
    One candidate on its own grid with no shift gives back the head's own decoding.
    """
    h, w = shape
    target = np.vstack([target_to_frame, [0.0, 0.0, 1.0]])
    shifts = np.asarray(shifts, np.float64)
    joints = len(shifts[0])
    weight = np.ones(len(heatmaps)) if weights is None else np.asarray(weights, np.float64)
    total = np.zeros((joints, h, w), np.float64)
    count = np.zeros(joints)
    for maps, matrix, shift, wc in zip(heatmaps, to_frame, shifts, weight, strict=True):
        inverse = np.linalg.inv(np.vstack([matrix, [0.0, 0.0, 1.0]]))
        for j in range(joints):
            if wc <= 0 or not np.isfinite(shift[j]).all():
                continue
            move = np.array([[1.0, 0.0, -shift[j, 0]], [0.0, 1.0, -shift[j, 1]], [0.0, 0.0, 1.0]])
            # target cell -> frame px -> back along the shift -> the candidate's cell
            m = (inverse @ move @ target)[:2].astype(np.float32)
            warped = cv2.warpAffine(maps[j].astype(np.float32), m, (w, h),
                                    flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                                    borderMode=cv2.BORDER_CONSTANT, borderValue=0)  # fmt: skip
            total[j] += wc * warped
            count[j] += wc
    mean = total / np.maximum(count, np.spacing(1))[:, None, None]
    peaks, values = refine_peaks(torch.from_numpy(mean.astype(np.float32))[None])
    cells = peaks[0].double().numpy()
    keypoints = cells @ target[:2, :2].T + target[:2, 2]
    scores = values[0].double().numpy()
    keypoints[count <= 0] = np.nan
    scores[count <= 0] = 0.0
    return keypoints, scores


@dataclass
class FramePerson:
    """One person in one frame: keypoints (J, 2) frame px, scores (J,), box (4,) x1 y1 x2 y2,
    ``score`` (the box's or the pose's), ``track`` id (-1 before tracking), ``recovered``: made by
    :func:`refine_poses` from its neighbours where the detector found no one. ``heatmaps``
    (J, h, w) and ``heatmap_to_frame`` (2, 3), cell (x, y) -> frame px, are needed only for
    heatmap fusion (:func:`fuse_heatmaps`)."""

    keypoints: np.ndarray
    scores: np.ndarray
    box: np.ndarray
    score: float
    track: int = -1
    recovered: bool = False
    heatmaps: np.ndarray | None = None
    heatmap_to_frame: np.ndarray | None = None


# A candidate pose of one person in one frame: keypoints (J, 2), scores (J,), weight, the person
# it was carried from, and the displacement (J, 2) px that carried it (0 for the person itself).
_Candidate = tuple[np.ndarray, np.ndarray, float, FramePerson, np.ndarray]


def _fuse(
    group: list[_Candidate], how: str, target: FramePerson | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`fuse` or, for ``how="heatmap"``, :func:`fuse_heatmaps` on the grid of ``target``
    (default: the heaviest candidate's grid, moved by its mean displacement)."""
    weights = np.array([g[2] for g in group])
    if how != "heatmap":
        return fuse(np.stack([g[0] for g in group]), np.stack([g[1] for g in group]), how, weights)
    if any(g[3].heatmaps is None or g[3].heatmap_to_frame is None for g in group):
        raise ValueError(
            "fusion='heatmap' needs every person's heatmaps and heatmap_to_frame: predict with "
            "predict_chunk(..., keep_heatmaps=True) and a heatmap head, or fuse with 'mean'"
        )
    if target is None:
        best = group[int(np.argmax(weights))]
        move = np.nan_to_num(np.nanmean(best[4], axis=0)) if np.isfinite(best[4]).any() else 0.0
        grid, to_frame = best[3].heatmaps.shape[1:], best[3].heatmap_to_frame.copy()
        to_frame[:, 2] += move
    else:
        grid, to_frame = target.heatmaps.shape[1:], target.heatmap_to_frame
    shifts = np.stack([np.where(np.isfinite(g[0]), g[4], np.nan) for g in group])
    return fuse_heatmaps(
        to_frame, grid, [g[3].heatmaps for g in group],
        [g[3].heatmap_to_frame for g in group], shifts, weights,
    )  # fmt: skip


def _carry(people: list[FramePerson], flows: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The keypoints of ``people`` moved through ``flows`` one after another."""
    moved = [p.keypoints for p in people]
    for flow in flows:
        moved = [propagate(kp, flow) for kp in moved]
    return moved


def refine_poses(
    frames: Sequence[list[FramePerson]],
    forward: Sequence[np.ndarray],
    backward: Sequence[np.ndarray] | None,
    sigmas: np.ndarray,
    k: int = 2,
    fusion: str = "mean",
    min_oks: float = 0.5,
    decay: float = 0.5,
    recover: int = 2,
) -> list[list[FramePerson]]:
    """Temporal refinement of per-frame top-down poses (shared/methods.md section 6).

    For each frame t, the people of frames t-1..t-k are carried forward to t with the flows
    ``forward[t-1]`` (from frame t-1 to t) and, unless ``backward`` is None (online mode: past
    frames only), those of t+1..t+k backward with ``backward[t]`` (from frame t+1 to t). Each
    carried pose is matched to the people of frame t by OKS (Hungarian, at least ``min_oks``)
    and joins that person's candidates with weight ``decay ** d`` (d frames away); the
    candidates are fused: ``fusion`` "mean" or "median" by :func:`fuse`, "heatmap" by
    :func:`fuse_heatmaps` on the person's own heatmap grid (every person needs its heatmaps,
    ``predict_chunk(..., keep_heatmaps=True)``). Carried poses that match no one in frame t and
    agree with each other (OKS >= ``min_oks``) in at least ``recover`` neighbour frames make a
    recovered person: someone the detector missed in frame t but found around it.

    Args:
        frames: T lists of the people found in each frame.
        forward: T-1 flows (H, W, 2) px, ``forward[t]`` from frame t to t+1.
        backward: T-1 flows, ``backward[t]`` from frame t+1 to t; None for online refinement.
        sigmas: (J,) OKS sigmas of the layout (:func:`layout_sigmas`).
    Returns:
        T lists of refined people (new objects; the input is not changed).
    """
    n = len(frames)
    if len(forward) != max(n - 1, 0) or (backward is not None and len(backward) != len(forward)):
        raise ValueError(
            f"{n} frames need {max(n - 1, 0)} forward (and backward) flows, got {len(forward)}"
            + ("" if backward is None else f" and {len(backward)}")
        )
    if fusion not in FUSIONS:
        raise ValueError(f"unknown fusion {fusion!r}; choose one of {FUSIONS}")
    out = []
    for t in range(n):
        own = frames[t]
        cands: list[list[_Candidate]] = [
            [(p.keypoints, p.scores, 1.0, p, np.zeros_like(p.keypoints))] for p in own
        ]
        leftovers: list[_Candidate] = []
        sources = [(t - d, forward[t - d : t], d) for d in range(1, k + 1) if t - d >= 0]
        if backward is not None:
            sources += [
                (t + d, list(reversed(backward[t : t + d])), d)
                for d in range(1, k + 1)
                if t + d < n
            ]
        for s, flows, d in sources:
            carried = _carry(frames[s], flows)
            pairs = match_people(carried, [p.keypoints for p in own], "oks", sigmas, min_oks)
            items = [
                (kp, q.scores, decay**d, q, kp - q.keypoints)
                for kp, q in zip(carried, frames[s], strict=True)
            ]
            for i, j in pairs:
                cands[j].append(items[i])
            matched = {i for i, _ in pairs}
            leftovers += [items[i] for i in range(len(items)) if i not in matched]
        refined = []
        for p, c in zip(own, cands, strict=True):
            kp, sc = _fuse(c, fusion, p)
            refined.append(FramePerson(kp, sc, p.box.copy(), p.score, p.track))
        boxes = [p.box for p in own]
        refined += _recovered(leftovers, boxes, sigmas, min_oks, recover, fusion, decay)
        out.append(refined)
    return out


def _recovered(
    leftovers: list[_Candidate],
    boxes: list[np.ndarray],
    sigmas: np.ndarray,
    min_oks: float,
    recover: int,
    fusion: str,
    decay: float,
) -> list[FramePerson]:
    """Groups of carried poses that agree with each other (greedy, by OKS to the group's first
    pose); each group of at least ``recover`` poses becomes one recovered person, unless its
    box overlaps a person found in the frame (IoU >= 0.5: the same person, carried less well
    than OKS ``min_oks`` allowed). A recovered person's score is its sources' mean box score x
    ``decay``, below the people the detector found."""
    groups: list[list[_Candidate]] = []
    for item in leftovers:
        for group in groups:
            ref = group[0][0]
            box = keypoint_box(ref)
            if (
                oks(item[0], ref, np.ones(len(ref)), float(np.prod(box[2:] - box[:2])), sigmas)
                >= min_oks
            ):
                group.append(item)
                break
        else:
            groups.append([item])
    people = []
    for group in groups:
        if len(group) < recover:
            continue
        kp, sc = _fuse(group, fusion)
        box = keypoint_box(kp)
        pad = 0.1 * (box[2:] - box[:2])
        box = np.concatenate([box[:2] - pad, box[2:] + pad])
        if boxes and box_iou(np.stack(boxes)[:, :4], box).max() >= 0.5:
            continue
        score = decay * float(np.mean([g[3].score for g in group]))
        people.append(FramePerson(kp, sc, box, score, recovered=True))
    return people
