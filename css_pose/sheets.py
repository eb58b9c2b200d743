"""Image sheets of crops, for run folders and dashboards: predictions beside the ground truth
(:func:`overlay_sheet`), heatmaps over their crops (:func:`heatmap_sheet`) and what the flow did
to one joint's heatmaps in a clip (:func:`temporal_strip`). Crops (3, S, S) float in [0, 1]
in, (H, W, 3) uint8 RGB out, tiles at 3x the crop size.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from css_pose.models.temporal_pose import TemporalPoseModel
from css_pose.skeleton import JOINT_NAMES
from css_pose.viz import contact_sheet, draw_skeleton, heatmap_overlay


def overlay_sheet(frames, pred, gt, visible, ncols: int = 6) -> np.ndarray:
    """Pairs of tiles per crop: prediction, then ground truth, drawn at 3x size. (H, W, 3) uint8."""
    tiles, labels = [], []
    for img, p, g, v in zip(frames, pred, gt, visible, strict=True):
        big = np.kron(
            (img.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8),
            np.ones((3, 3, 1), np.uint8),
        )
        tiles.append(draw_skeleton(big, p.numpy() * 3 + 1, v.numpy()))
        tiles.append(draw_skeleton(big, g.numpy() * 3 + 1, v.numpy()))
        labels += ["pred", "gt"]
    return contact_sheet(tiles, ncols=ncols * 2, labels=labels)


def heatmap_sheet(frames: torch.Tensor, heatmaps: torch.Tensor, ncols: int = 6) -> np.ndarray:
    """Each crop (B, 3, S, S) in [0, 1] under its heatmaps (B, J, h, w), max over joints, each
    crop's map scaled to its own peak, as a JET colour overlay at 3x size. (H, W, 3) uint8."""
    tiles = [
        heatmap_overlay(enlarge(img), hm.amax(0).numpy())
        for img, hm in zip(frames, heatmaps.float())
    ]
    return contact_sheet(tiles, ncols=ncols)


def enlarge(image: torch.Tensor, scale: int = 3) -> np.ndarray:
    """A crop (3, H, W) in [0, 1] as (scale H, scale W, 3) uint8 RGB, nearest-neighbour."""
    height, width = image.shape[-2:]
    pixels = (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    return cv2.resize(pixels, (width * scale, height * scale), interpolation=cv2.INTER_NEAREST)


# Height of the temporal strip's title band, px.
STRIP_HEADER = 16


def temporal_strip(
    model: TemporalPoseModel, clip: torch.Tensor, flows: torch.Tensor, joint: int, step: int = 1
) -> np.ndarray:
    """What the flow did, one row per clip, for one joint, tiles at 3x the crop size.

    Each row: the T = 2n + 1 crops (t - n*step .. t + n*step); each frame's own heatmap on its
    crop; each neighbour's heatmap warped onto the centre frame (:meth:`TemporalPoseModel.align`;
    unwarped with ``warp=False``) on the centre crop; the pooled heatmap on the centre crop. The
    per-frame and warped maps of a row share one colour scale (the per-frame maps' min .. max),
    so the masked cells of a neighbour warped from outside its crop show blue; the pooled map has
    its own. A white cross marks each map's peak. A header line names the joint and the column
    groups.

    Args:
        model: a pooling model (not ``input_flow``: it has no per-frame maps), put in eval mode.
        clip: (B, T, 3, S, S) in [0, 1]; flows: (B, T, 2, S, S) px; joint: skeleton index;
            step: frames between neighbours, for the labels.
    Returns:
        (STRIP_HEADER + B x 3S, 3T x 3S, 3) uint8 RGB.
    """
    model.eval()
    with torch.no_grad():
        out = model(clip, flows)
        frame_maps = out["frame_stages"][-1]  # (B, T, J, h, w)
        own = frame_maps[:, :, joint].cpu().numpy()  # (B, T, h, w)
        aligned = model.align(frame_maps, flows)[0][:, :, joint].cpu().numpy()
        pooled = out["heatmaps"][:, joint].cpu().numpy()  # (B, h, w)
    tiles = []
    for b in range(len(clip)):
        tiles += strip_row(clip[b].cpu(), own[b], aligned[b], pooled[b], model.centre)
    labels = strip_labels(model.centre, step, model.warp) * len(clip)
    sheet = contact_sheet(tiles, ncols=3 * model.num_frames, labels=labels)
    moved = "warped onto t" if model.warp else "unwarped"
    title = (
        f"{JOINT_NAMES[joint]}: crops | per-frame heatmaps | neighbours {moved} (on crop t) | "
        f"{model.pooling} pooled"
    )
    return np.concatenate([title_band(title, sheet.shape[1]), sheet])


def strip_row(clip, own, aligned, pooled, centre: int) -> list[np.ndarray]:
    """The 3T tiles of one :func:`temporal_strip` row: clip (T, 3, S, S) in [0, 1], one joint's
    per-frame maps ``own`` and warped maps ``aligned`` (T, h, w), ``pooled`` (h, w)."""
    crops = [enlarge(f) for f in clip]
    scale = {"peak": float(own.max()), "floor": float(own.min()), "mark": True}
    return (
        crops
        + [heatmap_overlay(crop, m, **scale) for crop, m in zip(crops, own)]
        + [heatmap_overlay(crops[centre], m, **scale) for k, m in enumerate(aligned) if k != centre]
        + [heatmap_overlay(crops[centre], pooled, mark=True, floor=float(pooled.min()))]
    )


def strip_labels(centre: int, step: int, warped: bool) -> list[str]:
    """Tile captions of one :func:`temporal_strip` row."""
    names = [f"t{(k - centre) * step:+d}" if k != centre else "t" for k in range(2 * centre + 1)]
    moved = "warped" if warped else "as is"
    return (
        [f"crop {n}" for n in names]
        + [f"heat {n}" for n in names]
        + [f"{n} {moved}" for n in names if n != "t"]
        + ["pooled t"]
    )


def title_band(text: str, width: int) -> np.ndarray:
    """(STRIP_HEADER, width, 3) uint8: white text on black."""
    band = np.zeros((STRIP_HEADER, width, 3), np.uint8)
    cv2.putText(band, text, (4, STRIP_HEADER - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                (255, 255, 255), 1, cv2.LINE_AA)  # fmt: skip
    return band
