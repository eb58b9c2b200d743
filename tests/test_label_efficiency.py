"""benchmarks/label_efficiency.py --quick: every stage runs, outputs are complete, reruns resume."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import cv2
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _module():
    spec = importlib.util.spec_from_file_location(
        "label_efficiency", ROOT / "benchmarks" / "label_efficiency.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("le")
    table = out / "docs" / "table.md"
    study = _module().main(["--quick", "--out", str(out), "--table", str(table)])
    return out, table, study


def test_quick_study_runs_every_cell(quick):
    mod = _module()
    out, table, study = quick
    runs = study["runs"]
    seeds, fractions = study["seeds"], study["fractions"]
    frozen = mod.frozen_rows()
    finetuned = [*mod.PRETRAINED, mod.SUPERVISED]
    assert len(runs) == (len(frozen) + len(finetuned)) * len(fractions) * len(seeds)
    for r in runs:
        assert r["n_test_frames"] > 0 and r["n_labeled"] > 0
        for key in ("pck", "mpjpe", "body_mpjpe") if r["encoder"] == "frozen" else ("pck",):
            assert math.isfinite(r["metrics"][key]), r
    # Every method gets the same labeled videos at one (fraction, seed): paired comparisons.
    for f in fractions:
        for s in seeds:
            counts = {r["n_labeled"] for r in runs if (r["fraction"], r["seed"]) == (f, s)}
            assert len(counts) == 1, (f, s, counts)
    # Labels are whole videos: 1 of 12 training videos at 10 %, all 12 at 100 %.
    by_f = {r["fraction"]: r["n_videos"] for r in runs}
    assert by_f == {0.1: 1, 1.0: 12}
    # SimCLR is probed on its pooled backbone, the others on z_v.
    assert {r["feature"] for r in runs if r["method"] == "simclr"} == {"backbone"}
    assert {r["feature"] for r in runs if r["method"] == "css"} == {"z_v"}

    on_disk = json.loads((out / "label_efficiency.json").read_text())
    assert len(on_disk["runs"]) == len(runs)
    text = table.read_text()
    for name in (*frozen, *finetuned):
        assert f"| {name} |" in text
    assert "not run" not in text
    assert "Paired differences" in text and "Labels saved" in text
    image = cv2.imread(str(out / "label_efficiency.png"))
    assert image is not None and image.std() > 5


def test_rerun_resumes_without_training(quick):
    out, _, study = quick
    results = sorted((out / "finetune").rglob("result.json"))
    features = sorted((out / "features").glob("*.pt"))
    assert len(features) == 1 + len(_module().frozen_rows()) - 1  # crops + one per encoder
    stamps = [p.stat().st_mtime_ns for p in [*results, *features]]
    again = _module().main(["--quick", "--out", str(out)])
    assert [p.stat().st_mtime_ns for p in [*results, *features]] == stamps
    assert [r["metrics"] for r in again["runs"]] == [r["metrics"] for r in study["runs"]]


def test_floor_is_the_mean_of_the_labeled_frames(quick):
    """The floor row predicts the mean labeled pose: its PCK equals scoring that mean directly."""
    mod = _module()
    out, _, study = quick
    floor = [r for r in study["runs"] if r["method"] == mod.FLOOR and r["fraction"] == 1.0]
    saved = torch.load(out / "features" / "frames.pt", weights_only=True)
    from css_pose.metrics import pck_tight

    mean = saved["train"]["kp2d"].mean(0, keepdim=True).expand_as(saved["test"]["kp2d"])
    want = float(pck_tight(mean, saved["test"]["kp2d"], saved["test"]["visibility"], 0.1))
    assert all(abs(r["metrics"]["pck"] - want) < 1e-6 for r in floor)


def test_paired_interval():
    mod = _module()
    mean, half, n = mod.paired({0: 1.0, 1: 2.0, 2: 3.0}, {0: 0.0, 1: 1.0, 2: 1.0, 5: 9.0})
    assert n == 3 and mean == pytest.approx(4 / 3)
    assert half == pytest.approx(4.303 * (1 / 3) ** 0.5 / 3**0.5, rel=1e-3)
    assert mod.paired({0: 1.0}, {1: 1.0}) is None
