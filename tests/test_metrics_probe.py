"""The probe's metrics and augmentation: body frame, the one PCK, the mean baseline, flips.

Values checked against hand computations (definitions: docs/metrics.md).
"""

import math

import pytest
import torch

from css_pose.methods.callbacks import ridge_probe, score_probe
from css_pose.metrics import body_frame, mpjpe, pck, pck_tight, root_relative, tight_box_size
from css_pose.probe.model import compute_metrics, mirror_frame_batch, targets_of
from css_pose.skeleton import flip_permutation


def random_rotations(n: int, gen: torch.Generator) -> torch.Tensor:
    """(n, 3, 3) rotations (det +1) from QR of Gaussian matrices."""
    q, r = torch.linalg.qr(torch.randn(n, 3, 3, generator=gen, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))[:, None, :]
    return q * torch.linalg.det(q)[:, None, None]


def random_poses(n: int, gen: torch.Generator) -> torch.Tensor:
    """(n, 17, 3) root-relative poses, mm, hips well apart."""
    pose = 200 * torch.randn(n, 17, 3, generator=gen, dtype=torch.float64)
    pose[:, 1] = pose[:, 0] + torch.tensor([-120.0, 0, 0], dtype=torch.float64)
    pose[:, 4] = pose[:, 0] + torch.tensor([120.0, 0, 0], dtype=torch.float64)
    return root_relative(pose)


def test_body_frame_of_a_hand_made_pose():
    pose = torch.zeros(17, 3)
    pose[1] = torch.tensor([0.0, 0, 100])  # r_hip
    pose[4] = torch.tensor([0.0, 0, -100])  # l_hip: x axis = (0, 0, -1)
    pose[8] = torch.tensor([0.0, -500, 50])  # thorax: its x part drops, y axis = (0, -1, 0)
    pose[5] = torch.tensor([10.0, 20, 30])  # l_knee
    # z = x cross y = (0, 0, -1) x (0, -1, 0) = (-1, 0, 0); a joint p -> (-p_z, -p_y, -p_x).
    out = body_frame(pose + torch.tensor([7.0, 8, 9]))  # any root offset is removed first
    expected = {1: (-100, 0, 0), 4: (100, 0, 0), 8: (-50, 500, 0), 5: (-30, -20, -10), 0: (0, 0, 0)}
    for j, xyz in expected.items():
        torch.testing.assert_close(out[j], torch.tensor(xyz, dtype=torch.float32))


def test_body_frame_ignores_rotation_and_keeps_shape():
    gen = torch.Generator().manual_seed(0)
    pose = random_poses(8, gen)
    rot = random_rotations(8, gen)
    rotated = torch.einsum("bxy,bjy->bjx", rot, pose)
    torch.testing.assert_close(body_frame(rotated), body_frame(pose))
    # A rigid change of frame keeps every distance: MPJPE to the input's own frame is 0 only
    # through the rotation, and bone lengths are unchanged.
    out = body_frame(pose)
    torch.testing.assert_close(out.norm(dim=-1), pose.norm(dim=-1))
    # Axes in body coordinates: l_hip - r_hip on +x, thorax in the x-y plane with y >= 0.
    x = out[:, 4] - out[:, 1]
    assert torch.allclose(x[:, 1:], torch.zeros(8, 2, dtype=x.dtype), atol=1e-9)
    assert (x[:, 0] > 0).all()
    assert torch.allclose(out[:, 8, 2], torch.zeros(8, dtype=x.dtype), atol=1e-9)
    assert (out[:, 8, 1] >= 0).all()


def test_body_frame_axes_are_orthonormal_and_right_handed():
    gen = torch.Generator().manual_seed(1)
    pose = random_poses(16, gen)
    # The frame's axes are the images of the body-frame unit vectors: solve out = pose @ A^T.
    axes = torch.linalg.lstsq(pose, body_frame(pose)).solution.transpose(1, 2)  # (B, 3, 3)
    eye = torch.eye(3, dtype=pose.dtype).expand(16, 3, 3)
    torch.testing.assert_close(axes @ axes.transpose(1, 2), eye)
    torch.testing.assert_close(torch.linalg.det(axes), torch.ones(16, dtype=pose.dtype))


def test_body_frame_of_degenerate_poses_is_finite():
    gen = torch.Generator().manual_seed(2)
    pose = random_poses(3, gen)
    pose[0, 4] = pose[0, 1]  # hips coincide
    pose[1, 8] = 3 * (pose[1, 4] - pose[1, 1])  # spine along the hips
    pose[2] = 0  # an unlabeled frame: all zeros
    out = body_frame(pose)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.norm(dim=-1), pose.norm(dim=-1))
    assert torch.equal(out[2], torch.zeros(17, 3, dtype=pose.dtype))


def test_pck_tight_uses_the_visible_joints_box():
    gt = torch.tensor([[[0.0, 0], [20, 10], [100, 100]]])
    vis = torch.tensor([[True, True, False]])
    assert tight_box_size(gt, vis).tolist() == [[20.0, 10.0]]
    # Reference 20 px: errors 1.9, 2.1 (and a huge one on the hidden joint, ignored).
    pred = gt + torch.tensor([[[1.9, 0], [0, 2.1], [50, 50]]])
    assert pck_tight(pred, gt, vis, alpha=0.1).item() == pytest.approx(0.5)
    assert pck_tight(pred, gt, vis, alpha=0.2).item() == pytest.approx(1.0)
    box = torch.tensor([[20.0, 10.0]])
    assert pck_tight(pred, gt, vis, 0.1).item() == pck(pred, gt, vis, box, 0.1).item()


def _fake_probe_set(n_videos: int = 6, per_video: int = 10, seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    n = n_videos * per_video
    kp3 = random_poses(n, gen).float()
    kp2 = 32 + 20 * torch.rand(n, 17, 2, generator=gen)
    vis = (torch.rand(n, 17, generator=gen) > 0.2).float()
    return {
        "keypoints_3d": kp3,
        "keypoints_2d": kp2,
        "visibility": vis,
        "video_idx": torch.arange(n_videos).repeat_interleave(per_video),
    }


def test_online_and_linear_probe_score_the_same_pck():
    gen = torch.Generator().manual_seed(3)
    data = _fake_probe_set()
    gt2, vis = data["keypoints_2d"], data["visibility"]
    pred2 = gt2 + 4 * torch.randn(gt2.shape, generator=gen)
    kp3 = root_relative(data["keypoints_3d"])
    pred = {"kp2d": pred2, "kp3d": kp3, "body3d": body_frame(kp3)}
    gt = {"kp2d": gt2, "kp3d": kp3, "body3d": body_frame(kp3), "visibility": vis}
    for alpha in (0.1, 0.2):
        online = score_probe(pred, gt, alpha)["pck"]
        linear = compute_metrics(pred2, gt2, vis.bool(), "2d", pck_alpha=alpha)
        assert online == linear["pck"] == linear[f"pck@{alpha:g}"]
        assert 0.05 < online < 0.95  # a discriminating case, not all right or all wrong
    assert compute_metrics(pred2, gt2, vis.bool(), "2d")["pck"] == linear["pck@0.1"]


def test_online_probe_reports_every_metric_beside_the_mean_baseline():
    data = _fake_probe_set(per_video=80)  # more fitting frames than oracle feature dimensions
    # A feature that holds the answer, and one that holds nothing.
    kp3 = root_relative(data["keypoints_3d"])
    data["feat/oracle"] = torch.cat([data["keypoints_2d"].flatten(1), kp3.flatten(1)], dim=1)
    data["feat/oracle"] = torch.cat([data["feat/oracle"], body_frame(kp3).flatten(1)], dim=1)
    data["feat/noise"] = torch.randn(len(data["video_idx"]), 8)
    res = ridge_probe(data, alphas=[1e-3, 1.0], pck_alpha=0.1)
    metrics = ("pck", "mpjpe", "body_mpjpe", "pmpjpe")
    assert set(res) == {f"{f}_{m}" for f in ("mean", "oracle", "noise") for m in metrics}
    assert all(math.isfinite(v) for v in res.values())
    assert res["oracle_pck"] > 0.99 and res["oracle_mpjpe"] < 1 and res["oracle_body_mpjpe"] < 1
    assert res["mean_pck"] < 0.9 and res["mean_mpjpe"] > 100
    # The mean row is the mean fitting target scored on the held-out videos (odd ids).
    held = data["video_idx"] % 2 == 1
    mean3 = kp3[~held].mean(0, keepdim=True).expand(int(held.sum()), -1, -1)
    assert res["mean_mpjpe"] == pytest.approx(float(mpjpe(mean3, kp3[held])), rel=1e-6)
    assert res["noise_mpjpe"] > res["oracle_mpjpe"]


def _labelled_batch(b: int = 3, size: int = 24, seed: int = 0) -> dict:
    """A frame-mode batch whose crops carry, at each visible joint j, the value (j + 1) / 32."""
    gen = torch.Generator().manual_seed(seed)
    kp2 = torch.randint(0, size, (b, 17, 2), generator=gen).float()
    frames = torch.zeros(b, 3, size, size)
    vis = torch.ones(b, 17)
    for i in range(b):
        taken = set()
        for j in range(17):
            x, y = int(kp2[i, j, 0]), int(kp2[i, j, 1])
            if (x, y) in taken:  # two joints on one pixel: hide the second
                vis[i, j] = 0
                continue
            taken.add((x, y))
            frames[i, :, y, x] = (j + 1) / 32
    return {
        "frames": frames,
        "keypoints_2d": kp2,
        "visibility": vis,
        "keypoints_3d": random_poses(b, gen).float(),
        "has_labels": torch.ones(b, dtype=torch.bool),
        "video_idx": torch.arange(b),
    }


def test_mirroring_a_labelled_batch_twice_returns_it():
    batch = _labelled_batch()
    which = torch.tensor([True, False, True])
    back = mirror_frame_batch(mirror_frame_batch(batch, which), which)
    assert back.keys() == batch.keys()
    for key, value in batch.items():
        assert torch.equal(back[key], value), key
    once = mirror_frame_batch(batch, which)
    assert torch.equal(once["frames"][1], batch["frames"][1])  # not selected: unchanged
    assert not torch.equal(once["frames"][0], batch["frames"][0])


def test_mirrored_keypoints_land_on_the_mirrored_content():
    batch = _labelled_batch()
    which = torch.ones(3, dtype=torch.bool)
    out = mirror_frame_batch(batch, which)
    perm = flip_permutation()
    frames, kp2, vis = out["frames"], out["keypoints_2d"], out["visibility"]
    for i in range(3):
        for j in range(17):
            if vis[i, j]:
                x, y = int(kp2[i, j, 0]), int(kp2[i, j, 1])
                # Label j now sits on the pixel drawn for its mirror joint perm[j] (the original
                # right wrist looks like a left wrist in the mirrored crop).
                assert frames[i, 0, y, x] == (perm[j] + 1) / 32
    # 3D: x -> -x in camera coordinates, with the same left/right swap.
    kp3, kp3_m = batch["keypoints_3d"], out["keypoints_3d"]
    torch.testing.assert_close(kp3_m[:, :, 0], -kp3[:, perm, 0])
    torch.testing.assert_close(kp3_m[:, :, 1:], kp3[:, perm, 1:])
    # The mirrored body-frame target is the body frame of the mirrored pose.
    body, _ = targets_of(out, "body3d")
    torch.testing.assert_close(body, body_frame(root_relative(kp3_m)))
    # Mirroring keeps the body-frame pose up to a reflection: left-right distances agree.
    plain, _ = targets_of(batch, "body3d")
    torch.testing.assert_close(body.norm(dim=-1), plain[:, perm].norm(dim=-1))


def test_compute_metrics_keys_per_target():
    gen = torch.Generator().manual_seed(4)
    kp3 = random_poses(5, gen).float()
    mask = torch.ones(5, 17, dtype=torch.bool)
    assert set(compute_metrics(kp3, kp3, mask, "3d")) == {"mpjpe", "n_mpjpe", "p_mpjpe"}
    body = compute_metrics(body_frame(kp3) + 3.0, body_frame(kp3), mask, "body3d")
    assert body == {"body_mpjpe": pytest.approx(3 * math.sqrt(3))}
    kp2 = kp3[..., :2]
    assert set(compute_metrics(kp2, kp2, mask, "2d")) == {"pck", "pck@0.1", "pck@0.2", "px_error"}
