"""Human3.6M in the public VideoPose3D npz format: read it, and write our synthetic set into it.

Files (https://github.com/facebookresearch/VideoPose3D, DATASETS.md):

- ``data_3d_h36m.npz``: key ``positions_3d`` = {subject: {action: (T, 32, 3) float, metres, world
  frame}}. We keep the 17 standard joints :data:`H36M_32_TO_17` (our canonical order, see
  :mod:`css_pose.skeleton`) and move them into each camera's frame with :data:`H36M_CAMERAS`.
- ``data_2d_h36m_<kps>.npz``: key ``positions_2d`` = {subject: {action: [(T, 17, 2) px per camera]}}
  and ``metadata`` = {"layout_name", "num_joints", "keypoints_symmetry"}.

Both store dicts as 0-d object arrays, so loading needs ``np.load(..., allow_pickle=True)``, which can
run arbitrary code from a crafted file: only load files you trust, and only the ones you point at.

Our files may add one optional key to the 3D file, ``cameras`` = {subject: [camera dict per camera
index]} with the keys of :class:`Camera`; when present it replaces the built-in Human3.6M table.
:func:`export_synthetic_to_videopose3d` uses it to register one camera per synthetic video with
identity extrinsics, its 3D already in camera frame.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from css_pose.layouts import CANONICAL, check_layout
from css_pose.skeleton import JOINT_NAMES, NUM_JOINTS

# VideoPose3D's ``metadata["layout_name"]`` -> css_pose.layouts name. Its COCO detections (e.g.
# data_2d_h36m_detectron_pt_coco.npz) have 17 joints too, in COCO's order: without this check they
# would pass for Human3.6M and give random 3D.
VIDEOPOSE3D_LAYOUTS = {"h36m": "h36m17", "coco": "coco17"}


def videopose3d_layout(metadata: dict, path: str | Path) -> str:
    """The css_pose layout of a VideoPose3D 2D file's ``metadata``; ValueError naming the file
    when its ``layout_name`` is missing or unknown."""
    name = metadata.get("layout_name")
    if name not in VIDEOPOSE3D_LAYOUTS:
        raise ValueError(
            f"{path}: metadata layout_name={name!r} is not one of "
            f"{', '.join(VIDEOPOSE3D_LAYOUTS)}; css_pose cannot tell its joint order"
        )
    return VIDEOPOSE3D_LAYOUTS[name]


# Human3.6M 32-joint indices of our 17 joints, in our canonical order.
H36M_32_TO_17: tuple[int, ...] = (0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27)
TRAIN_SUBJECTS: tuple[str, ...] = ("S1", "S5", "S6", "S7", "S8")
TEST_SUBJECTS: tuple[str, ...] = ("S9", "S11")


@dataclass(frozen=True)
class Camera:
    """A pinhole camera.

    center, focal_length: (cx, cy), (fx, fy) px. res_w, res_h: image size px.
    orientation: quaternion (w, x, y, z) of the camera-to-world rotation R.
    translation: camera centre in world coordinates, mm (Human3.6M's convention).
    A world point X (m) is X_cam = R^T (X - translation / 1000).
    """

    id: str
    center: tuple[float, float]
    focal_length: tuple[float, float]
    res_w: int
    res_h: int
    orientation: tuple[float, float, float, float] = (1.0, 0.0, 0.0, 0.0)
    translation: tuple[float, float, float] = (0.0, 0.0, 0.0)


# Public Human3.6M calibration as distributed with VideoPose3D (common/h36m_dataset.py), float32
# values written out in full; distortion terms are omitted because the 2D files are already
# in image pixels and we only need the intrinsics for normalisation.
# id, center (px), focal length (px), res_w, res_h
_INTRINSICS = (
    ("54138969", (512.54150390625, 515.4514770507812), (1145.0494384765625, 1143.7811279296875), 1000, 1002),
    ("55011271", (508.8486328125, 508.0649108886719), (1149.6756591796875, 1147.5916748046875), 1000, 1000),
    ("58860488", (519.8158569335938, 501.40264892578125), (1149.1407470703125, 1148.7989501953125), 1000, 1000),
    ("60457274", (514.9682006835938, 501.88201904296875), (1145.5113525390625, 1144.77392578125), 1000, 1002),
)  # fmt: skip
# subject -> per camera (orientation quaternion w, x, y, z; translation mm)
_EXTRINSICS = {
    "S1": (
        ((0.1407056450843811, -0.1500701755285263, -0.755240797996521, 0.6223280429840088), (1841.1070556640625, 4955.28466796875, 1563.4454345703125)),
        ((0.6157187819480896, -0.764836311340332, -0.14833825826644897, 0.11794740706682205), (1761.278564453125, -5078.0068359375, 1606.2650146484375)),
        ((0.14651472866535187, -0.14647851884365082, 0.7653023600578308, -0.6094175577163696), (-1846.7777099609375, 5215.04638671875, 1491.972412109375)),
        ((0.5834008455276489, -0.7853162288665771, 0.14548823237419128, -0.14749594032764435), (-1794.7896728515625, -3722.698974609375, 1574.8927001953125)),
    ),
    "S5": (
        ((0.1467377245426178, -0.162370964884758, -0.7551892995834351, 0.6178938746452332), (2097.3916015625, 4880.94482421875, 1605.732421875)),
        ((0.6159758567810059, -0.7626792192459106, -0.15728192031383514, 0.1189815029501915), (2031.7008056640625, -5167.93310546875, 1612.923095703125)),
        ((0.14291371405124664, -0.12907841801643372, 0.7678384780883789, -0.6110143065452576), (-1620.5948486328125, 5171.65869140625, 1496.43701171875)),
        ((0.5920479893684387, -0.7814217805862427, 0.1274748593568802, -0.15036417543888092), (-1637.1737060546875, -3867.3173828125, 1547.033203125)),
    ),
    "S6": (
        ((0.1337897777557373, -0.15692396461963654, -0.7571090459823608, 0.6198879480361938), (1935.4517822265625, 4950.24560546875, 1618.0838623046875)),
        ((0.6147197484970093, -0.7628812789916992, -0.16174767911434174, 0.11819244921207428), (1969.803955078125, -5128.73876953125, 1632.77880859375)),
        ((0.1529948115348816, -0.13529130816459656, 0.7646096348762512, -0.6112781167030334), (-1769.596435546875, 5185.361328125, 1476.993408203125)),
        ((0.5916101336479187, -0.7804774045944214, 0.12832270562648773, -0.1561593860387802), (-1721.668701171875, -3884.13134765625, 1540.4879150390625)),
    ),
    "S7": (
        ((0.1435241848230362, -0.1631336808204651, -0.7548328638076782, 0.6188824772834778), (1974.512939453125, 4926.3544921875, 1597.8326416015625)),
        ((0.6141672730445862, -0.7638262510299683, -0.1596645563840866, 0.1177929937839508), (1937.0584716796875, -5119.7900390625, 1631.5665283203125)),
        ((0.14550060033798218, -0.12874816358089447, 0.7660516500473022, -0.6127139329910278), (-1741.8111572265625, 5208.24951171875, 1464.8245849609375)),
        ((0.5912848114967346, -0.7821764349937439, 0.12445473670959473, -0.15196487307548523), (-1734.7105712890625, -3832.42138671875, 1548.5830078125)),
    ),
    "S8": (
        ((0.14110587537288666, -0.15589867532253265, -0.7561917304992676, 0.619644045829773), (2150.65185546875, 4896.1611328125, 1611.9046630859375)),
        ((0.6169601678848267, -0.7647668123245239, -0.14846350252628326, 0.11158157885074615), (2219.965576171875, -5148.453125, 1613.0440673828125)),
        ((0.1471444070339203, -0.13377119600772858, 0.7670128345489502, -0.6100369691848755), (-1571.2215576171875, 5137.0185546875, 1498.1761474609375)),
        ((0.5927824378013611, -0.7825870513916016, 0.12147816270589828, -0.14631995558738708), (-1476.913330078125, -3896.7412109375, 1547.97216796875)),
    ),
    "S9": (
        ((0.15540587902069092, -0.15548215806484222, -0.7532095313072205, 0.6199594736099243), (2044.45849609375, 4935.1171875, 1481.2275390625)),
        ((0.618784487247467, -0.7634735107421875, -0.14132238924503326, 0.11933968216180801), (1990.959716796875, -5123.810546875, 1568.8048095703125)),
        ((0.13357827067375183, -0.1367100477218628, 0.7689454555511475, -0.6100738644599915), (-1670.9921875, 5211.98583984375, 1528.387939453125)),
        ((0.5879399180412292, -0.7823407053947449, 0.1427614390850067, -0.14794869720935822), (-1696.04345703125, -3827.099853515625, 1591.4127197265625)),
    ),
    "S11": (
        ((0.15232472121715546, -0.15442320704460144, -0.7547563314437866, 0.6191070079803467), (2098.440185546875, 4926.5546875, 1500.278564453125)),
        ((0.6189449429512024, -0.7600917220115662, -0.15300633013248444, 0.1255258321762085), (2083.182373046875, -4912.1728515625, 1561.07861328125)),
        ((0.14943228662014008, -0.15650227665901184, 0.7681233882904053, -0.6026304364204407), (-1609.8153076171875, 5177.3359375, 1537.896728515625)),
        ((0.5894251465797424, -0.7818877100944519, 0.13991211354732513, -0.14715361595153809), (-1590.738037109375, -3854.1689453125, 1578.017578125)),
    ),
}  # fmt: skip

H36M_CAMERAS: dict[str, tuple[Camera, ...]] = {
    subject: tuple(
        Camera(cid, center, focal, w, h, quat, trans)
        for (cid, center, focal, w, h), (quat, trans) in zip(_INTRINSICS, extrinsics, strict=True)
    )
    for subject, extrinsics in _EXTRINSICS.items()
}


@dataclass
class PoseSequence:
    """One (subject, action, camera) sequence.

    keypoints_2d: (T, 17, 2) px. keypoints_3d: (T, 17, 3) camera frame, metres.
    """

    subject: str
    action: str
    camera: Camera
    keypoints_2d: np.ndarray
    keypoints_3d: np.ndarray

    def normalized_2d(self) -> np.ndarray:
        """(T, 17, 2) float32, see :func:`normalize_screen_coordinates`."""
        return normalize_screen_coordinates(self.keypoints_2d, self.camera.res_w, self.camera.res_h)


def normalize_screen_coordinates(xy: np.ndarray, w: int, h: int) -> np.ndarray:
    """(..., 2) px -> x / w * 2 - [1, h / w]: x in [-1, 1], aspect ratio kept (VideoPose3D)."""
    xy = np.asarray(xy, dtype=np.float32)
    return xy / w * 2 - np.array([1, h / w], dtype=np.float32)


def quaternion_to_matrix(q: Sequence[float]) -> np.ndarray:
    """Quaternion (w, x, y, z), normalised here -> (3, 3) rotation matrix (float64)."""
    w, x, y, z = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def world_to_camera(points: np.ndarray, camera: Camera) -> np.ndarray:
    """(..., 3) world metres -> (..., 3) camera-frame metres: R^T (X - t / 1000), float32."""
    rotation = quaternion_to_matrix(camera.orientation)
    centre = np.asarray(camera.translation, dtype=np.float64) / 1000.0
    # Row vectors: (R^T (X - t))^T = (X - t)^T R.
    return ((np.asarray(points, dtype=np.float64) - centre) @ rotation).astype(np.float32)


def _load_dict(path: str | Path, key: str) -> dict:
    with np.load(path, allow_pickle=True) as f:
        if key not in f.files:
            raise KeyError(f"{path}: no key {key!r} (keys: {f.files})")
        return f[key].item()


def _camera_table(path_3d: str | Path) -> dict[str, tuple[Camera, ...]]:
    with np.load(path_3d, allow_pickle=True) as f:
        if "cameras" not in f.files:
            return H36M_CAMERAS
        table = f["cameras"].item()
    return {
        s: tuple(
            Camera(
                str(c["id"]),
                tuple(c["center"]),
                tuple(c["focal_length"]),
                int(c["res_w"]),
                int(c["res_h"]),
                tuple(c["orientation"]),
                tuple(c["translation"]),
            )
            for c in cams
        )
        for s, cams in table.items()
    }


def load_videopose3d(
    path_3d: str | Path, path_2d: str | Path, subjects: Iterable[str] | None = None
) -> list[PoseSequence]:
    """Read a VideoPose3D ``data_3d_*.npz`` / ``data_2d_*.npz`` pair (trusted files only: pickle).

    3D arrays with 32 joints are reduced to our 17 (:data:`H36M_32_TO_17`); 17-joint arrays are
    taken as already in our order. Every (subject, action, camera) with 2D keypoints becomes one
    :class:`PoseSequence`; when the 2D and 3D lengths differ (as in some public 2D detections) both
    are cut to the shorter. subjects: keep only these (default: all in the 3D file).
    Returns sequences sorted by subject, action, camera index.
    """
    positions_3d = _load_dict(path_3d, "positions_3d")
    positions_2d = _load_dict(path_2d, "positions_2d")
    metadata = _load_dict(path_2d, "metadata")
    check_layout(videopose3d_layout(metadata, path_2d), CANONICAL, str(path_2d))
    if int(metadata["num_joints"]) != NUM_JOINTS:
        raise ValueError(f"{path_2d}: expected {NUM_JOINTS} 2D joints, metadata says {metadata}")
    cameras = _camera_table(path_3d)
    keep = set(positions_3d) if subjects is None else set(subjects)
    sequences = []
    for subject in sorted(keep):
        if subject not in positions_3d or subject not in positions_2d:
            raise KeyError(f"subject {subject!r} missing from {path_3d} or {path_2d}")
        for action in sorted(positions_3d[subject]):
            world = np.asarray(positions_3d[subject][action], dtype=np.float32)
            if world.shape[1] == 32:
                world = world[:, list(H36M_32_TO_17)]
            elif world.shape[1] != NUM_JOINTS:
                raise ValueError(f"{subject}/{action}: expected 32 or 17 joints, got {world.shape}")
            for index, kp2d in enumerate(positions_2d[subject][action]):
                camera = cameras[subject][index]
                length = min(len(kp2d), len(world))
                sequences.append(
                    PoseSequence(
                        subject,
                        action,
                        camera,
                        np.asarray(kp2d[:length], dtype=np.float32),
                        world_to_camera(world[:length], camera),
                    )
                )
    return sequences


def split_subjects(subjects: Iterable[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(train, test) subjects: the standard S1 S5 S6 S7 S8 / S9 S11 split when the data holds
    Human3.6M subjects, else ``("train",)`` / ``("test",)`` (our synthetic export)."""
    subjects = set(subjects)
    if subjects & set(TEST_SUBJECTS):
        return (
            tuple(s for s in TRAIN_SUBJECTS if s in subjects),
            tuple(s for s in TEST_SUBJECTS if s in subjects),
        )
    return ("train",), ("test",)


def action_wise_mean(errors: Iterable[tuple[str, float, int]]) -> tuple[float, dict[str, float]]:
    """Human3.6M protocol: mean over actions of each action's frame-weighted mean error.

    errors: (action, mean error over a sequence, its number of frames) per sequence. Actions are
    grouped by the name before the first space ("Walking 1" and "Walking" are one action), as in
    VideoPose3D. Returns (the mean over actions, {action: its mean}).
    """
    totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for action, error, frames in errors:
        group = totals[action.split(" ")[0]]
        group[0] += float(error) * frames
        group[1] += frames
    per_action = {a: s / n for a, (s, n) in sorted(totals.items()) if n > 0}
    if not per_action:
        raise ValueError("no frames to average")
    return float(np.mean(list(per_action.values()))), per_action


def export_synthetic_to_videopose3d(
    synth_root: str | Path, out_dir: str | Path, name: str = "synthetic"
) -> tuple[Path, Path]:
    """Write a synthetic set (``css_pose.data.synthetic``) as a VideoPose3D npz pair.

    Subjects are the manifest splits ("train", "val", "test"); each video is one action named
    after it, seen by one camera (index 0). positions_3d holds the camera-frame 3D in metres and
    the camera registered under ``cameras`` has identity extrinsics and the video's intrinsics, so
    :func:`load_videopose3d` gives back the camera-frame 3D exactly. Because cameras are per
    subject in this format, each subject's camera takes the first video's intrinsics; only
    res_w/res_h are used by lifting, and they are the same for every video of a set.
    Returns (path of data_3d_<name>.npz, path of data_2d_<name>_gt.npz).
    """
    synth_root, out_dir = Path(synth_root), Path(out_dir)
    manifest = json.loads((synth_root / "manifest.json").read_text())
    size = int(manifest["size"])
    positions_3d: dict[str, dict[str, np.ndarray]] = defaultdict(dict)
    positions_2d: dict[str, dict[str, list[np.ndarray]]] = defaultdict(dict)
    cameras: dict[str, list[dict]] = {}
    for video in manifest["videos"]:
        subject = video["split"]
        with np.load(synth_root / video["annotation"]) as ann:
            positions_3d[subject][video["name"]] = ann["keypoints_3d"].astype(np.float32) / 1000.0
            positions_2d[subject][video["name"]] = [ann["keypoints_2d"].astype(np.float32)]
            fx, fy, cx, cy = (float(v) for v in ann["camera"])
        cameras.setdefault(subject, [asdict(Camera(video["name"], (cx, cy), (fx, fy), size, size))])
    metadata = {
        "layout_name": "h36m",
        "num_joints": NUM_JOINTS,
        "keypoints_symmetry": [
            [j for j, n in enumerate(JOINT_NAMES) if n.startswith("l_")],
            [j for j, n in enumerate(JOINT_NAMES) if n.startswith("r_")],
        ],
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    path_3d, path_2d = out_dir / f"data_3d_{name}.npz", out_dir / f"data_2d_{name}_gt.npz"
    np.savez_compressed(
        path_3d,
        positions_3d=np.array(dict(positions_3d), dtype=object),
        cameras=np.array(cameras, dtype=object),
    )
    np.savez_compressed(
        path_2d,
        positions_2d=np.array(dict(positions_2d), dtype=object),
        metadata=np.array(metadata, dtype=object),
    )
    return path_3d, path_2d
