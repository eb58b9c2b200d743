"""Cost of a head on an encoder: GFLOPs (``torch.utils.flop_counter``) and parameters."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from css_pose.codecs.heatmap import as_size
from css_pose.models.encoders import Encoder


def gflops(fn: Callable[..., object], *inputs: object) -> float:
    """GFLOPs of one call ``fn(*inputs)`` under no_grad, counted by
    ``torch.utils.flop_counter.FlopCounterMode`` (convolutions and matmuls; one multiply-add = 2
    FLOPs; normalisation, activations and resizing are not counted)."""
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        fn(*inputs)
    return counter.get_total_flops() / 1e9


def num_params(module: nn.Module) -> int:
    """Number of parameters of ``module``."""
    return sum(p.numel() for p in module.parameters())


def head_cost(
    encoder: Encoder, head: nn.Module, input_size: int | tuple[int, int]
) -> dict[str, float]:
    """Per-image cost of ``head(encoder.forward_stages(images))`` on a W x H crop.

    Runs one zero image in eval mode (restoring each module's mode afterwards, so BatchNorm
    statistics are untouched).

    Returns:
        ``head_gflops``, ``encoder_gflops``, ``total_gflops`` (see :func:`gflops`) and
        ``head_params``, ``encoder_params``, ``total_params``.
    """
    width, height = as_size(input_size)
    modes = [(m, m.training) for m in (encoder, head)]
    encoder.eval()
    head.eval()
    try:
        images = torch.zeros(1, 3, height, width, device=next(encoder.parameters()).device)
        encoder_gflops = gflops(encoder.forward_stages, images)
        with torch.no_grad():
            features = encoder.forward_stages(images)
        head_gflops = gflops(head, features)
    finally:
        for module, training in modes:
            module.train(training)
    head_params, encoder_params = num_params(head), num_params(encoder)
    return {
        "head_gflops": head_gflops,
        "encoder_gflops": encoder_gflops,
        "total_gflops": head_gflops + encoder_gflops,
        "head_params": head_params,
        "encoder_params": encoder_params,
        "total_params": head_params + encoder_params,
    }
