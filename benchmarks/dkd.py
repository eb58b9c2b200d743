"""Fast video pose by dynamic kernel distillation (issue 17): accuracy, cost and speed against the
large model run on every frame.

On clips of T = 2n + 1 consecutive frames of the benchmark set (n = ``--frames``; only clips that
fit inside their video, so no frame repeats), four ways to get every frame's pose:

1. **large, every frame**: the initializer (``--large``, a trained ``head.pt``) on each frame;
2. **small alone**: the small encoder with a plain 1 x 1 heatmap head, trained on every frame;
3. **DKD**: the initializer on frame 0 of each clip (every T frames), the small network with
   distilled kernels on the others; trained with the temporal discriminator (``--adv-weight``);
4. **DKD, no discriminator**: the same, adversarial weight 0.

Reported per row:
- PCK@0.2 over every frame of the test clips (pck_tight: the tight box of the visible joints);
- GFLOPs per frame from ``torch.utils.flop_counter``, with the initializer's cost spread over its
  interval;
- frames/s on the test clips, measured in the same run (1 thread; no flip test anywhere);
- temporal jitter: the mean frame-to-frame keypoint acceleration |k(t+1) - 2 k(t) + k(t-1)| in
  crop px over visible joints, next to the ground truth's own.

The small networks are trained from random init for each of ``--seeds``, and the rows pair them.
Each row also has PCK@0.2 at each frame of the clips (frame 0: DKD's initializer frame), which
shows how DKD drifts from the initializer, and pooled over the first k frames of each clip, which
with the GFLOPs per frame at k (``gflops_by_interval``) is DKD with the initializer every k
frames. Results go to ``--out``/results.json.

Choosing settings (``--width``, ``--steps``, ``--kernel``, ``--carry``) is done with
``--validation``: training clips from four in five training videos, scored on clips of the fifth
(the initializer saw those videos in its own training, so it scores higher there than on test).

    python benchmarks/dkd.py --large runs/reproduce/head/head.pt --out runs/bench-dkd
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from css_pose.config import configure_threads
from css_pose.dkd import (
    DiscriminatorWinsError,
    clip_data,
    initial_heatmaps,
    run_dkd,
    score,
    train_dkd,
    train_frames,
)
from css_pose.models.dkd import DKDModel, DKDStream, SmallPoseNet
from css_pose.models.heads.cost import gflops
from css_pose.models.pose_model import load_pose_model
from css_pose.skeleton import NUM_JOINTS


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--large", type=Path, required=True, help="the initializer: a head.pt")
    p.add_argument("--root", type=Path, default=Path("data/synthetic-bench"))
    p.add_argument("--frames", type=int, default=4, help="n: clips of 2n + 1 frames")
    p.add_argument("--train-clips", type=int, default=3000)
    p.add_argument("--test-clips", type=int, default=600)
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch", type=int, default=16, help="clips per step")
    p.add_argument("--width", type=int, default=16,
                   help="small encoder channels; 16 and 3,000 steps were chosen on held-out "
                   "training videos (docs/benchmarks.md)")  # fmt: skip
    p.add_argument("--kernel", type=int, default=3, help="k: kernels of C x k x k")
    p.add_argument("--carry", type=int, default=0,
                   help="carry the previous heatmaps through a learned filter of this size "
                   "(0: off)")  # fmt: skip
    p.add_argument("--adv-weight", type=float, default=0.01)
    p.add_argument("--no-adv", action="store_true", help="train DKD without the discriminator only")
    p.add_argument("--validation", action="store_true",
                   help="score on held-out training videos (every fifth), not the test videos: "
                   "for choosing settings")  # fmt: skip
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--speed-rounds", type=int, default=5)
    p.add_argument("--speed-intervals", type=int, nargs="+", default=None,
                   help="initializer intervals to time (default: the clip length)")  # fmt: skip
    p.add_argument("--speed-only", action="store_true",
                   help="time an untrained DKD of --width at --speed-intervals; no training "
                   "(the cost does not depend on the weights)")  # fmt: skip
    p.add_argument("--out", type=Path, default=Path("runs/bench-dkd"))
    return p.parse_args(argv)


def floor_score(train, test) -> dict:
    """The no-image floor: the mean visible keypoints of every training clip frame (crop px),
    placed on every test frame; PCK@0.2 (pck_tight) and jitter (0: it never moves)."""
    from css_pose.metrics import pck_tight

    w = (train.visibility > 0).float()[..., None]
    mean = (train.keypoints * w).sum((0, 1)) / w.sum((0, 1)).clamp_min(1)
    gt, vis = test.keypoints.flatten(0, 1), test.visibility.flatten(0, 1) > 0
    return {"pck@0.2": float(pck_tight(mean.expand_as(gt), gt, vis, 0.2)), "jitter_px": 0.0}


def speed(large_maps, model, clips, t: int, rounds: int) -> dict:
    """Frames/s of the large model on every frame and of DKD streaming with the initializer every
    t frames, over the first t frames of each clip, alternating ``rounds`` times, median: all test
    clips as one batch (throughput), and one clip at a time over the first 60 clips (a single
    video stream, batch 1). The cost does not depend on the weights (no confidence trigger)."""
    images = clips.images(torch.arange(len(clips)))[:, :t]
    out: dict[str, dict] = {}
    for name, batch in (("all clips at once", len(clips)), ("one clip at a time", 1)):
        count = len(clips) if batch > 1 else min(60, len(clips))
        times: dict[str, list[float]] = {"large": [], "dkd": []}
        for _ in range(rounds):
            start = time.perf_counter()
            with torch.no_grad():
                for c in range(0, count, batch):
                    for i in range(t):
                        large_maps(images[c : c + batch, i])
            times["large"].append(time.perf_counter() - start)
            start = time.perf_counter()
            for c in range(0, count, batch):
                stream = DKDStream(model.eval(), large_maps, interval=t)
                for i in range(t):
                    stream.step(images[c : c + batch, i])
            times["dkd"].append(time.perf_counter() - start)
        fps = {k: count * t / float(np.median(v)) for k, v in times.items()}
        out[name] = {**fps, "ratio": fps["dkd"] / fps["large"]}
    return out


def speeds(large_maps, model, clips, intervals: list[int], rounds: int) -> dict:
    """:func:`speed` at each initializer interval, printed."""
    out = {k: speed(large_maps, model, clips, k, rounds) for k in intervals}
    print(f"speed by interval: {out}", flush=True)
    return out


def main(argv=None) -> dict:
    args = parse(argv)
    configure_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    large, codec, payload = load_pose_model(args.large, "cpu")
    size = payload["crop"]["size"]
    n = args.frames
    train, test = clip_data(payload, args.root, n, 1 if args.speed_only else args.train_clips,
                            args.test_clips, args.validation)  # fmt: skip
    t = 2 * n + 1

    def large_maps(x):
        return large(x)["heatmaps"]

    if args.speed_only:
        model = DKDModel(NUM_JOINTS, args.width, kernel=args.kernel, carry=args.carry)
        rows = speeds(large_maps, model, test, args.speed_intervals or [t], args.speed_rounds)
        settings = {k: str(v) for k, v in vars(args).items()}
        (args.out / "speed.json").write_text(json.dumps({"args": settings, "speed": rows}))
        return rows

    first_train = initial_heatmaps(large, train.frames[:, 0], 64, "cpu")
    images = test.images(torch.arange(len(test)))
    start = time.perf_counter()
    with torch.no_grad():
        large_test = torch.stack([large_maps(images[:, i]) for i in range(t)], 1)
    large_seconds = time.perf_counter() - start
    frames_total = len(test) * t
    crop = torch.rand(1, 3, size, size)
    large_gf = gflops(large_maps, crop)
    rows = [{"method": "large, every frame", "seed": None, **score(large_test, codec, test),
             "gflops": large_gf, "fps": frames_total / large_seconds},
            {"method": "mean training pose (floor)", "seed": None,
             **floor_score(train, test)}]  # fmt: skip
    print(f"large: {rows[0]}\nfloor: {rows[1]}", flush=True)
    for seed in args.seeds:
        torch.manual_seed(seed)
        small = SmallPoseNet(NUM_JOINTS, args.width)
        history = train_frames(small, train, codec, args.steps, args.batch, seed=seed)
        small.eval()
        start = time.perf_counter()
        with torch.no_grad():
            maps = torch.stack([small(images[:, i])["heatmaps"] for i in range(t)], 1)
        seconds = time.perf_counter() - start
        rows.append({"method": "small alone", "seed": seed, **score(maps, codec, test),
                     "gflops": gflops(small, crop), "fps": frames_total / seconds,
                     "final_loss": float(np.mean(history[-50:]))})  # fmt: skip
        print(f"small: {rows[-1]}", flush=True)
        for adv in (0.0,) if args.no_adv else (args.adv_weight, 0.0):
            torch.manual_seed(seed)
            model = DKDModel(NUM_JOINTS, args.width, kernel=args.kernel, carry=args.carry)
            name = "DKD" if adv > 0 else "DKD, no discriminator"
            try:
                history = train_dkd(model, train, first_train, codec, args.steps, args.batch,
                                    seed=seed, adv_weight=adv)  # fmt: skip
            except DiscriminatorWinsError as err:
                rows.append({"method": name, "seed": seed, "adv_weight": adv, "stopped": str(err)})
                print(f"{name}: stopped: {err}", flush=True)
                continue
            maps, seconds, inits = run_dkd(model, large_maps, test, interval=t)
            with torch.no_grad():
                prev, feats = large_maps(crop), model.encoder(crop)
            step_gf = gflops(lambda x, m=model, p=prev, f=feats: m.step(x, p, f), crop)
            start_gf = large_gf + gflops(model.encoder, crop)  # an initializer frame
            by_interval = [(start_gf + (k - 1) * step_gf) / k for k in range(1, t + 1)]
            per_frame = by_interval[-1]
            rows.append({"method": name, "seed": seed, "adv_weight": adv,
                         **score(maps, codec, test), "gflops": per_frame,
                         "gflops_by_interval": by_interval,
                         "fps": frames_total / seconds, "initializer_frames": inits,
                         "final_loss": float(np.mean(history["pose"][-50:])),
                         **({"final_disc_loss": float(np.mean(history["disc"][-50:]))}
                            if adv > 0 else {})})  # fmt: skip
            print(f"{name}: {rows[-1]}", flush=True)
            if adv == 0:
                last = model
    speed_rows = speeds(large_maps, last, test, args.speed_intervals or [t], args.speed_rounds)
    summary = {"args": {k: str(v) for k, v in vars(args).items()}, "clip_frames": t,
               "train_clips": len(train), "test_clips": len(test), "rows": rows,
               "speed": speed_rows}  # fmt: skip
    (args.out / "results.json").write_text(json.dumps(summary, indent=1))
    return summary


if __name__ == "__main__":
    main()
