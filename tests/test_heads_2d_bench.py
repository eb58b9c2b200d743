"""benchmarks/heads_2d.py: the paired seed statistics behind its target verdicts."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _module():
    spec = importlib.util.spec_from_file_location("heads_2d", ROOT / "benchmarks" / "heads_2d.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_paired_difference_interval_and_wins_by_hand():
    bench = _module()
    d = bench.paired([0.6, 0.7, 0.8], [0.5, 0.6, 0.9])
    # Differences 0.1, 0.1, -0.1: mean 1/30, sample sd 0.11547, t(0.975, 2) = 4.303.
    assert d["mean"] == pytest.approx(1 / 30)
    assert d["half_width"] == pytest.approx(4.303 * 0.115470 / 3**0.5, rel=1e-4)
    assert (d["wins"], d["n"]) == (2, 3)
    one = bench.paired([0.7], [0.6])
    assert one["half_width"] is None and one["wins"] == 1


def test_target_rows_name_each_target_with_its_gflops_ratio(tmp_path):
    bench = _module()

    def runs(values, gflops=1.0):
        return [{"metrics": {"pck@0.1": v}, "cost": {"head_gflops": gflops}} for v in values]

    results = {
        "heatmap s4 + fusion": runs([0.60, 0.62], 0.2),
        "heatmap s8 + fusion": runs([0.58, 0.57], 0.05),
        "heatmap s4, no fusion": runs([0.55, 0.56], 0.18),
        "composite s8": runs([0.65, 0.61], 0.08),
        "direct regression": runs([0.50, 0.59], 0.0003),
    }
    baseline = [{"metrics": {"pck@0.1": v}} for v in (0.59, 0.58)]
    rows = bench.target_rows(results, baseline)
    text = "\n".join(rows)
    assert "(head GFLOPs 0.400x)" in text
    composite = next(r for r in rows if r.startswith("| composite s8 >="))
    assert "+0.020" in composite and "| 1 of 2 |" in composite
    fusion = next(r for r in rows if r.startswith("| spatial fusion"))
    assert "+0.055" in fusion and "| 2 of 2 |" in fusion
    assert sum("- mean training pose" in r for r in rows) == len(results)
    # The per-seed picture beside the table.
    png = bench.seed_plot(results, baseline, tmp_path / "docs" / "heads.png")
    image = cv2.imread(str(png))
    assert image is not None and image.shape[0] > 200 and image.shape[1] > 400
