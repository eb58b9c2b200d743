"""The run's loggers: a CSV log always (unless ``logger.csv`` is false), W&B when enabled
(offline by default), with the hyper-parameters logged explicitly."""

from __future__ import annotations

import os
import secrets
import string
from pathlib import Path

from omegaconf import DictConfig


def build_loggers(cfg: DictConfig, run_dir: Path, hparams: dict):
    from pytorch_lightning.loggers import WandbLogger

    from css_pose.methods.csv_log import ResumableCSVLogger

    loggers = []
    if cfg.logger.csv:
        loggers.append(ResumableCSVLogger(save_dir=str(run_dir), name="csv", version=""))
    w = cfg.logger.wandb
    if w.enabled:
        os.environ["WANDB_DIR"] = str(run_dir)
        os.environ.setdefault("WANDB_MODE", w.mode)
        os.environ.setdefault("WANDB_SILENT", "true")
        id_file = run_dir / "wandb_run_id.txt"
        if id_file.exists():
            run_id = id_file.read_text().strip()
        else:
            alphabet = string.ascii_lowercase + string.digits
            run_id = "".join(secrets.choice(alphabet) for _ in range(8))
            if int(os.environ.get("LOCAL_RANK", "0")) == 0:
                id_file.write_text(run_id)
        loggers.append(
            WandbLogger(
                project=w.project,
                entity=w.entity,
                name=w.name or run_dir.name,
                tags=list(w.tags),
                id=run_id,
                save_dir=str(run_dir),
                offline=w.mode == "offline",
                resume="allow",
            )
        )
    for logger in loggers:
        logger.log_hyperparams(hparams)
    return loggers


def finish_loggers(loggers, split: str, metrics: dict, images: dict, step: int) -> None:
    """Log a run's final ``metrics`` as ``<split>/<name>`` and its ``images`` (name -> PNG path)
    as ``media/<name>`` at ``step``, then flush every logger and close the W&B run."""
    for logger in loggers:
        logger.log_metrics({f"{split}/{k}": v for k, v in metrics.items()}, step=step)
        if hasattr(logger, "log_image"):
            for key, path in images.items():
                logger.log_image(key=f"media/{key}", images=[str(path)], step=step)
        logger.save()
    close_loggers(loggers)


def log_summary(loggers, key: str, columns: list[str], rows: list, values: dict) -> None:
    """Put a run's end-of-run ``values`` into each W&B run's summary and ``rows`` (under
    ``columns``) into a table named ``key`` (skipped when empty); the CSV log keeps its own."""
    for logger in _wandb(loggers):
        if rows:
            logger.log_table(key=key, columns=columns, data=rows)
        logger.experiment.summary.update(values)


def close_loggers(loggers) -> None:
    """End the W&B run of each W&B logger (the others need no closing)."""
    for logger in _wandb(loggers):
        logger.experiment.finish()


def _wandb(loggers) -> list:
    from pytorch_lightning.loggers import WandbLogger

    return [logger for logger in loggers if isinstance(logger, WandbLogger)]
