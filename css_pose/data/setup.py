"""From the ``data`` section of a config to data on disk and a DataModule."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from css_pose.config import ConfigError


def same_folder(a: str | Path, b: str | Path) -> bool:
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def prepare_data(cfg: DictConfig) -> Path:
    """The data root, after generating the synthetic set when it is missing or unfinished.

    The synthetic set is generated only into its own folder, ``data.generate.root`` (by default
    ``data.root`` is that folder): a ``data.root`` pointing anywhere else is the user's own data,
    which is only ever read (index caches and crop stores live in the user cache). An
    interrupted generation has no manifest yet and resumes.

    Raises:
        ConfigError: ``data.root`` is missing, not a folder, or holds no file at all (one line
            naming it).
    """
    root = Path(cfg.data.root)
    generate = cfg.data.get("generate") or {}
    own = generate.get("root")
    if cfg.data.name == "synthetic" and own and same_folder(root, own):
        if not (root / "manifest.json").exists():
            from css_pose.data.synthetic import generate_dataset

            g = generate
            print(f"[css_pose] generating the synthetic dataset in {root} ({g.videos} videos)")
            generate_dataset(
                root,
                videos=g.videos,
                frames=g.frames,
                size=g.size,
                seed=g.seed,
                fps=g.fps,
                people=g.people,
                occluders=g.occluders,
                motion_blur=g.motion_blur,
                pan=g.pan,
                val_fraction=g.val_fraction,
                test_fraction=g.test_fraction,
            )
        return root
    if not root.exists():
        raise ConfigError(f"data.root={root} does not exist; point it at a folder of videos")
    if not root.is_dir():
        raise ConfigError(f"data.root={root} is a file; point it at the folder that holds videos")
    if not any(p.is_file() for p in root.rglob("*")):
        raise ConfigError(f"data.root={root} is empty; put videos (mp4, avi, mov, mkv, webm) in it")
    return root


def build_datamodule(cfg: DictConfig, root: Path):
    from css_pose.data.datamodule import VideoDataModule

    d = cfg.data
    return VideoDataModule(
        root,
        mode=cfg.method.sampling_mode,
        size=d.size,
        batch_size=d.batch_size,
        num_workers=d.num_workers,
        samples_per_epoch=d.samples_per_epoch,
        val_samples=d.val_samples,
        sampling=OmegaConf.to_container(d.sampling),
        augment=d.augment,
        val_fraction=d.val_fraction,
        seed=cfg.seed,
        backend=d.backend,
        probe_stride=d.probe_stride,
        cache_mb=d.cache_mb,
        cache_video_mb=d.cache_video_mb,
        crop_box=d.crop_box,
        augment_scope=d.augment_scope,
        # .get: data configs saved in older checkpoints (probe, head) have no store keys.
        store=d.get("store", False),
        store_dir=d.get("store_dir"),
        store_margin=d.get("store_margin", 1.5),
        labels=d.get("labels"),
        labels_skip_bad=d.get("labels_skip_bad", False),
        boxes=d.get("boxes"),
        boxes_min_score=d.get("boxes_min_score", 0.3),
    )
