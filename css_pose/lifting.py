"""Train and evaluate 2D -> 3D lifters (css_pose.models.lifters) with a plain torch loop.

Units: inputs are normalised 2D (:func:`css_pose.data.h36m.normalize_screen_coordinates`); targets
and predictions are root-relative 3D in metres; reported errors are in mm.

    python -m css_pose.lifting --data synthetic --model dgnet --frames 9 --steps 600
    python -m css_pose.lifting --data videopose3d --h36m-3d data_3d_h36m.npz \\
        --h36m-2d data_2d_h36m_cpn_ft_h36m_dbb.npz --model tcn --frames 27

``--data synthetic`` reads ``data/synthetic_lift`` (:data:`SYNTHETIC_SET`), generated there on
first use. ``--data poses`` trains on render-free 2D/3D pairs (:mod:`css_pose.data.synthetic.poses`,
cached in ``data/lift_poses``) and scores on its test, held-out-motion and held-out-camera splits
and on the rendered set's test split.

    python -m css_pose.lifting --data poses --sequences 20000 --model tcn --frames 27 \
        --channels 128 --steps 10000
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from css_pose.config import configure_threads
from css_pose.data.h36m import action_wise_mean
from css_pose.flip import flip_pose
from css_pose.lifting_data import (  # noqa: F401 (LiftingData etc. are imported from here too)
    SYNTHETIC_ROOT,
    SYNTHETIC_SET,
    LiftingData,
    head_inputs,
    load_lifting_data,
    load_synthetic_lifting_data,
    prepare_synthetic_set,
)
from css_pose.lifting_input import with_noise
from css_pose.metrics import mpjpe, n_mpjpe, p_mpjpe
from css_pose.models.lifter_model import (
    MODELS,
    Windows,
    build_lifter,
    count_parameters,
    load_lifter,
    predict,
    save_lifter,
)


def train_lifter(
    model: nn.Module,
    data: LiftingData,
    steps: int = 1000,
    batch_size: int = 256,
    lr: float = 1e-3,
    flip_train: bool = True,
    seed: int = 0,
    log_every: int = 0,
) -> list[float]:
    """Train ``model`` in place on random centre-frame windows: Adam (amsgrad), lr decayed
    exponentially to lr / 10 over ``steps``, MPJPE loss in metres, a random half of each batch
    mirrored (:func:`flip_pose`) when flip_train. Returns the loss (m) of every step."""
    gen = torch.Generator().manual_seed(seed)
    frames = model.receptive_field()
    inputs, targets = Windows(data.inputs, frames), Windows(data.targets, 1)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr, amsgrad=True)
    decay = torch.optim.lr_scheduler.ExponentialLR(optimiser, 0.1 ** (1 / max(steps, 1)))
    losses = []
    model.train()
    for step in range(steps):
        index = torch.randint(len(data), (batch_size,), generator=gen)
        x, y = inputs[index], targets[index][:, 0]
        if flip_train:
            flip = torch.rand(batch_size, generator=gen) < 0.5
            x = torch.where(flip[:, None, None, None], flip_pose(x), x)
            y = torch.where(flip[:, None, None], flip_pose(y), y)
        loss = torch.linalg.vector_norm(model(x) - y, dim=-1).mean()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        decay.step()
        losses.append(loss.item())
        if log_every and (step + 1) % log_every == 0:
            print(f"step {step + 1}/{steps} loss {1000 * np.mean(losses[-log_every:]):.1f} mm")
    return losses


def corrupt(
    inputs: np.ndarray, res_w: int, noise_px: float, drop: float, gen: np.random.Generator
) -> np.ndarray:
    """(T, J, 2) normalised 2D with Gaussian noise of ``noise_px`` pixels (added in pixel units,
    i.e. noise_px * 2 / res_w in normalised units), then a fraction ``drop`` of the (frame,
    joint) entries set to 0 (the image's horizontal centre, a missing detection)."""
    out = inputs + gen.normal(0.0, noise_px * 2 / res_w, inputs.shape).astype(np.float32)
    out[gen.random(inputs.shape[:2]) < drop] = 0.0
    return out


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: LiftingData,
    flip_test: bool = True,
    noise_px: float = 0.0,
    drop: float = 0.0,
    seed: int = 0,
    batch_size: int = 2048,
) -> dict[str, float]:
    """MPJPE, N-MPJPE (scale-aligned) and P-MPJPE (mm) of every frame, averaged action-wise
    (:func:`css_pose.data.h36m.action_wise_mean`), and the MPJPE of each motion kind
    (:func:`motion_kind`, a plain mean over its sequences); noise_px / drop corrupt the 2D input
    (:func:`corrupt`, seeded by ``seed``). Returns {"mpjpe", "n_mpjpe", "p_mpjpe",
    "mpjpe_<kind>"..., "frames"}."""
    gen = np.random.default_rng(seed)
    inputs = [
        corrupt(x, w, noise_px, drop, gen) if noise_px or drop else x
        for x, w in zip(data.inputs, data.res_w)
    ]
    windows = Windows(inputs, model.receptive_field())
    preds = torch.cat(
        [
            predict(model, windows[torch.arange(i, min(i + batch_size, len(data)))], flip_test)
            for i in range(0, len(data), batch_size)
        ]
    )
    return score(preds, data)


def score(preds: torch.Tensor, data: LiftingData) -> dict[str, float]:
    """:func:`evaluate`'s scores of predictions (N, J, 3) in metres, N = len(data) in order."""
    rows: dict[str, list] = {"mpjpe": [], "n_mpjpe": [], "p_mpjpe": []}
    by_kind: dict[str, list[float]] = {}
    start = 0
    for action, target in zip(data.actions, data.targets):
        pred = 1000 * preds[start : start + len(target)]
        gt = 1000 * torch.from_numpy(target)
        for name, metric in (("mpjpe", mpjpe), ("n_mpjpe", n_mpjpe), ("p_mpjpe", p_mpjpe)):
            rows[name].append((action, metric(pred, gt).item(), len(target)))
        by_kind.setdefault(motion_kind(action), []).append(rows["mpjpe"][-1][1])
        start += len(target)
    out = {name: action_wise_mean(r)[0] for name, r in rows.items()}
    out.update({f"mpjpe_{kind}": float(np.mean(e)) for kind, e in sorted(by_kind.items())})
    return {**out, "frames": len(data)}


def floor_scores(train: LiftingData, data: LiftingData) -> dict[str, float]:
    """The floor: :func:`score` of the mean root-relative training pose predicted for every
    frame (no input used)."""
    mean = torch.from_numpy(np.concatenate(train.targets).mean(0))
    return score(mean.expand(len(data), *mean.shape), data)


def motion_kind(action: str) -> str:
    """The kind of a render-free sequence's motion from its label
    (:mod:`css_pose.data.synthetic.poses`): "random" (every angle random), "partly_random" (a
    family with random angles), "mixture" (one family's legs, another's arms: "a+b"),
    "transition" ("a>b") or "family"; any other label (Human3.6M actions, the rendered set) is
    "other"."""
    if action == "random":
        return "random"
    if action.endswith("+random"):
        return "partly_random"
    if "+" in action:
        return "mixture"
    if ">" in action:
        return "transition"
    from css_pose.data.synthetic.motions import FAMILIES

    return "family" if action in FAMILIES else "other"


def _load_data(args) -> tuple[LiftingData, dict[str, LiftingData]]:
    """(train, {name: evaluation set}) for ``--data``; "test" is the split the lifter is judged
    by. With ``--head-2d`` the rendered set's test split is scored from the head's 2D too
    ("rendered_test_head2d"), and ``--train-2d`` picks the training 2D (module docstring)."""
    if args.data == "videopose3d":
        for path in (args.h36m_3d, args.h36m_2d):
            if not Path(path).is_file():
                raise FileNotFoundError(
                    f"{path}: no such file; pass VideoPose3D's data_3d_*.npz as --h36m-3d and "
                    "a data_2d_*.npz as --h36m-2d"
                )
        train, test = load_lifting_data(args.h36m_3d, args.h36m_2d)
        return train, {"test": test}
    noise, head = _head_input(args)
    if args.data == "poses":
        from css_pose.data.synthetic.poses import pose_pairs

        def split(name: str, n: int, noisy: bool = False) -> LiftingData:
            seqs = pose_pairs(name, n, seed=args.seed, workers=args.workers, bodies=args.bodies)
            return LiftingData.from_sequences(with_noise(seqs, noise, args.seed) if noisy else seqs)

        train = split("train", args.sequences, args.train_2d == "noise")
        tests = {name: split(name, args.eval_sequences)
                 for name in ("test", "heldout_motion", "heldout_camera")}  # fmt: skip
        if args.no_rendered_test:
            return train, tests
    rendered_train, rendered = load_synthetic_lifting_data(
        prepare_synthetic_set(args.synthetic_root)
    )
    if args.data == "synthetic":
        if args.train_2d == "noise":
            raise SystemExit("--train-2d noise: use --data poses (or --train-2d head)")
        train = head_inputs(rendered_train, head) if args.train_2d == "head" else rendered_train
        tests = {}
    tests = {**tests, "rendered_test" if tests else "test": rendered}
    if head is not None:
        tests["rendered_test_head2d"] = head_inputs(rendered, head)
    return train, tests


def _head_input(args) -> tuple:
    """(noise model, {video: head 2D px}) of ``--head-2d`` (or (None, None))."""
    if args.train_2d != "gt" and not args.head_2d:
        raise SystemExit(f"--train-2d {args.train_2d} needs --head-2d MODEL.pt")
    if args.train_2d == "head" and args.data != "synthetic":
        raise SystemExit("--train-2d head: the head's 2D exists for --data synthetic only")
    if not args.head_2d:
        return None, None
    from css_pose.lifting_input import describe, head_noise

    noise, head = head_noise(args.head_2d, prepare_synthetic_set(args.synthetic_root))
    print(describe(noise))
    if args.save_noise:
        print(f"noise model saved to {noise.save(args.save_noise)}")
    return noise, head


def lifter_options(args: argparse.Namespace) -> dict:
    """The model keyword arguments the command line sets (build_lifter's kwargs)."""
    out = {} if args.dropout is None else {"dropout": args.dropout}
    if args.model != "dgnet":
        return out
    out.update({k: getattr(args, k) for k in ("depth", "distance") if getattr(args, k) is not None})
    return out | {part: False for part in ("dsg", "dtg", "skeleton") if not getattr(args, part)}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", choices=("synthetic", "poses", "videopose3d"), default="synthetic",
                        help="synthetic: the rendered set's 2D/3D; poses: render-free pairs "
                        "(css_pose.data.synthetic.poses), scored on its test, held-out motion "
                        "and held-out camera splits and on the rendered set's test split")  # fmt: skip
    parser.add_argument("--sequences", type=int, default=20000,
                        help="--data poses: training sequences of 81 frames")  # fmt: skip
    parser.add_argument("--eval-sequences", type=int, default=500,
                        help="--data poses: sequences of each evaluation split")  # fmt: skip
    parser.add_argument("--workers", type=int, default=2, help="--data poses: processes")
    parser.add_argument("--bodies", choices=("wide", "adult"), default="wide",
                        help="--data poses: body proportion ranges (data.synthetic.poses.BODIES)")  # fmt: skip
    parser.add_argument("--no-rendered-test", action="store_true",
                        help="--data poses: skip the rendered set's test split")  # fmt: skip
    parser.add_argument("--synthetic-root", default=SYNTHETIC_ROOT,
                        help=f"a generated synthetic set (default {SYNTHETIC_ROOT}: generated "
                        "on first use)")  # fmt: skip
    parser.add_argument("--head-2d", metavar="MODEL.pt",
                        help="a 2D head (train_head.py's head.pt): also score the rendered set's "
                        "test split from its 2D, and fit a noise model to its errors on the "
                        "rendered train split")  # fmt: skip
    parser.add_argument("--train-2d", choices=("gt", "noise", "head"), default="gt",
                        help="training 2D: ground truth, ground truth + the fitted noise "
                        "(--data poses), or the head's own 2D (--data synthetic)")  # fmt: skip
    parser.add_argument("--save-noise", metavar="PATH", help="write the fitted noise model (json)")
    parser.add_argument("--h36m-3d", help="data_3d_*.npz (trusted file: loaded with pickle)")
    parser.add_argument("--h36m-2d", help="data_2d_*.npz (trusted file: loaded with pickle)")
    parser.add_argument("--model", choices=MODELS, default="dgnet")
    parser.add_argument("--frames", type=int, default=9)
    parser.add_argument("--channels", type=int, help="MLP width / TCN, DG-Net channels")
    parser.add_argument("--dropout", type=float,
                        help="TCN / DG-Net / MLP dropout (default: the class default)")  # fmt: skip
    parser.add_argument("--depth", type=int, help="DG-Net: DSG -> DTG pairs per block (default 2)")
    parser.add_argument("--distance", choices=("features", "input", "both"),
                        help="DG-Net: what the DSG affinity compares (default both)")  # fmt: skip
    for part in ("dsg", "dtg", "skeleton"):
        parser.add_argument(f"--no-{part}", dest=part, action="store_false",
                            help=f"DG-Net ablation: without the {part.upper()} (module "
                            "css_pose.models.lifters.dgnet)")  # fmt: skip
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="1 is faster on busy cores")
    parser.add_argument("--save", help="write the trained lifter here (for css-pose predict)")
    parser.add_argument("--evaluate", metavar="LIFTER.pt",
                        help="score this saved lifter instead of training one (model options "
                        "come from its file)")  # fmt: skip
    return parser


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = _parser()
    args = parser.parse_args(argv)
    configure_threads(args.threads)
    torch.manual_seed(args.seed)
    if args.data == "videopose3d" and not (args.h36m_3d and args.h36m_2d):
        parser.error("--data videopose3d needs --h36m-3d and --h36m-2d")
    train, tests = _load_data(args)
    torch.manual_seed(args.seed)  # the same initial lifter whatever loading drew (a head model)
    if args.evaluate:
        model, payload = load_lifter(args.evaluate)
        print(f"{args.evaluate}: {payload['model']}, {payload['frames']} frames, not trained")
        seconds = 0.0
    else:
        model = build_lifter(args.model, args.frames, args.channels, **lifter_options(args))
        print(f"{args.model}, {args.frames} frames: {count_parameters(model):,} parameters")
        start = time.perf_counter()
        train_lifter(model, train, args.steps, args.batch_size, args.lr, seed=args.seed,
                     log_every=max(args.steps // 10, 1))  # fmt: skip
        seconds = time.perf_counter() - start
    result = {}
    for name, test in tests.items():
        scores = evaluate(model, test, seed=args.seed)
        _print_scores(name, scores, seconds)
        scores["floor_mpjpe"], scores["floor_p_mpjpe"] = (
            floor_scores(train, test)[k] for k in ("mpjpe", "p_mpjpe")
        )
        print(f"  floor (the mean training pose): MPJPE {scores['floor_mpjpe']:.1f} mm, "
              f"P-MPJPE {scores['floor_p_mpjpe']:.1f} mm")  # fmt: skip
        result.update(scores if name == "test" else {f"{name}/{k}": v for k, v in scores.items()})
    if args.save:
        _save(args, model, result, tests["test"])
    return result


def _print_scores(name: str, scores: dict, seconds: float) -> None:
    print(
        f"{name} MPJPE {scores['mpjpe']:.1f} mm, N-MPJPE {scores['n_mpjpe']:.1f} mm, "
        f"P-MPJPE {scores['p_mpjpe']:.1f} mm ({scores['frames']} frames, trained in "
        f"{seconds:.0f} s)"
    )
    kinds = [k for k in scores if k.startswith("mpjpe_")]
    if kinds != ["mpjpe_other"]:
        print("  MPJPE by motion kind: " + ", ".join(f"{k[6:]} {scores[k]:.1f}" for k in kinds))


def _save(args, model: nn.Module, result: dict, test: LiftingData) -> None:
    """Write the lifter (``--save``) and, for DG-Net, the picture of its affinities on the
    first test sequence's frame 40 beside it (``<name>.affinity.png``)."""
    path = save_lifter(args.save, model, args.model, args.frames, args.channels, result,
                       lifter_options(args))  # fmt: skip
    print(f"lifter saved to {path}")
    if args.model == "dgnet":
        from css_pose.lifting_plots import affinity_figure

        window = Windows(test.inputs[:1], model.receptive_field())[torch.tensor([40])]
        png = affinity_figure(model, window, path.with_suffix(".affinity.png"),
                              f"{test.actions[0]}, frame 40")  # fmt: skip
        print(f"affinities of one test window drawn in {png}")


def run_cli(argv: list[str] | None = None) -> None:
    """Console entry: a missing file is one line, not a traceback."""
    try:
        main(argv)
    except FileNotFoundError as err:
        sys.exit(f"python -m css_pose.lifting: error: {err}")


if __name__ == "__main__":
    run_cli()
