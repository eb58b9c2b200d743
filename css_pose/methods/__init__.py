"""LightningModules for pretraining: CSS (and its plain-temporal / ablation configs) and SimCLR."""

from __future__ import annotations

from omegaconf import DictConfig

from css_pose.methods.base import NonFiniteLossError, PretrainMethod
from css_pose.methods.css import CSSMethod
from css_pose.methods.simclr import SimCLRMethod

METHODS = {"css": CSSMethod, "plain_temporal": CSSMethod, "simclr": SimCLRMethod}


def build_method(cfg: DictConfig) -> PretrainMethod:
    """Instantiate the LightningModule named by ``cfg.method.name`` from a composed train config."""
    name = cfg.method.name
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {sorted(METHODS)}")
    args = (cfg.model, cfg.method, cfg.optim, cfg.data.size)
    if METHODS[name] is CSSMethod:
        return CSSMethod(*args, sampling=cfg.data.sampling)
    return METHODS[name](*args)


__all__ = ["CSSMethod", "NonFiniteLossError", "PretrainMethod", "SimCLRMethod", "build_method"]
