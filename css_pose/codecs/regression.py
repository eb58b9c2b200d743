"""Codec of direct coordinate regression: keypoints <-> crop-normalised coordinates.

Normalised coordinates: ``(u + 0.5) / W`` and ``(v + 0.5) / H`` for a pixel (u, v) of a W x H crop
(pixel centres at integers), so the crop's edges are 0 and 1 and mirroring is ``x -> 1 - x``.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from css_pose.codecs.heatmap import as_size, keypoint_weights


class RegressionCodec:
    """Keypoints <-> crop-normalised coordinates, with a visibility-masked L1 loss.

    Args:
        input_size: crop size ``S`` or ``(W, H)``, pixels.
    """

    def __init__(self, input_size: int | tuple[int, int]):
        self.input_size = as_size(input_size)
        if min(self.input_size) < 1:
            raise ValueError(f"input size must be positive, got {input_size}")

    def encode(self, keypoints: torch.Tensor, visibility: torch.Tensor) -> dict[str, torch.Tensor]:
        """keypoints (B, J, 2) px, visibility (B, J) -> ``coords`` (B, J, 2) normalised and
        ``coord_weights`` (B, J): 1 for visible joints inside the crop, else 0."""
        weights = keypoint_weights(keypoints, visibility, self.input_size)
        coords = (keypoints + 0.5) / keypoints.new_tensor(self.input_size)
        coords = torch.where(weights[..., None] > 0, coords, torch.zeros_like(coords))
        return {"coords": coords, "coord_weights": weights}

    def decode(self, outputs: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """``coords`` (B, J, 2) normalised -> keypoints (B, J, 2) px, float32, and scores (B, J),
        all 1 (the head gives no confidence)."""
        coords = outputs["coords"].float()
        keypoints = coords * coords.new_tensor(self.input_size) - 0.5
        return keypoints, torch.ones_like(coords[..., 0])

    def loss(
        self, outputs: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """``coords``: mean |pred - target| (normalised units) over weighted joints and both axes,
        0 when no joint has weight."""
        weights = targets["coord_weights"][..., None]  # (B, J, 1)
        error = (outputs["coords"] - targets["coords"]).abs() * weights
        return {"coords": error.sum() / (2 * weights.sum()).clamp_min(1)}
