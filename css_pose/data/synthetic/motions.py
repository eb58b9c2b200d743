"""Procedural motion families and their blends, evaluated at arbitrary times.

Every family maps times t (N,) in seconds and a random generator to joint angles in degrees (see
``body.DOFS``) plus an optional vertical ``lift`` in mm (airborne phases). Speed, phase and
amplitude are drawn per call, so two calls with different generators give different performances of
the same action. ``sample_person_motion`` picks one or two families, blends them and places the body
on the floor of the body-centred world (y up, mm).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from css_pose.data.synthetic.body import (
    ANKLE_HEIGHT_MM,
    NEUTRAL,
    BodyShape,
    forward_kinematics,
)

Angles = dict[str, np.ndarray]
TWO_PI = 2 * np.pi


def _phase(t: np.ndarray, rng: np.random.Generator, hz: tuple[float, float]) -> np.ndarray:
    """Cycle angle (radians) of a periodic action with a random frequency and phase."""
    return TWO_PI * rng.uniform(*hz) * t + rng.uniform(0, TWO_PI)


def _relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0)


def walk(t: np.ndarray, rng: np.random.Generator) -> Angles:
    th, a = _phase(t, rng, (0.7, 1.1)), rng.uniform(0.7, 1.2)
    s, c = np.sin(th), np.cos(th)
    # A knee bends while its hip swings forward (d/dt of the hip angle > 0).
    return {
        "r_hip_flex": 5 + 25 * a * s,
        "l_hip_flex": 5 - 25 * a * s,
        "r_knee": 5 + 55 * a * _relu(c) ** 2,
        "l_knee": 5 + 55 * a * _relu(-c) ** 2,
        "r_shoulder_flex": -20 * a * s,
        "l_shoulder_flex": 20 * a * s,
        "r_elbow": 15 + 10 * (1 - s),
        "l_elbow": 15 + 10 * (1 + s),
        "torso_yaw": -5 * a * s,
        "torso_pitch": np.full_like(t, 4.0),
    }


def run(t: np.ndarray, rng: np.random.Generator) -> Angles:
    th, a = _phase(t, rng, (1.2, 1.7)), rng.uniform(0.8, 1.2)
    s, c = np.sin(th), np.cos(th)
    return {
        "r_hip_flex": 10 + 40 * a * s,
        "l_hip_flex": 10 - 40 * a * s,
        "r_knee": 20 + 90 * a * _relu(c) ** 1.5,
        "l_knee": 20 + 90 * a * _relu(-c) ** 1.5,
        "r_shoulder_flex": -40 * a * s,
        "l_shoulder_flex": 40 * a * s,
        "r_elbow": 85 - 10 * s,
        "l_elbow": 85 + 10 * s,
        "torso_yaw": -8 * a * s,
        "pelvis_tilt": np.full_like(t, 10.0),
        "lift": 50 * a * _relu(np.sin(2 * th)),
    }


def wave(t: np.ndarray, rng: np.random.Generator) -> Angles:
    th, a = _phase(t, rng, (1.2, 2.5)), rng.uniform(0.7, 1.2)
    sides = [["l"], ["r"], ["l", "r"]][rng.choice(3, p=[0.4, 0.4, 0.2])]
    out: Angles = {"torso_roll": 3 * np.sin(0.3 * th)}
    for side in sides:
        # Upper arm out to the side, forearm turned up (rot 90), hand swinging in the frontal plane.
        out[f"{side}_shoulder_abd"] = np.full_like(t, rng.uniform(70, 110))
        out[f"{side}_shoulder_rot"] = np.full_like(t, rng.uniform(80, 100))
        out[f"{side}_shoulder_flex"] = np.full_like(t, rng.uniform(0, 30))
        out[f"{side}_elbow"] = 80 + 30 * a * np.sin(th)
    return out


def squat(t: np.ndarray, rng: np.random.Generator) -> Angles:
    th, a = _phase(t, rng, (0.25, 0.6)), rng.uniform(0.6, 1.0)
    d = a * (1 - np.cos(th)) / 2  # depth 0 (standing) .. a
    out: Angles = {"pelvis_tilt": 30 * d, "torso_pitch": 10 * d}
    for side in "lr":
        out[f"{side}_hip_flex"] = 100 * d
        out[f"{side}_hip_abd"] = 10 * d
        out[f"{side}_knee"] = 3 + 122 * d
        out[f"{side}_shoulder_flex"] = 85 * d
    return out


def jump(t: np.ndarray, rng: np.random.Generator) -> Angles:
    th, a = _phase(t, rng, (0.5, 0.9)), rng.uniform(0.6, 1.1)
    up, down = _relu(np.sin(th)), _relu(-np.sin(th))
    # Crouch while on the floor (down), stretch and tuck slightly in the air (up).
    out: Angles = {"lift": 300 * a * up**1.5, "pelvis_tilt": 25 * a * down}
    for side in "lr":
        out[f"{side}_hip_flex"] = 70 * a * down + 15 * up
        out[f"{side}_knee"] = 3 + 90 * a * down + 25 * up
        out[f"{side}_shoulder_flex"] = -40 * down + 160 * a * up
    return out


def kick(t: np.ndarray, rng: np.random.Generator) -> Angles:
    th, a = _phase(t, rng, (0.4, 0.8)), rng.uniform(0.6, 1.0)
    side = "lr"[rng.integers(2)]
    p = _relu(np.sin(th))
    # The knee is bent while the thigh rises (chamber) and straight at the top of the kick.
    return {
        f"{side}_hip_flex": 90 * a * p**2,
        f"{side}_knee": 10 + 80 * p * _relu(np.cos(th)),
        "l_shoulder_abd": np.full_like(t, 35.0),
        "r_shoulder_abd": np.full_like(t, 35.0),
        "torso_pitch": -10 * p,
    }


def turn(t: np.ndarray, rng: np.random.Generator) -> Angles:
    rate = rng.choice([-1, 1]) * rng.uniform(60, 150)  # degrees per second
    th = _phase(t, rng, (0.8, 1.2))
    s, c = np.sin(th), np.cos(th)
    return {
        "root_yaw": rate * t,
        "r_hip_flex": 12 * s,
        "l_hip_flex": -12 * s,
        "r_knee": 5 + 30 * _relu(c),
        "l_knee": 5 + 30 * _relu(-c),
        "l_shoulder_abd": np.full_like(t, 12.0),
        "r_shoulder_abd": np.full_like(t, 12.0),
    }


def arm_circles(t: np.ndarray, rng: np.random.Generator) -> Angles:
    if rng.random() < 0.5:
        # Windmill: full turns in the sagittal plane, arms in phase or opposite.
        rev = rng.choice([-1, 1]) * rng.uniform(0.5, 1.2) * 360 * t + rng.uniform(0, 360)
        offset = rng.choice([0.0, 180.0])
        return {
            "l_shoulder_flex": rev,
            "r_shoulder_flex": rev + offset,
            "l_shoulder_abd": np.full_like(t, 15.0),
            "r_shoulder_abd": np.full_like(t, 15.0),
            "l_elbow": np.full_like(t, 5.0),
            "r_elbow": np.full_like(t, 5.0),
        }
    # Small circles with the arms held out sideways.
    th, r = _phase(t, rng, (0.8, 2.0)), rng.uniform(15, 35)
    out: Angles = {}
    for side in "lr":
        out[f"{side}_shoulder_abd"] = 90 + r * np.cos(th)
        out[f"{side}_shoulder_flex"] = r * np.sin(th)
        out[f"{side}_elbow"] = np.full_like(t, 5.0)
    return out


def punch(t: np.ndarray, rng: np.random.Generator) -> Angles:
    th = _phase(t, rng, (0.8, 1.6))
    hit = {"r": _relu(np.sin(th)) ** 2, "l": _relu(-np.sin(th)) ** 2}
    out: Angles = {"torso_yaw": 15 * (hit["r"] - hit["l"])}
    for side in "lr":
        # Guard: fists near the chin; a punch extends the elbow and raises the upper arm.
        out[f"{side}_shoulder_flex"] = 30 + 55 * hit[side]
        out[f"{side}_shoulder_abd"] = 20 - 10 * hit[side]
        out[f"{side}_elbow"] = 110 - 100 * hit[side]
        out[f"{side}_knee"] = np.full_like(t, 15.0)
        out[f"{side}_hip_flex"] = np.full_like(t, 10.0)
    return out


def jumping_jacks(t: np.ndarray, rng: np.random.Generator) -> Angles:
    th, a = _phase(t, rng, (0.8, 1.4)), rng.uniform(0.7, 1.0)
    open_ = (1 - np.cos(th)) / 2
    out: Angles = {"lift": 60 * a * np.abs(np.sin(th))}
    for side in "lr":
        out[f"{side}_shoulder_abd"] = 10 + 150 * a * open_
        out[f"{side}_hip_abd"] = 20 * a * open_
        out[f"{side}_knee"] = np.full_like(t, 8.0)
    return out


def bend(t: np.ndarray, rng: np.random.Generator) -> Angles:
    th, a = _phase(t, rng, (0.2, 0.5)), rng.uniform(0.5, 1.0)
    d = a * (1 - np.cos(th)) / 2
    # Arms keep hanging towards the floor while the trunk folds over the hips.
    return {
        "pelvis_tilt": 60 * d,
        "torso_pitch": 30 * d,
        "neck_pitch": -20 * d,
        "l_shoulder_flex": 80 * d,
        "r_shoulder_flex": 80 * d,
        "l_knee": 3 + 10 * d,
        "r_knee": 3 + 10 * d,
    }


def idle(t: np.ndarray, rng: np.random.Generator) -> Angles:
    th = _phase(t, rng, (0.1, 0.3))
    return {
        "l_hip_abd": 4 * np.sin(th),
        "r_hip_abd": -4 * np.sin(th),
        "torso_roll": 3 * np.sin(th),
        "neck_yaw": rng.uniform(10, 40) * np.sin(_phase(t, rng, (0.1, 0.4))),
    }


FAMILIES: dict[str, Callable[[np.ndarray, np.random.Generator], Angles]] = {
    f.__name__: f
    for f in (
        walk,
        run,
        wave,
        squat,
        jump,
        kick,
        turn,
        arm_circles,
        punch,
        jumping_jacks,
        bend,
        idle,
    )
}
# "A+B" layers B's arms over A's legs and trunk; only pairs that make physical sense.
LOWER_BODY_FAMILIES = ("walk", "run", "squat", "turn", "idle")
ARM_FAMILIES = ("wave", "arm_circles", "punch")
ARM_DOFS = tuple(
    f"{s}_{d}" for s in "lr" for d in ("shoulder_flex", "shoulder_abd", "shoulder_rot", "elbow")
)


# The actions whose limbs move fastest (docs/benchmarks.md, issue 16: the fast-motion set).
FAST_FAMILIES = ("run", "wave", "kick", "arm_circles", "punch", "jumping_jacks", "jump")


def resolve_families(names: Sequence[str] | None) -> tuple[str, ...] | None:
    """Family names as the command lines take them: ["fast"] is ``FAST_FAMILIES``, None or
    ["all"] every family (None); other names are checked (``check_families``)."""
    if names is None or list(names) == ["all"]:
        return None
    if list(names) == ["fast"]:
        return FAST_FAMILIES
    check_families(names)
    return tuple(names)


def check_families(names: Sequence[str]) -> None:
    """ValueError naming the unknown names when ``names`` is empty or not all in FAMILIES."""
    unknown = set(names) - set(FAMILIES)
    if unknown or not names:
        raise ValueError(f"unknown motion families {sorted(unknown)}; choose from {list(FAMILIES)}")


def smooth_noise(t: np.ndarray, rng: np.random.Generator, deg: float) -> np.ndarray:
    """Slow random sway (sum of two sinusoids, 0.1-0.5 Hz) so no pose is perfectly still."""
    return sum(rng.uniform(0.3, 1.0) * deg * np.sin(_phase(t, rng, (0.1, 0.5))) for _ in range(2))


def _with_neutral(angles: Angles, keys: list[str], n: int) -> Angles:
    return {k: angles[k] if k in angles else np.full(n, NEUTRAL.get(k, 0.0)) for k in keys}


def _crossfade(a: Angles, b: Angles, w: np.ndarray, t0_index: int) -> Angles:
    """Blend two angle sets with weight w (N,) on b; a DOF one family leaves out is neutral there.

    Angles that wind up without bound (windmill arms, turning) are shifted by whole turns so that
    the two curves are within 180 degrees of each other at the transition time; the blend then
    never spins through extra turns.
    """
    keys = sorted(a.keys() | b.keys())
    a, b = _with_neutral(a, keys, len(w)), _with_neutral(b, keys, len(w))
    out: Angles = {}
    for k in keys:
        va = a[k]
        if k != "lift":
            va = va - 360.0 * np.round((va[t0_index] - b[k][t0_index]) / 360.0)
        out[k] = (1 - w) * va + w * b[k]
    return out


def sample_angles(
    t: np.ndarray, duration: float, rng: np.random.Generator, families: Sequence[str] | None = None
) -> tuple[str, Angles]:
    """One person's joint angles over a clip.

    t: (N,) evaluation times in seconds (may include sub-frame times for motion blur).
    duration: clip length in seconds; a transition between two families happens inside it.
    families: the families to draw from (default all of ``FAMILIES``, the rendered videos'
        draws); a combination of legs and arms needs one of each in ``families``.
    Returns (label, angles): label is "walk" (one family), "walk>wave" (walk, then a smooth
    transition to wave) or "walk+wave" (wave's arms over walk's legs and trunk); angles maps
    DOF -> (N,) degrees plus "lift" -> (N,) mm.
    """
    names = list(families or FAMILIES)
    check_families(names)
    lower = [f for f in LOWER_BODY_FAMILIES if f in names]
    arms = [f for f in ARM_FAMILIES if f in names]
    mode = rng.choice(3, p=[0.4, 0.35, 0.25])
    if mode == 1 and len(names) < 2 or mode == 2 and not (lower and arms):
        mode = 0
    if mode == 0:
        families = [names[rng.integers(len(names))]]
        angles = FAMILIES[families[0]](t, rng)
        label = families[0]
    elif mode == 1:
        families = [names[i] for i in rng.choice(len(names), 2, replace=False)]
        first, second = (FAMILIES[f](t, rng) for f in families)
        t0 = rng.uniform(0.3, 0.7) * duration
        x = np.clip((t - t0) / rng.uniform(0.4, 1.2) + 0.5, 0, 1)
        angles = _crossfade(first, second, x * x * (3 - 2 * x), int(np.argmin(np.abs(t - t0))))
        label = ">".join(families)
    else:
        families = [lower[rng.integers(len(lower))], arms[rng.integers(len(arms))]]
        body, arms = (FAMILIES[f](t, rng) for f in families)
        angles = {k: v for k, v in body.items() if k not in ARM_DOFS}
        angles |= {k: v for k, v in arms.items() if k in ARM_DOFS}
        label = "+".join(families)
    for dof, deg in (("torso_roll", 2), ("torso_yaw", 4), ("neck_pitch", 5), ("neck_yaw", 10)):
        angles[dof] = angles.get(dof, 0.0) + smooth_noise(t, rng, deg)
    angles["root_yaw"] = angles.get("root_yaw", 0.0) + rng.uniform(0, 360)
    return label, angles


def sample_person_motion(
    t: np.ndarray,
    duration: float,
    rng: np.random.Generator,
    shape: BodyShape,
    drift_mm: float,
    families: Sequence[str] | None = None,
) -> tuple[str, np.ndarray]:
    """A random performance placed in the world: feet on the floor (y = 0), slow drift in x and z.

    t: (N,) times in seconds; duration: clip length in seconds; drift_mm: amplitude of the slow
    wandering of the body over the floor. families: as in ``sample_angles``.
    Returns (label, joints): the label of ``sample_angles`` and (N, 17, 3) float64 world mm.
    """
    label, angles = sample_angles(t, duration, rng, families)
    lift = angles.pop("lift", np.zeros_like(t))
    joints = forward_kinematics(angles, shape)
    # The lower ankle stands on the floor; lift raises the body off it during flight phases.
    height = ANKLE_HEIGHT_MM * shape.scale - joints[:, [3, 6], 1].min(axis=1) + lift
    drift = [drift_mm * rng.uniform(0, 1) * np.sin(_phase(t, rng, (1 / 12, 1 / 5))) for _ in "xz"]
    joints += np.stack([drift[0], height, drift[1]], axis=-1)[:, None, :]
    return label, joints
