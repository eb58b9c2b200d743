"""torch threads beside DataLoader workers: training frames/s with torch's default thread count
(every core) against the configured default (cores minus loader workers), in one run.

Each setting trains the CPU default encoder (ConvNet, ``data.size`` px crops) with a linear 2D
head on labelled frames of the synthetic benchmark, read by ``data.num_workers`` loader workers
from the decoded-crop store, in a fresh process (thread pools are per process). Settings alternate
for ``--rounds`` rounds; each reports its median frames/s.

    python benchmarks/threads.py                 # 2 workers, 32 px, batch 64, 60 timed steps
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import torch


def train_speed(configure: bool, workers: int, size: int, batch: int, steps: int) -> dict:
    """Frames/s of ``steps`` optimiser steps (after 5 warm-up steps), with the configured thread
    count (``configure``) or torch's default."""
    from torch import nn

    from css_pose.config import compose_config, configure_threads
    from css_pose.data.setup import build_datamodule, prepare_data
    from css_pose.models.encoders import build_encoder

    if configure:
        configure_threads(None, workers)
    cfg = compose_config(
        "train", [f"data.size={size}", f"data.num_workers={workers}", f"data.batch_size={batch}"]
    )
    dm = build_datamodule(cfg, prepare_data(cfg))
    dm.setup("fit")
    loader = dm.probe_dataloader("train")
    enc = build_encoder("convnet", in_size=size)
    head = nn.Linear(enc.out_channels, 34)
    opt = torch.optim.AdamW([*enc.parameters(), *head.parameters()], 1e-3)
    done, t0 = 0, None
    while done < steps + 5:
        for b in loader:
            if done == 5:
                t0 = time.perf_counter()
            x, y = b["frames"], b["keypoints_2d"].flatten(1) / size
            loss = (head(enc(x).mean((2, 3))) - y).abs().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            done += 1
            if done == steps + 5:
                break
    seconds = time.perf_counter() - t0
    return {"threads": torch.get_num_threads(), "frames_per_s": steps * batch / seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--one", choices=["torch-default", "configured"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        r = train_speed(args.one == "configured", args.workers, args.size, args.batch, args.steps)
        print(json.dumps(r))
        return
    speeds: dict[str, list[float]] = {"torch-default": [], "configured": []}
    threads: dict[str, int] = {}
    for _ in range(args.rounds):
        for name in speeds:
            cmd = [sys.executable, __file__, "--one", name, *sys.argv[1:]]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
            speeds[name].append(r["frames_per_s"])
            threads[name] = r["threads"]
    base = statistics.median(speeds["torch-default"])
    print(f"{args.workers} loader workers, {args.size} px, batch {args.batch}, {args.steps} steps, "
          f"median of {args.rounds} rounds")  # fmt: skip
    print("| torch threads | frames/s | x torch default |\n|---|---:|---:|")
    for name, values in speeds.items():
        med = statistics.median(values)
        print(f"| {name} ({threads[name]}) | {med:.0f} | {med / base:.2f} |")


if __name__ == "__main__":
    main()
