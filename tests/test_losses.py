"""Losses against values computed by hand on tiny 2-D embeddings."""

import math

import pytest
import torch
from torchmetrics.functional.image import structural_similarity_index_measure

from css_pose.losses import (
    GradualTransitionLoss,
    InvarianceLoss,
    ReconstructionLoss,
    TemporalInfoNCE,
    ssim,
)

S2 = math.sqrt(2)


def t(*rows):
    return torch.tensor(rows, dtype=torch.float64)


# --- TemporalInfoNCE -------------------------------------------------------------------------


def test_temporal_infonce_hand_value():
    # sample 0 (video 0): a=(2,0) p=(1,1) n=(0,3); sample 1 (video 1): a=(-1,0) p=(-1,0) n=(0,-1)
    anchor = t([2, 0], [-1, 0])
    positives = t([[1, 1]], [[-1, 0]])
    negatives = t([[0, 3]], [[0, -1]])
    tau = 0.5
    loss = TemporalInfoNCE(temperature=tau)(anchor, positives, negatives, torch.tensor([0, 1]))
    # anchor 0: cos(pos) = 1/sqrt2, own negative 0, sample 1's frames -1, -1, 0
    l0 = -math.log(
        math.exp(1 / S2 / tau) / (math.exp(1 / S2 / tau) + 1 + math.exp(-1 / tau) * 2 + math.exp(0))
    )
    # anchor 1: cos(pos) = 1, own negative 0, sample 0's frames -1, -1/sqrt2, 0
    l1 = -math.log(
        math.exp(1 / tau)
        / (math.exp(1 / tau) + 1 + math.exp(-1 / tau) + math.exp(-1 / S2 / tau) + 1)
    )
    assert loss.item() == pytest.approx((l0 + l1) / 2, abs=1e-12)


def test_temporal_infonce_masks_same_video_frames_of_other_samples():
    # samples 0 and 2 share video 0, so they are not each other's negatives; no hard negatives.
    anchor = t([1, 0], [0, 1], [-1, 0])
    positives = t([[1, 0]], [[0, 1]], [[-1, 0]])
    negatives = torch.zeros(3, 0, 2, dtype=torch.float64)
    loss = TemporalInfoNCE(temperature=1.0)(anchor, positives, negatives, torch.tensor([0, 1, 0]))
    # anchors 0 and 2 see sample 1's two frames (cos 0); anchor 1 sees the four frames of 0 and 2.
    expected = (2 * math.log(1 + 2 / math.e) + math.log(1 + 4 / math.e)) / 3
    assert loss.item() == pytest.approx(expected, abs=1e-12)


def test_temporal_infonce_averages_over_positives_and_has_finite_grads():
    anchor = t([1, 0], [0, 1]).requires_grad_()
    positives = t([[1, 0], [0, 1]], [[0, 1], [0, 1]])  # cosines (1, 0) and (1, 1)
    negatives = torch.zeros(2, 0, 2, dtype=torch.float64)
    loss = TemporalInfoNCE(temperature=1.0)(anchor, positives, negatives, torch.tensor([0, 0]))
    # one video only: no negatives at all, every term is -log(e^s / e^s) = 0
    assert loss.item() == pytest.approx(0.0, abs=1e-12)
    loss.backward()
    assert torch.isfinite(anchor.grad).all()

    loss = TemporalInfoNCE(temperature=1.0)(anchor, positives, negatives, torch.tensor([0, 1]))
    # anchor 0 negatives: sample 1's frames (0,1) x3 -> cos 0; anchor 1: (1,0),(1,0) cos 0, (0,1) 1
    l00 = math.log(1 + 3 / math.e)
    l01 = math.log(1 + 3)
    l1 = math.log(1 + (2 + math.e) / math.e)
    assert loss.item() == pytest.approx((l00 + l01 + 2 * l1) / 4, abs=1e-12)


def test_temporal_infonce_checks_arguments():
    with pytest.raises(ValueError, match="temperature"):
        TemporalInfoNCE(temperature=0.0)
    loss = TemporalInfoNCE()
    with pytest.raises(ValueError, match="video_ids"):
        loss(torch.randn(2, 3), torch.randn(2, 1, 3), torch.randn(2, 1, 3), torch.tensor([0]))
    with pytest.raises(ValueError, match="positive"):
        loss(torch.randn(2, 3), torch.randn(2, 0, 3), torch.randn(2, 1, 3), torch.tensor([0, 1]))


def test_temporal_infonce_gather_flag_without_distributed_is_identical():
    g = torch.Generator().manual_seed(0)
    args = (torch.randn(4, 8, generator=g), torch.randn(4, 2, 8, generator=g))
    args += (torch.randn(4, 3, 8, generator=g), torch.tensor([0, 1, 0, 2]))
    a = TemporalInfoNCE(gather_distributed=True)(*args)
    b = TemporalInfoNCE(gather_distributed=False)(*args)
    assert a.item() == b.item()


# --- GradualTransitionLoss ------------------------------------------------------------------


def test_gradual_transition_cosine_hand_value():
    anchor = t([1, 0], [0, 2])
    # sample 0 cosines (1, 0, 1/sqrt2): second pair violates; sample 1 cosines (1, 1/sqrt2, 0): fine
    transition = t([[1, 0], [0, 1], [1, 1]], [[0, 1], [1, 1], [1, 0]])
    loss = GradualTransitionLoss(margin=0.1)(anchor, transition)
    sample0 = max(0.0, 0 - 1 + 0.1) + max(0.0, 1 / S2 - 0 + 0.1)
    sample1 = max(0.0, 1 / S2 - 1 + 0.1) + max(0.0, 0 - 1 / S2 + 0.1)
    assert loss.item() == pytest.approx((sample0 + sample1) / 2, abs=1e-12)


def test_gradual_transition_sums_over_pairs():
    # cosines (0, 1, 0, 1): pairs (0->1) and (0->1) violate by 1 each, margin 0 -> sum 2
    anchor = t([1, 0])
    transition = t([[0, 1], [1, 0], [0, 1], [1, 0]])
    assert GradualTransitionLoss()(anchor, transition).item() == pytest.approx(2.0)


def test_gradual_transition_neg_l2():
    anchor = t([0, 0])
    transition = t([[1, 0], [0, 2], [0, 1]])  # similarities -1, -2, -1
    loss = GradualTransitionLoss(similarity="neg_l2")(anchor, transition)
    assert loss.item() == pytest.approx(max(0, -2 + 1) + max(0, -1 + 2))


def test_gradual_transition_checks_arguments():
    with pytest.raises(ValueError, match="margin"):
        GradualTransitionLoss(margin=-1)
    with pytest.raises(ValueError, match="similarity"):
        GradualTransitionLoss(similarity="dot")
    with pytest.raises(ValueError, match="k >= 2"):
        GradualTransitionLoss()(torch.randn(2, 3), torch.randn(2, 1, 3))


# --- InvarianceLoss -------------------------------------------------------------------------


def test_invariance_cosine_hand_value():
    # sample 0: directions (1,0), (0,1) -> centroid (1/2, 1/2), cos 1/sqrt2 each; sample 1 agrees
    z = t([[1, 0], [0, 3]], [[1, 1], [2, 2]])
    loss = InvarianceLoss(mode="cosine")(z)
    assert loss.item() == pytest.approx((2 * (1 - 1 / S2) + 0) / 4, abs=1e-12)


def test_invariance_l2_hand_value():
    z = t([[0, 0], [2, 0]], [[1, 1], [1, 1]])  # centroid (1, 0): squared distances 1, 1; then 0, 0
    assert InvarianceLoss(mode="l2")(z).item() == pytest.approx(0.5)


def test_invariance_contrast_hand_value():
    z = t([[1, 0], [2, 0]], [[0, 1], [0, 5]])
    loss = InvarianceLoss(contrast_temperature=1.0)
    # agreement 0; each frame: positive cos 1, two negatives cos 0
    assert loss(z, torch.tensor([0, 1])).item() == pytest.approx(math.log(1 + 2 / math.e))
    # samples of one video: no negatives, all contrast terms 0; agreement still 0
    assert loss(z, torch.tensor([3, 3])).item() == pytest.approx(0.0, abs=1e-12)
    tau = 0.5
    z = t([[1, 0], [1, 1]], [[0, 1], [0, 1]])
    # agreement: sample 0 directions at 45 deg -> cos 22.5 deg to centroid; sample 1 agrees
    agree = 2 * (1 - math.cos(math.pi / 8)) / 4
    # frames: a=(1,0), b=(1,1)/sqrt2 (video 0); c=d=(0,1) (video 1)
    l_ab = math.log(1 + 2 * math.exp(0) / math.exp(1 / S2 / tau))  # a's negatives: c, d (cos 0)
    l_ba = math.log(1 + 2 * math.exp(1 / S2 / tau) / math.exp(1 / S2 / tau))
    l_cd = math.log(1 + (1 + math.exp(1 / S2 / tau)) / math.exp(1 / tau))  # negatives a, b
    expected = agree + (l_ab + l_ba + 2 * l_cd) / 4
    got = InvarianceLoss(contrast_temperature=tau)(z, torch.tensor([0, 1]))
    assert got.item() == pytest.approx(expected, abs=1e-12)


def test_invariance_checks_arguments():
    with pytest.raises(ValueError, match="mode"):
        InvarianceLoss(mode="l1")
    with pytest.raises(ValueError, match="contrast_temperature"):
        InvarianceLoss(contrast_temperature=0.0)
    with pytest.raises(ValueError, match="video_ids"):
        InvarianceLoss(contrast_temperature=0.1)(torch.randn(2, 2, 3))
    with pytest.raises(ValueError, match="N >= 2"):
        InvarianceLoss()(torch.randn(2, 1, 3))


# --- ReconstructionLoss ---------------------------------------------------------------------


def test_reconstruction_l1_and_ssim_on_constant_images():
    x_hat = torch.full((2, 3, 16, 16), 0.25, dtype=torch.float64)
    x = torch.full((2, 3, 16, 16), 0.75, dtype=torch.float64)
    assert ReconstructionLoss()(x_hat, x).item() == pytest.approx(0.5)
    # constant images: zero (co)variances, SSIM = (2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1)
    c1 = 0.01**2
    ssim_value = (2 * 0.25 * 0.75 + c1) / (0.25**2 + 0.75**2 + c1)
    loss = ReconstructionLoss(ssim_weight=0.5)(x_hat, x)
    assert loss.item() == pytest.approx(0.5 + 0.5 * (1 - ssim_value), abs=1e-12)
    assert ReconstructionLoss(ssim_weight=1.0)(x, x).item() == pytest.approx(0.0, abs=1e-12)


def test_ssim_matches_torchmetrics_on_valid_region():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 24, 24, generator=g, dtype=torch.float64)
    y = (x + 0.2 * torch.randn(x.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    _, full = structural_similarity_index_measure(
        y, x, data_range=1.0, sigma=1.5, kernel_size=11, return_full_image=True
    )
    # torchmetrics reflect-pads by 5; its map without the padded border is our valid map
    assert ssim(y, x).item() == pytest.approx(full[..., 5:-5, 5:-5].mean().item(), abs=1e-10)


def test_reconstruction_checks_arguments():
    with pytest.raises(ValueError, match="ssim_weight"):
        ReconstructionLoss(ssim_weight=-1)
    with pytest.raises(ValueError, match="11x11"):
        ReconstructionLoss(ssim_weight=1)(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))
