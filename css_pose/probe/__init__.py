"""Closed-form probes on frozen features."""

from css_pose.probe.ridge import RidgeProbe, fit_ridge_cv, fit_ridge_cv_many, kfold_indices

__all__ = ["RidgeProbe", "fit_ridge_cv", "fit_ridge_cv_many", "kfold_indices"]
