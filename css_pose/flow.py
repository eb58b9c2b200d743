"""Dense optical flow between video frames and backward warping by flow (shared/methods.md
section 2: flow-aligned temporal pooling, after Pfister et al., "Flowing ConvNets for Human Pose
Estimation in Videos", ICCV 2015).

Conventions: pixel centres at integers (as in :mod:`css_pose.codecs.heatmap`), so the samples of
an image of width W lie at x = 0 .. W - 1. A flow is a field of displacements (dx, dy) in pixels of
its own grid, stored last-axis (H, W, 2) in numpy (OpenCV) and channel-first (B, 2, H, W) in torch,
x first. A flow "from a to b" gives, for each pixel of a, where that content is in b:
a(x, y) ~ b(x + dx, y + dy). Warping b by it (:func:`warp`) brings b onto a's grid.

Flow is computed with OpenCV's DIS (Kroeger et al., "Fast Optical Flow using Dense Inverse
Search", ECCV 2016).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from css_pose.skeleton import BONES

DIS_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}

# OpenCV's DIS rejects some frames with a side under 12 px (e.g. 12x5); every size from 12x12
# up works with every preset.
MIN_FLOW_SIZE = 12

# One DIS object per preset and thread, reused across calls (creating one takes ~20 us, a 64x64
# flow ~0.6 ms). A DIS object keeps scratch buffers between calls, so two threads must not share
# one; a forked process (a DataLoader worker) gets its own copy, so processes never share one.
_dis_cache = threading.local()


def _dis(preset: str) -> cv2.DISOpticalFlow:
    """This thread's DIS object for ``preset``; raises ValueError naming the presets."""
    if preset not in DIS_PRESETS:
        raise ValueError(f"preset must be one of {sorted(DIS_PRESETS)}, got {preset!r}")
    cache = getattr(_dis_cache, "by_preset", None)
    if cache is None:
        cache = _dis_cache.by_preset = {}
    if preset not in cache:
        cache[preset] = cv2.DISOpticalFlow_create(DIS_PRESETS[preset])
    return cache[preset]


def _check_frame(frame: np.ndarray, name: str) -> None:
    """Raise unless ``frame`` is a uint8 RGB (H, W, 3) array at least MIN_FLOW_SIZE on a side."""
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8:
        dtype = getattr(frame, "dtype", type(frame).__name__)
        raise ValueError(f"{name} must be a uint8 numpy array (H, W, 3), got {dtype}")
    if frame.ndim != 3 or frame.shape[-1] != 3:
        raise ValueError(f"{name} must be RGB (H, W, 3), got {frame.shape}")
    if min(frame.shape[:2]) < MIN_FLOW_SIZE:
        raise ValueError(
            f"{name} is {frame.shape[1]}x{frame.shape[0]} px; DIS flow needs frames at least "
            f"{MIN_FLOW_SIZE}x{MIN_FLOW_SIZE} (compute flow on the video frames, not on heatmaps)"
        )


def dense_flow(prev: np.ndarray, nxt: np.ndarray, preset: str = "medium") -> np.ndarray:
    """DIS optical flow from ``prev`` to ``nxt``: for every pixel of ``prev``, where it is in ``nxt``.

    Safe to call from several threads: each thread uses its own cached DIS object.

    Args:
        prev, nxt: (H, W, 3) uint8 RGB frames of the same size, H and W >= MIN_FLOW_SIZE; they are
            converted to grayscale.
        preset: DIS speed/accuracy preset, one of ``DIS_PRESETS`` ("ultrafast", "fast", "medium").
    Returns:
        (H, W, 2) float32 flow, pixels: ``flow[y, x] = (dx, dy)`` with prev(x, y) ~
        nxt(x + dx, y + dy). Warping ``nxt`` by it (:func:`warp`) reproduces ``prev``.
    """
    dis = _dis(preset)
    _check_frame(prev, "prev")
    _check_frame(nxt, "nxt")
    if prev.shape != nxt.shape:
        raise ValueError(f"prev {prev.shape} and nxt {nxt.shape} must have the same size")
    grey = [cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for f in (prev, nxt)]
    # No initial flow: DIS would otherwise start from whatever array is passed in.
    return dis.calc(grey[0], grey[1], None).astype(np.float32, copy=False)


def clip_flows(
    frames: np.ndarray,
    offsets: Iterable[int] = (-2, -1, 1, 2),
    preset: str = "medium",
    centre: int | None = None,
) -> dict[int, np.ndarray]:
    """Flows that align each neighbour ``t + k`` of a clip's centre frame ``t`` onto frame ``t``.

    ``flows[k] = dense_flow(frames[t], frames[t + k])``: for every pixel (x, y) of frame t, the
    displacement (dx, dy) to the same content in frame t + k, so
    frames[t](x, y) ~ frames[t + k](x + dx, y + dy), and ``warp(frame t + k, flows[k])`` (or a
    heatmap of frame t + k) lies on frame t. Offset 0 gives an exact zero flow.

    Args:
        frames: (T, H, W, 3) uint8 RGB clip.
        offsets: frame offsets k relative to the centre; ``t + k`` must lie in [0, T - 1].
        preset: DIS preset, see :func:`dense_flow`.
        centre: index t of the centre frame; default T // 2.
    Returns:
        {k: (H, W, 2) float32 flow in pixels} for each distinct k, in the order given.
    """
    if not isinstance(frames, np.ndarray) or frames.ndim != 4:
        raise ValueError(
            f"frames must be a (T, H, W, 3) uint8 array, got shape {getattr(frames, 'shape', None)}"
        )
    length = frames.shape[0]
    t = length // 2 if centre is None else int(centre)
    if not 0 <= t < length:
        raise ValueError(f"centre must lie in [0, {length - 1}] for a clip of {length}, got {t}")
    flows: dict[int, np.ndarray] = {}
    for k in offsets:
        k = int(k)
        if not 0 <= t + k < length:
            raise ValueError(
                f"offset {k} from centre {t} leaves the clip of {length} frames; "
                f"offsets must lie in [{-t}, {length - 1 - t}]"
            )
        if k == 0:
            _check_frame(frames[t], f"frames[{t}]")
            flows[k] = np.zeros((*frames.shape[1:3], 2), np.float32)
        elif k not in flows:
            flows[k] = dense_flow(frames[t], frames[t + k], preset)
    return flows


# Not a flow method: the true motion of the skeleton, for synthetic data (a diagnostic bound).
SKELETON = "skeleton"


def skeleton_flow(
    centre: np.ndarray, other: np.ndarray, size: int, sigma: float = 1.0
) -> np.ndarray:
    """(size, size, 2) float32 px: an oracle flow from the true joints, for synthetic clips only.

    Every pixel moves with the bones near it: a bone's displacement at a point is interpolated
    between its two joints' displacements (other - centre), and the bones are blended with
    weights exp(-(d^2 - d_min^2) / (2 sigma^2)) of the pixel's distance d (px) to each bone
    segment. At a joint with no other bone within a few sigma, the flow is that joint's exact
    displacement, so its heatmap peak warps onto its true place. centre, other: (J, 2) px of
    the same joints in the two crops (the skeleton of :mod:`css_pose.skeleton`). It needs every joint's true position in every frame, which real
    video does not have: it measures what perfect alignment would give, not a way to predict.
    """
    if not (np.isfinite(centre).all() and np.isfinite(other).all()):
        raise ValueError("skeleton flow needs every joint's true position in every clip frame")
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    grid = np.stack([xs, ys], -1)[..., None, :]  # (S, S, 1, 2)
    parent, child = np.array(BONES).T  # (E,) joint indices of each bone's ends
    a, ab, motion = centre[parent], centre[child] - centre[parent], other - centre
    da, db = motion[parent], motion[child]
    u = ((grid - a) * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-6)  # (S, S, E)
    u = np.clip(u, 0.0, 1.0)[..., None]
    dist2 = ((grid - (a + u * ab)) ** 2).sum(-1)
    w = np.exp(-(dist2 - dist2.min(-1, keepdims=True)) / (2 * sigma**2))[..., None]
    disp = (1 - u) * da + u * db  # (S, S, E, 2)
    return ((w * disp).sum(-2) / w.sum(-2)).astype(np.float32)


def resize_flow(flow: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A flow resampled to another grid of the same image, in that grid's pixels.

    The grids are aligned as heatmap cells tile an input crop (:mod:`css_pose.codecs.heatmap`:
    bilinear with ``align_corners=False``, antialiased when shrinking), and the vectors are scaled
    by the size ratio: input-pixel flow at (H, W) becomes cell flow at (H / s, W / s) for stride s.

    Args:
        flow: (B, 2, H, W) displacements (dx, dy), pixels of the (H, W) grid.
        size: (h, w) of the target grid, as ``tensor.shape[-2:]``.
    Returns:
        (B, 2, h, w) displacements, pixels of the (h, w) grid.
    """
    _check_flow(flow)
    height, width = flow.shape[-2:]
    h, w = (int(s) for s in size)
    if h < 1 or w < 1:
        raise ValueError(f"size must be a positive (h, w), got {tuple(size)}")
    if (h, w) == (height, width):
        return flow
    shrink = h < height or w < width
    resized = F.interpolate(
        flow, size=(h, w), mode="bilinear", align_corners=False, antialias=shrink
    )
    scale = flow.new_tensor([w / width, h / height]).view(1, 2, 1, 1)
    return resized * scale


def _check_flow(flow: torch.Tensor) -> None:
    """Raise unless ``flow`` is a floating (B, 2, H, W) tensor."""
    if flow.ndim != 4 or flow.shape[1] != 2 or not flow.is_floating_point():
        raise ValueError(
            f"flow must be float (B, 2, H, W) with (dx, dy) channels, got {tuple(flow.shape)} "
            f"{flow.dtype}; from numpy (H, W, 2) use torch.from_numpy(f).permute(2, 0, 1)[None]"
        )


def warp(src: torch.Tensor, flow: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Backward warping: ``out[b, :, y, x] = src[b, :, y + dy, x + dx]``, bilinear.

    With ``flow = clip_flows(...)[k]`` and ``src`` frame t + k (or its heatmaps), ``out`` lies on
    frame t. Samples are taken with ``grid_sample(align_corners=True)``, whose grid spans the pixel
    centres 0 .. W - 1, so an integer flow copies pixels up to the fp32 rounding of grid_sample's
    normalised coordinates: positions are off by up to ~1e-7 * W px, so even a zero flow changes
    values by ~1e-6 at W = 64 (don't warp the centre frame). A sample outside [0, W - 1] x
    [0, H - 1] (or at a non-finite flow) is invalid and set to exactly zero, rather than blended
    with zero padding or smeared by border padding.

    Args:
        src: (B, C, H, W) float, e.g. heatmaps.
        flow: (B, 2, H', W') displacements (dx, dy), pixels of its own grid. A flow of another size
            than src (input-resolution flow for stride-s heatmaps) is first resampled to (H, W)
            with :func:`resize_flow`, which also scales its vectors.
    Returns:
        warped (B, C, H, W) in src's dtype; valid (B, 1, H, W) bool, True where the sample lay
        inside src.
    """
    if src.ndim != 4 or not src.is_floating_point():
        raise ValueError(f"src must be float (B, C, H, W), got {tuple(src.shape)} {src.dtype}")
    _check_flow(flow)
    if flow.shape[0] != src.shape[0]:
        raise ValueError(
            f"flow batch {flow.shape[0]} must match src batch {src.shape[0]}: "
            f"flow must be (B={src.shape[0]}, 2, H, W)"
        )
    height, width = src.shape[-2:]
    flow = resize_flow(flow, (height, width))
    dtype = torch.promote_types(src.dtype, torch.float32)  # sample positions in >= fp32
    flow = flow.to(dtype)
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=dtype, device=src.device),
        torch.arange(width, dtype=dtype, device=src.device),
        indexing="ij",
    )
    x = xs + flow[:, 0]  # (B, H, W), source pixels
    y = ys + flow[:, 1]
    valid = (x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1)  # NaN compares False
    x = torch.where(valid, x, torch.zeros_like(x))  # keep NaN/inf out of grid_sample
    y = torch.where(valid, y, torch.zeros_like(y))
    # align_corners=True maps -1 .. 1 onto pixel centres 0 .. size - 1 (size 1: the only pixel).
    grid = torch.stack((2 * x / max(width - 1, 1) - 1, 2 * y / max(height - 1, 1) - 1), dim=-1)
    out = F.grid_sample(
        src.to(dtype), grid, mode="bilinear", padding_mode="zeros", align_corners=True
    )
    valid = valid[:, None]
    return torch.where(valid, out, torch.zeros_like(out)).to(src.dtype), valid
