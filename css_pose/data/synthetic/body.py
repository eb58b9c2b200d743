"""Body model of the synthetic people: bone lengths and forward kinematics on the canonical skeleton.

World convention (shared with ``--motion`` files, see docs/data_format.md): millimetres, body-centred,
right-handed, y up, z the direction the person faces at yaw 0, x to the person's left.

A pose is a set of joint angles in degrees (the ``DOFS`` below). Forward kinematics turns them into
joint positions with bone lengths that are exactly constant over time, so the ground truth is rigid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from css_pose.skeleton import FLIP_PAIRS, NUM_JOINTS, PARENTS

# Rest direction of the bone that ends at each joint, in its parent's frame (arms hanging down).
# Index = child joint; the root has no bone. The "neck" joint of Human3.6M sits near the nose, hence
# the small forward component; the "head" joint is the top of the skull.
_REST_DIRS = np.array(
    [
        [0, 0, 0],
        [-1, 0, 0],  # r_hip
        [0, -1, 0],  # r_knee
        [0, -1, 0],  # r_ankle
        [1, 0, 0],  # l_hip
        [0, -1, 0],  # l_knee
        [0, -1, 0],  # l_ankle
        [0, 1, 0],  # spine
        [0, 1, 0],  # thorax
        [0, 1, 0.15],  # neck
        [0, 1, -0.1],  # head
        [1, 0, 0],  # l_shoulder
        [0, -1, 0],  # l_elbow
        [0, -1, 0],  # l_wrist
        [-1, 0, 0],  # r_shoulder
        [0, -1, 0],  # r_elbow
        [0, -1, 0],  # r_wrist
    ],
    dtype=np.float64,
)
_REST_DIRS[1:] /= np.linalg.norm(_REST_DIRS[1:], axis=1, keepdims=True)

# Mean bone lengths (mm) of a ~1.70 m adult, close to Human3.6M subject averages.
MEAN_BONE_MM = np.array(
    [0, 130, 450, 445, 130, 450, 445, 233, 257, 120, 115, 150, 280, 250, 150, 280, 250],
    dtype=np.float64,
)
# Height of the ankle joint above the sole (mm at scale 1); the sole touches the floor at y = 0.
ANKLE_HEIGHT_MM = 80.0
REFERENCE_HEIGHT_MM = 1700.0

# Joint angles (degrees). pelvis_tilt > 0 and torso_pitch > 0 lean the upper body forward. Left and
# right limbs use mirrored conventions, so the same value means the same movement on both sides:
# flex > 0 moves the limb forward (knee and elbow: bends them), abd > 0 lifts it sideways away from
# the body, shoulder rot > 0 turns the elbow's bending plane upwards.
DOFS: tuple[str, ...] = (
    "root_yaw",
    "pelvis_tilt",
    "torso_pitch",
    "torso_roll",
    "torso_yaw",
    "neck_pitch",
    "neck_yaw",
    "l_hip_flex",
    "l_hip_abd",
    "r_hip_flex",
    "r_hip_abd",
    "l_knee",
    "r_knee",
    "l_shoulder_flex",
    "l_shoulder_abd",
    "l_shoulder_rot",
    "r_shoulder_flex",
    "r_shoulder_abd",
    "r_shoulder_rot",
    "l_elbow",
    "r_elbow",
)
# Neutral standing pose; a motion only lists the DOFs it changes.
NEUTRAL: dict[str, float] = {
    "l_shoulder_abd": 8.0,
    "r_shoulder_abd": 8.0,
    "l_elbow": 10.0,
    "r_elbow": 10.0,
    "l_knee": 3.0,
    "r_knee": 3.0,
}
# Plausible ranges (degrees). Knees and elbows bend one way only. Shoulder flexion is unlimited on
# purpose: the shoulder is a ball joint and arm circles sweep through full turns. Root yaw is free.
LIMITS: dict[str, tuple[float, float]] = {
    "pelvis_tilt": (-20, 90),
    "torso_pitch": (-30, 90),
    "torso_roll": (-30, 30),
    "torso_yaw": (-45, 45),
    "neck_pitch": (-40, 50),
    "neck_yaw": (-70, 70),
    "l_hip_flex": (-30, 125),
    "r_hip_flex": (-30, 125),
    "l_hip_abd": (-15, 70),
    "r_hip_abd": (-15, 70),
    "l_knee": (0, 150),
    "r_knee": (0, 150),
    "l_shoulder_abd": (-10, 180),
    "r_shoulder_abd": (-10, 180),
    "l_shoulder_rot": (-90, 100),
    "r_shoulder_rot": (-90, 100),
    "l_elbow": (0, 150),
    "r_elbow": (0, 150),
}


@dataclass(frozen=True)
class BodyShape:
    """Per-person proportions, fixed for a whole video.

    bone_mm: (17,) length of the bone ending at each joint (index 0 unused), mm.
    scale: overall size relative to a 1.70 m adult (height = scale * 1700 mm, approximately).
    girth: limb and torso thickness factor used by the renderer (1 = average build).
    """

    bone_mm: np.ndarray
    scale: float
    girth: float


def sample_body_shape(rng: np.random.Generator) -> BodyShape:
    """Random adult proportions: global scale 0.85-1.12 and +-8 % per-bone jitter, left = right."""
    scale = float(rng.uniform(0.85, 1.12))
    jitter = rng.uniform(0.92, 1.08, NUM_JOINTS)
    for left, right in FLIP_PAIRS:
        jitter[right] = jitter[left]
    return BodyShape(
        bone_mm=MEAN_BONE_MM * scale * jitter, scale=scale, girth=float(rng.uniform(0.85, 1.25))
    )


def _rot(axis: int, deg: np.ndarray) -> np.ndarray:
    """(T,) angles in degrees -> (T, 3, 3) right-handed rotations about world axis 0=x, 1=y, 2=z."""
    a = np.deg2rad(deg)
    c, s = np.cos(a), np.sin(a)
    r = np.zeros((*a.shape, 3, 3))
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    r[..., axis, axis] = 1.0
    r[..., i, i] = c
    r[..., j, j] = c
    r[..., i, j] = -s
    r[..., j, i] = s
    return r


def clamp_to_limits(angles: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Clip every DOF to ``LIMITS``; DOFs without limits pass through unchanged."""
    return {k: np.clip(v, *LIMITS[k]) if k in LIMITS else v for k, v in angles.items()}


def forward_kinematics(angles: dict[str, np.ndarray], shape: BodyShape) -> np.ndarray:
    """Joint positions of a pose sequence relative to the pelvis.

    angles: DOF name -> (T,) degrees; missing DOFs take their ``NEUTRAL`` value (0 if none).
        Values are clamped to ``LIMITS`` first.
    Returns (T, 17, 3) float64 mm in the body-centred world axes (y up), pelvis at the origin.
    Bone lengths equal ``shape.bone_mm`` exactly in every frame.
    """
    n = len(next(iter(angles.values())))
    a = clamp_to_limits(
        {k: np.broadcast_to(angles.get(k, NEUTRAL.get(k, 0.0)), (n,)) for k in DOFS}
    )
    half = {k: a[k] / 2 for k in ("torso_pitch", "torso_roll", "torso_yaw")}
    # Lean is split over spine and thorax so the back curves instead of folding at one joint.
    torso = _rot(1, half["torso_yaw"]) @ _rot(0, half["torso_pitch"]) @ _rot(2, half["torso_roll"])
    local = np.broadcast_to(np.eye(3), (NUM_JOINTS, n, 3, 3)).copy()
    tilt = _rot(0, a["pelvis_tilt"])
    local[0] = _rot(1, a["root_yaw"]) @ tilt
    local[7] = torso
    local[8] = torso
    local[9] = _rot(1, a["neck_yaw"]) @ _rot(0, a["neck_pitch"])
    for side, sign, hip, shoulder in (("l", 1, 4, 11), ("r", -1, 1, 14)):
        # Hip and shoulder angles act in the joint frame: mirrored about the body's mid-plane by
        # flipping the sign of sideways (z-axis) and twist (y-axis) rotations on the right side.
        # Hip angles are measured from the upright heading frame, not from the tilted pelvis, so a
        # forward bend at the hips leaves the legs where they are.
        local[hip] = (
            np.swapaxes(tilt, -1, -2)
            @ _rot(2, sign * a[f"{side}_hip_abd"])
            @ _rot(0, -a[f"{side}_hip_flex"])
        )
        local[hip + 1] = _rot(0, a[f"{side}_knee"])  # knee: the joint after the hip
        local[shoulder] = (
            _rot(2, sign * a[f"{side}_shoulder_abd"])
            @ _rot(0, -a[f"{side}_shoulder_flex"])
            @ _rot(1, sign * a[f"{side}_shoulder_rot"])
        )
        local[shoulder + 1] = _rot(0, -a[f"{side}_elbow"])

    glob = np.empty_like(local)
    pos = np.zeros((n, NUM_JOINTS, 3))
    for j, p in enumerate(PARENTS):
        if p < 0:
            glob[j] = local[j]
            continue
        pos[:, j] = pos[:, p] + glob[p] @ (_REST_DIRS[j] * shape.bone_mm[j])
        glob[j] = glob[p] @ local[j]
    return pos
