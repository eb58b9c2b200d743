"""End-to-end tests of linear_probe.py on a tiny synthetic set (train/val/test videos) and tiny
ConvNet checkpoints written by train.py (64 px, 1 epoch, CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_train import tiny_overrides

from css_pose.apps.support import select_labeled
from css_pose.checkpoint import CheckpointError, read_checkpoint, save_torch_file
from css_pose.config import ConfigError
from css_pose.data.index import index_videos
from css_pose.linear_probe import load_probe_config, main, run_probe
from css_pose.runner import main as train_main


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The CI box has 2 shared cores; more intra-op threads than that makes tiny ops 3x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def probe_root(tmp_path_factory) -> Path:
    from css_pose.data.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("probe_synth")
    generate_dataset(
        root,
        videos=10,
        frames=32,
        size=64,
        seed=5,
        workers=1,
        val_fraction=0.2,
        test_fraction=0.2,
        progress=False,
    )
    return root


def _checkpoint(root: Path, run: Path, **extra) -> Path:
    train_main(
        tiny_overrides(
            root,
            run,
            **{
                "trainer.max_epochs": 1,
                "probe.enabled": False,
                "images.every_n_epochs": 5,
                **extra,
            },
        )
    )
    return run / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module")
def css_ckpt(probe_root, tmp_path_factory) -> Path:
    return _checkpoint(probe_root, tmp_path_factory.mktemp("css_run"))


def probe_args(ckpt, run_dir: Path, **extra) -> list[str]:
    base = {
        "ckpt": ckpt,
        "epochs": 3,
        "batch_size": 8,
        "logger.wandb.enabled": False,
        "device": "cpu",
        "run_dir": str(run_dir),
    }
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


def test_linear_probe_end_to_end(probe_root, css_ckpt, tmp_path, capsys):
    run = tmp_path / "p"
    result = main(probe_args(css_ckpt, run, label_fraction=0.5))
    out = capsys.readouterr().out
    saved = json.loads((run / "result.json").read_text())
    # Labeled train frames, counted independently: every 4th present frame of each train video.
    train_videos = {v.rel_path for v in index_videos(probe_root).split("train")}
    assert saved["n_train_frames"] == len(train_videos) * 32 // 4
    assert saved["n_labeled"] == round(0.5 * saved["n_train_frames"])
    assert saved["test_split"] == "test" and saved["note"] is None
    assert saved["seed"] == 0 and saved["config"]["label_fraction"] == 0.5
    assert saved["config"]["model"]["name"] == "convnet"  # the checkpoint's, not the default
    assert saved["config"]["data"]["root"] == str(probe_root)  # the checkpoint's data config
    assert set(saved["metrics"]) == set(saved["mean_pose"]) == {"mpjpe", "n_mpjpe", "p_mpjpe"}
    assert 0 < saved["metrics"]["p_mpjpe"] <= saved["metrics"]["mpjpe"] < 2000
    assert 0 < saved["mean_pose"]["p_mpjpe"] <= saved["mean_pose"]["mpjpe"] < 2000
    assert saved["config"]["flip_train"] is True and saved["config"]["pck_alpha"] == 0.1
    assert "git_commit" in saved and result["metrics"] == saved["metrics"]
    assert f"{saved['n_labeled']} of {saved['n_train_frames']} training frames" in out
    assert (run / "csv" / "metrics.csv").is_file()
    assert "test/mpjpe" in (run / "csv" / "metrics.csv").read_text()


def test_labels_come_from_train_videos_only(probe_root, css_ckpt, tmp_path):
    index = index_videos(probe_root)
    train = {v.rel_path for v in index.split("train")}
    held_out = {v.rel_path for v in index.split("test") + index.split("val")}
    assert held_out
    for fraction, seed in ((1.0, 0), (0.1, 1)):
        r = main(
            probe_args(
                css_ckpt, tmp_path / f"f{seed}", label_fraction=fraction, seed=seed, epochs=1
            )
        )
        assert set(r["labeled_videos"]) <= train and not set(r["labeled_videos"]) & held_out
    # label_unit=video (the default): whole videos, every labeled frame of each.
    assert len(r["labeled_videos"]) == max(1, round(0.1 * len(train)))
    assert r["n_labeled"] == r["n_train_frames"] // len(train) * len(r["labeled_videos"])


def test_select_labeled_draws_whole_videos():
    videos = [f"v{i // 4}" for i in range(40)]  # 10 videos x 4 frames
    chosen = select_labeled(40, 0.3, seed=1, videos=videos)
    picked = {videos[i] for i in chosen.tolist()}
    assert len(picked) == 3 and len(chosen) == 12
    assert chosen.tolist() == sorted(chosen.tolist())
    assert select_labeled(40, 0.3, seed=1, videos=videos).tolist() == chosen.tolist()
    assert {videos[i] for i in select_labeled(40, 0.3, seed=2, videos=videos).tolist()} != picked
    assert len(select_labeled(40, 0.001, seed=0, videos=videos)) == 4  # at least one video
    assert len(select_labeled(40, 0.25, seed=0)) == 10  # frame unit


def test_random_init_2d_mlp(probe_root, tmp_path):
    r = main(
        probe_args(
            "none",
            tmp_path / "r",
            model="convnet",
            target="2d",
            probe="mlp",
            hidden=32,
            **{
                "data.root": probe_root,
                "data.num_workers": 0,
                "method.dim_v": 16,
                "method.dim_i": 8,
            },
        )
    )
    assert r["checkpoint"] == "random init"
    assert set(r["metrics"]) == set(r["mean_pose"]) == {"pck", "pck@0.1", "pck@0.2", "px_error"}
    assert 0 <= r["metrics"]["pck"] == r["metrics"]["pck@0.1"] <= r["metrics"]["pck@0.2"] <= 1
    assert r["metrics"]["px_error"] > 0 and r["mean_pose"]["px_error"] > 0


@pytest.mark.parametrize("encoder", ["frozen", "finetune"])
def test_body_frame_target_with_flips(css_ckpt, tmp_path, encoder):
    r = main(probe_args(css_ckpt, tmp_path / encoder, target="body3d", encoder=encoder, epochs=2))
    assert set(r["metrics"]) == set(r["mean_pose"]) == {"body_mpjpe"}
    assert 0 < r["metrics"]["body_mpjpe"] < 2000 and 0 < r["mean_pose"]["body_mpjpe"] < 2000
    assert r["config"]["flip_train"] is True and len(r["train_loss"]) == 2


def _encoder(module) -> dict:
    return {k: v.clone() for k, v in module.state_dict().items() if k.startswith("encoder.")}


@pytest.mark.parametrize("encoder", ["frozen", "finetune"])
def test_finetune_changes_encoder_frozen_does_not(css_ckpt, tmp_path, encoder):
    before = {
        k: v for k, v in read_checkpoint(css_ckpt)["state_dict"].items() if k.startswith("encoder.")
    }
    cfg_args = probe_args(
        css_ckpt, tmp_path / encoder, encoder=encoder, epochs=1, label_fraction=0.3
    )
    run = run_probe(load_probe_config(cfg_args), cfg_args)
    after = _encoder(run.method)
    assert before.keys() == after.keys()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    if encoder == "frozen":
        assert not changed
        assert torch.load(tmp_path / encoder / "probe.pt", weights_only=True)["encoder"] is None
    else:
        assert any("weight" in k for k in changed)


def test_supervised_from_scratch_runs(probe_root, tmp_path):
    r = main(
        probe_args(
            "none",
            tmp_path / "s",
            mode="supervised",
            model="convnet",
            epochs=1,
            label_fraction=0.3,
            feature="backbone",
            **{"data.root": probe_root, "data.num_workers": 0},
        )
    )
    assert r["config"]["mode"] == "supervised" and r["metrics"]["mpjpe"] > 0
    with pytest.raises(ConfigError, match="ckpt=none"):
        load_probe_config(["ckpt=some.ckpt", "mode=supervised"])


def test_not_a_checkpoint_names_the_file(tmp_path):
    bad = tmp_path / "notes.ckpt"
    bad.write_text("hello")
    with pytest.raises(CheckpointError, match="notes.ckpt"):
        main(probe_args(bad, tmp_path / "x"))


def test_missing_key_is_named(css_ckpt, tmp_path):
    ckpt = torch.load(css_ckpt, map_location="cpu", weights_only=True)
    victim = next(k for k in ckpt["state_dict"] if k.startswith("encoder.") and "weight" in k)
    del ckpt["state_dict"][victim]
    broken = tmp_path / "broken.ckpt"
    save_torch_file(ckpt, broken)  # intact as a file, but not the model its config builds
    with pytest.raises(CheckpointError, match=f"broken.ckpt.*missing keys: .*{victim}"):
        main(probe_args(broken, tmp_path / "x"))


def test_simclr_has_no_z_i(probe_root, tmp_path):
    ckpt = _checkpoint(probe_root, tmp_path / "simclr", method="simclr")
    with pytest.raises(ValueError, match="feature=z_i.*available features: backbone"):
        main(probe_args(ckpt, tmp_path / "x", feature="z_i"))
    r = main(probe_args(ckpt, tmp_path / "ok", feature="backbone", epochs=1))
    assert r["metrics"]["mpjpe"] > 0


def test_plain_temporal_checkpoint_probes(probe_root, tmp_path):
    ckpt = _checkpoint(probe_root, tmp_path / "pt", method="plain_temporal")
    r = main(probe_args(ckpt, tmp_path / "ok", epochs=1))
    assert r["config"]["method"]["name"] == "plain_temporal" and r["metrics"]["mpjpe"] > 0


def test_mlp_training_loss_decreases(css_ckpt, tmp_path):
    r = main(probe_args(css_ckpt, tmp_path / "m", probe="mlp", hidden=64, epochs=15, lr=3e-3))
    losses = r["train_loss"]
    assert len(losses) == 15
    assert losses[-1] < 0.5 * losses[0], losses


def test_config_errors():
    with pytest.raises(ConfigError, match="ckpt is required"):
        load_probe_config([])
    with pytest.raises(ConfigError, match="probe=ridge"):
        load_probe_config(["ckpt=none", "probe=ridge"])
    with pytest.raises(ConfigError, match="label_fraction"):
        load_probe_config(["ckpt=none", "label_fraction=0"])
    with pytest.raises(ConfigError, match="nonsense"):
        load_probe_config(["ckpt=none", "nonsense=1"])


def test_no_test_split_falls_back_to_val(probe_root, css_ckpt, tmp_path, capsys):
    import shutil

    root = tmp_path / "no_test"
    shutil.copytree(probe_root, root, ignore=shutil.ignore_patterns("*index*"))
    manifest = json.loads((root / "manifest.json").read_text())
    for v in manifest["videos"]:
        v["split"] = "val" if v["split"] == "test" else v["split"]
    (root / "manifest.json").write_text(json.dumps(manifest))
    # data.root overrides the checkpoint's data config; its other data keys stay.
    r = main(probe_args(css_ckpt, tmp_path / "v", epochs=1, **{"data.root": root}))
    assert r["test_split"] == "val" and "val split instead" in capsys.readouterr().out
    assert r["config"]["data"]["root"] == str(root) and r["config"]["data"]["probe_stride"] == 4
    assert r["n_test_frames"] == 4 * 32 // 4


@pytest.mark.parametrize("target", ["2d", "3d"])
def test_labeled_in_memory_matches_the_loader(css_ckpt, tmp_path, target):
    """The trained-encoder path holds the labeled crops in memory: the same pixels (uint8, exact)
    and targets as the DataLoader gives, and for mirrored crops the targets
    mirror_frame_batch gives."""
    from css_pose.apps.support import make_loader, prepare_labeled_run
    from css_pose.probe.batches import labeled_in_memory
    from css_pose.probe.model import mirror_frame_batch, targets_of

    cfg_args = probe_args(css_ckpt, tmp_path, label_fraction=0.5, target=target)
    run = prepare_labeled_run(load_probe_config(cfg_args), cfg_args)
    loader = make_loader(run.labeled, run.train_loader, 8, False, 0)
    data = labeled_in_memory(loader, target)
    assert data is not None and data.frames.dtype == torch.uint8
    batches = list(loader)
    frames = torch.cat([b["frames"] for b in batches])
    assert torch.equal(data.images(torch.arange(len(frames))), frames)
    ones = [torch.ones(len(b["frames"]), dtype=torch.bool) for b in batches]
    for kp, mask, mirror in ((data.kp, data.mask, False), (data.mirror_kp, data.mirror_mask, True)):
        parts = [targets_of(mirror_frame_batch(b, o) if mirror else b, target)
                 for b, o in zip(batches, ones, strict=True)]  # fmt: skip
        assert torch.equal(kp, torch.cat([p[0] for p in parts]).float())
        assert torch.equal(mask, torch.cat([p[1] for p in parts]))
    if target == "2d":  # the mirrored crop's keypoints really are x -> W - 1 - x of a joint
        assert not torch.equal(data.kp, data.mirror_kp)


def test_finetune_reads_the_loader_when_crops_do_not_fit(css_ckpt, tmp_path, monkeypatch):
    import css_pose.linear_probe as lp
    import css_pose.probe.batches as batches

    used = []
    for name in ("memory_batches", "encoder_batches"):
        real = getattr(lp, name)
        monkeypatch.setattr(lp, name, lambda *a, _r=real, _n=name: used.append(_n) or _r(*a))
    args = probe_args(css_ckpt, tmp_path / "mem", encoder="finetune", epochs=2, label_fraction=0.3)
    in_memory = main(args)
    assert used == ["memory_batches"] * 2
    used.clear()
    monkeypatch.setattr(batches, "IN_MEMORY_BYTES", 0)
    args = probe_args(css_ckpt, tmp_path / "dl", encoder="finetune", epochs=2, label_fraction=0.3)
    streamed = main(args)
    assert used == ["encoder_batches"] * 2
    assert in_memory["n_labeled"] == streamed["n_labeled"] > 0
    for r in (in_memory, streamed):
        assert len(r["train_loss"]) == 2 and all(loss > 0 for loss in r["train_loss"])


def test_onecycle_schedule_runs_and_bad_schedule_is_refused(css_ckpt, tmp_path):
    r = main(probe_args(css_ckpt, tmp_path, encoder="finetune", epochs=2, label_fraction=0.3,
                        lr_schedule="onecycle", target="2d"))  # fmt: skip
    assert r["config"]["lr_schedule"] == "onecycle" and len(r["train_loss"]) == 2
    with pytest.raises(ConfigError, match="lr_schedule"):
        load_probe_config(["ckpt=none", "lr_schedule=cosine"])
