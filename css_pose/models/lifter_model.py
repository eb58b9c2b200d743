"""2D -> 3D lifters by name (:func:`build_lifter`), their model file (:func:`save_lifter`,
:func:`load_lifter`), inference with the flip test (:func:`predict`) and over a whole sequence
(:func:`lift_sequence`). Training and evaluation are :mod:`css_pose.lifting`'s."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from css_pose.flip import flip_pose
from css_pose.layouts import CANONICAL, check_layout
from css_pose.models.lifters import DGNetLifter, MLPLifter, TemporalConvLifter

MODELS = ("mlp", "tcn", "dgnet")


class Windows:
    """Centre-frame windows of ``frames`` frames over all sequences, edges padded by repetition."""

    def __init__(self, arrays: list[np.ndarray], frames: int):
        pad = frames // 2
        padded = [np.concatenate([a[:1].repeat(pad, 0), a, a[-1:].repeat(pad, 0)]) for a in arrays]
        starts = np.cumsum([0] + [len(p) for p in padded[:-1]])
        self.data = torch.from_numpy(np.concatenate(padded)).float()
        # Window of frame t of sequence i starts at padded index starts[i] + t.
        self.starts = torch.from_numpy(
            np.concatenate([s + np.arange(len(a)) for s, a in zip(starts, arrays)])
        )
        self.offsets = torch.arange(frames)

    def __getitem__(self, index: torch.Tensor) -> torch.Tensor:
        """index (B,) frame indices -> (B, frames, ...)."""
        return self.data[self.starts[index][:, None] + self.offsets]


def build_lifter(model: str, frames: int, channels: int | None = None, **kwargs) -> nn.Module:
    """A lifter by name ("mlp", "tcn", "dgnet") for ``frames`` input frames (1 or a power of 3).

    TCN and DG-Net use filter widths [3] * log3(frames), padded with 1s to at least two widths
    (so DG-Net has at least one graph block): 1 -> [1, 1], 3 -> [3, 1], 9 -> [3, 3]. channels: MLP
    width / TCN or DG-Net channels (default: the class default). kwargs go to the class.
    """
    if model not in MODELS:
        raise ValueError(f"model must be one of {MODELS}, got {model!r}")
    if channels is not None:
        kwargs["width" if model == "mlp" else "channels"] = channels
    if model == "mlp":
        return MLPLifter(frames, **kwargs)
    n = round(math.log(frames, 3)) if frames > 1 else 0
    if 3**n != frames:
        raise ValueError(f"frames must be 1 or a power of 3, got {frames}")
    widths = [3] * n + [1] * max(0, 2 - n)
    cls = TemporalConvLifter if model == "tcn" else DGNetLifter
    return cls(widths, **kwargs)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, flip_test: bool = True) -> torch.Tensor:
    """(B, T, J, 2) -> (B, J, 3) in eval mode; with flip_test, the mean of the prediction and the
    un-flipped prediction on the flipped input."""
    model.eval()
    y = model(x)
    if flip_test:
        y = (y + flip_pose(model(flip_pose(x)))) / 2
    return y


LIFTER_FORMAT = "css_pose.lifter"


def save_lifter(
    path: str | Path,
    model: nn.Module,
    name: str,
    frames: int,
    channels: int | None,
    result: dict,
    options: dict | None = None,
) -> Path:
    """Write a lifter with what rebuilds it (``name``, ``frames``, ``channels``, the
    build_lifter ``options``) and its test ``result``; loads with ``weights_only=True``
    (:func:`load_lifter`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": LIFTER_FORMAT,
        "version": 1,
        "model": name,
        "frames": frames,
        "channels": channels,
        "options": dict(options or {}),
        "num_joints": 17,
        "layout": CANONICAL,  # css_pose.layouts: the 2D (and 3D) joint order it takes
        "result": {k: float(v) for k, v in result.items()},
        "state": model.state_dict(),
    }
    from css_pose.checkpoint import save_torch_file

    return save_torch_file(payload, path)


def load_lifter(path: str | Path) -> tuple[nn.Module, dict]:
    """(lifter in eval mode, payload) from :func:`save_lifter`'s file.

    Raises:
        CheckpointError: unreadable file, not a lifter, or weights that do not fit (names keys).
    """
    from css_pose.checkpoint import CheckpointError, load_strict, read_torch_file

    path = Path(path)
    hint = "; train one with python -m css_pose.lifting --save PATH"
    payload = read_torch_file(path, "lifter", hint)
    if not isinstance(payload, dict) or payload.get("format") != LIFTER_FORMAT:
        raise CheckpointError(f"{path}: not a css_pose lifter{hint}")
    model = build_lifter(
        payload["model"], payload["frames"], payload["channels"], **payload.get("options", {})
    )
    load_strict(model, payload["state"], path)
    model.layout = payload.get("layout", CANONICAL)  # lifters from before layouts: Human3.6M
    model.source = str(path)
    return model.eval(), payload


def lift_sequence(
    model: nn.Module,
    keypoints_2d: np.ndarray,
    width: int,
    height: int,
    layout: str = CANONICAL,
) -> np.ndarray:
    """Lift a whole sequence: (T, 17, 2) frame px -> (T, 17, 3) root-relative metres (camera
    axes: x right, y down, z forward). Edge frames repeat the first / last pose to fill the
    window; the flip test is on.

    ``layout`` names the joint order of ``keypoints_2d`` (:mod:`css_pose.layouts`). 2D in
    another layout than the lifter's (Human3.6M-17) is refused with
    :class:`~css_pose.layouts.LayoutMismatchError` naming both and the converter: COCO-17 has
    17 joints too, so the count cannot catch it, and the lifter would return random 3D.
    """
    from css_pose.data.h36m import normalize_screen_coordinates

    where = f"the 2D given to the lifter {getattr(model, 'source', '')}".rstrip()
    check_layout(layout, getattr(model, "layout", CANONICAL), where)

    x = normalize_screen_coordinates(np.asarray(keypoints_2d, np.float32), width, height)
    windows = Windows([x], model.receptive_field())
    out = [
        predict(model, windows[torch.arange(i, min(i + 1024, len(x)))])
        for i in range(0, len(x), 1024)
    ]
    return torch.cat(out).numpy()
