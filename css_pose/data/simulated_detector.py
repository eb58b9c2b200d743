"""A person detector simulated from ground-truth boxes (dropped, jittered and false boxes at
configurable rates), for benchmarking top-down pose without a trained detector.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class SimulatedDetector:
    """Ground-truth person boxes made imperfect, for benchmarks.

    Each true box is dropped with probability ``drop``; a kept box has each side moved by a
    normal draw of ``jitter`` x its width / height; each frame gets a false box (random size
    and place, score drawn from the false scores' range) with probability ``false``. Scores:
    kept boxes U(0.6, 1.0), false boxes U(0.3, 0.7). Deterministic for a ``seed`` and frame.
    """

    drop: float = 0.1
    jitter: float = 0.05
    false: float = 0.05
    seed: int = 0

    def __call__(self, frame: int, boxes: np.ndarray, width: int, height: int) -> np.ndarray:
        """(K, 5) x1 y1 x2 y2 score boxes of ``frame`` from its true boxes (P, 4)."""
        rng = np.random.default_rng([self.seed, frame])
        out = []
        for box in np.asarray(boxes, np.float64).reshape(-1, 4):
            keep, noise, score = rng.random() >= self.drop, rng.normal(size=4), rng.uniform(0.6, 1)
            if not keep:
                continue
            w, h = box[2] - box[0], box[3] - box[1]
            moved = box + self.jitter * noise * np.array([w, h, w, h])
            moved[[0, 2]] = np.clip(np.sort(moved[[0, 2]]), 0, width)
            moved[[1, 3]] = np.clip(np.sort(moved[[1, 3]]), 0, height)
            out.append([*moved, score])
        if rng.random() < self.false:
            w, h = rng.uniform(0.1, 0.5) * width, rng.uniform(0.2, 0.8) * height
            x, y = rng.uniform(0, width - w), rng.uniform(0, height - h)
            out.append([x, y, x + w, y + h, rng.uniform(0.3, 0.7)])
        return np.asarray(out, np.float64).reshape(-1, 5)
