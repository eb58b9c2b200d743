"""Framework-free loss modules of the CSS method."""

from css_pose.losses.gradual_transition import GradualTransitionLoss
from css_pose.losses.invariance import InvarianceLoss
from css_pose.losses.reconstruction import ReconstructionLoss, ssim
from css_pose.losses.temporal_infonce import TemporalInfoNCE

__all__ = [
    "GradualTransitionLoss",
    "InvarianceLoss",
    "ReconstructionLoss",
    "TemporalInfoNCE",
    "ssim",
]
