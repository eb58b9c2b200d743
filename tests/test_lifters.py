"""Lifters: shapes, receptive fields, DSG / DTG affinities, flip test-time augmentation, training."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from css_pose import lifting
from css_pose.data.synthetic import generate_dataset
from css_pose.flip import flip_pose
from css_pose.lifting import LiftingData, evaluate, load_synthetic_lifting_data, train_lifter
from css_pose.models.lifter_model import build_lifter, predict
from css_pose.models.lifters import (
    DGNetLifter,
    DynamicSpatialGraph,
    DynamicTemporalGraph,
    MLPLifter,
    TemporalConvLifter,
)

torch.set_num_threads(1)


@pytest.mark.parametrize(
    "model",
    [MLPLifter(1, width=64), TemporalConvLifter((3, 3), channels=32), DGNetLifter((3, 3), 16)],
    ids=["mlp", "tcn", "dgnet"],
)
def test_lifter_output_shape_and_root(model):
    torch.manual_seed(0)
    x = torch.randn(4, model.receptive_field(), 17, 2)
    y = model(x)
    assert y.shape == (4, 17, 3)
    assert torch.all(y[:, 0] == 0)
    assert y[:, 1:].abs().sum() > 0
    with pytest.raises(ValueError):
        model(torch.randn(4, model.receptive_field() + 2, 17, 2))


@pytest.mark.parametrize(
    ("widths", "field"),
    [((3, 3, 3, 3), 81), ((3, 3, 3), 27), ((3, 3), 9), ((1, 1), 1), ((5, 3), 15)],
)
def test_receptive_field(widths, field):
    assert TemporalConvLifter(widths, channels=8).receptive_field() == field
    assert DGNetLifter(widths, channels=8).receptive_field() == field
    model = TemporalConvLifter(widths, channels=8).eval()
    assert model(torch.randn(2, field, 17, 2)).shape == (2, 17, 3)


def test_tcn_uses_only_its_window_centred():
    model = TemporalConvLifter((3, 3), channels=16).eval()
    x = torch.randn(1, 9, 17, 2)
    # Reversing time mirrors the dilated taps around the centre: a different output in general,
    # while the same window gives the same output.
    assert torch.allclose(model(x), model(x.clone()))
    assert not torch.allclose(model(x), model(x.flip(1)))


def test_dsg_affinity_rows_sum_to_one_with_topk_sparsity():
    dsg = DynamicSpatialGraph(channels=8, k=3)
    a = dsg.affinity(torch.randn(2, 5, 17, 8))
    assert a.shape == (2, 5, 17, 17)
    torch.testing.assert_close(a.sum(-1), torch.ones(2, 5, 17))
    assert torch.all((a > 0).sum(-1) == 3)
    # Each joint's nearest neighbour in feature space is itself (distance 0).
    assert torch.all(a.diagonal(dim1=-2, dim2=-1) == a.max(-1).values)


def test_dtg_affinity_prefers_joints_that_move_together():
    t = torch.arange(7, dtype=torch.float32)
    pos = torch.zeros(1, 7, 17, 2)
    pos[0, :, 0, 0] = 0.1 * t  # joints 0 and 1 move right together
    pos[0, :, 1, 0] = 0.1 * t + 0.5
    pos[0, :, 2, 1] = -0.1 * t  # joint 2 moves up; the others are static
    dtg = DynamicTemporalGraph(channels=4, k=4, tau=0.1)
    for step in (-1, 1):
        a = dtg.affinity(pos, step)[0, 3]  # a middle frame
        torch.testing.assert_close(a.sum(-1), torch.ones(17))
        assert a[0, 1] > a[0, 2] and a[0, 1] > a[0, 5]
        assert a[0, 0] >= 0.5  # the identity temporal edge


def test_dsg_input_distance_links_the_joints_nearest_in_the_image():
    pos = torch.rand(1, 1, 17, 2) * 10
    pos[0, 0, 5] = pos[0, 0, 2] + 0.01  # joint 5 sits on joint 2
    dsg = DynamicSpatialGraph(channels=8, k=2, distance="input")
    a = dsg.affinity(torch.randn(1, 1, 17, 8), pos)[0, 0]
    assert a[2].topk(2).indices.tolist() == [2, 5] and a[5].topk(2).indices.tolist() == [5, 2]
    with pytest.raises(ValueError, match="needs the input 2D"):
        dsg.affinity(torch.randn(1, 1, 17, 8))


def test_dgnet_ablation_switches_fix_the_graphs():
    """dsg=False: the skeleton prior alone; skeleton=False: the dynamic affinity alone (rows sum
    to 1); both off: the identity; dtg=False: the identity temporal edges."""
    torch.manual_seed(0)
    x = torch.randn(4, 9, 17, 2)
    graphs = {}
    for options in ({}, {"dsg": False}, {"skeleton": False}, {"dsg": False, "skeleton": False},
                    {"dtg": False}):  # fmt: skip
        model = DGNetLifter((3, 3), channels=8, **options)
        graphs[tuple(options)] = (model, model.affinities(x))
    model, a = graphs[("dsg",)]
    prior = model.blocks[0].dsg[0].skeleton.detach()
    assert torch.equal(a["spatial"], prior.expand_as(a["spatial"]))
    torch.testing.assert_close(graphs[("skeleton",)][1]["spatial"].sum(-1), torch.ones(4, 3, 17))
    assert torch.equal(
        graphs[("dsg", "skeleton")][1]["spatial"], torch.eye(17).expand(4, 3, 17, 17)
    )
    for name in ("temporal_prev", "temporal_next"):
        assert torch.equal(graphs[("dtg",)][1][name], torch.eye(17).expand(4, 3, 17, 17))
        assert not torch.equal(graphs[()][1][name], torch.eye(17).expand(4, 3, 17, 17))
    full = graphs[()][1]["spatial"]
    assert (full.sum(-1) - prior.sum(-1)).allclose(torch.ones(4, 3, 17))  # A_dyn rows sum to 1


@pytest.mark.parametrize("name", ["mlp", "tcn", "dgnet"])
def test_flip_test_time_augmentation_is_symmetric(name):
    torch.manual_seed(0)
    model = build_lifter(name, 1 if name == "mlp" else 9, 32)
    train_lifter(model, _random_data(), steps=2, batch_size=8)  # non-trivial BN statistics
    x = torch.randn(3, model.receptive_field(), 17, 2)
    symmetric = (x + flip_pose(x)) / 2
    torch.testing.assert_close(flip_pose(symmetric), symmetric)
    y = predict(model, symmetric)
    torch.testing.assert_close(flip_pose(y), y, atol=1e-6, rtol=1e-5)
    assert not torch.allclose(flip_pose(model(symmetric)), model(symmetric), atol=1e-4)


def _random_data():
    gen = torch.Generator().manual_seed(0)
    target = torch.randn(20, 17, 3, generator=gen) * 0.2
    target -= target[:, :1].clone()
    inputs = torch.randn(20, 17, 2, generator=gen)
    return LiftingData([inputs.numpy()], [target.numpy()], ["a"], [100])


@pytest.mark.parametrize("name", ["mlp", "dgnet"])
def test_short_training_reduces_mpjpe(tmp_path, name):
    root = tmp_path / "synth"
    generate_dataset(root, videos=8, frames=40, size=64, seed=2, workers=1, progress=False)
    train, test = load_synthetic_lifting_data(root)
    torch.manual_seed(0)
    model = build_lifter(name, 1 if name == "mlp" else 3, 32, dropout=0.0)
    assert model.receptive_field() == (1 if name == "mlp" else 3)
    before = evaluate(model, train)["mpjpe"]
    train_lifter(model, train, steps=150, batch_size=64, lr=3e-3)
    after_train, after_test = evaluate(model, train)["mpjpe"], evaluate(model, test)["mpjpe"]
    assert after_train < 0.6 * before
    assert after_test < before


ROOT = Path(__file__).resolve().parents[1]


def readme_lifter_command() -> list[str]:
    """The arguments of step 3 of README.md's "full path": the lifter command, as printed."""
    lines = (ROOT / "README.md").read_text().splitlines()
    step = next(i for i, line in enumerate(lines) if line.startswith("# 3."))
    start = next(i for i in range(step, len(lines)) if not lines[i].startswith("#"))
    command = lines[start]
    while command.endswith("\\"):
        start += 1
        command = command[:-1] + lines[start]
    words = shlex.split(command)
    assert words[:3] == ["python", "-m", "css_pose.lifting"], command
    return words[3:]


def test_missing_user_given_data_is_one_line_naming_the_file_and_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="elsewhere/manifest.json: no such file; gener"):
        lifting.main(["--data", "synthetic", "--synthetic-root", str(tmp_path / "elsewhere")])
    assert not (tmp_path / "elsewhere").exists()  # nothing is generated outside the default
    with pytest.raises(FileNotFoundError, match="nope_3d.npz: no such file; pass VideoPose3D"):
        lifting.main(["--data", "videopose3d", "--h36m-3d", "nope_3d.npz", "--h36m-2d", "x.npz"])
    done = subprocess.run(
        [sys.executable, "-m", "css_pose.lifting", "--synthetic-root", "elsewhere"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "python -m css_pose.lifting: error: elsewhere/manifest.json: no such file; generate a set "
        "there with python -m css_pose.data.synthetic --out elsewhere, or leave out "
        "--synthetic-root to use data/synthetic_lift (generated on first use)"
    ]


def test_lifter_refuses_2d_in_another_layout_naming_both(tmp_path):
    """COCO-17 has 17 joints like Human3.6M-17, so only the recorded layout can catch it."""
    import numpy as np

    from css_pose.layouts import LayoutMismatchError, convert
    from css_pose.models.lifter_model import lift_sequence, load_lifter, save_lifter

    path = save_lifter(tmp_path / "lifter.pt", build_lifter("tcn", 3, channels=16), "tcn", 3, 16,
                       {"mpjpe": 1.0})  # fmt: skip
    lifter, payload = load_lifter(path)
    assert payload["layout"] == "h36m17"
    ours = np.random.default_rng(0).uniform(10, 90, (5, 17, 2)).astype(np.float32)
    assert lift_sequence(lifter, ours, 100, 100).shape == (5, 17, 3)
    coco, _ = convert(ours, None, "h36m17", "coco17")
    with pytest.raises(LayoutMismatchError) as err:
        lift_sequence(lifter, np.nan_to_num(coco), 100, 100, layout="coco17")
    message = str(err.value)
    assert "coco17" in message and "h36m17" in message and str(path) in message
    assert "css_pose.layouts.convert(keypoints, visibility, 'coco17', 'h36m17')" in message
