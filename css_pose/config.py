"""Compose ``configs/`` with Hydra in struct mode: unknown keys are errors that name the key."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import DictConfig, OmegaConf

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


class ConfigError(ValueError):
    """A bad command-line override or config file; the message says which key and how to fix it."""


def compose_config(name: str, overrides: list[str]) -> DictConfig:
    """Compose ``configs/<name>.yaml`` with Hydra-style ``key=value`` overrides.

    Raises:
        ConfigError: naming the offending override and listing the valid keys around it.
    """
    if not (CONFIG_DIR / f"{name}.yaml").exists():
        raise ConfigError(f"config {CONFIG_DIR / name}.yaml not found")
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose(config_name=name, overrides=list(overrides))
    except ConfigCompositionException as e:
        cause = e.__cause__ or e
        raise ConfigError(f"{cause}\n(config files: {CONFIG_DIR})") from None
    except Exception as e:  # Hydra's override grammar errors carry no common base class
        raise ConfigError(f"bad override in {overrides}: {e}") from None
    if overrides:
        _check_groups(compose_config(name, []), cfg, "")
    OmegaConf.set_struct(cfg, True)
    return cfg


def _check_groups(default: DictConfig, cfg: DictConfig, prefix: str) -> None:
    """Raise ConfigError where an override replaced a group of keys by a single value."""
    for key, value in default.items_ex(resolve=False):
        if not isinstance(value, DictConfig) or key not in cfg:
            continue
        path, node = f"{prefix}{key}", OmegaConf.select(cfg, key, throw_on_missing=False)
        if not isinstance(node, DictConfig):
            keys = ", ".join(f"{path}.{k}" for k in value)
            raise ConfigError(
                f"{path}={node!r}: {path} is a group of keys, not a value; set one of them "
                f"instead ({keys})"
            )
        _check_groups(value, node, f"{path}.")


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def configure_threads(threads: int | None = None, loader_workers: int = 0) -> int:
    """Set torch's and OpenCV's thread counts in this process and return the count.

    threads: None -> the available cores minus the DataLoader workers, at least 1. torch's own
    default (all cores) fights the loader workers for the cores: on 2 cores with 2 workers a
    training step ran about 4x slower (docs/benchmarks.md, "CPU threads"). DataLoader workers
    themselves run torch with one thread.
    """
    import cv2
    import torch

    n = int(threads) if threads else max(1, available_cores() - int(loader_workers))
    if n < 1:
        raise ConfigError(f"threads={threads}: must be a positive number of threads (or null)")
    torch.set_num_threads(n)
    cv2.setNumThreads(n)
    return n


def parse_cli(
    argv: list[str] | None, help_text: str, load: Callable[[list[str]], DictConfig]
) -> tuple[DictConfig | None, list[str]]:
    """Shared command line of the entry scripts: ``-h/--help``, ``--cfg`` and ``key=value`` overrides.

    A config with a top-level ``threads`` key sets torch's and OpenCV's threads from it
    (:func:`configure_threads`, with ``data.num_workers`` loader workers).

    Returns:
        (config, overrides); config is None when the call only printed help or the config.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in argv):
        print(help_text)
        return None, argv
    show_cfg = "--cfg" in argv
    argv = [a for a in argv if a != "--cfg"]
    cfg = load(argv)
    if show_cfg:
        print(OmegaConf.to_yaml(cfg))
        return None, argv
    if "threads" in cfg:
        workers = OmegaConf.select(cfg, "data.num_workers", default=0) or 0
        configure_threads(cfg.threads, workers)
    return cfg, argv


def run_friendly(
    main: Callable[[], object], errors: dict[type[BaseException], tuple[int, str]]
) -> None:
    """Run a console entry point; listed exceptions print one line and exit with their code.

    Args:
        main: the entry point.
        errors: exception type -> (exit code, message prefix); a ConfigError always exits with 2,
            a CheckpointError or VideoIndexError (a bad file, named in the message) with 1.
    """
    from css_pose.checkpoint import CheckpointError
    from css_pose.data.index import VideoIndexError

    errors = {CheckpointError: (1, ""), VideoIndexError: (1, ""), **errors}
    try:
        main()
    except ConfigError as e:
        print(f"css_pose: config error: {e}", file=sys.stderr)
        sys.exit(2)
    except tuple(errors) as e:
        code, prefix = next(v for k, v in errors.items() if isinstance(e, k))
        print(f"css_pose: {prefix}{e}", file=sys.stderr)
        sys.exit(code)
