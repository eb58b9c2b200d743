"""Pose metrics as pure torch functions with masks (definitions: docs/metrics.md).

3D errors are in the unit of the inputs (mm for Human3.6M) and pool every valid joint of every
sample into one mean (a sample with more valid joints weighs more). A metric over no valid joint is
NaN. The project's PCK is :func:`pck_tight`; :func:`body_frame` removes a pose's orientation.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from css_pose.skeleton import ROOT

# Human3.6M joints that define the body frame (see body_frame).
PELVIS, R_HIP, L_HIP, THORAX = 0, 1, 4, 8


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


def tight_box_size(kp2d: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
    """Size (w, h) of the tight box of each sample's visible joints.

    Args:
        kp2d: (B, J, 2) px. visible: (B, J) bool.
    Returns:
        (B, 2) px, each side at least 1 px (a sample with fewer than two distinct visible joints
        gets a 1 px box).
    """
    inf = torch.tensor(float("inf"), dtype=kp2d.dtype, device=kp2d.device)
    v = visible.bool()[..., None]
    lo = torch.where(v, kp2d, inf).amin(dim=1)
    hi = torch.where(v, kp2d, -inf).amax(dim=1)
    size = (hi - lo).nan_to_num(0.0, posinf=0.0, neginf=0.0)
    return size.clamp_min(1.0)


def pck_tight(
    pred: torch.Tensor,
    gt: torch.Tensor,
    visible: torch.Tensor,
    alpha: float = 0.1,
    per_joint: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """The project's PCK@alpha: |p_hat - p| <= alpha * max(w, h), where (w, h) is the tight box of
    the sample's VISIBLE ground-truth joints (:func:`tight_box_size`); visible joints only, pooled
    over joints and samples (correct visible joints / visible joints).

    Args:
        pred, gt: (B, J, 2) keypoints, px. visible: (B, J) bool.
        alpha: threshold as a fraction of the box's longer side.
        per_joint: also return the (J,) PCK of each joint (NaN for a joint never visible).
    Returns:
        as :func:`pck`.
    """
    visible = _check(gt, gt, visible, 2)
    return pck(pred, gt, visible, tight_box_size(gt, visible), alpha, per_joint)


def body_frame(pose3d: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Express each pose in a frame built from its own joints, removing its orientation.

    With p_j the pose made root-relative (pelvis at 0), the axes are
    x = normalise(p_l_hip - p_r_hip), y = normalise(u - <u, x> x) with u = p_thorax - p_pelvis,
    z = x cross y (orthonormal, right-handed), and joint j becomes (<p_j, x>, <p_j, y>, <p_j, z>).
    Any rotation R of the input (p_j -> R p_j) rotates the axes with it, so the output does not
    change. A degenerate pose (hips closer than ``eps``, or a spine parallel to the hips) falls
    back to camera axes: x = camera x, and y from the camera axis least aligned with x; the output
    is then finite but no longer rotation-invariant.

    Args:
        pose3d: (..., 17, 3), Human3.6M order (0 pelvis, 1 r_hip, 4 l_hip, 8 thorax), mm.
        eps: norm below which an axis counts as degenerate, in pose units.
    Returns:
        (..., 17, 3) body-frame coordinates, same unit and dtype.
    """
    if pose3d.shape[-1] != 3 or pose3d.ndim < 2 or pose3d.shape[-2] <= THORAX:
        raise ValueError(f"expected (..., 17, 3) Human3.6M joints, got {tuple(pose3d.shape)}")
    p = root_relative(pose3d, ROOT)
    eye = torch.eye(3, dtype=p.dtype, device=p.device)
    x = p[..., L_HIP, :] - p[..., R_HIP, :]  # (..., 3)
    x_norm = x.norm(dim=-1, keepdim=True)
    x = torch.where(x_norm > eps, x / x_norm.clamp_min(eps), eye[0])
    u = p[..., THORAX, :] - p[..., PELVIS, :]
    u = u - (u * x).sum(-1, keepdim=True) * x
    u_norm = u.norm(dim=-1, keepdim=True)
    # The camera axis least aligned with x keeps a component >= sqrt(2/3) after projection.
    spare = eye[x.abs().argmin(dim=-1)]
    spare = spare - (spare * x).sum(-1, keepdim=True) * x
    u = torch.where(u_norm > eps, u, spare)
    y = u / u.norm(dim=-1, keepdim=True).clamp_min(eps)
    z = torch.linalg.cross(x, y)
    axes = torch.stack([x, y, z], dim=-2)  # (..., 3 axes, 3 camera coords)
    return torch.einsum("...jc,...ac->...ja", p, axes)


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
