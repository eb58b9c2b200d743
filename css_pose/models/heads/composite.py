"""Composite localisation head (CLNet-style, shared/methods.md section 3): a coarse heatmap and
short-range offsets at stride 8, decoded by :class:`css_pose.codecs.CompositeCodec`."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from einops import rearrange
from torch import nn

from css_pose.models.heads.heatmap import conv_bn_relu, upsampling_stack, upsampling_steps
from css_pose.skeleton import NUM_JOINTS


class CompositeHead(nn.Module):
    """Encoder stage maps -> (heatmaps, offsets) at ``stride_out``.

    Shared transposed-conv upsampling (two steps from stride 32 to 8, against three for a stride-4
    heatmap head), then two branches of 3x3 conv-BN-ReLU -> 1x1 conv.

    Args:
        in_channels: channels of the encoder's last map (512 for ResNet-18 layer4).
        num_joints: J.
        in_stride: stride of the last map, input px per cell (32 for ResNets).
        stride_out: output stride, input px per cell.
        mid_channels: width of the upsampling layers.
        branch_channels: width of each branch's 3x3 conv.
    """

    def __init__(
        self,
        in_channels: int,
        num_joints: int = NUM_JOINTS,
        in_stride: int = 32,
        stride_out: int = 8,
        mid_channels: int = 256,
        branch_channels: int = 64,
    ):
        super().__init__()
        if min(in_channels, num_joints, mid_channels, branch_channels) < 1:
            raise ValueError("channel counts and num_joints must be >= 1")
        self.num_joints = num_joints
        self.stride_out = stride_out
        self.upsample = upsampling_stack(
            in_channels, mid_channels, upsampling_steps(in_stride, stride_out)
        )
        width = mid_channels if len(self.upsample) else in_channels
        self.heatmap = nn.Sequential(
            conv_bn_relu(width, branch_channels, 3), nn.Conv2d(branch_channels, num_joints, 1)
        )
        self.offset = nn.Sequential(
            conv_bn_relu(width, branch_channels, 3), nn.Conv2d(branch_channels, 2 * num_joints, 1)
        )
        for out in (self.heatmap[-1], self.offset[-1]):
            nn.init.normal_(out.weight, std=1e-3)
            nn.init.zeros_(out.bias)

    def forward(self, features: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Encoder stage maps, shallow to deep (``Encoder.forward_stages``); only the last is read.

        Args:
            features: the last is (B, in_channels, H / in_stride, W / in_stride).
        Returns:
            ``heatmaps`` (B, J, h, w) and ``offsets`` (B, J, 2, h, w) as (dx, dy) in units of the
            codec's radius, with (h, w) = (H, W) / stride_out.
        """
        x = self.upsample(features[-1])
        offsets = rearrange(self.offset(x), "b (j c) h w -> b j c h w", c=2)
        return {"heatmaps": self.heatmap(x), "offsets": offsets}
