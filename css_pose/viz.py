"""Skeleton overlays and contact sheets for quick looks at data and predictions (RGB uint8 images)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from css_pose.data.video import VideoWriter
from css_pose.skeleton import BONES, joint_side

SIDE_COLOURS = {"l": (60, 140, 255), "r": (255, 70, 60), "c": (60, 220, 90)}  # RGB
_SHIFT = 4


def _fix(p: np.ndarray) -> tuple[int, int]:
    return int(round(float(p[0]) * (1 << _SHIFT))), int(round(float(p[1]) * (1 << _SHIFT)))


def draw_skeleton(
    image: np.ndarray,
    keypoints_2d: np.ndarray,
    visibility: np.ndarray | None = None,
    radius: float | None = None,
    thickness: int | None = None,
) -> np.ndarray:
    """Draw bones and joints on a copy of ``image``.

    image: (H, W, 3) uint8 RGB. keypoints_2d: (J, 2) px (x, y; pixel centres at integers), in the
    canonical skeleton order. visibility: (J,) (0 = not visible) or None (all visible).
    Left side blue, right side red, centre green. Visible joints are filled discs; invisible ones
    are hollow rings, and a bone touching one is drawn thin. radius (px) and thickness (px) default
    to sizes that scale with the image (1.8 and 1 px at 128 px).
    Returns a new (H, W, 3) uint8 image.
    """
    out = np.ascontiguousarray(image, dtype=np.uint8).copy()
    kp = np.asarray(keypoints_2d, dtype=np.float64)
    vis = np.ones(len(kp), bool) if visibility is None else np.asarray(visibility) > 0
    unit = max(out.shape[:2]) / 128
    thick = thickness or max(1, round(1.2 * unit))
    radius = radius or max(1.0, 1.8 * unit)
    for parent, child in BONES:
        if not np.isfinite(kp[[parent, child]]).all():
            continue
        width = thick if vis[parent] and vis[child] else max(1, thick // 2)
        colour = SIDE_COLOURS[joint_side(child)]
        cv2.line(out, _fix(kp[parent]), _fix(kp[child]), colour, width, cv2.LINE_AA, _SHIFT)
    for j, p in enumerate(kp):
        if not np.isfinite(p).all():
            continue
        colour = SIDE_COLOURS[joint_side(j)]
        r = round(radius * (1 << _SHIFT))
        cv2.circle(
            out, _fix(p), r, colour, -1 if vis[j] else max(1, thick // 2), cv2.LINE_AA, _SHIFT
        )
    return out


def contact_sheet(
    images: Sequence[np.ndarray], ncols: int = 8, labels: Sequence[str] | None = None
) -> np.ndarray:
    """Tile images into a grid, row by row, with an optional caption on each tile.

    images: list of (H, W, 3) uint8 RGB; tiles take the largest H and W, smaller images sit at the
    top-left of their tile on black. labels: one string per image or None.
    Returns (rows * H, ncols * W, 3) uint8 RGB.
    """
    if not images:
        raise ValueError("contact_sheet needs at least one image")
    if labels is not None and len(labels) != len(images):
        raise ValueError(f"{len(labels)} labels for {len(images)} images")
    ncols = max(1, min(ncols, len(images)))
    h = max(im.shape[0] for im in images)
    w = max(im.shape[1] for im in images)
    rows = -(-len(images) // ncols)
    sheet = np.zeros((rows * h, ncols * w, 3), np.uint8)
    scale = max(0.3, h / 400)
    for i, im in enumerate(images):
        y, x = (i // ncols) * h, (i % ncols) * w
        sheet[y : y + im.shape[0], x : x + im.shape[1]] = im
        if labels is not None:
            # Dark outline under light text keeps captions readable on any background.
            org = (x + 2, y + int(12 * scale / 0.3))
            cv2.putText(
                sheet, labels[i], org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA
            )
            cv2.putText(
                sheet,
                labels[i],
                org,
                cv2.FONT_HERSHEY_SIMPLEX,
                scale,
                (255, 255, 255),
                1,
                cv2.LINE_AA,
            )
    return sheet


def heatmap_overlay(
    image: np.ndarray,
    heatmap: np.ndarray,
    peak: float | None = None,
    mark: bool = False,
    floor: float = 0.0,
) -> np.ndarray:
    """A heatmap as a JET colour overlay (half and half) on an image.

    image: (H, W, 3) uint8 RGB. heatmap: (h, w) float, resized bilinearly onto the image (its cells
    tile the image, as heatmap cells tile a crop). Values ``floor`` .. ``peak`` (default the map's
    max) run blue .. red, values outside clip. ``mark`` draws a white cross at the map's maximum.
    Returns a new (H, W, 3) uint8 image.
    """
    height, width = image.shape[:2]
    heatmap = np.asarray(heatmap, np.float32)
    top = float(heatmap.max()) if peak is None else float(peak)
    scaled = np.clip((heatmap - floor) / max(top - floor, 1e-6), 0.0, 1.0)
    scaled = cv2.resize(scaled, (width, height), interpolation=cv2.INTER_LINEAR)
    colour = cv2.applyColorMap((scaled * 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]
    out = cv2.addWeighted(np.ascontiguousarray(image, np.uint8), 0.5, colour, 0.5, 0)
    if mark:
        y, x = np.unravel_index(int(heatmap.argmax()), heatmap.shape)
        centre = (  # cell (x, y) covers image px [x, x + 1) * width / w
            round((x + 0.5) * width / heatmap.shape[1] - 0.5),
            round((y + 0.5) * height / heatmap.shape[0] - 0.5),
        )
        cv2.drawMarker(out, centre, (255, 255, 255), cv2.MARKER_CROSS, max(5, width // 10), 1)
    return out


def save_png(path: str | Path, image: np.ndarray) -> Path:
    """Write an (H, W, 3) uint8 RGB image as PNG (OpenCV wants BGR); creates parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")
    return path


def kmeans(x: np.ndarray, k: int, iters: int = 25, seed: int = 0) -> np.ndarray:
    """Cluster labels (N,) of rows of ``x`` (N, D) by Lloyd's k-means, k-means++ seeded."""
    rng = np.random.default_rng(seed)
    x = np.asarray(x, np.float64)
    k = max(1, min(k, len(x)))
    centres = [x[rng.integers(len(x))]]
    for _ in range(1, k):
        d = np.min([((x - c) ** 2).sum(1) for c in centres], axis=0)
        centres.append(x[rng.choice(len(x), p=d / d.sum())] if d.sum() > 0 else x[0])
    c = np.stack(centres)
    labels = np.zeros(len(x), int)
    for _ in range(iters):
        labels = ((x[:, None] - c[None]) ** 2).sum(-1).argmin(1)
        c = np.stack([x[labels == j].mean(0) if (labels == j).any() else c[j] for j in range(k)])
    return labels


def pca_2d(x: np.ndarray) -> tuple[np.ndarray, float]:
    """Project (N, D) onto its first two principal components: (N, 2) and the explained share."""
    x = np.asarray(x, np.float64)
    x = x - x.mean(0)
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    var = s**2
    return x @ vt[:2].T, float(var[:2].sum() / max(var.sum(), 1e-12))


def embedding_figure(
    z_v: np.ndarray,
    z_i: np.ndarray | None,
    poses_3d: np.ndarray,
    video_idx: np.ndarray,
    clusters: int = 6,
    title: str = "",
) -> np.ndarray:
    """PCA of z_v coloured by pose cluster beside PCA of z_i coloured by video.

    Disentanglement at a glance: z_v should group frames by pose (whatever the video) and z_i by
    video (whatever the pose). Each panel also colours by the other labelling, as a small inset
    scatter, so the contrast is visible.

    Args:
        z_v: (N, Dv) time-variant latents. z_i: (N, Di) time-invariant latents, or None (methods
            without a split: one panel). poses_3d: (N, J, 3) root-relative ground truth, mm, from
            which the pose clusters come (k-means, ``clusters`` groups). video_idx: (N,) ints.
    Returns:
        (H, W, 3) uint8 RGB figure.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    pose_label = kmeans(np.asarray(poses_3d).reshape(len(poses_3d), -1), clusters)
    _, video_label = np.unique(np.asarray(video_idx), return_inverse=True)
    panels = [("z_v", z_v, pose_label, "pose cluster", video_label, "video")]
    if z_i is not None:
        panels.append(("z_i", z_i, video_label, "video", pose_label, "pose cluster"))
    fig = Figure(figsize=(4.2 * len(panels), 4.2), dpi=90)
    FigureCanvasAgg(fig)
    for i, (name, z, colour, what, other, other_what) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        xy, share = pca_2d(z)
        ax.scatter(xy[:, 0], xy[:, 1], c=colour, cmap="tab10", s=9, alpha=0.8, linewidths=0)
        ax.set_title(f"{name} (PCA, {100 * share:.0f}% var.), colour = {what}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        inset = ax.inset_axes([0.70, 0.70, 0.29, 0.29])
        inset.scatter(xy[:, 0], xy[:, 1], c=other, cmap="tab20", s=2, linewidths=0)
        inset.set_xticks([])
        inset.set_yticks([])
        inset.set_title(f"by {other_what}", fontsize=6, pad=1)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


# --- 3D animation ---------------------------------------------------------------------------------
def animate_3d(pose3d: np.ndarray, path: Path, fps: Fraction, progress: bool = True) -> Path:
    """Render (T, 17, 3) mm poses as an mp4 of a rotating-free 3D skeleton plot (matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from css_pose.skeleton import BONES, joint_side
    from css_pose.viz import SIDE_COLOURS

    colours = {side: tuple(c / 255 for c in rgb) for side, rgb in SIDE_COLOURS.items()}
    span = max(float(np.abs(pose3d).max()), 1.0)
    fig = plt.figure(figsize=(4, 4), dpi=80)
    ax = fig.add_subplot(projection="3d")
    writer = None
    try:
        for t, pose in enumerate(
            tqdm(pose3d, desc="3D plot", disable=not progress, file=sys.stderr)
        ):
            ax.cla()
            # Camera axes to plot axes: x right, z (depth) into the page, -y up.
            xs, ys, zs = pose[:, 0], pose[:, 2], -pose[:, 1]
            for parent, child in BONES:
                ax.plot(
                    [xs[parent], xs[child]], [ys[parent], ys[child]], [zs[parent], zs[child]],
                    color=colours[joint_side(child)], lw=2,
                )  # fmt: skip
            ax.scatter(xs, ys, zs, s=6, color="k")
            ax.set_xlim(-span, span)
            ax.set_ylim(-span, span)
            ax.set_zlim(-span, span)
            ax.set_xlabel("x (mm)")
            ax.set_ylabel("depth (mm)")
            ax.set_zlabel("up (mm)")
            ax.set_title(f"frame {t}")
            fig.canvas.draw()
            image = np.asarray(fig.canvas.buffer_rgba())[..., :3]
            if writer is None:
                h, w = image.shape[:2]
                writer = VideoWriter(path, w - w % 2, h - h % 2, fps)
            writer.write(np.ascontiguousarray(image[: writer.stream.height, : writer.stream.width]))
        if writer is not None:
            writer.close()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    finally:
        plt.close(fig)
    return path
