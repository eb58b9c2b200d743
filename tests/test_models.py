"""Encoders, latent heads and decoder: shapes, normalisation, output range, strict loading, and a
short reconstruction overfit."""

from collections import OrderedDict

import pytest
import torch
import torchvision
from torch import nn

from css_pose.losses import ReconstructionLoss
from css_pose.models import Decoder, Encoder, LatentHeads, build_encoder


@pytest.mark.parametrize(
    ("name", "size", "channels", "stride"),
    [
        ("convnet", 64, [32, 64, 128, 256], 16),
        ("resnet18", 64, [64, 128, 256, 512], 32),
        ("resnet50", 64, [256, 512, 1024, 2048], 32),
    ],
)
def test_encoder_shapes(name, size, channels, stride):
    enc = build_encoder(name, in_size=size).eval()
    assert enc.stage_channels == channels and enc.out_channels == channels[-1]
    assert enc.stride == stride and enc.feature_size == size // stride
    x = torch.rand(2, 3, size, size)
    with torch.no_grad():
        stages = enc.forward_stages(x)
        out = enc(x)
    first = stride // 2 ** (len(channels) - 1)
    for s, (feat, c) in enumerate(zip(stages, channels)):
        side = size // (first * 2**s)
        assert feat.shape == (2, c, side, side)
    torch.testing.assert_close(out, stages[-1])


def test_convnet_is_small():
    n = sum(p.numel() for p in build_encoder("convnet").parameters())
    assert 300_000 <= n <= 1_000_000


def test_encoder_applies_imagenet_normalisation():
    enc = Encoder(OrderedDict(id=nn.Identity()), ["id"], [3], stride=1, in_size=4)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    torch.testing.assert_close(enc(mean.expand(1, 3, 4, 4)), torch.zeros(1, 3, 4, 4))
    torch.testing.assert_close(
        enc((mean + 2 * std).expand(1, 3, 4, 4)), torch.full((1, 3, 4, 4), 2.0)
    )
    assert "mean" not in enc.state_dict()


def test_encoder_checks_arguments():
    with pytest.raises(ValueError, match="unknown encoder"):
        build_encoder("vgg")
    with pytest.raises(ValueError, match="multiple of the stride"):
        build_encoder("resnet18", in_size=100)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        build_encoder("convnet")(torch.rand(2, 1, 32, 32))


def test_weights_load_strictly(tmp_path):
    src = build_encoder("convnet")
    path = tmp_path / "enc.pt"
    torch.save(src.state_dict(), path)
    dst = build_encoder("convnet", weights_path=path)
    for key, value in src.state_dict().items():
        torch.testing.assert_close(dst.state_dict()[key], value)

    state = src.state_dict()
    state["module.extra"] = state.pop("stage1.0.weight")
    bad = tmp_path / "bad.pt"
    torch.save(state, bad)
    with pytest.raises(RuntimeError) as err:
        build_encoder("convnet", weights_path=bad)
    message = str(err.value)
    assert str(bad) in message and "stage1.0.weight" in message and "module.extra" in message


def test_torchvision_checkpoint_loads_without_classifier(tmp_path):
    net = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pt"
    torch.save(net.state_dict(), path)
    enc = build_encoder("resnet18", weights_path=path)
    torch.testing.assert_close(enc.layer4[1].conv2.weight, net.layer4[1].conv2.weight)
    with pytest.raises(RuntimeError, match="missing keys"):
        build_encoder("resnet50", weights_path=path)


def test_latent_heads():
    heads = LatentHeads(16, dim_v=8, dim_i=4, hidden=32)
    feats = torch.randn(3, 16, 2, 2)
    z_v, z_i, h = heads(feats)
    assert z_v.shape == (3, 8) and z_i.shape == (3, 4)
    torch.testing.assert_close(h, feats.mean(dim=(2, 3)))
    with pytest.raises(ValueError, match="dim_v"):
        LatentHeads(16, dim_v=0)


def test_decoder_shape_and_range():
    dec = Decoder(8, 4, out_size=128, base_channels=64)
    out = dec(100 * torch.randn(3, 8), 100 * torch.randn(3, 4))
    assert out.shape == (3, 3, 128, 128)
    assert out.min() >= 0 and out.max() <= 1
    convs = [m for m in dec.up if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 16, 16, 16, 16, 3]  # halving, floor 16
    with pytest.raises(ValueError, match=r"min_size \* 2\*\*k"):
        Decoder(8, 4, out_size=96)
    with pytest.raises(ValueError, match="z_v"):
        dec(torch.randn(3, 4), torch.randn(3, 4))


def test_encoder_decoder_overfit_four_images():
    torch.manual_seed(0)
    size = 32
    # Four images of coloured blocks: learnable, unlike noise.
    images = torch.rand(4, 3, 4, 4).repeat_interleave(size // 4, 2).repeat_interleave(size // 4, 3)
    enc = build_encoder("convnet", in_size=size)
    heads = LatentHeads(enc.out_channels, dim_v=16, dim_i=8, hidden=64)
    dec = Decoder(16, 8, out_size=size, base_channels=64)
    params = [*enc.parameters(), *heads.parameters(), *dec.parameters()]
    opt = torch.optim.Adam(params, lr=3e-3)
    criterion = ReconstructionLoss()
    losses = []
    for _ in range(30):
        z_v, z_i, _ = heads(enc(images))
        loss = criterion(dec(z_v, z_i), images)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.4 * losses[0]


def test_spatial_latent_head_sees_where_features_are():
    """spatial_v: z_v changes when the feature map is mirrored; z_i (pooled) does not."""
    torch.manual_seed(0)
    heads = LatentHeads(8, dim_v=4, dim_i=3, spatial_v=True, feature_size=2).eval()
    feat = torch.randn(5, 8, 2, 2)
    z_v, z_i, h = heads(feat)
    z_v2, z_i2, h2 = heads(feat.flip(-1))
    assert torch.allclose(z_i, z_i2, atol=1e-6) and torch.allclose(h, h2, atol=1e-6)
    assert not torch.allclose(z_v, z_v2, atol=1e-3)
    with pytest.raises(ValueError, match="feature_size"):
        LatentHeads(8, spatial_v=True)
