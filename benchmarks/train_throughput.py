"""Training throughput (frames/s) of CSS, plain temporal and SimCLR on one backbone, in one run.

Each method does full optimisation steps (forward, every loss term, backward, AdamW) on batches of
the shape its sampler produces: CSS and plain temporal see 1 + n_pos + n_neg + n_gt frames per
sample, SimCLR two views. Inputs are random tensors so the figure is the model's cost alone (the
loader has its own benchmark). Methods are timed round-robin, several rounds, and each reports its
median, so that machine noise hits all of them alike.

    python benchmarks/train_throughput.py                       # ConvNet, 32 px, CPU defaults
    python benchmarks/train_throughput.py --model resnet18 --size 64 --batch 16
    python benchmarks/train_throughput.py --size 128 --batch 64 --device cuda --precision bf16
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from css_pose.config import compose_config, configure_threads
from css_pose.data.sampling import ContrastiveLayout
from css_pose.methods import build_method

# name -> train-config overrides; CSS (the first) is the baseline of the ratios.
VARIANTS = {
    "css": ["method=css"],
    "css, decoder 128 channels (old default)": ["method=css", "method.decoder_channels=128"],
    "plain_temporal": ["method=plain_temporal"],
    "simclr": ["method=simclr"],
}


def make_step(method, batch: dict, device: str, precision: str):
    opt = torch.optim.AdamW(method.parameters(), lr=1e-4)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)

    def step() -> None:
        with torch.autocast(
            device_type=device.split(":")[0], dtype=dtype, enabled=dtype is not None
        ):
            loss = method.training_loss(batch)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", default="convnet")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--batch", type=int, default=32, help="samples per batch")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: cores)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="32", choices=["32", "bf16", "fp16"])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=3, help="timed steps per method per round")
    args = ap.parse_args()
    configure_threads(args.threads)
    torch.manual_seed(0)

    steps, frames_per_step = {}, {}
    for name, overrides in VARIANTS.items():
        cfg = compose_config("train", [*overrides, f"model={args.model}", f"data.size={args.size}"])
        method = build_method(cfg).to(args.device).train()
        n = 2 if cfg.method.name == "simclr" else ContrastiveLayout.of(cfg.data.sampling).length
        batch = {
            "frames": torch.rand(args.batch, n, 3, args.size, args.size, device=args.device),
            "video_idx": torch.arange(args.batch, device=args.device),
        }
        steps[name] = make_step(method, batch, args.device, args.precision)
        frames_per_step[name] = args.batch * n
        steps[name]()  # warm-up

    rates: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(args.rounds):
        for name, step in steps.items():
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(args.steps):
                step()
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            rates[name].append(frames_per_step[name] * args.steps / (time.perf_counter() - t0))

    base = statistics.median(rates["css"])
    print(
        f"\nencoder {args.model}, {args.size} px, batch {args.batch} samples, device {args.device}, "
        f"precision {args.precision}, torch {torch.__version__}, threads {torch.get_num_threads()}"
    )
    print("| method | frames/step | frames/s (median of rounds) | ratio to CSS |")
    print("|---|---|---|---|")
    for name, r in rates.items():
        med = statistics.median(r)
        print(f"| {name} | {frames_per_step[name]} | {med:.1f} | {med / base:.2f} |")


if __name__ == "__main__":
    main()
