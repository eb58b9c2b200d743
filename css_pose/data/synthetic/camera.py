"""Pinhole camera that frames the people of a clip, with an optional slow pan.

Camera coordinates follow OpenCV: x right, y down, z forward (into the scene), mm. Pixel
coordinates: x right, y down, origin at the top-left pixel's centre (pixel centres at integers), so
the principal point of a centred camera is ((W - 1) / 2, (H - 1) / 2).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WORLD_UP = np.array([0.0, 1.0, 0.0])


@dataclass(frozen=True)
class Camera:
    """A camera over N time samples.

    intrinsics: (4,) fx, fy, cx, cy in px.
    rotation: (N, 3, 3) world -> camera rotation; centre: (3,) camera position in world mm.
    look: (3,) unit viewing direction at pan angle 0 (the background is painted at infinity along it).
    """

    intrinsics: np.ndarray
    rotation: np.ndarray
    centre: np.ndarray
    look: np.ndarray

    def to_camera(self, points: np.ndarray) -> np.ndarray:
        """(N, ..., 3) world mm -> (N, ..., 3) camera mm, with the rotation of each time sample."""
        flat = (points - self.centre).reshape(len(points), -1, 3)
        return np.einsum("nij,nkj->nki", self.rotation, flat).reshape(points.shape)

    def world_to_camera(self) -> np.ndarray:
        """(N, 3, 4) extrinsics [R | t] with X_cam = R X_world + t, t in mm."""
        t = -np.einsum("nij,j->ni", self.rotation, self.centre)
        return np.concatenate([self.rotation, t[:, :, None]], axis=2)

    def background_shift(self) -> np.ndarray:
        """(N, 2) image motion in px of points at infinity (what a pan does to a distant scene)."""
        d = np.einsum("nij,j->ni", self.rotation, self.look)
        return project(d, self.intrinsics) - self.intrinsics[2:]

    def horizon_row(self) -> float:
        """Image row of the horizon at pan angle 0 (may lie outside the image)."""
        flat = self.look * np.array([1.0, 0.0, 1.0])
        d = look_rotation(self.look) @ (flat / np.linalg.norm(flat))
        return float(self.intrinsics[1] * d[1] / d[2] + self.intrinsics[3])


def project(points_cam: np.ndarray, intrinsics: np.ndarray) -> np.ndarray:
    """Pinhole projection: (..., 3) camera mm -> (..., 2) pixel x, y (pixel centres at integers)."""
    fx, fy, cx, cy = intrinsics
    z = points_cam[..., 2]
    return np.stack([fx * points_cam[..., 0] / z + cx, fy * points_cam[..., 1] / z + cy], axis=-1)


def look_rotation(direction: np.ndarray) -> np.ndarray:
    """(..., 3) viewing directions -> (..., 3, 3) world->camera rotations with a level horizon."""
    z = direction / np.linalg.norm(direction, axis=-1, keepdims=True)
    x = np.cross(z, WORLD_UP)
    x /= np.linalg.norm(x, axis=-1, keepdims=True)
    return np.stack([x, np.cross(z, x), z], axis=-2)


def _yaw(deg: np.ndarray) -> np.ndarray:
    a = np.deg2rad(deg)
    c, s, o, i = np.cos(a), np.sin(a), np.zeros_like(a), np.ones_like(a)
    return np.stack(
        [np.stack([c, o, s], -1), np.stack([o, i, o], -1), np.stack([-s, o, c], -1)], -2
    )


def sample_camera(
    rng: np.random.Generator,
    points: np.ndarray,
    times: np.ndarray,
    size: int,
    fill: tuple[float, float] = (0.6, 0.85),
    pan: bool = False,
    fov_deg: tuple[float, float] = (40, 65),
    elevation_deg: tuple[float, float] = (-5, 25),
) -> Camera:
    """Random viewpoint that frames ``points`` and keeps them in view.

    points: (M, 3) world mm (y up, floor at y = 0 or below the lowest point) that must be framed:
        every joint of every person at every labelled frame, plus their floor contact points.
    times: (N,) seconds at which the camera is evaluated (the pan moves with time).
    size: image side in px. fill: range of the fraction of the image height that the framed
        points span. pan: slow sinusoidal yaw of the camera about its own centre (3-8 degrees).
    The focal length comes from a field of view drawn from ``fov_deg`` (40-65 degrees), the
    azimuth is uniform over the full circle (0 = in front of a person facing +z), the elevation
    is drawn from ``elevation_deg`` (-5..25 degrees; positive looks down).
    """
    fov = np.deg2rad(rng.uniform(*fov_deg))
    f = (size / 2) / np.tan(fov / 2)
    c = (size - 1) / 2
    intrinsics = np.array([f, f, c, c])
    az, el = np.deg2rad(rng.uniform(0, 360)), np.deg2rad(rng.uniform(*elevation_deg))
    target_fill = rng.uniform(*fill)
    pan_deg = rng.uniform(3, 8) * rng.choice([-1, 1])
    pan_period, pan_phase = rng.uniform(4, 10), rng.uniform(0, 2 * np.pi)
    back = np.array([np.sin(az) * np.cos(el), np.sin(el), np.cos(az) * np.cos(el)])
    rotation = look_rotation(-back)

    lo, hi = points.min(axis=0), points.max(axis=0)
    target = (lo + hi) / 2
    distance = f * (hi[1] - lo[1]) / (target_fill * size)
    # Perspective makes the first guess inexact; a few fixed-point steps fix the size and centring.
    for _ in range(4):
        uv = project((points - (target + distance * back)) @ rotation.T, intrinsics)
        (u0, v0), (u1, v1) = uv.min(axis=0), uv.max(axis=0)
        target = target + (
            rotation[0] * ((u0 + u1) / 2 - c) + rotation[1] * ((v0 + v1) / 2 - c)
        ) * (distance / f)
        distance *= max((v1 - v0) / (target_fill * size), (u1 - u0) / (0.94 * size))
    centre = target + distance * back

    angle = pan_deg * (np.sin(2 * np.pi * times / pan_period + pan_phase) - np.sin(pan_phase))
    rot = look_rotation(_yaw(angle if pan else np.zeros_like(times)) @ -back)
    return Camera(intrinsics=intrinsics, rotation=rot, centre=centre, look=-back)
