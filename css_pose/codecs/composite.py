"""Composite codec: coarse heatmap + short-range offsets (CLNet-style, shared/methods.md section 3).

Coordinates follow :mod:`css_pose.codecs.heatmap`: input pixels with pixel centres at integers,
heatmap cell i centred on input pixel ``i * s + (s - 1) / 2``.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from einops import rearrange

from css_pose.codecs.heatmap import (
    as_size,
    cells_to_pixels,
    gaussian_heatmaps,
    grid_size,
    keypoint_weights,
    pixels_to_cells,
    weighted_mse,
)


class CompositeCodec:
    """Keypoints <-> (low-resolution heatmap, offset maps) at ``stride``.

    Targets, per joint:

    - heatmap: a peak-1 Gaussian of standard deviation ``sigma`` cells at the keypoint's exact
      sub-cell position, so its maximum is the cell nearest the keypoint;
    - offsets (dx, dy): at every cell whose centre lies within ``radius`` cells (Euclidean) of the
      keypoint, the displacement from that cell centre to the keypoint in cells, divided by
      ``radius`` (so in [-1, 1]); zero elsewhere, where the offset mask is 0.

    Decoding takes the argmax cell and adds ``radius`` times its offset; with ``topk > 1`` it
    averages the positions so read at the ``topk`` highest cells, weighted by their heatmap values.
    Those cells must lie inside the radius: the 4 nearest cells of a keypoint at a crop corner
    reach 2.12 cells, so ``topk=4`` needs ``radius >= 2.2``.

    Args:
        input_size: crop size ``S`` or ``(W, H)``, pixels; multiples of ``stride``.
        stride: input pixels per heatmap cell.
        radius: offset radius r, cells; >= 1 so the nearest cell always carries an offset.
        sigma: heatmap Gaussian standard deviation, cells.
        topk: cells averaged at decoding.
    """

    def __init__(
        self,
        input_size: int | tuple[int, int],
        stride: int = 8,
        radius: float = 2.0,
        sigma: float = 1.0,
        topk: int = 1,
    ):
        if radius < 1:
            raise ValueError(f"radius must be >= 1 cell, got {radius}")
        if sigma <= 0:
            raise ValueError(f"sigma must be > 0, got {sigma}")
        if topk < 1:
            raise ValueError(f"topk must be >= 1, got {topk}")
        self.input_size = as_size(input_size)
        self.stride = stride
        self.radius = radius
        self.sigma = sigma
        self.topk = topk
        self.heatmap_size = grid_size(self.input_size, stride)

    def _cell_centres(self, like: torch.Tensor) -> torch.Tensor:
        """(2, h, w) (x, y) cell coordinates in ``like``'s dtype and device."""
        width, height = self.heatmap_size
        ys, xs = torch.meshgrid(
            torch.arange(height, dtype=like.dtype, device=like.device),
            torch.arange(width, dtype=like.dtype, device=like.device),
            indexing="ij",
        )
        return torch.stack((xs, ys))

    def encode(self, keypoints: torch.Tensor, visibility: torch.Tensor) -> dict[str, torch.Tensor]:
        """Training targets.

        Args:
            keypoints: (B, J, 2) input pixels.
            visibility: (B, J), 0 = invisible.
        Returns:
            ``heatmaps`` (B, J, h, w); ``heatmap_weights`` (B, J): 1 for visible joints inside the
            crop, else 0; ``offsets`` (B, J, 2, h, w) as (dx, dy) in units of ``radius`` cells;
            ``offset_mask`` (B, J, h, w): 1 within the radius of a weight-1 joint, else 0.
        """
        weights = keypoint_weights(keypoints, visibility, self.input_size)
        centres = pixels_to_cells(keypoints, self.stride)
        centres = torch.where(weights[..., None] > 0, centres, torch.zeros_like(centres))
        heatmaps = gaussian_heatmaps(centres, weights, self.heatmap_size, self.sigma)
        grid = self._cell_centres(centres)
        displacement = centres[..., None, None] - grid  # (B, J, 2, h, w), cells
        near = torch.linalg.vector_norm(displacement, dim=2) <= self.radius
        mask = near * (weights[..., None, None] > 0)
        offsets = displacement / self.radius * mask[:, :, None]
        return {
            "heatmaps": heatmaps,
            "heatmap_weights": weights,
            "offsets": offsets,
            "offset_mask": mask.to(heatmaps.dtype),
        }

    def decode(self, outputs: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Keypoints from ``heatmaps`` (B, J, h, w) and ``offsets`` (B, J, 2, h, w).

        Accepts a head's output or :meth:`encode`'s targets.

        Returns:
            keypoints (B, J, 2) input pixels and scores (B, J) = heatmap maxima, both float32.
        """
        heatmaps, offsets = outputs["heatmaps"], outputs["offsets"]
        width, height = self.heatmap_size
        if heatmaps.ndim != 4 or heatmaps.shape[-2:] != (height, width):
            raise ValueError(f"heatmaps must be (B, J, {height}, {width}), got {heatmaps.shape}")
        if offsets.shape != (*heatmaps.shape[:2], 2, height, width):
            raise ValueError(f"offsets must be (B, J, 2, {height}, {width}), got {offsets.shape}")
        flat = rearrange(heatmaps.float(), "b j h w -> b j (h w)")
        values, index = flat.topk(self.topk, dim=-1)  # (B, J, K)
        cells = torch.stack((index % width, index // width), dim=-2).float()  # (B, J, 2, K)
        read = rearrange(offsets.float(), "b j c h w -> b j c (h w)")
        read = read.gather(-1, index[:, :, None].expand(-1, -1, 2, -1))  # (B, J, 2, K)
        positions = cells + self.radius * read
        weight = values.clamp_min(0)
        total = weight.sum(dim=-1, keepdim=True)
        # All-zero (or negative) tops carry no preference: average them evenly.
        weight = torch.where(total > 0, weight / total.clamp_min(1e-12), 1 / self.topk)
        peaks = torch.einsum("bjck,bjk->bjc", positions, weight)
        return cells_to_pixels(peaks, self.stride), values[..., 0]

    def loss(
        self, outputs: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Heatmap MSE and masked offset L1, separately (the loss is their weighted sum).

        Args:
            outputs: ``heatmaps`` (B, J, h, w) and ``offsets`` (B, J, 2, h, w).
            targets: from :meth:`encode`.
        Returns:
            ``heatmap``: joint-weighted MSE (:func:`~css_pose.codecs.heatmap.weighted_mse`);
            ``offset``: mean |pred - target| over the masked cells and both components (units of
            ``radius``), 0 when no cell is masked.
        """
        heatmap = weighted_mse(outputs["heatmaps"], targets["heatmaps"], targets["heatmap_weights"])
        mask = targets["offset_mask"][:, :, None]  # (B, J, 1, h, w)
        error = (outputs["offsets"] - targets["offsets"]).abs() * mask
        offset = error.sum() / (2 * mask.sum()).clamp_min(1)
        return {"heatmap": heatmap, "offset": offset}
