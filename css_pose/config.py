"""Compose ``configs/`` with Hydra in struct mode: unknown keys are errors that name the key."""

from __future__ import annotations

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
    OmegaConf.set_struct(cfg, True)
    return cfg
