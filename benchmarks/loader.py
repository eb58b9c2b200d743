"""Loader throughput in contrastive mode: our loaders against naive PyAV seeking.

Every loader serves the same clips (same videos, seed, shuffled sample order): 5 frames per clip
(anchor, 1 positive, 1 negative, 2 transition frames), 128x128 crops with training augmentation,
batch 16, 2 persistent DataLoader workers; only the frame reader differs. Each loader runs two
epochs (different clips of the same videos), as training does:

- epoch 1 ("cold"): worker processes are already up (their start-up is not timed), but no
  video has been read yet: readers are opened, and the decoded-frame cache is filled, i.e. each
  worker decodes every short video it meets once, in full;
- epoch 2 ("warm"): the steady state of training from its second epoch on (persistent workers,
  readers open, cache filled).

Rows:

- naive PyAV: for each wanted frame, seek to it (its keyframe) and decode forward to it, with
  ``to_ndarray(format="rgb24")``, file kept open across clips (the baseline of the ratio columns;
  ``--naive-reopen`` adds a row that reopens the file for every clip, as simple dataset code does);
- decord, one sorted ``get_batch`` per clip, decoded-frame cache off (``cache_mb=0``);
- decord with the decoded-frame cache (``cache_mb``, ``cache_video_mb``; our default): a video
  of at most ``cache_video_mb`` MiB decoded is decoded whole once per worker, then served from
  memory; a larger video takes the sorted ``get_batch`` path;
- PyAV (ours), keyframe seek + decode forward, without and with the cache.

Rounds are interleaved (every loader once per round) so that load from other processes hits all
loaders alike; the best round of each loader counts.

Usage: python benchmarks/loader.py [--root DIR] [--clips 480] [--workers 2] [--batch 16]
                                  [--size 128] [--repeats 2] [--cache-mb 1024]
                                  [--cache-video-mb 64] [--naive-reopen]
Without --root it uses data/synthetic_bench: 64 synthetic videos x 120 frames at 128 px (seed 0),
generated on first use.

``--store`` compares instead the decoded-crop store (:mod:`css_pose.data.store`) with our default
loader (decord + decoded-frame cache) and the naive PyAV baseline, ratios against the default,
on many short videos: 200 synthetic videos x 32 frames at 128 px generated into ``--out`` (default:
a temporary folder; ``--root`` uses existing videos), the store built there too. It then times
one CSS training step of the small ConvNet at 32 px crops (batch 16 contrastive samples, the
store's batches) against loading one such batch from the store: the slower one bounds training.

    python benchmarks/loader.py --store [--out DIR] [--clips 480] [--repeats 2]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from css_pose.data.datamodule import seed_worker
from css_pose.data.dataset import VideoClipDataset
from css_pose.data.index import index_videos
from css_pose.data.sampling import ContrastiveLayout
from css_pose.data.store import CropStore
from css_pose.data.transforms import AugmentConfig
from css_pose.data.video import (
    CACHE_VIDEO_MB,
    FRAME_CACHE_MB,
    VideoReader,
    clear_reader_cache,
)

DEFAULT_ROOT = Path(__file__).resolve().parents[1] / "data" / "synthetic_bench"
SAMPLING = dict(n_pos=1, d_pos=2, n_neg=1, d_neg=24, n_gt=2, gt_max=12)


def _write_plain_videos(root: Path, videos: int, frames: int, size: int) -> None:
    """Textured frames scrolling 2 px per frame, H.264 with a keyframe every 30 frames."""
    rng = np.random.default_rng(0)
    for i in range(videos):
        texture = rng.integers(0, 256, (size // 8, (size + 2 * frames) // 8 + 1, 3), np.uint8)
        texture = np.kron(texture, np.ones((8, 8, 1), np.uint8))
        with av.open(str(root / "videos" / f"bench_{i:03d}.mp4"), "w") as container:
            stream = container.add_stream("libx264", rate=30)
            stream.width = stream.height = size
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": "18", "preset": "fast", "x264-params": "keyint=30:scenecut=0"}
            for t in range(frames):
                image = np.ascontiguousarray(texture[:, 2 * t : 2 * t + size])
                container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
            container.mux(stream.encode())


class NaivePyAVReader(VideoReader):
    """The naive reader: for each wanted frame, seek to it and decode forward until it appears."""

    def __init__(self, path: str, num_frames: int, reopen: bool = False):
        self.path, self.num_frames, self.reopen = path, num_frames, reopen
        self._container = None if reopen else av.open(path)

    def _read_sorted(self, indices: list[int]) -> np.ndarray:
        container = av.open(self.path) if self.reopen else self._container
        stream = container.streams.video[0]
        ticks_per_frame = 1 / (Fraction(stream.time_base) * stream.average_rate)
        frames = []
        for i in indices:
            container.seek(int(i * ticks_per_frame), stream=stream)
            for frame in container.decode(stream):
                if round(frame.pts / ticks_per_frame) >= i:
                    frames.append(frame.to_ndarray(format="rgb24"))
                    break
        if self.reopen:
            container.close()
        return np.stack(frames)

    def close(self) -> None:
        if self._container is not None:
            self._container.close()


def ensure_dataset(root: Path, videos: int = 64, frames: int = 120, size: int = 128) -> Path:
    """Generate the benchmark set into ``root`` unless it already holds videos."""
    if root.is_dir() and any(root.rglob("*.mp4")):
        return root
    try:
        from css_pose.data.synthetic import generate_dataset
    except ImportError:
        (root / "videos").mkdir(parents=True, exist_ok=True)
        _write_plain_videos(root, videos, frames, size)
    else:
        generate_dataset(root, videos=videos, frames=frames, size=size, seed=0)
    return root


class _Warmup(Dataset):
    """``dataset`` plus index -1: a dummy item read from no video, to start workers untimed."""

    def __init__(self, dataset: VideoClipDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        if index < 0:
            return {"frames": torch.zeros(1)}
        return self.dataset[index]


def epoch_rates(
    videos,
    backend,
    cache_mb: float,
    args: argparse.Namespace,
    epochs: int = 2,
    store: CropStore | None = None,
    size: int | None = None,
) -> list[float]:
    """Clips/s of each of ``epochs`` passes over ``args.clips`` clips, persistent workers.

    Every pass starts with dummy batches (no video read), one per batch slot the loader
    dispatches ahead, and is timed from the last of them: worker start-up is excluded, every
    clip's read is included. ``store``: read crops from it instead of decoding.
    """
    dataset = VideoClipDataset(
        videos,
        "contrastive",
        size or args.size,
        samples_per_epoch=args.clips,
        augment=AugmentConfig(),
        backend=backend,
        seed=0,
        cache_mb=cache_mb,
        cache_video_mb=args.cache_video_mb,
        store=store,
        **SAMPLING,
    )
    prefetch = 2
    warmup = [-1] * (args.batch * max(1, args.workers) * prefetch)
    order = np.random.default_rng(0).permutation(args.clips).tolist()  # shuffled, as in training
    loader = DataLoader(
        _Warmup(dataset),
        batch_size=args.batch,
        sampler=warmup + order,
        num_workers=args.workers,
        persistent_workers=args.workers > 0,
        prefetch_factor=prefetch if args.workers > 0 else None,
        worker_init_fn=seed_worker,
    )
    rates = []
    for epoch in range(epochs):
        dataset.set_epoch(epoch)
        batches = iter(loader)
        for _ in range(len(warmup) // args.batch):
            next(batches)
        start, served = time.perf_counter(), 0
        for sample in batches:
            served += len(sample["frames"])
        rates.append(served / (time.perf_counter() - start))
    del batches, loader  # ends the workers (and their caches)
    return rates


def store_loader(store: CropStore, videos, size: int, args: argparse.Namespace) -> DataLoader:
    """Contrastive batches of ``args.batch`` clips at ``size`` px from ``store``, 1 epoch."""
    dataset = VideoClipDataset(
        videos,
        "contrastive",
        size,
        samples_per_epoch=args.clips,
        augment=AugmentConfig(),
        store=store,
        **SAMPLING,
    )
    return DataLoader(dataset, batch_size=args.batch, shuffle=True, num_workers=0)


def train_step_seconds(batch: dict, size: int, steps: int = 10) -> float:
    """Median seconds of one CSS optimisation step (forward, losses, backward, AdamW) of the
    small ConvNet (``build_encoder("convnet", in_size=size)``) on ``batch``."""
    from css_pose.config import compose_config
    from css_pose.methods import build_method

    sampling = [f"data.sampling.{k}={v}" for k, v in SAMPLING.items()]
    cfg = compose_config("train", ["method=css", "model=convnet", f"data.size={size}", *sampling])
    method = build_method(cfg).train()
    optimizer = torch.optim.AdamW(method.parameters(), lr=1e-4)
    times = []
    for _ in range(steps + 2):  # 2 warm-up steps
        start = time.perf_counter()
        loss = method.training_loss(batch)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times[2:])


def print_store_table(rates: dict[str, tuple[float, float]], baseline: str) -> None:
    """Markdown rows of (epoch 1, epoch 2) clips/s per loader, with ratios against ``baseline``."""
    print("| loader | epoch 1 clips/s | x (b) | epoch 2 clips/s | x (b) |")
    print("|---|---:|---:|---:|---:|")
    base = rates[baseline]
    for name, (cold, warm) in rates.items():
        print(f"| {name} | {cold:.1f} | {cold / base[0]:.2f} | {warm:.1f} | {warm / base[1]:.2f} |")


def store_benchmark(args: argparse.Namespace) -> None:
    """The ``--store`` comparison (module docstring)."""
    with tempfile.TemporaryDirectory(prefix="css_pose_store_bench_") as tmp:
        out = args.out or Path(tmp)
        root = args.root
        if root is None:
            root = out / "videos"
            if not (root / "manifest.json").exists():
                from css_pose.data.synthetic import generate_dataset

                generate_dataset(root, videos=200, frames=32, size=128, seed=0, progress=False)
        videos = index_videos(root).videos
        start, started_at = time.perf_counter(), time.time()
        store = CropStore.build(videos, args.size, store_dir=out / "stores")
        build_s = time.perf_counter() - start
        built = (store.directory / "meta.json").stat().st_mtime >= started_at - 1
        small = CropStore.build(videos, 32, store_dir=out / "stores")

        loaders = [
            ("crop store (a)", "decord", 0, store),
            ("decord + decoded-frame cache, today's default (b)", "decord", args.cache_mb, None),
            ("naive PyAV, seek per frame (c)", NaivePyAVReader, 0, None),
        ]
        rounds: dict[str, list[list[float]]] = {name: [] for name, *_ in loaders}
        for _ in range(args.repeats):
            for name, backend, cache_mb, crops in loaders:
                rounds[name].append(epoch_rates(videos, backend, cache_mb, args, store=crops))
        best = {name: np.max(r, axis=0) for name, r in rounds.items()}
        # The same clips read in this process: the readers' cost without worker hand-off.
        serial = argparse.Namespace(**{**vars(args), "workers": 0})
        in_process = {}
        for name, backend, cache_mb, crops in loaders:
            clear_reader_cache()
            in_process[name] = epoch_rates(videos, backend, cache_mb, serial, store=crops)

        # Training step against loading, at 32 px: loader clips/s -> seconds per batch.
        load_rate = max(
            epoch_rates(videos, "decord", 0, args, store=small, size=32)[1]
            for _ in range(args.repeats)
        )
        batch = next(iter(store_loader(small, videos, 32, args)))
        step_s = train_step_seconds(batch, 32)
        load_s = args.batch / load_rate

        frames = ContrastiveLayout.of(SAMPLING).length
        print(f"\ncommand: python {' '.join(sys.argv)}")
        print(
            f"{len(videos)} videos under {root}: {min(v.num_frames for v in videos)}-"
            f"{max(v.num_frames for v in videos)} frames at "
            f"{', '.join(sorted({f'{v.width}x{v.height}' for v in videos}))} px; store of "
            f"{store.num_rows} crops of {store.side} px ({store.crops.nbytes / 2**20:.0f} MiB) "
            f"{'built' if built else 'reused'} in {build_s:.1f} s"
        )
        print(
            f"{args.clips} clips per epoch of {frames} frames, {args.size}x{args.size} crops with "
            f"augmentation, batch {args.batch}, {args.workers} persistent workers, shuffled; best "
            f"of {args.repeats} interleaved round(s); torch and OpenCV threads: 1\n"
        )
        print_store_table(best, loaders[1][0])
        print("\nall rounds, clips/s (epoch 1 / epoch 2):")
        for name, r in rounds.items():
            print(f"  {name}: " + ", ".join(f"{a:.0f} / {b:.0f}" for a, b in r))
        print("\nsame clips read in this process (num_workers=0), one round:\n")
        print_store_table(in_process, loaders[1][0])
        print(
            f"\n32 px crops, batch {args.batch} contrastive samples ({args.batch * frames} "
            f"frames): load from the store {load_s * 1e3:.1f} ms/batch ({load_rate:.0f} clips/s, "
            f"{args.workers} workers); CSS training step, ConvNet, 1 thread "
            f"{step_s * 1e3:.1f} ms/batch; step / load = {step_s / load_s:.1f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=None, help="folder of videos")
    parser.add_argument("--clips", type=int, default=480, help="clips timed per loader and epoch")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=128, help="crop side, px")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved rounds")
    parser.add_argument("--cache-mb", type=float, default=FRAME_CACHE_MB, help="per worker, MiB")
    parser.add_argument("--cache-video-mb", type=float, default=CACHE_VIDEO_MB)
    parser.add_argument("--naive-reopen", action="store_true", help="add naive PyAV reopening")
    parser.add_argument("--store", action="store_true", help="benchmark the decoded-crop store")
    parser.add_argument("--d-neg", type=int, default=SAMPLING["d_neg"],
                        help="frames between anchor and negative (short videos need less)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=None, help="--store: videos and stores here")
    args = parser.parse_args()
    SAMPLING["d_neg"] = args.d_neg
    # One thread each in this process: the loader workers and the training step share the cores.
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    if args.store:
        store_benchmark(args)
        return

    root = args.root or ensure_dataset(DEFAULT_ROOT)
    videos = index_videos(root).videos
    baseline = "naive PyAV, seek per frame, file kept open (baseline)"
    loaders = [
        (baseline, NaivePyAVReader, 0),
        ("ours: decord, one sorted get_batch, no cache", "decord", 0),
        ("ours: decord + decoded-frame cache", "decord", args.cache_mb),
        ("ours: PyAV, keyframe seek + decode forward, no cache", "pyav", 0),
        ("ours: PyAV + decoded-frame cache", "pyav", args.cache_mb),
    ]
    if args.naive_reopen:
        reopen = functools.partial(NaivePyAVReader, reopen=True)
        loaders.insert(1, ("naive PyAV, seek per frame, file reopened per clip", reopen, 0))
    rounds: dict[str, list[list[float]]] = {name: [] for name, _, _ in loaders}
    for _ in range(args.repeats):
        for name, backend, cache_mb in loaders:
            rounds[name].append(epoch_rates(videos, backend, cache_mb, args))
    best = {name: np.max(r, axis=0) for name, r in rounds.items()}  # per epoch, best round

    frames = ContrastiveLayout.of(SAMPLING).length
    decoded = [v.num_frames * v.width * v.height * 3 / 2**20 for v in videos]
    cached = sum(d <= min(args.cache_video_mb, args.cache_mb) for d in decoded)
    sizes = sorted({f"{v.width}x{v.height}" for v in videos})
    print(f"\ncommand: python {' '.join(sys.argv)}")
    print(
        f"{len(videos)} videos under {root}: {min(v.num_frames for v in videos)}-"
        f"{max(v.num_frames for v in videos)} frames, {', '.join(sizes)} px, decoded "
        f"{min(decoded):.1f}-{max(decoded):.1f} MiB each, {cached} of them within the cache "
        f"threshold (cache_video_mb={args.cache_video_mb:g}, cache_mb={args.cache_mb:g} "
        f"per worker)"
    )
    print(
        f"{args.clips} clips per epoch of {frames} frames (contrastive: anchor, 1 positive, "
        f"1 negative >= {SAMPLING['d_neg']} frames away, 2 transition), {args.size}x{args.size} "
        f"crops with augmentation, batch {args.batch}, {args.workers} persistent workers, "
        f"shuffled order; best of {args.repeats} interleaved round(s)\n"
    )
    print("| loader | epoch 1 (cold) clips/s | x baseline | epoch 2 (warm) clips/s | x baseline |")
    print("|---|---:|---:|---:|---:|")
    base = best[baseline]
    for name, (cold, warm) in best.items():
        print(f"| {name} | {cold:.1f} | {cold / base[0]:.2f} | {warm:.1f} | {warm / base[1]:.2f} |")
    print("\nall rounds, clips/s (epoch 1 / epoch 2):")
    for name, r in rounds.items():
        print(f"  {name}: " + ", ".join(f"{a:.0f} / {b:.0f}" for a, b in r))


if __name__ == "__main__":
    main()
