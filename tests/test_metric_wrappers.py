"""torchmetrics wrappers: equal to the functional metrics, also when merged from two "ranks"."""

from __future__ import annotations

import pytest
import torch

from css_pose.metrics import mpjpe, p_mpjpe, pck
from css_pose.metrics.torchmetrics_wrappers import MPJPE, PCK, PMPJPE


def _poses(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    target = torch.randn(10, 17, 3, generator=gen, dtype=torch.float64) * 200
    pred = target + torch.randn(10, 17, 3, generator=gen, dtype=torch.float64) * 30
    mask = torch.rand(10, 17, generator=gen) > 0.3
    # Unequal halves in valid joints: a mean of the two halves' means would be wrong.
    mask[:3] = False
    mask[0, :2] = True
    return pred, target, mask


def _merged(cls, args_a, args_b, **kw):
    """Two metric instances, as on two DDP ranks, merged the way a sync sums their states."""
    a, b = cls(**kw), cls(**kw)
    a.update(*args_a)
    b.update(*args_b)
    a.merge_state(b)
    return a.compute()


@pytest.mark.parametrize(("cls", "fn"), [(MPJPE, mpjpe), (PMPJPE, p_mpjpe)])
def test_3d_wrappers_match_functional_after_merge(cls, fn):
    pred, target, mask = _poses()
    whole = fn(pred, target, mask)
    half_a, half_b = (pred[:4], target[:4], mask[:4]), (pred[4:], target[4:], mask[4:])
    mean_of_means = (fn(*half_a) + fn(*half_b)) / 2
    assert not torch.isclose(mean_of_means, whole, rtol=1e-3)  # the case the sums exist for
    assert torch.isclose(_merged(cls, half_a, half_b).double(), whole, rtol=1e-5)

    metric = cls()
    for sl in (slice(0, 4), slice(4, 7), slice(7, 10)):
        metric.update(pred[sl], target[sl], mask[sl])
    assert torch.isclose(metric.compute().double(), whole, rtol=1e-5)


def test_mpjpe_closed_form():
    target = torch.zeros(2, 2, 3)
    pred = torch.tensor([[[3.0, 4, 0], [0, 0, 1]], [[0, 0, 0], [6, 8, 0]]])
    mask = torch.tensor([[True, True], [False, True]])
    metric = MPJPE()
    metric.update(pred, target, mask)
    assert metric.compute().item() == pytest.approx((5 + 1 + 10) / 3)


def test_summed_states_equal_merge():
    pred, target, mask = _poses(1)
    a, b = MPJPE(), MPJPE()
    a.update(pred[:5], target[:5], mask[:5])
    b.update(pred[5:], target[5:], mask[5:])
    summed = (a.error_sum + b.error_sum) / (a.count + b.count)
    assert torch.isclose(summed, mpjpe(pred, target, mask).double(), rtol=1e-6)


def test_pck_wrapper_matches_functional_after_merge():
    gen = torch.Generator().manual_seed(2)
    target = torch.rand(12, 17, 2, generator=gen) * 64
    pred = target + torch.randn(12, 17, 2, generator=gen) * 8
    vis = torch.rand(12, 17, generator=gen) > 0.4
    box = torch.rand(12, 2, generator=gen) * 40 + 20
    whole = pck(pred, target, vis, box, alpha=0.2)
    assert 0.05 < whole < 0.95  # neither trivial end
    merged = _merged(
        PCK,
        (pred[:5], target[:5], vis[:5], box[:5]),
        (pred[5:], target[5:], vis[5:], box[5:]),
        alpha=0.2,
    )
    assert merged.item() == pytest.approx(whole.item(), abs=1e-6)


def test_pck_closed_form_and_reset():
    target = torch.zeros(1, 3, 2)
    pred = torch.tensor([[[10.0, 0], [0, 25], [19, 0]]])
    metric = PCK(alpha=0.2)
    metric.update(pred, target, torch.tensor([[True, True, False]]), torch.tensor([[100.0, 50.0]]))
    assert metric.compute().item() == pytest.approx(0.5)  # threshold 20: 10 yes, 25 no
    metric.reset()
    assert metric.count.item() == 0


def test_states_reduce_by_sum():
    from torchmetrics.utilities.data import dim_zero_sum

    for metric in (MPJPE(), PMPJPE(), PCK()):
        assert set(metric._reductions.values()) == {dim_zero_sum}
