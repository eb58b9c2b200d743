"""Clips of consecutive person crops with their labels and optical flows, in memory: what the
temporal heads (:mod:`css_pose.temporal2d`) and DKD (:mod:`css_pose.dkd`) train and score on.
The flows are cached in the crop store's folder, so a later run on the same clips reads them."""

from __future__ import annotations

import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from css_pose.artifacts.atomic import atomic_path
from css_pose.data.store import digest
from css_pose.models.temporal_pose import clip_frame_indices, crop_clip_flows


@dataclass
class Clips:
    """Clips of T = 2n + 1 person crops around N frames, and their flows, in memory.

    Memory: N x T x S^2 x (3 + 4) bytes (uint8 crops, float16 flows); e.g. 2,520 labeled 32 px
    frames with n = 1 take 22 MiB of crops + 30 MiB of flows = 52 MiB (n = 2: 86 MiB).
    """

    frames: torch.Tensor  # (N, T, 3, S, S) uint8
    flows: torch.Tensor  # (N, T, 2, S, S) float16 px; [:, k] warps crop k onto the centre crop
    keypoints: torch.Tensor  # (N, T, J, 2) float32 crop px
    visibility: torch.Tensor  # (N, T, J) float32
    frame_idx: torch.Tensor  # (N, T) int64 video frames
    flow_seconds: float  # time spent computing the flows (0 when they were read from the cache)
    flows_cached: bool = False  # read from the flow cache

    def __len__(self) -> int:
        return len(self.frames)

    def images(self, idx) -> torch.Tensor:
        """(B, T, 3, S, S) float32 in [0, 1] of the listed clips."""
        return self.frames[idx].float().div_(255.0)


FLOW_CACHE_FORMAT = "css_pose.clip_flows/1"


FLOW_CACHE_DIR = "flows"  # inside the crop store's folder


def flow_cache_path(dataset, clips: list[tuple[int, int, np.ndarray]], preset: str) -> Path | None:
    """Where the flows of ``clips`` ((track, centre frame, clip frames) each) are cached: a file
    in the dataset's crop store folder, named by the store's key (its videos' versions) and by
    everything that decides the flows (crop size and pad, each clip's video, person and frames,
    the DIS preset). None without a store, or with random augmentation (crops differ each read).
    """
    store = getattr(dataset, "store", None)
    if store is None or dataset.augment is not None:
        return None
    key = {
        "format": FLOW_CACHE_FORMAT,
        "size": dataset.size,
        "box_pad": dataset.box_pad,
        "preset": preset,
        "clips": [
            [dataset.videos[dataset.tracks[k].video].path, dataset.tracks[k].person, idx.tolist()]
            for k, _, idx in clips
        ],
    }
    return store.directory / FLOW_CACHE_DIR / f"{digest(store.key)}-{digest(key)}.npy"


def _read_cached_flows(path: Path | None, shape: tuple[int, ...]) -> torch.Tensor | None:
    """The cached (N, T, 2, S, S) float16 flows at ``path``, or None (no file; a damaged or
    mismatched one is reported and recomputed)."""
    if path is None or not path.exists():
        return None
    try:
        flows = np.load(path)
    except (OSError, ValueError) as e:
        warnings.warn(f"flow cache {path} is unreadable ({e}); recomputing it", stacklevel=3)
        return None
    if flows.shape != shape or flows.dtype != np.float16:
        warnings.warn(
            f"flow cache {path} holds {flows.shape} {flows.dtype}, expected {shape} float16; "
            "recomputing it",
            stacklevel=3,
        )
        return None
    return torch.from_numpy(flows)


def _write_cached_flows(path: Path | None, flows: torch.Tensor) -> None:
    """Write the flows atomically (a temporary file, then a rename) and remove the folder's
    flows of older versions of the store. A failure (full or read-only disk) is a warning: the
    flows are in memory and the run goes on."""
    if path is None:
        return
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.save(f, flows.numpy())
        prefix = path.name.split("-")[0]
        for old in path.parent.glob("*.npy"):
            if not old.name.startswith(prefix):
                old.unlink(missing_ok=True)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        warnings.warn(f"could not cache the flows in {path.parent} ({e}); going on", stacklevel=3)


def load_clips(dataset, rows, frames: int, step: int, preset: str, desc: str = "clips") -> Clips:
    """The clips around rows ``rows`` of a frame-mode dataset (its (track, frame) index), crops
    read through the dataset (its crop store when enabled, else decoded), with a progress bar,
    and the DIS flows between crops: computed once and cached in the crop store's folder
    (:func:`flow_cache_path`), so a later run on the same clips reads them.

    Raises:
        ValueError: the dataset crops frames around union boxes (``crop_box="sample"``).
            With ``crop_box="centre"`` every crop of a clip is cut around the centre frame's box.
    """
    if dataset.crop_box not in ("frame", "centre"):
        raise ValueError(
            "temporal heads need per-frame or centre-frame crops: data.crop_box=frame or "
            f"data.crop_box=centre, got {dataset.crop_box}"
        )
    clips = []
    for row in rows:
        k, t = (int(v) for v in dataset.frames[int(row)])
        track = dataset.tracks[k]
        clips.append((k, t, clip_frame_indices(t, track.start, track.stop, frames, step)))
    cache = flow_cache_path(dataset, clips, preset)
    size, length = dataset.size, 2 * frames + 1
    cached = _read_cached_flows(cache, (len(clips), length, 2, size, size))
    parts: dict[str, list] = {k: [] for k in ("frames", "flows", "kp", "vis", "idx")}
    seconds = 0.0
    for k, _, idx in tqdm(clips, desc=desc, unit="clip", file=sys.stderr):
        sample = dataset.load_frames(k, idx)
        crops = sample["frames"].mul(255.0).round_().byte()  # exact: the crops are uint8 / 255
        if cached is None:
            start = time.perf_counter()
            kp = sample["keypoints_2d"].numpy()
            flows = crop_clip_flows(crops.permute(0, 2, 3, 1).numpy(), idx, frames, preset, kp)
            seconds += time.perf_counter() - start
            parts["flows"].append(torch.from_numpy(flows).permute(0, 3, 1, 2).half())
        parts["frames"].append(crops)
        parts["kp"].append(sample["keypoints_2d"])
        parts["vis"].append(sample["visibility"])
        parts["idx"].append(torch.from_numpy(idx))
    stacked = {k: torch.stack(v) for k, v in parts.items() if v}
    if cached is None:
        _write_cached_flows(cache, stacked["flows"])
    else:
        stacked["flows"] = cached
    return Clips(
        stacked["frames"],
        stacked["flows"],
        stacked["kp"],
        stacked["vis"],
        stacked["idx"],
        seconds,
        cached is not None,
    )
