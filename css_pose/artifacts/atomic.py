"""Atomic file writes: the one place where css_pose renames finished files into place.

A file is written under a temporary name next to its final path, then renamed over it with
``os.replace`` (atomic on POSIX and Windows within one folder). A reader therefore sees the old
file or the whole new one, never half a file, and an interrupted write leaves the old file as it
was. The temporary name is hidden and unique per process (``.NAME.PID.tmp``), so processes writing
the same file at once (DDP ranks, loader workers) do not write into each other's temporary file.

- :func:`atomic_path`: a context manager yielding the temporary path to write by any means;
- :func:`write_text`, :func:`write_json`: the common cases;
- :func:`temporary_sibling` and :func:`publish`: for writers whose files stay open across calls
  (a video writer, the crop store's three files).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path


def temporary_sibling(path: str | Path) -> Path:
    """The temporary name of ``path`` while it is written: ``.NAME.PID.tmp`` in its folder."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def publish(pairs: Iterable[tuple[str | Path, str | Path]]) -> None:
    """Rename each finished temporary file over its final path, in the given order (for
    several files that belong together: the one a reader checks first goes last)."""
    for tmp, final in pairs:
        os.replace(tmp, final)


@contextmanager
def atomic_path(path: str | Path, mkdir: bool = True) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s new content to; on leaving the block without
    an error it replaces ``path``. On an error the temporary file is removed and ``path`` is
    left as it was. ``mkdir`` creates the folder first."""
    path = Path(path)
    if mkdir:
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path)
    try:
        yield tmp
        publish([(tmp, path)])
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | Path, text: str, newline: str | None = None) -> Path:
    """Write ``text`` to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp, open(tmp, "w", newline=newline) as f:
        f.write(text)
    return Path(path)


def write_json(path: str | Path, data, indent: int | None = None) -> Path:
    """Write ``data`` as JSON to ``path`` atomically; returns the path."""
    return write_text(path, json.dumps(data, indent=indent))
