"""Named skeleton layouts and explicit conversions between them.

A keypoint array only means something with its layout: COCO-ordered 2D fed to a Human3.6M-ordered
lifter gives random 3D without any error. Every layout here has a name, its joints' names in file
order, its left/right pairs, its limbs and, where the dataset defines them, COCO OKS sigmas.
:func:`convert` moves keypoints from one layout to another by joint name: a joint the target has
and the source lacks comes out invisible (visibility 0, coordinates NaN), never invented from
its neighbours. :func:`check_layout` is the guard every reader of a model file or annotation
calls; a mismatch raises :class:`LayoutMismatchError` naming both layouts and the converter.

Joint names are shared across layouts only where the point is the same one:
- the 12 limb joints ``{l,r}_{shoulder,elbow,wrist,hip,knee,ankle}`` are in every layout (each
  dataset places its hips a little differently; they are still converted as the same joint);
- ``head_top``: the top of the skull (Human3.6M's "head", MPII's and PoseTrack's head top);
- ``pelvis`` and ``thorax``: Human3.6M and MPII;
- ``nose``, the eyes and ears: COCO (and the nose of PoseTrack).
Points with no counterpart keep their own names and do not convert: Human3.6M's "neck" (near the
nose, see :mod:`css_pose.data.synthetic.body`; named ``neck_nose`` here) and "spine", MPII's "upper_neck", JHMDB's "neck",
"belly" and "face", Penn Action's "head" (the head's centre) and PoseTrack's "head_bottom".

The canonical layout of css_pose is ``h36m17`` (:mod:`css_pose.skeleton`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from css_pose import skeleton

LIMB_JOINTS = tuple(
    f"{side}_{part}"
    for part in ("shoulder", "elbow", "wrist", "hip", "knee", "ankle")
    for side in ("l", "r")
)


class LayoutMismatchError(ValueError):
    """Keypoints in one layout were given where another is expected."""


@dataclass(frozen=True)
class Layout:
    """A skeleton layout.

    Attributes:
        name: registry key, e.g. "coco17".
        title: how people call it, e.g. "COCO-17".
        joints: joint names in the dataset's file order (J,).
        limbs: (a, b) joint-index pairs drawn as bones.
        sigmas: COCO OKS per-joint sigmas (J,), or None where the dataset defines none.
    """

    name: str
    title: str
    joints: tuple[str, ...]
    limbs: tuple[tuple[int, int], ...]
    sigmas: tuple[float, ...] | None = None

    def __post_init__(self):
        if len(set(self.joints)) != len(self.joints):
            raise ValueError(f"layout {self.name}: repeated joint names")
        for a, b in self.limbs:
            if not (0 <= a < len(self.joints) and 0 <= b < len(self.joints)):
                raise ValueError(f"layout {self.name}: limb ({a}, {b}) out of range")
        if self.sigmas is not None and len(self.sigmas) != len(self.joints):
            raise ValueError(
                f"layout {self.name}: {len(self.sigmas)} sigmas for {len(self)} joints"
            )

    def __len__(self) -> int:
        return len(self.joints)

    def index(self, joint: str) -> int:
        """File index of ``joint``; KeyError naming the layout's joints when it has none."""
        try:
            return self.joints.index(joint)
        except ValueError:
            raise KeyError(f"{self.title} has no joint {joint!r}; it has {self.joints}") from None

    @property
    def flip_pairs(self) -> tuple[tuple[int, int], ...]:
        """(left, right) index pairs: every ``l_x`` with its ``r_x``."""
        pairs = []
        for i, name in enumerate(self.joints):
            if name.startswith("l_") and f"r_{name[2:]}" in self.joints:
                pairs.append((i, self.joints.index(f"r_{name[2:]}")))
        return tuple(pairs)

    def flip_permutation(self) -> np.ndarray:
        """(J,) index array swapping left and right: ``kp_mirrored = kp[..., perm, :]``."""
        perm = np.arange(len(self))
        for a, b in self.flip_pairs:
            perm[a], perm[b] = b, a
        return perm


def _limbs(joints: tuple[str, ...], names: list[tuple[str, str]]) -> tuple[tuple[int, int], ...]:
    return tuple((joints.index(a), joints.index(b)) for a, b in names)


def _side_chain(*parts: str) -> list[tuple[str, str]]:
    """Bones along ``parts`` on both sides, e.g. shoulder -> elbow -> wrist."""
    return [(f"{side}_{a}", f"{side}_{b}") for side in ("l", "r") for a, b in zip(parts, parts[1:])]


_ARMS_LEGS = _side_chain("shoulder", "elbow", "wrist") + _side_chain("hip", "knee", "ankle")

# Human3.6M: css_pose's own skeleton, whose "head" is the top of the skull and whose "neck" sits
# near the nose (VideoPose3D calls it "neck/nose"): not JHMDB's neck, so it is named apart.
_H36M_NAMES = {"head": "head_top", "neck": "neck_nose"}
_H36M = tuple(_H36M_NAMES.get(n, n) for n in skeleton.JOINT_NAMES)
_COCO = (
    "nose", "l_eye", "r_eye", "l_ear", "r_ear",
    "l_shoulder", "r_shoulder", "l_elbow", "r_elbow", "l_wrist", "r_wrist",
    "l_hip", "r_hip", "l_knee", "r_knee", "l_ankle", "r_ankle",
)  # fmt: skip
# COCO's published OKS sigmas (pycocotools' COCOeval.kpt_oks_sigmas).
_COCO_SIGMAS = (
    0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062, 0.062,
    0.107, 0.107, 0.087, 0.087, 0.089, 0.089,
)  # fmt: skip
_MPII = (
    "r_ankle", "r_knee", "r_hip", "l_hip", "l_knee", "l_ankle", "pelvis", "thorax",
    "upper_neck", "head_top", "r_wrist", "r_elbow", "r_shoulder", "l_shoulder", "l_elbow",
    "l_wrist",
)  # fmt: skip
_JHMDB = (
    "neck", "belly", "face", "r_shoulder", "l_shoulder", "r_hip", "l_hip", "r_elbow", "l_elbow",
    "r_knee", "l_knee", "r_wrist", "l_wrist", "r_ankle", "l_ankle",
)  # fmt: skip
_PENN = (
    "head", "l_shoulder", "r_shoulder", "l_elbow", "r_elbow", "l_wrist", "r_wrist",
    "l_hip", "r_hip", "l_knee", "r_knee", "l_ankle", "r_ankle",
)  # fmt: skip
# PoseTrack 2018: COCO's order with head_bottom and head_top in the eyes' places; the ears are
# in the files but never annotated.
_POSETRACK = ("nose", "head_bottom", "head_top", *_COCO[3:])

LAYOUTS: dict[str, Layout] = {
    layout.name: layout
    for layout in (
        Layout(
            "h36m17",
            "Human3.6M-17",
            _H36M,
            tuple((p, c) for p, c in skeleton.BONES),
        ),
        Layout(
            "coco17",
            "COCO-17",
            _COCO,
            _limbs(
                _COCO,
                [
                    *_ARMS_LEGS,
                    ("l_shoulder", "r_shoulder"),
                    ("l_hip", "r_hip"),
                    ("l_shoulder", "l_hip"),
                    ("r_shoulder", "r_hip"),
                    ("nose", "l_eye"),
                    ("nose", "r_eye"),
                    ("l_eye", "l_ear"),
                    ("r_eye", "r_ear"),
                ],
            ),  # fmt: skip
            _COCO_SIGMAS,
        ),
        Layout(
            "mpii16",
            "MPII-16",
            _MPII,
            _limbs(
                _MPII,
                [
                    *_ARMS_LEGS,
                    ("pelvis", "l_hip"),
                    ("pelvis", "r_hip"),
                    ("pelvis", "thorax"),
                    ("thorax", "upper_neck"),
                    ("upper_neck", "head_top"),
                    ("thorax", "l_shoulder"),
                    ("thorax", "r_shoulder"),
                ],
            ),  # fmt: skip
        ),
        Layout(
            "jhmdb15",
            "JHMDB-15",
            _JHMDB,
            _limbs(
                _JHMDB,
                [
                    *_ARMS_LEGS,
                    ("neck", "face"),
                    ("neck", "belly"),
                    ("neck", "l_shoulder"),
                    ("neck", "r_shoulder"),
                    ("belly", "l_hip"),
                    ("belly", "r_hip"),
                ],
            ),  # fmt: skip
        ),
        Layout(
            "penn13",
            "Penn Action-13",
            _PENN,
            _limbs(
                _PENN,
                [
                    *_ARMS_LEGS,
                    ("head", "l_shoulder"),
                    ("head", "r_shoulder"),
                    ("l_shoulder", "r_shoulder"),
                    ("l_hip", "r_hip"),
                    ("l_shoulder", "l_hip"),
                    ("r_shoulder", "r_hip"),
                ],
            ),  # fmt: skip
        ),
        Layout(
            "posetrack18",
            "PoseTrack-2018",
            _POSETRACK,
            _limbs(
                _POSETRACK,
                [
                    *_ARMS_LEGS,
                    ("l_shoulder", "r_shoulder"),
                    ("l_hip", "r_hip"),
                    ("l_shoulder", "l_hip"),
                    ("r_shoulder", "r_hip"),
                    ("head_bottom", "head_top"),
                    ("head_bottom", "nose"),
                    ("head_bottom", "l_shoulder"),
                    ("head_bottom", "r_shoulder"),
                ],
            ),  # fmt: skip
            _COCO_SIGMAS,  # PoseTrack's evaluation uses COCO's per-position sigmas
        ),
    )
}
CANONICAL = "h36m17"


def get_layout(name: str | Layout) -> Layout:
    """The layout called ``name`` (or ``name`` itself); KeyError listing the known ones."""
    if isinstance(name, Layout):
        return name
    try:
        return LAYOUTS[name]
    except KeyError:
        raise KeyError(f"unknown skeleton layout {name!r}; known: {', '.join(LAYOUTS)}") from None


def joint_map(source: str | Layout, target: str | Layout) -> np.ndarray:
    """(J_target,) int64: for each target joint the source index of the same joint, -1 where the
    source has none."""
    src, dst = get_layout(source), get_layout(target)
    return np.array(
        [src.joints.index(n) if n in src.joints else -1 for n in dst.joints], dtype=np.int64
    )


def convert(
    keypoints: np.ndarray,
    visibility: np.ndarray | None,
    source: str | Layout,
    target: str | Layout,
) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints (..., J_source, D) and visibility (..., J_source) in ``source`` -> the same in
    ``target`` (..., J_target, D), (..., J_target). Joints the source lacks are NaN with
    visibility 0. ``visibility`` None means every source joint is visible (1).

    Raises LayoutMismatchError when the arrays do not have the source layout's joint count.
    """
    src, dst = get_layout(source), get_layout(target)
    keypoints = np.asarray(keypoints)
    if keypoints.ndim < 2 or keypoints.shape[-2] != len(src):
        raise LayoutMismatchError(
            f"keypoints of shape {keypoints.shape} are not {src.title} (needs {len(src)} joints "
            "on the second-to-last axis)"
        )
    if visibility is None:
        visibility = np.ones(keypoints.shape[:-1], np.float32)
    visibility = np.asarray(visibility)
    if visibility.shape != keypoints.shape[:-1]:
        raise LayoutMismatchError(
            f"visibility of shape {visibility.shape} does not match keypoints {keypoints.shape}"
        )
    index = joint_map(src, dst)
    present = index >= 0
    out_kp = np.full((*keypoints.shape[:-2], len(dst), keypoints.shape[-1]), np.nan)
    out_kp = out_kp.astype(np.result_type(keypoints.dtype, np.float32))
    out_vis = np.zeros((*visibility.shape[:-1], len(dst)), visibility.dtype)
    out_kp[..., present, :] = keypoints[..., index[present], :]
    out_vis[..., present] = visibility[..., index[present]]
    return out_kp, out_vis


def check_layout(got: str | None, expected: str, where: str) -> None:
    """Raise LayoutMismatchError unless layout ``got`` is ``expected``; ``where`` names the
    file or model that carries ``got``. None (a file from before layouts were recorded) is taken
    as the canonical layout."""
    got = got or CANONICAL
    if got == expected:
        return
    a, b = get_layout(got), get_layout(expected)
    raise LayoutMismatchError(
        f"{where} holds {a.title} keypoints ({a.name}) where {b.title} ({b.name}) is expected; "
        f"convert them first: css_pose.layouts.convert(keypoints, visibility, {a.name!r}, "
        f"{b.name!r}) (joints {b.title} has and {a.title} lacks become invisible)"
    )
