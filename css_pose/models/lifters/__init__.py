"""2D -> 3D pose lifters: (B, T, 17, 2) normalised 2D -> (B, 17, 3) root-relative 3D of the centre
frame. Each has ``receptive_field()`` (the T it expects)."""

from css_pose.models.lifters.dgnet import (
    DGNetLifter,
    DynamicSpatialGraph,
    DynamicTemporalGraph,
    skeleton_adjacency,
    topk_softmax,
)
from css_pose.models.lifters.mlp import MLPLifter
from css_pose.models.lifters.tcn import TemporalConvLifter

__all__ = [
    "DGNetLifter",
    "DynamicSpatialGraph",
    "DynamicTemporalGraph",
    "MLPLifter",
    "TemporalConvLifter",
    "skeleton_adjacency",
    "topk_softmax",
]
