"""End-to-end tests of train.py on a tiny synthetic dataset (ConvNet encoder, 64 px crops, CPU)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from css_pose.checkpoint import (
    CheckpointError,
    load_encoder,
    load_method,
    load_strict,
    read_checkpoint,
)
from css_pose.config import ConfigError, compose_config
from css_pose.runner import main

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory) -> Path:
    from css_pose.data.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("tiny_synth")
    generate_dataset(
        root,
        videos=12,
        frames=40,
        size=64,
        seed=3,
        workers=1,
        val_fraction=0.34,
        test_fraction=0.0,
        progress=False,
    )
    return root


def tiny_overrides(root: Path, run_dir: Path, **extra) -> list[str]:
    base = {
        "model": "convnet",
        "data.root": str(root),
        "data.size": 64,
        "data.batch_size": 4,
        "data.num_workers": 0,
        "data.samples_per_epoch": 8,
        "data.val_samples": 4,
        "data.probe_stride": 4,
        "data.sampling.d_neg": 10,
        "data.sampling.gt_max": 6,
        "method.dim_v": 32,
        "method.dim_i": 16,
        "method.proj_hidden": 64,
        "method.proj_dim": 32,
        "method.decoder_channels": 32,
        "trainer.max_epochs": 2,
        "trainer.accelerator": "cpu",
        "trainer.enable_progress_bar": False,
        "trainer.log_every_n_steps": 1,
        "logger.wandb.enabled": False,
        "optim.warmup_steps": 0,
        "images.every_n_epochs": 1,
        "run_dir": str(run_dir),
    }
    base.update(extra)
    if base.get("method") == "simclr":
        base = {k: v for k, v in base.items() if not k.startswith("method.")}
    return [f"{k}={v}" for k, v in base.items()]


def read_metrics(run_dir: Path) -> list[dict]:
    with open(run_dir / "csv" / "metrics.csv") as f:
        return list(csv.DictReader(f))


def test_css_run_writes_everything(tiny_root, tmp_path, capsys):
    run = tmp_path / "css"
    summary = main(tiny_overrides(tiny_root, run))
    out = capsys.readouterr().out
    assert summary["global_step"] == 4  # 2 epochs x (8 samples / batch 4)
    for rel in (
        "checkpoints/last.ckpt",
        "checkpoints/best.ckpt",
        "config.yaml",
        "summary.json",
        "images/contact_sheet.png",
        "images/reconstruction_epoch002.png",
        "images/swap_epoch002.png",
        "images/embedding_epoch000.png",  # random init
        "images/embedding_epoch002.png",
    ):
        assert (run / rel).is_file(), rel
    rows = read_metrics(run)
    logged = {k for r in rows for k, v in r.items() if v}
    for key in (
        "train/loss_contrastive",
        "train/loss_reconstruction",
        "train/loss_gradual",
        "train/loss_invariance",
        "train/frames_per_s",
        "val/loss",
        "probe/z_v_mpjpe",
        "probe/z_i_mpjpe",
        "probe/z_v_pck",
        "probe/z_v_body_mpjpe",
        "probe/z_v_pmpjpe",
        "probe/mean_pck",
        "probe/mean_mpjpe",
        "probe/mean_body_mpjpe",
        "probe/init_z_v_mpjpe",
        "train/lr",
    ):
        assert key in logged, key
    assert "online probe" in out and "z_v" in out and "z_i" in out
    probe = summary["probe_final"]
    assert 0 < probe["z_v_mpjpe"] < 1000 and 0 <= probe["z_v_pck"] <= 1


@pytest.mark.parametrize("method", ["plain_temporal", "simclr"])
def test_baselines_run(tiny_root, tmp_path, method):
    run = tmp_path / method
    summary = main(tiny_overrides(tiny_root, run, method=method, **{"trainer.max_epochs": 1}))
    assert summary["global_step"] == 2
    module, cfg = load_method(run / "checkpoints" / "last.ckpt")
    assert cfg.method.name == method
    feats = module.features(torch.rand(2, 3, 64, 64))
    assert feats["backbone"].shape[0] == 2
    assert ("z_v" in feats) == (method == "plain_temporal")
    # The encoder alone, without building the training module, is the same network.
    encoder, _ = load_encoder(run / "checkpoints" / "last.ckpt")
    x = torch.rand(2, 3, 64, 64)
    torch.testing.assert_close(encoder(x), module.encoder(x))


def test_wandb_offline_run_files(tiny_root, tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    run = tmp_path / "wb"
    main(tiny_overrides(tiny_root, run, **{"logger.wandb.enabled": True, "trainer.max_epochs": 1}))
    assert (run / "wandb_run_id.txt").is_file()
    run_id = (run / "wandb_run_id.txt").read_text().strip()
    offline = list((run / "wandb").glob(f"offline-run-*-{run_id}"))
    assert offline, list((run / "wandb").iterdir())
    assert list(offline[0].glob("*.wandb"))
    # The end-of-run summary table (probe at init and at the end, per feature) and the media.
    tables = list(offline[0].glob("files/media/table/summary/probe_*.table.json"))
    assert tables, sorted(p.name for p in offline[0].rglob("*"))
    table = json.loads(tables[0].read_text())
    assert table["columns"][:3] == ["feature", "pck_init", "pck_final"]
    assert {row[0] for row in table["data"]} == {"z_v", "z_i", "backbone", "mean"}
    assert list(offline[0].glob("files/media/images/media/embedding_*.png"))


def test_resume_matches_uninterrupted(tiny_root, tmp_path, monkeypatch):
    full = tmp_path / "full"
    main(tiny_overrides(tiny_root, full, **{"trainer.max_epochs": 3}))

    # The same planned run (3 epochs), stopped after its first epoch (k = 2 steps).
    from css_pose.methods.css import CSSMethod

    def stop_after_first_epoch(self):
        if self.current_epoch == 0:
            self.trainer.should_stop = True

    part = tmp_path / "part"
    with monkeypatch.context() as m:
        m.setattr(CSSMethod, "on_train_epoch_end", stop_after_first_epoch, raising=False)
        stopped = main(tiny_overrides(tiny_root, part, **{"trainer.max_epochs": 3}))
    assert stopped["global_step"] == 2
    summary = main([f"resume={part}/checkpoints/last.ckpt"])
    assert summary["run_dir"] == str(part.resolve())
    a = torch.load(full / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(part / "checkpoints" / "last.ckpt", weights_only=True)
    assert a["global_step"] == b["global_step"] == 6
    for k, v in a["state_dict"].items():
        assert torch.allclose(v.float(), b["state_dict"][k].float(), atol=1e-5, rtol=1e-4), k
    # The resumed run appended to the same CSV log (steps of both halves present).
    steps = {int(r["step"]) for r in read_metrics(part) if r.get("train/loss")}
    assert min(steps) < 2 and max(steps) >= 4


def test_nonfinite_loss_stops_with_checkpoint(tiny_root, tmp_path, monkeypatch):
    from css_pose.methods import NonFiniteLossError
    from css_pose.methods.css import CSSMethod

    original = CSSMethod.training_loss
    calls = {"n": 0}

    def poisoned(self, batch):
        terms = original(self, batch)
        calls["n"] += 1
        if self.training and calls["n"] >= 3:
            terms["loss"] = terms["loss"] * float("nan")
        return terms

    monkeypatch.setattr(CSSMethod, "training_loss", poisoned)
    run = tmp_path / "nan"
    with pytest.raises(NonFiniteLossError, match="last good state"):
        main(tiny_overrides(tiny_root, run, **{"probe.enabled": False}))
    ckpt = read_checkpoint(run / "checkpoints" / "last_good.ckpt")
    assert all(
        torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point()
    )


def test_value_over_a_group_is_named():
    with pytest.raises(ConfigError, match="logger.wandb.enabled"):
        compose_config("train", ["logger.wandb=false"])


def test_unknown_config_key_is_named():
    with pytest.raises(ConfigError, match="optim.lrr"):
        compose_config("train", ["optim.lrr=0.1"])
    with pytest.raises(ConfigError, match="methd"):
        compose_config("train", ["methd=simclr"])
    cfg = compose_config("train", ["method=plain_temporal", "trainer.precision=bf16-mixed"])
    assert cfg.method.split is False and cfg.trainer.precision == "bf16-mixed"


def test_strict_loading_names_keys(tiny_root, tmp_path):
    run = tmp_path / "strict"
    main(tiny_overrides(tiny_root, run, **{"trainer.max_epochs": 1, "probe.enabled": False}))
    module, _ = load_method(run / "checkpoints" / "last.ckpt")
    state = dict(module.state_dict())
    state.pop("heads.v.0.weight", None) or state.pop(
        next(iter(k for k in state if k.startswith("heads.")))
    )
    state["encoder.bogus"] = torch.zeros(1)
    with pytest.raises(
        CheckpointError, match=r"missing keys: heads\..*unexpected keys: encoder.bogus"
    ):
        load_strict(module, state, "x.ckpt")
    bad = tmp_path / "not_a_ckpt.ckpt"
    bad.write_text("hello")
    with pytest.raises(CheckpointError, match="not_a_ckpt.ckpt"):
        read_checkpoint(bad)


def test_train_cli_reports_config_errors(tmp_path):
    proc = subprocess.run(
        [sys.executable, "train.py", "trainer.max_epohcs=3"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "max_epohcs" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.timeout(600)
def test_ddp_two_processes(tiny_root, tmp_path):
    """trainer.strategy=ddp with 2 CPU processes (gloo) runs and writes one run folder."""
    run = tmp_path / "ddp"
    args = tiny_overrides(
        tiny_root,
        run,
        **{
            "trainer.devices": 2,
            "trainer.strategy": "ddp",
            "trainer.max_epochs": 1,
            "data.samples_per_epoch": 16,
        },
    )
    env = {k: v for k, v in os.environ.items() if k not in ("LOCAL_RANK", "CSS_POSE_RUN_DIR")}
    proc = subprocess.run(
        [sys.executable, "train.py", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=540,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    # 16 samples / (2 ranks x batch 4) = 2 steps per epoch.
    assert summary["global_step"] == 2
    assert summary["probe_final"]["z_v_mpjpe"] > 0
