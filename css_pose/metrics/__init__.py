"""Pose metrics: MPJPE, N-MPJPE, P-MPJPE, body frame (3D) and PCK, AUC of PCK (2D).

Definitions: docs/metrics.md."""

from css_pose.metrics.pose import (
    auc_pck,
    body_frame,
    mpjpe,
    n_mpjpe,
    p_mpjpe,
    pck,
    pck_tight,
    procrustes_align,
    root_relative,
    tight_box_size,
)
from css_pose.metrics.torchmetrics_wrappers import MPJPE, PCK, PMPJPE

__all__ = [
    "MPJPE",
    "PCK",
    "PMPJPE",
    "auc_pck",
    "body_frame",
    "mpjpe",
    "n_mpjpe",
    "p_mpjpe",
    "pck",
    "pck_tight",
    "procrustes_align",
    "root_relative",
    "tight_box_size",
]
