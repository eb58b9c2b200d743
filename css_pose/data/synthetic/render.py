"""Draw people as shaded capsules, balls and hulls with OpenCV, plus an id buffer for visibility.

A person is 17 parts (trunk, pelvis, neck, head, hair, arms, hands, legs, feet) built on the
skeleton joints and a few derived points (toes, head centre, hands, waist). Parts of all people are
drawn far to near (painter's algorithm on each part's mean depth). The same shapes, without shading,
are drawn into a uint16 id buffer: 0 background, 1 + 32 * person + part for bodies, and ids from
``OCCLUDER_ID`` down for occluders.

Visibility rule (per joint, at its labelled frame): 1 when the joint projects inside the image
(-0.5 <= x < W - 0.5 and likewise y) and the id-buffer pixel at its rounded position is
  - background, or
  - a part of the same person that the joint belongs to (e.g. the thigh or shank for a knee), or
  - another part of the same person whose front surface there is no more than
    ``DEPTH_TOLERANCE_MM`` nearer than the joint (touching parts, e.g. a hand resting on the hip);
0 otherwise: covered by an occluder, by another person drawn over it, or by a nearer part of the
same body (self-occlusion, mostly by the trunk).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from css_pose.data.synthetic.appearance import Appearance, Occluder
from css_pose.data.synthetic.body import REFERENCE_HEIGHT_MM
from css_pose.data.synthetic.camera import WORLD_UP, project

SHIFT = 4  # OpenCV fixed-point bits: sub-pixel accurate drawing with pixel centres at integers
ONE = 1 << SHIFT
LIGHT = np.array([-0.6, -0.8])  # image direction towards the light (up-left)
IDS_PER_PERSON = 32
OCCLUDER_ID = 65535
DEPTH_TOLERANCE_MM = 40.0
HEAD_RADIUS_MM = 105.0

# Derived points appended after the 17 joints.
TOE_R, TOE_L, HEAD_C, HAIR_C, HAND_R, HAND_L, WAIST_R, WAIST_L, CHIN = range(17, 26)


@dataclass(frozen=True)
class Part:
    """A body part. kind: "capsule" (points a -> b), "ball" (centre) or "hull" (convex hull of
    discs). radii_mm: one per point at average size. incident: joints this part never hides.
    behind_mm: added to the part's depth when sorting, for parts that sit inside others."""

    name: str
    kind: str
    points: tuple[int, ...]
    radii_mm: tuple[float, ...]
    material: str
    incident: tuple[int, ...]
    behind_mm: float = 0.0


TRUNK_JOINTS = (0, 1, 4, 7, 8, 11, 14)
PARTS: tuple[Part, ...] = (
    Part("trunk", "hull", (8, 7, 11, 14, WAIST_R, WAIST_L), (95, 100, 60, 60, 85, 85), "shirt",
         TRUNK_JOINTS),
    Part("pelvis", "hull", (1, 4, 0, WAIST_R, WAIST_L), (80, 80, 90, 80, 80), "trousers",
         TRUNK_JOINTS),
    Part("neck", "capsule", (8, CHIN), (50, 45), "skin", (8, 9), behind_mm=80),
    Part("head", "ball", (HEAD_C,), (HEAD_RADIUS_MM,), "skin", (9, 10)),
    Part("hair", "ball", (HAIR_C,), (HEAD_RADIUS_MM * 0.98,), "hair", (9, 10)),
    Part("l_upper_arm", "capsule", (11, 12), (50, 40), "shirt", (11, 12)),
    Part("r_upper_arm", "capsule", (14, 15), (50, 40), "shirt", (14, 15)),
    Part("l_forearm", "capsule", (12, 13), (38, 30), "forearm", (12, 13)),
    Part("r_forearm", "capsule", (15, 16), (38, 30), "forearm", (15, 16)),
    Part("l_hand", "capsule", (13, HAND_L), (32, 28), "skin", (13,)),
    Part("r_hand", "capsule", (16, HAND_R), (32, 28), "skin", (16,)),
    Part("l_thigh", "capsule", (4, 5), (82, 55), "trousers", (4, 5)),
    Part("r_thigh", "capsule", (1, 2), (82, 55), "trousers", (1, 2)),
    Part("l_shank", "capsule", (5, 6), (52, 40), "shank", (5, 6)),
    Part("r_shank", "capsule", (2, 3), (52, 40), "shank", (2, 3)),
    Part("l_foot", "capsule", (6, TOE_L), (40, 32), "shoes", (6,)),
    Part("r_foot", "capsule", (3, TOE_R), (40, 32), "shoes", (3,)),
)  # fmt: skip


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-9)


def body_points(joints: np.ndarray, scale: float) -> np.ndarray:
    """Skeleton joints plus the derived points the renderer needs.

    joints: (N, 17, 3) world mm, y up. scale: body size relative to a 1.70 m adult.
    Returns (N, 26, 3) world mm: the joints, then toes, head and hair centres, hand tips, waist
    and the bottom of the skull (where the neck ends).
    """
    j = joints
    forward = _unit(np.cross(j[:, 4] - j[:, 1], WORLD_UP))  # left x up = the way the hips face
    foot = _unit(0.96 * forward - 0.28 * WORLD_UP) * (170 * scale)
    head_up = _unit(j[:, 10] - j[:, 8])
    face = _unit(np.cross(j[:, 11] - j[:, 14], head_up))
    r = HEAD_RADIUS_MM * scale
    head = (j[:, 9] + j[:, 10]) / 2 - 0.2 * r * face
    extra = [
        j[:, 3] + foot,
        j[:, 6] + foot,
        head,
        head - 0.22 * r * face + 0.18 * r * head_up,
        j[:, 16] + _unit(j[:, 16] - j[:, 15]) * (80 * scale),
        j[:, 13] + _unit(j[:, 13] - j[:, 12]) * (80 * scale),
        0.8 * j[:, 1] + 0.2 * j[:, 14],
        0.8 * j[:, 4] + 0.2 * j[:, 11],
        head - 0.6 * r * head_up,
    ]
    return np.concatenate([j, np.stack(extra, axis=1)], axis=1)


@dataclass
class PersonView:
    """One person seen by the camera over N time samples, ready to draw.

    uv: (N, 26, 2) px; z: (N, 26) camera depth mm; radii_mm: per part, per point (mm);
    radii_px: per part (N, k) px; depth: (N, parts) mean depth mm (draw order);
    shade: (N, parts) brightness factor (nearer parts lighter); stripes: per part count of
    pattern bands along a capsule.
    """

    uv: np.ndarray
    z: np.ndarray
    radii_mm: list[np.ndarray]
    radii_px: list[np.ndarray]
    depth: np.ndarray
    shade: np.ndarray
    stripes: list[int]
    appearance: Appearance


def prepare_person(
    points_cam: np.ndarray, intrinsics: np.ndarray, scale: float, girth: float, look: Appearance
) -> PersonView:
    """points_cam: (N, 26, 3) camera mm from ``body_points``; scale, girth: body size and build."""
    uv, z = project(points_cam, intrinsics), points_cam[..., 2]
    radii_mm, radii_px, depth, stripes = [], [], [], []
    for part in PARTS:
        r = np.asarray(part.radii_mm) * scale * (1.0 if part.kind == "ball" else girth)
        radii_mm.append(r)
        radii_px.append(intrinsics[0] * r / z[:, part.points])
        depth.append(z[:, part.points].mean(axis=1) + part.behind_mm)
        # Pattern bands per part, fixed for the video so they never pop in or out.
        ends = {"hull": (0, 8), "ball": (9, 10)}.get(part.kind, part.points)
        length = np.linalg.norm(np.diff(points_cam[:, ends], axis=1), axis=-1).mean()
        stripes.append(max(1, round(float(length) / look.pattern_mm)))
    depth = np.stack(depth, axis=1)
    shade = np.clip(1 + 0.8 * (z[:, [0]] - depth) / (REFERENCE_HEIGHT_MM * scale), 0.75, 1.25)
    return PersonView(uv, z, radii_mm, radii_px, depth, shade, stripes, look)


def _fix(p: np.ndarray) -> np.ndarray:
    return np.rint(p * ONE).astype(np.int32)  # rint: np.round's result without its wrapper cost


def _colour(rgb, k: float) -> tuple[float, float, float]:
    return tuple(min(255.0, c * k) for c in rgb)


def _capsule(img, pa, pb, ra, rb, colour, line_type) -> None:
    """Tapered capsule: discs of radius ra at pa and rb at pb joined by their tangent band (px)."""
    # Python floats: the same float64 arithmetic as numpy on (2,) arrays, at a third of the cost
    # (this runs ~40 times per rendered frame).
    (ax, ay), (bx, by), ra, rb = pa.tolist(), pb.tolist(), float(ra), float(rb)
    norm = max(float(np.hypot(bx - ax, by - ay)), 1e-9)
    nx, ny = -(by - ay) / norm, (bx - ax) / norm
    quad = [(ax + nx * ra, ay + ny * ra), (bx + nx * rb, by + ny * rb),
            (bx - nx * rb, by - ny * rb), (ax - nx * ra, ay - ny * ra)]  # fmt: skip
    quad = np.array([[round(x * ONE), round(y * ONE)] for x, y in quad], np.int32)
    cv2.fillConvexPoly(img, quad, colour, line_type, SHIFT)
    for (x, y), r in (((ax, ay), ra), ((bx, by), rb)):
        cv2.circle(img, (round(x * ONE), round(y * ONE)), max(1, round(r * ONE)), colour, -1,
                   line_type, SHIFT)  # fmt: skip


def _hull(centres: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Convex hull (K, 2) int32 fixed-point of discs (centres (k, 2), radii (k,), px)."""
    angles = np.linspace(0, 2 * np.pi, 8, endpoint=False)
    ring = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    pts = (centres[:, None] + radii[:, None, None] * ring).reshape(-1, 2)
    return cv2.convexHull(_fix(pts)).reshape(-1, 2)


def _draw_pattern_capsule(img, pa, pb, ra, rb, count, look: Appearance, k: float) -> None:
    colour = _colour(look.pattern_colour, k)
    d = pb - pa
    length = float(np.hypot(*d))
    n = np.array([-d[1], d[0]]) / max(length, 1e-9)
    s = (np.arange(count) + 0.5) / count
    centres = pa + s[:, None] * d
    radii = ra + s * (rb - ra)
    if look.pattern == "dots":
        for c, r in zip(centres, radii):
            cv2.circle(img, tuple(_fix(c).tolist()), max(1, round(0.35 * r * ONE)), colour, -1,
                       cv2.LINE_AA, SHIFT)  # fmt: skip
        return
    width = max(1, round(0.45 * length / count))
    for c, r in zip(centres, radii):
        ends = _fix(np.stack([c + 0.8 * r * n, c - 0.8 * r * n]))
        cv2.line(img, tuple(ends[0].tolist()), tuple(ends[1].tolist()), colour, width, cv2.LINE_AA,
                 SHIFT)  # fmt: skip
    if look.pattern == "plaid":
        ends = _fix(np.stack([pa, pb]))
        cv2.line(img, tuple(ends[0].tolist()), tuple(ends[1].tolist()), colour,
                 max(1, round(0.3 * (ra + rb) / 2)), cv2.LINE_AA, SHIFT)  # fmt: skip


def _draw_pattern_hull(img, hull, view: PersonView, n: int, look: Appearance, k: float) -> None:
    """Bands across the trunk axis (and along it for plaid, dots on the lattice), clipped to the
    hull; positions follow the pelvis -> thorax axis, so the pattern moves with the body."""
    h, w = img.shape[:2]
    x0, y0 = np.maximum(hull.min(axis=0) // ONE, 0)
    x1, y1 = np.minimum(hull.max(axis=0) // ONE + 2, (w, h))
    if x1 <= x0 or y1 <= y0:
        return
    offset = np.array([x0, y0])
    pelvis, thorax = view.uv[n, 0] - offset, view.uv[n, 8] - offset
    axis = thorax - pelvis
    length = float(np.hypot(*axis))
    across = np.array([-axis[1], axis[0]]) / max(length, 1e-9)
    colour = _colour(look.pattern_colour, k)
    roi = img[y0:y1, x0:x1]
    layer = roi.copy()
    count = view.stripes[0]
    span = 2.0 * float(np.hypot(x1 - x0, y1 - y0))
    width = max(1, round(0.45 * length / count))
    for s in np.linspace(-0.4, 1.4, count + 2):
        c = pelvis + s * axis
        if look.pattern == "dots":
            for t in np.linspace(-1.5, 1.5, 5):
                q = _fix(c + t * 0.5 * length * across)
                cv2.circle(layer, tuple(q.tolist()), max(1, round(0.08 * length * ONE)), colour, -1,
                           cv2.LINE_AA, SHIFT)  # fmt: skip
            continue
        ends = _fix(np.stack([c + span * across, c - span * across]))
        cv2.line(layer, tuple(ends[0].tolist()), tuple(ends[1].tolist()), colour, width,
                 cv2.LINE_AA, SHIFT)  # fmt: skip
    if look.pattern == "plaid":
        for t in np.linspace(-1.5, 1.5, 5):
            c = pelvis + t * 0.5 * length * across
            ends = _fix(np.stack([c - span * axis / length, c + span * axis / length]))
            cv2.line(layer, tuple(ends[0].tolist()), tuple(ends[1].tolist()), colour, width,
                     cv2.LINE_AA, SHIFT)  # fmt: skip
    mask = np.zeros(roi.shape[:2], np.uint8)
    cv2.fillConvexPoly(mask, hull - offset * ONE, 1, cv2.LINE_8, SHIFT)
    np.copyto(roi, layer, where=mask[..., None].astype(bool))


def _draw_part(img, ids, view: PersonView, n: int, i: int, part_id: int) -> None:
    """Draw part i of a person at sample n: dark rim, light core offset towards the light."""
    part, look = PARTS[i], view.appearance
    k = float(view.shade[n, i])
    base = look.colours[part.material]
    rim, core = _colour(base, 0.62 * k), _colour(base, k)
    pts, r = view.uv[n, list(part.points)], view.radii_px[i][n]
    patterned = look.pattern != "none" and part.material in look.patterned
    if part.kind == "capsule":
        (pa, pb), (ra, rb) = pts, r
        _capsule(ids, pa, pb, ra, rb, part_id, cv2.LINE_8)
        _capsule(img, pa, pb, ra, rb, rim, cv2.LINE_AA)
        _capsule(img, pa + 0.22 * ra * LIGHT, pb + 0.22 * rb * LIGHT, 0.6 * ra, 0.6 * rb, core,
                 cv2.LINE_AA)  # fmt: skip
        if patterned:
            _draw_pattern_capsule(img, pa, pb, ra, rb, view.stripes[i], look, k)
    elif part.kind == "ball":
        c, rad = tuple(_fix(pts[0]).tolist()), max(1, round(r[0] * ONE))
        cv2.circle(ids, c, rad, part_id, -1, cv2.LINE_8, SHIFT)
        cv2.circle(img, c, rad, rim, -1, cv2.LINE_AA, SHIFT)
        inner = tuple(_fix(pts[0] + 0.25 * r[0] * LIGHT).tolist())
        cv2.circle(img, inner, max(1, round(0.65 * r[0] * ONE)), core, -1, cv2.LINE_AA, SHIFT)
    else:
        hull = _hull(pts, r)
        cv2.fillConvexPoly(ids, hull, part_id, cv2.LINE_8, SHIFT)
        cv2.fillConvexPoly(img, hull, rim, cv2.LINE_AA, SHIFT)
        centre = pts.mean(axis=0)
        inner = _hull(centre + 0.75 * (pts - centre) + 0.2 * r.mean() * LIGHT, 0.6 * r)
        cv2.fillConvexPoly(img, inner, core, cv2.LINE_AA, SHIFT)
        if patterned:
            _draw_pattern_hull(img, hull, view, n, look, k)


def _draw_occluder(img, ids, occ: Occluder, frame: float, index: int) -> None:
    x0, y0, x1, y1 = occ.rect(frame)
    box = _fix(np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]]))
    cv2.fillConvexPoly(ids, box, OCCLUDER_ID - index, cv2.LINE_8, SHIFT)
    cv2.fillConvexPoly(img, box, _colour(occ.colour, 0.7), cv2.LINE_AA, SHIFT)
    # A lighter band off-centre makes a pole read as round, a panel as lit from the left.
    band = _fix(np.array([[x0 + 0.15 * (x1 - x0), y0], [x0 + 0.45 * (x1 - x0), y0],
                          [x0 + 0.45 * (x1 - x0), y1], [x0 + 0.15 * (x1 - x0), y1]]))  # fmt: skip
    cv2.fillConvexPoly(img, band, _colour(occ.colour, 1.1), cv2.LINE_AA, SHIFT)


def render_frame(
    background: np.ndarray,
    people: list[PersonView],
    shadows: np.ndarray | None,
    n: int,
    occluders: list[Occluder],
    frame: float,
    draw_people: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Render one time sample.

    background: (H, W, 3) uint8 RGB, already panned. people: views of every person; n: the time
    sample index into them. shadows: (P, N, k, 2) px floor polygons or None. occluders: drawn last
    at (fractional) frame index ``frame``. draw_people: False keeps the people out of the image
    but still in the id buffer (a background plate with the labels of the full scene).
    Returns (image (H, W, 3) uint8 RGB, ids (H, W) uint16).
    """
    img = background.copy()
    ids = np.zeros(img.shape[:2], np.uint16)
    if shadows is not None:
        overlay = img.copy()
        for poly in shadows[:, n]:
            cv2.fillConvexPoly(overlay, _fix(poly), (0, 0, 0), cv2.LINE_AA, SHIFT)
        img = cv2.addWeighted(overlay, 0.35, img, 0.65, 0)
    canvas = img if draw_people else img.copy()
    depth = np.concatenate([v.depth[n] for v in people])
    for flat in np.argsort(-depth, kind="stable"):
        p, i = divmod(int(flat), len(PARTS))
        _draw_part(canvas, ids, people[p], n, i, 1 + IDS_PER_PERSON * p + i)
    for k, occ in enumerate(occluders):
        _draw_occluder(img, ids, occ, frame, k)
    return img, ids


def _surface_depth(view: PersonView, n: int, i: int, q: np.ndarray) -> float:
    """Depth (mm) of the front surface of part i of a person at pixel q, approximately."""
    part = PARTS[i]
    pts, z, r = view.uv[n, list(part.points)], view.z[n, list(part.points)], view.radii_mm[i]
    if part.kind == "ball":
        return float(z[0] - r[0])
    if part.kind == "capsule":
        d = pts[1] - pts[0]
        s = float(np.clip(np.dot(q - pts[0], d) / max(float(np.dot(d, d)), 1e-9), 0, 1))
        return float(z[0] + s * (z[1] - z[0]) - (r[0] + s * (r[1] - r[0])))
    # Hull: depth as an affine function of the image position, fitted on its defining points.
    a = np.column_stack([pts, np.ones(len(pts))])
    coef = np.linalg.lstsq(a, z, rcond=None)[0]
    return float(np.dot(coef, [q[0], q[1], 1.0]) - r.mean())


def joint_visibility(ids: np.ndarray, people: list[PersonView], p: int, n: int) -> np.ndarray:
    """(17,) uint8 visibility of person p's joints at time sample n (rule in the module doc)."""
    h, w = ids.shape
    view = people[p]
    out = np.zeros(17, np.uint8)
    for j in range(17):
        x, y = view.uv[n, j]
        if not (-0.5 <= x < w - 0.5 and -0.5 <= y < h - 0.5):
            continue
        q = int(ids[int(np.floor(y + 0.5)), int(np.floor(x + 0.5))])
        owner, i = divmod(q - 1, IDS_PER_PERSON)
        if q == 0 or (owner == p and j in PARTS[i].incident):
            out[j] = 1
        elif owner == p:
            surface = _surface_depth(view, n, i, view.uv[n, j])
            out[j] = surface >= view.z[n, j] - DEPTH_TOLERANCE_MM
    return out


def person_boxes(view: PersonView, size: int) -> np.ndarray:
    """(N, 4) float32 xyxy px around every drawn part (limb thickness included), clipped to the
    image [-0.5, size - 0.5]; occluded parts count (amodal box)."""
    lo, hi = [], []
    for i, part in enumerate(PARTS):
        pts, r = view.uv[:, list(part.points)], view.radii_px[i][..., None]
        lo.append((pts - r).min(axis=1))
        hi.append((pts + r).max(axis=1))
    box = np.concatenate([np.min(lo, axis=0), np.max(hi, axis=0)], axis=1)
    return np.clip(box, -0.5, size - 0.5).astype(np.float32)
