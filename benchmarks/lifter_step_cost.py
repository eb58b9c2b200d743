"""Training-step cost of the lifters of benchmarks/dgnet_ablation.py, as a ratio to the TCN's,
measured in one process with the steps interleaved (so machine load affects both alike).

    python benchmarks/lifter_step_cost.py [--steps 20]
"""

from __future__ import annotations

import argparse
import time

import torch

from css_pose.models.lifter_model import build_lifter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()
    torch.set_num_threads(1)
    models = {
        "tcn27 (128 ch)": build_lifter("tcn", 27, 128),
        "dg9 (64 ch)": build_lifter("dgnet", 9, 64),
    }
    opts = {k: torch.optim.Adam(m.parameters()) for k, m in models.items()}
    seconds = dict.fromkeys(models, 0.0)
    y = torch.randn(args.batch_size, 17, 3)
    for step in range(args.steps + 2):
        for name, model in models.items():
            x = torch.randn(args.batch_size, model.receptive_field(), 17, 2)
            start = time.perf_counter()
            loss = (model(x) - y).square().mean()
            opts[name].zero_grad()
            loss.backward()
            opts[name].step()
            if step >= 2:  # the first two are warm-up
                seconds[name] += time.perf_counter() - start
    base = seconds["tcn27 (128 ch)"]
    for name, s in seconds.items():
        print(f"{name}: {1000 * s / args.steps:.1f} ms per step of {args.batch_size}, "
              f"{s / base:.1f}x the TCN's")  # fmt: skip


if __name__ == "__main__":
    main()
