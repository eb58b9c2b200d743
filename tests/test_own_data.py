"""Own video is read-only, label-free training works, bad inputs are one line (issue 14, 1-5)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from test_train import tiny_overrides, tiny_root  # noqa: F401 - tiny_root is a fixture
from video_fixtures import make_video_set

from css_pose.checkpoint import CheckpointError, read_checkpoint, save_torch_file
from css_pose.runner import main

ROOT = Path(__file__).resolve().parents[1]


def snapshot(folder: Path) -> dict[str, tuple[int, str]]:
    """Every file (hidden ones too) under ``folder``: relative path -> (size, sha256)."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest())
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def own_videos(tmp_path_factory) -> Path:
    """A user's folder: unlabeled videos of odd sizes, a text file named .mp4, no manifest."""
    root = tmp_path_factory.mktemp("my_videos")
    make_video_set(root, [30, 30, 24, 30, 28, 30, 30, 26], labeled=False, width=100, height=76)
    (root / "notes.mp4").write_text("not a video")
    (root / "README.txt").write_text("my files")
    return root


def train_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env={**__import__("os").environ, "PYTHONPATH": str(ROOT)},
    )


def test_readme_own_video_command_never_touches_the_folder(own_videos, tmp_path):
    """README: ``python train.py data.root=/my/videos ...`` on a folder without manifest.json.
    Before the fix it generated 64 synthetic videos and a manifest into the folder."""
    before = snapshot(own_videos)
    run = tmp_path / "run"
    args = [a for a in tiny_overrides(own_videos, run) if not a.startswith("data.root=")]
    proc = train_cli([f"data.root={own_videos}", *args, "trainer.max_epochs=1"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert snapshot(own_videos) == before  # names, sizes and hashes; no new file
    summary = json.loads((run / "summary.json").read_text())
    assert summary["global_step"] > 0 and summary["best_checkpoint"] is None
    assert "no annotated validation video" in proc.stdout
    assert not (tmp_path / "data").exists()  # nothing generated anywhere else either


@pytest.mark.parametrize("method", ["css", "plain_temporal", "simclr"])
def test_training_without_labels_finishes_every_method(own_videos, tmp_path, method, capsys):
    """Before the fix: a traceback at on_train_start (the probe), and with the probe off a crash
    in the media logger on the last epoch; last.ckpt stayed at epoch 0."""
    run = tmp_path / method
    summary = main(tiny_overrides(own_videos, run, method=method, **{"images.every_n_epochs": 5}))
    assert summary["global_step"] == 4  # 2 epochs x 8 samples / batch 4
    ckpt = read_checkpoint(run / "checkpoints" / "last.ckpt")
    assert ckpt["epoch"] == 1
    assert summary["probe_final"] is None
    out = capsys.readouterr().out
    assert out.count("no annotated validation video") == 1
    if method == "css":  # pictures that need no labels stay on (the last epoch always draws)
        assert (run / "images" / "reconstruction_epoch002.png").is_file()
        assert (run / "images" / "swap_epoch002.png").is_file()


@pytest.mark.parametrize(
    "setup, message",
    [
        ("missing", "does not exist"),
        ("empty", "is empty"),
        ("file", "is a file"),
        ("bad_videos", "no usable video under"),
    ],
)
def test_bad_data_root_is_one_line(tmp_path, setup, message):
    root = tmp_path / "videos"
    if setup == "empty":
        root.mkdir()
    elif setup == "file":
        root.write_text("x")
    elif setup == "bad_videos":
        root.mkdir()
        (root / "a.mp4").write_bytes(b"")
        (root / "b.mp4").write_text("text")
    proc = train_cli([f"data.root={root}", "logger.wandb.enabled=false"], tmp_path)
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode in (1, 2)
    assert len(errors) == 1 and message in errors[0] and str(root) in errors[0], proc.stderr
    assert not (tmp_path / "runs").exists() or setup == "bad_videos"
    if setup == "missing":
        assert not root.exists()  # and nothing generated into it


@pytest.fixture(scope="module")
def trained(tiny_root, tmp_path_factory) -> Path:  # noqa: F811 - the fixture above
    run = tmp_path_factory.mktemp("ckpt_run") / "run"
    main(tiny_overrides(tiny_root, run, **{"trainer.max_epochs": 1, "probe.enabled": False}))
    return run / "checkpoints" / "last.ckpt"


def _bad_files(trained: Path, folder: Path) -> dict[str, Path]:
    data = trained.read_bytes()
    files = {
        "truncated": data[: len(data) // 2],
        "random": bytes(torch.randint(0, 256, (5000,), dtype=torch.uint8).tolist()),
        "empty": b"",
    }
    out = {}
    for name, blob in files.items():
        out[name] = folder / "checkpoints" / f"{name}.ckpt"
        out[name].parent.mkdir(parents=True, exist_ok=True)
        out[name].write_bytes(blob)
    out["head"] = save_torch_file({"head": {"w": torch.zeros(2)}}, folder / "checkpoints/head.ckpt")
    return out


def test_bad_resume_checkpoints_are_one_line_without_the_unsafe_hint(trained, tmp_path):
    """Before: 42-56 line tracebacks, one advising ``weights_only=False`` (unpickling untrusted
    files that way runs code)."""
    run_dir = trained.parent.parent
    for name, path in _bad_files(trained, run_dir).items():
        proc = train_cli([f"resume={path}"], tmp_path)
        errors = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == 2, (name, proc.stderr[-1500:])
        assert len(errors) == 1 and str(path) in errors[0], (name, proc.stderr)
        assert "weights_only" not in proc.stderr and "Traceback" not in proc.stderr


def _flip_tensor_bytes(path: Path, n: int = 4096) -> None:
    """Flip ``n`` bytes in the middle of the largest tensor record of a torch zip file."""
    with zipfile.ZipFile(path) as zf:
        info = max(zf.infolist(), key=lambda i: i.file_size)
    data = bytearray(path.read_bytes())
    local = info.header_offset
    name_len = int.from_bytes(data[local + 26 : local + 28], "little")
    extra_len = int.from_bytes(data[local + 28 : local + 30], "little")
    start = local + 30 + name_len + extra_len + info.file_size // 2 - n // 2
    for i in range(start, start + min(n, info.file_size)):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))


def test_flipped_bytes_are_caught_by_the_content_hash(trained, tmp_path):
    """Before: 4 KiB of flipped bytes in last.ckpt were accepted by resume= and linear_probe."""
    damaged = trained.parent / "damaged.ckpt"
    damaged.write_bytes(trained.read_bytes())
    _flip_tensor_bytes(damaged)
    # torch itself still reads it: only the hash can tell
    assert isinstance(torch.load(damaged, weights_only=True), dict)
    with pytest.raises(CheckpointError, match="damaged checkpoint.*hash"):
        read_checkpoint(damaged)
    proc = train_cli([f"resume={damaged}"], tmp_path)
    assert proc.returncode == 2 and "damaged checkpoint" in proc.stderr
    probe = subprocess.run(
        [sys.executable, str(ROOT / "linear_probe.py"), f"ckpt={damaged}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**__import__("os").environ, "PYTHONPATH": str(ROOT)},
    )
    assert probe.returncode == 1 and str(damaged) in probe.stderr and "hash" in probe.stderr
    assert "Traceback" not in probe.stderr
    read_checkpoint(trained)  # the original still verifies


def test_content_hash_round_trip(tmp_path):
    obj = {"state_dict": {"w": torch.arange(6.0).reshape(2, 3).t()}, "n": 3, "tags": {"b", "a"}}
    path = save_torch_file(obj, tmp_path / "m.pt")
    loaded = read_checkpoint.__globals__["read_torch_file"](path)
    assert torch.equal(loaded["state_dict"]["w"], obj["state_dict"]["w"])
    blob = torch.load(path, weights_only=True)
    blob["n"] = 4
    torch.save(blob, path)
    with pytest.raises(CheckpointError, match="damaged"):
        read_checkpoint.__globals__["read_torch_file"](path)
