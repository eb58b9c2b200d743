"""End-to-end tests of train_head.py (2D heads on a pretrained encoder) on a tiny synthetic set."""

from __future__ import annotations

import json

import pytest
import torch
from test_linear_probe import css_ckpt, one_thread, probe_root  # noqa: F401 (fixtures)

from css_pose.config import ConfigError
from css_pose.data.crop_affine import random_affine
from css_pose.flip import mirror_batch
from css_pose.heads2d import load_head_config, main, run_head
from css_pose.skeleton import flip_permutation


def head_args(ckpt, run_dir, **extra) -> list[str]:
    base = {
        "ckpt": ckpt,
        "epochs": 12,
        "batch_size": 8,
        "label_fraction": 1.0,
        "num_images": 4,
        "logger.wandb.enabled": False,
        "device": "cpu",
        "run_dir": str(run_dir),
    }
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


@pytest.mark.parametrize("head", ["heatmap", "composite", "regression"])
def test_head_trains_and_beats_the_untrained_head(css_ckpt, tmp_path, head):  # noqa: F811
    trained = main(head_args(css_ckpt, tmp_path / "trained", head=head))
    untrained = main(head_args(css_ckpt, tmp_path / "untrained", head=head, epochs=0))
    assert trained["train_loss"][-1] < trained["train_loss"][0]
    assert trained["metrics"]["px_error"] < 0.8 * untrained["metrics"]["px_error"]
    assert 0 <= trained["metrics"]["pck@0.1"] <= trained["metrics"]["pck@0.2"] <= 1
    saved = json.loads((tmp_path / "trained" / "result.json").read_text())
    assert saved["metrics"] == trained["metrics"] and saved["n_labeled"] > 0
    assert saved["cost"]["head_gflops"] > 0 and saved["cost"]["head_params"] > 0
    assert (tmp_path / "trained" / "images" / "test_predictions.png").stat().st_size > 0
    assert (tmp_path / "trained" / "head.pt").exists()
    # Heatmap-based heads also show their heatmaps over the crops.
    heat = tmp_path / "trained" / "images" / "test_heatmaps.png"
    assert heat.exists() == (head != "regression")


def test_frozen_encoder_stays_put_and_finetune_moves_it(css_ckpt, tmp_path):  # noqa: F811
    from css_pose.checkpoint import load_method

    before = {k: v.clone() for k, v in load_method(css_ckpt)[0].encoder.state_dict().items()}
    for mode, moved in (("frozen", False), ("finetune", True)):
        argv = head_args(css_ckpt, tmp_path / mode, encoder=mode, epochs=2)
        after = run_head(load_head_config(argv), argv).model.encoder.state_dict()
        changed = any(not torch.equal(before[k], after[k]) for k in before)
        assert changed == moved, mode


def test_bad_head_options_are_named(tmp_path):
    with pytest.raises(ConfigError, match="ckpt is required"):
        load_head_config([])
    with pytest.raises(ConfigError, match="head=mask"):
        load_head_config(["ckpt=none", "head=mask"])
    with pytest.raises(ConfigError, match="stride=3"):
        load_head_config(["ckpt=none", "stride=3"])
    with pytest.raises(ConfigError, match="label_fraction"):
        load_head_config(["ckpt=none", "label_fraction=0"])


def test_mirror_batch_moves_keypoints_with_the_pixels():
    torch.manual_seed(0)
    frames = torch.zeros(2, 3, 16, 16)
    kp = torch.randint(0, 16, (2, 17, 2)).float()
    vis = torch.ones(2, 17)
    vis[0, 3] = 0
    frames[0, 0, int(kp[0, 13, 1]), int(kp[0, 13, 0])] = 1.0  # a mark on joint 13 (l_wrist)
    which = torch.tensor([True, False])
    f, k, v = mirror_batch(frames, kp, vis, which)
    perm = flip_permutation()
    j = int(perm[13])  # l_wrist becomes r_wrist
    assert f[0, 0, int(k[0, j, 1]), int(k[0, j, 0])] == 1.0
    assert v[0, perm[3]] == 0 and v[0].sum() == 16
    assert torch.equal(f[1], frames[1]) and torch.equal(k[1], kp[1])
    back = mirror_batch(f, k, v, which)
    assert all(torch.equal(a, b) for a, b in zip(back, (frames, kp, vis), strict=True))


def test_random_affine_moves_keypoints_with_the_pixels():
    # A Gaussian blob on each crop marks a keypoint; after the random rotation, zoom and shift,
    # the blob's intensity-weighted centre must sit where the transformed keypoint says.
    size = 48
    gen = torch.Generator().manual_seed(3)
    kp = torch.tensor([[[20.0, 14.0]], [[30.5, 27.0]], [[24.0, 33.0]], [[12.0, 22.0]]])
    ys, xs = torch.meshgrid(torch.arange(float(size)), torch.arange(float(size)), indexing="ij")
    blob = torch.exp(
        -((xs - kp[:, 0, 0, None, None]) ** 2 + (ys - kp[:, 0, 1, None, None]) ** 2) / (2 * 2.0**2)
    )
    frames = blob[:, None].expand(-1, 3, -1, -1).contiguous()
    out, moved = random_affine(frames, kp, gen, rotate_deg=40, scale=0.3, translate=0.1)
    assert out.shape == frames.shape and moved.shape == kp.shape
    assert (moved - kp).abs().max() > 2  # the draw did move them
    w = out[:, 0] / out[:, 0].sum((-2, -1), keepdim=True)
    centre = torch.stack([(w * xs).sum((-2, -1)), (w * ys).sum((-2, -1))], -1)
    assert torch.allclose(centre, moved[:, 0], atol=0.35), (centre, moved[:, 0])
    # No rotation, zoom or shift: the identity.
    same, kept = random_affine(frames, kp, gen, 0, 0, 0)
    assert torch.allclose(same, frames, atol=1e-5) and torch.allclose(kept, kp, atol=1e-5)


def test_steps_and_augmentation_train_a_frozen_head(css_ckpt, tmp_path):  # noqa: F811
    argv = head_args(
        css_ckpt,
        tmp_path / "aug",
        steps=5,
        **{"augment.rotate_deg": 20, "augment.scale": 0.2, "augment.translate": 0.05},
    )
    result = main(argv)
    per_epoch = -(-result["n_labeled"] // 8)
    assert result["epochs"] == -(-5 // per_epoch) == len(result["train_loss"])
    assert result["steps"] == result["epochs"] * per_epoch >= 5
    assert all(torch.isfinite(torch.tensor(result["train_loss"])))
    with pytest.raises(ValueError, match="steps=0"):
        main(head_args(css_ckpt, tmp_path / "zero", steps=0))


def test_score_2d_scores_joint_groups_by_hand():
    from css_pose.heads2d import score_2d
    from css_pose.skeleton import JOINT_GROUPS

    gen = torch.Generator().manual_seed(0)
    gt = torch.rand(6, 17, 2, generator=gen) * 30
    visible = torch.ones(6, 17, dtype=torch.bool)
    visible[0, JOINT_GROUPS["elbows"][0]] = False  # an invisible elbow counts nowhere
    pred = gt.clone()
    pred[:, list(JOINT_GROUPS["wrists"])] += 100.0  # every wrist far off
    pred[:3, JOINT_GROUPS["ankles"][0]] += 100.0  # half of one ankle's frames
    m = score_2d(pred, gt, visible, (0.1,))
    assert m["pck@0.1/wrists"] == 0.0
    assert m["pck@0.1/elbows"] == 1.0 and m["pck@0.1/knees"] == 1.0
    assert m["pck@0.1/ankles"] == pytest.approx(9 / 12)
    assert m["pck@0.1"] == pytest.approx((visible.sum().item() - 12 - 3) / visible.sum().item())


def test_floor_is_the_mean_of_the_visible_labels():
    from css_pose.heads2d import label_mean

    kp = torch.tensor([[[0.0, 0.0], [4.0, 8.0]], [[2.0, 4.0], [100.0, 100.0]]])
    vis = torch.tensor([[1, 1], [1, 0]])
    # Joint 0 is visible in both frames; joint 1 only in the first (the 100s are not labels).
    assert label_mean(kp, vis).tolist() == [[1.0, 2.0], [4.0, 8.0]]
    assert label_mean(kp, torch.zeros(2, 2)).tolist() == [[0.0, 0.0], [0.0, 0.0]]


def test_flattened_regression_scores_on_val_and_reloads(css_ckpt, tmp_path):  # noqa: F811
    from css_pose.models.pose_model import load_pose_model, predict

    run_dir = tmp_path / "flat"
    argv = head_args(css_ckpt, run_dir, head="regression", regression_pool="flatten")
    run = run_head(load_head_config([*argv, "eval_split=val"]), argv)
    assert run.result["test_split"] == "val"
    assert run.model.head.pool == "flatten"
    model, codec, payload = load_pose_model(run_dir / "head.pt")
    assert payload["head_config"]["regression_pool"] == "flatten"
    crops = torch.rand(3, 3, model.encoder.in_size, model.encoder.in_size)
    want = predict(run.model.eval(), run.codec, crops, flip_test=False)[0]
    assert torch.equal(predict(model, codec, crops, flip_test=False)[0], want)
    with pytest.raises(ConfigError, match="eval_split=train"):
        load_head_config([*argv, "eval_split=train"])
