"""The canonical 17-joint skeleton (Human3.6M order) used everywhere in css_pose.

Other layouts (COCO-17, MPII-16, ...) map onto it through explicit joint maps.
"""

from __future__ import annotations

import numpy as np

JOINT_NAMES: tuple[str, ...] = (
    "pelvis",
    "r_hip",
    "r_knee",
    "r_ankle",
    "l_hip",
    "l_knee",
    "l_ankle",
    "spine",
    "thorax",
    "neck",
    "head",
    "l_shoulder",
    "l_elbow",
    "l_wrist",
    "r_shoulder",
    "r_elbow",
    "r_wrist",
)
NUM_JOINTS = len(JOINT_NAMES)
PARENTS: tuple[int, ...] = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15)
FLIP_PAIRS: tuple[tuple[int, int], ...] = ((1, 4), (2, 5), (3, 6), (11, 14), (12, 15), (13, 16))
ROOT = 0
# Joint groups scored separately (the hard, fast-moving limb ends and their middles).
JOINT_GROUPS: dict[str, tuple[int, ...]] = {
    "wrists": (13, 16),
    "elbows": (12, 15),
    "knees": (2, 5),
    "ankles": (3, 6),
}
# One bone per non-root joint: (parent, child).
BONES: tuple[tuple[int, int], ...] = tuple((p, c) for c, p in enumerate(PARENTS) if p >= 0)


def flip_permutation() -> np.ndarray:
    """Index array that swaps left and right joints: ``kp_flipped = kp[..., perm, :]``."""
    perm = np.arange(NUM_JOINTS)
    for a, b in FLIP_PAIRS:
        perm[a], perm[b] = b, a
    return perm


def joint_side(j: int) -> str:
    """'l', 'r' or 'c' (centre) for joint index ``j``; used to colour limbs in overlays."""
    name = JOINT_NAMES[j]
    return name[0] if name[:2] in ("l_", "r_") else "c"
