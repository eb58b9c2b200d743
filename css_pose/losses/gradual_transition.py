"""Gradual-transition ranking loss: similarity to the anchor falls as the temporal distance grows.

From CSS (Honari et al., "Temporal Representation Learning on Monocular Videos for 3D Human Pose
Estimation", TPAMI 2022).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SIMILARITIES = ("cosine", "neg_l2")


class GradualTransitionLoss(nn.Module):
    """Hinge on consecutive similarities along frames ordered by distance to the anchor.

    For anchor a_b and frames x_b1..x_bk at offsets d_1 < d_2 < ... < d_k from it:

        L = mean over b of  sum_{j=1}^{k-1} max(0, sim(a_b, x_b,j+1) - sim(a_b, x_bj) + m)

    i.e. a sum over the k - 1 consecutive pairs and a mean over the batch.

    Args:
        margin: m >= 0, in similarity units.
        similarity: ``cosine`` (cosine similarity) or ``neg_l2`` (minus the Euclidean distance).
    """

    def __init__(self, margin: float = 0.0, similarity: str = "cosine"):
        super().__init__()
        if margin < 0:
            raise ValueError(f"margin must be >= 0, got {margin}")
        if similarity not in SIMILARITIES:
            raise ValueError(f"similarity must be one of {SIMILARITIES}, got {similarity!r}")
        self.margin = margin
        self.similarity = similarity

    def forward(self, anchor: torch.Tensor, transition: torch.Tensor) -> torch.Tensor:
        """Args:
            anchor: (B, D).
            transition: (B, k, D), k >= 2, ordered by increasing temporal distance to the anchor.
        Returns:
            scalar loss.
        """
        if transition.ndim != 3 or transition.shape[0] != anchor.shape[0]:
            raise ValueError(f"transition must be (B, k, D), got {tuple(transition.shape)}")
        if transition.shape[1] < 2 or transition.shape[2] != anchor.shape[1]:
            raise ValueError(
                f"need anchor (B, D) and transition (B, k >= 2, D), got {tuple(anchor.shape)} "
                f"and {tuple(transition.shape)}"
            )
        if self.similarity == "cosine":
            sim = F.cosine_similarity(anchor[:, None], transition, dim=-1)  # (B, k)
        else:
            sim = -torch.linalg.vector_norm(anchor[:, None] - transition, dim=-1)  # (B, k)
        hinge = F.relu(sim[:, 1:] - sim[:, :-1] + self.margin)  # (B, k - 1)
        return hinge.sum(dim=1).mean()
