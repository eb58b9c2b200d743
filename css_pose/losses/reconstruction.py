"""Reconstruction loss of CSS: L1 plus an optional structural-similarity term.

Used by CSS (Honari et al., "Temporal Representation Learning on Monocular Videos for 3D Human Pose
Estimation", TPAMI 2022) on the swapped reconstructions; SSIM after Wang et al., "Image Quality
Assessment: From Error Visibility to Structural Similarity", IEEE TIP 2004.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
# Stabilisers (K1 L)^2 and (K2 L)^2 with K1 = 0.01, K2 = 0.03 and data range L = 1.
SSIM_C1 = 0.01**2
SSIM_C2 = 0.03**2


def _gaussian_window(size: int, sigma: float) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return torch.outer(g, g)  # (size, size), sums to 1


def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean SSIM of images in [0, 1], per channel, 11x11 Gaussian window (sigma 1.5), no padding.

    Args:
        x, y: (B, C, H, W) with H, W >= 11.
    Returns:
        scalar mean of the SSIM map over batch, channels and valid positions.
    """
    c = x.shape[1]
    window = _gaussian_window(SSIM_WINDOW, SSIM_SIGMA).to(x)
    window = window.expand(c, 1, SSIM_WINDOW, SSIM_WINDOW)  # depthwise: (C, 1, 11, 11)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, window, groups=c)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    num = (2 * mu_x * mu_y + SSIM_C1) * (2 * cov + SSIM_C2)
    den = (mu_x**2 + mu_y**2 + SSIM_C1) * (var_x + var_y + SSIM_C2)
    return (num / den).mean()


class ReconstructionLoss(nn.Module):
    """L = mean |x_hat - x| + ssim_weight * (1 - SSIM(x_hat, x)).

    Args:
        ssim_weight: weight >= 0 of the (1 - SSIM) term; 0 gives plain L1.
    """

    def __init__(self, ssim_weight: float = 0.0):
        super().__init__()
        if ssim_weight < 0:
            raise ValueError(f"ssim_weight must be >= 0, got {ssim_weight}")
        self.ssim_weight = ssim_weight

    def forward(self, x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Args:
            x_hat: (B, C, H, W) reconstruction in [0, 1].
            x: (B, C, H, W) target in [0, 1]; H, W >= 11 when ``ssim_weight > 0``.
        Returns:
            scalar loss.
        """
        if x_hat.shape != x.shape or x.ndim != 4:
            raise ValueError(f"expected equal (B, C, H, W) shapes, got {x_hat.shape} and {x.shape}")
        loss = (x_hat - x).abs().mean()
        if self.ssim_weight > 0:
            if min(x.shape[-2:]) < SSIM_WINDOW:
                raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW}")
            loss = loss + self.ssim_weight * (1 - ssim(x_hat, x))
        return loss
