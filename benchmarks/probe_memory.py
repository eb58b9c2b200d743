"""Training steps/s of a trained-encoder probe run: labeled crops held in memory vs the DataLoader.

    python benchmarks/probe_memory.py                     # benchmark set, every label, 2D

``linear_probe.py`` with a trained encoder (``encoder=finetune`` or ``mode=supervised``) reads the
labeled crops once into memory (``labeled_in_memory``) instead of through the DataLoader every
epoch. This times both paths in one process on the same run: the same encoder, head, optimiser
and batch size, ``--steps`` optimiser steps per timing, alternating over ``--rounds`` rounds
(median), flip augmentation on. It also reports the one-off cost of reading the crops into memory.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--label-fraction", type=float, default=1.0)
    parser.add_argument("overrides", nargs="*", help="linear_probe.py keys (data.root=...)")
    args = parser.parse_args(argv)

    import css_pose.linear_probe as lp
    from css_pose.config import configure_threads

    argv_ = ["ckpt=none", "mode=supervised", "feature=z_v", "target=2d", "batch_size=64",
             f"label_fraction={args.label_fraction}", "data.num_workers=0",
             "logger.wandb.enabled=false", "device=cpu", *args.overrides]  # fmt: skip
    cfg = lp.load_probe_config(argv_)
    configure_threads(cfg.threads, 0)
    run = lp.prepare_labeled_run(cfg, argv_)
    method, cfg = run.method, run.cfg
    in_order = lp.make_loader(run.labeled, run.train_loader, cfg.batch_size, False, cfg.seed)
    start = time.perf_counter()
    data = lp.labeled_in_memory(in_order, cfg.target)
    load_s = time.perf_counter() - start
    shuffled = lp.make_loader(run.labeled, run.train_loader, cfg.batch_size, True, cfg.seed)
    dim = lp.check_feature(method, cfg.feature, cfg.data.size)
    head = torch.nn.Linear(dim, 34)
    opt = torch.optim.Adam([*method.parameters(), *head.parameters()], lr=cfg.lr)
    method.train()

    def timed(make_batches) -> float:
        gen = torch.Generator().manual_seed(0)
        steps, start = 0, time.perf_counter()
        while steps < args.steps:
            for feats, kp, mask in make_batches(gen):
                loss = (head(feats).view_as(kp.float()) - kp)[mask].pow(2).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                steps += 1
                if steps == args.steps:
                    break
        return args.steps / (time.perf_counter() - start)

    paths = {
        "in memory": lambda g: lp._memory_batches(method, data, cfg, g, "cpu"),
        "DataLoader": lambda g: lp._encoder_batches(method, shuffled, cfg, g, "cpu"),
    }
    rates: dict[str, list[float]] = {k: [] for k in paths}
    for _ in range(args.rounds):
        for name, make in paths.items():
            rates[name].append(timed(make))
    med = {k: statistics.median(v) for k, v in rates.items()}
    result = {
        "labeled_frames": len(run.labeled),
        "load_seconds": round(load_s, 1),
        "steps_per_s": med,
        "ratio": med["in memory"] / med["DataLoader"],
        "threads": torch.get_num_threads(),
    }
    print(f"{len(run.labeled)} labeled crops read into memory in {load_s:.1f} s; "
          f"{args.steps} steps of {cfg.batch_size}, median of {args.rounds} rounds, "
          f"{torch.get_num_threads()} torch threads:")  # fmt: skip
    for name, rate in med.items():
        print(f"  {name:>10}: {rate:.1f} steps/s ({rate * cfg.batch_size:.0f} frames/s)")
    print(f"  ratio in memory / DataLoader: {result['ratio']:.2f}x")
    return result


if __name__ == "__main__":
    main()
