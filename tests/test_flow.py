"""Optical flow and warping (css_pose.flow): closed-form warps, DIS flow on analytic textures that
move by a known translation or rotation, and flow resizing for stride-s heatmaps."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from css_pose.flow import DIS_PRESETS, clip_flows, dense_flow, resize_flow, warp

torch.set_num_threads(1)

SIZE = 64
_rng = np.random.default_rng(0)
# A sum of plane waves (wavelengths 6-16 px): smooth, textured everywhere, and exactly movable.
_WAVES = 12
_DIRECTION = _rng.uniform(0, np.pi, _WAVES)
_FREQUENCY = 2 * np.pi / _rng.uniform(6, 16, _WAVES)
_PHASE = _rng.uniform(0, 2 * np.pi, _WAVES)


def texture(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 grey image of the analytic texture sampled at pattern coordinates (x, y)."""
    along = np.cos(_DIRECTION) * x[..., None] + np.sin(_DIRECTION) * y[..., None]
    value = np.sin(_FREQUENCY * along + _PHASE).sum(-1) / (1.2 * _WAVES) + 0.5
    grey = np.clip(value * 255, 0, 255).round().astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1)


def pixel_grid(size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    """(ys, xs) float64 pixel-centre coordinates of a size x size image."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    return ys, xs


def to_tensor(array: np.ndarray) -> torch.Tensor:
    """(H, W, C) numpy -> (1, C, H, W) float32 torch."""
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)[None].float()


def test_warp_integer_shift_copies_pixels_and_marks_outside_invalid():
    torch.manual_seed(0)
    src = torch.rand(2, 3, 10, 12) + 1  # no zeros, so a zeroed sample is visible
    shifts = [(3, -2), (-1, 4)]
    flow = torch.tensor(shifts, dtype=torch.float32).view(2, 2, 1, 1).expand(2, 2, 10, 12)
    out, valid = warp(src, flow)
    assert out.shape == src.shape and valid.shape == (2, 1, 10, 12) and valid.dtype == torch.bool
    for b, (dx, dy) in enumerate(shifts):
        expected = torch.zeros_like(src[b])
        expected_valid = torch.zeros(10, 12, dtype=torch.bool)
        for y in range(10):
            for x in range(12):
                if 0 <= x + dx < 12 and 0 <= y + dy < 10:
                    expected[:, y, x] = src[b, :, y + dy, x + dx]
                    expected_valid[y, x] = True
        assert torch.equal(valid[b, 0], expected_valid)
        assert torch.allclose(out[b], expected, atol=1e-5, rtol=0)
        assert out[b][:, ~expected_valid].eq(0).all()


def test_warp_subpixel_flow_is_bilinear_and_exact_on_ramps():
    # Bilinear sampling reproduces an affine image exactly, for any flow: a ramp of x in channel 0
    # and of y in channel 1 warps to (x + dx, y + dy).
    height, width = 9, 11
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=torch.float32),
        torch.arange(width, dtype=torch.float32),
        indexing="ij",
    )
    ramps = torch.stack((xs, ys))[None]
    torch.manual_seed(1)
    flow = torch.rand(1, 2, height, width) * 4 - 2
    out, valid = warp(ramps, flow)
    x, y = xs + flow[0, 0], ys + flow[0, 1]
    inside = (x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1)
    assert torch.equal(valid[0, 0], inside)
    assert torch.allclose(out[0, 0][inside], x[inside], atol=1e-5)
    assert torch.allclose(out[0, 1][inside], y[inside], atol=1e-5)
    assert out[0][:, ~inside].eq(0).all()


def test_warp_constant_subpixel_flow_matches_hand_interpolation():
    torch.manual_seed(2)
    src = torch.rand(1, 2, 8, 8) + 1
    fx, fy = 0.25, 0.5
    out, valid = warp(src, torch.tensor([fx, fy]).view(1, 2, 1, 1).expand(1, 2, 8, 8))
    s = src[0]
    expected = (
        (1 - fx) * (1 - fy) * s[:, :-1, :-1]
        + fx * (1 - fy) * s[:, :-1, 1:]
        + (1 - fx) * fy * s[:, 1:, :-1]
        + fx * fy * s[:, 1:, 1:]
    )
    assert torch.allclose(out[0, :, :-1, :-1], expected, atol=1e-5, rtol=0)
    # the last row and column sample beyond the image: zero and invalid, not blended with padding
    assert valid[0, 0, :-1, :-1].all()
    assert not valid[0, 0, -1, :].any() and not valid[0, 0, :, -1].any()
    assert out[0, :, -1, :].eq(0).all() and out[0, :, :, -1].eq(0).all()


def test_warp_non_finite_flow_is_invalid_and_zero():
    src = torch.ones(1, 1, 5, 5)
    flow = torch.zeros(1, 2, 5, 5)
    flow[0, 0, 1, 1] = float("nan")
    flow[0, 1, 2, 3] = float("inf")
    out, valid = warp(src, flow)
    assert valid.sum() == 23 and not valid[0, 0, 1, 1] and not valid[0, 0, 2, 3]
    assert out[0, 0, 1, 1] == 0 and out[0, 0, 2, 3] == 0 and torch.isfinite(out).all()


def test_warp_shape_errors_name_the_expected_shape():
    src = torch.zeros(2, 3, 8, 8)
    with pytest.raises(ValueError, match=r"\(B, 2, H, W\)"):
        warp(src, torch.zeros(2, 3, 8, 8))
    with pytest.raises(ValueError, match=r"B=2, 2, H, W"):
        warp(src, torch.zeros(1, 2, 8, 8))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        warp(torch.zeros(3, 8, 8), torch.zeros(1, 2, 8, 8))


def test_dense_flow_recovers_a_subpixel_translation():
    ys, xs = pixel_grid()
    shift = np.array([1.5, -0.75])
    prev = texture(xs, ys)
    nxt = texture(xs - shift[0], ys - shift[1])  # prev's content moved by +shift
    for preset in DIS_PRESETS:
        flow = dense_flow(prev, nxt, preset)
        assert flow.shape == (SIZE, SIZE, 2) and flow.dtype == np.float32
        interior = flow[8:-8, 8:-8]
        assert np.abs(interior - shift).max() < 0.3, preset
    # the reverse pair gives the opposite flow
    back = dense_flow(nxt, prev)[8:-8, 8:-8]
    assert np.abs(back + shift).max() < 0.3


def test_dense_flow_bad_inputs():
    frame = np.zeros((32, 32, 3), np.uint8)
    with pytest.raises(ValueError, match="fast.*medium.*ultrafast"):
        dense_flow(frame, frame, "slow")
    with pytest.raises(ValueError, match="uint8"):
        dense_flow(frame.astype(np.float32), frame)
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        dense_flow(frame[..., 0], frame[..., 0])
    with pytest.raises(ValueError, match="same size"):
        dense_flow(frame, frame[:20])
    with pytest.raises(ValueError, match="at least 12x12"):
        dense_flow(frame[:8], frame[:8])


def rotating_disc(angles: list[float], radius: float = 26) -> np.ndarray:
    """(T, SIZE, SIZE, 3) uint8 frames of a textured disc rotated by each angle (radians,
    counter-clockwise on screen, about the image centre) on a flat background."""
    ys, xs = pixel_grid()
    centre = (SIZE - 1) / 2
    disc = np.hypot(xs - centre, ys - centre) <= radius
    frames = []
    for angle in angles:
        # frame(p) = texture(R(-angle) (p - c)): pattern point q appears at c + R(angle) q
        cos, sin = math.cos(angle), math.sin(angle)
        u = cos * (xs - centre) + sin * (ys - centre)
        v = -sin * (xs - centre) + cos * (ys - centre)
        frame = texture(u, v)
        frame[~disc] = 40
        frames.append(frame)
    return np.stack(frames)


def test_clip_flows_align_a_rotating_disc_onto_the_centre_frame():
    step, radius = math.radians(4), 26
    frames = rotating_disc([k * step for k in range(-2, 3)], radius)
    flows = clip_flows(frames, offsets=(-2, -1, 0, 1, 2), preset="medium")
    assert list(flows) == [-2, -1, 0, 1, 2]
    assert flows[0].dtype == np.float32 and not flows[0].any()

    ys, xs = pixel_grid()
    centre = (SIZE - 1) / 2
    inner = np.hypot(xs - centre, ys - centre) <= 0.8 * radius
    target = to_tensor(frames[2])
    for k in (-2, -1, 1, 2):
        # true flow: pixel p of frame t is at c + R(k step) (p - c) in frame t + k
        cos, sin = math.cos(k * step), math.sin(k * step)
        true_dx = cos * (xs - centre) - sin * (ys - centre) + centre - xs
        true_dy = sin * (xs - centre) + cos * (ys - centre) + centre - ys
        error = np.hypot(flows[k][..., 0] - true_dx, flows[k][..., 1] - true_dy)[inner]
        assert np.median(error) < 0.4, k

        neighbour = to_tensor(frames[2 + k])
        warped, valid = warp(neighbour, to_tensor(flows[k]))
        mask = torch.from_numpy(inner)[None, None] & valid
        warped_error = (warped - target).abs().mean(1, keepdim=True)[mask].mean()
        unwarped_error = (neighbour - target).abs().mean(1, keepdim=True)[mask].mean()
        assert warped_error < 0.5 * unwarped_error, (k, warped_error, unwarped_error)


def test_clip_flows_checks_offsets_and_centre():
    frames = np.zeros((3, 16, 16, 3), np.uint8)
    with pytest.raises(ValueError, match=r"offsets must lie in \[-1, 1\]"):
        clip_flows(frames, offsets=(-2, 1))
    with pytest.raises(ValueError, match="centre"):
        clip_flows(frames, offsets=(1,), centre=3)
    with pytest.raises(ValueError, match=r"\(T, H, W, 3\)"):
        clip_flows(frames[0], offsets=(1,))
    assert list(clip_flows(frames, offsets=(1, 2), centre=0)) == [1, 2]


def test_resize_flow_scales_vectors_per_axis():
    flow = torch.tensor([4.0, -8.0]).view(1, 2, 1, 1).expand(2, 2, 64, 64)
    small = resize_flow(flow, (16, 32))  # (h, w): y shrinks by 4, x by 2
    assert small.shape == (2, 2, 16, 32)
    assert torch.allclose(small[:, 0], torch.tensor(2.0)) and torch.allclose(
        small[:, 1], torch.tensor(-2.0)
    )
    assert resize_flow(flow, (64, 64)) is flow


def test_resize_flow_samples_cell_centres_like_the_heatmap_codec():
    # An affine flow field resampled onto stride-4 cells is the field at the cell centres
    # (input pixel 4 i + 1.5), divided by 4: exact for bilinear away from the border.
    stride, size = 4, 64
    ys, xs = torch.meshgrid(torch.arange(size * 1.0), torch.arange(size * 1.0), indexing="ij")
    flow = torch.stack((0.1 * xs - 0.05 * ys + 1, 0.02 * xs + 0.2 * ys - 3))[None]
    cells = torch.arange(size // stride) * stride + (stride - 1) / 2
    cy, cx = torch.meshgrid(cells, cells, indexing="ij")
    expected = torch.stack((0.1 * cx - 0.05 * cy + 1, 0.02 * cx + 0.2 * cy - 3))[None] / stride
    small = resize_flow(flow, (size // stride, size // stride))
    assert torch.allclose(small[..., 2:-2, 2:-2], expected[..., 2:-2, 2:-2], atol=1e-4)


def test_warping_stride4_heatmaps_with_input_flow_matches_full_resolution():
    stride = 4
    ys, xs = torch.meshgrid(torch.arange(SIZE * 1.0), torch.arange(SIZE * 1.0), indexing="ij")
    peaks = ((30.3, 25.1), (20.0, 40.0))
    sigma = 12.0  # px; 3 cells at stride 4, so bilinear sampling of the cells is accurate
    heatmaps = torch.stack(
        [torch.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sigma**2)) for cx, cy in peaks]
    )[None]
    angle, centre = math.radians(5), (SIZE - 1) / 2
    cos, sin = math.cos(angle), math.sin(angle)
    flow = torch.stack(
        (
            cos * (xs - centre) - sin * (ys - centre) + centre - xs + 3.0,
            sin * (xs - centre) + cos * (ys - centre) + centre - ys - 2.0,
        )
    )[None]
    full, full_valid = warp(heatmaps, flow)
    reference = F.avg_pool2d(full, stride)  # stride-4 cells tile the input pixels
    small, small_valid = warp(F.avg_pool2d(heatmaps, stride), flow)  # resized inside warp
    explicit, _ = warp(F.avg_pool2d(heatmaps, stride), resize_flow(flow, (16, 16)))
    assert torch.equal(small, explicit)
    mask = (F.avg_pool2d(full_valid.float(), stride) == 1) & small_valid
    assert mask.float().mean() > 0.7
    difference = (small - reference).abs()[mask.expand_as(small)]
    assert difference.max() < 0.03, difference.max()


def _spread_skeleton() -> np.ndarray:
    """(17, 2) px: a star-jump pose in a 64 px crop whose bones are well apart."""
    return np.array(
        [[32, 34], [26, 36], [20, 46], [16, 56], [38, 36], [44, 46], [48, 56], [32, 26],
         [32, 18], [32, 14], [32, 8], [24, 18], [14, 14], [6, 8], [40, 18], [50, 14],
         [58, 8]], np.float32,
    )  # fmt: skip


def test_skeleton_flow_moves_each_joint_by_its_own_motion():
    from css_pose.flow import skeleton_flow

    centre = _spread_skeleton()
    shift = skeleton_flow(centre, centre + [2.5, -1.0], SIZE)
    np.testing.assert_allclose(shift, np.broadcast_to([2.5, -1.0], shift.shape), atol=1e-5)
    rng = np.random.default_rng(3)
    other = centre + rng.normal(0, 2, centre.shape).astype(np.float32)
    flow = skeleton_flow(centre, other, SIZE)
    x, y = centre.astype(int).T  # the joints lie on pixel centres
    np.testing.assert_allclose(flow[y, x], other - centre, atol=1e-3)
    # Half way along the right forearm (elbow 15 -> wrist 16): the mean of the two motions.
    mid = ((centre[15] + centre[16]) / 2).astype(int)
    np.testing.assert_allclose(
        flow[mid[1], mid[0]], ((other - centre)[15] + (other - centre)[16]) / 2, atol=1e-3
    )
    with pytest.raises(ValueError, match="true position"):
        skeleton_flow(centre, np.full_like(centre, np.nan), SIZE)


def test_skeleton_preset_needs_keypoints_and_aligns_clip_crops():
    from css_pose.models.temporal_pose import crop_clip_flows

    centre = _spread_skeleton()
    keypoints = np.stack([centre - [1.0, 0.0], centre, centre + [0.0, 2.0]])
    crops = np.zeros((3, SIZE, SIZE, 3), np.uint8)
    flows = crop_clip_flows(crops, np.arange(3), 1, "skeleton", keypoints)
    assert flows.shape == (3, SIZE, SIZE, 2)
    np.testing.assert_allclose(flows[0], np.broadcast_to([-1.0, 0.0], flows[0].shape), atol=1e-5)
    assert not flows[1].any()
    with pytest.raises(ValueError, match="DIS preset"):
        crop_clip_flows(crops, np.arange(3), 1, "skeleton")
