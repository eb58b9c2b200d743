"""The head noise model for lifters (css_pose.lifting_input): fitting recovers what made the
errors, applying it reproduces their size and timing."""

from __future__ import annotations

import numpy as np
import pytest

from css_pose.lifting_input import OUTLIER, NoiseModel, fit_noise, person_size


def _poses(n: int, t: int, rng: np.random.Generator) -> list[np.ndarray]:
    """n sequences of t frames of 17 joints spread over about 150 x 300 px."""
    base = rng.uniform([0, 0], [150, 300], (n, 1, 17, 2))
    drift = np.cumsum(rng.normal(0, 1.0, (n, t, 17, 2)), axis=1)
    return list((base + drift + 200).astype(np.float32))


def test_person_size_is_the_longer_side_of_the_keypoint_box():
    kp = np.array([[[0, 0], [30, 10], [10, 50]]], np.float32)
    assert person_size(kp).tolist() == [50.0]


@pytest.mark.parametrize("rho", [0.0, 0.8])
def test_fit_recovers_inlier_sigma_and_correlation(rho):
    rng = np.random.default_rng(0)
    truth = NoiseModel([0.02] * 17, [0.0] * 17, [0.0] * 17, rho, 0.0)
    gt = _poses(40, 120, rng)
    pred = [truth.apply(g, rng) for g in gt]
    fit = fit_noise(pred, gt)
    assert fit.frames == 40 * 120
    assert np.allclose(fit.sigma, 0.02, rtol=0.1)
    assert max(fit.outlier_rate) < 0.001  # 0.1 is five sigma
    assert abs(fit.rho - rho) < 0.05


def test_fit_recovers_outlier_rate_size_and_persistence():
    rng = np.random.default_rng(1)
    truth = NoiseModel([0.01] * 17, [0.1] * 17, [0.5] * 17, 0.0, 0.8)
    gt = _poses(40, 120, rng)
    pred = [truth.apply(g, rng) for g in gt]
    fit = fit_noise(pred, gt)
    # An outlier of sigma 0.5 per axis lands within OUTLIER (0.1) 2 % of the time.
    assert OUTLIER == 0.1
    assert abs(np.mean(fit.outlier_rate) - 0.098) < 0.01
    assert abs(np.mean(fit.outlier_sigma) - 0.5) < 0.03
    assert abs(fit.outlier_stay - 0.8) < 0.04
    assert np.allclose(fit.sigma, 0.01, rtol=0.15)


def test_noise_model_saves_and_loads(tmp_path):
    model = NoiseModel([0.02] * 17, [0.05] * 17, [0.3] * 17, 0.5, 0.7, frames=10, source="h.pt")
    assert NoiseModel.load(model.save(tmp_path / "noise.json")) == model
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="bad.json: not a noise model"):
        NoiseModel.load(tmp_path / "bad.json")


def test_fit_recovers_left_right_swaps_and_does_not_count_them_as_outliers():
    from css_pose.lifting_input import swapped_pairs

    rng = np.random.default_rng(2)
    truth = NoiseModel([0.01] * 17, [0.0] * 17, [0.0] * 17, 0.0, 0.0, swap_rate=0.1, swap_stay=0.8)
    gt = _poses(40, 120, rng)
    pred = [truth.apply(g, rng) for g in gt]
    fit = fit_noise(pred, gt)
    # A pair whose joints lie within OUTLIER of each other cannot be told from a swap: a few
    # swaps go unseen, never more than that.
    assert 0.08 < fit.swap_rate <= 0.1 + 0.01
    assert abs(fit.swap_stay - 0.8) < 0.05
    assert max(fit.outlier_rate) < 0.01
    assert np.allclose(fit.sigma, 0.01, rtol=0.15)
    # One frame, one known swap (left and right hips exchanged).
    g = gt[0][:1].copy()
    p = g.copy()
    p[0, [1, 4]] = g[0, [4, 1]]
    found = swapped_pairs(p, g)[0]
    assert np.linalg.norm(g[0, 1] - g[0, 4]) > 2 * OUTLIER * person_size(g)[0]  # told apart
    assert found.tolist() == [True, False, False, False, False, False]
