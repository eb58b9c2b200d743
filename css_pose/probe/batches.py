"""Training batches for a probe: features of every labelled frame computed once (frozen encoder),
or crops held in memory and passed through the training encoder every step (fine-tuning), each
mirrored with its labels with probability 1/2 (flip augmentation).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from omegaconf import DictConfig

from css_pose.probe.model import mirror_frame_batch, targets_of


def features_of(method, frames: torch.Tensor, feature: str) -> torch.Tensor:
    return method.features(frames)[feature]


LABEL_KEYS = ("keypoints_3d", "keypoints_2d", "visibility", "video_idx", "has_labels")


@torch.no_grad()
def collect_frames(method, loader, device, mirror: bool = False) -> dict[str, torch.Tensor]:
    """Every feature of ``method.features`` (``feat/<name>`` (N, D) float32) and the labels
    (:data:`LABEL_KEYS`) of every frame of a frame-mode ``loader``, on the CPU; with ``mirror``,
    of the mirrored frames (:func:`mirror_frame_batch`). The method's train/eval mode is the
    caller's. The one loop that the linear probe and the online probe read features through."""
    parts: dict[str, list[torch.Tensor]] = {}
    for batch in loader:
        if mirror:
            batch = mirror_frame_batch(batch, torch.ones(len(batch["frames"]), dtype=torch.bool))
        for name, value in method.features(batch["frames"].to(device)).items():
            parts.setdefault(f"feat/{name}", []).append(value.float().cpu())
        for key in LABEL_KEYS:
            parts.setdefault(key, []).append(batch[key])
    return {k: torch.cat(v) for k, v in parts.items()}


def collect_features(
    method,
    loader,
    feature: str,
    target: str,
    device,
    train_mode: bool = False,
    mirror: bool = False,
) -> tuple[torch.Tensor, ...]:
    """Features (N, D) and labels (N, J, k), masks (N, J) of every frame of ``loader``
    (:func:`collect_frames` with the method in ``train_mode``)."""
    method.train(train_mode)
    data = collect_frames(method, loader, device, mirror)
    kp, mask = targets_of(data, target)
    return data[f"feat/{feature}"], kp.float(), mask


def _coin(n: int, gen: torch.Generator) -> torch.Tensor:
    """(n,) bool, each True with probability 1/2: which samples to mirror."""
    return torch.rand(n, generator=gen) < 0.5


def _choose(which: torch.Tensor, plain: torch.Tensor, mirrored: torch.Tensor) -> torch.Tensor:
    """Per sample, ``mirrored`` where ``which`` (B,) is True, else ``plain`` (B, ...)."""
    return torch.where(which.view(-1, *[1] * (plain.ndim - 1)), mirrored, plain)


def encoder_batches(method, loader, cfg: DictConfig, gen: torch.Generator, device):
    """Training batches (features, labels, masks) through the trained encoder; with
    ``cfg.flip_train`` each crop is mirrored with its labels with probability 1/2."""
    for b in loader:
        if cfg.flip_train:
            b = mirror_frame_batch(b, _coin(len(b["frames"]), gen))
        yield features_of(method, b["frames"].to(device), cfg.feature), *targets_of(b, cfg.target)


# Labeled crops up to this size are held in memory while the encoder trains (4 GiB: 25,200 crops at
# 32 px take 77 MB as uint8); beyond it each epoch reads them through the DataLoader again.
IN_MEMORY_BYTES = 4 * 2**30


@dataclass
class LabeledFrames:
    """Every labeled crop of a run in memory, with the targets of the crop and of its mirror image.

    frames (N, 3, S, S): uint8 when the crops are exact multiples of 1/255 (crop-store frames
    are), else float32 in [0, 1]. kp / mirror_kp (N, J, k) and mask / mirror_mask (N, J) bool:
    :func:`targets_of` of the crop and of the mirrored crop (:func:`mirror_frame_batch`).
    """

    frames: torch.Tensor
    kp: torch.Tensor
    mask: torch.Tensor
    mirror_kp: torch.Tensor
    mirror_mask: torch.Tensor

    def images(self, idx: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) float32 in [0, 1] of the listed crops."""
        x = self.frames[idx]
        return x.float().div_(255.0) if x.dtype == torch.uint8 else x


def labeled_in_memory(loader, target: str) -> LabeledFrames | None:
    """:class:`LabeledFrames` of every frame of ``loader`` (in order), or None when the crops would
    take more than ``IN_MEMORY_BYTES``. Reading crops once instead of every epoch takes the loader
    out of the training step (docs/benchmarks.md, "The ceiling")."""
    dataset = loader.dataset
    if not len(dataset):
        return None
    size = int(dataset[0]["frames"].shape[-1])
    if len(dataset) * 3 * size * size > IN_MEMORY_BYTES:
        return None
    parts: dict[str, list[torch.Tensor]] = {}
    exact = True
    for batch in loader:
        x = batch["frames"]
        as_bytes = x.mul(255.0).round_()
        exact = exact and torch.equal(as_bytes.div(255.0), x)
        parts.setdefault("bytes", []).append(as_bytes.byte())
        parts.setdefault("float", []).append(x)
        mirrored = mirror_frame_batch(batch, torch.ones(len(x), dtype=torch.bool))
        for prefix, b in (("", batch), ("mirror_", mirrored)):
            kp, mask = targets_of(b, target)
            parts.setdefault(prefix + "kp", []).append(kp.float())
            parts.setdefault(prefix + "mask", []).append(mask)
    out = {k: torch.cat(v) for k, v in parts.items() if k not in ("bytes", "float")}
    frames = torch.cat(parts["bytes"] if exact else parts["float"])
    return LabeledFrames(frames, **out)


def memory_batches(method, data: LabeledFrames, cfg: DictConfig, gen: torch.Generator, device):
    """Shuffled training batches (features, labels, masks) from crops in memory; with
    ``cfg.flip_train`` each crop is mirrored with its labels with probability 1/2 (the same
    mirroring as :func:`encoder_batches`)."""
    for idx in torch.randperm(len(data.frames), generator=gen).split(cfg.batch_size):
        x, kp, mask = data.images(idx), data.kp[idx], data.mask[idx]
        if cfg.flip_train:
            which = _coin(len(idx), gen)
            x = _choose(which, x, x.flip(-1))
            kp = _choose(which, kp, data.mirror_kp[idx])
            mask = _choose(which, mask, data.mirror_mask[idx])
        feats = method.features(x.to(device))[cfg.feature]
        yield feats, kp, mask


def cached_batches(plain: tuple, mirrored: tuple | None, batch_size: int, gen: torch.Generator):
    """Shuffled training batches of precomputed (features, labels, masks); with ``mirrored`` (the
    same for the mirrored crops) each sample is taken mirrored with probability 1/2."""
    for i in torch.randperm(len(plain[0]), generator=gen).split(batch_size):
        if mirrored is None:
            yield tuple(t[i] for t in plain)
        else:
            which = _coin(len(i), gen)
            yield tuple(_choose(which, a[i], m[i]) for a, m in zip(plain, mirrored, strict=True))
