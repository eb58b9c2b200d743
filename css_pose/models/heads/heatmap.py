"""Heatmap head with a spatial-fusion stage (Pfister et al., "Flowing ConvNets for Human Pose
Estimation in Videos", ICCV 2015; shared/methods.md section 2).

Stage 1 upsamples the encoder's last map with transposed convolutions (as in Xiao et al., "Simple
Baselines for Human Pose Estimation and Tracking", ECCV 2018). Stage 2 ("spatial fusion") reads
mid-level features and the stage-1 heatmaps through large 7x7 and 13x13 kernels, which lets it learn
where joints lie relative to each other. Our choice: those kernels are depthwise-separable, to keep
the head cheap at stride 4.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from css_pose.skeleton import NUM_JOINTS


def upsampling_steps(in_stride: int, stride_out: int) -> int:
    """Number of x2 upsamplings from ``in_stride`` to ``stride_out`` (both input px per cell)."""
    steps = math.log2(in_stride / stride_out) if in_stride > 0 and stride_out > 0 else -1.0
    if steps < 0 or steps != int(steps):
        raise ValueError(
            f"in_stride / stride_out must be a power of two >= 1, got {in_stride} / {stride_out}"
        )
    return int(steps)


def upsampling_stack(in_channels: int, channels: int, steps: int) -> nn.Sequential:
    """``steps`` x (4x4 transposed conv, stride 2 -> BN -> ReLU): (B, C_in, h, w) ->
    (B, channels, h * 2^steps, w * 2^steps); identity for ``steps == 0``."""
    layers: list[nn.Module] = []
    for _ in range(steps):
        layers += [
            nn.ConvTranspose2d(in_channels, channels, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
        ]
        in_channels = channels
    return nn.Sequential(*layers)


def conv_bn_relu(in_channels: int, out_channels: int, kernel: int) -> nn.Sequential:
    """kxk conv ("same" padding, no bias) -> BN -> ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def _separable(channels: int, kernel: int) -> nn.Sequential:
    """Depthwise kxk conv -> pointwise 1x1 conv -> BN -> ReLU, same size."""
    return nn.Sequential(
        nn.Conv2d(channels, channels, kernel, padding=kernel // 2, groups=channels, bias=False),
        nn.Conv2d(channels, channels, 1, bias=False),
        nn.BatchNorm2d(channels),
        nn.ReLU(inplace=True),
    )


class SpatialFusion(nn.Module):
    """[mid-level features, heatmaps] -> refined heatmaps, through 7x7 and 13x13 kernels.

    Predicts a correction added to the input heatmaps; its last conv starts at zero, so at
    initialisation the refined heatmaps equal the input ones.

    Args:
        feature_channels: channels of the mid-level features.
        num_joints: J.
        channels: width of the fusion convs.
    """

    def __init__(self, feature_channels: int, num_joints: int, channels: int = 64):
        super().__init__()
        self.body = nn.Sequential(
            conv_bn_relu(feature_channels + num_joints, channels, 1),
            _separable(channels, 7),
            _separable(channels, 13),
        )
        self.out = nn.Conv2d(channels, num_joints, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, features: torch.Tensor, heatmaps: torch.Tensor) -> torch.Tensor:
        """features (B, C, h, w), heatmaps (B, J, h, w) -> (B, J, h, w)."""
        return heatmaps + self.out(self.body(torch.cat((features, heatmaps), dim=1)))


class HeatmapHead(nn.Module):
    """Encoder stage maps -> heatmaps at ``stride_out`` (one or two stages).

    Args:
        in_channels: channels of the encoder's last map (512 for ResNet-18 layer4).
        num_joints: J.
        in_stride: stride of the last map, input px per cell (32 for ResNets).
        stride_out: heatmap stride, input px per cell (4 or 8).
        mid_channels: width of the upsampling layers.
        fusion: add the spatial-fusion stage.
        mid_level_channels: channels of the mid-level map (128 for ResNet-18 layer2).
        mid_level_index: index of the mid-level map in the stage list (1 = ResNet layer2).
        fusion_channels: width of the fusion convs.
    """

    def __init__(
        self,
        in_channels: int,
        num_joints: int = NUM_JOINTS,
        in_stride: int = 32,
        stride_out: int = 4,
        mid_channels: int = 256,
        fusion: bool = True,
        mid_level_channels: int = 128,
        mid_level_index: int = 1,
        fusion_channels: int = 64,
    ):
        super().__init__()
        if min(in_channels, num_joints, mid_channels, mid_level_channels, fusion_channels) < 1:
            raise ValueError("channel counts and num_joints must be >= 1")
        self.num_joints = num_joints
        self.stride_out = stride_out
        self.mid_level_index = mid_level_index
        self.upsample = upsampling_stack(
            in_channels, mid_channels, upsampling_steps(in_stride, stride_out)
        )
        self.first = nn.Conv2d(mid_channels if len(self.upsample) else in_channels, num_joints, 1)
        nn.init.normal_(self.first.weight, std=1e-3)
        nn.init.zeros_(self.first.bias)
        self.fusion = (
            SpatialFusion(mid_level_channels, num_joints, fusion_channels) if fusion else None
        )

    def forward(self, features: Sequence[torch.Tensor]) -> dict[str, torch.Tensor | list]:
        """Encoder stage maps, shallow to deep (``Encoder.forward_stages``) -> heatmaps.

        Args:
            features: the last is (B, in_channels, H / in_stride, W / in_stride); with fusion,
                ``features[mid_level_index]`` is (B, mid_level_channels, h', w'), resized
                bilinearly to the heatmap grid.
        Returns:
            ``heatmaps`` (B, J, H / stride_out, W / stride_out), the last stage; ``stages``, the
            list of every stage's heatmaps, first to last (supervise all of them).
        """
        stages = [self.first(self.upsample(features[-1]))]
        if self.fusion is not None:
            mid = features[self.mid_level_index]
            mid = F.interpolate(
                mid, size=stages[0].shape[-2:], mode="bilinear", align_corners=False
            )
            stages.append(self.fusion(mid, stages[0]))
        return {"heatmaps": stages[-1], "stages": stages}
