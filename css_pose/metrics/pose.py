"""Pose metrics as pure torch functions with masks (definitions: shared/methods.md, Metrics).

3D errors are in the unit of the inputs (mm for Human3.6M) and pool every valid joint of every
sample into one mean (a sample with more valid joints weighs more). A metric over no valid joint is
NaN.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def root_relative(kp3d: torch.Tensor, root: int = 0) -> torch.Tensor:
    """(..., J, 3) -> the same joints minus the root joint ``root``."""
    return kp3d - kp3d[..., root : root + 1, :]


def _check(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None, dim: int):
    if pred.shape != target.shape or pred.ndim != 3 or pred.shape[-1] != dim:
        raise ValueError(
            f"expected pred and target (B, J, {dim}), got {pred.shape}, {target.shape}"
        )
    if mask is None:
        return torch.ones(pred.shape[:2], dtype=torch.bool, device=pred.device)
    if mask.shape != pred.shape[:2]:
        raise ValueError(
            f"mask/visibility must be (B, J) = {tuple(pred.shape[:2])}, got {tuple(mask.shape)}"
        )
    return mask.bool()


def _pooled_error(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    err = torch.linalg.vector_norm(pred - target, dim=-1)  # (B, J)
    return err[mask].mean()


def mpjpe(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean per-joint position error.

    Args:
        pred, target: (B, J, 3), root-relative (see :func:`root_relative`), mm.
        mask: (B, J) bool, joints to count; ``None`` counts all.
    Returns:
        scalar, mm.
    """
    mask = _check(pred, target, mask, 3)
    return _pooled_error(pred, target, mask)


def n_mpjpe(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """MPJPE after scaling each predicted pose by s = <p_hat, p> / <p_hat, p_hat> (valid joints).

    Args, returns: as :func:`mpjpe`.
    """
    mask = _check(pred, target, mask, 3)
    w = mask[..., None].to(pred.dtype)  # (B, J, 1)
    num = torch.einsum("bjx,bjx->b", pred * w, target)
    den = torch.einsum("bjx,bjx->b", pred * w, pred)
    scale = num / den.clamp_min(torch.finfo(pred.dtype).tiny)
    return _pooled_error(scale[:, None, None] * pred, target, mask)


def procrustes_align(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Align each predicted pose to its target by a similarity transform (scale, rotation,
    translation; no reflection), fitted on the valid joints in float64.

    Args:
        pred, target: (B, J, 3).
        mask: (B, J) bool; ``None`` uses all joints.
    Returns:
        aligned pred (B, J, 3), every joint transformed, in pred's dtype.
    """
    mask = _check(pred, target, mask, 3)
    p, t = pred.double(), target.double()
    w = mask[..., None].double()  # (B, J, 1)
    count = w.sum(dim=1, keepdim=True).clamp_min(1)  # (B, 1, 1)
    mu_p, mu_t = (p * w).sum(1, keepdim=True) / count, (t * w).sum(1, keepdim=True) / count
    p0, t0 = p - mu_p, t - mu_t
    h = torch.einsum("bjx,bjy->bxy", p0 * w, t0)  # (B, 3, 3) cross-covariance
    u, s, vh = torch.linalg.svd(h)
    v = vh.transpose(1, 2)
    # Flip the last singular direction when the best orthogonal map is a reflection.
    sign = torch.sign(torch.linalg.det(v @ u.transpose(1, 2)))
    d = torch.ones_like(s)
    d[:, -1] = torch.where(sign < 0, -1.0, 1.0)
    rot = v @ torch.diag_embed(d) @ u.transpose(1, 2)  # (B, 3, 3), maps p0 rows onto t0 rows
    var_p = (p0.pow(2) * w).sum(dim=(1, 2))  # (B,)
    scale = (s * d).sum(dim=1) / var_p.clamp_min(torch.finfo(torch.float64).tiny)
    aligned = scale[:, None, None] * torch.einsum("bxy,bjy->bjx", rot, p0) + mu_t
    return aligned.to(pred.dtype)


def p_mpjpe(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """MPJPE after similarity Procrustes alignment per sample (:func:`procrustes_align`).

    Args, returns: as :func:`mpjpe`.
    """
    mask = _check(pred, target, mask, 3)
    return _pooled_error(procrustes_align(pred, target, mask), target, mask)


def _normalised_error_2d(pred, target, visibility, bbox_size) -> tuple[torch.Tensor, torch.Tensor]:
    visibility = _check(pred, target, visibility, 2)
    if bbox_size.shape != (pred.shape[0], 2):
        raise ValueError(f"bbox_size must be (B, 2) = (w, h), got {tuple(bbox_size.shape)}")
    norm = bbox_size.amax(dim=1, keepdim=True)  # (B, 1) max(w, h)
    return torch.linalg.vector_norm(pred - target, dim=-1) / norm, visibility


def pck(
    pred: torch.Tensor,
    target: torch.Tensor,
    visibility: torch.Tensor,
    bbox_size: torch.Tensor,
    alpha: float = 0.2,
    per_joint: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """PCK@alpha: a joint is correct if |p_hat - p| <= alpha * max(bbox w, h) of its sample.

    Args:
        pred, target: (B, J, 2) keypoints, pixels.
        visibility: (B, J) bool; only visible joints count.
        bbox_size: (B, 2) box (w, h), pixels.
        alpha: threshold as a fraction of the box's longer side.
        per_joint: also return the PCK of each joint.
    Returns:
        pooled PCK (scalar in [0, 1]: correct visible joints / visible joints, over the whole batch),
        and with ``per_joint`` also (J,) per-joint PCK (NaN for a joint never visible).
    """
    err, vis = _normalised_error_2d(pred, target, visibility, bbox_size)
    correct = (err <= alpha) & vis  # (B, J)
    pooled = correct.sum() / vis.sum()
    if not per_joint:
        return pooled
    return pooled, correct.sum(dim=0) / vis.sum(dim=0)


def auc_pck(
    pred: torch.Tensor,
    target: torch.Tensor,
    visibility: torch.Tensor,
    bbox_size: torch.Tensor,
    alphas: Sequence[float] = tuple(i / 20 for i in range(11)),
) -> torch.Tensor:
    """Area under the pooled PCK(alpha) curve (trapezoid rule), divided by the alpha range.

    Args:
        pred, target, visibility, bbox_size: as :func:`pck`.
        alphas: >= 2 increasing thresholds; default 0, 0.05, ..., 0.5.
    Returns:
        scalar in [0, 1].
    """
    a = torch.as_tensor(alphas, dtype=torch.float64)
    if a.ndim != 1 or len(a) < 2 or not bool((a[1:] > a[:-1]).all()):
        raise ValueError(f"alphas must be >= 2 increasing thresholds, got {alphas}")
    err, vis = _normalised_error_2d(pred, target, visibility, bbox_size)
    e = err[vis].double()  # (V,)
    curve = (e[None, :] <= a[:, None]).double().mean(dim=1)  # (A,)
    return torch.trapezoid(curve, a) / (a[-1] - a[0])
