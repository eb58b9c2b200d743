"""2D pose heads on encoder stage maps (``Encoder.forward_stages``), and their cost.

Every head takes the list of stage maps, shallow to deep, and returns a dict that its codec
(:mod:`css_pose.codecs`) decodes and scores.
"""

from __future__ import annotations

from css_pose.flip import FLIPPABLE_KEYS, flip_average, unflip_outputs
from css_pose.models.heads.composite import CompositeHead
from css_pose.models.heads.cost import gflops, head_cost, num_params
from css_pose.models.heads.heatmap import HeatmapHead, SpatialFusion
from css_pose.models.heads.regression import RegressionHead
from css_pose.models.heads.temporal import ParametricPooling, average_pooling

__all__ = [
    "FLIPPABLE_KEYS",
    "CompositeHead",
    "HeatmapHead",
    "ParametricPooling",
    "RegressionHead",
    "SpatialFusion",
    "average_pooling",
    "flip_average",
    "gflops",
    "head_cost",
    "num_params",
    "unflip_outputs",
]
