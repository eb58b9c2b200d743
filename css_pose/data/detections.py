"""Person boxes per frame for ``css-pose predict``: from a COCO detection results file, or from a
css_pose annotation ``.npz`` (its ``bboxes``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

PERSON = 1


# --- inputs ---------------------------------------------------------------------------------------
def load_detections(path: str | Path, min_score: float = 0.0) -> dict[int, np.ndarray]:
    """COCO detection results -> {frame index: (P, 5) xyxy px + score}, best score first.

    The file is a JSON list of ``{"image_id": frame, "bbox": [x, y, w, h], "score": s,
    "category_id": 1}`` (a dict with an ``annotations`` list is accepted too); entries of another
    category or below ``min_score`` are dropped. Raises ValueError naming the file and the fix.
    """
    path = Path(path)
    if path.suffix == ".npz":
        return _annotation_boxes(path)
    hint = (
        'expected a JSON list of {"image_id": <0-based frame index>, "bbox": [x, y, w, h], '
        '"score": <0..1>, "category_id": 1} (COCO detection results)'
    )
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as err:
        raise ValueError(f"{path}: no such detection file; {hint}") from err
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not readable JSON ({err}); {hint}") from err
    if isinstance(data, dict):
        data = data.get("annotations")
    if not isinstance(data, list):
        raise ValueError(f"{path}: {hint}")
    boxes: dict[int, list[list[float]]] = {}
    for i, det in enumerate(data):
        try:
            frame = int(det["image_id"])
            x, y, w, h = (float(v) for v in det["bbox"])
            score = float(det.get("score", 1.0))
            category = int(det.get("category_id", PERSON))
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{path}: entry {i} is malformed ({err!r}); {hint}") from err
        if frame < 0 or w <= 0 or h <= 0 or not all(map(math.isfinite, (x, y, w, h))):
            raise ValueError(f"{path}: entry {i} has a bad frame index or box {det['bbox']}")
        if category == PERSON and score >= min_score:
            boxes.setdefault(frame, []).append([x, y, x + w, y + h, score])
    return {
        f: np.array(sorted(b, key=lambda r: -r[4]), np.float32).reshape(-1, 5)
        for f, b in boxes.items()
    }


def _annotation_boxes(path: Path) -> dict[int, np.ndarray]:
    """Person boxes of a css_pose annotation (``bboxes`` (T, 4) or (P, T, 4) xyxy px, see
    docs/data_format.md), e.g. the ground-truth boxes of a synthetic video, score 1."""
    try:
        with np.load(path, allow_pickle=False) as data:
            boxes = np.asarray(data["bboxes"], np.float32)
    except (OSError, KeyError, ValueError) as err:
        raise ValueError(
            f"{path}: not a css_pose annotation with 'bboxes' ({err}); pass COCO detections "
            "as JSON instead"
        ) from err
    if boxes.ndim == 2:
        boxes = boxes[None]
    if boxes.ndim != 3 or boxes.shape[-1] != 4:
        raise ValueError(f"{path}: 'bboxes' has shape {boxes.shape}; expected (T, 4) or (P, T, 4)")
    out = {}
    for t in range(boxes.shape[1]):
        rows = [
            [*b, 1.0] for b in boxes[:, t] if np.isfinite(b).all() and b[2] > b[0] and b[3] > b[1]
        ]
        if rows:
            out[t] = np.array(rows, np.float32)
    return out
