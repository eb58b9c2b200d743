"""2D pose heads on ResNet-18 stage maps: shapes, flip test, a short overfit, FLOP counts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from css_pose.codecs import CompositeCodec, HeatmapCodec, RegressionCodec
from css_pose.models import build_encoder
from css_pose.models.heads import (
    FLIPPABLE_KEYS,
    CompositeHead,
    HeatmapHead,
    RegressionHead,
    flip_average,
    gflops,
    head_cost,
    unflip_outputs,
)
from css_pose.skeleton import flip_permutation

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def resnet18_stages():
    """size -> ResNet-18 stage maps (layer1..layer4) of 2 random crops, computed once."""
    torch.manual_seed(0)
    cache = {}
    for size in (64, 128):
        encoder = build_encoder("resnet18", in_size=size).eval()
        with torch.no_grad():
            cache[size] = encoder.forward_stages(torch.rand(2, 3, size, size))
    return cache


@pytest.mark.parametrize("size", [64, 128])
def test_output_shapes(resnet18_stages, size):
    stages = resnet18_stages[size]
    assert [s.shape[-1] for s in stages] == [size // 4, size // 8, size // 16, size // 32]
    with torch.no_grad():
        out = HeatmapHead(512, stride_out=4).eval()(stages)
        assert out["heatmaps"].shape == (2, 17, size // 4, size // 4)
        assert len(out["stages"]) == 2 and out["stages"][-1] is out["heatmaps"]
        # the fusion stage starts as the identity on the first stage's heatmaps
        assert torch.equal(out["stages"][0], out["stages"][1])
        out = HeatmapHead(512, stride_out=8, fusion=False).eval()(stages)
        assert out["heatmaps"].shape == (2, 17, size // 8, size // 8) and len(out["stages"]) == 1
        out = CompositeHead(512).eval()(stages)
        assert out["heatmaps"].shape == (2, 17, size // 8, size // 8)
        assert out["offsets"].shape == (2, 17, 2, size // 8, size // 8)
        out = RegressionHead(512).eval()(stages)
        assert out["coords"].shape == (2, 17, 2)
        keypoints, scores = RegressionCodec(size).decode(out)
        # the output bias starts at the crop centre, the weights small
        centre = torch.full_like(keypoints, (size - 1) / 2)
        assert torch.allclose(keypoints, centre, atol=0.1 * size)
        assert scores.eq(1).all()


def test_heads_check_arguments():
    with pytest.raises(ValueError, match="power of two"):
        HeatmapHead(512, stride_out=3)
    with pytest.raises(ValueError, match="power of two"):
        CompositeHead(512, in_stride=4, stride_out=8)


def test_regression_codec_round_trip_and_loss():
    codec = RegressionCodec((64, 32))
    keypoints = torch.rand(4, 17, 2) * torch.tensor([64.0, 32.0]) - 0.5
    visibility = torch.ones(4, 17)
    visibility[0, 3] = 0
    targets = codec.encode(keypoints, visibility)
    assert targets["coords"].min() >= 0 and targets["coords"].max() <= 1
    decoded, _ = codec.decode(targets)
    assert torch.allclose(decoded[visibility > 0], keypoints[visibility > 0], atol=1e-4)
    outputs = {"coords": targets["coords"] + 0.1}
    outputs["coords"][0, 3] = 9.0  # invisible: not supervised
    assert codec.loss(outputs, targets)["coords"].item() == pytest.approx(0.1)


def _mirror(keypoints: torch.Tensor, width: int) -> torch.Tensor:
    """(B, J, 2) px -> the same people in the mirrored crop: x -> W - 1 - x, left <-> right."""
    mirrored = keypoints[:, flip_permutation()].clone()
    mirrored[..., 0] = width - 1 - mirrored[..., 0]
    return mirrored


def _as_outputs(targets: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Codec targets -> the entries a head would output for them."""
    return {k: v for k, v in targets.items() if k in FLIPPABLE_KEYS}


@pytest.mark.parametrize(
    "codec",
    [
        HeatmapCodec(64),
        CompositeCodec(64),
        CompositeCodec(64, radius=2.2, topk=4),
        RegressionCodec(64),
    ],
    ids=["heatmap", "composite", "composite_top4", "regression"],
)
def test_flip_average_of_exactly_mirrored_predictions_is_the_original(codec):
    torch.manual_seed(1)
    keypoints = torch.rand(3, 17, 2) * 64 - 0.5
    visibility = torch.ones(3, 17)
    images = torch.rand(3, 3, 64, 64)
    outputs = _as_outputs(codec.encode(keypoints, visibility))
    mirrored = _as_outputs(codec.encode(_mirror(keypoints, 64), visibility))

    def model(x: torch.Tensor) -> dict[str, torch.Tensor]:
        """A perfect model: its output on the mirrored crop is the mirrored people's targets."""
        if torch.equal(x, images):
            return outputs
        assert torch.equal(x, images.flip(-1))
        return mirrored

    averaged = flip_average(model, images)
    assert averaged.keys() == outputs.keys()
    for key, value in outputs.items():
        assert torch.allclose(averaged[key], value, atol=1e-6), key
    decoded, _ = codec.decode(averaged)
    assert (decoded - keypoints).abs().max() < 1e-3
    # mirroring twice is the identity
    for key, value in unflip_outputs(unflip_outputs(outputs)).items():
        assert torch.allclose(value, outputs[key], atol=1e-6)


def _overfit(head: nn.Module, codec, stages, keypoints, steps: int) -> tuple[list[float], list]:
    """Adam on one batch; returns the losses and the mean decoded error (px) before and after."""
    targets = codec.encode(keypoints, torch.ones(keypoints.shape[:2]))
    optimiser = torch.optim.Adam(head.parameters(), lr=2e-3)

    def error() -> float:
        with torch.no_grad():
            decoded, _ = codec.decode(head(stages))
        return torch.linalg.vector_norm(decoded - keypoints, dim=-1).mean().item()

    losses, errors = [], [error()]
    for _ in range(steps):
        loss = sum(codec.loss(head(stages), targets).values())
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    errors.append(error())
    return losses, errors


@pytest.mark.parametrize(
    ("make_head", "make_codec"),
    [
        (lambda: HeatmapHead(512, stride_out=4, mid_channels=64), lambda: HeatmapCodec(64)),
        (lambda: CompositeHead(512, mid_channels=64), lambda: CompositeCodec(64)),
        (lambda: RegressionHead(512, hidden=64), lambda: RegressionCodec(64)),
    ],
    ids=["heatmap", "composite", "regression"],
)
def test_overfitting_a_tiny_batch(resnet18_stages, make_head, make_codec):
    torch.manual_seed(0)
    stages = resnet18_stages[64]
    keypoints = torch.rand(2, 17, 2) * 48 + 8
    losses, errors = _overfit(make_head(), make_codec(), stages, keypoints, steps=30)
    assert losses[-1] < 0.5 * losses[0], losses
    assert errors[1] < 0.25 * errors[0], errors


def test_gflops_counts_a_conv_by_hand():
    conv = nn.Conv2d(8, 16, 3, padding=1)
    # 2 FLOPs per multiply-add: 16 out x 8 in x 3 x 3 taps at 10 x 12 positions
    assert gflops(conv, torch.zeros(1, 8, 10, 12)) == pytest.approx(2 * 16 * 8 * 9 * 120 / 1e9)


def test_composite_head_is_cheaper_than_stride4_heatmap_head():
    encoder = build_encoder("resnet18", in_size=128)
    heatmap = HeatmapHead(512, stride_out=4).train()
    composite = CompositeHead(512)
    heatmap_cost = head_cost(encoder, heatmap, 128)
    composite_cost = head_cost(encoder, composite, 128)
    assert composite_cost["head_gflops"] < 0.6 * heatmap_cost["head_gflops"]
    assert heatmap_cost["encoder_gflops"] == composite_cost["encoder_gflops"] > 0
    assert heatmap_cost["total_gflops"] == pytest.approx(
        heatmap_cost["head_gflops"] + heatmap_cost["encoder_gflops"]
    )
    assert heatmap_cost["head_params"] == sum(p.numel() for p in heatmap.parameters())
    assert heatmap.training and encoder.training  # modes restored


def test_flattened_regression_sees_where_a_feature_is():
    torch.manual_seed(0)
    maps = torch.zeros(2, 8, 2, 2)
    maps[0, :, 0, 0] = 1.0  # the same feature, top left ...
    maps[1, :, 1, 1] = 1.0  # ... and bottom right
    pooled = RegressionHead(8).eval()
    flat = RegressionHead(8, pool="flatten", map_size=(2, 2)).eval()
    nn.init.normal_(flat.mlp[-1].weight)
    nn.init.normal_(pooled.mlp[-1].weight)
    with torch.no_grad():
        same = pooled([maps])["coords"]
        moved = flat([maps])["coords"]
    assert torch.equal(same[0], same[1])  # global pooling cannot tell the two apart
    assert not torch.allclose(moved[0], moved[1])
    with pytest.raises(ValueError, match="map_size"):
        RegressionHead(8, pool="flatten")
    with pytest.raises(ValueError, match="built for"):
        flat([torch.zeros(1, 8, 4, 4)])
