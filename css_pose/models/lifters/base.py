"""What the windowed lifters share: odd filter widths, the receptive field, the input check."""

from __future__ import annotations

import math

import torch
from torch import nn


class WindowLifter(nn.Module):
    """Base of lifters that read a window of T = prod(filter_widths) frames of (J, 2) keypoints."""

    def __init__(self, filter_widths: list[int] | tuple[int, ...], joints: int):
        super().__init__()
        if not filter_widths or any(w < 1 or w % 2 == 0 for w in filter_widths):
            raise ValueError(f"filter widths must be odd and >= 1, got {filter_widths}")
        self.filter_widths, self.joints = tuple(filter_widths), joints

    def receptive_field(self) -> int:
        return math.prod(self.filter_widths)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise unless x is (B, receptive_field(), joints, 2)."""
        if x.shape[1:] != (self.receptive_field(), self.joints, 2):
            raise ValueError(
                f"expected (B, {self.receptive_field()}, {self.joints}, 2), got {tuple(x.shape)}"
            )
