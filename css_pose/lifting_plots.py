"""Pictures of a DG-Net-style lifter's graphs (issue 20): what its dynamic spatial and temporal
affinities look like on one window of a sequence, beside the learned skeleton prior."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from css_pose.skeleton import JOINT_NAMES


def affinity_figure(model, window: torch.Tensor, path: str | Path, title: str = "") -> Path:
    """Write a PNG of the first block's affinities (``DGNetLifter.affinities``) on ``window``
    (1, T, 17, 2) normalised 2D, at the middle kept time step: the spatial A that the DSG
    convolves with, its dynamic part (A minus the learned prior), the learned skeleton prior,
    and the temporal A_- / A_+ (joint i at t from joint j at t -+ 1). Rows are the joints that
    receive, columns the joints they read from."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    a = model.affinities(window)
    t = a["spatial"].shape[1] // 2
    dsg = model.blocks[0].dsg[0]
    prior = dsg.skeleton.detach() if dsg.skeleton is not None else torch.zeros(17, 17)
    panels = {
        "spatial A (dynamic + prior)": a["spatial"][0, t],
        "dynamic part": a["spatial"][0, t] - prior,
        "learned skeleton prior": prior,
        "temporal A_- (from t-1)": a["temporal_prev"][0, t],
        "temporal A_+ (from t+1)": a["temporal_next"][0, t],
    }
    fig = Figure(figsize=(4.0 * len(panels), 4.4), dpi=90, layout="constrained")
    FigureCanvasAgg(fig)
    short = [n.replace("_", " ") for n in JOINT_NAMES]
    for i, (name, m) in enumerate(panels.items()):
        ax = fig.add_subplot(1, len(panels), i + 1)
        image = ax.imshow(np.asarray(m), cmap="viridis")
        ax.set_title(name, fontsize=10)
        ax.set_xticks(range(17), short, rotation=90, fontsize=6)
        ax.set_yticks(range(17), short if i == 0 else [], fontsize=6)
        fig.colorbar(image, ax=ax, shrink=0.7)
    if title:
        fig.suptitle(title, fontsize=11)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
