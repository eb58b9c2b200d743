"""Code shared by the apps (the one module apps import besides the library).

- **Encoder and labels of a probe or head run**: :func:`prepare_labeled_run` loads the encoder
  from a checkpoint (or builds one at random init), sets up the frame-mode data and draws the
  labelled frames (:func:`select_labeled`, whole videos by default, or those of an earlier run's
  ``labelled_frames.json``, :func:`load_label_choice`); :func:`save_label_choice` writes that
  file.
- **Training budget and loaders**: :func:`epoch_budget`, :func:`make_loader`.
- **Provenance**: :func:`git_commit`.
"""

from __future__ import annotations

import json
import math
import subprocess
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.utils.data import DataLoader, Subset

from css_pose.checkpoint import load_method
from css_pose.config import compose_config
from css_pose.data.setup import build_datamodule, prepare_data


# --- config ---------------------------------------------------------------------------------------
def no_ckpt(cfg: DictConfig) -> bool:
    return cfg.ckpt is None or str(cfg.ckpt).lower() == "none"


def with_checkpoint_data(cfg: DictConfig, ckpt_cfg: DictConfig, argv: list[str]) -> DictConfig:
    """``cfg`` with the checkpoint's model and method, and its data section under the data.* keys
    named in ``argv`` (taken from ``cfg``)."""
    data = OmegaConf.create(OmegaConf.to_container(ckpt_cfg.data))
    for arg in argv:
        key = arg.split("=", 1)[0].lstrip("+~")
        if key.startswith("data."):
            OmegaConf.update(data, key[len("data.") :], OmegaConf.select(cfg, key), merge=False)
    out = OmegaConf.to_container(cfg)
    out["data"] = OmegaConf.to_container(data)
    out["model"] = OmegaConf.to_container(ckpt_cfg.model)
    out["method"] = OmegaConf.to_container(ckpt_cfg.method)
    merged = OmegaConf.create(out)
    OmegaConf.set_struct(merged, True)
    return merged


def random_init_config(cfg: DictConfig) -> DictConfig:
    """A train config whose model, method and crop size are the probe's (for ``build_method``)."""
    train = OmegaConf.to_container(
        compose_config("train", [f"model={cfg.model.name}", f"method={cfg.method.name}"])
    )
    train["model"] = OmegaConf.to_container(cfg.model)
    train["method"] = OmegaConf.to_container(cfg.method)
    train["data"] = OmegaConf.to_container(cfg.data)
    return OmegaConf.create(train)


# --- data -----------------------------------------------------------------------------------------
def select_labeled(
    n_frames: int, fraction: float, seed: int, videos: list[str] | None = None
) -> torch.Tensor:
    """Indices (sorted) of the labeled frames among ``n_frames``, drawn with ``seed``.

    Without ``videos``: max(1, round(fraction * n_frames)) frames without replacement. With
    ``videos`` (the video of each frame, length ``n_frames``): max(1, round(fraction * number of
    distinct videos)) whole videos, every frame of each.
    """
    gen = torch.Generator().manual_seed(seed)
    if videos is None:
        count = max(1, round(fraction * n_frames))
        return torch.randperm(n_frames, generator=gen)[:count].sort().values
    if len(videos) != n_frames:
        raise ValueError(f"{len(videos)} video names for {n_frames} frames")
    names = sorted(set(videos))
    count = max(1, round(fraction * len(names)))
    picked = {names[i] for i in torch.randperm(len(names), generator=gen)[:count].tolist()}
    return torch.tensor([i for i, v in enumerate(videos) if v in picked], dtype=torch.long)


def frame_videos(dataset, indices) -> list[str]:
    """``rel_path`` of the video of each listed frame of a frame-mode dataset."""
    return [
        dataset.videos[dataset.tracks[int(dataset.frames[i][0])].video].rel_path for i in indices
    ]


LABEL_CHOICE_FILE = "labelled_frames.json"


def label_source(c: dict, seed: int) -> str:
    """How a run's labelled frames were chosen, for its printed summary."""
    if c.get("label_frames"):
        return f"(those of label_frames={c['label_frames']})"
    return f"(label_fraction {c['label_fraction']}, seed {seed})"


def frame_keys(dataset, indices) -> list[list]:
    """[video rel_path, frame, person track id] of each listed frame of a frame-mode dataset."""
    keys = []
    for i in indices:
        k, frame = (int(x) for x in dataset.frames[int(i)])
        track = dataset.tracks[k]
        ann = dataset.annotations.get(track.video)
        person = int(ann.track_ids[track.person]) if ann is not None else 0
        keys.append([dataset.videos[track.video].rel_path, frame, person])
    return keys


def save_label_choice(run_dir: Path, cfg: DictConfig, dataset, chosen) -> Path:
    """Write ``labelled_frames.json`` into ``run_dir``: where the labels came from, how they
    were drawn, and every labelled training frame as [video rel_path, frame, person track id].
    ``label_frames=<that file>`` makes a later run use exactly these frames."""
    path = Path(run_dir) / LABEL_CHOICE_FILE
    record = {
        "root": str(cfg.data.root),
        "labels": cfg.data.get("labels"),
        "label_fraction": cfg.label_fraction,
        "label_unit": cfg.label_unit,
        "seed": cfg.seed,
        "label_frames": cfg.get("label_frames"),
        "frames": frame_keys(dataset, chosen.tolist()),
    }
    frames = record.pop("frames")
    text = json.dumps(record, indent=1)[:-2] + ',\n "frames": [\n'
    text += ",\n".join(f"  {json.dumps(f)}" for f in frames) + "\n ]\n}\n"
    path.write_text(text)
    return path


def load_label_choice(path: str | Path, dataset) -> torch.Tensor:
    """Indices into ``dataset`` (frame mode) of the frames listed in a ``labelled_frames.json``
    (or a folder holding one).

    Raises:
        FileNotFoundError / ValueError: no such file, not a label choice, or a listed frame that
            is not a labelled training frame here (names the first few).
    """
    path = Path(path)
    if path.is_dir():
        path = path / LABEL_CHOICE_FILE
    try:
        frames = json.loads(path.read_text())["frames"]
    except FileNotFoundError:
        raise FileNotFoundError(
            f"label_frames={path}: no such file; give the {LABEL_CHOICE_FILE} of an earlier run"
        ) from None
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"label_frames={path}: not a {LABEL_CHOICE_FILE} ({e!r})") from None
    here = {tuple(k): i for i, k in enumerate(frame_keys(dataset, range(len(dataset))))}
    missing = [f for f in frames if tuple(f) not in here]
    if missing:
        raise ValueError(
            f"label_frames={path}: {len(missing)} of its {len(frames)} frames are not labelled "
            f"training frames of this data (e.g. {missing[:3]}); the videos, the labels or "
            "data.probe_stride differ from that run"
        )
    return torch.tensor(sorted(here[tuple(f)] for f in frames), dtype=torch.long)


def epoch_budget(cfg: DictConfig, batches_per_epoch: int) -> int:
    """Epochs to run: ``cfg.epochs``, or with ``cfg.steps`` set, ceil(steps / batches per epoch).

    Raises:
        ValueError: ``steps`` below 1.
    """
    if cfg.steps is None:
        return cfg.epochs
    if cfg.steps < 1:
        raise ValueError(f"steps={cfg.steps} must be >= 1 (or null to use epochs)")
    return math.ceil(cfg.steps / batches_per_epoch)


def make_loader(dataset, like: DataLoader, batch_size: int, shuffle: bool, seed: int) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=like.num_workers,
        # Workers (and their decoded-video caches) live across epochs: with few labels an epoch
        # is a single step, and restarting workers every step would dominate the run.
        persistent_workers=like.num_workers > 0,
        generator=torch.Generator().manual_seed(seed) if shuffle else None,
    )


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def frame_datamodule(cfg: DictConfig):
    """The DataModule of ``cfg.data`` in frame mode (labeled frames), set up."""
    dm = build_datamodule(
        OmegaConf.merge(cfg, {"method": {"sampling_mode": "frame"}}), prepare_data(cfg)
    )
    dm.setup()
    return dm


@dataclass
class LabeledRun:
    """The encoder and the labeled data of a probe or head run (:func:`prepare_labeled_run`)."""

    method: nn.Module
    cfg: DictConfig  # with the checkpoint's model, method and data sections
    source: str  # checkpoint path, or "random init"
    device: torch.device
    train_loader: DataLoader  # every labeled training frame, in order
    test_loader: DataLoader
    test_split: str
    note: str | None
    chosen: torch.Tensor  # indices of the labeled frames into train_loader.dataset
    labeled: Subset


def prepare_labeled_run(cfg: DictConfig, argv: list[str] | None) -> LabeledRun:
    """Seed, build (ckpt=none) or load the pretraining module, pick the device, the labeled
    fraction of the training frames and the test split (val when test has no labels)."""
    torch.manual_seed(cfg.seed)
    if no_ckpt(cfg):
        from css_pose.methods import build_method

        method, source = build_method(random_init_config(cfg)), "random init"
    else:
        method, ckpt_cfg = load_method(cfg.ckpt)
        cfg = with_checkpoint_data(cfg, ckpt_cfg, argv or [])
        source = str(cfg.ckpt)
    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device
    )
    dm = frame_datamodule(cfg)
    train_loader = dm.probe_dataloader("train")
    test_split, note = cfg.get("eval_split", "test"), None
    if test_split not in ("test", "val"):
        raise ValueError(f"eval_split={test_split!r}: use eval_split=test or eval_split=val")
    if not any(v.labeled for v in dm.label_index.split(test_split, dm.val_fraction)):
        if test_split == "val":
            raise ValueError(
                f"eval_split=val but the val split of {cfg.data.root} has no labelled frames; "
                "use eval_split=test"
            )
        test_split, note = "val", "no labeled test split; scoring on the val split instead"
        print(f"[css_pose] note: {note}")
    train_set = train_loader.dataset
    if cfg.get("label_frames"):
        chosen = load_label_choice(cfg.label_frames, train_set)
    else:
        videos = (
            frame_videos(train_set, range(len(train_set))) if cfg.label_unit == "video" else None
        )
        chosen = select_labeled(len(train_set), cfg.label_fraction, cfg.seed, videos)
    return LabeledRun(
        method,
        cfg,
        source,
        device,
        train_loader,
        dm.probe_dataloader(test_split),
        test_split,
        note,
        chosen,
        Subset(train_loader.dataset, chosen.tolist()),
    )
