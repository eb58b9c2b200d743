"""Decoded-crop store: every frame's person crop, decoded once, in one memory-mapped uint8 array.

Decoding is the cost of training on many short videos: each DataLoader worker decodes each video
it meets (the frame cache in :mod:`css_pose.data.video` only amortises that within a worker).
:class:`CropStore` decodes every video once and keeps, for each row (one track of
:class:`~css_pose.data.dataset.VideoClipDataset` at one frame), a square crop of side
``side = round(size * margin)``:

- annotated person ``p`` at frame ``t`` (every frame from the first to the last in which the
  person appears, as the dataset's tracks span them): the crop of :func:`crop_matrix` around the
  person's box with pad ``box_pad * margin``, i.e. at the resolution of the training crop (S px
  for max(box w, h) * box_pad) with ``margin`` times its field of view, so geometric augmentation
  (scale, shift) still sees real context;
- unlabeled video (or unreadable annotation): the whole frame, letterboxed to ``side`` px (what
  the dataset crops without a box), one row per frame.

A sample is then read as a few rows of the array and warped once more, by the dataset's own
frame -> crop matrix composed with the inverse of the row's frame -> stored-crop matrix.

Files, in ``store_dir / <hash>/`` (default ``$XDG_CACHE_HOME/css_pose/stores``, else
``~/.cache/css_pose/stores``, never the video folder):

- ``crops.npy`` (R, side, side, 3) uint8, opened with ``np.load(mmap_mode="r")`` in each process
  (workers share the page cache; nothing is copied or pickled);
- ``matrices.npy`` (R, 2, 3) float64, frame px -> stored-crop px per row;
- ``meta.json``: the key, the shape, each video's tracks as (person, start, stop, first row) and
  the videos that failed to decode. Written last: a folder without it is no store.

Disk (and page cache, when it fits in RAM): R x side^2 x 3 bytes, e.g. 7,680 frames at side 96
(S=64, margin 1.5) take 212 MiB; at side 192 (S=128) 849 MiB.

The folder's ``<hash>`` is of what the store holds: its videos' paths, the crop parameters and
the format version. ``meta.json`` keeps the full key, which adds each video's size, mtime and
frame count and its annotation's size and mtime: a changed video makes the store stale and it is
rebuilt in the same folder (so old versions do not pile up), with one warning saying why; so is a
damaged one (a missing or short file, unreadable meta, shapes that disagree with it).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from css_pose.data.index import VideoEntry
from css_pose.data.store_build import (
    CROPS,
    MATRICES,
    META,
    CropStoreError,
    StoreBuilder,
    plan_rows,
)
from css_pose.data.video import ReaderFactory, VideoReadError

FORMAT = "css_pose.crop_store/1"
# How rows are cropped; part of the key, so a change of rule can never reuse old crops.
CROP_RULE = "box centre, side max(w, h) * box_pad * margin; unlabeled: frame letterboxed"


def default_store_dir() -> Path:
    """``$XDG_CACHE_HOME/css_pose/stores``, else ``~/.cache/css_pose/stores``."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "css_pose" / "stores"


def stored_to_crop(matrix: np.ndarray, store_matrix: np.ndarray) -> np.ndarray:
    """(..., 2, 3) affines from stored-crop px to output crop px, given both maps from frame px:
    ``matrix`` composed with the inverse of ``store_matrix``, in homogeneous 3x3 form."""
    bottom = np.broadcast_to([0.0, 0.0, 1.0], (*matrix.shape[:-2], 1, 3))
    outer = np.concatenate([matrix, bottom], -2)
    inner = np.concatenate([store_matrix, bottom], -2)
    return (outer @ np.linalg.inv(inner))[..., :2, :]


def _identity(videos: Sequence[VideoEntry], size: int, margin: float, box_pad: float) -> dict:
    """What names the store. Annotations kept elsewhere than beside their video (a labels file's,
    :mod:`css_pose.data.labels`) are part of it: the same videos cropped around those labels and
    as whole frames for pretraining are two stores, not one rebuilt back and forth."""
    identity = {
        "format": FORMAT,
        "rule": CROP_RULE,
        "size": size,
        "margin": margin,
        "box_pad": box_pad,
        "videos": sorted(v.path for v in videos),
    }
    elsewhere = sorted(
        [v.path, v.annotation]
        for v in videos
        if v.annotation is not None and Path(v.annotation).parent != Path(v.path).parent
    )
    if elsewhere:
        identity["annotations"] = elsewhere
    return identity


def _file_key(path: str | None) -> list | None:
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return [path, None, None]
    return [path, st.st_size, st.st_mtime_ns]


def _key(videos: Sequence[VideoEntry], size: int, margin: float, box_pad: float) -> dict:
    """What the stored crops depend on: the identity plus each file's version."""
    files = {
        v.path: [v.size_bytes, v.mtime_ns, v.num_frames, _file_key(v.annotation)]
        for v in sorted(videos, key=lambda v: v.path)
    }
    return {**_identity(videos, size, margin, box_pad), "files": files}


def digest(obj: dict) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


class CropStore:
    """Person crops of a list of videos, read by row; build or reuse one with :meth:`build`.

    Attributes: ``directory``; ``key`` (the full key of meta.json); ``size`` (training crop side S, px); ``margin``; ``side``
    (= round(S * margin), stored crop side, px); ``box_pad``; ``num_rows``; ``failed``
    (path -> why, videos that did not decode and have no rows).
    """

    def __init__(self, directory: Path, meta: dict):
        self.directory = Path(directory)
        key = meta["key"]
        self.key = key  # what the store holds, videos' versions included
        self.size, self.margin, self.box_pad = key["size"], key["margin"], key["box_pad"]
        self.side = meta["side"]
        self.num_rows = meta["shape"][0]
        self.failed: dict[str, str] = meta["failed"]
        self._files = key["files"]
        # path -> {person: (start, stop, first row)}
        self._tracks = {
            path: {p: (start, stop, row) for p, start, stop, row in tracks}
            for path, tracks in meta["tracks"].items()
        }
        self._crops: np.ndarray | None = None
        self._matrices: np.ndarray | None = None

    def __getstate__(self) -> dict:
        # Workers open their own memory maps (lazily, on first read): never pickle the arrays.
        return {**self.__dict__, "_crops": None, "_matrices": None}

    @property
    def crops(self) -> np.ndarray:
        """(R, side, side, 3) uint8, memory-mapped read-only."""
        if self._crops is None:
            # A plain ndarray view: indexing np.memmap itself costs more than the copy of a crop.
            self._crops = np.load(self.directory / CROPS, mmap_mode="r").view(np.ndarray)
        return self._crops

    @property
    def matrices(self) -> np.ndarray:
        """(R, 2, 3) float64 frame px -> stored-crop px, memory-mapped read-only."""
        if self._matrices is None:
            self._matrices = np.load(self.directory / MATRICES, mmap_mode="r").view(np.ndarray)
        return self._matrices

    def read(
        self, entry: VideoEntry, person: int, frames: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Crops (N, side, side, 3) uint8 and their (N, 2, 3) frame -> crop matrices of
        ``person`` of ``entry`` at ``frames`` (N,). Raises VideoReadError naming the file when the
        store holds no such rows (the video failed to decode, or changed since)."""
        version = [entry.size_bytes, entry.mtime_ns, entry.num_frames]
        if entry.path in self.failed:
            why = self.failed[entry.path]
            raise VideoReadError(
                f"{entry.path}: failed to decode when the crop store was built ({why})"
            )
        if entry.path not in self._tracks or self._files[entry.path][:3] != version:
            raise VideoReadError(
                f"{entry.path}: not in the crop store {self.directory} (changed since it was "
                "built, or not one of its videos)"
            )
        if person not in self._tracks[entry.path]:
            raise VideoReadError(f"{entry.path}: person {person} has no crops in the store")
        start, stop, first = self._tracks[entry.path][person]
        frames = np.asarray(frames, np.int64)
        if frames.min() < start or frames.max() >= stop:
            raise IndexError(
                f"{entry.path} person {person}: frames {frames.min()}..{frames.max()} outside "
                f"the stored span [{start}, {stop})"
            )
        rows = first + frames - start
        return self.crops[rows], self.matrices[rows]

    @classmethod
    def build(
        cls,
        videos: Sequence[VideoEntry],
        size: int,
        *,
        margin: float = 1.5,
        box_pad: float = 1.25,
        store_dir: str | os.PathLike | None = None,
        backend: str | ReaderFactory = "decord",
        progress: bool = True,
    ) -> CropStore:
        """The store of ``videos``: reused when valid, else (re)built (one warning says why).

        Args:
            videos: index entries; ``read`` looks rows up by their path.
            size: training crop side S in px; stored crops have side round(S * margin).
            margin: stored field of view / training field of view, >= 1.
            box_pad: crop side / max(box w, h), as the dataset's.
            store_dir: parent folder (default :func:`default_store_dir`).
            backend: reader used to decode ("decord", "pyav" or a factory).
            progress: show a progress bar while building.

        Raises CropStoreError (naming the folder and the bytes needed) when it cannot be
        written; temporary files are removed and a previous store there stays as it was.
        """
        if margin < 1:
            raise ValueError(
                f"margin must be >= 1 (stored crops hold the training crop), got {margin}"
            )
        if not videos:
            raise ValueError("a crop store needs at least one video")
        key = _key(videos, size, margin, box_pad)
        root = Path(store_dir) if store_dir is not None else default_store_dir()
        directory = root / digest(_identity(videos, size, margin, box_pad))
        store, why = cls._open(directory, key)
        if store is not None:
            return store
        if why is not None:
            warnings.warn(f"crop store {directory}: {why}; rebuilding it", stacklevel=2)
        side = round(size * margin)
        plans = [plan_rows(v, side, box_pad, margin) for v in sorted(videos, key=lambda v: v.path)]
        StoreBuilder(directory, key, side, plans, backend, progress).run()
        store, why = cls._open(directory, key)
        if store is None:
            raise CropStoreError(f"crop store {directory}: just built, but {why}")
        return store

    @classmethod
    def _open(cls, directory: Path, key: dict) -> tuple[CropStore | None, str | None]:
        """(store, None) when ``directory`` holds a valid store of ``key``, else (None, why);
        why is None when there is no store at all."""
        meta_path = directory / META
        if not meta_path.exists():
            leftovers = [p.name for p in (directory / CROPS, directory / MATRICES) if p.exists()]
            return None, (f"{META} is missing beside {', '.join(leftovers)}" if leftovers else None)
        try:
            meta = json.loads(meta_path.read_text())
            stored_key = meta["key"]
            shape = tuple(meta["shape"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            return None, f"{META} is unreadable ({e!r})"
        if stored_key != key:
            return None, f"it is stale ({_difference(stored_key, key)})"
        arrays = {}
        for name in (CROPS, MATRICES):
            try:
                arrays[name] = np.load(directory / name, mmap_mode="r")
            except (OSError, ValueError) as e:
                return None, f"{name} is missing or damaged ({e})"
        crops, matrices = arrays[CROPS], arrays[MATRICES]
        if crops.shape != shape or crops.dtype != np.uint8:
            return None, f"{CROPS} has shape {crops.shape} {crops.dtype}, meta says {shape} uint8"
        if matrices.shape != (shape[0], 2, 3):
            return None, f"{MATRICES} has shape {matrices.shape}, meta says ({shape[0]}, 2, 3)"
        expected = crops.offset + crops.nbytes
        actual = os.path.getsize(directory / CROPS)
        if actual != expected:
            return None, f"{CROPS} holds {actual} bytes, its shape needs {expected}"
        return cls(directory, meta), None


def _difference(old: dict, new: dict) -> str:
    """Why key ``old`` is not ``new``, in words."""
    changed = [
        p for p in new["files"] if p in old.get("files", {}) and old["files"][p] != new["files"][p]
    ]
    if changed:
        return f"{len(changed)} video(s) or annotation(s) changed since it was built, e.g. {changed[0]}"
    fields = [k for k in new if k != "files" and old.get(k) != new[k]]
    return f"its key differs in {', '.join(fields) or 'files'}"
