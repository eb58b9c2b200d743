"""benchmarks/temporal_2d.py --quick: every variant trains and is scored, the table has the floor,
the comparisons and the timing, and a second call reuses the finished runs."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def _module(name: str = "temporal_2d"):
    """benchmarks/<name>.py, imported."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_quick_benchmark_table_and_reuse(tmp_path, capsys):
    torch.set_num_threads(1)
    bench = _module()
    table = tmp_path / "table.md"
    args = ["--quick", "--out", str(tmp_path / "out"), "--table", str(table), "--seeds", "0"]
    summary = bench.main(args)
    names = [n for n, _ in bench.variants(1, 1)]
    assert list(summary["per_seed"]) == names
    for runs in summary["per_seed"].values():
        (run,) = runs
        assert 0 <= run["pck@0.1"] <= 1
        groups = [run[f"pck@0.1/{g}"] for g in bench.GROUPS]
        assert all(math.isnan(v) or 0 <= v <= 1 for v in groups)
    text = table.read_text()
    for part in ("the floor", "parametric pooling - single frame", "without warping", "Frames/s"):
        assert part in text, text
    timing = summary["timing"]
    assert timing["single_fps"] > 0 and timing["clip_fps"] > 0 and 0 < timing["flow_share"] < 1
    # Flows were computed for the clip variants only: by the first, then read from its cache.
    flows, cached = summary["flow_seconds"], summary["flows_cached"]
    assert flows["single frame"] == [None] and cached["single frame"] == [None]
    assert flows["flow at the input"][0]["labeled"] > 0
    assert cached["flow at the input"] == [{"labeled": False, "test": False}]
    assert cached["parametric pooling"] == [{"labeled": True, "test": True}]
    capsys.readouterr()
    again = bench.main(args)
    assert "reusing" in capsys.readouterr().err
    assert again["per_seed"] == summary["per_seed"]


def test_hidden_joint_scores_and_flow_check_on_known_values():
    from css_pose.data.clips import Clips

    occ = _module("temporal_occluded")
    gt = torch.zeros(1, 17, 2)
    gt[0, :, 0] = torch.arange(17.0)  # visible box 0..9 x 0: threshold 0.1 x 9 = 0.9 px
    visible = torch.zeros(1, 17, dtype=torch.bool)
    visible[0, :10] = True
    inside = torch.ones(1, 17, dtype=torch.bool)
    inside[0, 16] = False
    pred = gt.clone()
    pred[0, 0, 0] += 0.5  # visible, hit
    pred[0, 1, 0] += 2.0  # visible, miss
    pred[0, 10, 1] += 1.0  # hidden, miss
    s = occ.split_pck(pred, gt, visible, inside)
    assert abs(s["visible"] - 0.9) < 1e-6 and s["visible_count"] == 10
    assert s["hidden_count"] == 6 and abs(s["hidden"] - 5 / 6) < 1e-6
    # Flow check: joints move by +1 px in x in the neighbours; a flow of +1 px explains it.
    n, t, size = 2, 3, 8
    kp = torch.full((n, t, 17, 2), 3.0)
    kp[:, [0, 2], :, 0] += 1.0
    flows = torch.zeros(n, t, 2, size, size, dtype=torch.float16)
    flows[:, [0, 2], 0] = 1.0
    clips = Clips(torch.zeros(n, t, 3, size, size, dtype=torch.uint8), flows, kp,
                  torch.ones(n, t, 17), torch.tensor([[4, 5, 6]] * n), 0.0)  # fmt: skip
    check = occ.flow_check(clips)
    assert check["pairs"] == n * 2 * 17
    assert check["no_motion_epe"] == 1.0 and check["flow_epe"] == 0.0
