"""Render one synthetic video with exact 2D/3D keypoints, visibility and boxes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from css_pose.data.synthetic.appearance import (
    Occluder,
    background_margin,
    make_background,
    sample_appearance,
    sample_occluders,
)
from css_pose.data.synthetic.body import ANKLE_HEIGHT_MM, REFERENCE_HEIGHT_MM, sample_body_shape
from css_pose.data.synthetic.camera import Camera, project, sample_camera
from css_pose.data.synthetic.io import save_npz, write_mp4
from css_pose.data.synthetic.motions import sample_person_motion
from css_pose.data.synthetic.render import (
    body_points,
    joint_visibility,
    person_boxes,
    prepare_person,
    render_frame,
)
from css_pose.skeleton import JOINT_NAMES, NUM_JOINTS

BLUR_SAMPLES = 5  # sub-frame renders averaged per frame with motion blur
SHUTTER = 0.6  # exposure as a fraction of the frame interval
MAX_PEOPLE = 64
# The camera may come no closer than NEAR_MM to any framed point; a draw that does is replaced by
# the next draw of the same seeded generator, at most CAMERA_TRIES draws in all.
NEAR_MM = 100.0
CAMERA_TRIES = 16


@dataclass
class SyntheticVideo:
    """frames: (T, H, W, 3) uint8 RGB. annotation: the arrays of the .npz (docs/data_format.md)."""

    frames: np.ndarray
    annotation: dict[str, np.ndarray]

    def save(self, directory: str | Path, name: str) -> tuple[Path, Path]:
        """Write NAME.mp4, then NAME.npz (the npz last: its presence marks a complete video)."""
        directory = Path(directory)
        video, ann = directory / f"{name}.mp4", directory / f"{name}.npz"
        write_mp4(video, self.frames, float(self.annotation["fps"]))
        save_npz(ann, self.annotation)
        return video, ann


def _interp_frames(motion: np.ndarray, frame_pos: np.ndarray) -> np.ndarray:
    """(T, J, 3) samples at integer frames -> (N, J, 3) at fractional frame positions (clamped)."""
    pos = np.clip(frame_pos, 0, len(motion) - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, len(motion) - 1)
    w = (pos - lo)[:, None, None]
    return (1 - w) * motion[lo] + w * motion[hi]


def _body_scale(joints: np.ndarray) -> float:
    """Body size relative to a 1.70 m adult, from leg, spine and head bone lengths of (T, 17, 3)."""
    chain = [(1, 2), (2, 3), (0, 7), (7, 8), (8, 9), (9, 10)]
    length = sum(np.linalg.norm(joints[:, b] - joints[:, a], axis=-1).mean() for a, b in chain)
    return float((length + ANKLE_HEIGHT_MM) / REFERENCE_HEIGHT_MM)


def _slots(rng: np.random.Generator, people: int, height: float) -> np.ndarray:
    """(P, 2) floor positions x, z (mm): a loose row, close enough that people overlap in view."""
    if people == 1:
        return np.zeros((1, 2))
    x = (np.arange(people) - (people - 1) / 2) * rng.uniform(0.3, 0.6) * height
    return np.stack([x + rng.uniform(-0.1, 0.1, people) * height,
                     rng.uniform(-0.4, 0.4, people) * height], axis=1)  # fmt: skip


def _shadow_polygons(camera: Camera, world: list[np.ndarray], floor: float, height: float):
    """(P, N, 12, 2) px: a disc on the floor under each pelvis, seen by the camera."""
    a = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    ring = np.stack([np.cos(a), np.zeros_like(a), np.sin(a)], axis=1) * (0.18 * height)
    polys = []
    for joints in world:
        centre = joints[:, 0] * np.array([1.0, 0.0, 1.0]) + np.array([0.0, floor, 0.0])
        polys.append(project(camera.to_camera(centre[:, None] + ring), camera.intrinsics))
    return np.stack(polys)


def render_video(
    frames: int | None = None,
    size: int = 128,
    fps: float = 30.0,
    appearance_seed: int = 0,
    motion_seed: int = 0,
    people: int = 1,
    occluders: bool | Sequence[Occluder] = False,
    motion_blur: bool = False,
    pan: bool = False,
    motion: np.ndarray | None = None,
    fill: tuple[float, float] = (0.6, 0.85),
    families: Sequence[str] | None = None,
    draw_people: bool = True,
) -> SyntheticVideo:
    """Render one video of ``people`` articulated people with exact ground truth.

    frames: number of frames T (default 120, or the whole of ``motion``). size: square frame side
        in px (even, >= 32). fps: frames per second.
    appearance_seed: bodies' proportions, clothing, skin, background. motion_seed: actions,
        camera, occluder paths. The same seeds give the same video.
    occluders: True for random bars crossing the frame, or explicit ``Occluder`` objects.
    motion_blur: average of 5 sub-frame renders over 0.6 of the frame interval (labels are at the
        frame time). pan: slow camera yaw. motion: (T, 17, 3) world mm (y up, x to the person's
        left, z forward) for person 0 instead of a generated performance.
    fill: range of the fraction of the frame height the people span (from the floor to the head).
    families: the motion families the generated people's actions are drawn from (default all).
    draw_people: False renders the same scene without people or shadows (a background plate) and
        keeps the annotation of the video with people.
    Returns frames (T, size, size, 3) uint8 RGB and the annotation arrays (docs/data_format.md).
    A camera draw that brings a framed point within ``NEAR_MM`` of the camera is replaced by the
    next draw of the same seeded generator; ValueError (saying what was tried) after
    ``CAMERA_TRIES`` such draws.
    """
    motion, frames = _check_arguments(motion, frames, size, people, fps)
    appearance_ss = np.random.SeedSequence(appearance_seed).spawn(1 + people)
    motion_ss = np.random.SeedSequence(motion_seed).spawn(3 + people)
    offsets = np.linspace(-SHUTTER / 2, SHUTTER / 2, BLUR_SAMPLES) if motion_blur else np.zeros(1)
    per_frame = len(offsets)
    frame_pos = (np.arange(frames)[:, None] + offsets).ravel()
    times, labelled = frame_pos / fps, np.arange(frames) * per_frame + per_frame // 2

    world, shapes, looks, labels, floor = _people(
        appearance_ss, motion_ss, people, motion, frame_pos, times, labelled, frames / fps, families
    )
    height = REFERENCE_HEIGHT_MM * max(s.scale for s in shapes)
    points = [body_points(j, s.scale) for j, s in zip(world, shapes)]
    framed = np.concatenate([p[labelled].reshape(-1, 3) for p in points])
    framed = np.concatenate([framed, framed * [1, 0, 1] + [0, floor, 0]])
    camera_rng = np.random.default_rng(motion_ss[0])
    about = "the external motion (person 0)" if motion is not None else "the generated motions"
    if people > 1:
        about += f" with {people} people"
    camera, cams = _frame_camera(camera_rng, points, framed, times, size, fill, pan, about,
                                 motion_seed)  # fmt: skip
    views = [
        prepare_person(c, camera.intrinsics, s.scale, s.girth, look)
        for c, s, look in zip(cams, shapes, looks)
    ]
    if occluders is True:
        occluders = sample_occluders(np.random.default_rng(motion_ss[1]), size, frames)
    panorama = make_background(np.random.default_rng(appearance_ss[0]), size, camera.horizon_row())
    shadows = _shadow_polygons(camera, world, floor, height) if draw_people else None
    scene = (panorama, camera, views, shadows, list(occluders or []), draw_people)
    video, visibility = _render_frames(scene, frames, per_frame, size, frame_pos)

    seeds = (appearance_seed, motion_seed)
    ann = _annotation(views, cams, camera, visibility, labels, labelled, size, fps, seeds)
    return SyntheticVideo(frames=video, annotation=ann)


def _check_arguments(motion, frames, size: int, people: int, fps: float):
    """(motion as (T, 17, 3) float64 cut to ``frames``, or None; the frame count), or ValueError."""
    if motion is not None:
        motion = np.asarray(motion, dtype=np.float64)
        if motion.ndim != 3 or motion.shape[1:] != (NUM_JOINTS, 3) or not len(motion):
            raise ValueError(f"motion has shape {motion.shape}; expected (T, 17, 3) world mm")
        frames = len(motion) if frames is None else frames
        if frames > len(motion):
            raise ValueError(f"frames={frames} but the motion has only {len(motion)} frames")
        motion = motion[:frames]
    frames = 120 if frames is None else frames
    if size < 32 or size % 2:
        raise ValueError(f"size={size}: must be even (H.264 yuv420p) and at least 32")
    if frames < 1 or not 1 <= people <= MAX_PEOPLE or fps <= 0:
        raise ValueError(f"need frames >= 1, 1 <= people <= {MAX_PEOPLE}, fps > 0")
    return motion, frames


def _frame_camera(rng, points, framed, times, size, fill, pan, about: str, motion_seed: int):
    """A camera that frames ``framed`` (N, 3) world mm, and each person's ``points`` in its
    coordinates. The first draw is the one videos have always had; redraws only replace draws
    that bring a point within NEAR_MM of the camera; ValueError after CAMERA_TRIES of them."""
    nearest = []
    for _ in range(CAMERA_TRIES):
        camera = sample_camera(rng, framed, times, size, fill, pan)
        cams = [camera.to_camera(p) for p in points]
        nearest.append(float(min(c[..., 2].min() for c in cams)))
        if nearest[-1] >= NEAR_MM:  # False for NaN too
            return camera, cams
    span = " x ".join(f"{v:.0f}" for v in np.ptp(framed, axis=0))
    raise ValueError(
        f"no camera frames {about}: every framed point (joints, body surface and the floor "
        f"under them) must stay {NEAR_MM:.0f} mm in front of the camera, but all "
        f"{CAMERA_TRIES} camera draws seeded by motion_seed={motion_seed} came closer "
        f"(nearest point {min(nearest):.0f} to {max(nearest):.0f} mm); the framed points span "
        f"{span} mm (x, y up, z) and the camera's distance scales with that span, so a clip "
        "only a few cm across (metres instead of mm?) cannot be framed"
    )


def _render_frames(scene, frames: int, per_frame: int, size: int, frame_pos: np.ndarray):
    """Frames (T, size, size, 3) uint8, each the mean of its ``per_frame`` sub-frame renders,
    and the visibility (people, T, J) uint8 of the centre sub-frame."""
    panorama, camera, views, shadows, occluders, draw_people = scene
    m = background_margin(size)
    shifts = camera.background_shift()
    centre = per_frame // 2
    video = np.empty((frames, size, size, 3), np.uint8)
    visibility = np.zeros((len(views), frames, NUM_JOINTS), np.uint8)
    for t in range(frames):
        acc = np.zeros((size, size, 3), np.float32)
        for c in range(per_frame):
            n = t * per_frame + c
            shift = np.array([[1.0, 0, m - shifts[n, 0]], [0, 1.0, m - shifts[n, 1]]])
            bg = cv2.warpAffine(panorama, shift, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT)  # fmt: skip
            img, ids = render_frame(bg, views, shadows, n, occluders, frame_pos[n], draw_people)
            if c == centre:
                for k in range(len(views)):
                    visibility[k, t] = joint_visibility(ids, views, k, n)
            acc += img
        video[t] = np.round(acc / per_frame)
    return video, visibility


def _people(
    appearance_ss, motion_ss, people, motion, frame_pos, times, labelled, duration, families
):
    """Each person's world joints (T x sub-frames, J, 3) mm standing in its slot, body shape,
    look and motion label, and the floor height (mm) under all of them."""
    world, shapes, looks, labels = [], [], [], []
    for k in range(people):
        rng = np.random.default_rng(appearance_ss[1 + k])
        shape = sample_body_shape(rng)
        looks.append(sample_appearance(rng))
        if k == 0 and motion is not None:
            joints, label = _interp_frames(motion, frame_pos), "external"
        else:
            drift = (0.08 if people == 1 else 0.25) * REFERENCE_HEIGHT_MM * shape.scale
            mrng = np.random.default_rng(motion_ss[3 + k])
            label, joints = sample_person_motion(times, duration, mrng, shape, drift, families)
        # Rendering depends on the joints alone (not on how they were made), so a motion written
        # out and read back through ``motion`` renders the same video.
        shapes.append(replace(shape, scale=_body_scale(joints[labelled])))
        world.append(joints)
        labels.append(label)
    height = REFERENCE_HEIGHT_MM * max(s.scale for s in shapes)
    slots = _slots(np.random.default_rng(motion_ss[2]), people, height)
    floor = np.inf
    for k, joints in enumerate(world):
        joints[..., [0, 2]] += slots[k] - joints[labelled, 0][:, [0, 2]].mean(axis=0)
        ankle = joints[labelled][:, [3, 6], 1].min()
        floor = min(floor, ankle - ANKLE_HEIGHT_MM * shapes[k].scale)
    return world, shapes, looks, labels, floor


def _annotation(views, cams, camera, visibility, labels, labelled, size, fps, seeds) -> dict:
    """The annotation arrays (docs/data_format.md) at the frame times ``labelled``: one person's
    without a person axis, several people's with it and their track ids."""
    people = len(views)
    ann = {
        "keypoints_2d": np.stack([v.uv[labelled, :NUM_JOINTS] for v in views]).astype(np.float32),
        "visibility": visibility,
        "keypoints_3d": np.stack([c[labelled, :NUM_JOINTS] for c in cams]).astype(np.float32),
        "bboxes": np.stack([person_boxes(v, size)[labelled] for v in views]),
    }
    if people == 1:
        ann = {k: v[0] for k, v in ann.items()}
    ann |= {
        "camera": camera.intrinsics.astype(np.float32),
        "world_to_camera": camera.world_to_camera()[labelled].astype(np.float32),
        "fps": np.float32(fps),
        "joint_names": np.array(JOINT_NAMES),
        "motion": np.array(labels[0] if people == 1 else labels),
        "appearance_seed": np.int64(seeds[0]),
        "motion_seed": np.int64(seeds[1]),
    }
    if people > 1:
        ann["track_ids"] = np.arange(people, dtype=np.int64)
    return ann
