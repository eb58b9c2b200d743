"""Gaussian heatmap codec (shared/methods.md section 2) and the grid helpers other codecs share.

Coordinates: keypoints are in input-crop pixels with pixel centres at integers (OpenCV), so a crop
of width W spans [-0.5, W - 0.5]. A heatmap of stride s has cell i centred on input pixel
``i * s + (s - 1) / 2``; its cells tile the crop exactly (cell i spans input pixels
[i * s - 0.5, (i + 1) * s - 0.5]), which is also the alignment of bilinear resizing with
``align_corners=False`` and makes mirroring the heatmap's width axis exact for mirrored crops.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from einops import rearrange

# Floor for heatmap values before taking logs in the sub-pixel refinement.
_LOG_FLOOR = 1e-10


def as_size(input_size: int | tuple[int, int]) -> tuple[int, int]:
    """``S`` or ``(W, H)`` -> ``(W, H)`` in pixels."""
    if isinstance(input_size, int):
        return input_size, input_size
    width, height = input_size
    return int(width), int(height)


def grid_size(input_size: tuple[int, int], stride: int) -> tuple[int, int]:
    """(W, H) input pixels -> (w, h) heatmap cells; raises unless the stride divides the size."""
    width, height = input_size
    if stride < 1 or width < 1 or height < 1 or width % stride or height % stride:
        raise ValueError(f"input size {input_size} must be positive multiples of stride {stride}")
    return width // stride, height // stride


def pixels_to_cells(points: torch.Tensor, stride: int) -> torch.Tensor:
    """(..., 2) input pixels -> (..., 2) continuous heatmap cells (cell centres at integers)."""
    return (points - (stride - 1) / 2) / stride


def cells_to_pixels(cells: torch.Tensor, stride: int) -> torch.Tensor:
    """(..., 2) continuous heatmap cells -> (..., 2) input pixels; inverse of pixels_to_cells."""
    return cells * stride + (stride - 1) / 2


def check_keypoints(keypoints: torch.Tensor, visibility: torch.Tensor) -> None:
    """Raise unless keypoints are (B, J, 2) floats and visibility is (B, J)."""
    if keypoints.ndim != 3 or keypoints.shape[-1] != 2 or not keypoints.is_floating_point():
        raise ValueError(f"keypoints must be float (B, J, 2), got {tuple(keypoints.shape)}")
    if visibility.shape != keypoints.shape[:2]:
        raise ValueError(
            f"visibility must be (B, J) = {tuple(keypoints.shape[:2])}, "
            f"got {tuple(visibility.shape)}"
        )


def keypoint_weights(
    keypoints: torch.Tensor, visibility: torch.Tensor, input_size: tuple[int, int]
) -> torch.Tensor:
    """(B, J) float weights: 1 for a visible (> 0), finite keypoint inside the crop, else 0.

    Args:
        keypoints: (B, J, 2) input pixels.
        visibility: (B, J), 0 = invisible.
        input_size: (W, H) pixels; inside means -0.5 <= x <= W - 0.5 and -0.5 <= y <= H - 0.5.
    """
    check_keypoints(keypoints, visibility)
    upper = keypoints.new_tensor(input_size) - 0.5
    inside = ((keypoints >= -0.5) & (keypoints <= upper)).all(dim=-1)  # NaN compares False
    return ((visibility > 0) & inside).to(keypoints.dtype)


def gaussian_heatmaps(
    centres: torch.Tensor, weights: torch.Tensor, size: tuple[int, int], sigma: float
) -> torch.Tensor:
    """Unnormalised Gaussians exp(-d^2 / (2 sigma^2)), peak 1 at the (sub-cell) centre.

    Args:
        centres: (B, J, 2) continuous cells (x, y).
        weights: (B, J); joints with weight 0 get an all-zero map.
        size: (w, h) cells.
        sigma: standard deviation in cells.
    Returns:
        (B, J, h, w) in centres' dtype.
    """
    width, height = size
    centres = torch.where(weights[..., None] > 0, centres, torch.zeros_like(centres))
    xs = torch.arange(width, dtype=centres.dtype, device=centres.device)
    ys = torch.arange(height, dtype=centres.dtype, device=centres.device)
    gx = torch.exp(-((xs - centres[..., :1]) ** 2) / (2 * sigma**2))  # (B, J, w)
    gy = torch.exp(-((ys - centres[..., 1:]) ** 2) / (2 * sigma**2))  # (B, J, h)
    return torch.einsum("bjh,bjw->bjhw", gy, gx) * (weights[..., None, None] > 0)


def argmax_2d(heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, J, h, w) -> integer cells (B, J, 2) as (x, y) long, and the maxima (B, J)."""
    width = heatmaps.shape[-1]
    values, index = rearrange(heatmaps, "b j h w -> b j (h w)").max(dim=-1)
    return torch.stack((index % width, index // width), dim=-1), values


def weighted_mse(pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Mean over cells of (pred - target)^2, times the joint weight, averaged over all B * J joints.

    Args:
        pred, target: (B, J, h, w).
        weights: (B, J).
    Returns:
        scalar.
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    per_joint = (pred - target).pow(2).mean(dim=(-2, -1))  # (B, J)
    return (per_joint * weights).mean()


def _refine_axis(log_h: torch.Tensor, cells: torch.Tensor, axis: int) -> torch.Tensor:
    """Vertex of the parabola through three log-heatmap samples along one axis through the argmax.

    The three samples are centred on the argmax cell, shifted inwards at the border so they stay
    on the grid; a parabola through any three samples of an exact Gaussian's log is exact. Where
    the samples are not concave the argmax cell is kept; the vertex is clamped to +-0.5 cell of
    the argmax (the discrete maximum of a unimodal peak is its nearest cell).

    Args:
        log_h: (B, J, h, w) log heatmaps.
        cells: (B, J, 2) long argmax (x, y).
        axis: 0 refines x, 1 refines y.
    Returns:
        (B, J) refined coordinate along ``axis``, cells.
    """
    height, width = log_h.shape[-2:]
    length = (width, height)[axis]
    if length < 3:
        return cells[..., axis].to(log_h.dtype)
    centre = cells[..., axis].clamp(1, length - 2)
    flat = rearrange(log_h, "b j h w -> b j (h w)")
    samples = []
    for step in (-1, 0, 1):
        at = cells.clone()
        at[..., axis] = centre + step
        index = at[..., 1] * width + at[..., 0]  # (B, J)
        samples.append(flat.gather(-1, index[..., None])[..., 0])
    before, mid, after = samples
    slope, curvature = (after - before) / 2, after - 2 * mid + before
    vertex = centre - slope / curvature.clamp(max=-torch.finfo(log_h.dtype).tiny)
    argmax = cells[..., axis].to(log_h.dtype)
    vertex = torch.where(curvature < 0, vertex, argmax)
    return torch.minimum(torch.maximum(vertex, argmax - 0.5), argmax + 0.5)


def refine_peaks(heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Argmax plus a per-axis quadratic fit on the log heatmap (DARK-style, without the blur).

    Args:
        heatmaps: (B, J, h, w).
    Returns:
        peaks (B, J, 2) continuous cells (x, y), float32; maxima (B, J) in heatmaps' dtype.
    """
    cells, values = argmax_2d(heatmaps)
    log_h = heatmaps.float().clamp_min(_LOG_FLOOR).log()
    peaks = torch.stack([_refine_axis(log_h, cells, axis) for axis in (0, 1)], dim=-1)
    return peaks, values


class HeatmapCodec:
    """Keypoints <-> Gaussian heatmaps at ``stride`` (shared/methods.md section 2).

    Args:
        input_size: crop size ``S`` or ``(W, H)``, pixels; multiples of ``stride``.
        stride: input pixels per heatmap cell.
        sigma: Gaussian standard deviation, heatmap cells.

    Encoding places a peak-1 Gaussian at each keypoint's exact sub-cell position; decoding takes the
    argmax and refines it with a quadratic fit on the log heatmap (see :func:`refine_peaks`), which
    recovers the encoded position exactly (up to float rounding) anywhere inside the crop.
    """

    def __init__(self, input_size: int | tuple[int, int], stride: int = 4, sigma: float = 2.0):
        if sigma <= 0:
            raise ValueError(f"sigma must be > 0, got {sigma}")
        self.input_size = as_size(input_size)
        self.stride = stride
        self.sigma = sigma
        self.heatmap_size = grid_size(self.input_size, stride)

    def encode(self, keypoints: torch.Tensor, visibility: torch.Tensor) -> dict[str, torch.Tensor]:
        """Training targets.

        Args:
            keypoints: (B, J, 2) input pixels.
            visibility: (B, J), 0 = invisible.
        Returns:
            ``heatmaps`` (B, J, h, w) in [0, 1] (all zero for a weight-0 joint) and
            ``heatmap_weights`` (B, J): 1 for visible joints inside the crop, else 0.
        """
        weights = keypoint_weights(keypoints, visibility, self.input_size)
        centres = pixels_to_cells(keypoints, self.stride)
        heatmaps = gaussian_heatmaps(centres, weights, self.heatmap_size, self.sigma)
        return {"heatmaps": heatmaps, "heatmap_weights": weights}

    def decode(self, outputs: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Keypoints from ``outputs["heatmaps"]`` (B, J, h, w): a head's output or encode's targets.

        Returns:
            keypoints (B, J, 2) input pixels, float32; scores (B, J) = heatmap maxima.
        """
        heatmaps = outputs["heatmaps"]
        if heatmaps.ndim != 4 or tuple(heatmaps.shape[-2:]) != self.heatmap_size[::-1]:
            raise ValueError(
                f"heatmaps must be (B, J, {self.heatmap_size[1]}, {self.heatmap_size[0]}), "
                f"got {tuple(heatmaps.shape)}"
            )
        peaks, scores = refine_peaks(heatmaps)
        return cells_to_pixels(peaks, self.stride), scores

    def loss(
        self,
        outputs: Mapping[str, torch.Tensor | list[torch.Tensor]],
        targets: Mapping[str, torch.Tensor],
    ) -> dict[str, torch.Tensor]:
        """Joint-weighted heatmap MSE (:func:`weighted_mse`) on every stage of a head's output.

        Args:
            outputs: ``stages`` (list of (B, J, h, w), first to last) when present, else
                ``heatmaps`` (B, J, h, w) as the only stage.
            targets: from :meth:`encode`.
        Returns:
            ``heatmap_stage{k}`` for k = 1, 2, ...: one scalar per stage; the loss is their sum.
        """
        stages = outputs["stages"] if "stages" in outputs else [outputs["heatmaps"]]
        return {
            f"heatmap_stage{k}": weighted_mse(pred, targets["heatmaps"], targets["heatmap_weights"])
            for k, pred in enumerate(stages, start=1)
        }
