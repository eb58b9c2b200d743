"""Person crops and augmentation for video samples.

Geometry: a square crop around a box centre, side = max(box w, h) * pad, resized to ``size`` px in
one ``cv2.warpAffine``; pixels outside the frame are zero. Coordinates use OpenCV's convention
(pixel centres at integers) for images, keypoints and boxes alike, so the same 2x3 matrix moves
both. Without a box the whole frame is used, letterboxed: the square is centred on the frame with
side max(W, H), so nothing is cut off and the shorter side is padded with zeros.

Appearance: brightness, contrast, saturation, hue and grayscale are all linear in RGB (contrast
blends towards the sample's mean gray), so one augmentation is a single affine colour map applied
with the same parameters to every frame of a sample; content that does not change over time stays
unchanged across the sample's frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# ITU-R BT.601 luma weights, as in torchvision's rgb_to_grayscale.
GRAY = np.array([0.299, 0.587, 0.114])
_RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation ranges; factors are drawn uniformly in [1 - x, 1 + x].

    ``hue``: rotation in [-hue, hue] turns of the chroma plane. ``grayscale_p``: probability of
    dropping colour. ``scale``: crop side factor range. ``translate``: crop centre shift, fraction
    of the crop side. ``flip_p``: horizontal flip probability, used only where a sample's views are
    independent (views mode); a flip swaps left and right joints.
    """

    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    grayscale_p: float = 0.2
    scale: float = 0.1
    translate: float = 0.05
    flip_p: float = 0.5


@dataclass(frozen=True)
class ViewParams:
    """One drawn augmentation; the defaults are the identity."""

    brightness: float = 1.0
    contrast: float = 1.0
    saturation: float = 1.0
    hue: float = 0.0
    grayscale: bool = False
    scale: float = 1.0
    shift: tuple[float, float] = (0.0, 0.0)
    flip: bool = False


def draw_view_params(
    rng: np.random.Generator, config: AugmentConfig | None, allow_flip: bool = False
) -> ViewParams:
    """Draw one augmentation from ``config`` (None: the identity)."""
    if config is None:
        return ViewParams()

    def factor(x: float) -> float:
        return float(rng.uniform(1 - x, 1 + x))

    return ViewParams(
        brightness=factor(config.brightness),
        contrast=factor(config.contrast),
        saturation=factor(config.saturation),
        hue=float(rng.uniform(-config.hue, config.hue)),
        grayscale=bool(rng.random() < config.grayscale_p),
        scale=factor(config.scale),
        shift=(
            float(rng.uniform(-config.translate, config.translate)),
            float(rng.uniform(-config.translate, config.translate)),
        ),
        flip=allow_flip and bool(rng.random() < config.flip_p),
    )


def whole_frame_box(width: int, height: int) -> np.ndarray:
    """(4,) xyxy box of the whole frame's pixel area, for crops without an annotation."""
    return np.array([-0.5, -0.5, width - 0.5, height - 0.5], np.float32)


def crop_matrix(
    box: np.ndarray, size: int, pad: float = 1.25, params: ViewParams = ViewParams()
) -> np.ndarray:
    """(2, 3) affine from frame pixels to crop pixels for the square crop around ``box``.

    ``box`` (4,) xyxy px. The crop side is max(w, h) * ``pad`` * ``params.scale`` (at least 1 px),
    its centre the box centre shifted by ``params.shift`` crop sides; ``params.flip`` mirrors it.
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    side = max(max(x2 - x1, y2 - y1) * pad * params.scale, 1.0)
    cx = (x1 + x2) / 2 + params.shift[0] * side
    cy = (y1 + y2) / 2 + params.shift[1] * side
    a = size / side
    # Frame point (cx, cy) goes to the crop centre (size - 1) / 2.
    matrix = np.array([[a, 0.0, (size - 1) / 2 - a * cx], [0.0, a, (size - 1) / 2 - a * cy]])
    if params.flip:
        matrix[0] = -matrix[0]
        matrix[0, 2] += size - 1
    return matrix


def warp_crop(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """Crop + resize (H, W, 3) uint8 -> (size, size, 3) uint8 by ``matrix``; zeros outside."""
    return cv2.warpAffine(
        image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
    )


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a (2, 3) affine to (..., 2) px points."""
    return points @ matrix[:, :2].T + matrix[:, 2]


def colour_matrix(params: ViewParams) -> np.ndarray:
    """(3, 3) linear RGB map of saturation, then hue rotation, then optional grayscale."""
    to_gray = np.outer(np.ones(3), GRAY)
    saturation = params.saturation * np.eye(3) + (1 - params.saturation) * to_gray
    angle = 2 * np.pi * params.hue
    rotate = np.array(
        [[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]]
    )
    hue = np.linalg.inv(_RGB_TO_YIQ) @ rotate @ _RGB_TO_YIQ
    matrix = hue @ saturation
    return to_gray @ matrix if params.grayscale else matrix


def apply_colour(frames: np.ndarray, params: ViewParams) -> np.ndarray:
    """Colour-augment (N, H, W, 3) uint8 RGB frames with one set of parameters; saturates.

    x -> M (c b x + (1 - c) m), with brightness b, contrast c towards m = the mean gray of the
    brightened frames (all N together), and M = :func:`colour_matrix`.
    """
    b, c = params.brightness, params.contrast
    rows = frames.reshape(-1, frames.shape[-2], 3)  # cv2 maps (rows, cols, 3) images
    mean_gray = b * float(np.dot(cv2.mean(rows)[:3], GRAY))
    matrix = colour_matrix(params)
    affine = np.concatenate([c * b * matrix, (1 - c) * mean_gray * matrix.sum(1, keepdims=True)], 1)
    return cv2.transform(rows, affine).reshape(frames.shape)
