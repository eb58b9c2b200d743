"""Codecs: keypoints -> training targets (data pipeline) and head outputs -> keypoints (heads).

Every codec has ``encode(keypoints (B, J, 2) px, visibility (B, J)) -> targets``,
``decode(outputs) -> (keypoints (B, J, 2) px, scores (B, J))`` and ``loss(outputs, targets) ->
{term: scalar}``; ``decode`` also accepts the targets, which is how the round trip is tested.
"""

from css_pose.codecs.composite import CompositeCodec
from css_pose.codecs.heatmap import HeatmapCodec, cells_to_pixels, pixels_to_cells
from css_pose.codecs.regression import RegressionCodec

__all__ = [
    "CompositeCodec",
    "HeatmapCodec",
    "RegressionCodec",
    "cells_to_pixels",
    "pixels_to_cells",
]
