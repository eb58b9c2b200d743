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

import errno
import hashlib
import json
import os
import shutil
import struct
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from css_pose.artifacts.atomic import publish, temporary_sibling
from css_pose.data.index import VideoEntry
from css_pose.data.loading import AnnotationError, load_annotation
from css_pose.data.transforms import crop_matrix, warp_crop, whole_frame_box
from css_pose.data.video import ReaderFactory, VideoReadError, open_video

FORMAT = "css_pose.crop_store/1"
# How rows are cropped; part of the key, so a change of rule can never reuse old crops.
CROP_RULE = "box centre, side max(w, h) * box_pad * margin; unlabeled: frame letterboxed"
CROPS, MATRICES, META = "crops.npy", "matrices.npy", "meta.json"
# Frames decoded per batch: a short video is one sorted batch, a long one several.
DECODE_MB = 256
WRITE_ROWS = 256
_MB = 2**20


class CropStoreError(RuntimeError):
    """The store cannot be written; the message names the folder and the space it needs."""


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


@dataclass(frozen=True)
class _Plan:
    """One video's rows: tracks (person, start, stop) and their (rows, 2, 3) frame -> crop maps."""

    entry: VideoEntry
    tracks: list[tuple[int, int, int]]
    matrices: np.ndarray


def _plan(entry: VideoEntry, side: int, box_pad: float, margin: float) -> _Plan:
    ann = None
    if entry.annotation is not None:
        try:
            ann = load_annotation(entry.annotation, entry.num_frames)
        except AnnotationError:
            pass  # the dataset warns about it and uses the video unlabeled, as done here
    if ann is None:
        box = whole_frame_box(entry.width, entry.height)
        matrix = crop_matrix(box, side, 1.0)
        return _Plan(
            entry, [(0, 0, entry.num_frames)], np.repeat(matrix[None], entry.num_frames, 0)
        )
    tracks, matrices = [], []
    for p in range(ann.num_persons):
        start, stop = ann.span(p)
        if stop > start:
            tracks.append((p, start, stop))
            boxes = ann.boxes[p, start:stop]
            matrices += [crop_matrix(box, side, box_pad * margin) for box in boxes]
    return _Plan(entry, tracks, np.array(matrices, np.float64).reshape(-1, 2, 3))


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


def _digest(obj: dict) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def _npy_header(shape: tuple[int, ...], dtype: str, length: int | None = None) -> bytes:
    """npy v1.0 header of a C-order array, padded to ``length`` bytes (default: a multiple of 64).

    Padding to a given length lets a header written before the rows are known be overwritten
    in place once fewer rows were written (their shape string is never longer).
    """
    text = repr({"descr": dtype, "fortran_order": False, "shape": tuple(shape)})
    length = length or -(-(len(text) + 11) // 64) * 64
    body = text.ljust(length - 11) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(body)) + body.encode("latin1")


def _write(fd: int, data: bytes | memoryview, offset: int) -> None:
    """Write all of ``data`` at ``offset`` of ``fd`` (every crop goes through here)."""
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


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
        directory = root / _digest(_identity(videos, size, margin, box_pad))
        store, why = cls._open(directory, key)
        if store is not None:
            return store
        if why is not None:
            warnings.warn(f"crop store {directory}: {why}; rebuilding it", stacklevel=2)
        side = round(size * margin)
        plans = [_plan(v, side, box_pad, margin) for v in sorted(videos, key=lambda v: v.path)]
        _Builder(directory, key, side, plans, backend, progress).run()
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


class _Builder:
    """Writes one store: temporary names, then renames, ``meta.json`` last."""

    def __init__(
        self, directory: Path, key: dict, side: int, plans: list[_Plan], backend, progress
    ):
        self.directory, self.key, self.side = directory, key, side
        self.plans, self.backend, self.progress = plans, backend, progress
        self.row_bytes = side * side * 3
        self.planned = sum(len(p.matrices) for p in plans)
        self.header = _npy_header((self.planned, side, side, 3), "|u1")
        self.tmp = {name: temporary_sibling(directory / name) for name in (CROPS, MATRICES, META)}

    def needed_bytes(self) -> int:
        return len(self.header) + self.planned * (self.row_bytes + 48) + 2 * _MB

    def run(self) -> None:
        done = False
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._write_all()
            done = True
        except OSError as e:
            raise CropStoreError(self._space_message(e)) from e
        finally:
            if not done:
                for path in self.tmp.values():
                    path.unlink(missing_ok=True)

    def _space_message(self, error: OSError) -> str:
        try:
            free = f"{shutil.disk_usage(self.directory).free / _MB:,.0f} MiB free there"
        except OSError:
            free = "free space unknown"
        cause = "the disk is full" if error.errno == errno.ENOSPC else f"{error}"
        return (
            f"cannot write the crop store in {self.directory}: {cause}. It needs "
            f"{self.needed_bytes() / _MB:,.0f} MiB ({self.planned} crops of {self.side}x"
            f"{self.side} px; {free}). Free space, point data.store_dir at a larger disk, or "
            "set data.store=false. Temporary files were removed; any previous store is intact."
        )

    def _write_all(self) -> None:
        failed: dict[str, str] = {}
        tracks: dict[str, list[list[int]]] = {}
        matrices = []
        fd = os.open(self.tmp[CROPS], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            _reserve(fd, len(self.header) + self.planned * self.row_bytes)
            _write(fd, self.header, 0)
            rows = 0
            bar = tqdm(
                total=self.planned, unit="crop", desc="crop store", disable=not self.progress
            )
            with bar:
                for plan in self.plans:
                    why = self._write_video(fd, plan, rows, bar)
                    if why is not None:
                        failed[plan.entry.path] = why
                        continue
                    tracks[plan.entry.path] = []
                    first = rows
                    for person, start, stop in plan.tracks:
                        tracks[plan.entry.path].append([person, start, stop, first])
                        first += stop - start
                    matrices.append(plan.matrices)
                    rows += len(plan.matrices)
            shape = (rows, self.side, self.side, 3)
            if rows < self.planned:  # failed videos: shrink the array to the rows written
                _write(fd, _npy_header(shape, "|u1", len(self.header)), 0)
                os.ftruncate(fd, len(self.header) + rows * self.row_bytes)
            os.fsync(fd)
        finally:
            os.close(fd)
        if failed:
            lines = "\n".join(f"  {path}: {why}" for path, why in failed.items())
            warnings.warn(
                f"{len(failed)} video(s) failed to decode and are left out of the crop store "
                f"{self.directory}:\n{lines}",
                stacklevel=4,
            )
        all_matrices = np.concatenate(matrices) if matrices else np.zeros((0, 2, 3))
        with open(self.tmp[MATRICES], "wb") as f:
            np.save(f, all_matrices)
        meta = {
            "key": self.key,
            "side": self.side,
            "shape": list(shape),
            "tracks": tracks,
            "failed": failed,
        }
        self.tmp[META].write_text(json.dumps(meta))
        # A reader never pairs new arrays with the old meta: that goes first, the new one last.
        (self.directory / META).unlink(missing_ok=True)
        publish((self.tmp[name], self.directory / name) for name in (CROPS, MATRICES, META))

    def _write_video(self, fd: int, plan: _Plan, first_row: int, bar: tqdm) -> str | None:
        """Decode ``plan``'s video and write its crops from row ``first_row``; why it failed,
        or None. Only decoding failures are returned; write errors (OSError) propagate."""
        entry = plan.entry
        try:
            st = os.stat(entry.path)
            if (st.st_size, st.st_mtime_ns) != (entry.size_bytes, entry.mtime_ns):
                return "changed on disk since it was indexed; re-index"
            reader = open_video(entry.path, self.backend, entry.num_frames)
        except (VideoReadError, OSError) as e:
            return str(e).removeprefix(f"{entry.path}: ")
        chunk = max(1, int(DECODE_MB * _MB) // (entry.width * entry.height * 3))
        offsets = np.cumsum([0] + [stop - start for _, start, stop in plan.tracks])
        written = 0
        try:
            for a in range(0, entry.num_frames, chunk):
                b = min(a + chunk, entry.num_frames)
                if not any(max(a, start) < min(b, stop) for _, start, stop in plan.tracks):
                    continue
                try:
                    frames = reader.get_batch(list(range(a, b)))
                except (VideoReadError, IndexError) as e:
                    return str(e).removeprefix(f"{entry.path}: ")
                if frames.shape != (b - a, entry.height, entry.width, 3):
                    return (
                        f"decoded {frames.shape[:3]} (frames, height, width) for frames {a}..{b - 1},"
                        f" the index says ({b - a}, {entry.height}, {entry.width})"
                    )
                for (_, start, stop), offset in zip(plan.tracks, offsets):
                    # Crops go out WRITE_ROWS at a time, so memory stays bounded by the chunk.
                    for lo in range(max(a, start), min(b, stop), WRITE_ROWS):
                        hi = min(lo + WRITE_ROWS, b, stop)
                        row = offset + lo - start
                        crops = np.stack(
                            [
                                warp_crop(frames[t - a], plan.matrices[row + t - lo], self.side)
                                for t in range(lo, hi)
                            ]
                        )
                        position = len(self.header) + (first_row + row) * self.row_bytes
                        _write(fd, crops.data, position)
                        written += hi - lo
                        bar.update(hi - lo)
        finally:
            reader.close()
        if written != len(plan.matrices):
            return f"{written} of its {len(plan.matrices)} crops were written"
        return None


def _reserve(fd: int, nbytes: int) -> None:
    """Allocate ``nbytes`` up front, so a full disk fails now rather than after decoding."""
    try:
        os.posix_fallocate(fd, 0, nbytes)
    except AttributeError:
        pass  # not on this platform
    except OSError as e:
        if e.errno in (errno.EINVAL, errno.EOPNOTSUPP, errno.ENOSYS):
            pass  # the file system cannot reserve; writes will still report ENOSPC
        else:
            raise
