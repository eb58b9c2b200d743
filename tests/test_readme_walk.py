"""The README's full path (pretrain, head, lifter, predict, report) runs as written on a fresh
clone: each command of its first bash block, in an empty folder, with a tiny schedule appended."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from css_pose import lifting

ROOT = Path(__file__).resolve().parents[1]
# Appended to each command (later overrides win): small data, a few steps, no W&B.
TINY = {
    "train.py": [
        "data.generate.videos=16",
        "data.generate.frames=24",
        "data.generate.size=64",
        "data.generate.val_fraction=0.25",
        "data.generate.test_fraction=0.25",
        "data.batch_size=4",
        "data.num_workers=0",
        "data.samples_per_epoch=8",
        "data.val_samples=4",
        "data.probe_stride=4",
        "trainer.max_epochs=1",
        "trainer.enable_progress_bar=false",
        "logger.wandb.enabled=false",
    ],
    "train_head.py": [
        "steps=2",
        "batch_size=8",
        "data.num_workers=0",
        "logger.wandb.enabled=false",
    ],
    "css_pose.lifting": ["--steps", "2", "--batch-size", "8"],
    "predict": [],
    "report": [],
}


def readme_commands() -> list[list[str]]:
    """The commands of the README's "full path" bash block, continuation lines joined."""
    text = (ROOT / "README.md").read_text()
    block = text.split("## From raw video to a pose video", 1)[1].split("```bash", 1)[1]
    block = block.split("```", 1)[0].replace("\\\n", " ")
    commands = []
    for line in block.splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("source "):
            commands.append(shlex.split(line))
    return commands


def test_readme_full_path_runs_as_written(tmp_path, monkeypatch):
    from css_pose.cli import main as css_pose_cli
    from css_pose.heads2d import main as head_main
    from css_pose.runner import main as train_main

    commands = readme_commands()
    assert [c[1] if c[0] in ("python", "css-pose") else c[0] for c in commands] == [
        "train.py", "train_head.py", "-m", "predict", "report", "report",
    ]  # fmt: skip
    monkeypatch.chdir(tmp_path)  # a fresh clone: no data/, no runs/
    monkeypatch.setattr(
        lifting, "SYNTHETIC_SET", {"videos": 4, "frames": 12, "size": 64, "seed": 1}
    )
    for words in commands:
        if words[:2] == ["python", "train.py"]:
            summary = train_main([*words[2:], *TINY["train.py"]])
            assert summary["global_step"] > 0
        elif words[:2] == ["python", "train_head.py"]:
            result = head_main([*words[2:], *TINY["train_head.py"]])
            assert result is not None
        elif words[:3] == ["python", "-m", "css_pose.lifting"]:
            lifting.main([*words[3:], *TINY["css_pose.lifting"]])
        elif words[0] == "css-pose":
            assert css_pose_cli(words[1:]) in (0, None), words
        else:
            pytest.fail(f"unknown README command: {words}")
    # What the README says each step leaves behind.
    assert (tmp_path / "data/synthetic-bench/manifest.json").is_file()
    assert (tmp_path / "runs/demo/checkpoints/last.ckpt").is_file()
    assert (tmp_path / "runs/demo-head/head.pt").is_file()
    assert (tmp_path / "runs/lifter.pt").is_file()
    keypoints = json.loads((tmp_path / "runs/predict/keypoints.json").read_text())
    assert keypoints and keypoints[0]["image_id"] == 0
    assert (tmp_path / "runs/predict/overlay.mp4").stat().st_size > 0
    assert (tmp_path / "runs/demo/report/index.html").is_file()
    assert (tmp_path / "runs/demo-head/report/index.html").is_file()
