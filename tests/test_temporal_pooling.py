"""Temporal pooling of flow-aligned heatmaps: parametric pooling against its closed form, the
masked average, and alignment of a moving joint's heatmaps before pooling."""

from __future__ import annotations

import pytest
import torch

from css_pose.codecs import HeatmapCodec
from css_pose.flow import warp
from css_pose.models.heads.temporal import ParametricPooling, average_pooling

torch.set_num_threads(1)


def test_parametric_pooling_starts_as_the_centre_frame():
    torch.manual_seed(0)
    aligned = torch.randn(2, 5, 3, 6, 7)
    assert torch.equal(ParametricPooling(5, 3)(aligned), aligned[:, 2])
    assert torch.equal(ParametricPooling(1, 3, bias=False)(aligned[:, 2:3]), aligned[:, 2])
    assert torch.allclose(ParametricPooling(5, 3, centre_init=0.5)(aligned), 0.5 * aligned[:, 2])


def test_parametric_pooling_neighbour_init_spreads_the_weight():
    torch.manual_seed(3)
    aligned = torch.randn(2, 5, 3, 6, 7)
    got = ParametricPooling(5, 3, centre_init=0.2, neighbour_init=0.2)(aligned)
    assert torch.allclose(got, average_pooling(aligned), atol=1e-6)
    got = ParametricPooling(5, 3, centre_init=0.6, neighbour_init=0.1)(aligned)
    expected = 0.6 * aligned[:, 2] + 0.1 * (aligned.sum(1) - aligned[:, 2])
    assert torch.allclose(got, expected, atol=1e-5)


def test_parametric_pooling_is_a_per_joint_weighted_sum():
    torch.manual_seed(1)
    pool = ParametricPooling(3, 4)
    with torch.no_grad():
        pool.conv.weight.normal_()
        pool.conv.bias.normal_()
    aligned = torch.randn(2, 3, 4, 5, 5)
    weight = pool.conv.weight[:, :, 0, 0]  # (J, T)
    expected = torch.einsum("btjhw,jt->bjhw", aligned, weight) + pool.conv.bias.view(1, 4, 1, 1)
    assert torch.allclose(pool(aligned), expected, atol=1e-5)


def test_parametric_pooling_gradients_reach_every_weight():
    torch.manual_seed(2)
    pool = ParametricPooling(5, 3)
    aligned = torch.rand(2, 5, 3, 4, 4)
    pool(aligned).sum().backward()
    # d sum(out) / d weight[j, t] = sum over b, h, w of aligned[b, t, j]; d / d bias[j] = B h w
    expected = aligned.sum(dim=(0, 3, 4)).T  # (J, T)
    assert torch.allclose(pool.conv.weight.grad[:, :, 0, 0], expected, atol=1e-5)
    assert torch.allclose(pool.conv.bias.grad, torch.full((3,), 2.0 * 4 * 4))


def test_parametric_pooling_learns_the_average():
    torch.manual_seed(3)
    pool = ParametricPooling(3, 2, bias=False)
    optimiser = torch.optim.SGD(pool.parameters(), lr=0.2)
    losses = []
    for _ in range(40):
        aligned = torch.randn(4, 3, 2, 6, 6)
        loss = (pool(aligned) - aligned.mean(dim=1)).pow(2).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.01 * losses[0]
    assert torch.allclose(pool.conv.weight[:, :, 0, 0], torch.full((2, 3), 1 / 3), atol=0.02)


def test_parametric_pooling_shape_errors_name_the_expected_shape():
    pool = ParametricPooling(5, 3)
    with pytest.raises(ValueError, match=r"\(B, T=5, J=3, h, w\)"):
        pool(torch.zeros(2, 3, 5, 4, 4))  # T and J swapped
    with pytest.raises(ValueError, match=r"\(B, T=5, J=3, h, w\)"):
        pool(torch.zeros(2, 15, 4, 4))
    with pytest.raises(ValueError, match="odd"):
        ParametricPooling(4, 3)


def test_average_pooling_ignores_invalid_frames():
    torch.manual_seed(4)
    aligned = torch.rand(2, 3, 4, 5, 5)
    assert torch.allclose(average_pooling(aligned), aligned.mean(dim=1))
    valid = torch.ones(2, 3, 1, 5, 5, dtype=torch.bool)
    valid[:, 0, :, :2] = False  # frame 0 out of its image in the top two rows
    valid[:, :, :, 4, 4] = False  # no frame covers one cell
    aligned[:, 0, :, :2] = 1e6  # whatever an invalid sample holds must not count
    aligned[:, :, :, 4, 4] = float("nan")
    out = average_pooling(aligned, valid)
    assert torch.allclose(out[:, :, :2], aligned[:, 1:, :, :2].mean(dim=1))
    assert torch.allclose(out[:, :, 2:4], aligned[:, :, :, 2:4].mean(dim=1))
    assert out[:, :, 4, 4].eq(0).all()
    with pytest.raises(ValueError, match=r"\(B, T, 1, h, w\) = \(2, 3, 1, 5, 5\)"):
        average_pooling(aligned, valid[:, :2])
    with pytest.raises(ValueError, match="bool"):
        average_pooling(aligned, valid.float())


def test_aligning_a_moving_joint_before_pooling_keeps_its_peak():
    # One joint accelerates through a 5-frame clip; frame t + k's heatmap is warped onto the centre
    # frame with the (known) input-pixel flow from frame t to frame t + k.
    size, stride = 64, 4
    codec = HeatmapCodec(size, stride=stride, sigma=2.0)
    centre = torch.tensor([30.0, 33.0])
    velocity, acceleration = torch.tensor([3.0, -1.0]), torch.tensor([1.5, 1.0])
    offsets = torch.arange(-2, 3.0)
    positions = centre + offsets[:, None] * velocity + offsets[:, None] ** 2 * acceleration
    heatmaps = codec.encode(positions[:, None], torch.ones(5, 1))["heatmaps"]  # (T, 1, h, w)
    flow = (positions - centre).view(5, 2, 1, 1).expand(5, 2, size, size)
    aligned, valid = warp(heatmaps, flow)

    pooled = average_pooling(aligned[None], valid[None])
    keypoints, scores = codec.decode({"heatmaps": pooled})
    assert torch.allclose(keypoints[0, 0], centre, atol=0.3)
    assert scores[0, 0] > 0.9

    unaligned, _ = codec.decode({"heatmaps": heatmaps.mean(dim=0, keepdim=True)})
    assert (unaligned[0, 0] - centre).norm() > 1.0


class _Head(torch.nn.Module):
    fusion, num_joints = None, 1


@pytest.mark.parametrize("scale", [1, 2, 4])
def test_finer_warp_aligns_a_translated_joint_and_leaves_the_centre(scale):
    # Every neighbour shows the joint moved by its own flow; warped on the heatmap grid or on a
    # finer one and averaged back, its peak comes back to the centre frame's joint. (What the
    # finer grid gains on real flows is measured by benchmarks/temporal_oracle.py.)
    from css_pose.models.temporal_pose import TemporalPoseModel

    size = 32
    codec = HeatmapCodec(size, stride=4, sigma=1.0)
    joint = torch.tensor([15.5, 14.0])
    shifts = torch.tensor([[3.0, -2.0], [0.0, 0.0], [-2.5, 1.5]])
    maps = codec.encode((joint + shifts)[:, None], torch.ones(3, 1))["heatmaps"]  # (T, 1, h, w)
    flows = shifts.view(1, 3, 2, 1, 1).expand(1, 3, 2, size, size)
    model = TemporalPoseModel(torch.nn.Identity(), _Head(), 1, "average", warp_scale=scale)
    aligned, valid = model.align(maps[None], flows)
    assert aligned.shape == (1, 3, 1, 8, 8) and valid[0, :, :, 2:6, 2:6].all()
    torch.testing.assert_close(aligned[0, 1], maps[1])  # the centre is not warped
    found, _ = codec.decode({"heatmaps": aligned[0]})
    assert (found[:, 0] - joint).norm(dim=-1).max() < 0.5
