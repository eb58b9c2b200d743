"""2D/3D pose pairs for lifters without rendering: the body model, the motion generator and a
camera, no pixels (issue 20). Tens of thousands of sequences in minutes, where rendering gives
a few dozen videos.

Each sequence is one person seen by one static camera:

- **body**: proportions wider than the rendered videos' (global scale 0.80-1.15, +-12 % per
  bone, left = right);
- **motion**: a family of ``css_pose.data.synthetic.motions`` (alone, a transition between two,
  or one's legs with another's arms: :func:`~css_pose.data.synthetic.motions.sample_angles`), or
  random smooth trajectories of every joint angle within its limits (:func:`random_angles`),
  or a family with a random subset of its joint angles replaced by random trajectories; then
  global turns (a yaw rate of up to 120 degrees/s over part of the clip) and travel (up to
  1.5 m/s along the heading);
- **camera**: :func:`~css_pose.data.synthetic.camera.sample_camera` framing the whole sequence,
  square images of :data:`IMAGE_PX` px, the field of view, elevation and fill of
  :data:`CAMERAS`.

Splits: ``train`` and ``test`` (different seeds) draw the training families and cameras;
``heldout_motion`` only the families of :data:`HELD_OUT_FAMILIES`, which never appear in
training (nor do random trajectories there); ``heldout_camera`` the training motions seen by
cameras outside the training ranges (telephoto or wide lenses, looking steeply down, the person
small in the frame). A lifter trained on ``train`` is scored on the other three.

Outputs are :class:`css_pose.data.h36m.PoseSequence` objects (2D in px, 3D in camera
coordinates in metres, Human3.6M-17 joints), so the lifting code reads them like Human3.6M.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from css_pose.artifacts.atomic import atomic_path
from css_pose.data.h36m import Camera as H36MCamera
from css_pose.data.h36m import PoseSequence
from css_pose.data.synthetic.body import (
    ANKLE_HEIGHT_MM,
    LIMITS,
    MEAN_BONE_MM,
    BodyShape,
    forward_kinematics,
)
from css_pose.data.synthetic.camera import project, sample_camera
from css_pose.data.synthetic.motions import FAMILIES, Angles, sample_angles, smooth_noise
from css_pose.data.synthetic.video import CAMERA_TRIES, NEAR_MM
from css_pose.skeleton import FLIP_PAIRS, NUM_JOINTS

FORMAT = "css_pose.lift_poses/1"
IMAGE_PX = 1000
SPLITS = ("train", "test", "heldout_motion", "heldout_camera")
HELD_OUT_FAMILIES = ("kick", "jumping_jacks", "bend")
TRAIN_FAMILIES = tuple(f for f in FAMILIES if f not in HELD_OUT_FAMILIES)


@dataclass(frozen=True)
class CameraRange:
    """Ranges the camera of a sequence is drawn from: field of view and elevation (degrees;
    positive looks down) and the fraction of the image height the whole sequence spans."""

    fov_deg: tuple[float, float]
    elevation_deg: tuple[float, float]
    fill: tuple[float, float]


CAMERAS = {
    "train": CameraRange(fov_deg=(35, 70), elevation_deg=(-10, 30), fill=(0.3, 0.9)),
    # Outside every training range: a long or a very wide lens, a steep view, a small person.
    "heldout": CameraRange(fov_deg=(15, 25), elevation_deg=(40, 60), fill=(0.15, 0.28)),
}
HELD_OUT_WIDE_FOV = (80.0, 95.0)


# Body proportion ranges: (global scale range, per-bone jitter). "wide" is the default and
# wider than real adults; "adult" is about two standard deviations of adult stature (CV about
# 4 %) and of limb proportions, for measuring how much of a lifter's error the body-size
# ambiguity makes (a monocular lifter cannot tell a small near person from a tall far one).
BODIES = {"wide": ((0.80, 1.15), 0.12), "adult": ((0.92, 1.08), 0.05)}


def sample_shape(rng: np.random.Generator, bodies: str = "wide") -> BodyShape:
    """Random proportions of :data:`BODIES` ``bodies``: a global scale and a per-bone jitter,
    left = right (default: scale 0.80-1.15, +-12 % per bone)."""
    (lo, hi), jitter_range = BODIES[bodies]
    scale = float(rng.uniform(lo, hi))
    jitter = rng.uniform(1 - jitter_range, 1 + jitter_range, NUM_JOINTS)
    for left, right in FLIP_PAIRS:
        jitter[right] = jitter[left]
    return BodyShape(bone_mm=MEAN_BONE_MM * scale * jitter, scale=scale, girth=1.0)


def random_angles(t: np.ndarray, rng: np.random.Generator, dofs=None) -> Angles:
    """Smooth random trajectories (degrees) of every DOF with limits (or of ``dofs``): each
    wanders around a random centre inside its range with a random amplitude, and is clipped to
    the range by the body model."""
    out = {}
    for dof in dofs if dofs is not None else LIMITS:
        lo, hi = LIMITS[dof]
        centre = rng.uniform(lo + 0.2 * (hi - lo), hi - 0.2 * (hi - lo))
        out[dof] = centre + smooth_noise(t, rng, rng.uniform(0.1, 0.4) * (hi - lo))
    return out


def _motion(t: np.ndarray, duration: float, rng: np.random.Generator, families) -> tuple:
    """(label, angles) of one sequence: families, random trajectories or a mixture of both."""
    kind = rng.choice(3, p=[0.5, 0.25, 0.25]) if families != HELD_OUT_FAMILIES else 0
    if kind == 1:
        angles = random_angles(t, rng)
        angles["root_yaw"] = rng.uniform(0, 360) + 0 * t
        return "random", angles
    label, angles = sample_angles(t, duration, rng, families)
    if kind == 2:
        dofs = [d for d in LIMITS if rng.random() < 0.4]
        angles.update(random_angles(t, rng, dofs))
        label += "+random"
    return label, angles


def _turn_and_travel(t: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Extra yaw (N,) degrees and floor travel (N, 2) mm (x, z) of one sequence."""
    yaw = np.zeros_like(t)
    if rng.random() < 0.5:  # a turn over part of the clip
        start, length = rng.uniform(0, t[-1] + 1e-9), rng.uniform(0.3, 2.0)
        yaw = rng.uniform(-120, 120) * np.clip(t - start, 0, length)
    travel = np.zeros((len(t), 2))
    if rng.random() < 0.4:  # walking somewhere: along a heading that the turn also rotates
        speed, heading = rng.uniform(0.2, 1.5) * 1000, rng.uniform(0, 2 * np.pi)
        direction = heading + np.deg2rad(yaw)
        dt = np.diff(t, prepend=t[0])
        travel = np.cumsum(
            speed * dt[:, None] * np.stack([np.sin(direction), np.cos(direction)], 1), 0
        )
    return yaw, travel


def sequence(
    rng: np.random.Generator,
    frames: int,
    fps: float,
    families,
    cameras: CameraRange,
    wide: bool,
    bodies: str = "wide",
) -> PoseSequence:
    """One sequence: (frames, 17, 2) px and (frames, 17, 3) camera metres (module docstring)."""
    t = np.arange(frames) / fps
    shape = sample_shape(rng, bodies)
    label, angles = _motion(t, frames / fps, rng, families)
    lift = angles.pop("lift", np.zeros_like(t))
    fov = HELD_OUT_WIDE_FOV if wide else cameras.fov_deg
    # A draw whose camera comes within NEAR_MM of a joint is drawn again (turns and travel
    # too); after CAMERA_TRIES the person stays in place.
    for attempt in range(CAMERA_TRIES):
        yaw, travel = _turn_and_travel(t, rng)
        if attempt == CAMERA_TRIES - 1:
            travel = np.zeros_like(travel)
        joints = forward_kinematics(
            {**angles, "root_yaw": angles.get("root_yaw", 0.0) + yaw}, shape
        )
        height = ANKLE_HEIGHT_MM * shape.scale - joints[:, [3, 6], 1].min(axis=1) + lift
        joints += np.stack([travel[:, 0], height, travel[:, 1]], axis=-1)[:, None, :]
        framed = np.concatenate([joints.reshape(-1, 3), joints.reshape(-1, 3) * [1, 0, 1]])
        camera = sample_camera(
            rng, framed, t, IMAGE_PX, cameras.fill, fov_deg=fov, elevation_deg=cameras.elevation_deg
        )
        if camera.to_camera(joints)[..., 2].min() >= NEAR_MM:
            break
    cam = camera.to_camera(joints)  # (T, 17, 3) mm
    uv = project(cam, camera.intrinsics)
    fx, fy, cx, cy = (float(v) for v in camera.intrinsics)
    view = H36MCamera("synthetic", (cx, cy), (fx, fy), IMAGE_PX, IMAGE_PX)
    return PoseSequence(
        "synthetic", label, view, uv.astype(np.float32), (cam / 1000).astype(np.float32)
    )


@dataclass(frozen=True)
class PairSet:
    """What a cached set of pose pairs holds (its key)."""

    split: str
    sequences: int
    frames: int
    seed: int
    fps: float = 30.0
    format: str = FORMAT
    bodies: str = "wide"

    def key(self) -> dict:
        """What names the cache file: every field; ``bodies`` only when not the default, so
        caches written before it existed keep their names."""
        out = asdict(self)
        if out["bodies"] == "wide":
            del out["bodies"]
        return out


def _split_sequence(args: tuple) -> PoseSequence:
    spec, i = args
    rng = np.random.default_rng([spec.seed, SPLITS.index(spec.split), i])
    motion = HELD_OUT_FAMILIES if spec.split == "heldout_motion" else TRAIN_FAMILIES
    cameras = CAMERAS["heldout" if spec.split == "heldout_camera" else "train"]
    wide = spec.split == "heldout_camera" and i % 2 == 1  # half telephoto, half very wide
    return sequence(rng, spec.frames, spec.fps, motion, cameras, wide, spec.bodies)


def pose_pairs(
    split: str,
    sequences: int,
    frames: int = 81,
    seed: int = 0,
    cache_dir: str | Path | None = "data/lift_poses",
    workers: int = 1,
    progress: bool = True,
    bodies: str = "wide",
) -> list[PoseSequence]:
    """``sequences`` sequences of ``frames`` frames of one split (module docstring), the same
    for the same arguments. ``bodies``: the proportion ranges (:data:`BODIES`). With
    ``cache_dir`` they are kept in one npz there, keyed by the arguments, and read back on the
    next call."""
    if split not in SPLITS:
        raise ValueError(f"split={split!r}: choose one of {SPLITS}")
    if bodies not in BODIES:
        raise ValueError(f"bodies={bodies!r}: choose one of {tuple(BODIES)}")
    if sequences < 1 or frames < 1:
        raise ValueError("sequences and frames must be >= 1")
    spec = PairSet(split, sequences, frames, seed, bodies=bodies)
    key = hashlib.sha1(json.dumps(spec.key(), sort_keys=True).encode()).hexdigest()[:12]
    path = None if cache_dir is None else Path(cache_dir) / f"{split}-{key}.npz"
    if path is not None and path.exists():
        return _read(path, spec)
    jobs = [(spec, i) for i in range(sequences)]
    bar = dict(total=sequences, desc=f"pose pairs ({split})", disable=not progress)
    if workers > 1:
        with mp.get_context("spawn").Pool(workers) as pool:
            out = list(tqdm(pool.imap(_split_sequence, jobs, chunksize=64), **bar))
    else:
        out = [_split_sequence(job) for job in tqdm(jobs, **bar)]
    if path is not None:
        _write(path, spec, out)
    return out


def _write(path: Path, spec: PairSet, seqs: list[PoseSequence]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(
            f,
            spec=json.dumps(spec.key()),
            kp2d=np.stack([s.keypoints_2d for s in seqs]),
            kp3d=np.stack([s.keypoints_3d for s in seqs]),
            intrinsics=np.array([[*s.camera.focal_length, *s.camera.center] for s in seqs]),
            actions=np.array([s.action for s in seqs]),
        )


def _read(path: Path, spec: PairSet) -> list[PoseSequence]:
    with np.load(path, allow_pickle=False) as data:
        if json.loads(str(data["spec"])) != spec.key():
            raise ValueError(f"{path}: holds another set than {spec}; delete it to regenerate")
        return [
            PoseSequence(
                "synthetic",
                str(action),
                H36MCamera(
                    "synthetic",
                    (float(k[2]), float(k[3])),
                    (float(k[0]), float(k[1])),
                    IMAGE_PX,
                    IMAGE_PX,
                ),  # fmt: skip
                kp2,
                kp3,
            )
            for kp2, kp3, k, action in zip(
                data["kp2d"], data["kp3d"], data["intrinsics"], data["actions"]
            )
        ]
