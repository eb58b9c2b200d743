"""The probe itself: a linear or MLP head on standardised encoder features, the targets it fits
(camera-frame 3D, body-frame 3D or 2D, read from a frame-mode batch), its loss and its scores.
Definitions of the scores: docs/metrics.md.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from css_pose.flip import flip_joints, mirror_batch
from css_pose.metrics import body_frame, mpjpe, n_mpjpe, p_mpjpe, pck_tight, root_relative


# --- model ----------------------------------------------------------------------------------------
class Standardize(nn.Module):
    """(x - mean) / std per column, with fixed statistics of the training labels or features.

    Args:
        x: (N, D) samples. weight: (N, D) 0/1, entries to count (default all).
        min_std: floor of std, so that a constant column (the root joint) stays finite.
    """

    def __init__(self, x: torch.Tensor, min_std: float, weight: torch.Tensor | None = None):
        super().__init__()
        w = torch.ones_like(x) if weight is None else weight.to(x.dtype)
        n = w.sum(0).clamp_min(1)
        mean = (x * w).sum(0) / n
        var = ((x - mean).pow(2) * w).sum(0) / n
        self.register_buffer("mean", mean)
        self.register_buffer("std", var.sqrt().clamp_min(min_std))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y * self.std + self.mean


def make_head(dim_in: int, dim_out: int, kind: str, hidden: int = 256) -> nn.Module:
    """``linear``: one layer; ``mlp``: 2 hidden layers of ``hidden`` units with ReLU. (B, D) -> (B, out)."""
    if kind == "linear":
        return nn.Linear(dim_in, dim_out)
    if kind == "mlp":
        return nn.Sequential(
            nn.Linear(dim_in, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, dim_out),
        )
    raise ValueError(f"unknown head {kind!r}; choose linear or mlp")


class PoseProbe(nn.Module):
    """Standardised feature -> head -> joints in label units.

    ``forward`` maps features (B, D) to standardised targets (B, J*k); ``joints`` to (B, J, k)
    in mm (3D, body-frame 3D) or crop px (2D).
    """

    def __init__(self, head: nn.Module, feat_norm: Standardize, target_norm: Standardize, k: int):
        super().__init__()
        self.head, self.feat_norm, self.target_norm, self.k = head, feat_norm, target_norm, k

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.head(self.feat_norm(feats))

    def joints(self, feats: torch.Tensor) -> torch.Tensor:
        flat = self.target_norm.inverse(self(feats))
        return rearrange(flat, "b (j k) -> b j k", k=self.k)


def targets_of(batch: dict, target: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels of a frame-mode batch: (B, J, k) joints and (B, J) bool mask of the joints to fit.

    3d: root-relative ``keypoints_3d`` in camera coordinates, mm, every joint of a labeled sample.
    body3d: the same pose in its body frame (:func:`~css_pose.metrics.body_frame`), mm. 2d:
    ``keypoints_2d``, crop px, visible joints.
    """
    labeled = batch["has_labels"].bool()[:, None]  # (B, 1)
    if target in ("3d", "body3d"):
        kp = root_relative(batch["keypoints_3d"])
        if target == "body3d":
            kp = body_frame(kp)
        return kp, labeled.expand(kp.shape[:2])
    return batch["keypoints_2d"], batch["visibility"].bool() & labeled


def compute_metrics(
    pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor, target: str, pck_alpha: float = 0.1
) -> dict[str, float]:
    """Scores of predictions (B, J, k) against labels (B, J, k) over the mask (B, J) bool.

    2d (crop px): ``pck`` at ``pck_alpha``, ``pck@0.1``, ``pck@0.2``
    (:func:`~css_pose.metrics.pck_tight`: reference max(w, h) of the tight box of the visible GT
    joints, pooled over visible joints and frames) and ``px_error`` (mean px). 3d (root-relative
    camera frame, mm): ``mpjpe``, ``n_mpjpe``, ``p_mpjpe``. body3d (body frame, mm):
    ``body_mpjpe``. Definitions: docs/metrics.md.
    """
    if target == "3d":
        return {
            "mpjpe": float(mpjpe(pred, gt, mask)),
            "n_mpjpe": float(n_mpjpe(pred, gt, mask)),
            "p_mpjpe": float(p_mpjpe(pred, gt, mask)),
        }
    if target == "body3d":
        return {"body_mpjpe": float(mpjpe(pred, gt, mask))}
    out = {"pck": float(pck_tight(pred, gt, mask, pck_alpha))}
    out.update({f"pck@{a:g}": float(pck_tight(pred, gt, mask, a)) for a in (0.1, 0.2)})
    out["px_error"] = float(torch.linalg.vector_norm(pred - gt, dim=-1)[mask].mean())
    return out


def mirror_frame_batch(batch: dict, which: torch.Tensor) -> dict:
    """A frame-mode batch with the samples where ``which`` (B,) is True mirrored left-right.

    The crop flips and its 2D keypoints go to x -> W - 1 - x with left and right joints swapped
    (:func:`css_pose.flip.mirror_batch`); the 3D pose goes to x -> -x in camera coordinates with
    the same swap (:func:`css_pose.flip.flip_joints`). Targets read from the result by
    :func:`targets_of` (the body frame too) are those of the mirrored crops.
    """
    frames, kp2, vis = mirror_batch(
        batch["frames"], batch["keypoints_2d"], batch["visibility"], which
    )
    kp3 = batch["keypoints_3d"]
    _, _, kp3_mirrored = flip_joints(kp2.numpy(), vis.numpy(), kp3.numpy())
    kp3 = torch.where(which.view(-1, 1, 1), torch.from_numpy(kp3_mirrored), kp3)
    mirrored = {"frames": frames, "keypoints_2d": kp2, "visibility": vis, "keypoints_3d": kp3}
    return {**batch, **mirrored}


def probe_loss(probe: PoseProbe, feats, kp, mask) -> torch.Tensor:
    """MSE in standardised label units over the masked joints."""
    err = (probe(feats) - probe.target_norm(rearrange(kp, "b j k -> b (j k)"))).pow(2)
    err = rearrange(err, "b (j k) -> b j k", k=probe.k)
    w = mask[..., None].to(err.dtype).expand_as(err)
    return (err * w).sum() / w.sum().clamp_min(1)


def check_feature(method, feature: str, size: int) -> int:
    """Dimension of ``feature``; ValueError naming the available ones when the method lacks it."""
    was_training = method.training
    method.eval()
    with torch.no_grad():
        device = next(method.parameters()).device
        feats = method.features(torch.rand(1, 3, size, size, device=device))
    method.train(was_training)
    if feature not in feats:
        raise ValueError(
            f"feature={feature} is not produced by method {method.method_cfg.name}; "
            f"available features: {', '.join(sorted(feats))}"
        )
    return feats[feature].shape[-1]
