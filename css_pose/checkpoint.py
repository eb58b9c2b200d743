"""Load pretraining checkpoints written by ``train.py``, safely and strictly."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from css_pose.artifacts.atomic import atomic_path


class CheckpointError(ValueError):
    """The file is not a usable css_pose checkpoint; the message names the file and the problem."""


HASH_KEY = "css_pose_sha256"


def content_hash(obj) -> str:
    """SHA-256 of a checkpoint's content: every tensor's dtype, shape and bytes and every other
    value's repr, walked in a fixed order (dict keys sorted), the ``HASH_KEY`` entry left out.

    The same content gives the same digest in any process, so a file can carry its own digest."""
    h = hashlib.sha256()

    def walk(x) -> None:
        if isinstance(x, torch.Tensor):
            t = x.detach().cpu().contiguous().reshape(-1)
            h.update(f"T{t.dtype}{tuple(x.shape)}".encode())
            h.update(t.view(torch.uint8).numpy().tobytes())
        elif isinstance(x, dict):
            keys = sorted((k for k in x if k != HASH_KEY), key=repr)
            h.update(f"D{len(keys)}".encode())
            for k in keys:
                h.update(repr(k).encode())
                walk(x[k])
        elif isinstance(x, list | tuple):
            h.update(f"L{type(x).__name__}{len(x)}".encode())
            for v in x:
                walk(v)
        elif isinstance(x, set | frozenset):
            h.update(f"S{len(x)}".encode() + "|".join(sorted(map(repr, x))).encode())
        else:
            h.update(f"V{type(x).__name__}:{x!r}".encode())

    walk(obj)
    return h.hexdigest()


def save_torch_file(obj: dict, path: str | Path) -> Path:
    """``torch.save`` a dict with its :func:`content_hash` under ``HASH_KEY``, atomically (a
    temporary file, then rename: a crash never leaves half a file). Returns the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save({**obj, HASH_KEY: content_hash(obj)}, tmp)
    return path


def _why_unreadable(path: Path, e: Exception) -> str:
    """What is wrong with a file torch cannot load, in our words: torch's own text may advise
    ``weights_only=False``, and loading untrusted pickles that way runs arbitrary code."""
    size = path.stat().st_size
    if size == 0:
        return "is empty (0 bytes)"
    with open(path, "rb") as f:
        head = f.read(4)
    if head == b"PK\x03\x04":
        return (
            f"is a damaged or truncated torch archive ({size} bytes; {type(e).__name__}); "
            "copy it again or use another checkpoint"
        )
    if isinstance(e, pickle.UnpicklingError) or "weights_only" in str(e):
        return (
            "holds objects other than tensors and plain containers, or is not a torch file; "
            "css_pose loads only tensor files, since unpickling other objects can run code"
        )
    return f"is not a torch file ({size} bytes; {type(e).__name__})"


def read_torch_file(path: str | Path, kind: str = "checkpoint", hint: str = ""):
    """``torch.load`` with ``weights_only=True``: plain tensors and containers, no pickled code.
    A file written by :func:`save_torch_file` must match its content hash.

    CheckpointError naming the file when it is missing (``hint`` says where one comes from),
    unreadable, or changed since it was written; ``kind`` names what it should be ("checkpoint",
    "model", "lifter")."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such {kind} file{hint}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{path}: unreadable {kind}: it {_why_unreadable(path, e)}") from None
    if isinstance(obj, dict) and HASH_KEY in obj:
        if content_hash(obj) != obj[HASH_KEY]:
            raise CheckpointError(
                f"{path}: damaged {kind}: its content no longer matches the hash written with it "
                "(the file changed after css_pose saved it); use another copy or checkpoint"
            )
    return obj


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


def load_strict(
    module: torch.nn.Module,
    state_dict: dict,
    source: str | Path,
    target: str = "the model built from its config",
    error: type[Exception] = CheckpointError,
) -> None:
    """``load_state_dict(strict=True)`` whose error names the file and the offending keys: the
    one strict loader of css_pose (checkpoints, head and lifter files, encoder weights).
    ``target`` names what the weights should fit, ``error`` the exception raised."""
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
        raise error(f"{source}: does not fit {target}; " + "; ".join(parts))
    module.load_state_dict(state_dict, strict=True)


def load_encoder(path: str | Path):
    """The encoder of a train.py checkpoint, without its training module (no decoder, latent
    heads or losses are built): built from the checkpoint's model config at its crop size, with
    the checkpoint's ``encoder.*`` weights loaded strictly.

    Returns:
        (:class:`~css_pose.models.encoders.Encoder` in eval mode, composed config)
    Raises:
        CheckpointError: unreadable file, not a train.py checkpoint, or weights that do not fit.
    """
    from css_pose.models.encoders import build_encoder

    ckpt = read_checkpoint(path)
    cfg = upgrade_config(OmegaConf.create(ckpt["css_pose_config"]))
    encoder = build_encoder(cfg.model.name, in_size=cfg.data.size, width=cfg.model.get("width"))
    prefix = "encoder."
    state = {k[len(prefix) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    if not state:
        raise CheckpointError(f"{path}: holds no encoder weights (no '{prefix}*' keys)")
    load_strict(encoder, state, path, "the encoder built from its config")
    return encoder.eval(), cfg


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
