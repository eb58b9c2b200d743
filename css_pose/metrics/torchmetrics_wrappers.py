"""torchmetrics ``Metric`` versions of the pose metrics, correct under DDP.

Each keeps a sum and a count (``dist_reduce_fx="sum"``), so the value after syncing ranks is the
pooled mean over every valid joint of every sample on every rank: exactly the functional metric
(:mod:`css_pose.metrics.pose`) on the concatenated data, whatever the split across ranks. (A mean
of per-rank means would weigh ranks with fewer valid joints too heavily.)
"""

from __future__ import annotations

import torch
from torchmetrics import Metric

from css_pose.metrics.pose import _check, _normalised_error_2d, procrustes_align


class _PooledJointError(Metric):
    """Sum of per-joint errors and count of valid joints; ``compute`` = sum / count (NaN if 0)."""

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_state("error_sum", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")

    def _align(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return pred

    def update(
        self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
    ) -> None:
        """pred, target: (B, J, 3) root-relative, mm; mask: (B, J) bool joints to count."""
        mask = _check(pred, target, mask, 3)
        pred = self._align(pred, target, mask)
        err = torch.linalg.vector_norm(pred - target, dim=-1)  # (B, J)
        self.error_sum += err[mask].double().sum()
        self.count += mask.sum()

    def compute(self) -> torch.Tensor:
        return (self.error_sum / self.count).float()


class MPJPE(_PooledJointError):
    """Mean per-joint position error (mm), pooled over valid joints; see :func:`~css_pose.metrics.mpjpe`."""


class PMPJPE(_PooledJointError):
    """MPJPE after per-sample similarity Procrustes alignment; see :func:`~css_pose.metrics.p_mpjpe`."""

    def _align(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return procrustes_align(pred, target, mask)


class PCK(Metric):
    """PCK@alpha pooled over visible joints: correct visible joints / visible joints.

    ``update(pred, target, visibility, bbox_size)``: (B, J, 2) px, (B, J) bool, (B, 2) box (w, h)
    px; a joint is correct if its error <= alpha * max(w, h). See :func:`~css_pose.metrics.pck`.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, alpha: float = 0.2, **kwargs):
        super().__init__(**kwargs)
        if alpha <= 0:
            raise ValueError(f"alpha must be > 0, got {alpha}")
        self.alpha = alpha
        self.add_state("correct", torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")

    def update(
        self,
        pred: torch.Tensor,
        target: torch.Tensor,
        visibility: torch.Tensor,
        bbox_size: torch.Tensor,
    ) -> None:
        err, vis = _normalised_error_2d(pred, target, visibility, bbox_size)
        self.correct += ((err <= self.alpha) & vis).sum()
        self.count += vis.sum()

    def compute(self) -> torch.Tensor:
        return self.correct.double().div(self.count).float()
