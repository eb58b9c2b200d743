"""Raw videos plus a few COCO labels (``data.labels``): matching labels to frames, the splits and
stores of the datamodule, the reloadable label choice, and the walkthrough of docs/own_data.md end
to end (export -> inspect -> pretrain -> head -> predict -> read back)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from test_train import tiny_overrides

from css_pose.cli import main as cli
from css_pose.data.coco import CocoFormatError, CocoImage, CocoPerson, read_coco, write_coco
from css_pose.data.datamodule import VideoDataModule
from css_pose.data.export import export_coco
from css_pose.data.index import index_videos
from css_pose.data.labels import LabelMatchError, attach_boxes, attach_labels, split_by_video
from css_pose.data.loading import load_annotation
from css_pose.heads2d import main as train_head
from css_pose.layouts import convert
from css_pose.linear_probe import main as probe_main
from css_pose.runner import main as train_main


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    from css_pose.data.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("own_src")
    generate_dataset(root, videos=12, frames=24, size=64, seed=3, workers=1, progress=False)
    return root


@pytest.fixture(scope="module")
def exported(source, tmp_path_factory) -> Path:
    """Frame folders of every video and COCO-17 labels of every 4th frame of half of them."""
    out = tmp_path_factory.mktemp("own") / "mine"
    counts = export_coco(source, out, label_fraction=0.5, label_every=4, boxes=True)
    assert counts == {
        "videos": 12,
        "frames": 12 * 24,
        "labelled_videos": 6,
        "labelled_images": 6 * 6,
        "people": 6 * 6,
    }
    return out


def test_labels_land_on_their_frames_in_our_skeleton(source, exported, tmp_path):
    index = index_videos(exported / "videos")
    labels = attach_labels(index, exported / "labels.json", directory=tmp_path / "ann")
    assert labels.layout == "coco17" and labels.people == 36 and not labels.problems
    # Attaching again leaves the written files as they are (crop stores key on their mtime).
    written = {e.annotation: Path(e.annotation).stat().st_mtime_ns for e in labels.entries
               if e.annotation}  # fmt: skip
    attach_labels(index, exported / "labels.json", directory=tmp_path / "ann")
    assert {a: Path(a).stat().st_mtime_ns for a in written} == written
    assert len(labels.frames) == 6
    assert all(frames == [0, 4, 8, 12, 16, 20] for frames in labels.frames.values())
    originals = {Path(v.rel_path).stem: v for v in index_videos(source).videos}
    for entry in labels.entries:
        if entry.annotation is None:
            assert entry.rel_path not in labels.frames
            continue
        mine = load_annotation(entry.annotation, entry.num_frames)
        truth = load_annotation(originals[entry.rel_path].annotation, entry.num_frames)
        # What COCO-17 holds of our skeleton comes back exactly (3 decimals in the JSON), on
        # the labelled frames only; the joints COCO lacks are invisible.
        kp, vis = convert(truth.keypoints_2d, truth.visibility, "h36m17", "coco17")
        back, back_vis = convert(kp, vis, "coco17", "h36m17")
        assert np.array_equal(mine.present[0], np.arange(24) % 4 == 0)
        for t in range(0, 24, 4):
            shown = back_vis[0, t] > 0
            assert np.array_equal(mine.visibility[0, t] > 0, shown)
            np.testing.assert_allclose(mine.keypoints_2d[0, t][shown], back[0, t][shown], atol=1e-3)
            np.testing.assert_allclose(mine.boxes[0, t], truth.boxes[0, t], atol=1e-3)
        assert mine.visibility[0, 1:4].sum() == 0  # unlabelled frames stay unlabelled


def _labels(path: Path, images: list[CocoImage], people: list[CocoPerson] | None = None) -> Path:
    if people is None:
        kp = np.tile(np.array([[20.0, 30.0]]), (17, 1))
        people = [
            CocoPerson(im.id, kp, np.full(17, 2), box=np.array([10.0, 10, 20, 40])) for im in images
        ]
    write_coco(path, "coco17", images, people)
    return path


def test_matching_rules_and_what_a_bad_image_says(exported, tmp_path):
    index = index_videos(exported / "videos")
    folder = index.videos[0]
    name = Path(folder.rel_path).name

    def attach(*images, skip_bad=False, people=None):
        path = _labels(tmp_path / "labels.json", list(images), people)
        return attach_labels(index, path, skip_bad=skip_bad, directory=tmp_path / "ann")

    # The file name's folders pick the video, its position in the frame folder the frame.
    got = attach(CocoImage(1, f"anything/{name}/000007.png", 64, 64))
    assert got.frames == {folder.rel_path: [7]}
    # frame_index wins over the file name.
    got = attach(CocoImage(1, f"{name}/000007.png", frame_index=3))
    assert got.frames == {folder.rel_path: [3]}
    bad = {
        "no folder": (CocoImage(1, "000007.png"), "has no folder"),
        "unknown video": (CocoImage(1, "nosuchvideo/000001.png"), "no video named 'nosuchvideo'"),
        "missing file": (CocoImage(1, f"{name}/000099.png"), "has no image 000099.png"),
        "beyond": (CocoImage(1, f"{name}/000001.png", frame_index=24), "frame 24 is beyond"),
        "size": (CocoImage(1, f"{name}/000001.png", 128, 64), "width 128 px"),
    }
    for why, (image, message) in bad.items():
        with pytest.raises(LabelMatchError, match=re.escape(message)) as err:
            attach(image)
        assert "labels.json" in str(err.value) and f"image 1 ({image.file_name})" in str(
            err.value
        ), why
    # skip_bad: the bad image is one problem line, the good one still loads.
    got = attach(CocoImage(1, "nosuchvideo/000001.png"), CocoImage(2, f"{name}/000002.png"),
                 skip_bad=True)  # fmt: skip
    assert got.frames == {folder.rel_path: [2]} and len(got.problems) == 1
    # PoseTrack frames marked is_labeled=false are not labels.
    got = attach(
        CocoImage(1, f"{name}/000001.png"), CocoImage(2, f"{name}/000002.png", labeled=False)
    )
    assert got.frames == {folder.rel_path: [1]}
    # Nothing matches: an error naming the file.
    with pytest.raises(LabelMatchError, match="no labelled person matches"):
        attach(CocoImage(1, "nosuchvideo/000001.png"), skip_bad=True)
    # A results file cannot name frames.
    (tmp_path / "results.json").write_text(json.dumps([]))
    with pytest.raises(CocoFormatError, match="no image file names"):
        attach_labels(index, tmp_path / "results.json")


def test_two_videos_of_one_name_are_told_apart_by_their_folders(exported, tmp_path):
    root = tmp_path / "root"
    first = exported / "videos" / "synth_00000"
    shutil.copytree(first, root / "a" / "walk")
    shutil.copytree(first, root / "b" / "walk")
    index = index_videos(root)
    path = _labels(tmp_path / "l.json", [CocoImage(1, "data/b/walk/000005.png")])
    got = attach_labels(index, path, directory=tmp_path / "ann")
    assert got.frames == {"b/walk": [5]}
    path = _labels(tmp_path / "l.json", [CocoImage(1, "walk/000005.png")])
    with pytest.raises(LabelMatchError, match="matches 2 videos equally well"):
        attach_labels(index, path, directory=tmp_path / "ann")


def test_tracks_from_track_ids_else_from_order_in_the_image(exported, tmp_path):
    index = index_videos(exported / "videos")
    name = Path(index.videos[0].rel_path).name
    kp = np.stack([np.arange(17.0) + 20, 2 * np.arange(17.0) + 10], -1)  # box: their extent
    images = [CocoImage(1, f"{name}/000001.png"), CocoImage(2, f"{name}/000002.png")]

    def person(image, x, track=None):
        return CocoPerson(image, kp + x, np.full(17, 2), track_id=track)

    people = [person(1, 0, 7), person(1, 5, 3), person(2, 9, 7)]
    got = attach_labels(
        index, _labels(tmp_path / "l.json", images, people), directory=tmp_path / "a"
    )
    ann = load_annotation(got.entries[0].annotation, got.entries[0].num_frames)
    assert ann.track_ids.tolist() == [3, 7]
    # Track 7 in frame 2: its right hip (COCO joint 12, ours 1) is (20 + 12, 10 + 24) + 9.
    assert ann.keypoints_2d[1, 2, 1].tolist() == [41.0, 43.0]
    np.testing.assert_allclose(ann.boxes[0, 1], [25, 15, 41, 47])  # track 3's joints' extent
    assert ann.present.tolist()[0][:3] == [False, True, False]
    people = [person(1, 0), person(1, 5), person(2, 9)]
    got = attach_labels(
        index, _labels(tmp_path / "m.json", images, people), directory=tmp_path / "b"
    )
    ann = load_annotation(got.entries[0].annotation, got.entries[0].num_frames)
    assert ann.num_persons == 2 and ann.present[1].sum() == 1


def test_labelled_videos_are_split_among_themselves(exported, tmp_path):
    index = index_videos(exported / "videos")
    labels = attach_labels(index, exported / "labels.json", directory=tmp_path / "ann")
    fixed = split_by_video(labels.entries, 0.15)
    labelled = [v for v in fixed if v.labeled]
    assert [v.manifest_split for v in labelled].count("val") == 1  # round(0.9) = 1
    assert {v.manifest_split for v in fixed} <= {"train", "val"}
    # The same video keeps its split when the labels file changes around it.
    again = split_by_video(labels.entries[:-1], 0.15)
    assert [v.manifest_split for v in again] == [v.manifest_split for v in fixed[:-1]]


def test_datamodule_pretrains_on_every_video_and_probes_on_the_labels(exported):
    dm = VideoDataModule(
        exported / "videos", mode="contrastive", size=32, batch_size=2, num_workers=0,
        labels=exported / "labels.json", store=True, backend="pyav",
        sampling={"d_neg": 10, "gt_max": 6},
    )  # fmt: skip
    dm.setup()
    train = dm.index.split("train", dm.val_fraction)
    assert len(train) + len(dm.index.split("val", dm.val_fraction)) == 12
    assert len(dm.train_set.videos) == len(train) and not dm.train_set.annotations
    assert all(v.annotation is None for v in dm.train_set.videos)  # whole frames, every video
    probe = dm.probe_dataloader("train").dataset
    assert {v.rel_path for v in probe.videos if v.labeled} <= set(dm.labels.frames)
    assert len(probe) == sum(
        len(dm.labels.frames[v.rel_path]) for v in probe.videos if v.labeled
    )  # probe_stride 4 keeps every labelled frame (0, 4, ...)
    assert dm.has_labels("val")
    # The labelled crops and the whole-frame crops of the same videos are two stores.
    assert probe.store.directory != dm.train_set.store.directory
    batch = next(iter(dm.probe_dataloader("train")))
    assert batch["visibility"].sum() > 0


def test_boxes_file_gives_pretraining_person_crops(source, exported, tmp_path):
    index = index_videos(exported / "videos")
    entries, problems = attach_boxes(index, exported / "boxes.json", directory=tmp_path / "b")
    assert not problems and all(v.annotation is not None for v in entries)
    originals = {Path(v.rel_path).stem: v for v in index_videos(source).videos}
    for entry in entries[:3]:
        mine = load_annotation(entry.annotation, entry.num_frames)
        truth = load_annotation(originals[entry.rel_path].annotation, entry.num_frames)
        assert mine.visibility.sum() == 0 and mine.present.all()
        np.testing.assert_allclose(mine.boxes, truth.boxes, atol=1e-3)
    # Low scores are dropped; a results list (no images) is refused with the reason.
    with pytest.raises(LabelMatchError, match=r"no person box \(score >= 2"):
        attach_boxes(index, exported / "boxes.json", min_score=2.0, directory=tmp_path / "c")
    (tmp_path / "dets.json").write_text(json.dumps([{"image_id": 0, "bbox": [0, 0, 5, 5]}]))
    with pytest.raises(CocoFormatError, match="name no video frames"):
        attach_boxes(index, tmp_path / "dets.json")
    dm = VideoDataModule(
        exported / "videos", mode="contrastive", size=32, batch_size=2, num_workers=0,
        labels=exported / "labels.json", boxes=exported / "boxes.json", store=True,
        backend="pyav", sampling={"d_neg": 10, "gt_max": 6},
    )  # fmt: skip
    dm.setup()
    assert len(dm.train_set.annotations) == len(dm.train_set.videos)  # every video boxed
    # Splits do not depend on the boxes.
    assert [v.manifest_split for v in dm.index.videos] == [
        v.manifest_split for v in dm.label_index.videos
    ]
    batch = next(iter(dm.train_dataloader()))
    assert batch["frames"].shape[-2:] == (32, 32)


def test_inspect_names_each_label_that_fits_no_frame(exported, tmp_path, capsys):
    name = "synth_00000"
    path = _labels(
        tmp_path / "labels.json",
        [CocoImage(1, f"{name}/000003.png"), CocoImage(2, f"{name}/000077.png"),
         CocoImage(3, "gone/000001.png")],
    )  # fmt: skip
    assert cli(["inspect", str(exported / "videos"), str(path)]) == 1
    out = capsys.readouterr().out
    assert "1 labelled people in 1 frames of 1 video(s) (of 12); 2 record(s) left out" in out
    problems = [line for line in out.splitlines() if line.startswith("  problem:")]
    assert len(problems) == 2
    assert "image 2 (synth_00000/000077.png)" in problems[0] and "has no image" in problems[0]
    assert "image 3 (gone/000001.png): no video named 'gone'" in problems[1]
    assert out.strip().endswith("unusable: see the problem lines")


def test_walkthrough_end_to_end(exported, tmp_path, capsys):
    """docs/own_data.md's walkthrough: inspect, pretrain, head with the COCO labels, predict,
    and the keypoints written by predict read back through the COCO reader."""
    videos, labels, boxes = (exported / n for n in ("videos", "labels.json", "boxes.json"))
    assert cli(["inspect", str(videos), str(labels), str(boxes)]) == 0
    out = capsys.readouterr().out
    assert "36 labelled people in 36 frames of 6 video(s) (of 12); 0 record(s) left out" in out
    assert "person boxes for 12 video(s) (of 12); 0 record(s) left out" in out

    pre = tmp_path / "pretrain"
    train_main(
        tiny_overrides(videos, pre, **{"data.labels": str(labels), "data.boxes": str(boxes),
                                       "trainer.max_epochs": 1, "images.every_n_epochs": 5})
    )  # fmt: skip
    out = capsys.readouterr().out
    assert f"labels {labels} (coco17): 36 people in 36 frames of 6 video(s), of 12" in out
    assert "with data.labels the online probe and best.ckpt are off" in out

    head = tmp_path / "head"
    args = {"ckpt": pre / "checkpoints" / "last.ckpt", "epochs": 3, "batch_size": 8,
            "label_fraction": 0.5, "num_images": 2, "logger.wandb.enabled": False,
            "device": "cpu", "run_dir": head}  # fmt: skip
    result = train_head([f"{k}={v}" for k, v in args.items()])
    choice = json.loads((head / "labelled_frames.json").read_text())
    assert choice["labels"] == str(labels) and len(choice["frames"]) == result["n_labeled"] > 0
    assert all(frame % 4 == 0 for _, frame, _ in choice["frames"])
    # The same frames again, from the saved choice, whatever the fraction says.
    again = train_head(
        [f"{k}={v}" for k, v in {**args, "run_dir": tmp_path / "again", "label_fraction": 1.0,
                                 "label_frames": head}.items()]
    )  # fmt: skip
    assert (
        json.loads((tmp_path / "again" / "labelled_frames.json").read_text())["frames"]
        == (choice["frames"])
    )
    assert again["n_labeled"] == result["n_labeled"]
    # A linear probe of the same checkpoint on the same frames (2D: COCO labels have no 3D).
    probe = probe_main([f"ckpt={args['ckpt']}", "target=2d", "epochs=2", "device=cpu",
                        f"label_frames={head}", "logger.wandb.enabled=false",
                        f"run_dir={tmp_path / 'probe'}"])  # fmt: skip
    assert probe["n_labeled"] == result["n_labeled"] and "pck" in probe["metrics"]
    assert (tmp_path / "probe" / "labelled_frames.json").is_file()
    capsys.readouterr()

    pred = tmp_path / "pred"
    video = videos / "synth_00001"
    code = cli(["predict", "--model", str(head / "head.pt"), "--video", str(video),
                "--out", str(pred), "--layout", "coco17", "--show", "2"])  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    read = read_coco(pred / "keypoints.json", layout="coco17")
    assert len(read.people) == 24 and (pred / "overlay.mp4").stat().st_size > 0
    printed = re.findall(r"frame (\d+): person.*\n((?:  \S+ +\S+ +\S+ +\S+\n?){17})", out)
    assert len(printed) == 2, out
    for (frame, table), person in zip(printed, read.people, strict=False):
        rows = [line.split() for line in table.strip().splitlines()]
        assert int(frame) == person.image_id
        assert [r[0] for r in rows] == list(read.layout.joints)
        values = np.array([[float(x) for x in r[1:]] for r in rows])
        np.testing.assert_allclose(values[:, :2], person.keypoints, atol=0.006)
        np.testing.assert_allclose(values[:, 2], person.scores, atol=0.0006)
        # The joints COCO has and the model lacks (eyes, ears, nose) are written with score 0.
        assert (person.scores[:5] == 0).all() and (person.scores[5:] != 0).all()


def test_joints_never_labelled_are_not_predicted(exported, tmp_path):
    """A model trained on COCO-17 labels has never seen css_pose's pelvis, spine, thorax,
    neck/nose or head top: predict reports them with score 0 and does not draw them."""
    from css_pose.predict import run_predict

    pre = tmp_path / "pre"
    train_main(tiny_overrides(exported / "videos", pre, **{
        "data.labels": str(exported / "labels.json"), "trainer.max_epochs": 1,
        "images.every_n_epochs": 5}))  # fmt: skip
    head = tmp_path / "head"
    train_head([f"ckpt={pre / 'checkpoints' / 'last.ckpt'}", "epochs=1", "num_images=0",
                "label_fraction=1.0", "logger.wandb.enabled=false", "device=cpu",
                f"run_dir={head}"])  # fmt: skip
    payload = torch.load(head / "head.pt", weights_only=True)
    untrained = ["pelvis", "spine", "thorax", "neck", "head"]  # css_pose.skeleton's names
    assert [n for n, t in zip(payload["joints"], payload["trained_joints"]) if not t] == untrained
    meta = run_predict(head / "head.pt", exported / "videos" / "synth_00001", tmp_path / "p",
                       progress=False)  # fmt: skip
    assert meta["untrained_joints"] == untrained
    people = json.loads((tmp_path / "p" / "keypoints.json").read_text())
    for entry in people:
        kps = np.asarray(entry["keypoints"]).reshape(17, 3)
        untrained_rows = kps[[payload["joints"].index(n) for n in untrained]]
        trained = [j for j, t in enumerate(payload["trained_joints"]) if t]
        assert (untrained_rows == 0).all() and (kps[trained, :2] != 0).any(1).all()
