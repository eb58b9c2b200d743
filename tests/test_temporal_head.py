"""The flow-aligned temporal 2D head (css_pose.temporal2d): clips, flows, pooling, the run, head.pt.

A tiny synthetic set (6 videos of 16 frames at 64 px, 32 px crops) and a random-init narrow ConvNet
(ckpt=none), so each test takes seconds on one core.
"""

from __future__ import annotations

import json
from pathlib import Path
from unittest import mock

import cv2
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from test_flow import pixel_grid, texture
from test_linear_probe import one_thread  # noqa: F401 (autouse fixture)

from css_pose.apps.support import frame_datamodule
from css_pose.config import ConfigError
from css_pose.data.clips import load_clips
from css_pose.flip import mirror_flows
from css_pose.flow import dense_flow, warp
from css_pose.heads2d import HeadRun, load_head_config, main, run_head
from css_pose.models.encoders import build_encoder
from css_pose.models.pose_model import PoseModel, build_head, load_pose_model
from css_pose.models.temporal_pose import TemporalPoseModel, clip_frame_indices, predict_clip
from css_pose.sheets import STRIP_HEADER
from css_pose.skeleton import flip_permutation
from css_pose.temporal2d import STRIP_CLIPS, mirror_clips, temporal_loss


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    from css_pose.data.synthetic import generate_dataset

    out = tmp_path_factory.mktemp("temporal_synth")
    generate_dataset(
        out,
        videos=6,
        frames=16,
        size=64,
        seed=3,
        workers=1,
        val_fraction=0.17,
        test_fraction=0.17,
        progress=False,
    )
    return out


def head_args(root: Path, run_dir: Path, **extra) -> list[str]:
    base = {
        "ckpt": "none",
        "model": "convnet",
        "model.width": 8,
        "data.root": str(root),
        "data.size": 32,
        "data.num_workers": 0,
        "data.probe_stride": 4,
        "data.batch_size": 8,
        "epochs": 8,
        "batch_size": 8,
        "lr": 5e-3,
        "label_fraction": 1.0,
        "num_images": 4,
        "logger.wandb.enabled": False,
        "device": "cpu",
        "run_dir": str(run_dir),
        "temporal.frames": 1,
        "threads": 1,
    }
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


@pytest.fixture(scope="module")
def temporal_run(root, tmp_path_factory) -> tuple[HeadRun, Path]:
    run_dir = tmp_path_factory.mktemp("temporal_run")
    argv = head_args(root, run_dir)
    return run_head(load_head_config(argv), argv), run_dir


def tiny_model(pooling: str = "parametric", warp_maps: bool = True, seed: int = 0):
    """(PoseModel, TemporalPoseModel sharing its weights, n=1), eval mode, non-trivial heads."""
    torch.manual_seed(seed)
    encoder = build_encoder("convnet", in_size=32, width=8)
    cfg = OmegaConf.create(
        {"head": "heatmap", "stride": 4, "sigma_px": 4.0, "radius": 2.0, "fusion": True}
    )
    head, codec = build_head(cfg, encoder)
    with torch.no_grad():  # the fusion's last conv starts at 0: give every stage its own output
        for p in head.parameters():
            p.add_(0.05 * torch.randn_like(p))
    single = PoseModel(encoder, head).eval()
    clip = TemporalPoseModel(encoder, head, frames=1, pooling=pooling, warp=warp_maps).eval()
    return single, clip, codec


def test_run_end_to_end_writes_pck(temporal_run):
    result, run_dir = temporal_run[0].result, temporal_run[1]
    saved = json.loads((run_dir / "result.json").read_text())
    assert saved["metrics"] == result["metrics"]
    assert 0 <= saved["metrics"]["pck@0.1"] <= saved["metrics"]["pck@0.2"] <= 1
    assert saved["train_loss"][-1] < saved["train_loss"][0]
    assert saved["n_labeled"] > 0 and saved["n_test_frames"] > 0
    assert saved["config"]["temporal"]["frames"] == 1
    for part in ("labeled", "test"):  # computed, or read from an earlier test's cache
        assert saved["flow_seconds"][part] > 0 or saved["flows_cached"][part]
    assert saved["cost"]["head_gflops"] > 0 and saved["cost"]["encoder_gflops"] > 0
    for name in ("images/test_predictions.png", "images/test_heatmaps.png", "head.pt"):
        assert (run_dir / name).stat().st_size > 0


def test_strip_shows_crops_heatmaps_warped_neighbours_and_pooled(temporal_run):
    """images/temporal_strip.png: a title band, then one row per test clip shown (num_images=4,
    at most STRIP_CLIPS) of 3T tiles (T crops, T heatmaps, T - 1 warped neighbours, the pooled
    map), each 3x the 32 px crop; logged with the other images (the CSV logger has no images)."""
    result, run_dir = temporal_run[0].result, temporal_run[1]
    strip = cv2.imread(str(run_dir / "images" / "temporal_strip.png"))
    rows, tiles, side = min(STRIP_CLIPS, 4, result["n_test_frames"]), 3 * 3, 3 * 32
    assert strip.shape == (STRIP_HEADER + rows * side, tiles * side, 3)
    first_row = strip[STRIP_HEADER : STRIP_HEADER + side]
    crops, heat = first_row[:, : 3 * side], first_row[:, 3 * side : 6 * side]
    assert np.abs(crops.astype(int) - heat).mean() > 5  # the heatmaps are drawn on the crops
    assert strip[:STRIP_HEADER].max() == 255  # the title


def test_parametric_pooling_at_init_is_the_single_frame_output():
    single, temporal, _ = tiny_model("parametric")
    clip = torch.rand(2, 3, 3, 32, 32)
    flows = 3 * torch.randn(2, 3, 2, 32, 32)
    flows[:, 1] = 0
    with torch.no_grad():
        expected = single(clip[:, 1])
        got = temporal(clip, flows)
    assert expected["heatmaps"].abs().max() > 1e-3  # a non-trivial output
    # Exactly, in fp32 on the CPU: weights 0 on the neighbours, 1 on the centre, bias 0.
    for a, b in zip(got["stages"], expected["stages"], strict=True):
        assert torch.equal(a, b), (a - b).abs().max()


def test_centre_weight_of_one_third_starts_as_the_average_of_three_frames():
    _, average, _ = tiny_model("average", warp_maps=False)
    third = TemporalPoseModel(average.encoder, average.head, 1, "parametric", False,
                              centre_weight=1 / 3).eval()  # fmt: skip
    clip, flows = torch.rand(2, 3, 3, 32, 32), 2 * torch.randn(2, 3, 2, 32, 32)
    with torch.no_grad():
        a, b = average(clip, flows), third(clip, flows)
    for x, y in zip(a["stages"], b["stages"], strict=True):
        assert torch.allclose(x, y, atol=1e-6)


def test_pool_lr_scale_sets_the_pooling_weights_learning_rate(root, tmp_path):
    seen = {}
    real = torch.optim.AdamW

    def spy(groups, **kwargs):
        groups = [dict(g, params=list(g["params"])) for g in groups]
        seen["groups"] = [(len(g["params"]), g["lr"]) for g in groups]
        return real(groups, **kwargs)

    argv = head_args(root, tmp_path, **{"temporal.pool_lr_scale": 10, "epochs": 1})
    with mock.patch("torch.optim.AdamW", spy):
        run_head(load_head_config(argv), argv)
    # the pooling of both stages (a weight and a bias each) at 10x lr, the rest at lr
    assert (4, 5e-3 * 10) in seen["groups"], seen["groups"]
    assert all(lr in (5e-3, 5e-2) for _, lr in seen["groups"])


def test_average_without_warping_is_the_mean_of_the_frames():
    _, temporal, _ = tiny_model("average", warp_maps=False)
    clip, flows = torch.rand(2, 3, 3, 32, 32), 5 * torch.randn(2, 3, 2, 32, 32)
    with torch.no_grad():
        out = temporal(clip, flows)
    for pooled, frames in zip(out["stages"], out["frame_stages"], strict=True):
        assert torch.allclose(pooled, frames.mean(1), atol=1e-6)
    # With warping, a neighbour whose flow leaves the crop drops out of the mean.
    warped = TemporalPoseModel(temporal.encoder, temporal.head, 1, "average").eval()
    flows[:, 0], flows[:, 2] = 1000.0, 0.0
    with torch.no_grad():
        out = warped(clip, flows)
    frames = out["frame_stages"][-1]
    assert torch.allclose(out["heatmaps"], frames[:, 1:].mean(1), atol=1e-5)


def test_mirrored_clip_flow_is_the_mirrored_flow():
    # Analytically: warping mirrored content by the mirrored flow = mirroring the warped content.
    torch.manual_seed(0)
    src = torch.rand(2, 4, 20, 24)
    ys, xs = torch.meshgrid(torch.arange(20.0), torch.arange(24.0), indexing="ij")
    flow = torch.stack([1.5 * torch.sin(ys / 4) + 0.3 * xs / 8, torch.cos(xs / 5)])[None]
    flow = flow.expand(2, -1, -1, -1)
    direct, ok = warp(src, flow)
    mirrored, ok_m = warp(src.flip(-1), mirror_flows(flow))
    assert torch.allclose(mirrored, direct.flip(-1), atol=1e-5)
    assert torch.equal(ok_m, ok.flip(-1))
    # DIS on a mirrored pair agrees with the mirrored DIS flow up to its noise (interior). The
    # motion, a stretch along x, is not mirror-symmetric: flipping the field matters.
    ys, xs = pixel_grid()
    first, second = texture(xs, ys), texture(0.95 * xs - 1, ys + 0.5)
    truth = torch.stack([torch.from_numpy((1 + 0.05 * xs) / 0.95), torch.full(xs.shape, -0.5)])
    flow = torch.from_numpy(dense_flow(first, second)).permute(2, 0, 1)
    flow_m = torch.from_numpy(dense_flow(first[:, ::-1].copy(), second[:, ::-1].copy())).permute(
        2, 0, 1
    )
    inner = (slice(None), slice(8, -8), slice(8, -8))
    assert (flow - truth.float())[inner].abs().mean() < 0.2
    assert (flow_m - mirror_flows(flow))[inner].abs().mean() < 0.2
    assert (flow_m - flow)[inner].abs().mean() > 1  # (not a trivially symmetric flow)


def test_mirror_clips_moves_every_crop_joint_and_flow():
    clip = torch.rand(2, 3, 3, 16, 16)
    flows = torch.randn(2, 3, 2, 16, 16)
    kp = torch.randint(0, 16, (2, 3, 17, 2)).float()
    vis = torch.ones(2, 3, 17)
    which = torch.tensor([True, False])
    c, f, k, v = mirror_clips(clip, flows, kp, vis, which)
    perm = torch.as_tensor(flip_permutation())
    assert torch.equal(c[0], clip[0].flip(-1)) and torch.equal(c[1], clip[1])
    assert torch.equal(f[0, :, 0], -flows[0, :, 0].flip(-1)) and torch.equal(f[1], flows[1])
    assert torch.equal(k[0, :, perm, 0], 15 - kp[0, :, :, 0]) and torch.equal(k[1], kp[1])
    assert torch.equal(v, vis)


def test_clip_at_the_first_frame_repeats_it(root):
    assert clip_frame_indices(0, 0, 16, 2, 1).tolist() == [0, 0, 0, 1, 2]
    assert clip_frame_indices(14, 0, 16, 1, 3).tolist() == [11, 14, 15]
    cfg = load_head_config(head_args(root, Path("unused")))
    dataset = frame_datamodule(cfg).probe_dataloader("train").dataset
    row = 0
    track = dataset.tracks[int(dataset.frames[row][0])]
    assert int(dataset.frames[row][1]) == track.start
    clips = load_clips(dataset, [row], frames=2, step=1, preset="fast")
    assert clips.frame_idx[0].tolist() == [track.start] * 3 + [track.start + 1, track.start + 2]
    for k in (0, 1):  # the repeated edge frame: the centre crop, its labels and a zero flow
        assert torch.equal(clips.frames[0, k], clips.frames[0, 2])
        assert torch.equal(clips.keypoints[0, k], clips.keypoints[0, 2])
        assert not clips.flows[0, k].any()
    assert clips.flows[0, 4].abs().max() > 0  # a real neighbour moved
    centre = dataset[row]
    assert torch.equal(clips.images([0])[0, 2], centre["frames"])  # frame mode's own crop


def test_flows_are_cached_beside_the_crop_store(root, tmp_path):
    argv = head_args(root, Path("unused"), **{"data.store_dir": str(tmp_path / "stores")})
    dataset = frame_datamodule(load_head_config(argv)).probe_dataloader("train").dataset
    assert dataset.store is not None
    rows = [0, 3, 5]
    first = load_clips(dataset, rows, frames=1, step=2, preset="fast")
    assert not first.flows_cached and first.flow_seconds > 0
    (path,) = (dataset.store.directory / "flows").glob("*.npy")
    again = load_clips(dataset, rows, frames=1, step=2, preset="fast")
    assert again.flows_cached and again.flow_seconds == 0
    assert torch.equal(again.flows, first.flows) and torch.equal(again.frames, first.frames)
    # Other clips, another preset or step: another file.
    other = load_clips(dataset, rows, frames=1, step=1, preset="fast")
    assert not other.flows_cached
    assert len(list(path.parent.glob("*.npy"))) == 2
    # A damaged file is reported and recomputed, then rewritten.
    path.write_bytes(b"not a numpy file")
    with pytest.warns(UserWarning, match="unreadable"):
        redone = load_clips(dataset, rows, frames=1, step=2, preset="fast")
    assert not redone.flows_cached and torch.equal(redone.flows, first.flows)
    assert load_clips(dataset, rows, frames=1, step=2, preset="fast").flows_cached
    # Flows of an older version of the store are removed when new ones are written.
    stale = path.parent / "0123456789abcdef-0123456789abcdef.npy"
    np.save(stale, np.zeros(1, np.float16))
    load_clips(dataset, [1], frames=1, step=2, preset="fast")
    assert not stale.exists()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("temporal.frames=-1", "temporal.frames=-1 must be an integer >= 0"),
        ("temporal.step=0", "temporal.step=0 must be an integer >= 1"),
        ("temporal.pooling=max", "temporal.pooling=max is not one of parametric|average|none"),
        ("temporal.flow_preset=slow", "temporal.flow_preset=slow is not one of"),
        ("temporal.warp=maybe", "temporal.warp=maybe is not one of true|false"),
        ("temporal.centre_weight=1.5", "temporal.centre_weight=1.5 must be a number in [0, 1]"),
        ("temporal.pool_lr_scale=0", "temporal.pool_lr_scale=0 must be a number > 0"),
        ("temporal.warp_scale=0", "temporal.warp_scale=0 must be an integer >= 1"),
        ("head=composite", "needs head=heatmap"),
        ("temporal.input_flow=true", "temporal.input_flow=true stacks"),
        ("augment.scale=0.1", "augment.* must be 0"),
    ],
)
def test_bad_temporal_values_are_one_line_errors(override, message):
    with pytest.raises(ConfigError) as err:
        load_head_config(["ckpt=none", "temporal.frames=1", override])
    assert message in str(err.value) and "\n" not in str(err.value)


def test_single_frame_config_ignores_the_temporal_section():
    cfg = load_head_config(["ckpt=none", "head=composite"])  # frames=0: nothing to check
    assert cfg.temporal.frames == 0


def test_temporal_head_pt_round_trips(temporal_run, root):
    run, run_dir = temporal_run
    model, codec, payload = load_pose_model(run_dir / "head.pt")
    assert isinstance(model, TemporalPoseModel) and payload["temporal"]["frames"] == 1
    assert payload["metrics"] == run.result["metrics"] and not model.training
    cfg = load_head_config(head_args(root, run_dir))
    dataset = frame_datamodule(cfg).probe_dataloader("test").dataset
    clips = load_clips(dataset, range(4), frames=1, step=1, preset="medium")
    clip, flows = clips.images(slice(None)), clips.flows.float()
    kp, scores = predict_clip(model, codec, clip, flows, True)
    assert kp.shape == (4, 17, 2) and scores.shape == (4, 17)
    assert torch.equal(kp, predict_clip(run.model, run.codec, clip, flows, True)[0])
    # The pooling learned away from the centre-only start, and the file keeps it.
    weights = model.temporal["pool"][-1].conv.weight
    assert (weights[:, 0].abs() + weights[:, 2].abs()).max() > 0


def test_input_flow_trains_its_flow_conv_on_a_frozen_encoder(root, tmp_path):
    args = head_args(
        root, tmp_path, epochs=3, **{"temporal.input_flow": True, "temporal.pooling": "none"}
    )
    result = main(args)
    assert np.isfinite(result["train_loss"]).all()
    model, _, _ = load_pose_model(tmp_path / "head.pt")
    assert model.temporal["flow_conv"].weight.abs().max() > 0  # learned from its zero start


def test_loss_uses_neighbour_labels_only_when_asked():
    _, temporal, codec = tiny_model("parametric")
    clip, flows = torch.rand(2, 3, 3, 32, 32), torch.zeros(2, 3, 2, 32, 32)
    kp, vis = torch.full((2, 3, 17, 2), 15.0), torch.ones(2, 3, 17)
    with torch.no_grad():
        out = temporal(clip, flows)
    centre_only = temporal_loss(codec, out, kp, vis, 1, False)
    moved = kp.clone()
    moved[:, 0] = 3.0  # a neighbour's labels elsewhere
    assert temporal_loss(codec, out, moved, vis, 1, False) == centre_only
    with_neighbours = temporal_loss(codec, out, moved, vis, 1, True)
    assert with_neighbours["frame_heatmap_stage1"] != centre_only["frame_heatmap_stage1"]


def test_wider_clips_finetune_and_unwarped_average_run(root, tmp_path):
    extra = {
        "epochs": 2,
        "encoder": "finetune",
        "temporal.frames": 2,
        "temporal.step": 2,
        "temporal.pooling": "average",
        "temporal.warp": False,
        "temporal.neighbour_labels": False,
        "temporal.flow_preset": "fast",
    }
    result = main(head_args(root, tmp_path, **extra))
    assert np.isfinite(result["train_loss"]).all() and 0 <= result["metrics"]["pck@0.2"] <= 1
    model, _, payload = load_pose_model(tmp_path / "head.pt")
    assert model.num_frames == 5 and payload["temporal"]["step"] == 2
    assert len(model.temporal) == 0  # average pooling learns nothing


def test_single_frame_head_pt_is_unchanged(root, tmp_path):
    main(head_args(root, tmp_path, epochs=0, **{"temporal.frames": 0}))
    model, _, payload = load_pose_model(tmp_path / "head.pt")
    assert type(model) is PoseModel and "temporal" not in payload
    assert "temporal_weights" not in payload
