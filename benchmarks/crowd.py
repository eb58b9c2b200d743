"""Top-down pose in crowded synthetic video: per-frame vs flow-refined OKS AP (issue 19).

Generates (once) a crowd set: several people per video, occluders and motion blur. Trains (once)
a single-person heatmap head on every labelled training person from random init. Then, on the
test videos, for each detector setting and seed:

1. **boxes**: the true person boxes of each frame through :class:`css_pose.data.simulated_detector.SimulatedDetector`
   (dropped, jittered and false boxes) or exact ("gt");
2. **per-frame top-down**: each box cropped and run through the head (css-pose predict's code);
3. **flow**: DIS flow between consecutive whole frames, both directions;
4. **refinement**: :func:`css_pose.crowd.refine_poses`, offline (k frames each side) and online
   (past frames only), and tracks (:func:`css_pose.tracking.assign_tracks`); offline also with the
   other fusions (the median of the keypoints, the average of the heatmaps).

Scores (:func:`css_pose.metrics.oks.oks_ap`): OKS AP over the 12 limb joints (COCO sigmas by joint
name) of every test frame; the share of the people-frames the detector dropped that refinement
recovered (a recovered person with OKS >= 0.5 to the dropped one); identity switches; frames/s of
each stage (same run). Per-seed rows go to ``--out``/results.json.

    python benchmarks/crowd.py --out runs/bench-crowd            # defaults: about 10 min, 2 cores
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from css_pose.config import configure_threads
from css_pose.crowd import FramePerson, match_people, refine_poses
from css_pose.data.index import index_videos
from css_pose.data.loading import load_annotation
from css_pose.data.simulated_detector import SimulatedDetector
from css_pose.data.video import open_video
from css_pose.flow import dense_flow
from css_pose.metrics.oks import layout_sigmas, oks, oks_ap
from css_pose.models.pose_model import load_pose_model
from css_pose.tracking import assign_tracks
from css_pose.video_pose import predict_chunk

REPO = Path(__file__).resolve().parents[1]
OTHER_FUSIONS = ("median", "heatmap")  # offline, besides the default weighted mean


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("runs/bench-crowd"))
    p.add_argument("--root", type=Path, default=Path("data/synthetic-crowd"))
    p.add_argument("--videos", type=int, default=800)
    p.add_argument("--people", type=int, default=3)
    p.add_argument("--size", type=int, default=128, help="frame side px")
    p.add_argument("--crop", type=int, default=32, help="crop side px of the head")
    p.add_argument("--head-steps", type=int, default=3000)
    p.add_argument("--test-videos", type=int, default=60)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--drop", type=float, default=0.2)
    p.add_argument("--jitter", type=float, default=0.05)
    p.add_argument("--false", type=float, default=0.1)
    p.add_argument("--k", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    return p.parse_args(argv)


def prepare(args) -> Path:
    """The crowd set and the head (made once); returns head.pt."""
    if not (args.root / "manifest.json").exists():
        from css_pose.data.synthetic import generate_dataset

        generate_dataset(args.root, videos=args.videos, frames=24, size=args.size, seed=11,
                         people=args.people, occluders=True, motion_blur=True,
                         val_fraction=0.05, test_fraction=0.1)  # fmt: skip
    head = args.out / "head" / "head.pt"
    if not head.exists():
        cmd = [sys.executable, str(REPO / "train_head.py"), "ckpt=none", "encoder=finetune",
               "label_fraction=1.0", f"steps={args.head_steps}", f"data.root={args.root}",
               f"data.size={args.crop}", "data.num_workers=0", f"threads={args.threads}",
               "logger.wandb.enabled=false", f"run_dir={head.parent}"]  # fmt: skip
        subprocess.run(cmd, check=True)
    return head


def test_videos(root: Path, count: int):
    """(entry, annotation, frames) of the first ``count`` test videos."""
    out = []
    for entry in index_videos(root).split("test")[:count]:
        ann = load_annotation(entry.annotation, entry.num_frames)
        with open_video(entry.path, "pyav", entry.num_frames) as reader:
            frames = reader.get_batch(range(entry.num_frames))
        out.append((entry, ann, frames))
    return out


def ground_truth(videos) -> tuple[list[dict], list[dict]]:
    images, people = [], []
    for v, (entry, ann, _) in enumerate(videos):
        for t in range(entry.num_frames):
            image_id = v * 1000 + t
            images.append({"id": image_id, "width": entry.width, "height": entry.height})
            for p in np.flatnonzero(ann.present[:, t]):
                kp, vis = ann.keypoints_2d[p, t], ann.visibility[p, t] > 0
                x1, y1, x2, y2 = ann.boxes[p, t]
                triples = np.concatenate([np.where(vis[:, None], kp, 0), 2 * vis[:, None]], 1)
                people.append({"image_id": image_id, "keypoints": triples.reshape(-1).tolist(),
                               "bbox": [x1, y1, x2 - x1, y2 - y1],
                               "area": float((x2 - x1) * (y2 - y1))})  # fmt: skip
    return images, people


def mean_box_pose(root: Path, count: int = 200) -> np.ndarray:
    """The floor's pose: the mean visible keypoints of the training people, each in units of its
    box (0..1 from the box's top-left), over ``count`` training videos; (J, 2)."""
    entries = index_videos(root).split("train")[:count]
    return mean_unit_pose(load_annotation(e.annotation, e.num_frames) for e in entries)


def mean_unit_pose(annotations) -> np.ndarray:
    """The mean visible keypoints of the people of ``annotations``, each in units of its box
    (0..1 from the box's top-left); (J, 2)."""
    total, seen = 0.0, 0.0
    for ann in annotations:
        lo, hi = ann.boxes[..., None, :2], ann.boxes[..., None, 2:]
        unit = (ann.keypoints_2d - lo) / np.maximum(hi - lo, 1e-6)
        w = ((ann.visibility > 0) & ann.present[..., None])[..., None]
        total, seen = total + (unit * w).sum((0, 1)), seen + w.sum((0, 1))
    return total / np.maximum(seen, 1)


def floor_people(boxes: np.ndarray, pose: np.ndarray) -> list[FramePerson]:
    """The no-image floor: ``pose`` (box units) placed in every box, scored by the box."""
    return [
        FramePerson(b[:2] + pose * (b[2:4] - b[:2]), np.ones(len(pose)), b[:4], float(b[4]))
        for b in boxes
    ]


def results(v: int, frames: list[list[FramePerson]]) -> list[dict]:
    out = []
    for t, people in enumerate(frames):
        for p in people:
            kp = np.concatenate([np.nan_to_num(p.keypoints), p.scores[:, None]], 1)
            out.append({"image_id": v * 1000 + t, "keypoints": kp.reshape(-1).tolist(),
                        "score": float(p.score * np.clip(p.scores, 0, 1).mean())})  # fmt: skip
    return out


def main(argv=None) -> dict:
    args = parse(argv)
    configure_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    head_path = prepare(args)
    model, codec, payload = load_pose_model(head_path, "cpu")
    size, pad = payload["crop"]["size"], payload["crop"]["box_pad"]
    sigmas, _ = layout_sigmas("h36m17")
    videos = test_videos(args.root, args.test_videos)
    gt_images, gt_people = ground_truth(videos)
    unit_pose = mean_box_pose(args.root)

    # Flow once per video: it does not depend on the boxes.
    start = time.perf_counter()
    flows = [
        ([dense_flow(f[t], f[t + 1]) for t in range(len(f) - 1)],
         [dense_flow(f[t + 1], f[t]) for t in range(len(f) - 1)])
        for _, _, f in videos
    ]  # fmt: skip
    n_frames = sum(len(f) for _, _, f in videos)
    flow_fps = n_frames / (time.perf_counter() - start)

    settings = [("gt", 0.0, 0.0, 0.0, [0])] + [
        ("simulated", args.drop, args.jitter, args.false, args.seeds)
    ]
    rows = []
    for name, drop, jitter, false, seeds in settings:
        for seed in seeds:
            det = SimulatedDetector(drop, jitter, false, seed)
            per_frame, offline, online, floor = [], [], [], []
            dropped = recovered = switches = 0
            t_pose = t_refine = 0.0
            by_fusion = {how: [] for how in OTHER_FUSIONS}
            t_fusion = dict.fromkeys(OTHER_FUSIONS, 0.0)
            for v, (entry, ann, frames) in enumerate(videos):
                boxes = {t: det(t + 1000 * v, ann.boxes[ann.present[:, t], t], entry.width,
                                entry.height) for t in range(entry.num_frames)}  # fmt: skip
                s = time.perf_counter()
                people = predict_chunk(model, codec, list(frames), list(range(len(frames))),
                                       boxes, pad, size, torch.device("cpu"), True,
                                       keep_heatmaps=True)  # fmt: skip
                t_pose += time.perf_counter() - s
                seen = [[] for _ in frames]
                for p in people:
                    seen[p.frame].append(FramePerson(p.keypoints, p.scores, p.box, p.box_score,
                                                     heatmaps=p.heatmaps,
                                                     heatmap_to_frame=p.heatmap_to_frame))  # fmt: skip
                s = time.perf_counter()
                off = refine_poses(seen, *flows[v], sigmas, k=args.k)
                t_refine += time.perf_counter() - s
                on = refine_poses(seen, flows[v][0], None, sigmas, k=args.k)
                for how in OTHER_FUSIONS:
                    s = time.perf_counter()
                    fused = refine_poses(seen, *flows[v], sigmas, k=args.k, fusion=how)
                    t_fusion[how] += time.perf_counter() - s
                    by_fusion[how] += results(v, fused)
                assign_tracks(off, sigmas)
                per_frame += results(v, seen)
                floor += results(v, [floor_people(boxes[t], unit_pose) for t in range(len(seen))])
                offline += results(v, off)
                online += results(v, on)
                d, r = _recovery(ann, boxes, off, sigmas)
                dropped, recovered = dropped + d, recovered + r
                switches += _switches(ann, off, sigmas)
            row = {
                "detector": name, "seed": seed, "drop": drop, "jitter": jitter, "false": false,
                "floor": oks_ap(gt_images, gt_people, floor, sigmas),
                "per_frame": oks_ap(gt_images, gt_people, per_frame, sigmas),
                "offline": oks_ap(gt_images, gt_people, offline, sigmas),
                "online": oks_ap(gt_images, gt_people, online, sigmas),
                **{f"offline_{how}": oks_ap(gt_images, gt_people, r, sigmas)
                   for how, r in by_fusion.items()},
                **{f"refine_{how}_fps": n_frames / t for how, t in t_fusion.items()},
                "dropped": dropped, "recovered": recovered, "id_switches": switches,
                "pose_fps": n_frames / t_pose, "refine_fps": n_frames / t_refine,
                "flow_fps": flow_fps,
            }  # fmt: skip
            rows.append(row)
            print(
                f"{name:9s} seed {seed}: AP floor {row['floor']['AP']:.3f}, per frame "
                f"{row['per_frame']['AP']:.3f}, offline "
                f"{row['offline']['AP']:.3f} ("
                + ", ".join(f"{h} {row[f'offline_{h}']['AP']:.3f}" for h in OTHER_FUSIONS)
                + f"), online {row['online']['AP']:.3f}; recovered "
                f"{recovered}/{dropped}; id switches {switches}; frames/s pose "
                f"{row['pose_fps']:.0f}, flow {flow_fps:.0f}, refine {row['refine_fps']:.0f}",
                flush=True,
            )
    (args.out / "results.json").write_text(json.dumps({"args": vars(args) | {
        "out": str(args.out), "root": str(args.root)}, "rows": rows}, indent=1))  # fmt: skip
    return {"rows": rows}


def _recovery(ann, boxes, refined, sigmas) -> tuple[int, int]:
    """(people-frames the detector dropped, of them recovered with OKS >= 0.5)."""
    dropped = found = 0
    for t in range(ann.present.shape[1]):
        dets = boxes[t][:, :4]
        for p in np.flatnonzero(ann.present[:, t]):
            box = ann.boxes[p, t]
            ious = _iou(dets, box)
            if len(ious) and ious.max() >= 0.5:
                continue
            dropped += 1
            gt, vis = ann.keypoints_2d[p, t], ann.visibility[p, t]
            area = float(np.prod(box[2:] - box[:2]))
            rec = [q for q in refined[t] if q.recovered]
            if any(oks(np.nan_to_num(q.keypoints), gt, vis, area, sigmas) >= 0.5 for q in rec):
                found += 1
    return dropped, found


def _iou(boxes: np.ndarray, box: np.ndarray) -> np.ndarray:
    from css_pose.crowd import box_iou

    return box_iou(boxes, box)[:, 0] if len(boxes) else np.zeros(0)


def _switches(ann, refined, sigmas) -> int:
    """Identity switches: for each true track, how often the predicted track matched to it
    (OKS >= 0.5) changes from one matched frame to the next."""
    count = 0
    last: dict[int, int] = {}
    for t, people in enumerate(refined):
        present = np.flatnonzero(ann.present[:, t])
        gts = [ann.keypoints_2d[p, t] for p in present]
        pairs = match_people([np.nan_to_num(q.keypoints) for q in people], gts, "oks", sigmas, 0.5)
        for i, j in pairs:
            p = int(present[j])
            if p in last and last[p] != people[i].track:
                count += 1
            last[p] = people[i].track
    return count


if __name__ == "__main__":
    main()
