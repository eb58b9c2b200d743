"""Writing a crop store (:mod:`css_pose.data.store`): which rows each video gets
(:func:`plan_rows`), then one pass that decodes each video once, crops its rows and writes them
into a preallocated ``crops.npy`` with bounded memory; ``meta.json`` last. A full disk is a
:class:`CropStoreError` that names the folder and the bytes needed.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from css_pose.artifacts.atomic import publish, temporary_sibling
from css_pose.data.index import VideoEntry
from css_pose.data.loading import AnnotationError, load_annotation
from css_pose.data.transforms import crop_matrix, warp_crop, whole_frame_box
from css_pose.data.video import VideoReadError, open_video

# The store's files (css_pose.data.store): the crops, each row's frame -> crop map, the key.
CROPS, MATRICES, META = "crops.npy", "matrices.npy", "meta.json"
# Frames decoded per batch: a short video is one sorted batch, a long one several.
DECODE_MB = 256
# Crops written per chunk, so memory stays bounded by the decode batch.
WRITE_ROWS = 256
_MB = 2**20


class CropStoreError(RuntimeError):
    """The store cannot be written; the message names the folder and the space it needs."""


@dataclass(frozen=True)
class RowPlan:
    """One video's rows: tracks (person, start, stop) and their (rows, 2, 3) frame -> crop maps."""

    entry: VideoEntry
    tracks: list[tuple[int, int, int]]
    matrices: np.ndarray


def plan_rows(entry: VideoEntry, side: int, box_pad: float, margin: float) -> RowPlan:
    ann = None
    if entry.annotation is not None:
        try:
            ann = load_annotation(entry.annotation, entry.num_frames)
        except AnnotationError:
            pass  # the dataset warns about it and uses the video unlabeled, as done here
    if ann is None:
        box = whole_frame_box(entry.width, entry.height)
        matrix = crop_matrix(box, side, 1.0)
        return RowPlan(
            entry, [(0, 0, entry.num_frames)], np.repeat(matrix[None], entry.num_frames, 0)
        )
    tracks, matrices = [], []
    for p in range(ann.num_persons):
        start, stop = ann.span(p)
        if stop > start:
            tracks.append((p, start, stop))
            boxes = ann.boxes[p, start:stop]
            matrices += [crop_matrix(box, side, box_pad * margin) for box in boxes]
    return RowPlan(entry, tracks, np.array(matrices, np.float64).reshape(-1, 2, 3))


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


class StoreBuilder:
    """Writes one store: temporary names, then renames, ``meta.json`` last."""

    def __init__(
        self, directory: Path, key: dict, side: int, plans: list[RowPlan], backend, progress
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

    def _write_video(self, fd: int, plan: RowPlan, first_row: int, bar: tqdm) -> str | None:
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
