"""Load pretraining checkpoints written by ``train.py``, safely and strictly."""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf


class CheckpointError(ValueError):
    """The file is not a usable css_pose checkpoint; the message names the file and the problem."""


def read_torch_file(path: str | Path, kind: str = "checkpoint", hint: str = ""):
    """``torch.load`` with ``weights_only=True``: plain tensors and containers, no pickled code.

    CheckpointError naming the file when it is missing (``hint`` says where one comes from) or
    unreadable; ``kind`` names what it should be ("checkpoint", "model", "lifter")."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such {kind} file{hint}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{path}: not a readable torch {kind} ({e})") from None


def read_checkpoint(path: str | Path) -> dict:
    """A train.py checkpoint (:func:`read_torch_file`) with its state dict and config."""
    path = Path(path)
    ckpt = read_torch_file(path)
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise CheckpointError(f"{path}: has no 'state_dict'; is it a css_pose train.py checkpoint?")
    if not ckpt.get("css_pose_config"):
        raise CheckpointError(
            f"{path}: has no 'css_pose_config'; only checkpoints written by css_pose's train.py "
            "carry the config needed to rebuild the model"
        )
    return ckpt


def load_strict(module: torch.nn.Module, state_dict: dict, source: str | Path) -> None:
    """``load_state_dict(strict=True)`` whose error names the file and the offending keys."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    shape = sorted(
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(state_dict)
        if tuple(own[k].shape) != tuple(state_dict[k].shape)
    )
    if missing or unexpected or shape:
        parts = []
        for label, keys in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("shape mismatches", shape),
        ):
            if keys:
                shown = ", ".join(keys[:8]) + (
                    f" ... (+{len(keys) - 8} more)" if len(keys) > 8 else ""
                )
                parts.append(f"{label}: {shown}")
        raise CheckpointError(
            f"{source}: does not fit the model built from its config; " + "; ".join(parts)
        )
    module.load_state_dict(state_dict, strict=True)


def upgrade_config(cfg: DictConfig) -> DictConfig:
    """A checkpoint's stored train config on top of today's defaults for its method and model, so
    keys added since it was written take their default values."""
    from css_pose.config import compose_config

    groups = [f"method={cfg.method.name}", f"model={cfg.model.name}"]
    defaults = compose_config("train", groups)
    OmegaConf.set_struct(defaults, False)
    return OmegaConf.merge(defaults, cfg)


def load_method(path: str | Path):
    """Rebuild the pretraining LightningModule of a checkpoint and load its weights strictly.

    Returns:
        (module in eval mode, composed config as a DictConfig)
    """
    from css_pose.methods import build_method

    ckpt = read_checkpoint(path)
    cfg = upgrade_config(OmegaConf.create(ckpt["css_pose_config"]))
    module = build_method(cfg)
    load_strict(module, ckpt["state_dict"], path)
    module.run_config = ckpt["css_pose_config"]
    return module.eval(), cfg
