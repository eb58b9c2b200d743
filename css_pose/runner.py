"""What ``python train.py`` does: compose the config, prepare data, build the run, train, report."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf

from css_pose.artifacts.runs import run_folder
from css_pose.config import ConfigError, compose_config, parse_cli, run_friendly
from css_pose.data.setup import build_datamodule, prepare_data
from css_pose.methods.data import LightningData
from css_pose.methods.loggers import build_loggers, close_loggers, log_summary

RUN_DIR_ENV = "CSS_POSE_RUN_DIR"
HELP = """usage: python train.py [key=value ...]

Pretrain an encoder on video. With no arguments: CSS on the built-in synthetic dataset
(generated into data/synthetic-bench on first use), a schedule that ends in < 10 min on 2 CPU
cores. Your own videos (data.root=/my/videos) are only read; without labels the probes are off.

Config groups (configs/): method=css|plain_temporal|simclr  model=resnet18|resnet50|convnet
                          data=synthetic  trainer=default  logger=default
Examples:
  python train.py method=plain_temporal data.root=/my/videos trainer.max_epochs=100
  python train.py trainer.devices=4 trainer.strategy=ddp trainer.precision=bf16-mixed
  python train.py resume=runs/css-20260101-120000/checkpoints/last.ckpt
  python train.py --cfg            print the composed config and exit
"""


def _run_dir_of_checkpoint(ckpt: Path) -> Path:
    return ckpt.resolve().parent.parent


def load_config(argv: list[str]) -> DictConfig:
    """Compose the train config; with ``resume=PATH`` start from that run's saved overrides."""
    resume = next((a.split("=", 1)[1] for a in argv if a.startswith("resume=")), None)
    if resume and resume not in ("null", "None"):
        ckpt = Path(resume)
        if not ckpt.is_file():
            raise ConfigError(f"resume={resume}: no such checkpoint file")
        from css_pose.checkpoint import CheckpointError, read_checkpoint

        try:  # before anything is built: a bad file is one line, not a Lightning traceback
            read_checkpoint(ckpt)
        except CheckpointError as e:
            raise ConfigError(f"resume={resume}: {e}") from None
        saved = _run_dir_of_checkpoint(ckpt) / "overrides.json"
        if not saved.is_file():
            raise ConfigError(
                f"resume={resume}: {saved} is missing, so this checkpoint's run config is unknown; "
                "resume only checkpoints that train.py wrote, inside their run folder"
            )
        previous = [o for o in json.loads(saved.read_text()) if not o.startswith("resume=")]
        cfg = compose_config("train", previous + argv)
        with_dir = OmegaConf.to_container(cfg)
        with_dir["run_dir"] = str(_run_dir_of_checkpoint(ckpt))
        cfg = OmegaConf.create(with_dir)
        OmegaConf.set_struct(cfg, True)
        return cfg
    return compose_config("train", argv)


def resolve_run_dir(cfg: DictConfig) -> Path:
    """The run folder; DDP worker processes inherit rank 0's through ``CSS_POSE_RUN_DIR``."""
    if os.environ.get(RUN_DIR_ENV) and os.environ.get("LOCAL_RANK", "0") != "0":
        return Path(os.environ[RUN_DIR_ENV])
    run_dir = run_folder(cfg.run_dir, cfg.method.name, create=False)
    os.environ[RUN_DIR_ENV] = str(run_dir)
    return run_dir


def describe_index(dm) -> str:
    """Dataset statistics per split: videos, frames, duration, labeled videos, people, sizes.

    With ``data.labels`` the labeled videos and people are those of the labels file."""
    lines = [f"[css_pose] dataset {dm.root}: {len(dm.index)} videos indexed"]
    if dm.labels is not None:
        lines.append(dm.labels.summary())
    if dm.index.problems:
        lines.append(
            f"  skipped {len(dm.index.problems)} unreadable file(s) (see the warning above)"
        )
    lines.append("  split  videos  frames  minutes  labeled  people  fps        sizes")
    for split in ("train", "val", "test"):
        vids = dm.label_index.split(split, dm.val_fraction)
        if not vids:
            continue
        frames = sum(v.num_frames for v in vids)
        minutes = sum(v.num_frames / v.fps for v in vids if v.fps) / 60
        fps = sorted({round(v.fps, 2) for v in vids})
        sizes = sorted({f"{v.width}x{v.height}" for v in vids})
        lines.append(
            f"  {split:5s}  {len(vids):6d}  {frames:6d}  {minutes:7.2f}  {sum(v.labeled for v in vids):7d}"
            f"  {sum(v.num_persons for v in vids):6d}  {','.join(map(str, fps[:3])):9s}  {','.join(sizes[:3])}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    """Entry point of ``train.py``; returns the summary it prints (also saved as summary.json)."""
    cfg, argv = parse_cli(argv, HELP, load_config)
    if cfg is None:
        return {}
    from css_pose.methods import build_method
    from css_pose.methods.callbacks import AtomicCheckpointIO

    root = prepare_data(cfg)  # a bad data.root fails here, before a run folder exists
    run_dir = resolve_run_dir(cfg)
    is_rank0 = os.environ.get("LOCAL_RANK", "0") == "0"
    run_dir.mkdir(parents=True, exist_ok=True)
    if is_rank0:
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
        if not (run_dir / "overrides.json").exists():
            (run_dir / "overrides.json").write_text(json.dumps(argv))
    pl.seed_everything(cfg.seed, workers=True, verbose=False)

    dm = build_datamodule(cfg, root)
    dm.setup("fit")
    if is_rank0:
        _show_training_samples(dm, run_dir)
    probe_on = _probe_enabled(cfg, dm, root, is_rank0)
    method = build_method(cfg)
    hparams = OmegaConf.to_container(cfg, resolve=True)
    method.run_config = hparams
    callbacks, probe = _callbacks(cfg, dm, run_dir, probe_on)
    trainer_kwargs = {k: v for k, v in OmegaConf.to_container(cfg.trainer).items() if v is not None}
    trainer = pl.Trainer(
        **trainer_kwargs,
        default_root_dir=str(run_dir),
        logger=build_loggers(cfg, run_dir, hparams),
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
        # The datamodule's sampler shards by rank itself and knows the resumed epoch.
        use_distributed_sampler=False,
    )
    t0 = time.perf_counter()
    trainer.fit(method, datamodule=LightningData(dm), ckpt_path=cfg.resume)
    ckpt_dir = run_dir / "checkpoints"
    summary = {
        "run_dir": str(run_dir),
        "data_root": str(root),
        "method": cfg.method.name,
        "encoder": cfg.model.name,
        "global_step": trainer.global_step,
        "train_seconds": round(time.perf_counter() - t0, 1),
        "last_checkpoint": str(ckpt_dir / "last.ckpt"),
        "best_checkpoint": str(ckpt_dir / "best.ckpt") if probe_on else None,
        "probe_initial": probe.initial,
        "probe_final": probe.latest,
    }
    if trainer.is_global_zero:
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        print(format_summary(summary))
        columns, rows = summary_table(summary)
        values = {f"summary/{k}": summary[k] for k in ("global_step", "train_seconds")}
        log_summary(trainer.loggers, "summary/probe", columns, rows, values)
    close_loggers(trainer.loggers)
    return summary


def _show_training_samples(dm, run_dir: Path) -> None:
    """Print the dataset statistics and save a contact sheet of training samples."""
    from css_pose.methods.callbacks import skeleton_sheet
    from css_pose.viz import save_png

    print(describe_index(dm))
    sheet = run_dir / "images" / "contact_sheet.png"
    save_png(sheet, skeleton_sheet(next(iter(dm.train_dataloader())), ncols=8))
    print(f"[css_pose] contact sheet of training samples with their skeletons: {sheet}")


def _probe_enabled(cfg: DictConfig, dm, root: Path, is_rank0: bool) -> bool:
    """Whether the online probe (and best.ckpt) can run; a notice says why when it cannot."""
    from css_pose.methods.callbacks import MIN_PROBE_VIDEOS

    if not cfg.probe.enabled:
        return False
    if dm.labels_path is not None:
        if is_rank0:
            print(
                f"[css_pose] notice: with data.labels the online probe and best.ckpt are off: "
                f"they score 3D and select on it, and {dm.labels_path.name} holds 2D labels; "
                "score the checkpoint with train_head.py or linear_probe.py target=2d"
            )
        return False
    labelled_val = sum(v.labeled for v in dm.label_index.split("val", dm.val_fraction))
    if labelled_val < MIN_PROBE_VIDEOS:
        if is_rank0:
            source = f"labels in {dm.labels_path}" if dm.labels_path else ".npz labels"
            print(
                f"[css_pose] notice: {'no' if labelled_val == 0 else f'only {labelled_val}'} "
                f"annotated validation video(s) in {root}, so "
                f"the online probe and best.ckpt are off (they need {source} for at least "
                f"{MIN_PROBE_VIDEOS} validation videos); training, last.ckpt, reconstructions "
                "and swap grids do not need labels and stay on"
            )
        return False
    return True


def _callbacks(cfg: DictConfig, dm, run_dir: Path, probe_on: bool) -> tuple[list, object]:
    """The training callbacks (probe first when on; checkpoints "last", rewritten every epoch,
    and "best", following the online-probe MPJPE) and the online probe."""
    from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint

    from css_pose.methods.callbacks import MediaLogger, OnlineProbe, SaveOnInterrupt

    ckpt_dir = run_dir / "checkpoints"
    media_split = "val" if dm.index.split("val", dm.val_fraction) else "train"
    probe = OnlineProbe(
        dm.probe_dataloader,
        alphas=list(cfg.probe.alphas),
        pck_alpha=cfg.probe.pck_alpha,
        every_n_epochs=cfg.probe.every_n_epochs,
        at_start=cfg.probe.at_start,
        embedding_dir=run_dir / "images",
    )
    callbacks = [
        SaveOnInterrupt(ckpt_dir),
        MediaLogger(
            lambda: dm.probe_dataloader(media_split, labeled_only=False),
            run_dir / "images",
            every_n_epochs=cfg.images.every_n_epochs,
            num_samples=cfg.images.num_samples,
        ),
        LearningRateMonitor(logging_interval="step"),
        ModelCheckpoint(dirpath=ckpt_dir, filename="last", enable_version_counter=False),
    ]
    if probe_on:
        callbacks.insert(0, probe)
        callbacks.append(
            ModelCheckpoint(
                dirpath=ckpt_dir,
                filename="best",
                monitor="probe/mpjpe",
                mode="min",
                every_n_epochs=cfg.probe.every_n_epochs,
                auto_insert_metric_name=False,
                enable_version_counter=False,
            )
        )
    return callbacks, probe


PROBE_METRICS = (("pck", "PCK@0.1", "{:.3f}"), ("mpjpe", "MPJPE", "{:.1f}"),
                 ("body_mpjpe", "body MPJPE", "{:.1f}"), ("pmpjpe", "P-MPJPE", "{:.1f}"))  # fmt: skip


def probe_features(probe: dict) -> list[str]:
    """Probed representations in a probe result, the no-image ``mean`` baseline first."""
    names = {k[: -len("_pck")] for k in probe if k.endswith("_pck")}
    return sorted(names, key=lambda n: (n != "mean", n))


def summary_table(s: dict) -> tuple[list[str], list[list]]:
    """The end-of-run W&B table: one row per probed feature (and the no-image mean pose), each
    probe metric at random init and at the end of training."""
    init, final = s.get("probe_initial") or {}, s.get("probe_final") or {}
    columns = ["feature"] + [
        f"{m}_{when}" for m, _, _ in PROBE_METRICS for when in ("init", "final")
    ]
    rows = [
        [f] + [d.get(f"{f}_{m}") for m, _, _ in PROBE_METRICS for d in (init, final)]
        for f in probe_features(final)
    ]
    return columns, rows


def format_probe(init: dict | None, final: dict) -> list[str]:
    """The online probe as text: per feature, each metric after training and at random init."""
    init = init or {}
    head = "".join(f"{label:>22s}" for _, label, _ in PROBE_METRICS)
    lines = [
        "  online probe (ridge on frozen features, held-out validation videos; 2D PCK@0.1 of the",
        "  tight box of visible joints, MPJPE mm in camera / body frame, P-MPJPE mm):",
        f"    {'feature':9s}{head}",
        f"    {'':9s}" + "".join(f"{'trained (init)':>22s}" for _ in PROBE_METRICS),
    ]
    for name in probe_features(final):
        cells = []
        for m, _, fmt in PROBE_METRICS:
            value = final.get(f"{name}_{m}")
            cell = "-" if value is None else fmt.format(value)
            if f"{name}_{m}" in init:
                cell += f" ({fmt.format(init[f'{name}_{m}'])})"
            cells.append(f"{cell:>22s}")
        label = "mean pose" if name == "mean" else name
        lines.append(f"    {label:9s}" + "".join(cells))
    if "z_v_pck" in final:
        if "z_v_pck" in init:
            gain = final["z_v_pck"] - init["z_v_pck"]
            lines.append(f"  z_v PCK@0.1 gain over random init: {gain:+.3f}")
        if "z_i_pck" in final:
            better = final["z_v_pck"] > final["z_i_pck"]
            lines.append(
                f"  disentanglement check: z_v {'beats' if better else 'does NOT beat'} z_i on 2D "
                f"pose (PCK@0.1 {final['z_v_pck']:.3f} vs {final['z_i_pck']:.3f})"
            )
    return lines


def format_summary(s: dict) -> str:
    lines = [
        "",
        "=" * 72,
        f"css_pose: {s['method']} on {s['encoder']}, {s['global_step']} steps in {s['train_seconds']} s",
        f"  run folder : {s['run_dir']}",
        f"  checkpoint : {s['last_checkpoint']}"
        + (f"  (best: {s['best_checkpoint']})" if s["best_checkpoint"] else ""),
        f"  logs       : {s['run_dir']}/csv/metrics.csv, W&B files in {s['run_dir']}/wandb",
        f"  images     : {s['run_dir']}/images",
    ]
    if s.get("probe_final"):
        lines += format_probe(s.get("probe_initial"), s["probe_final"])
    lines.append("=" * 72)
    return "\n".join(lines)


def run_cli(argv: list[str] | None = None) -> None:
    """Console entry: friendly one-line errors for config mistakes instead of a traceback."""
    run_friendly(
        lambda: main(argv),
        {torch.cuda.OutOfMemoryError: (1, "out of GPU memory; lower data.batch_size: ")},
    )
