"""Can a weight-free person detector feed top-down pose on the crowd set? (issue 19)

Box AP (COCO bbox AP 0.50:0.95, faster-coco-eval), AP50 and recall at IoU 0.5 (one-to-one, by
score) on the first ``--test-videos`` test videos of the crowd set (``benchmarks/crowd.py`` makes
it), for the detectors that need nothing downloaded:

- **background**: a per-pixel temporal median of each video as its background; pixels whose
  largest channel differs by more than ``--threshold`` grey levels, opened (3 px) and closed
  (7 px), connected components of at least 80 px as boxes, scored by the mean difference x
  sqrt(area);
- **hog**: OpenCV's HOG people detector (its built-in linear SVM), on the frame upscaled x2,
  window stride 8, scale step 1.05, no grouping, then greedy NMS at IoU 0.45; each box is cut by
  25 % of its width at each side and 10 % of its height at top and bottom (the detector's windows
  are much wider than our people). ``cv2.HOGDescriptor`` is missing from OpenCV 5, so this row
  needs an OpenCV 4 environment (``pip install "opencv-python-headless<5" numpy
  faster-coco-eval``); without it the row says so;
- **simulated**: for scale, the true boxes through the benchmark's simulated detector (20 %
  dropped, 5 % side jitter, a false box in 10 % of frames), scored at random.

Reading the videos needs css_pose; the frames and true boxes are cached in ``--cache`` so that an
OpenCV 4 environment without css_pose can run the HOG row from the cache:

    python benchmarks/weight_free_detectors.py                  # in the project's venv
    /path/to/cv4-venv/bin/python benchmarks/weight_free_detectors.py --only hog
"""

from __future__ import annotations

import argparse
import contextlib
import io
import time
from pathlib import Path

import cv2
import numpy as np


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", type=Path, default=Path("data/synthetic-crowd"))
    p.add_argument("--test-videos", type=int, default=60)
    p.add_argument("--cache", type=Path, default=Path("runs/bench-crowd/detector_frames.npz"))
    p.add_argument("--only", nargs="+", choices=("background", "hog", "simulated"),
                   default=("simulated", "background", "hog"))  # fmt: skip
    p.add_argument("--threshold", type=float, default=25.0, help="background: grey levels")
    return p.parse_args(argv)


def load(args) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """frames (V, T, H, W, 3) uint8 RGB, true boxes (V, P, T, 4) xyxy px, present (V, P, T)."""
    if not args.cache.exists():
        from css_pose.data.index import index_videos
        from css_pose.data.loading import load_annotation
        from css_pose.data.video import open_video

        frames, boxes, present = [], [], []
        for entry in index_videos(args.root).split("test")[: args.test_videos]:
            ann = load_annotation(entry.annotation, entry.num_frames)
            with open_video(entry.path, "pyav", entry.num_frames) as reader:
                frames.append(reader.get_batch(range(entry.num_frames)))
            boxes.append(ann.boxes)
            present.append(ann.present)
        args.cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(args.cache, frames=np.stack(frames), boxes=np.stack(boxes),
                            present=np.stack(present))  # fmt: skip
    data = np.load(args.cache)
    return data["frames"], data["boxes"], data["present"]


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) IoU of xyxy boxes a (N, 4) and b (M, 4)."""
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, 2:4], b[None, :, 2:4])
    inter = np.prod(np.clip(hi - lo, 0, None), -1)
    area = lambda x: np.prod(x[:, 2:4] - x[:, :2], -1)  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None] - inter, 1e-9)


def nms(dets: np.ndarray, threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression of (N, 5) xyxy + score rows."""
    dets = dets[np.argsort(-dets[:, 4])]
    overlap = iou(dets, dets)
    keep, gone = [], np.zeros(len(dets), bool)
    for i in range(len(dets)):
        if not gone[i]:
            keep.append(i)
            gone |= overlap[i] > threshold
    return dets[keep]


def background_boxes(video: np.ndarray, threshold: float) -> list[np.ndarray]:
    """Per frame (N, 5) boxes from differences to the video's temporal median."""
    plate = np.median(video, axis=0)
    out = []
    for frame in video:
        mask = (np.abs(frame.astype(np.float32) - plate).max(-1) > threshold).astype(np.uint8)
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((7, 7), np.uint8))
        n, labels, stats, _ = cv2.connectedComponentsWithStats(mask)
        diff = np.abs(frame.astype(np.float32) - plate).max(-1)
        rows = []
        for i in range(1, n):
            x, y, w, h, area = stats[i]
            if area >= 80:
                rows.append([x, y, x + w, y + h, diff[labels == i].mean() * np.sqrt(area)])
        out.append(np.array(rows, np.float64).reshape(-1, 5))
    return out


def hog_detector():
    """detect(frame RGB uint8) -> (N, 5) boxes, or a string saying why there is none."""
    if not hasattr(cv2, "HOGDescriptor"):
        return (
            f"OpenCV {cv2.__version__} has no HOGDescriptor (removed in OpenCV 5); run this "
            'row in an environment with "opencv-python-headless<5"'
        )
    hog = cv2.HOGDescriptor()
    hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())

    def detect(frame: np.ndarray) -> np.ndarray:
        big = cv2.resize(frame, None, fx=2, fy=2, interpolation=cv2.INTER_LINEAR)
        rects, weights = hog.detectMultiScale(big, hitThreshold=0, winStride=(8, 8),
                                              padding=(8, 8), scale=1.05, groupThreshold=0)  # fmt: skip
        if len(rects) == 0:
            return np.zeros((0, 5))
        r = np.asarray(rects, np.float64) / 2
        dets = nms(np.c_[r[:, :2], r[:, :2] + r[:, 2:], np.ravel(weights)], 0.45)
        w, h = dets[:, 2] - dets[:, 0], dets[:, 3] - dets[:, 1]
        dets[:, 0] += 0.25 * w
        dets[:, 2] -= 0.25 * w
        dets[:, 1] += 0.1 * h
        dets[:, 3] -= 0.1 * h
        return dets

    return detect


def simulated_boxes(boxes: np.ndarray, present: np.ndarray, size: int, seed: int = 0):
    """The crowd benchmark's simulated detector, scored at random (per frame (N, 5))."""
    rng = np.random.default_rng(seed)
    out = []
    for t in range(present.shape[1]):
        rows = []
        for b in boxes[present[:, t], t]:
            if rng.random() < 0.2:
                continue
            w, h = b[2] - b[0], b[3] - b[1]
            rows.append([*(b + rng.normal(0, 0.05, 4) * [w, h, w, h]), rng.random()])
        if rng.random() < 0.1:
            x, y = rng.uniform(0, size * 0.7, 2)
            rows.append([x, y, x + size * 0.2, y + size * 0.4, rng.random()])
        out.append(np.array(rows, np.float64).reshape(-1, 5))
    return out


def score(dets: list[np.ndarray], boxes: np.ndarray, present: np.ndarray, size: int) -> dict:
    """Box AP, AP50 and recall@0.5 of per-frame ``dets`` against the true boxes (clipped to
    the frame; boxes wholly outside it left out), frames in video order."""
    from faster_coco_eval import COCO, COCOeval_faster

    truth = [np.clip(b[p], 0, size) for b, p in _frames(boxes, present)]
    truth = [t[(t[:, 2] > t[:, 0]) & (t[:, 3] > t[:, 1])] for t in truth]  # wholly outside: gone
    images = [{"id": i, "width": size, "height": size} for i in range(len(truth))]
    anns = []
    for i, frame in enumerate(truth):
        for x1, y1, x2, y2 in frame.tolist():
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": 1, "iscrowd": 0,
                         "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1)})  # fmt: skip
    results = [{"image_id": i, "category_id": 1, "score": float(d[4]),
                "bbox": [float(d[0]), float(d[1]), float(d[2] - d[0]), float(d[3] - d[1])]}
               for i, frame in enumerate(dets) for d in frame]  # fmt: skip
    hits = 0
    for frame, t in zip(dets, truth, strict=True):
        if len(frame) and len(t):
            overlap = iou(frame[np.argsort(-frame[:, 4])], t)
            used = np.zeros(len(t), bool)
            for row in overlap:
                row = np.where(used, -1.0, row)
                if row.max() >= 0.5:
                    used[row.argmax()] = True
            hits += used.sum()
    out = {"recall50": hits / sum(len(t) for t in truth),
           "per_frame": float(np.mean([len(d) for d in dets]))}  # fmt: skip
    if not results:
        return out | {"AP": 0.0, "AP50": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO({"images": images, "annotations": anns,
                   "categories": [{"id": 1, "name": "person"}]})  # fmt: skip
        ev = COCOeval_faster(gt, gt.loadRes(results), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return out | {"AP": float(ev.stats[0]), "AP50": float(ev.stats[1])}


def _frames(boxes: np.ndarray, present: np.ndarray):
    for v in range(len(boxes)):
        for t in range(present.shape[2]):
            yield boxes[v][:, t], present[v][:, t]


def main(argv=None) -> dict:
    args = parse(argv)
    cv2.setNumThreads(1)
    frames, boxes, present = load(args)
    size = frames.shape[2]
    n = frames.shape[0] * frames.shape[1]
    print(f"{frames.shape[0]} test videos, {n} frames, {int(present.sum())} true boxes")
    rows = {}
    for name in args.only:
        start = time.perf_counter()
        if name == "background":
            dets = [d for video in frames for d in background_boxes(video, args.threshold)]
        elif name == "simulated":
            dets = [d for v in range(len(frames))
                    for d in simulated_boxes(boxes[v], present[v], size, v)]  # fmt: skip
        else:
            detect = hog_detector()
            if isinstance(detect, str):
                print(f"{name:10s}: not run: {detect}")
                continue
            dets = [detect(f) for video in frames for f in video]
        fps = n / (time.perf_counter() - start)
        # The HOG box narrowing was chosen on the first 30 videos: the rest alone, as a check.
        half = len(frames) // 2
        rest = score(dets[half * frames.shape[1] :], boxes[half:], present[half:], size)
        rows[name] = score(dets, boxes, present, size) | {"fps": fps, "second_half": rest}
        r = rows[name]
        print(f"{name:10s}: box AP {r['AP']:.3f}, AP50 {r['AP50']:.3f}, recall@0.5 "
              f"{r['recall50']:.3f}, {r['per_frame']:.2f} boxes per frame, {fps:.0f} frames/s "
              f"(1 thread); videos {half}-{len(frames) - 1} alone: box AP {rest['AP']:.3f}")  # fmt: skip
    return rows


if __name__ == "__main__":
    main()
