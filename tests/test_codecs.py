"""Codecs: encode -> decode round trips, the cell <-> pixel mapping, weights, losses by hand."""

from __future__ import annotations

import pytest
import torch

from css_pose.codecs import CompositeCodec, HeatmapCodec, cells_to_pixels, pixels_to_cells

torch.set_num_threads(1)


def random_keypoints(size: int, batch: int = 64, joints: int = 17, seed: int = 0) -> torch.Tensor:
    """(batch, joints, 2) uniform over the crop [-0.5, size - 0.5]^2, with the first sample's joints
    on the crop's corners, edges and just inside them."""
    generator = torch.Generator().manual_seed(seed)
    keypoints = torch.rand(batch, joints, 2, generator=generator) * size - 0.5
    lo, hi = -0.5, size - 0.5
    border = [(lo, lo), (hi, hi), (lo, hi), (hi, lo), (lo, size / 2), (size / 2, hi)]
    border += [(lo + 0.01, lo + 0.3), (hi - 0.2, hi - 0.01), (0.0, 0.0), (size - 1.0, size - 1.0)]
    keypoints[0, : len(border)] = torch.tensor(border)
    return keypoints


CODECS = {
    "heatmap": lambda size: HeatmapCodec(size),
    "composite": lambda size: CompositeCodec(size),
    "composite_top4": lambda size: CompositeCodec(size, radius=2.2, topk=4),
}


@pytest.mark.parametrize("size", [64, 128])
@pytest.mark.parametrize("name", list(CODECS))
def test_round_trip_recovers_subpixel_keypoints(name, size):
    codec = CODECS[name](size)
    keypoints = random_keypoints(size)
    visibility = torch.ones(keypoints.shape[:2])
    with torch.no_grad():
        targets = codec.encode(keypoints, visibility)
        decoded, scores = codec.decode(targets)
    assert targets["heatmap_weights"].eq(1).all()
    error = (decoded - keypoints).abs().max().item()
    # The requirement is 0.5 px; both decoders are exact for their own targets up to rounding.
    assert error < 1e-3
    assert decoded.dtype == torch.float32 and scores.shape == keypoints.shape[:2]
    assert torch.allclose(scores, targets["heatmaps"].amax(dim=(-2, -1)))


@pytest.mark.parametrize(
    ("codec", "size"),
    [
        (HeatmapCodec((96, 64), stride=2, sigma=1.0), (96, 64)),
        (HeatmapCodec(64, stride=8, sigma=1.5), (64, 64)),
        (CompositeCodec((64, 128), stride=4, radius=1.0, sigma=2.0), (64, 128)),
        (CompositeCodec(64, stride=16, radius=1.5), (64, 64)),
    ],
)
def test_round_trip_other_strides_and_rectangular_crops(codec, size):
    keypoints = torch.rand(32, 17, 2) * torch.tensor(size) - 0.5
    targets = codec.encode(keypoints, torch.ones(32, 17))
    assert targets["heatmaps"].shape == (32, 17, size[1] // codec.stride, size[0] // codec.stride)
    decoded, _ = codec.decode(targets)
    assert (decoded - keypoints).abs().max() < 1e-3


def test_cell_centres_map_to_pixels():
    # stride 4: cell 0 covers pixels 0..3, centre 1.5; cell i centre 4i + 1.5.
    cells = torch.tensor([[0.0, 0.0], [1.0, 3.0], [-0.5, 15.5]])
    pixels = torch.tensor([[1.5, 1.5], [5.5, 13.5], [-0.5, 63.5]])
    assert torch.equal(cells_to_pixels(cells, 4), pixels)
    assert torch.equal(pixels_to_cells(pixels, 4), cells)
    assert torch.equal(cells_to_pixels(torch.tensor([[2.0, 0.0]]), 1), torch.tensor([[2.0, 0.0]]))
    # A keypoint on cell (3, 5)'s centre puts the Gaussian's exact peak 1 on that cell.
    heatmaps = HeatmapCodec(64).encode(torch.tensor([[[13.5, 21.5]]]), torch.ones(1, 1))["heatmaps"]
    assert heatmaps[0, 0, 5, 3] == 1 and heatmaps[0, 0].argmax() == 5 * 16 + 3
    assert heatmaps[0, 0, 5, 4] == pytest.approx(torch.exp(torch.tensor(-1 / 8)).item())


@pytest.mark.parametrize("codec", [HeatmapCodec(64), CompositeCodec(64)], ids=["heatmap", "comp"])
def test_invisible_and_outside_joints_get_zero_weight(codec):
    keypoints = torch.full((2, 6, 2), 20.0)
    keypoints[0, 1] = torch.tensor([-0.51, 10.0])  # just left of the crop
    keypoints[0, 2] = torch.tensor([10.0, 63.51])  # just below it
    keypoints[0, 3] = torch.tensor([100.0, -40.0])
    keypoints[0, 4] = torch.tensor([float("nan"), 5.0])
    keypoints[0, 5] = torch.tensor([-0.5, 63.5])  # on the corner: inside
    visibility = torch.ones(2, 6)
    visibility[1, 2] = 0
    targets = codec.encode(keypoints, visibility)
    expected = torch.tensor([[1, 0, 0, 0, 0, 1], [1, 1, 0, 1, 1, 1]], dtype=torch.float32)
    assert torch.equal(targets["heatmap_weights"], expected)
    zero = expected == 0
    assert targets["heatmaps"][zero].eq(0).all() and targets["heatmaps"][~zero].amax() > 0.5
    assert all(torch.isfinite(t).all() for t in targets.values())
    if isinstance(codec, CompositeCodec):
        assert targets["offset_mask"][zero].eq(0).all()
        assert targets["offsets"][zero].eq(0).all()


def test_composite_offsets_inside_radius_only():
    codec = CompositeCodec(64, stride=8, radius=2.0)
    keypoint = torch.tensor([[[27.5, 35.5]]])  # exactly on cell (3, 4)'s centre
    targets = codec.encode(keypoint, torch.ones(1, 1))
    mask = targets["offset_mask"][0, 0]
    ys, xs = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
    inside = (xs - 3) ** 2 + (ys - 4) ** 2 <= 4
    assert torch.equal(mask.bool(), inside) and mask.sum() == 13
    # cell (1, 4) is 2 cells left of the keypoint: dx = +2 / radius = 1, dy = 0
    assert targets["offsets"][0, 0, :, 4, 1].tolist() == [1.0, 0.0]
    assert targets["offsets"][0, 0, :, 3, 3].tolist() == [0.0, 0.5]
    assert targets["offsets"][0, 0][:, ~inside].eq(0).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_target_shapes_and_dtypes(dtype):
    keypoints = torch.rand(3, 17, 2, dtype=dtype) * 128
    visibility = torch.ones(3, 17, dtype=torch.bool)
    heat = HeatmapCodec(128).encode(keypoints, visibility)
    assert heat["heatmaps"].shape == (3, 17, 32, 32) and heat["heatmap_weights"].shape == (3, 17)
    comp = CompositeCodec(128).encode(keypoints, visibility)
    assert comp["heatmaps"].shape == (3, 17, 16, 16)
    assert comp["offsets"].shape == (3, 17, 2, 16, 16)
    assert comp["offset_mask"].shape == (3, 17, 16, 16)
    for value in (*heat.values(), *comp.values()):
        assert value.dtype == dtype and value.device.type == "cpu"


def test_decode_is_finite_on_flat_and_spiky_predictions():
    codec = HeatmapCodec(64)
    heatmaps = torch.zeros(2, 17, 16, 16)
    heatmaps[1, :, 7, 9] = 0.8  # a lone spike: symmetric neighbours, the argmax cell stays
    keypoints, scores = codec.decode({"heatmaps": heatmaps})
    assert torch.isfinite(keypoints).all()
    assert torch.equal(keypoints[1], cells_to_pixels(torch.tensor([9.0, 7.0]), 4).expand(17, 2))
    assert scores[0].eq(0).all() and scores[1].eq(0.8).all()
    composite = CompositeCodec(64, topk=3)
    outputs = {"heatmaps": -torch.ones(1, 17, 8, 8), "offsets": torch.zeros(1, 17, 2, 8, 8)}
    assert torch.isfinite(composite.decode(outputs)[0]).all()


def test_heatmap_loss_by_hand():
    codec = HeatmapCodec(16, stride=4)
    targets = codec.encode(torch.tensor([[[5.0, 6.0], [1.0, 2.0]]]), torch.tensor([[1.0, 0.0]]))
    first = targets["heatmaps"].clone()
    first[0, 0] += 0.1  # MSE 0.01 on the weighted joint
    second = targets["heatmaps"].clone()
    second[0, 1] += 1.0  # error only on the zero-weight joint
    terms = codec.loss({"heatmaps": second, "stages": [first, second]}, targets)
    assert terms.keys() == {"heatmap_stage1", "heatmap_stage2"}
    assert terms["heatmap_stage1"].item() == pytest.approx(0.01 / 2)  # mean over B * J = 2
    assert terms["heatmap_stage2"].item() == 0
    assert codec.loss({"heatmaps": first}, targets).keys() == {"heatmap_stage1"}


def test_composite_loss_by_hand():
    codec = CompositeCodec(64)
    targets = codec.encode(torch.tensor([[[20.0, 30.0], [40.0, 10.0]]]), torch.tensor([[1, 0]]))
    outputs = {"heatmaps": targets["heatmaps"], "offsets": targets["offsets"] + 0.2}
    outputs["offsets"][0, 1] = 5.0  # the invisible joint's offsets are not supervised
    terms = codec.loss(outputs, targets)
    assert terms["heatmap"].item() == 0
    assert terms["offset"].item() == pytest.approx(0.2)
    outputs["heatmaps"] = targets["heatmaps"] - 0.5
    expected = 0.25 / 2  # one of B * J = 2 joints weighted
    assert codec.loss(outputs, targets)["heatmap"].item() == pytest.approx(expected)


def test_codecs_check_arguments():
    with pytest.raises(ValueError, match="multiples of stride"):
        HeatmapCodec(66, stride=4)
    with pytest.raises(ValueError, match="radius"):
        CompositeCodec(64, radius=0.5)
    with pytest.raises(ValueError, match="visibility"):
        HeatmapCodec(64).encode(torch.zeros(2, 17, 2), torch.ones(2, 16))
    with pytest.raises(ValueError, match="heatmaps must be"):
        HeatmapCodec(64).decode({"heatmaps": torch.zeros(1, 17, 8, 8)})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", list(CODECS))
def test_round_trip_on_cuda(name):
    codec = CODECS[name](128)
    keypoints = random_keypoints(128).cuda()
    targets = codec.encode(keypoints, torch.ones(keypoints.shape[:2], device="cuda"))
    decoded, scores = codec.decode(targets)
    assert decoded.is_cuda and scores.is_cuda
    assert (decoded - keypoints).abs().max() < 1e-3
