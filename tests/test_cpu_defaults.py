"""CPU defaults of the benchmark issue: thread counts, the ConvNet width, the pose-change table and
the printed online-probe summary."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import pytest
import torch

from css_pose import config
from css_pose.data.synthetic import generate_dataset
from css_pose.models import build_encoder
from css_pose.runner import format_probe, summary_table

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def restore_threads():
    torch_threads, cv2_threads = torch.get_num_threads(), cv2.getNumThreads()
    yield
    torch.set_num_threads(torch_threads)
    cv2.setNumThreads(cv2_threads)


def test_threads_default_to_cores_minus_loader_workers(monkeypatch, restore_threads):
    monkeypatch.setattr(config, "available_cores", lambda: 6)
    assert config.configure_threads(None, loader_workers=2) == 4
    assert torch.get_num_threads() == 4 and cv2.getNumThreads() == 4
    assert config.configure_threads(None, loader_workers=8) == 1  # never below one
    assert config.configure_threads(3, loader_workers=2) == 3  # an explicit count wins
    assert torch.get_num_threads() == 3


def test_entry_points_set_threads_from_the_config(monkeypatch, restore_threads):
    monkeypatch.setattr(config, "available_cores", lambda: 5)
    cfg, _ = config.parse_cli(
        ["data.num_workers=3"], "", lambda a: config.compose_config("train", a)
    )
    assert cfg.threads is None and torch.get_num_threads() == 2
    config.parse_cli(["threads=3"], "", lambda a: config.compose_config("probe", ["ckpt=none", *a]))
    assert torch.get_num_threads() == 3
    with pytest.raises(config.ConfigError, match="threads=-1"):
        config.configure_threads(-1)


@pytest.mark.parametrize("width", [8, 32])
def test_convnet_width_scales_every_stage(width):
    enc = build_encoder("convnet", in_size=32, width=width)
    assert enc.stage_channels == [width, 2 * width, 4 * width, 8 * width]
    maps = enc.forward_stages(torch.rand(2, 3, 32, 32))
    assert [m.shape[1] for m in maps] == enc.stage_channels and maps[-1].shape[-1] == 2
    assert build_encoder("convnet").stage_channels == [32, 64, 128, 256]  # the default
    with pytest.raises(ValueError, match="width=0"):
        build_encoder("convnet", width=0)


def test_pose_change_grows_with_the_gap(tmp_path):
    spec = importlib.util.spec_from_file_location("pc", ROOT / "benchmarks" / "pose_change.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    generate_dataset(tmp_path, videos=6, frames=16, size=64, seed=3, workers=1, progress=False,
                     val_fraction=0.0, test_fraction=0.0)  # fmt: skip
    fps, table = module.pose_change(tmp_path, videos=6)
    assert fps == 30.0 and sorted(table) == list(range(1, 16))
    d3 = [table[g][0] for g in (1, 2, 4)]
    assert 0 < d3[0] < d3[1] < d3[2]  # within 0.13 s the pose drifts further with every frame
    assert all(0 < table[g][1] < 1 for g in table)


def test_probe_summary_names_the_floor_and_the_gain():
    metrics = {"pck": 0.6, "mpjpe": 200.0, "body_mpjpe": 110.0, "pmpjpe": 150.0}
    init = {f"{f}_{k}": v for f in ("mean", "z_v", "z_i") for k, v in metrics.items()}
    final = dict(init, z_v_pck=0.75, z_i_pck=0.55)
    text = "\n".join(format_probe(init, final))
    assert "mean pose" in text and "0.750 (0.600)" in text
    assert "z_v PCK@0.1 gain over random init: +0.150" in text
    assert "z_v beats z_i on 2D pose (PCK@0.1 0.750 vs 0.550)" in text
    final["z_v_pck"] = 0.5
    assert "does NOT beat" in "\n".join(format_probe(init, final))
    columns, rows = summary_table({"probe_initial": init, "probe_final": final})
    assert columns[:3] == ["feature", "pck_init", "pck_final"]
    assert [r[0] for r in rows] == ["mean", "z_i", "z_v"] and rows[2][1:3] == [0.6, 0.5]
