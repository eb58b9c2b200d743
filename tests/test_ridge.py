"""Closed-form ridge probe: recovers linear maps, matches least squares, primal == dual, CV."""

import pytest
import torch

from css_pose.probe import RidgeProbe, fit_ridge_cv, kfold_indices


def _data(n, d, m, noise, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = 3 * torch.randn(n, d, generator=g, dtype=torch.float64) + 1
    w = torch.randn(d, m, generator=g, dtype=torch.float64)
    b = torch.randn(m, generator=g, dtype=torch.float64)
    y = x @ w + b + noise * torch.randn(n, m, generator=g, dtype=torch.float64)
    return x, y, w, b


def test_recovers_known_linear_map_with_noise():
    x, y, w, b = _data(2000, 8, 3, noise=0.1)
    probe = RidgeProbe(alpha=1e-3).fit(x, y)
    # weights on the raw features = weights on standardised features / std
    torch.testing.assert_close(probe.weight / probe.x_std[:, None], w, atol=5e-3, rtol=0)
    x_new = torch.randn(10, 8, dtype=torch.float64)
    torch.testing.assert_close(probe.predict(x_new), x_new @ w + b, atol=2e-2, rtol=0)
    # float32 in, float32 out
    assert probe.predict(x_new.float()).dtype == torch.float32


def test_small_alpha_matches_least_squares_with_intercept():
    x, y, _, _ = _data(50, 6, 2, noise=1.0)
    probe = RidgeProbe(alpha=1e-10, solver="primal").fit(x, y)
    design = torch.cat([x, torch.ones(50, 1, dtype=torch.float64)], dim=1)
    coef = torch.linalg.lstsq(design, y).solution
    torch.testing.assert_close(probe.predict(x), design @ coef, atol=1e-7, rtol=0)


@pytest.mark.parametrize("n", [20, 80])  # fewer and more samples than features
def test_dual_and_primal_agree(n):
    x, y, _, _ = _data(n, 40, 3, noise=0.5)
    primal = RidgeProbe(alpha=0.7, solver="primal").fit(x, y)
    dual = RidgeProbe(alpha=0.7, solver="dual").fit(x, y)
    torch.testing.assert_close(primal.weight, dual.weight, atol=1e-9, rtol=0)
    x_new = torch.randn(5, 40, dtype=torch.float64)
    torch.testing.assert_close(primal.predict(x_new), dual.predict(x_new), atol=1e-9, rtol=0)


def test_constant_feature_is_harmless():
    x, y, _, _ = _data(30, 4, 1, noise=0.1)
    x[:, 2] = 5.0
    pred = RidgeProbe(alpha=0.1).fit(x, y).predict(x)
    assert torch.isfinite(pred).all()


def test_kfold_indices_never_split_a_group():
    groups = torch.tensor([3, 3, 1, 1, 1, 7, 7, 2, 9, 9, 9, 9])
    folds = kfold_indices(len(groups), 3, groups)
    seen = torch.cat([val for _, val in folds]).sort().values
    torch.testing.assert_close(seen, torch.arange(len(groups)))
    for train, val in folds:
        assert set(groups[train].tolist()).isdisjoint(groups[val].tolist())
        assert len(train) + len(val) == len(groups)
    with pytest.raises(ValueError, match="groups"):
        kfold_indices(len(groups), 6, groups)


def test_cv_picks_shrinkage_for_noise_and_little_for_clean_data():
    alphas = (1e-4, 1e-2, 1.0, 100.0, 1e4)
    groups = torch.arange(60) // 6  # 10 "videos" of 6 frames
    x, clean, _, _ = _data(60, 30, 2, noise=0.0)
    probe, scores = fit_ridge_cv(x, clean, alphas, n_folds=5, groups=groups)
    assert scores.shape == (5,)
    assert probe.alpha == 1e-4
    noise = torch.randn(60, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    probe, scores = fit_ridge_cv(x, noise, alphas, n_folds=5, groups=groups)
    assert probe.alpha >= 100.0  # strong shrinkage; the exact winner depends on the noise draw
    assert probe.alpha == alphas[int(scores.argmin())]


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="alpha"):
        RidgeProbe(alpha=0.0)
    with pytest.raises(ValueError, match="solver"):
        RidgeProbe(solver="svd")
    with pytest.raises(RuntimeError, match="before fit"):
        RidgeProbe().predict(torch.zeros(2, 3))


@pytest.mark.parametrize("n,d", [(60, 8), (12, 30)])
def test_ridge_path_matches_separate_solves(n, d):
    from css_pose.probe.ridge import _ridge_path

    gen = torch.Generator().manual_seed(3)
    x, y = torch.randn(n, d, generator=gen), torch.randn(n, 4, generator=gen)
    x[:, 0] = 2.0  # a constant column
    x_val = torch.randn(9, d, generator=gen)
    alphas = (0.01, 1.0, 100.0)
    for a, pred in zip(alphas, _ridge_path(x, y, x_val, alphas), strict=True):
        want = RidgeProbe(a).fit(x, y).predict(x_val.double())
        torch.testing.assert_close(pred, want, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("n,d", [(200, 12), (30, 50)])
def test_cv_many_matches_one_target_at_a_time(n, d):
    """The shared-Gram cross-validation scores every alpha as separate fits would."""
    from css_pose.probe import fit_ridge_cv_many
    from css_pose.probe.ridge import kfold_indices as folds_of

    gen = torch.Generator().manual_seed(5)
    x = torch.randn(n, d, generator=gen) * 3 + 2
    ys = {"a": torch.randn(n, 3, generator=gen), "b": x[:, :2] @ torch.randn(2, 4, generator=gen)}
    groups = torch.arange(n) // 5
    alphas = (0.1, 10.0, 1000.0)
    many = fit_ridge_cv_many(x, ys, alphas, n_folds=4, groups=groups)
    for name, y in ys.items():
        want = torch.zeros(len(alphas), dtype=torch.float64)
        for train, val in folds_of(n, 4, groups):
            for i, a in enumerate(alphas):
                pred = RidgeProbe(a).fit(x[train], y[train]).predict(x[val].double())
                want[i] += (pred - y[val].double()).pow(2).mean() / 4
        torch.testing.assert_close(many[name][1], want, rtol=1e-6, atol=1e-9)
        assert many[name][0].alpha == alphas[int(torch.argmin(want))]
