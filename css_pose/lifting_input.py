"""Realistic 2D input for lifters (issue 20): a 2D head's keypoints over a rendered synthetic
set (:func:`head_keypoints`), and a noise model fitted to their errors (:func:`fit_noise`) that
corrupts ground-truth 2D the way the head does (:meth:`NoiseModel.apply`), so a lifter trained
on render-free pairs (:mod:`css_pose.data.synthetic.poses`) sees head-like input.

Units: keypoints in frame pixels; the noise model's errors are fractions of the person's size,
max(w, h) of the box around the ground-truth 2D keypoints of the frame (:func:`person_size`), so
one model serves people of any size in any image.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from css_pose.artifacts.atomic import atomic_path
from css_pose.data.h36m import PoseSequence
from css_pose.skeleton import FLIP_PAIRS

OUTLIER = 0.1  # an error beyond this fraction of the person's size is an outlier


def head_keypoints(
    model_path: str | Path, synth_root: str | Path, splits=("train", "test"), progress=True
) -> dict[str, np.ndarray]:
    """{video name: (T, 17, 2) px} a 2D head's keypoints on every video of ``splits`` of a
    generated synthetic set, cropped around the ground-truth boxes as in training, flip test on.

    Cached in ``synth_root/head_2d/<hash of the model file>.npz`` (a changed model file is run
    again). Raises CheckpointError naming a bad model file.
    """
    import torch

    from css_pose.data.detections import load_detections
    from css_pose.data.video import VideoStream
    from css_pose.models.pose_model import load_pose_model
    from css_pose.video_pose import fill_track, frame_stream, predict_stream

    synth_root, model_path = Path(synth_root), Path(model_path)
    manifest = json.loads((synth_root / "manifest.json").read_text())
    videos = [v for v in manifest["videos"] if v["split"] in splits]
    digest = hashlib.sha1(model_path.read_bytes()).hexdigest()[:12]
    cache = synth_root / "head_2d" / f"{digest}-{'-'.join(sorted(splits))}.npz"
    if cache.exists():
        with np.load(cache) as data:
            return {name: data[name] for name in data.files}
    model, codec, payload = load_pose_model(model_path, "cpu")
    out = {}
    for video in tqdm(videos, desc="head 2D", disable=not progress):
        boxes = load_detections(synth_root / video["annotation"])
        stream = frame_stream(model, codec, payload, boxes, torch.device("cpu"), True)
        source = VideoStream.open(synth_root / video["video"])
        try:
            best = {
                ready.index: people[0]
                for ready, people in predict_stream(source.frames(), stream, 64)
                if people
            }
        finally:
            source.close()
        out[video["name"]] = fill_track(best, video["frames"])
    cache.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(cache) as tmp, open(tmp, "wb") as f:
        np.savez(f, **out)
    return out


def person_size(kp2d: np.ndarray) -> np.ndarray:
    """(T, J, 2) px -> (T,) max(w, h) of the box around each frame's keypoints, px (>= 1)."""
    extent = kp2d.max(axis=1) - kp2d.min(axis=1)
    return np.maximum(extent.max(axis=-1), 1.0)


@dataclass
class NoiseModel:
    """Per-joint errors of a 2D head, as fractions of the person's size.

    sigma (J,): std per axis of the inlier errors (error <= :data:`OUTLIER`); outlier_rate (J,):
    the share of frames beyond it; outlier_sigma (J,): std per axis of those errors; rho: lag-1
    autocorrelation of the errors (pooled over joints and axes; errors drift, they do not
    flicker); outlier_stay: P(outlier at t+1 | outlier at t) (failures last several frames);
    swap_rate: the share of (frame, left/right pair) where the head swapped the two joints, and
    swap_stay: P(swapped at t+1 | swapped at t). Swapped joints are not counted as outliers.
    """

    sigma: list[float]
    outlier_rate: list[float]
    outlier_sigma: list[float]
    rho: float
    outlier_stay: float
    frames: int = 0
    source: str = ""
    swap_rate: float = 0.0
    swap_stay: float = 0.0

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            Path(tmp).write_text(json.dumps(asdict(self), indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path) -> NoiseModel:
        try:
            return cls(**json.loads(Path(path).read_text()))
        except (OSError, ValueError, TypeError) as err:
            raise ValueError(
                f"{path}: not a noise model ({err}); write one with python -m css_pose.lifting "
                "--head-2d MODEL.pt --save-noise PATH"
            ) from err

    def apply(self, kp2d: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(T, J, 2) ground-truth px -> the same with head-like errors (a new array)."""
        t, j = kp2d.shape[:2]
        size = person_size(kp2d)[:, None, None]
        if self.swap_rate > 0:
            rate = np.full(len(FLIP_PAIRS), self.swap_rate)
            kp2d = _swap(kp2d, _markov_states(rng, t, rate, self.swap_stay))
        inlier = _ar1(rng, t, (j, 2), self.rho) * np.asarray(self.sigma)[:, None]
        outlier = _ar1(rng, t, (j, 2), self.rho) * np.asarray(self.outlier_sigma)[:, None]
        state = _markov_states(rng, t, np.asarray(self.outlier_rate), self.outlier_stay)
        error = np.where(state[..., None], outlier, inlier)
        return (kp2d + size * error).astype(np.float32)


def _ar1(rng: np.random.Generator, t: int, shape: tuple, rho: float) -> np.ndarray:
    """(t, *shape) unit-variance AR(1) noise with lag-1 correlation rho."""
    z = rng.standard_normal((t, *shape))
    out = np.empty_like(z)
    out[0] = z[0]
    scale = np.sqrt(max(1.0 - rho * rho, 0.0))
    for i in range(1, t):
        out[i] = rho * out[i - 1] + scale * z[i]
    return out


def _markov_states(rng: np.random.Generator, t: int, rate: np.ndarray, stay: float) -> np.ndarray:
    """(t, J) bool two-state chains with stationary P(True) = rate and P(True | True) = stay."""
    rate = np.clip(rate, 0.0, 0.999)
    enter = np.clip(rate * (1 - stay) / (1 - rate), 0.0, 1.0)
    state = np.empty((t, len(rate)), bool)
    state[0] = rng.random(len(rate)) < rate
    for i in range(1, t):
        u = rng.random(len(rate))
        state[i] = np.where(state[i - 1], u < stay, u < enter)
    return state


def fit_noise(pred: list[np.ndarray], gt: list[np.ndarray], source: str = "") -> NoiseModel:
    """A :class:`NoiseModel` from a head's keypoints ``pred`` and the ground truth ``gt``, each a
    list of (T, J, 2) px sequences (one per video). Left/right swaps are found first
    (:func:`swapped_pairs`); the other errors are measured against the swapped ground truth."""
    swaps = [swapped_pairs(p, g) for p, g in zip(pred, gt)]  # (T, P) each
    errors = [
        (p - _swap(g, sw)) / person_size(g)[:, None, None] for p, g, sw in zip(pred, gt, swaps)
    ]
    e = np.concatenate(errors)  # (N, J, 2)
    out = np.linalg.norm(e, axis=-1) > OUTLIER
    sigma = [_axis_std(e[~out[:, k], k]) for k in range(e.shape[1])]
    outlier_sigma = [
        _axis_std(e[out[:, k], k]) if out[:, k].any() else 0.0 for k in range(e.shape[1])
    ]
    lagged = np.concatenate([x[1:].ravel() for x in errors])
    current = np.concatenate([x[:-1].ravel() for x in errors])
    flags = [np.linalg.norm(x, axis=-1) > OUTLIER for x in errors]
    sw = np.concatenate(swaps)
    return NoiseModel(
        sigma=[float(s) for s in sigma],
        outlier_rate=[float(r) for r in out.mean(0)],
        outlier_sigma=[float(s) for s in outlier_sigma],
        rho=float(np.corrcoef(current, lagged)[0, 1]),
        outlier_stay=_stay(flags),
        frames=len(e),
        source=source,
        swap_rate=float(sw.mean()),
        swap_stay=_stay(swaps),
    )


def _stay(flags: list[np.ndarray]) -> float:
    """P(flag at t+1 | flag at t) over (T, ...) bool sequences (0 when never flagged)."""
    was = np.concatenate([f[:-1].ravel() for f in flags])
    now = np.concatenate([f[1:].ravel() for f in flags])
    return float(now[was].mean()) if was.any() else 0.0


def swapped_pairs(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """(T, P) bool: the head swapped the two joints of left/right pair p (``FLIP_PAIRS``) in
    frame t: matching them the other way round lowers their summed error, and both are then
    within :data:`OUTLIER` of the person's size. pred, gt: (T, J, 2) px."""
    left, right = (np.array(side) for side in zip(*FLIP_PAIRS))
    size = person_size(gt)[:, None]
    d = lambda a, b: np.linalg.norm(pred[:, a] - gt[:, b], axis=-1)  # noqa: E731
    own, crossed = d(left, left) + d(right, right), d(left, right) + d(right, left)
    close = np.maximum(d(left, right), d(right, left)) <= OUTLIER * size
    return (crossed < own) & close


def _swap(kp: np.ndarray, swapped: np.ndarray) -> np.ndarray:
    """(T, J, D) with the two joints of each pair swapped where swapped (T, P) is True."""
    left, right = (np.array(side) for side in zip(*FLIP_PAIRS))
    out = kp.copy()
    rows, pairs = np.nonzero(swapped)
    out[rows, left[pairs]], out[rows, right[pairs]] = kp[rows, right[pairs]], kp[rows, left[pairs]]
    return out


def _axis_std(e: np.ndarray) -> float:
    """Per-axis RMS of (N, 2) errors (about zero: a head's bias counts as error)."""
    return float(np.sqrt(np.mean(e * e) if len(e) else 0.0))


def with_noise(sequences: list[PoseSequence], noise: NoiseModel, seed: int) -> list[PoseSequence]:
    """Copies of ``sequences`` whose 2D carries ``noise`` (seeded; 3D and cameras unchanged)."""
    rng = np.random.default_rng(seed)
    return [
        PoseSequence(
            s.subject, s.action, s.camera, noise.apply(s.keypoints_2d, rng), s.keypoints_3d
        )
        for s in sequences
    ]


def head_noise(
    model_path: str | Path, synth_root: str | Path, progress: bool = True
) -> tuple[NoiseModel, dict[str, np.ndarray]]:
    """(the noise model fitted to the head's errors on the set's *train* split, {video name:
    (T, 17, 2) px} the head's keypoints on its train and test videos)."""
    synth_root = Path(synth_root)
    head = head_keypoints(model_path, synth_root, progress=progress)
    manifest = json.loads((synth_root / "manifest.json").read_text())
    pred, gt = [], []
    for video in manifest["videos"]:
        if video["split"] == "train":
            with np.load(synth_root / video["annotation"]) as ann:
                gt.append(ann["keypoints_2d"].astype(np.float32))
            pred.append(head[video["name"]])
    return fit_noise(pred, gt, source=str(model_path)), head


def describe(noise: NoiseModel) -> str:
    """One line: the mean inlier sigma, outlier rate and the temporal statistics."""
    return (
        f"head errors ({noise.frames} train frames): inlier sigma {100 * np.mean(noise.sigma):.2f} % "
        f"of the person's size per axis, outliers (> {100 * OUTLIER:.0f} %) "
        f"{100 * np.mean(noise.outlier_rate):.1f} % of joints (sigma "
        f"{100 * np.mean(noise.outlier_sigma):.1f} %), lag-1 correlation {noise.rho:.2f}, "
        f"outlier persistence {noise.outlier_stay:.2f}, left/right swaps "
        f"{100 * noise.swap_rate:.1f} % of pairs (persistence {noise.swap_stay:.2f})"
    )
