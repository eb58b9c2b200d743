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
    out, table, study = quick
    runs = study["runs"]
    seeds, fractions = study["seeds"], study["fractions"]
    expected = (
        2 * 4 * len(fractions) * len(seeds)  # frozen + finetune x (3 methods + random init)
        + len(study["ablations"]) * len(seeds)
        + len(fractions) * len(seeds)  # supervised
        + len(fractions) * len(seeds)  # mean pose, no image
    )
    assert len(runs) == expected
    # The no-image baseline is fitted on the same labeled frames as the probes.
    for r in runs:
        if r["method"] == "mean pose (no image)":
            probe = next(
                p for p in runs
                if p["method"] == "css" and (p["fraction"], p["seed"]) == (r["fraction"], r["seed"])
            )  # fmt: skip
            assert r["n_labeled"] == probe["n_labeled"]
    for r in runs:
        assert math.isfinite(r["metrics"]["mpjpe"]) and r["metrics"]["mpjpe"] > 0
        assert r["test_split"] == "test"
    # SimCLR is probed on its pooled backbone, the others on z_v.
    assert {r["feature"] for r in runs if r["method"] == "simclr"} == {"backbone"}
    assert {r["feature"] for r in runs if r["method"] == "css"} == {"z_v"}
    # Label counts grow with the fraction.
    n = {f: {r["n_labeled"] for r in runs if r["fraction"] == f} for f in fractions}
    assert all(len(v) == 1 for v in n.values())
    assert n[fractions[0]].pop() < n[fractions[-1]].pop()

    on_disk = json.loads((out / "label_efficiency.json").read_text())
    assert len(on_disk["runs"]) == expected
    text = table.read_text()
    names = ("css", "plain_temporal", "simclr", "random init", "supervised from scratch")
    for name in (*names, "mean pose (no image)"):
        assert f"| {name} |" in text
    assert "not run" not in text
    assert "CSS / random init" in text and "Ablation" in text
    image = cv2.imread(str(out / "label_efficiency.png"))
    assert image is not None and image.std() > 5


def test_rerun_resumes_without_training(quick):
    out, _, study = quick
    results = sorted((out / "probe").rglob("result.json"))
    stamps = [p.stat().st_mtime_ns for p in results]
    again = _module().main(["--quick", "--out", str(out)])
    assert [p.stat().st_mtime_ns for p in results] == stamps
    assert [r["metrics"] for r in again["runs"]] == [r["metrics"] for r in study["runs"]]


def test_probe_steps_set_the_epochs(quick):
    out, _, study = quick
    steps = study["probe_steps"]["frozen"]
    for result in (out / "probe" / "css" / "frozen").rglob("result.json"):
        r = json.loads(result.read_text())
        batches = math.ceil(r["n_labeled"] / r["config"]["batch_size"])
        assert r["epochs"] == math.ceil(steps / batches)
        assert len(r["train_loss"]) == r["epochs"]
