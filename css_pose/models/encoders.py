"""Image encoders: torchvision ResNets (random init) and a small ConvNet for CPU runs.

Every encoder takes images in [0, 1], applies ImageNet mean/std normalisation itself, and returns
the feature maps of its stages. ResNets are built with ``weights=None``; pretrained weights come only
from a local state-dict file, loaded strictly.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
import torchvision
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_RESNET_STAGE_CHANNELS = {"resnet18": [64, 128, 256, 512], "resnet50": [256, 512, 1024, 2048]}
# (channels as a multiple of the width, stride) of each ConvNet conv layer, grouped by stage; each
# stage halves the size.
_CONVNET_STAGES = (((1, 2),), ((2, 2),), ((4, 2), (4, 1)), ((8, 2),))
ENCODER_NAMES = ("resnet18", "resnet50", "convnet")


class Encoder(nn.Module):
    """Runs named child modules in order and returns the outputs of the named stages.

    The children keep the names of the network they come from (``conv1``, ``layer1``, ... for
    ResNets), so ``state_dict()`` keys match torchvision's (without the classifier ``fc``).

    Args:
        layers: child modules, applied in order.
        stage_names: names in ``layers`` whose outputs ``forward_stages`` returns, shallow to deep;
            the last one must be the last layer.
        stage_channels: channels of each stage output.
        stride: total output stride of the last stage (input pixels per feature cell).
        in_size: nominal input crop size in pixels; must be a multiple of ``stride``.
    """

    def __init__(
        self,
        layers: OrderedDict[str, nn.Module],
        stage_names: list[str],
        stage_channels: list[int],
        stride: int,
        in_size: int,
    ):
        super().__init__()
        if not stage_names or any(n not in layers for n in stage_names):
            raise ValueError(f"stage_names {stage_names} must be non-empty names of layers")
        if stage_names[-1] != list(layers)[-1]:
            raise ValueError("the last stage must be the last layer")
        if len(stage_channels) != len(stage_names):
            raise ValueError("stage_channels needs one entry per stage")
        if in_size <= 0 or in_size % stride:
            raise ValueError(
                f"in_size={in_size} must be a positive multiple of the stride {stride}"
            )
        for name, module in layers.items():
            self.add_module(name, module)
        self.stage_names = list(stage_names)
        self.stage_channels = list(stage_channels)
        self.out_channels = self.stage_channels[-1]
        self.stride = stride
        self.in_size = in_size
        self.feature_size = in_size // stride
        # Not persistent: checkpoints hold learned weights only.
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, H, W) in [0, 1] -> stage maps, each (B, stage_channels[s], H / r_s, W / r_s)."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected images (B, 3, H, W), got {tuple(x.shape)}")
        x = (x - self.mean) / self.std
        stages = []
        for name, module in self.named_children():
            x = module(x)
            if name in self.stage_names:
                stages.append(x)
        return stages

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> last feature map (B, out_channels, H / stride, W / stride)."""
        return self.forward_stages(x)[-1]


def _resnet(name: str, in_size: int) -> Encoder:
    net = getattr(torchvision.models, name)(weights=None)
    names = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"]
    layers = OrderedDict((n, getattr(net, n)) for n in names)
    return Encoder(layers, names[4:], _RESNET_STAGE_CHANNELS[name], stride=32, in_size=in_size)


def _convnet(in_size: int, width: int = 32) -> Encoder:
    """Five 3x3 conv-BN-ReLU layers in four stride-2 stages (width x 1, 2, 4, 8 channels; at
    width 32: 32, 64, 128, 256 channels and ~0.54M parameters), output stride 16."""
    if width < 1:
        raise ValueError(f"convnet width={width}: must be a positive number of channels")
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    c_in, channels = 3, []
    for s, stage in enumerate(_CONVNET_STAGES, start=1):
        convs = []
        for factor, stride in stage:
            c_out = factor * width
            convs += [
                nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            ]
            c_in = c_out
        layers[f"stage{s}"] = nn.Sequential(*convs)
        channels.append(c_in)
    return Encoder(
        layers, list(layers), channels, stride=2 ** len(_CONVNET_STAGES), in_size=in_size
    )


def load_state_dict_strict(module: nn.Module, path: str | Path) -> None:
    """Load a local state-dict file into ``module``; every key must match.

    A torchvision classification checkpoint's ``fc.*`` keys are dropped first (the classifier is not
    part of an encoder). Raises ``RuntimeError`` naming the file and the missing/unexpected keys.
    """
    from css_pose.checkpoint import load_strict, read_torch_file

    state = read_torch_file(path, "encoder weights")
    if not isinstance(state, dict):
        raise RuntimeError(f"{path}: expected a state dict (name -> tensor), got {type(state)}")
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    load_strict(module, state, path, "the encoder", RuntimeError)


def build_encoder(
    name: str = "resnet18",
    weights_path: str | Path | None = None,
    in_size: int = 128,
    width: int | None = None,
) -> Encoder:
    """Build an :class:`Encoder` by name.

    Args:
        name: ``resnet18`` | ``resnet50`` (torchvision, ``weights=None``; stride 32, stages
            ``layer1..layer4``) | ``convnet`` (small CPU net, stride 16, 4 stages).
        weights_path: optional local state-dict file, loaded strictly (see
            :func:`load_state_dict_strict`).
        in_size: input crop size in pixels (multiple of the stride).
        width: ``convnet`` only: channels of its first stage (default 32); ResNets ignore it.

    Returns:
        Encoder with ``forward(x) -> (B, out_channels, h, w)``, ``forward_stages(x)``,
        ``out_channels``, ``stage_channels`` and ``stride``.
    """
    if name not in ENCODER_NAMES:
        raise ValueError(f"unknown encoder {name!r}; choose one of {ENCODER_NAMES}")
    if name == "convnet":
        encoder = _convnet(in_size, 32 if width is None else width)
    else:
        encoder = _resnet(name, in_size)
    if weights_path is not None:
        load_state_dict_strict(encoder, weights_path)
    return encoder
