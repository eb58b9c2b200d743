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


def test_oracle_fusion_on_known_motion():
    oracle = _module("temporal_oracle")
    n, t, j, s = 2, 3, 17, 16
    gt = torch.rand(n, 1, j, 2) * 8 + 4 + torch.tensor([-2.0, 0.0, 3.0])[None, :, None, None]
    noise = torch.tensor([0.6, 0.0, -0.6])[None, :, None, None]
    pred = gt + noise  # each frame's prediction is off by its own error; the errors cancel
    scores = torch.ones(n, t, j)
    motion = gt - gt[:, 1:2]  # (n, t, j, 2): where each centre joint is in frame k
    flows = torch.zeros(n, t, 2, s, s)
    centre = gt[:, 1].round().long()
    for i in range(n):
        for k in range(t):
            flows[i, k, :, centre[i, :, 1], centre[i, :, 0]] = motion[i, k].T  # exact flow
    exact = gt[:, 1]
    for align in ("oracle", "DIS"):
        fused = oracle.fuse(pred, scores, flows, gt, align, weighted=False)
        torch.testing.assert_close(fused, exact)
    unaligned = oracle.fuse(pred, scores, flows, gt, "none", weighted=False)
    torch.testing.assert_close(unaligned, exact + torch.tensor(1.0 / 3))  # the mean motion
    # weights: a frame with score 0 drops out of the weighted mean
    scores[:, 2] = 0.0
    weighted = oracle.fuse(pred, scores, flows, gt, "oracle", weighted=True)
    torch.testing.assert_close(weighted, exact + 0.3, atol=1e-4, rtol=0)


def test_flow_limbs_rows_on_a_tiny_set(tmp_path):
    import json

    import numpy as np

    limbs = _module("flow_limbs")
    out = tmp_path / "limbs"
    results = limbs.main(["--sizes", "64", "--offsets", "1", "--videos", "3", "--presets",
                          "ultrafast", "--out", str(out)])  # fmt: skip
    rows = results["64/1"]
    assert set(rows) == {"ultrafast", "no motion", "box shift"}
    # "no motion" recomputed by hand: the visible joints' displacement, in crop px
    root = out / "set64"
    errors = []
    for entry in json.loads((root / "manifest.json").read_text())["videos"]:
        with np.load(root / entry["annotation"]) as ann:
            kp, vis, box = ann["keypoints_2d"], ann["visibility"] > 0, ann["bboxes"]
        for t in range(len(kp) - 1):
            side = max(box[t, 2] - box[t, 0], box[t, 3] - box[t, 1])
            d = np.linalg.norm(kp[t + 1] - kp[t], axis=1) * 25 / side
            errors.append(d[vis[t] & vis[t + 1]])
    assert math.isclose(
        rows["no motion"]["all"], float(np.concatenate(errors).mean()), rel_tol=1e-6
    )
    assert all(r["pairs"] == rows["no motion"]["pairs"] > 0 for r in rows.values())
