"""Dynamic kernel distillation (issue 17): kernel pooling and matching, the streaming path against
the clip path, re-initialisation, and the temporal discriminator."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from css_pose.models.dkd import (
    DKDModel,
    DKDStream,
    TemporalDiscriminator,
    build_dkd,
    dkd_section,
    hinge_losses,
    match,
    pool_kernels,
)


def test_a_kernel_cut_from_a_feature_map_matches_where_it_was_cut():
    gen = torch.Generator().manual_seed(0)
    features = torch.randn(2, 64, 8, 8, generator=gen)
    for y, x in ((5, 2), (0, 7), (3, 3)):
        delta = torch.zeros(2, 1, 8, 8)
        delta[:, 0, y, x] = 1.0
        kernels = pool_kernels(delta, features, 3)  # (2, 1, 64, 3, 3)
        padded = F.pad(features, (1, 1, 1, 1))
        torch.testing.assert_close(kernels[:, 0], padded[:, :, y : y + 3, x : x + 3])
        response = match(features, kernels)  # (2, 1, 8, 8)
        for b in range(2):
            peak = int(response[b, 0].argmax())
            assert divmod(peak, 8) == (y, x)


def test_pooling_weights():
    features = torch.arange(2 * 4 * 4, dtype=torch.float32).view(1, 2, 4, 4)
    flat = torch.full((1, 1, 4, 4), 0.3)  # no peak: uniform weights, the mean patch
    kernels = pool_kernels(flat, features, 1)
    torch.testing.assert_close(kernels.view(2), features.mean(dim=(2, 3)).view(2))
    # Two equal peaks on a background: their patches averaged, the background ignored.
    two = torch.full((1, 1, 4, 4), 0.1)
    two[0, 0, 1, 1] = two[0, 0, 2, 3] = 0.9
    kernels = pool_kernels(two, features, 1)
    want = (features[0, :, 1, 1] + features[0, :, 2, 3]) / 2
    torch.testing.assert_close(kernels.view(2), want)


def _model():
    torch.manual_seed(0)
    return DKDModel(joints=5, width=16, depth=1).eval()


def test_streaming_equals_the_clip_path():
    model = _model()
    clip = torch.rand(2, 6, 3, 32, 32)
    first = torch.rand(2, 5, 8, 8)
    with torch.no_grad():
        whole = model.forward_clip(clip, first)
    assert whole.shape == (2, 6, 5, 8, 8)
    stream = DKDStream(model, lambda frame: first, interval=100)
    steps = torch.stack([stream.step(clip[:, t]) for t in range(6)], dim=1)
    torch.testing.assert_close(steps, whole)
    assert stream.initialised == 1


def test_the_carried_heatmaps_start_at_zero_and_stream_like_the_clip_path():
    torch.manual_seed(0)
    carried = DKDModel(joints=5, width=16, depth=1, carry=3).eval()
    plain = _model()
    plain.load_state_dict({k: v for k, v in carried.state_dict().items() if "carry" not in k})
    clip, first = torch.rand(2, 6, 3, 32, 32), torch.rand(2, 5, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(
            carried.forward_clip(clip, first), plain.forward_clip(clip, first)
        )
        carried.carry.weight.normal_()  # trained: the previous maps now count
        whole = carried.forward_clip(clip, first)
        assert not torch.allclose(whole, plain.forward_clip(clip, first))
    stream = DKDStream(carried, lambda frame: first, interval=100)
    torch.testing.assert_close(torch.stack([stream.step(clip[:, t]) for t in range(6)], 1), whole)
    rebuilt = build_dkd(dkd_section(carried, 9, 0.0, {}), joints=5)  # the model file keeps it
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.forward_clip(clip, first), whole)


def test_streams_stepped_together_equal_streams_stepped_alone():
    from css_pose.models.dkd import step_streams

    model = _model()
    gen = torch.Generator().manual_seed(1)

    def initializer(frame):
        return frame[:, :1, ::4, ::4].expand(-1, 5, -1, -1) + 0.1  # (B, 5, 8, 8) of the crop

    alone = [DKDStream(model, initializer, interval=k) for k in (2, 3, 100)]
    together = [DKDStream(model, initializer, interval=k) for k in (2, 3, 100)]
    for t in range(7):
        frames = torch.rand(3, 3, 32, 32, generator=gen)
        if t == 4:  # one person's scene cut
            alone[2].reset(), together[2].reset()
        want = torch.cat([s.step(frames[i : i + 1]) for i, s in enumerate(alone)])
        torch.testing.assert_close(step_streams(together, frames), want, rtol=1e-4, atol=1e-5)
    assert [s.initialised for s in together] == [s.initialised for s in alone] == [4, 3, 2]


def test_the_initializer_runs_every_interval_and_on_low_confidence():
    model = _model()
    calls = []

    def initializer(frame):
        calls.append(len(calls))
        return torch.zeros(frame.shape[0], 5, 8, 8)

    stream = DKDStream(model, initializer, interval=3)
    for _ in range(7):
        stream.step(torch.rand(1, 3, 32, 32))
    assert stream.initialised == 3  # frames 0, 3 and 6
    # A confidence floor above anything the small network gives: the initializer every frame.
    eager = DKDStream(model, initializer, interval=100, min_confidence=2.0)
    for _ in range(4):
        eager.step(torch.rand(1, 3, 32, 32))
    assert eager.initialised == 4
    stream.reset()
    stream.step(torch.rand(1, 3, 32, 32))
    assert stream.initialised == 4


def _moving_heatmaps(n: int, t: int, gen: torch.Generator) -> torch.Tensor:
    """(n, t, 2, 8, 8) Gaussian blobs moving in straight lines, one per joint."""
    start = torch.rand(n, 1, 2, 2, generator=gen) * 4 + 2
    velocity = (torch.rand(n, 1, 2, 2, generator=gen) - 0.5) * 1.2
    centres = start + velocity * torch.arange(t).view(1, t, 1, 1)  # (n, t, J, 2)
    y, x = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
    d2 = (x - centres[..., 0, None, None]) ** 2 + (y - centres[..., 1, None, None]) ** 2
    return torch.exp(-d2 / 2)


def test_the_discriminator_learns_to_tell_shuffled_frames():
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    disc = TemporalDiscriminator(joints=2, width=16)
    opt = torch.optim.Adam(disc.parameters(), lr=2e-3)

    def shuffled(real):
        order = torch.stack([torch.randperm(real.shape[1], generator=gen) for _ in real])
        return torch.stack([r[o] for r, o in zip(real, order, strict=True)])

    test_real = _moving_heatmaps(64, 5, gen)
    test_fake = shuffled(test_real)
    with torch.no_grad():
        before, _ = hinge_losses(disc(test_real), disc(test_fake))
    for _ in range(150):
        real = _moving_heatmaps(32, 5, gen)
        loss, _ = hinge_losses(disc(real), disc(shuffled(real)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        real_scores, fake_scores = disc(test_real), disc(test_fake)
        after, adversarial = hinge_losses(real_scores, fake_scores)
    assert after < 0.5 * before
    assert (real_scores > fake_scores).float().mean() > 0.9
    assert adversarial > 0  # the generator's loss is high on sequences the critic rejects


class _Clips:
    """The parts of css_pose.data.clips.Clips that training reads: 6 clips of 3 frames."""

    def __init__(self):
        gen = torch.Generator().manual_seed(1)
        self.frames = (torch.rand(6, 3, 3, 32, 32, generator=gen) * 255).byte()
        self.keypoints = torch.rand(6, 3, 17, 2, generator=gen) * 28 + 2
        self.visibility = torch.ones(6, 3, 17)

    def __len__(self):
        return 6

    def images(self, idx):
        return self.frames[idx].float() / 255


def test_training_logs_both_players_and_stops_when_the_discriminator_wins():
    import pytest

    from css_pose.codecs import HeatmapCodec
    from css_pose.dkd import DiscriminatorWinsError, train_dkd

    codec, clips = HeatmapCodec(32, 4, 2.0), _Clips()
    first = torch.rand(6, 17, 8, 8)
    torch.manual_seed(0)
    model = DKDModel(joints=17, width=16, depth=1)
    history = train_dkd(model, clips, first, codec, steps=4, batch=2, adv_weight=0.1,
                        progress=False)  # fmt: skip
    assert {k: len(v) for k, v in history.items()} == {"pose": 4, "disc": 4, "adversarial": 4}
    assert all(torch.isfinite(torch.tensor(v)).all() for v in history.values())
    plain = train_dkd(model, clips, first, codec, steps=2, batch=2, progress=False)
    assert set(plain) == {"pose"}
    # A threshold every loss is under: the discriminator "wins" at once, and training stops.
    with pytest.raises(DiscriminatorWinsError, match="lower adv_weight"):
        train_dkd(model, clips, first, codec, steps=50, batch=2, adv_weight=0.1, win_loss=1e9,
                  win_steps=3, progress=False)  # fmt: skip


def test_css_pose_predict_streams_a_dkd_model_file(tmp_path):
    """A 2D model file with a dkd section runs through css-pose predict: one person per frame,
    the initializer every `interval` frames."""
    import json

    from css_pose.checkpoint import read_torch_file
    from css_pose.cli import main as cli
    from css_pose.data.synthetic import generate_dataset
    from css_pose.heads2d import main as train_head

    root = tmp_path / "set"
    generate_dataset(root, videos=4, frames=12, size=64, seed=2, workers=1, val_fraction=0.25,
                     test_fraction=0.25, progress=False)  # fmt: skip
    train_head(["ckpt=none", "epochs=1", "batch_size=8", "label_fraction=1.0", "num_images=0",
                f"data.root={root}", "data.size=32", "data.num_workers=0",
                "logger.wandb.enabled=false", "device=cpu", f"run_dir={tmp_path / 'head'}"])  # fmt: skip
    # css-pose dkd: train the small network briefly, score it, write the file.
    assert cli(["dkd", "--large", str(tmp_path / "head" / "head.pt"), "--root", str(root),
                "--out", str(tmp_path / "dkd.pt"), "--frames", "2", "--train-clips", "8",
                "--test-clips", "4", "--steps", "3", "--batch", "2", "--width", "16",
                "--interval", "4", "--threads", "1"]) == 0  # fmt: skip
    section = read_torch_file(tmp_path / "dkd.pt", "model")["dkd"]
    assert section["interval"] == 4 and section["width"] == 16
    assert 0 <= section["metrics"]["dkd"]["pck@0.2"] <= 1
    manifest = json.loads((root / "manifest.json").read_text())
    entry = manifest["videos"][0]
    out = tmp_path / "pred"
    code = cli(["predict", "--model", str(tmp_path / "dkd.pt"), "--video",
                str(root / entry["video"]), "--boxes", str(root / entry["annotation"]),
                "--out", str(out)])  # fmt: skip
    assert code == 0
    meta = json.loads((out / "meta.json").read_text())
    entries = json.loads((out / "keypoints.json").read_text())
    assert sorted(e["image_id"] for e in entries) == list(range(12))
    assert meta["dkd"]["scene_cuts"] == 0  # one continuous shot
    assert meta["dkd"]["initializer_frames"] == 3  # frames 0, 4 and 8


def test_boxes_continue_the_people_they_overlap():
    import numpy as np

    from css_pose.tracking import follow_boxes

    before = np.array([[0, 0, 10, 10], [20, 0, 30, 10]], np.float32)
    rows = np.array([[21, 0, 31, 10, 0.9], [50, 50, 60, 60, 0.8], [1, 0, 11, 10, 0.7]], np.float32)
    assert follow_boxes(before, rows, 0.3) == {0: 1, 2: 0}  # the middle box is someone new
    assert follow_boxes(before[:1], rows[1:2], 0.3) == {0: 0}  # alone in both frames
    assert follow_boxes(before, rows[1:2], 0.3) == {}
    assert follow_boxes(before[:0], rows, 0.3) == {}


def test_dkd_predict_follows_every_person_with_a_state_of_their_own():
    import numpy as np

    from css_pose.codecs.heatmap import HeatmapCodec
    from css_pose.video_pose import DKDFrames, Ready

    section = dkd_section(_model(), interval=100, min_confidence=0.0, metrics={})
    payload = {"dkd": section, "joints": [f"j{i}" for i in range(5)]}
    gen = torch.Generator().manual_seed(0)

    def large(x):
        return {"heatmaps": torch.rand(x.shape[0], 5, 8, 8, generator=gen)}

    a, b = [10, 10, 40, 60, 0.9], [60, 12, 90, 62, 0.8]
    boxes = {t: np.array([a, b], np.float32) + [t, 0, t, 0, 0] for t in range(6)}
    boxes[2] = boxes[2][::-1].copy()  # the detector lists them the other way round
    boxes[5] = np.concatenate([boxes[5], [[0, 0, 8, 8, 0.5]]]).astype(np.float32)
    image = np.full((80, 100, 3), 40, np.uint8)  # shifted boxes cut the same crops
    frames = DKDFrames(large, HeatmapCodec(32), payload, boxes, 0.1, 32, "cpu")
    people = frames.predict([Ready(t, image) for t in range(3)])
    assert [p.frame for p in people] == [0, 0, 1, 1, 2, 2]
    assert frames.initialised == 2 and frames.cuts == 0  # each person once, then followed
    np.testing.assert_allclose(people[4].box, boxes[2][0, :4])
    # Frame 3 did not decode: both start again on frame 4; a third person appears on frame 5.
    frames.predict([Ready(4, image)])
    assert frames.initialised == 4
    assert len(frames.predict([Ready(5, image)])) == 3
    assert frames.initialised == 5
    # A scene cut: the same boxes over another picture re-run the initializer for both.
    boxes[6] = boxes[5][:2] + [1, 0, 1, 0, 0]
    frames.predict([Ready(6, image + 180)])
    assert frames.cuts == 2 and frames.initialised == 7
