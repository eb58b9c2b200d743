"""Pose metrics against hand-computed values."""

import math

import pytest
import torch

from css_pose.metrics import (
    auc_pck,
    mpjpe,
    n_mpjpe,
    p_mpjpe,
    pck,
    procrustes_align,
    root_relative,
)

# Six joints at +-(1,0,0), +-(0,2,0), +-(0,0,3): centred, diagonal scatter diag(2, 8, 18).
POINTS = [(1, 0, 0), (-1, 0, 0), (0, 2, 0), (0, -2, 0), (0, 0, 3), (0, 0, -3)]
TARGET = torch.tensor([POINTS], dtype=torch.float64)  # (1, 6, 3)


def test_translation():
    pred = TARGET + torch.tensor([3.0, 4.0, 0.0], dtype=torch.float64)
    assert mpjpe(pred, TARGET).item() == pytest.approx(5.0)
    assert p_mpjpe(pred, TARGET).item() == pytest.approx(0.0, abs=1e-9)
    assert mpjpe(root_relative(pred), root_relative(TARGET)).item() == pytest.approx(0.0)


def test_root_relative():
    kp = torch.tensor([[[1.0, 2, 3], [4, 6, 8]]])
    torch.testing.assert_close(root_relative(kp), torch.tensor([[[0.0, 0, 0], [3, 4, 5]]]))
    torch.testing.assert_close(
        root_relative(kp, root=1), torch.tensor([[[-3.0, -4, -5], [0, 0, 0]]])
    )


def test_rotated_and_scaled_prediction_aligns_exactly():
    # pred = 2 * Rz(90 deg) target + (5, 5, 5): (x, y, z) -> (-2y + 5, 2x + 5, 2z + 5)
    pred_rows = [(-2 * y + 5, 2 * x + 5, 2 * z + 5) for x, y, z in POINTS]
    pred = torch.tensor([pred_rows], dtype=torch.float64)
    expected = sum(math.dist(p, t) for p, t in zip(pred_rows, POINTS)) / len(POINTS)
    assert mpjpe(pred, TARGET).item() == pytest.approx(expected)
    assert expected > 5
    assert p_mpjpe(pred, TARGET).item() == pytest.approx(0.0, abs=1e-9)
    torch.testing.assert_close(procrustes_align(pred, TARGET), TARGET)


def test_reflection_is_not_aligned_away():
    # Mirror x -> -x (and shift). The best proper rotation is the identity (it keeps the two large
    # axes and gives up the smallest one), scale s = (8 + 18 - 2) / (2 + 8 + 18) = 6/7. Errors:
    # |(s + 1) * 1| = 13/7 on the x joints, (1 - s) * 2 = 2/7 on y, (1 - s) * 3 = 3/7 on z.
    pred = TARGET * torch.tensor([-1.0, 1, 1], dtype=torch.float64) + 10
    expected = (2 * 13 / 7 + 2 * 2 / 7 + 2 * 3 / 7) / 6
    assert p_mpjpe(pred, TARGET).item() == pytest.approx(expected, abs=1e-9)
    assert expected == pytest.approx(6 / 7)


def test_n_mpjpe():
    target = torch.tensor([[[1.0, 0, 0], [0, 1, 0]]])
    # pure scale: s = 1/2 undoes it
    assert n_mpjpe(2 * target, target).item() == pytest.approx(0.0, abs=1e-7)
    assert mpjpe(2 * target, target).item() == pytest.approx(1.0)
    # s = <p_hat, p> / <p_hat, p_hat> = 2 / 4: scaled pred (1,0,0), (0,0,0) -> errors 0 and 1
    pred = torch.tensor([[[2.0, 0, 0], [0, 0, 0]]])
    assert n_mpjpe(pred, target).item() == pytest.approx(0.5)
    # the scale is fitted per sample
    both = torch.cat([2 * target, 0.5 * target])
    assert n_mpjpe(both, torch.cat([target, target])).item() == pytest.approx(0.0, abs=1e-7)


def test_masks_exclude_joints_from_errors_and_fits():
    pred = TARGET.clone()
    pred[0, 2] += torch.tensor([0.0, 0.0, 60.0], dtype=torch.float64)
    mask = torch.ones(1, 6, dtype=torch.bool)
    mask[0, 2] = False
    assert mpjpe(pred, TARGET).item() == pytest.approx(10.0)
    assert mpjpe(pred, TARGET, mask).item() == pytest.approx(0.0)
    assert n_mpjpe(pred, TARGET, mask).item() == pytest.approx(0.0, abs=1e-9)
    assert p_mpjpe(pred, TARGET, mask).item() == pytest.approx(0.0, abs=1e-9)
    assert p_mpjpe(pred, TARGET).item() > 1


def test_pck_counts_visible_joints():
    target = torch.zeros(2, 3, 2)
    pred = torch.tensor([[[10.0, 0], [0, 25], [19, 0]], [[3, 4], [9, 0], [100, 0]]])
    visibility = torch.tensor([[True, True, True], [True, True, False]])
    bbox = torch.tensor([[100.0, 50.0], [20.0, 40.0]])  # thresholds 0.2 * 100 = 20, 0.2 * 40 = 8
    # correct: sample 0: 10 yes, 25 no, 19 yes; sample 1: 5 yes, 9 no, (invisible)
    pooled, per_joint = pck(pred, target, visibility, bbox, alpha=0.2, per_joint=True)
    assert pooled.item() == pytest.approx(3 / 5)
    torch.testing.assert_close(per_joint, torch.tensor([1.0, 0.0, 1.0]))
    assert pck(pred, target, visibility, bbox, alpha=1.0).item() == pytest.approx(1.0)


def test_auc_pck():
    target = torch.zeros(1, 2, 2)
    pred = torch.tensor([[[10.0, 0], [0, 30]]])
    vis = torch.ones(1, 2, dtype=torch.bool)
    bbox = torch.tensor([[100.0, 80.0]])
    # normalised errors 0.1, 0.3: PCK(0, 0.2, 0.4) = 0, 0.5, 1; trapezoids 0.05 + 0.15 over 0.4
    assert auc_pck(pred, target, vis, bbox, alphas=(0.0, 0.2, 0.4)).item() == pytest.approx(0.5)
    with pytest.raises(ValueError, match="increasing"):
        auc_pck(pred, target, vis, bbox, alphas=(0.2, 0.1))


def test_shape_checks():
    with pytest.raises(ValueError, match="mask"):
        mpjpe(TARGET, TARGET, torch.ones(1, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"\(B, J, 3\)"):
        mpjpe(TARGET[..., :2], TARGET[..., :2])
    with pytest.raises(ValueError, match="bbox_size"):
        pck(TARGET[..., :2], TARGET[..., :2], torch.ones(1, 6, dtype=torch.bool), torch.ones(2))
