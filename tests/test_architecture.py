"""Rules that keep one definition of each shared idea (issue 15), and the atomic writer they
point to."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from css_pose.artifacts.atomic import atomic_path, temporary_sibling, write_json, write_text

PACKAGE = Path(__file__).resolve().parents[1] / "css_pose"


def _sources():
    return sorted(PACKAGE.rglob("*.py"))


def test_only_the_atomic_module_renames_files_into_place():
    """Every atomic write goes through css_pose.artifacts.atomic."""
    allowed = PACKAGE / "artifacts" / "atomic.py"
    pattern = re.compile(r"\bos\.(replace|rename)\(|\.rename\(|\btmp\w*\.replace\(")
    offenders = [
        f"{p.relative_to(PACKAGE.parent)}:{i}: {line.strip()}"
        for p in _sources()
        if p != allowed
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert not offenders, "rename files into place with css_pose.artifacts.atomic:\n" + "\n".join(
        offenders
    )


def test_one_strict_loader():
    """load_state_dict is called in one place (css_pose.checkpoint.load_strict)."""
    calls = [
        f"{p.relative_to(PACKAGE.parent)}:{i}"
        for p in _sources()
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if ".load_state_dict(" in line
    ]
    assert calls == [f"css_pose/checkpoint.py:{_line('checkpoint.py', '.load_state_dict(')}"]


def _line(name: str, text: str) -> int:
    lines = (PACKAGE / name).read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if text in line)


def test_atomic_write_keeps_the_old_file_when_interrupted(tmp_path):
    path = tmp_path / "sub" / "result.json"
    write_json(path, {"a": 1})
    assert path.read_text() == '{"a": 1}'
    with pytest.raises(KeyboardInterrupt), atomic_path(path) as tmp:
        tmp.write_text('{"a": 2, "half')
        raise KeyboardInterrupt
    assert path.read_text() == '{"a": 1}'  # the old content, whole
    assert not temporary_sibling(path).exists() and sorted(
        p.name for p in path.parent.iterdir()
    ) == ["result.json"]
    write_text(path, "new")
    assert path.read_text() == "new"
    assert temporary_sibling(path).name.startswith(".result.json.")
