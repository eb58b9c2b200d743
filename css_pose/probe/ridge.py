"""Closed-form ridge regression probe on frozen features, with grouped k-fold selection of alpha.

Features are standardised with the training mean/std and targets centred, so the intercept is not
penalised. Solved in float64 in the primal form (D x D system) or the dual form (N x N system,
cheaper when N < D); both give the same weights.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

SOLVERS = ("auto", "primal", "dual")


class RidgeProbe:
    """Ridge regression Y ~ standardise(X) W + b, minimising |Xs W - Yc|^2 + alpha |W|^2.

    Args:
        alpha: regularisation strength > 0 (in units of squared standardised features).
        solver: ``primal`` solves (Xs^T Xs + alpha I) W = Xs^T Yc; ``dual`` solves
            W = Xs^T (Xs Xs^T + alpha I)^-1 Yc; ``auto`` picks dual when N < D.
    """

    def __init__(self, alpha: float = 1.0, solver: str = "auto"):
        if alpha <= 0:
            raise ValueError(f"alpha must be > 0, got {alpha}")
        if solver not in SOLVERS:
            raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
        self.alpha = alpha
        self.solver = solver
        # Set by fit, float64: weight (D, M) acts on standardised features.
        self.weight: torch.Tensor | None = None
        self.x_mean: torch.Tensor | None = None  # (D,)
        self.x_std: torch.Tensor | None = None  # (D,)
        self.y_mean: torch.Tensor | None = None  # (M,)

    def fit(self, x: torch.Tensor, y: torch.Tensor) -> RidgeProbe:
        """Fit on features x (N, D) and targets y (N, M); returns self."""
        if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
            raise ValueError(
                f"expected x (N, D) and y (N, M), got {tuple(x.shape)}, {tuple(y.shape)}"
            )
        x, y = x.double(), y.double()
        n, d = x.shape
        self.x_mean = x.mean(dim=0)
        std = x.std(dim=0, correction=0)
        # Constant features stay zero after centring; a unit std keeps them finite.
        self.x_std = torch.where(std > 0, std, torch.ones_like(std))
        self.y_mean = y.mean(dim=0)
        xs, yc = (x - self.x_mean) / self.x_std, y - self.y_mean
        dual = self.solver == "dual" or (self.solver == "auto" and n < d)
        if dual:
            gram = xs @ xs.T + self.alpha * torch.eye(n, dtype=xs.dtype, device=xs.device)
            self.weight = xs.T @ torch.linalg.solve(gram, yc)
        else:
            cov = xs.T @ xs + self.alpha * torch.eye(d, dtype=xs.dtype, device=xs.device)
            self.weight = torch.linalg.solve(cov, xs.T @ yc)
        return self

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Features x (N, D) -> predictions (N, M), in x's floating dtype."""
        if self.weight is None:
            raise RuntimeError("RidgeProbe.predict called before fit")
        if x.ndim != 2 or x.shape[1] != self.weight.shape[0]:
            raise ValueError(f"expected x (N, {self.weight.shape[0]}), got {tuple(x.shape)}")
        out = ((x.double() - self.x_mean) / self.x_std) @ self.weight + self.y_mean
        return out.to(x.dtype if x.is_floating_point() else torch.float32)


def kfold_indices(
    n: int, n_folds: int, groups: torch.Tensor | None = None
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Split range(n) into ``n_folds`` (train, validation) index pairs.

    Without groups the folds are contiguous blocks of indices. With groups (N,) (e.g. video ids),
    the sorted unique groups are dealt round-robin to the folds, so no group is in both the train
    and the validation side of a fold.
    """
    if n_folds < 2:
        raise ValueError(f"n_folds must be >= 2, got {n_folds}")
    if groups is None:
        if n < n_folds:
            raise ValueError(f"{n} samples cannot make {n_folds} folds")
        fold_of = torch.arange(n) * n_folds // n
    else:
        if groups.shape != (n,):
            raise ValueError(f"groups must be (N,) = ({n},), got {tuple(groups.shape)}")
        uniq, inverse = torch.unique(groups.cpu(), return_inverse=True)
        if len(uniq) < n_folds:
            raise ValueError(f"{len(uniq)} groups cannot make {n_folds} folds")
        fold_of = inverse % n_folds
    idx = torch.arange(n)
    return [(idx[fold_of != k], idx[fold_of == k]) for k in range(n_folds)]


def fit_ridge_cv(
    x: torch.Tensor,
    y: torch.Tensor,
    alphas: Sequence[float] = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0),
    n_folds: int = 5,
    groups: torch.Tensor | None = None,
    solver: str = "auto",
) -> tuple[RidgeProbe, torch.Tensor]:
    """Choose alpha by k-fold cross-validated mean squared error, then refit on all data.

    Args:
        x: (N, D) features. y: (N, M) targets.
        alphas: candidate alphas.
        n_folds: number of folds (>= 2).
        groups: optional (N,) group ids (video ids); folds never split a group.
        solver: as :class:`RidgeProbe`.
    Returns:
        the probe fitted on all of (x, y) with the best alpha, and the validation MSE of each
        alpha (len(alphas),), float64 (mean over folds of the per-fold mean over samples and
        outputs).
    """
    return fit_ridge_cv_many(x, {"y": y}, alphas, n_folds, groups, solver)["y"]


def fit_ridge_cv_many(
    x: torch.Tensor,
    ys: dict[str, torch.Tensor],
    alphas: Sequence[float] = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0),
    n_folds: int = 5,
    groups: torch.Tensor | None = None,
    solver: str = "auto",
) -> dict[str, tuple[RidgeProbe, torch.Tensor]]:
    """:func:`fit_ridge_cv` for several targets of the same features, each with its own alpha.

    The folds' Gram matrices come from the full one minus each held-out part and are shared by
    every target and alpha (one eigendecomposition per fold), so the cross-validation costs
    about two passes over ``x`` instead of one per fold, alpha and target.

    Args:
        ys: name -> (N, M_name) targets.
    Returns:
        name -> (probe refitted on all data with that target's best alpha, validation MSE per
        alpha (len(alphas),) float64).
    """
    if len(alphas) == 0:
        raise ValueError("alphas must not be empty")
    if min(alphas) <= 0:
        raise ValueError(f"alphas must be > 0, got {list(alphas)}")
    folds = kfold_indices(x.shape[0], n_folds, groups)
    names = list(ys)
    widths = [ys[k].shape[1] for k in names]
    y_all = torch.cat([ys[k].double() for k in names], dim=1)
    scores = torch.zeros(len(names), len(alphas), dtype=torch.float64)
    x64 = x.double()
    gram, xty = (x64.T @ x64, x64.T @ y_all) if x.shape[0] >= x.shape[1] else (None, None)
    for train, val in folds:
        if gram is not None and len(train) >= x.shape[1]:
            preds = _primal_fold(x64, y_all, gram, xty, train, val, alphas)
        else:
            preds = _ridge_path(x64[train], y_all[train], x64[val], alphas)
        for i, pred in enumerate(preds):
            err = (pred - y_all[val]).pow(2).mean(0)  # per output column
            for t, part in enumerate(err.split(widths)):
                scores[t, i] += part.mean() / len(folds)
    out = {}
    for t, k in enumerate(names):
        best = alphas[int(torch.argmin(scores[t]))]
        out[k] = (RidgeProbe(best, solver).fit(x, ys[k]), scores[t])
    return out


def _primal_fold(x, y, gram, xty, train, val, alphas) -> list[torch.Tensor]:
    """Held-out predictions of the ridge fitted on ``train`` rows, from the full Gram matrix
    ``gram`` = X^T X and ``xty`` = X^T Y minus the ``val`` rows (float64 throughout)."""
    xv, yv = x[val], y[val]
    n = len(train)
    g = gram - xv.T @ xv
    sx = x.sum(0) - xv.sum(0)
    sy = y.sum(0) - yv.sum(0)
    mean, y_mean = sx / n, sy / n
    var = (g.diagonal() / n - mean.pow(2)).clamp_min(0)
    std = var.sqrt()
    std = torch.where(std > 1e-12 * (1 + mean.abs()), std, torch.ones_like(std))
    cov = (g - n * torch.outer(mean, mean)) / torch.outer(std, std)
    xsy = (xty - xv.T @ yv - n * torch.outer(mean, y_mean)) / std[:, None]
    s, v = torch.linalg.eigh(cov)
    s = s.clamp_min(0)
    left, right = ((xv - mean) / std) @ v, v.T @ xsy
    return [left @ (right / (s + a)[:, None]) + y_mean for a in alphas]


def _ridge_path(
    x: torch.Tensor, y: torch.Tensor, x_val: torch.Tensor, alphas: Sequence[float]
) -> list[torch.Tensor]:
    """Predictions (N_val, M), float64, of :class:`RidgeProbe` fitted on (x, y) for every alpha.

    One symmetric eigendecomposition of the D x D (or, when N < D, the N x N) Gram matrix serves
    every alpha: W(alpha) = V diag(1 / (s + alpha)) V^T Xs^T Yc. The same weights as solving each
    alpha separately, at the cost of one solve.
    """
    x, y, x_val = x.double(), y.double(), x_val.double()
    mean, std = x.mean(dim=0), x.std(dim=0, correction=0)
    std = torch.where(std > 0, std, torch.ones_like(std))
    xs, yc, vs = (x - mean) / std, y - y.mean(dim=0), (x_val - mean) / std
    n, d = xs.shape
    if n < d:  # dual: W = Xs^T V diag(1 / (s + a)) V^T Yc
        s, v = torch.linalg.eigh(xs @ xs.T)
        left, right = vs @ xs.T @ v, v.T @ yc
    else:  # primal: W = V diag(1 / (s + a)) V^T Xs^T Yc
        s, v = torch.linalg.eigh(xs.T @ xs)
        left, right = vs @ v, v.T @ (xs.T @ yc)
    s = s.clamp_min(0)
    return [left @ (right / (s + a)[:, None]) + y.mean(dim=0) for a in alphas]
