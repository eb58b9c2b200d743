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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from css_pose.config import configure_threads
from css_pose.data.h36m import (
    PoseSequence,
    action_wise_mean,
    export_synthetic_to_videopose3d,
    load_videopose3d,
    split_subjects,
)
from css_pose.flip import flip_pose
from css_pose.metrics import mpjpe, n_mpjpe, p_mpjpe, root_relative
from css_pose.models.lifter_model import (
    MODELS,
    Windows,
    build_lifter,
    count_parameters,
    predict,
    save_lifter,
)

# The synthetic set that ``--data synthetic`` reads unless ``--synthetic-root`` names another; it is
# generated there on first use, with the settings benchmarks/lifting.py uses for the same folder.
SYNTHETIC_ROOT = "data/synthetic_lift"
SYNTHETIC_SET = {"videos": 48, "frames": 120, "size": 128, "seed": 5}


@dataclass
class LiftingData:
    """Sequences ready for lifting.

    inputs[i]: (T_i, 17, 2) normalised 2D. targets[i]: (T_i, 17, 3) root-relative metres.
    actions[i]: action name (for action-wise averaging). res_w[i]: image width px (to express
    pixel noise in normalised units).
    """

    inputs: list[np.ndarray]
    targets: list[np.ndarray]
    actions: list[str]
    res_w: list[int]

    @classmethod
    def from_sequences(cls, sequences: list[PoseSequence]) -> LiftingData:
        return cls(
            [s.normalized_2d() for s in sequences],
            [root_relative(torch.from_numpy(s.keypoints_3d)).numpy() for s in sequences],
            [s.action for s in sequences],
            [s.camera.res_w for s in sequences],
        )

    def __len__(self) -> int:
        return sum(len(t) for t in self.targets)


def load_lifting_data(path_3d: str | Path, path_2d: str | Path) -> tuple[LiftingData, LiftingData]:
    """(train, test) from a VideoPose3D npz pair with the split of
    :func:`css_pose.data.h36m.split_subjects`."""
    sequences = load_videopose3d(path_3d, path_2d)
    train, test = split_subjects({s.subject for s in sequences})
    return (
        LiftingData.from_sequences([s for s in sequences if s.subject in train]),
        LiftingData.from_sequences([s for s in sequences if s.subject in test]),
    )


def load_synthetic_lifting_data(synth_root: str | Path) -> tuple[LiftingData, LiftingData]:
    """(train, test) of a synthetic set, through its VideoPose3D export (written to
    SYNTH_ROOT/videopose3d if missing), so it is read by the same code as Human3.6M."""
    out = Path(synth_root) / "videopose3d"
    path_3d, path_2d = out / "data_3d_synthetic.npz", out / "data_2d_synthetic_gt.npz"
    if not (path_3d.exists() and path_2d.exists()):
        path_3d, path_2d = export_synthetic_to_videopose3d(synth_root, out)
    return load_lifting_data(path_3d, path_2d)


def prepare_synthetic_set(root: str | Path = SYNTHETIC_ROOT) -> Path:
    """The synthetic lifting set at ``root``: the default folder (``SYNTHETIC_ROOT``) is
    generated with ``SYNTHETIC_SET`` when it has no manifest yet (an interrupted generation
    resumes); any other folder must hold a generated set already.

    Raises FileNotFoundError naming the missing manifest and how to make it.
    """
    root = Path(root)
    if (root / "manifest.json").exists():
        return root
    if root != Path(SYNTHETIC_ROOT):
        raise FileNotFoundError(
            f"{root / 'manifest.json'}: no such file; generate a set there with "
            f"python -m css_pose.data.synthetic --out {root}, or leave out --synthetic-root to use "
            f"{SYNTHETIC_ROOT} (generated on first use)"
        )
    from css_pose.data.synthetic import generate_dataset

    print(
        f"[css_pose] generating the synthetic lifting set in {root} "
        f"({SYNTHETIC_SET['videos']} videos x {SYNTHETIC_SET['frames']} frames, once)"
    )
    generate_dataset(root, **SYNTHETIC_SET)
    return root


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
    by."""
    if args.data == "synthetic":
        train, test = load_synthetic_lifting_data(prepare_synthetic_set(args.synthetic_root))
        return train, {"test": test}
    if args.data == "poses":
        from css_pose.data.synthetic.poses import pose_pairs

        def split(name: str, n: int) -> LiftingData:
            return LiftingData.from_sequences(
                pose_pairs(name, n, seed=args.seed, workers=args.workers)
            )

        train = split("train", args.sequences)
        tests = {name: split(name, args.eval_sequences)
                 for name in ("test", "heldout_motion", "heldout_camera")}  # fmt: skip
        if args.no_rendered_test:
            return train, tests
        rendered = load_synthetic_lifting_data(prepare_synthetic_set(args.synthetic_root))[1]
        return train, {**tests, "rendered_test": rendered}
    for path in (args.h36m_3d, args.h36m_2d):
        if not Path(path).is_file():
            raise FileNotFoundError(
                f"{path}: no such file; pass VideoPose3D's data_3d_*.npz as --h36m-3d and "
                "a data_2d_*.npz as --h36m-2d"
            )
    train, test = load_lifting_data(args.h36m_3d, args.h36m_2d)
    return train, {"test": test}


def lifter_options(args: argparse.Namespace) -> dict:
    """The model keyword arguments the command line sets (build_lifter's kwargs)."""
    out = {} if args.dropout is None else {"dropout": args.dropout}
    if args.model != "dgnet":
        return out
    out.update({k: getattr(args, k) for k in ("depth", "distance") if getattr(args, k) is not None})
    return out | {part: False for part in ("dsg", "dtg", "skeleton") if not getattr(args, part)}


def main(argv: list[str] | None = None) -> dict[str, float]:
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
    parser.add_argument("--no-rendered-test", action="store_true",
                        help="--data poses: skip the rendered set's test split")  # fmt: skip
    parser.add_argument("--synthetic-root", default=SYNTHETIC_ROOT,
                        help=f"a generated synthetic set (default {SYNTHETIC_ROOT}: generated "
                        "on first use)")  # fmt: skip
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
    args = parser.parse_args(argv)
    configure_threads(args.threads)
    torch.manual_seed(args.seed)
    if args.data == "videopose3d" and not (args.h36m_3d and args.h36m_2d):
        parser.error("--data videopose3d needs --h36m-3d and --h36m-2d")
    train, tests = _load_data(args)
    model = build_lifter(args.model, args.frames, args.channels, **lifter_options(args))
    print(f"{args.model}, {args.frames} frames: {count_parameters(model):,} parameters")
    start = time.perf_counter()
    train_lifter(model, train, args.steps, args.batch_size, args.lr, seed=args.seed,
                 log_every=max(args.steps // 10, 1))  # fmt: skip
    seconds = time.perf_counter() - start
    result = {}
    for name, test in tests.items():
        scores = evaluate(model, test, seed=args.seed)
        print(
            f"{name} MPJPE {scores['mpjpe']:.1f} mm, N-MPJPE {scores['n_mpjpe']:.1f} mm, "
            f"P-MPJPE {scores['p_mpjpe']:.1f} mm ({scores['frames']} frames, trained in "
            f"{seconds:.0f} s)"
        )
        kinds = [k for k in scores if k.startswith("mpjpe_")]
        if kinds != ["mpjpe_other"]:
            print("  MPJPE by motion kind: " + ", ".join(f"{k[6:]} {scores[k]:.1f}" for k in kinds))
        result.update(scores if name == "test" else {f"{name}/{k}": v for k, v in scores.items()})
    if args.save:
        path = save_lifter(args.save, model, args.model, args.frames, args.channels, result)
        print(f"lifter saved to {path}")
    return result


def run_cli(argv: list[str] | None = None) -> None:
    """Console entry: a missing file is one line, not a traceback."""
    try:
        main(argv)
    except FileNotFoundError as err:
        sys.exit(f"python -m css_pose.lifting: error: {err}")


if __name__ == "__main__":
    run_cli()
