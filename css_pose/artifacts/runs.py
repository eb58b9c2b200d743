"""Run folders: where a command writes everything of one run."""

from __future__ import annotations

import time
from pathlib import Path


def run_folder(run_dir: str | Path | None, prefix: str, create: bool = True) -> Path:
    """The absolute run folder: ``run_dir`` when given, else ``runs/<prefix>-<YYYYmmdd-HHMMSS>``
    (local time); created with its parents unless ``create`` is False."""
    path = Path(run_dir or Path("runs") / f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}").resolve()
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path
