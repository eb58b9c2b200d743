"""Pose metrics: MPJPE, N-MPJPE, P-MPJPE (3D) and PCK, AUC of PCK (2D)."""

from css_pose.metrics.pose import (
    auc_pck,
    mpjpe,
    n_mpjpe,
    p_mpjpe,
    pck,
    procrustes_align,
    root_relative,
)
from css_pose.metrics.torchmetrics_wrappers import MPJPE, PCK, PMPJPE

__all__ = [
    "MPJPE",
    "PCK",
    "PMPJPE",
    "auc_pck",
    "mpjpe",
    "n_mpjpe",
    "p_mpjpe",
    "pck",
    "procrustes_align",
    "root_relative",
]
