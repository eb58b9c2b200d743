"""2D pose models: an encoder with a head (:class:`PoseModel`), the head and codec a config
names (:func:`build_head`), the model file that ``train_head.py`` writes and ``css-pose predict``
reads (:func:`save_pose_model`, :func:`load_pose_model`), and inference with the flip test
(:func:`predict`)."""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from css_pose.checkpoint import CheckpointError
from css_pose.codecs import CompositeCodec, HeatmapCodec, RegressionCodec
from css_pose.config import ConfigError
from css_pose.flip import flip_average
from css_pose.layouts import CANONICAL, LayoutMismatchError, check_layout
from css_pose.models.heads import CompositeHead, HeatmapHead, RegressionHead
from css_pose.skeleton import JOINT_NAMES


def build_head(cfg: DictConfig, encoder) -> tuple[nn.Module, object]:
    """The head named by ``cfg.head`` on ``encoder``'s stage maps, and its codec.

    Returns:
        (head module, codec); the head maps ``encoder.forward_stages(images)`` to outputs that
        ``codec.decode`` turns into (B, J, 2) crop px and ``codec.loss`` scores.
    """
    size = encoder.in_size
    if cfg.head == "regression":
        pool = cfg.get("regression_pool") or "mean"
        side = size // encoder.stride
        head = RegressionHead(encoder.out_channels, pool=pool, map_size=(side, side))
        return head, RegressionCodec(size)
    stride = cfg.stride or (4 if cfg.head == "heatmap" else 8)
    if size % stride:
        raise ConfigError(f"stride={stride} must divide the crop size {size}")
    sigma = cfg.sigma_px / stride
    # Spatial fusion reads the stage at stride 8 (ResNet layer2); each stage halves the size.
    n = len(encoder.stage_channels)
    strides = [encoder.stride // 2 ** (n - 1 - i) for i in range(n)]
    mid = strides.index(8) if 8 in strides[:-1] else max(n - 2, 0)
    common = dict(in_channels=encoder.out_channels, in_stride=encoder.stride, stride_out=stride)
    if cfg.head == "composite":
        return CompositeHead(**common), CompositeCodec(size, stride, cfg.radius, sigma)
    head = HeatmapHead(
        **common,
        fusion=cfg.fusion,
        mid_level_channels=encoder.stage_channels[mid],
        mid_level_index=mid,
    )
    return head, HeatmapCodec(size, stride, sigma)


class PoseModel(nn.Module):
    """Encoder + 2D head: crops (B, 3, H, W) in [0, 1] -> head outputs (a dict, see the codec)."""

    def __init__(self, encoder: nn.Module, head: nn.Module):
        super().__init__()
        self.encoder, self.head = encoder, head

    def forward(self, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.head(self.encoder.forward_stages(frames))


POSE_MODEL_FORMAT = "css_pose.pose2d"


HEAD_KEYS = ("head", "stride", "sigma_px", "radius", "fusion", "regression_pool")


def save_pose_model(
    path: Path,
    model: PoseModel,
    cfg: DictConfig,
    box_pad: float,
    metrics: dict,
    source: str,
    trained_joints: list[bool] | None = None,
) -> Path:
    """Write a self-contained 2D pose model (encoder + head weights, the configs that rebuild
    them, the crop settings and the measured test metrics) for ``css-pose predict``.
    ``trained_joints`` (J,) marks the joints that had at least one visible label in training
    (default: all); ``css-pose predict`` does not report the others (e.g. the pelvis of a model
    trained on COCO-17 labels, which have none).

    Only tensors, numbers, strings, lists and dicts: it loads with ``weights_only=True``.
    """
    payload = {
        "format": POSE_MODEL_FORMAT,
        "version": 1,
        "joints": list(JOINT_NAMES),
        "layout": CANONICAL,  # css_pose.layouts
        "trained_joints": [bool(t) for t in (trained_joints or [True] * len(JOINT_NAMES))],
        "model": OmegaConf.to_container(cfg.model, resolve=True),
        "head_config": {k: cfg.get(k) for k in HEAD_KEYS},
        "crop": {"size": int(model.encoder.in_size), "box_pad": box_pad},
        "metrics": dict(metrics),
        "source": source,
        "encoder": model.encoder.state_dict(),
        "head": model.head.state_dict(),
    }
    if OmegaConf.select(cfg, "temporal.frames", default=0):
        # A clip model (css_pose.models.temporal_pose.TemporalPoseModel): its settings and pooling weights.
        payload["temporal"] = OmegaConf.to_container(cfg.temporal, resolve=True)
        payload["temporal_weights"] = model.temporal.state_dict()
    from css_pose.checkpoint import save_torch_file

    return save_torch_file(payload, path)


def load_pose_model(path: str | Path, device: str | torch.device = "cpu"):
    """Rebuild (PoseModel in eval mode, codec, payload) from :func:`save_pose_model`'s file; a
    temporal run's file gives a :class:`~css_pose.models.temporal_pose.TemporalPoseModel` (clip in,
    :func:`~css_pose.models.temporal_pose.predict_clip`).

    Raises:
        CheckpointError: unreadable file, another kind of checkpoint (e.g. a train.py
            checkpoint), another skeleton, or weights that do not fit (names the keys).
    """
    from css_pose.checkpoint import load_strict, read_torch_file
    from css_pose.models.encoders import build_encoder

    path = Path(path)
    payload = read_torch_file(path, "model", "; train one with train_head.py")
    if not isinstance(payload, dict) or payload.get("format") != POSE_MODEL_FORMAT:
        hint = ""
        if isinstance(payload, dict) and "state_dict" in payload:
            hint = (
                " It looks like a pretraining checkpoint from train.py: fine-tune a head on it "
                f"first (python train_head.py ckpt={path}) and pass that run's head.pt."
            )
        raise CheckpointError(
            f"{path}: not a css_pose 2D pose model (head.pt written by train_head.py).{hint}"
        )
    try:
        check_layout(payload.get("layout"), CANONICAL, str(path))
    except LayoutMismatchError as e:
        raise CheckpointError(str(e)) from None
    if list(payload["joints"]) != list(JOINT_NAMES):
        raise CheckpointError(
            f"{path}: skeleton mismatch: the model predicts {len(payload['joints'])} joints "
            f"({', '.join(payload['joints'][:4])}, ...); css_pose expects the {len(JOINT_NAMES)} "
            "Human3.6M joints. Retrain the head with this version of css_pose."
        )
    size = payload["crop"]["size"]
    encoder = build_encoder(
        payload["model"]["name"], in_size=size, width=payload["model"].get("width")
    )
    head, codec = build_head(OmegaConf.create(payload["head_config"]), encoder)
    model = PoseModel(encoder, head)
    if "temporal" in payload:
        from css_pose.models.temporal_pose import TemporalPoseModel

        model = TemporalPoseModel.from_config(encoder, head, payload["temporal"])
        load_strict(model.temporal, payload["temporal_weights"], path)
    load_strict(encoder, payload["encoder"], path)
    load_strict(head, payload["head"], path)
    return model.to(device).eval(), codec, payload


@torch.no_grad()
def predict(
    model: PoseModel, codec, frames: torch.Tensor, flip_test: bool, outputs: bool = False
) -> tuple[torch.Tensor, ...]:
    """Crops (B, 3, H, W) -> keypoints (B, J, 2) crop px and scores (B, J); eval mode. With
    ``outputs`` also the head's (flip-averaged) output dict, e.g. ``heatmaps`` (B, J, h, w)."""
    model.eval()
    out = flip_average(model, frames) if flip_test else model(frames)
    kp, scores = codec.decode(out)
    return (kp, scores, out) if outputs else (kp, scores)
