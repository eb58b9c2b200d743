"""Generate a whole synthetic dataset: videos, annotations, train/val/test splits and a manifest.

Layout (docs/data_format.md): OUT/manifest.json and OUT/videos/NAME.{mp4,npz}. Each video's seeds
come from (seed, video index) alone, so the output does not depend on the number of workers.

Resuming: a video is complete when NAME.npz exists (it is written after NAME.mp4, both through a
temporary name) and its stored ``spec`` equals the spec that would be generated now. A re-run with
the same arguments renders only the missing or stale videos, then rewrites the manifest.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from css_pose.artifacts.atomic import write_json
from css_pose.data.synthetic.io import load_motion_file
from css_pose.data.synthetic.motions import resolve_families
from css_pose.data.synthetic.video import render_video

FORMAT = "css_pose.synthetic/1"


@dataclass(frozen=True)
class VideoSpec:
    """Everything that determines one video (stored in its npz as JSON under ``spec``)."""

    name: str
    split: str
    appearance_seed: int
    motion_seed: int
    frames: int
    size: int
    fps: float
    people: int
    occluders: bool
    motion_blur: bool
    pan: bool
    motion_sha1: str | None
    families: tuple[str, ...] | None = None

    def to_json(self) -> str:
        fields = asdict(self)
        if fields["families"] is None:  # the specs written before the key existed stay valid
            del fields["families"]
        else:
            fields["families"] = list(fields["families"])
        return json.dumps({"format": FORMAT, **fields}, sort_keys=True)


def video_seeds(seed: int, index: int) -> tuple[int, int]:
    """(appearance_seed, motion_seed) of video ``index``: non-negative int64s from (seed, index)."""
    a, m = np.random.SeedSequence([seed, index]).generate_state(2, dtype=np.uint64) >> np.uint64(1)
    return int(a), int(m)


def assign_splits(videos: int, seed: int, val: float = 0.15, test: float = 0.15) -> list[str]:
    """Split label per video index: a seeded shuffle, at least one val and one test video when
    there are three or more videos."""
    n_val, n_test = (
        (max(1, round(val * videos)), max(1, round(test * videos))) if videos >= 3 else (0, 0)
    )
    order = np.random.default_rng([seed, 1]).permutation(videos)
    splits = ["train"] * videos
    for i in order[:n_val]:
        splits[i] = "val"
    for i in order[n_val : n_val + n_test]:
        splits[i] = "test"
    return splits


def _families(labels: np.ndarray) -> list[str]:
    """Family names in order of first use, from motion labels like "walk>wave" or "run+punch"."""
    names = [f for label in np.atleast_1d(labels) for f in re.split(r"[+>]", str(label))]
    return list(dict.fromkeys(names))


def _entry(spec: VideoSpec, motion_labels: np.ndarray) -> dict:
    return {
        "name": spec.name,
        "video": f"videos/{spec.name}.mp4",
        "annotation": f"videos/{spec.name}.npz",
        "split": spec.split,
        "appearance_seed": spec.appearance_seed,
        "motion_seed": spec.motion_seed,
        "motions": _families(motion_labels),
        "num_people": spec.people,
        "frames": spec.frames,
    }


def _existing(directory: Path, spec: VideoSpec) -> dict | None:
    """The manifest entry of an already complete video, else None."""
    ann = directory / f"{spec.name}.npz"
    if not (ann.exists() and (directory / f"{spec.name}.mp4").exists()):
        return None
    try:
        with np.load(ann, allow_pickle=False) as data:
            if "spec" in data and str(data["spec"]) == spec.to_json():
                return _entry(spec, data["motion"])
    except (OSError, ValueError):
        pass  # unreadable: render it again
    return None


def _make_video(job: tuple[Path, VideoSpec, np.ndarray | None, str | None]) -> dict:
    directory, spec, motion, motion_path = job
    try:
        video = render_video(
            frames=spec.frames,
            size=spec.size,
            fps=spec.fps,
            appearance_seed=spec.appearance_seed,
            motion_seed=spec.motion_seed,
            people=spec.people,
            occluders=spec.occluders,
            motion_blur=spec.motion_blur,
            pan=spec.pan,
            motion=motion,
            families=spec.families,
        )
    except ValueError as err:  # say which video (and which motion file) could not be made
        clip = f", motion file {motion_path}" if motion_path else ""
        raise ValueError(f"{spec.name} (motion_seed={spec.motion_seed}{clip}): {err}") from err
    video.annotation["spec"] = np.array(spec.to_json())
    video.save(directory, spec.name)
    return _entry(spec, video.annotation["motion"])


def _init_worker() -> None:
    cv2.setNumThreads(1)  # one process per core already; OpenCV threads would only contend


def default_workers() -> int:
    """Cores available to this process."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def generate_dataset(
    out: str | Path,
    videos: int = 64,
    frames: int | None = None,
    size: int = 128,
    seed: int = 0,
    fps: float = 30.0,
    people: int = 1,
    occluders: bool = False,
    motion_blur: bool = False,
    pan: bool = False,
    motion: str | Path | None = None,
    families: Sequence[str] | None = None,
    workers: int | None = None,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    progress: bool = True,
) -> Path:
    """Render ``videos`` synthetic videos into ``out`` and return the path of OUT/manifest.json.

    frames: frames per video (default 120; with ``motion``, the whole motion file, or its first
        ``frames``). size: square frame side in px. seed: the dataset seed; video i uses seeds
        derived from (seed, i). people: people per video. occluders, motion_blur, pan: see
        ``render_video``. motion: an .npz with ``keypoints_3d`` (T, 17, 3) world mm rendered for
        person 0 of every video (each video with its own look and camera).
    families: draw the generated people's actions from these motion families only (names of
        ``motions.FAMILIES``, or ["fast"] for ``motions.FAST_FAMILIES``; default all).
    workers: processes (default: the available cores; 1 renders in this process).
    Splits are by video (70/15/15 by default); every video has its own appearance and motion
    seeds, so splits never share either.
    """
    out = Path(out)
    directory = out / "videos"
    directory.mkdir(parents=True, exist_ok=True)
    motion_array, motion_sha1 = None, None
    if motion is not None:
        motion_array = load_motion_file(motion)
        motion_sha1 = hashlib.sha1(motion_array.tobytes()).hexdigest()
        frames = len(motion_array) if frames is None else min(frames, len(motion_array))
    frames = 120 if frames is None else frames
    families = resolve_families(families)

    options = (float(fps), people, occluders, motion_blur, pan, motion_sha1, families)
    specs = _video_specs(videos, seed, frames, size, val_fraction, test_fraction, options)
    entries = {s.name: _existing(directory, s) for s in specs}
    motion_path = None if motion is None else str(motion)
    jobs = [(directory, s, motion_array, motion_path) for s in specs if entries[s.name] is None]
    entries.update(_render(jobs, videos, workers, progress))

    manifest = {
        "format": FORMAT,
        "seed": seed,
        "size": size,
        "fps": float(fps),
        "frames": frames,
        "people": people,
        "options": {
            "occluders": occluders,
            "motion_blur": motion_blur,
            "pan": pan,
            "motion": None if motion is None else str(motion),
            "families": None if families is None else list(families),
        },  # fmt: skip
        "videos": [entries[s.name] for s in specs],
    }
    return write_json(out / "manifest.json", manifest, indent=1)


def _video_specs(videos, seed, frames, size, val_fraction, test_fraction, options) -> list:
    """One :class:`VideoSpec` per video, its split and its own seeds derived from (seed, i);
    RuntimeError when two videos would share a seed."""
    splits = assign_splits(videos, seed, val_fraction, test_fraction)
    specs = [
        VideoSpec(f"synth_{i:05d}", splits[i], *video_seeds(seed, i), frames, size, *options)
        for i in range(videos)
    ]
    if (
        len({s.appearance_seed for s in specs}) < videos
        or len({s.motion_seed for s in specs}) < videos
    ):
        raise RuntimeError(f"seed collision between videos for seed={seed}; use another seed")
    return specs


def _render(jobs: list, videos: int, workers: int | None, progress: bool) -> dict:
    """Render the videos of ``jobs`` (the others are done), in ``workers`` processes, with a
    progress bar over all ``videos``; {name: manifest entry}."""
    entries = {}
    workers = max(1, min(workers or default_workers(), len(jobs)))
    bar = tqdm(
        total=videos, initial=videos - len(jobs), desc="synthetic videos", disable=not progress
    )
    with bar:
        if workers == 1:
            for entry in map(_make_video, jobs):
                entries[entry["name"]] = entry
                bar.update()
        else:
            with mp.get_context("spawn").Pool(workers, initializer=_init_worker) as pool:
                for entry in pool.imap_unordered(_make_video, jobs):
                    entries[entry["name"]] = entry
                    bar.update()
    return entries
