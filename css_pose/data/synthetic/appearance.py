"""What the synthetic scene looks like: clothing, skin, textured backgrounds and occluders.

Everything here is fixed for a whole video and drawn from the video's appearance seed, except the
occluders (paths and colours), which come from the motion seed.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import cv2
import numpy as np

SKIN_TONES = ((255, 224, 196), (241, 194, 125), (224, 172, 105), (198, 134, 66), (141, 85, 36),
              (92, 58, 36), (255, 205, 170))  # fmt: skip
HAIR_COLOURS = ((30, 25, 20), (70, 45, 30), (110, 75, 45), (200, 170, 110), (150, 150, 150),
                (150, 60, 30))  # fmt: skip
TROUSER_COLOURS = ((50, 70, 120), (30, 30, 35), (170, 150, 110), (110, 110, 115), (90, 60, 40))
SHOE_COLOURS = ((25, 25, 25), (235, 235, 230), (100, 60, 35))
PATTERNS = ("none", "stripes", "plaid", "dots")


@dataclass(frozen=True)
class Appearance:
    """One person's look. colours: material -> RGB (0-255 floats); pattern drawn on ``patterned``
    materials in ``pattern_colour`` with a period of ``pattern_mm`` along the body."""

    colours: dict[str, tuple[float, float, float]]
    pattern: str
    pattern_colour: tuple[float, float, float]
    patterned: tuple[str, ...]
    pattern_mm: float


def _random_colour(rng: np.random.Generator, sat: tuple[float, float], val: tuple[float, float]):
    r, g, b = colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(*sat), rng.uniform(*val))
    return (255 * r, 255 * g, 255 * b)


def _pick(rng: np.random.Generator, palette) -> tuple[float, float, float]:
    base = np.asarray(palette[rng.integers(len(palette))], dtype=np.float64)
    return tuple(np.clip(base * rng.uniform(0.9, 1.1, 3), 0, 255).tolist())


def sample_appearance(rng: np.random.Generator) -> Appearance:
    """Random clothing (shirt, trousers or shorts, shoes, short or long sleeves), skin, hair, pattern."""
    skin = _pick(rng, SKIN_TONES)
    shirt = _random_colour(rng, (0.2, 0.9), (0.3, 0.95))
    trousers = (
        _pick(rng, TROUSER_COLOURS)
        if rng.random() < 0.6
        else _random_colour(rng, (0.1, 0.8), (0.2, 0.8))
    )
    hair = skin if rng.random() < 0.1 else _pick(rng, HAIR_COLOURS)
    long_sleeves, shorts = rng.random() < 0.5, rng.random() < 0.25
    colours = {
        "skin": skin,
        "hair": tuple(0.9 * c for c in hair),
        "shirt": shirt,
        "forearm": shirt if long_sleeves else skin,
        "trousers": trousers,
        "shank": skin if shorts else trousers,
        "shoes": _pick(rng, SHOE_COLOURS),
    }
    pattern = PATTERNS[rng.choice(4, p=[0.35, 0.3, 0.15, 0.2])]
    # The pattern contrasts with the shirt: a light pattern on a dark shirt and vice versa.
    light = np.mean(shirt) < 128
    pattern_colour = _random_colour(rng, (0.0, 0.6), (0.8, 1.0) if light else (0.05, 0.3))
    patterned = ["shirt"] + (["forearm"] if long_sleeves else [])
    if rng.random() < 0.2:
        patterned += ["trousers"] + ([] if shorts else ["shank"])
    return Appearance(
        colours=colours,
        pattern=pattern,
        pattern_colour=pattern_colour,
        patterned=tuple(patterned),
        pattern_mm=float(rng.uniform(90, 180)),
    )


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """(h, w, 3) float32 in [-1, 1]: random values on a coarse grid, smoothly interpolated."""
    coarse = rng.uniform(-1, 1, (cells, max(2, cells * w // h), 3)).astype(np.float32)
    return cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)


def _layer(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A textured surface: base colour, vertical gradient, smooth noise at two scales."""
    base = np.array(_random_colour(rng, (0.05, 0.6), (0.25, 0.9)), dtype=np.float32)
    gradient = np.linspace(-1, 1, h, dtype=np.float32)[:, None, None] * rng.uniform(-40, 40)
    noise = _smooth_noise(rng, h, w, int(rng.integers(3, 7))) * rng.uniform(10, 40)
    noise += _smooth_noise(rng, h, w, int(rng.integers(12, 24))) * rng.uniform(3, 15)
    return base + gradient + noise


def make_background(rng: np.random.Generator, size: int, horizon: float) -> np.ndarray:
    """A static scene painted at infinity, larger than the frame so that pans can move over it.

    size: frame side in px. horizon: row of the horizon in frame coordinates (may be off-frame).
    Returns (size + 2m, size + 2m, 3) uint8 RGB with a margin m = ``background_margin(size)``;
    frame pixel (x, y) at zero pan is panorama pixel (x + m, y + m).
    """
    m = background_margin(size)
    n = size + 2 * m
    wall, floor = _layer(rng, n, n), _layer(rng, n, n)
    # Shapes on the wall (windows, posters, furniture) give the background edges and corners.
    for _ in range(int(rng.integers(3, 9))):
        colour = _random_colour(rng, (0.0, 0.8), (0.1, 1.0))
        x, y = rng.uniform(0, n, 2)
        a, b = rng.uniform(0.05, 0.3, 2) * n
        if rng.random() < 0.6:
            cv2.rectangle(wall, (int(x), int(y)), (int(x + a), int(y + b)), colour, -1, cv2.LINE_AA)
        else:
            cv2.circle(wall, (int(x), int(y)), int(a / 2), colour, -1, cv2.LINE_AA)
    # Floor boards: lines running to a vanishing point on the horizon, and crossing lines that
    # crowd together towards it.
    top = int(np.clip(horizon + m, 0, n))
    vanish_x = rng.uniform(0.3, 0.7) * n
    line = tuple(float(c) * rng.uniform(0.6, 0.9) for c in floor[n - 1, n // 2])
    for x in np.linspace(-n, 2 * n, int(rng.integers(6, 14))):
        cv2.line(floor, (int(vanish_x), top), (int(x), n), line, 1, cv2.LINE_AA)
    for k in range(1, 12):
        y = top + (n - top) * (k / 11) ** 2
        cv2.line(floor, (0, int(y)), (n, int(y)), line, 1, cv2.LINE_AA)
    scene = np.where(np.arange(n)[:, None, None] < top, wall, floor)
    return np.clip(scene, 0, 255).astype(np.uint8)


def background_margin(size: int) -> int:
    """Panorama margin in px: covers the largest pan (8 degrees at the longest focal length)."""
    return int(np.ceil(0.2 * size)) + 2


@dataclass(frozen=True)
class Occluder:
    """An opaque bar in front of everything, moving at constant speed in the image.

    x0, x1: horizontal centre in px at frames t0 and t1 (it rests there before t0 and after t1).
    y0, y1: top and bottom edge in px. width: px. colour: RGB 0-255.
    """

    x0: float
    x1: float
    t0: float
    t1: float
    y0: float
    y1: float
    width: float
    colour: tuple[float, float, float]

    def rect(self, frame: float) -> tuple[float, float, float, float]:
        """x_left, y_top, x_right, y_bottom in px at a (possibly fractional) frame index."""
        a = float(np.clip((frame - self.t0) / max(self.t1 - self.t0, 1e-9), 0, 1))
        x = self.x0 + a * (self.x1 - self.x0)
        return x - self.width / 2, self.y0, x + self.width / 2, self.y1


def sample_occluders(rng: np.random.Generator, size: int, frames: int) -> list[Occluder]:
    """One or two bars (poles or low panels) crossing the whole frame during the clip."""
    out = []
    for _ in range(1 + int(rng.random() < 0.3)):
        pole = rng.random() < 0.6
        width = rng.uniform(0.08, 0.18) * size if pole else rng.uniform(0.3, 0.6) * size
        top = -1.0 if pole else rng.uniform(0.35, 0.65) * size
        xs = (-width / 2, size + width / 2)
        x0, x1 = xs if rng.random() < 0.5 else xs[::-1]
        t0 = rng.uniform(-0.3, 0.3) * (frames - 1)
        t1 = t0 + rng.uniform(0.6, 1.2) * max(frames - 1, 1)
        colour = _random_colour(rng, (0.0, 0.7), (0.15, 0.9))
        out.append(Occluder(x0, x1, t0, t1, top, size + 1.0, width, colour))
    return out
