"""COCO's keypoint similarity and AP: :func:`oks` between two people, :func:`layout_sigmas`
(COCO's per-joint sigmas mapped to a layout by joint name) and :func:`oks_ap` (COCO keypoint AP
over OKS 0.50:0.05:0.95, with faster-coco-eval, a maintained re-implementation of pycocotools'
evaluation, checked against pycocotools in the tests). Keypoints (J, 2) image px.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence

import numpy as np

from css_pose.layouts import Layout, get_layout


def layout_sigmas(layout: str | Layout) -> tuple[np.ndarray, np.ndarray]:
    """(sigmas (J,), scored (J,) bool) of ``layout``: COCO's OKS sigma of each joint that COCO-17
    has by name, and which joints those are. The others (e.g. css_pose's pelvis or head top)
    have no COCO sigma; OKS and AP leave them out."""
    lay, coco = get_layout(layout), get_layout("coco17")
    sigmas = np.zeros(len(lay), np.float64)
    scored = np.zeros(len(lay), bool)
    for j, name in enumerate(lay.joints):
        if name in coco.joints:
            sigmas[j] = coco.sigmas[coco.joints.index(name)]
            scored[j] = True
    return sigmas, scored


def oks(
    pred: np.ndarray, gt: np.ndarray, visible: np.ndarray, area: float, sigmas: np.ndarray
) -> float:
    """COCO's object keypoint similarity: the mean over the joints labelled in ``gt``
    (``visible`` > 0 and ``sigmas`` > 0) of exp(-d^2 / (2 area k^2)), k = 2 sigma, d in px and
    ``area`` the person's segment area in px^2 (COCO uses the mask area; box area works for
    boxes). Returns 0 when no joint is labelled."""
    use = (np.asarray(visible) > 0) & (np.asarray(sigmas) > 0)
    if not use.any():
        return 0.0
    d2 = ((np.asarray(pred, np.float64) - np.asarray(gt, np.float64)) ** 2).sum(-1)[use]
    k2 = (2 * np.asarray(sigmas, np.float64)[use]) ** 2
    e = d2 / (2 * max(float(area), np.spacing(1)) * k2)
    return float(np.exp(-e).mean())


def oks_ap(
    gt_images: Sequence[dict],
    gt_people: Sequence[dict],
    results: Sequence[dict],
    sigmas: np.ndarray,
) -> dict[str, float]:
    """COCO keypoint AP of ``results`` against ground truth, with faster-coco-eval.

    Args:
        gt_images: ``{"id", "width", "height"}`` per image (frame).
        gt_people: ``{"image_id", "keypoints" [x, y, v] * J, "bbox" [x, y, w, h], "area"}``
            per labelled person (``id`` and ``iscrowd`` are filled in); a person with no
            labelled joint is ignored, as COCO does.
        results: ``{"image_id", "keypoints" [x, y, score] * J, "score"}`` per predicted person.
        sigmas: (J,) OKS sigmas (:func:`layout_sigmas`); joints with sigma 0 are not scored
            (their ground-truth flags are set to 0).

    Returns ``AP`` (OKS 0.50:0.05:0.95), ``AP50``, ``AP75``, ``AR``; all -1 with no ground
    truth person (COCO's convention).
    """
    from faster_coco_eval import COCO, COCOeval_faster

    sigmas = np.asarray(sigmas, np.float64)
    joints = len(sigmas)
    unscored = np.flatnonzero(sigmas <= 0)
    people = []
    for n, p in enumerate(gt_people):
        kp = np.asarray(p["keypoints"], np.float64).reshape(joints, 3).copy()
        kp[unscored] = 0.0
        people.append(
            {
                "id": n + 1,
                "image_id": int(p["image_id"]),
                "category_id": 1,
                "keypoints": kp.reshape(-1).tolist(),
                "num_keypoints": int((kp[:, 2] > 0).sum()),
                "bbox": [float(v) for v in p["bbox"]],
                "area": float(p["area"]),
                "iscrowd": 0,
            }
        )
    dataset = {
        "images": [dict(im) for im in gt_images],
        "annotations": people,
        "categories": [{"id": 1, "name": "person", "keypoints": [str(j) for j in range(joints)]}],
    }
    if not results or not people:
        return {"AP": -1.0, "AP50": -1.0, "AP75": -1.0, "AR": -1.0}
    # It prints its tables; joints with sigma 0 divide by zero there, on flags that are 0.
    with contextlib.redirect_stdout(io.StringIO()), np.errstate(divide="ignore", invalid="ignore"):
        gt = COCO(dataset)
        dt = gt.loadRes([{**r, "category_id": 1} for r in results])
        ev = COCOeval_faster(gt, dt, iouType="keypoints", kpt_oks_sigmas=sigmas)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    stats = ev.stats
    return {"AP": float(stats[0]), "AP50": float(stats[1]), "AP75": float(stats[2]),
            "AR": float(stats[5])}  # fmt: skip
