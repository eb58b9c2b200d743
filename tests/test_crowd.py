"""Multi-person building blocks (issue 19): flow propagation, matching, fusion, the simulated
detector, OKS, and OKS AP checked against pycocotools."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

from css_pose.crowd import box_iou, fuse, match_people, propagate
from css_pose.data.simulated_detector import SimulatedDetector
from css_pose.layouts import get_layout
from css_pose.metrics.oks import layout_sigmas, oks, oks_ap

RNG = np.random.default_rng(0)


def _pose(cx: float, cy: float, scale: float = 40.0, seed: int = 0) -> np.ndarray:
    """A made-up 17-joint person around (cx, cy)."""
    rng = np.random.default_rng(seed)
    return np.stack(
        [cx + scale * rng.uniform(-0.4, 0.4, 17), cy + scale * rng.uniform(-1, 1, 17)], -1
    )


def test_propagation_with_known_flow_moves_joints_exactly():
    h, w = 60, 80
    kp = np.array([[10.0, 20.0], [33.25, 41.5], [79.0, 59.0], [np.nan, np.nan]])
    flow = np.zeros((h, w, 2))
    flow[..., 0], flow[..., 1] = 3.5, -2.0  # a translation
    moved = propagate(kp, flow)
    np.testing.assert_allclose(moved[:3], kp[:3] + [3.5, -2.0], atol=1e-12)
    assert np.isnan(moved[3]).all()
    # A flow linear in x and y is reproduced exactly by bilinear sampling between pixels.
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    flow = np.stack([0.1 * xs - 0.05 * ys + 1, 0.02 * xs + 0.2 * ys], -1)
    x, y = kp[:3, 0], kp[:3, 1]
    expect = kp[:3] + np.stack([0.1 * x - 0.05 * y + 1, 0.02 * x + 0.2 * y], -1)
    np.testing.assert_allclose(propagate(kp[:3], flow), expect, atol=1e-9)
    # Several people at once: (P, J, 2).
    assert propagate(np.stack([kp[:3], kp[:3]]), flow).shape == (2, 3, 2)


def test_matcher_on_hand_made_poses():
    sigmas, _ = layout_sigmas("coco17")
    people = [_pose(40, 60, seed=1), _pose(120, 60, seed=2), _pose(200, 70, seed=3)]
    order = [2, 0, 1]
    moved = [people[i] + RNG.normal(0, 1.0, (17, 2)) for i in order]
    pairs = match_people(people, moved, "oks", sigmas)
    assert sorted(pairs) == sorted((order[j], j) for j in range(3))
    # A person far from everyone is left unmatched; one person less on one side is fine.
    stranger = _pose(400, 300, seed=4)
    pairs = match_people(people[:2], [moved[1], stranger], "oks", sigmas)
    assert pairs == [(0, 0)]
    # Boxes: IoU matching.
    boxes = [np.array([0, 0, 10, 20.0]), np.array([50, 0, 60, 20.0])]
    assert match_people(boxes, [boxes[1] + 1, boxes[0] - 1], "iou") == [(0, 1), (1, 0)]
    assert box_iou(boxes[0], boxes[0])[0, 0] == pytest.approx(1.0)
    assert box_iou(boxes[0], boxes[1])[0, 0] == 0.0
    with pytest.raises(ValueError, match="sigmas"):
        match_people(people, moved, "oks")
    assert match_people([], moved, "oks", sigmas) == []


def test_oks_is_coco_s_formula():
    sigmas, _ = layout_sigmas("coco17")
    gt = _pose(50, 50)
    vis = np.full(17, 2)
    assert oks(gt, gt, vis, 1000.0, sigmas) == pytest.approx(1.0)
    pred = gt.copy()
    pred[0, 0] += 3.0  # the nose moves 3 px
    e = 9.0 / (2 * 1000.0 * (2 * sigmas[0]) ** 2)
    assert oks(pred, gt, vis, 1000.0, sigmas) == pytest.approx((16 + np.exp(-e)) / 17)
    vis[0] = 0  # an unlabelled joint does not count
    assert oks(pred, gt, vis, 1000.0, sigmas) == pytest.approx(1.0)


def test_sigmas_follow_the_joint_names():
    ours, scored = layout_sigmas("h36m17")
    coco = get_layout("coco17")
    h36m = get_layout("h36m17")
    assert scored.sum() == 12  # the limb joints
    for j, name in enumerate(h36m.joints):
        if scored[j]:
            assert ours[j] == coco.sigmas[coco.joints.index(name)]
        else:
            assert ours[j] == 0


def test_fusion():
    a = np.array([[0.0, 0.0], [10.0, 10.0]])
    b = np.array([[4.0, 8.0], [np.nan, np.nan]])
    c = np.array([[100.0, 100.0], [12.0, 10.0]])
    kp = np.stack([a, b, c])
    scores = np.array([[1.0, 1.0], [3.0, 1.0], [0.0, 1.0]])
    fused, s = fuse(kp, scores, "mean")
    np.testing.assert_allclose(fused, [[3.0, 6.0], [11.0, 10.0]])
    np.testing.assert_allclose(s, [4 / 3, 1.0])
    fused, _ = fuse(kp, scores, "median")
    np.testing.assert_allclose(fused, [[4.0, 8.0], [11.0, 10.0]])
    with pytest.raises(ValueError, match="unknown fusion"):
        fuse(kp, scores, "max")


def _gaussian_maps(cells: np.ndarray, shape=(12, 10), sigma: float = 1.5) -> np.ndarray:
    """(J, h, w) peak-1 Gaussians centred on ``cells`` (J, 2) x, y."""
    h, w = shape
    y, x = np.mgrid[0:h, 0:w]
    d2 = (x[None] - cells[:, :1, None]) ** 2 + (y[None] - cells[:, 1:, None]) ** 2
    return np.exp(-d2 / (2 * sigma**2)).astype(np.float32)


def test_heatmap_fusion_follows_grids_and_shifts():
    from css_pose.crowd import fuse_heatmaps

    # Candidate 0: cells of 4 px from frame px (20, 30); candidate 1: a crop at another scale
    # and place, carried here by a displacement of (+3, -2) px.
    own = np.array([[4.0, 0.0, 20.0], [0.0, 4.0, 30.0]])
    other = np.array([[5.0, 0.0, 11.0], [0.0, 5.0, 36.0]])
    truth = np.array([[33.0, 51.0], [27.4, 61.8]])  # frame px
    shift = np.array([[3.0, -2.0], [3.0, -2.0]])

    def cells(matrix, points):
        return (points - matrix[:, 2]) / np.diag(matrix[:, :2])

    maps0 = _gaussian_maps(cells(own, truth))
    maps1 = _gaussian_maps(cells(other, truth - shift))
    # One candidate on its own grid: the peak of its own map.
    kp, sc = fuse_heatmaps(own, (12, 10), [maps0], [own], np.zeros((1, 2, 2)))
    np.testing.assert_allclose(kp, truth, atol=0.05)
    np.testing.assert_allclose(sc, 1.0, atol=0.05)
    # The carried candidate alone lands on the truth too, resampled onto candidate 0's grid.
    kp, _ = fuse_heatmaps(own, (12, 10), [maps1], [other], shift[None])
    np.testing.assert_allclose(kp, truth, atol=0.2)  # bicubic resampling: <= 0.16 px off
    # Both: the same place; a joint nobody has (NaN shift) is NaN with score 0.
    shifts = np.stack([np.zeros((2, 2)), shift])
    shifts[:, 1] = np.nan
    kp, sc = fuse_heatmaps(own, (12, 10), [maps0, maps1], [own, other], shifts, np.array([1, 0.5]))
    np.testing.assert_allclose(kp[0], truth[0], atol=0.1)
    assert np.isnan(kp[1]).all() and sc[1] == 0.0


def test_heatmap_fusion_keeps_the_mode_where_the_mean_is_pulled_away():
    from css_pose.crowd import fuse_heatmaps

    grid = np.array([[4.0, 0.0, 0.0], [0.0, 4.0, 0.0]])
    agree = _gaussian_maps(np.array([[3.0, 4.0]]), sigma=1.0)
    stray = _gaussian_maps(np.array([[8.0, 9.0]]), sigma=1.0)  # 20 px right, 20 px down
    kp, _ = fuse_heatmaps(grid, (12, 10), [agree, agree, stray], [grid] * 3, np.zeros((3, 1, 2)))
    np.testing.assert_allclose(kp[0], [12.0, 16.0], atol=0.3)
    mean, _ = fuse(np.array([[[12.0, 16.0]], [[12.0, 16.0]], [[32.0, 36.0]]]), np.ones((3, 1)))
    np.testing.assert_allclose(mean[0], [18.67, 22.67], atol=0.01)


def test_simulated_detector():
    boxes = np.array([[10, 10, 30, 60.0], [50, 5, 80, 70.0]])
    exact = SimulatedDetector(drop=0, jitter=0, false=0)
    out = exact(3, boxes, 100, 80)
    np.testing.assert_allclose(out[:, :4], boxes)
    assert ((out[:, 4] >= 0.6) & (out[:, 4] <= 1)).all()
    assert len(SimulatedDetector(drop=1, false=0)(3, boxes, 100, 80)) == 0
    det = SimulatedDetector(drop=0.3, jitter=0.1, false=0.2, seed=5)
    np.testing.assert_array_equal(det(7, boxes, 100, 80), det(7, boxes, 100, 80))
    frames = [det(t, boxes, 100, 80) for t in range(2000)]
    kept = sum(int((f[:, 4] >= 0.6).sum()) for f in frames)  # false boxes score below 0.7
    false = sum(len(f) for f in frames) - kept
    # Rates within 4 standard errors of what was asked for (false scores may reach 0.6-0.7).
    assert abs(1 - kept / 4000 - 0.3) < 4 * np.sqrt(0.3 * 0.7 / 4000) + 0.2 * 0.5 / 2
    assert 0.2 * 2000 * 0.4 < false < 0.2 * 2000 * 1.2
    for f in frames:
        assert (f[:, [0, 1]] <= f[:, [2, 3]]).all() and (f[:, :4] >= 0).all()
        assert (f[:, [0, 2]] <= 100).all() and (f[:, [1, 3]] <= 80).all()


def _hand_made_set(sigmas_scale: float = 1.0):
    rng = np.random.default_rng(3)
    images, gt, results = [], [], []
    for image_id in range(1, 7):
        images.append({"id": image_id, "width": 320, "height": 240})
        for p in range(rng.integers(1, 4)):
            kp = _pose(60 + 90 * p, 120, scale=60, seed=10 * image_id + p)
            vis = np.where(rng.random(17) < 0.85, 2, 0)
            box = np.concatenate([kp.min(0), kp.max(0) - kp.min(0)])
            triples = np.concatenate([np.where(vis[:, None] > 0, kp, 0), vis[:, None]], 1)
            gt.append({"image_id": image_id, "keypoints": triples.reshape(-1).tolist(),
                       "bbox": box.tolist(), "area": float(box[2] * box[3])})  # fmt: skip
            if rng.random() < 0.85:  # a miss now and then
                noisy = kp + rng.normal(0, rng.uniform(1, 12), (17, 2))
                res = np.concatenate([noisy, rng.uniform(0.2, 1, (17, 1))], 1)
                results.append({"image_id": image_id, "keypoints": res.reshape(-1).tolist(),
                                "score": float(rng.uniform(0.3, 1))})  # fmt: skip
        if rng.random() < 0.5:  # a false positive
            res = np.concatenate([_pose(280, 60, 30, seed=image_id), np.full((17, 1), 0.5)], 1)
            results.append({"image_id": image_id, "keypoints": res.reshape(-1).tolist(),
                            "score": 0.4})  # fmt: skip
    sigmas = get_layout("coco17").sigmas
    return images, gt, results, sigmas_scale * np.asarray(sigmas)


def _pycocotools_ap(images, gt, results, sigmas) -> list[float]:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    anns = [{**g, "id": n + 1, "category_id": 1, "iscrowd": 0,
             "num_keypoints": int((np.asarray(g["keypoints"])[2::3] > 0).sum())}
            for n, g in enumerate(gt)]  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = {"images": images, "annotations": anns,
                        "categories": [{"id": 1, "name": "person"}]}  # fmt: skip
        coco.createIndex()
        dt = coco.loadRes([{**r, "category_id": 1} for r in results])
        ev = COCOeval(coco, dt, "keypoints")
        ev.params.kpt_oks_sigmas = np.asarray(sigmas)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return [float(ev.stats[i]) for i in (0, 1, 2, 5)]


@pytest.mark.parametrize("scale", [1.0, 1.7])
def test_oks_ap_agrees_with_pycocotools(scale):
    images, gt, results, sigmas = _hand_made_set(scale)
    ours = oks_ap(images, gt, results, sigmas)
    reference = _pycocotools_ap(images, gt, results, sigmas)
    np.testing.assert_allclose([ours[k] for k in ("AP", "AP50", "AP75", "AR")], reference,
                               atol=1e-6)  # fmt: skip
    assert 0.05 < ours["AP"] < 0.95  # a set where AP is neither trivial nor zero
    # Perfect predictions score 1.
    perfect = [{"image_id": g["image_id"], "score": 1.0,
                "keypoints": [v if (i % 3) != 2 else 1.0 for i, v in enumerate(g["keypoints"])]}
               for g in gt]  # fmt: skip
    assert oks_ap(images, gt, perfect, sigmas)["AP"] == pytest.approx(1.0)
    assert oks_ap(images, gt, [], sigmas)["AP"] == -1.0


def _moving_people(frames: int = 6, drop: tuple[int, int] = (3, 1), noise: float = 2.0):
    """Two people walking right at 4 px/frame on a 320 x 240 frame, with detection noise; the
    detector misses person ``drop[1]`` in frame ``drop[0]``. The flow is the true motion."""
    from css_pose.crowd import FramePerson

    rng = np.random.default_rng(7)
    base = [_pose(80, 120, 60, seed=1), _pose(200, 110, 60, seed=2)]
    truth, seen = [], []
    for t in range(frames):
        poses = [b + [4.0 * t, 0.0] for b in base]
        truth.append(poses)
        people = []
        for p, kp in enumerate(poses):
            if (t, p) == drop:
                continue
            noisy = kp + rng.normal(0, noise, kp.shape)
            box = np.concatenate([noisy.min(0), noisy.max(0)])
            people.append(FramePerson(noisy, np.full(17, 0.9), box, 0.9))
        seen.append(people)
    flow = np.zeros((240, 320, 2))
    flow[..., 0] = 4.0
    return truth, seen, [flow] * (frames - 1), [-flow] * (frames - 1)


def test_refinement_recovers_a_missed_person_and_averages_noise():
    from css_pose.crowd import refine_poses
    from css_pose.tracking import assign_tracks

    sigmas, _ = layout_sigmas("coco17")
    truth, seen, fwd, bwd = _moving_people()
    refined = refine_poses(seen, fwd, bwd, sigmas, k=2)
    assert [len(f) for f in seen] == [2, 2, 2, 1, 2, 2]
    assert [len(f) for f in refined] == [2] * 6
    missed = [p for p in refined[3] if p.recovered]
    assert len(missed) == 1
    err = np.linalg.norm(missed[0].keypoints - truth[3][1], axis=-1).mean()
    assert err < 2.0  # the average of 4 noisy neighbours, noise 2 px per coordinate

    def mean_error(frames):
        errors = []
        for t, people in enumerate(frames):
            for p in people:
                errors.append(
                    min(np.linalg.norm(p.keypoints - g, axis=-1).mean() for g in truth[t])
                )
        return float(np.mean(errors))

    assert mean_error(refined) < 0.7 * mean_error(seen)
    # The input is left as it was.
    assert len(seen[3]) == 1 and not any(p.recovered for f in seen for p in f)
    # Tracks: each person keeps one id through the miss.
    assert assign_tracks(refined, sigmas) == 2
    ids = [sorted((p.keypoints[:, 0].mean() > 140, p.track) for p in f) for f in refined]
    assert all(i == ids[0] for i in ids)
    # Online: past frames only; the miss in frame 3 is recovered from frames 1 and 2.
    online = refine_poses(seen, fwd, None, sigmas, k=2)
    assert sum(p.recovered for p in online[3]) == 1 and len(online[0]) == 2
    # Without neighbours agreeing (recover=3 with k=1), nobody is invented.
    assert len(refine_poses(seen, fwd, bwd, sigmas, k=1, recover=3)[3]) == 1
    with pytest.raises(ValueError, match="6 frames need 5 forward"):
        refine_poses(seen, fwd[:-1], None, sigmas)
    with pytest.raises(ValueError, match="needs every person's heatmaps"):
        refine_poses(seen, fwd, bwd, sigmas, fusion="heatmap")
    with pytest.raises(ValueError, match="unknown fusion"):
        refine_poses(seen, fwd, bwd, sigmas, fusion="max")


@pytest.fixture(scope="module")
def crowd_model(tmp_path_factory):
    """A tiny 2-person synthetic set and a head trained briefly on it (from random init)."""
    from css_pose.data.synthetic import generate_dataset
    from css_pose.heads2d import main as train_head

    root = tmp_path_factory.mktemp("crowd")
    generate_dataset(root / "set", videos=6, frames=12, size=64, seed=4, people=2, workers=1,
                     val_fraction=0.2, test_fraction=0.2, progress=False)  # fmt: skip
    run = root / "head"
    train_head(["ckpt=none", "epochs=3", "batch_size=8", "label_fraction=1.0", "num_images=0",
                f"data.root={root / 'set'}", "data.size=32", "data.num_workers=0",
                "logger.wandb.enabled=false", "device=cpu", f"run_dir={run}"])  # fmt: skip
    return root / "set", run / "head.pt"


def test_predict_multi_outputs_every_frame_when_the_detector_misses(crowd_model, tmp_path):
    import json

    from css_pose.cli import main as cli
    from css_pose.data.coco import read_coco
    from css_pose.data.index import index_videos
    from css_pose.data.loading import load_annotation
    from css_pose.data.video import probe_video

    root, model = crowd_model
    entry = index_videos(root).videos[0]
    ann = load_annotation(entry.annotation, entry.num_frames)
    dets = [
        {"image_id": t, "category_id": 1, "score": 0.9,
         "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]}
        for t in range(entry.num_frames) if t not in (4, 5)
        for b in ann.boxes[ann.present[:, t], t]
    ]  # fmt: skip
    for name, found, fusion in (("some", dets, "mean"), ("none", [], "mean"),
                                ("heatmap", dets, "heatmap")):  # fmt: skip
        boxes = tmp_path / f"{name}.json"
        boxes.write_text(json.dumps(found))
        out = tmp_path / name
        code = cli(["predict", "--model", str(model), "--video", entry.path, "--boxes",
                    str(boxes), "--people", "multi", "--fusion", fusion, "--out", str(out)])  # fmt: skip
        assert code == 0
        meta = json.loads((out / "meta.json").read_text())
        assert meta["fusion"] == fusion
        assert meta["frames"] == entry.num_frames == probe_video(out / "overlay.mp4").num_frames
        track = read_coco(out / "posetrack.json")
        assert track.layout.name == "h36m17" and len(track.images) == entry.num_frames
        entries = json.loads((out / "keypoints.json").read_text())
        assert all(len(e["keypoints"]) == 51 and e["track_id"] >= 0 for e in entries)
        if name == "none":
            assert entries == [] and meta["people"] == 0 and meta["tracks"] == 0
            continue
        per_frame = {t: [e for e in entries if e["image_id"] == t] for t in range(12)}
        # Frames with detections keep their 2 people; the gap is filled from the neighbours.
        assert all(len(per_frame[t]) == 2 for t in range(12) if t not in (4, 5))
        assert any(e["recovered"] for t in (4, 5) for e in per_frame[t])
        assert not any(e["recovered"] for t in range(12) if t not in (4, 5) for e in per_frame[t])
        assert len({p.track_id for p in track.people}) == meta["tracks"] >= 2
    # A missing --boxes is refused with the reason.
    with pytest.raises(SystemExit):
        cli(["predict", "--model", str(model), "--video", entry.path, "--people", "multi",
             "--out", str(tmp_path / "x")])  # fmt: skip


def test_kept_heatmaps_decode_to_the_predicted_keypoints(crowd_model):
    """predict_chunk's heatmap_to_frame maps each kept heatmap's peak onto the keypoints it
    reports, so heatmap fusion of a person with itself changes nothing."""
    import torch

    from css_pose.crowd import fuse_heatmaps
    from css_pose.data.index import index_videos
    from css_pose.data.loading import load_annotation
    from css_pose.data.video import open_video
    from css_pose.models.pose_model import load_pose_model
    from css_pose.video_pose import predict_chunk

    root, path = crowd_model
    entry = index_videos(root).videos[0]
    ann = load_annotation(entry.annotation, entry.num_frames)
    with open_video(entry.path, "pyav", entry.num_frames) as reader:
        frames = list(reader.get_batch([0, 1]))
    boxes = {t: np.concatenate([ann.boxes[ann.present[:, t], t], np.ones((2, 1))], 1)
             for t in (0, 1)}  # fmt: skip
    model, codec, payload = load_pose_model(path, "cpu")
    size, pad = payload["crop"]["size"], payload["crop"]["box_pad"]
    people = predict_chunk(model, codec, frames, [0, 1], boxes, pad, size,
                           torch.device("cpu"), True, keep_heatmaps=True)  # fmt: skip
    assert len(people) == 4
    for p in people:
        assert p.heatmaps.shape == (17, size // codec.stride, size // codec.stride)
        kp, sc = fuse_heatmaps(p.heatmap_to_frame, p.heatmaps.shape[1:], [p.heatmaps],
                               [p.heatmap_to_frame], np.zeros((1, 17, 2)))  # fmt: skip
        np.testing.assert_allclose(kp, p.keypoints, atol=1e-3)
        np.testing.assert_allclose(sc, p.scores, atol=1e-5)
    plain = predict_chunk(model, codec, frames, [0, 1], boxes, pad, size,
                          torch.device("cpu"), True)  # fmt: skip
    assert plain[0].heatmaps is None
    np.testing.assert_allclose(plain[0].keypoints, people[0].keypoints)


def test_weight_free_detector_benchmark_scores_boxes():
    """benchmarks/weight_free_detectors.py: exact boxes score AP 1 and recall 1; the background
    detector finds a square moving over a still background."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "weight_free_detectors.py"
    spec = importlib.util.spec_from_file_location("weight_free_detectors", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)

    video = np.full((9, 64, 64, 3), 90, np.uint8)
    boxes = np.zeros((1, 1, 9, 4))
    for t in range(9):
        x = 4 + 5 * t
        video[t, 20:44, x : x + 12] = 230
        boxes[0, 0, t] = [x, 20, x + 12, 44]
    present = np.ones((1, 1, 9), bool)
    exact = [np.array([[*boxes[0, 0, t], 1.0]]) for t in range(9)]
    r = bench.score(exact, boxes, present, 64)
    assert r["AP"] > 0.99 and r["recall50"] == 1.0 and r["per_frame"] == 1.0
    found = bench.background_boxes(video, 25.0)
    assert bench.score(found, boxes, present, 64)["recall50"] == 1.0
    assert bench.score([np.zeros((0, 5))] * 9, boxes, present, 64)["AP"] == 0.0
