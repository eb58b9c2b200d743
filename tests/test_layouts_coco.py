"""Named skeleton layouts, conversion by joint name, and the COCO keypoints reader and writer on
small files written here (well-formed and malformed)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from css_pose import skeleton
from css_pose.data.coco import (
    CocoFormatError,
    CocoImage,
    CocoPerson,
    layout_from_names,
    read_coco,
    write_coco,
)
from css_pose.layouts import (
    LAYOUTS,
    LIMB_JOINTS,
    LayoutMismatchError,
    check_layout,
    convert,
    get_layout,
    joint_map,
)


def test_layouts_have_their_datasets_joint_counts_and_mirror_cleanly():
    counts = {"h36m17": 17, "coco17": 17, "mpii16": 16, "jhmdb15": 15, "penn13": 13}
    counts["posetrack18"] = 17
    assert {k: len(v) for k, v in LAYOUTS.items()} == counts
    for layout in LAYOUTS.values():
        perm = layout.flip_permutation()
        assert (perm[perm] == np.arange(len(layout))).all()  # an involution
        assert len(layout.flip_pairs) == sum(n.startswith("l_") for n in layout.joints)
        for a, b in layout.flip_pairs:
            assert layout.joints[a][2:] == layout.joints[b][2:]
        assert set(LIMB_JOINTS) <= set(layout.joints), layout.name
    # Human3.6M is css_pose's own skeleton, in the same order and with the same mirror.
    h36m = get_layout("h36m17")
    assert (h36m.flip_permutation() == skeleton.flip_permutation()).all()
    assert h36m.joints[skeleton.JOINT_NAMES.index("head")] == "head_top"
    assert h36m.joints[skeleton.JOINT_NAMES.index("neck")] == "neck_nose"
    # JHMDB's neck (the neck's base) is not Human3.6M's neck (near the nose): no conversion.
    assert joint_map("jhmdb15", "h36m17")[skeleton.JOINT_NAMES.index("neck")] == -1
    # File positions of a few joints, as each dataset documents them.
    assert get_layout("coco17").index("l_wrist") == 9
    assert (
        get_layout("mpii16").index("head_top") == 9 and get_layout("mpii16").index("r_ankle") == 0
    )
    assert get_layout("jhmdb15").index("neck") == 0 and get_layout("jhmdb15").index("l_ankle") == 14
    assert get_layout("penn13").index("head") == 0 and get_layout("penn13").index("r_ankle") == 12
    assert get_layout("posetrack18").index("head_top") == 2
    assert get_layout("coco17").sigmas[0] == 0.026 and get_layout("mpii16").sigmas is None


def test_unknown_layout_and_joint_are_named():
    with pytest.raises(KeyError, match="unknown skeleton layout 'openpose'; known: h36m17"):
        get_layout("openpose")
    with pytest.raises(KeyError, match="COCO-17 has no joint 'pelvis'"):
        get_layout("coco17").index("pelvis")


def test_coco_to_h36m_to_coco_keeps_the_shared_joints_exactly():
    rng = np.random.default_rng(0)
    kp = rng.uniform(0, 640, (4, 17, 2))
    vis = rng.integers(0, 3, (4, 17)).astype(np.float32)
    h36m_kp, h36m_vis = convert(kp, vis, "coco17", "h36m17")
    coco = get_layout("coco17")
    h36m = get_layout("h36m17")
    for name in h36m.joints:  # joints COCO lacks are invisible and NaN: never invented
        j = h36m.index(name)
        if name not in coco.joints:
            assert (h36m_vis[:, j] == 0).all() and np.isnan(h36m_kp[:, j]).all(), name
    back_kp, back_vis = convert(h36m_kp, h36m_vis, "h36m17", "coco17")
    shared = [coco.index(n) for n in LIMB_JOINTS]
    assert np.array_equal(back_kp[:, shared], kp[:, shared])
    assert np.array_equal(back_vis[:, shared], vis[:, shared])
    face = [coco.index(n) for n in ("nose", "l_eye", "r_eye", "l_ear", "r_ear")]
    assert (back_vis[:, face] == 0).all() and np.isnan(back_kp[:, face]).all()
    # MPII's head top is Human3.6M's head joint; its upper neck has no counterpart.
    index = joint_map("mpii16", "h36m17")
    assert index[h36m.index("head_top")] == get_layout("mpii16").index("head_top")
    assert index[h36m.index("neck_nose")] == -1
    # 3D works the same way.
    kp3, _ = convert(rng.normal(size=(2, 17, 3)), None, "h36m17", "penn13")
    assert kp3.shape == (2, 13, 3) and np.isnan(kp3[:, 0]).all()  # Penn's head: the centre


def test_layout_mismatch_names_both_layouts_and_the_converter():
    check_layout("coco17", "coco17", "x.json")
    check_layout(None, "h36m17", "old_model.pt")  # files from before layouts: the canonical one
    with pytest.raises(LayoutMismatchError) as err:
        check_layout("coco17", "h36m17", "runs/lift/lifter.pt")
    text = str(err.value)
    for part in ("runs/lift/lifter.pt", "COCO-17", "Human3.6M-17", "convert(", "'coco17'"):
        assert part in text, text
    with pytest.raises(LayoutMismatchError, match="not MPII-16"):
        convert(np.zeros((3, 17, 2)), None, "mpii16", "h36m17")


def _people(layout, n_images=3, seed=0):
    rng = np.random.default_rng(seed)
    images = [CocoImage(i + 10, f"video_a/{i:06d}.jpg", 320, 240, i, "a") for i in range(n_images)]
    people = []
    for im in images:
        for track in range(2):
            vis = rng.integers(0, 3, len(layout))
            kp = np.round(rng.uniform(0, 200, (len(layout), 2)), 3)
            box = np.array([5.0, 6.0, 100.5, 150.25])
            people.append(CocoPerson(im.id, kp, vis, box, track_id=track, id=len(people) + 1))
    return images, people


@pytest.mark.parametrize("name", ["coco17", "posetrack18", "h36m17"])
def test_coco_annotations_round_trip(tmp_path, name):
    layout = get_layout(name)
    images, people = _people(layout)
    path = tmp_path / "labels.json"
    write_coco(path, layout, images, people)
    assert "left_wrist" in json.loads(path.read_text())["categories"][0]["keypoints"]
    got = read_coco(path)
    assert got.layout.name == name and not got.problems and not got.is_results
    assert sorted(got.images) == [10, 11, 12] and got.images[11].frame == 1
    assert got.images[11].file_name == "video_a/000001.jpg" and got.images[11].video == "a"
    assert len(got.people) == len(people)
    for a, b in zip(got.people, people, strict=True):
        assert a.image_id == b.image_id and a.track_id == b.track_id
        assert np.array_equal(a.visibility, b.visibility)
        labelled = b.visibility > 0
        assert np.allclose(a.keypoints[labelled], b.keypoints[labelled], atol=1e-3)
        assert (a.keypoints[~labelled] == 0).all()  # COCO writes unlabelled joints as 0, 0, 0
        assert np.allclose(a.box, b.box)
    assert {k: len(v) for k, v in got.by_image().items()} == {10: 2, 11: 2, 12: 2}


def test_posetrack_2018_file_reads_with_frames_tracks_and_unlabelled_frames(tmp_path):
    """The fields PoseTrack 2018 adds to COCO: frame folders, vid_id, frame_id, is_labeled,
    track_id, and its joint names (head_bottom, head_top; ears present but never annotated)."""
    names = ["nose", "head_bottom", "head_top", "left_ear", "right_ear", "left_shoulder",
             "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
             "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle"]  # fmt: skip
    kps = [[10.0 + j, 20.0 + j, 0 if j in (3, 4) else 1] for j in range(17)]
    data = {
        "images": [
            {"id": 10000010000 + i, "file_name": f"images/val/000342_mpii_test/{i:06d}.jpg",
             "frame_id": 10000010000 + i, "vid_id": "000342", "is_labeled": i % 2 == 0}
            for i in range(4)
        ],
        "annotations": [
            {"id": 1, "image_id": 10000010000, "category_id": 1, "track_id": 0,
             "keypoints": [v for k in kps for v in k], "bbox": [5, 6, 50, 90]},
            {"id": 2, "image_id": 10000010002, "category_id": 1, "track_id": 3,
             "keypoints": [v for k in kps for v in k], "bbox": [5, 6, 50, 90]},
        ],
        "categories": [{"id": 1, "name": "person", "keypoints": names, "skeleton": []}],
    }  # fmt: skip
    path = tmp_path / "000342_mpii_test.json"
    path.write_text(json.dumps(data))
    got = read_coco(path)
    assert got.layout.name == "posetrack18" and len(got.images) == 4
    assert [im.labeled for im in got.images.values()] == [True, False, True, False]
    assert {im.video for im in got.images.values()} == {"000342"}
    assert [p.track_id for p in got.people] == [0, 3]
    person = got.people[0]
    assert person.visibility[3] == 0 and person.visibility[2] == 1
    assert person.keypoints[2].tolist() == [12.0, 22.0]
    # To css_pose's skeleton: the limb joints and the head top; the nose and head bottom drop.
    h36m_kp, h36m_vis = convert(person.keypoints, person.visibility, got.layout, "h36m17")
    h36m = get_layout("h36m17")
    assert h36m_kp[h36m.index("head_top")].tolist() == [12.0, 22.0]
    assert h36m_vis[h36m.index("neck_nose")] == 0
    write_coco(tmp_path / "again.json", got.layout, got.images.values(), got.people)
    again = read_coco(tmp_path / "again.json")
    assert [im.labeled for im in again.images.values()] == [True, False, True, False]


def test_results_file_needs_its_layout(tmp_path):
    path = tmp_path / "keypoints.json"
    kps = np.concatenate([np.arange(34.0).reshape(17, 2), np.full((17, 1), 0.5)], axis=1)
    kps[3, 2] = 0.0
    path.write_text(
        json.dumps(
            [
                {
                    "image_id": 4,
                    "category_id": 1,
                    "keypoints": kps.reshape(-1).tolist(),
                    "score": 0.7,
                    "bbox": [1, 2, 3, 4],
                }
            ]
        )  # fmt: skip
    )
    with pytest.raises(CocoFormatError, match="names no joints; pass its layout"):
        read_coco(path)
    got = read_coco(path, layout="h36m17")
    assert got.is_results and got.layout.name == "h36m17"
    (person,) = got.people
    assert person.image_id == 4 and person.score == 0.7
    assert np.array_equal(person.keypoints, kps[:, :2]) and person.scores[3] == 0
    assert person.visibility[3] == 0 and person.visibility[2] == 2


def _good_file() -> dict:
    return {
        "images": [{"id": 1, "file_name": "f1.jpg"}, {"id": 2, "file_name": "f2.jpg"}],
        "annotations": [
            {"id": 7, "image_id": 1, "category_id": 1, "keypoints": [1.0, 2.0, 2] * 17},
            {"id": 8, "image_id": 2, "category_id": 1, "keypoints": [3.0, 4.0, 1] * 17},
        ],
        "categories": [{"id": 1, "name": "person", "keypoints": list(get_layout("coco17").joints)}],
    }


@pytest.mark.parametrize(
    ("break_it", "message"),
    [
        (lambda d: d["annotations"][0].pop("keypoints"), "annotations[0] (id 7): field 'keypoints' is missing"),
        (lambda d: d["annotations"][0].update(keypoints=[1.0] * 50), "field 'keypoints' has 50 numbers, expected 51"),
        (lambda d: d["annotations"][0]["keypoints"].__setitem__(3, float("nan")), "field 'keypoints' holds NaN"),
        (lambda d: d["annotations"][0].update(image_id=99), "image_id 99 has no entry in 'images'"),
        (lambda d: d["annotations"][0]["keypoints"].__setitem__(2, 5), "visibility flags other than 0, 1, 2"),
        (lambda d: d["annotations"][0].update(bbox=[1, 2, 3]), "field 'bbox' has 3 numbers, expected 4"),
        (lambda d: d["images"][0].pop("file_name"), "images[0] (id 1): field 'file_name' is missing"),
    ],
)  # fmt: skip
def test_malformed_records_name_file_record_and_field(tmp_path, break_it, message):
    data = _good_file()
    break_it(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))  # json writes NaN as the bare token NaN, as some tools do
    with pytest.raises(CocoFormatError) as err:
        read_coco(path)
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value), err.value
    # With skip_bad the record is left out, the problem listed, and the rest loaded (a skipped
    # image takes its people with it, one more line).
    got = read_coco(path, skip_bad=True)
    assert message in got.problems[0] and len(got.problems) <= 2
    assert len(got.people) == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not readable as JSON"),
        ('{"images": [], "annotations": []}', "top-level field 'categories' is missing"),
        ('{"images": [], "annotations": [], "categories": [{"id": 3}]}', "no person category"),
        ('"text"', "top level is str"),
    ],
)
def test_malformed_files_are_named(tmp_path, content, message):
    path = tmp_path / "file.json"
    path.write_text(content)
    with pytest.raises(CocoFormatError, match=message):
        read_coco(path)
    with pytest.raises(CocoFormatError, match="no such file"):
        read_coco(tmp_path / "missing.json")


def test_layout_comes_from_the_joint_names(tmp_path):
    names = [
        "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder",
        "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip",
        "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
    ]  # fmt: skip
    assert layout_from_names(names).name == "coco17"
    with pytest.raises(CocoFormatError, match="no known skeleton layout has the joints"):
        layout_from_names(names[::-1])
    path = tmp_path / "coco.json"
    path.write_text(json.dumps(_good_file()))
    with pytest.raises(CocoFormatError, match=r"its joints are COCO-17 \(coco17\), not MPII-16"):
        read_coco(path, layout="mpii16")


def test_writer_refuses_keypoints_of_another_layout(tmp_path):
    images, people = _people(get_layout("mpii16"), n_images=1)
    with pytest.raises(ValueError, match="are not COCO-17"):
        write_coco(tmp_path / "x.json", "coco17", images, people)
    assert not list(tmp_path.iterdir())  # nothing half-written


def _mpii_record(image="015601864.jpg", seed=0) -> dict:
    rng = np.random.default_rng(seed)
    joints = rng.uniform(10, 400, (16, 2))
    joints[9] = -1  # an unlabelled head top, as MPII writes it
    vis = np.ones(16)
    vis[9] = 0
    return {"image": image, "center": [200.5, 180.0], "scale": 2.1,
            "joints": joints.tolist(), "joints_vis": vis.tolist()}  # fmt: skip


def test_mpii_json_reads_and_converts(tmp_path):
    from css_pose.data.mpii import read_mpii_json

    records = [_mpii_record(), _mpii_record("000001163.jpg", seed=1)]
    path = tmp_path / "mpii_val.json"
    path.write_text(json.dumps(records))
    got = read_mpii_json(path)
    assert got.layout.name == "mpii16" and len(got.people) == 2 and not got.problems
    person = got.people[0]
    assert person.image == "015601864.jpg" and person.scale == 2.1
    assert person.visibility[9] == 0 and (person.keypoints[9] == 0).all()
    r_ankle = get_layout("mpii16").index("r_ankle")
    assert np.allclose(person.keypoints[r_ankle], records[0]["joints"][r_ankle])
    kp, vis = convert(person.keypoints, person.visibility, got.layout, "h36m17")
    h36m = get_layout("h36m17")
    assert vis[h36m.index("head_top")] == 0 and vis[h36m.index("pelvis")] == 1
    assert np.allclose(kp[h36m.index("r_ankle")], records[0]["joints"][r_ankle])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r.pop("image"), "[0]: field 'image' is missing"),
        (lambda r: r.update(joints=r["joints"][:15]), "[0] (015601864.jpg): field 'joints' is missing or not 16"),
        (lambda r: r.update(joints_vis=[1] * 3), "field 'joints_vis' is missing or not 16 numbers"),
        (lambda r: r["joints"][2].__setitem__(0, float("nan")), "field 'joints' holds NaN"),
        (lambda r: r.update(scale=-1), "field 'scale' is -1, not a positive number"),
    ],
)  # fmt: skip
def test_malformed_mpii_records_are_named(tmp_path, change, message):
    from css_pose.data.mpii import MpiiFormatError, read_mpii_json

    bad = _mpii_record()
    change(bad)
    path = tmp_path / "mpii.json"
    path.write_text(json.dumps([bad, _mpii_record("ok.jpg", 2)]))
    with pytest.raises(MpiiFormatError) as err:
        read_mpii_json(path)
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value), err.value
    got = read_mpii_json(path, skip_bad=True)
    assert [p.image for p in got.people] == ["ok.jpg"] and len(got.problems) == 1
