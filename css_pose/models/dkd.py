"""Fast video pose by dynamic kernel distillation (DKD; shared/methods.md section 5, issue 17).

A large pose initializer (a trained 2D heatmap model, :class:`~css_pose.models.pose_model.PoseModel`)
runs on the first frame, and again every ``interval`` frames or when the pose confidence drops
below ``min_confidence``. Every other frame runs only a small frame encoder
(:class:`SmallEncoder`): a light distillator (:class:`Distillator`) turns the previous frame's
heatmaps and small features into one kernel per joint (heatmap-weighted pooling of the k x k
feature patches, C x k x k each), and the current heatmaps are the correlation of the current
features with those kernels (:func:`match`), decoded by the heatmap codec.

Shapes: crops (B, 3, S, S) in [0, 1]; features (B, C, h, w) at the codec's stride; heatmaps
(B, J, h, w); kernels (B, J, C, k, k). A clip is (B, T, 3, S, S), frame 0 first.

A :class:`TemporalDiscriminator` scores short heatmap sequences (real: the ground-truth
targets, fake: the predictions); its adversarial loss pushes the predictions towards temporally
coherent sequences.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from css_pose.checkpoint import load_strict
from css_pose.codecs.heatmap import gaussian_heatmaps


def _block(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class SmallEncoder(nn.Module):
    """The per-frame encoder: crops (B, 3, S, S) -> features (B, C, S / stride, S / stride).

    Two stride-2 blocks (stride 4, the heatmap codec's) and ``depth`` more blocks at that
    resolution, ``width`` channels."""

    def __init__(self, width: int = 32, depth: int = 2, stride: int = 4):
        super().__init__()
        if stride not in (2, 4, 8):
            raise ValueError(f"stride must be 2, 4 or 8, got {stride}")
        layers, c = [], 3
        for i in range(stride.bit_length() - 1):
            layers.append(_block(c, width // 2 if i == 0 and stride > 2 else width, 2))
            c = layers[-1][0].out_channels
        for _ in range(depth):
            layers.append(_block(c, width, 1))
            c = width
        self.net = nn.Sequential(*layers)
        self.out_channels, self.stride = width, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def pool_kernels(heatmaps: torch.Tensor, features: torch.Tensor, size: int) -> torch.Tensor:
    """Heatmap-weighted pooling of feature patches: heatmaps (B, J, h, w) and features
    (B, C, h, w) -> kernels (B, J, C, size, size), kernel j = sum over positions p of
    w_j(p) x (the size x size patch of features around p). w_j is heatmap j above its own mean
    (a flat background weighs nothing), normalised to sum 1; a flat heatmap gives uniform
    weights. Patches past the border are zero-padded."""
    b, j, h, w = heatmaps.shape
    c = features.shape[1]
    flat = heatmaps.flatten(2)
    weights = (flat - flat.mean(-1, keepdim=True)).clamp_min(0)
    total = weights.sum(-1, keepdim=True)
    weights = torch.where(total > 0, weights / total.clamp_min(1e-12), 1.0 / (h * w))
    patches = F.unfold(features, size, padding=size // 2)  # (B, C k k, h w)
    kernels = torch.einsum("bjn,bdn->bjd", weights, patches)
    return kernels.view(b, j, c, size, size)


def match(features: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Correlate each sample's features (B, C, h, w) with its own kernels (B, J, C, k, k):
    response (B, J, h, w), the dot product of kernel j with the k x k patch around each
    position (zero padding; k odd)."""
    b, c, h, w = features.shape
    j, k = kernels.shape[1], kernels.shape[-1]
    out = F.conv2d(
        features.reshape(1, b * c, h, w), kernels.reshape(b * j, c, k, k), padding=k // 2, groups=b
    )
    return out.view(b, j, h, w)


class Distillator(nn.Module):
    """Previous heatmaps (B, J, h, w) and features (B, C, h, w) -> kernels (B, J, C, k, k):
    :func:`pool_kernels`, then a learned channel mixing (C x C, the same at each of the k x k
    kernel positions; initialised to the identity, so at first the kernel is the pooled patch
    itself), normalised to unit length. :meth:`respond` turns a match into heatmaps with a
    learned scale and offset per joint."""

    def __init__(self, channels: int, joints: int, size: int = 3):
        super().__init__()
        if size % 2 == 0:
            raise ValueError(f"kernel size must be odd, got {size}")
        self.size, self.channels = size, channels
        self.transform = nn.Linear(channels, channels)
        nn.init.eye_(self.transform.weight)
        nn.init.zeros_(self.transform.bias)
        self.scale = nn.Parameter(torch.full((joints,), 4.0))
        self.offset = nn.Parameter(torch.full((joints,), -2.0))

    def forward(self, heatmaps: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        pooled = pool_kernels(heatmaps, features, self.size)  # (B, J, C, k, k)
        mixed = self.transform(pooled.movedim(2, -1)).movedim(-1, 2)
        return F.normalize(mixed.flatten(2), dim=-1).view_as(pooled)

    def respond(self, features: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
        """Heatmaps (B, J, h, w): sigmoid(scale_j x cosine match + offset_j), in [0, 1] like the
        codec's Gaussian targets."""
        unit = F.normalize(features, dim=1)
        response = match(unit, kernels)
        return torch.sigmoid(
            self.scale.view(1, -1, 1, 1) * response + self.offset.view(1, -1, 1, 1)
        )


class DKDModel(nn.Module):
    """The small side of DKD: :class:`SmallEncoder` + :class:`Distillator`. The large initializer
    is passed in at run time (it is trained separately and frozen).

    :meth:`forward_clip` runs a clip (B, T, 3, S, S): frame 0's heatmaps come from
    ``first_heatmaps`` (the initializer's, (B, J, h, w)); frame t >= 1 from the kernels of frame
    t - 1's predicted heatmaps and features, matched against frame t's features, plus a 1 x 1
    heatmap head on frame t's own features (``prior``, zero at init). Returns heatmaps
    (B, T, J, h, w).
    """

    def __init__(self, joints: int, width: int = 32, depth: int = 2, kernel: int = 3,
                 stride: int = 4, carry: int = 0):  # fmt: skip
        super().__init__()
        self.encoder = SmallEncoder(width, depth, stride)
        self.distillator = Distillator(width, joints, kernel)
        self.joints = joints
        # ``carry`` > 0: each joint's previous heatmap, blurred by a learned carry x carry filter
        # of its own (zero at init), is added too: where the joint was is a cue to where it is.
        self.carry = None
        if carry:
            if carry % 2 == 0:
                raise ValueError(f"carry must be odd (or 0: off), got {carry}")
            self.carry = nn.Conv2d(joints, joints, carry, padding=carry // 2, groups=joints)
            nn.init.zeros_(self.carry.weight)
            nn.init.zeros_(self.carry.bias)
        # The small network's own view of the frame, added to the matching response: a 1 x 1
        # heatmap head on the current features, zero at init (so DKD starts as pure matching).
        # Matching alone scored below the small encoder with a plain head (docs/benchmarks.md).
        self.prior = nn.Conv2d(width, joints, 1)
        nn.init.zeros_(self.prior.weight)
        nn.init.zeros_(self.prior.bias)

    def step(
        self, frame: torch.Tensor, previous: torch.Tensor, previous_features: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One frame (B, 3, S, S) given the previous heatmaps and features: (heatmaps,
        features) of this frame."""
        features = self.encoder(frame)
        kernels = self.distillator(previous, previous_features)
        return self.heatmaps(features, kernels, previous), features

    def heatmaps(
        self, features: torch.Tensor, kernels: torch.Tensor, previous: torch.Tensor
    ) -> torch.Tensor:
        """Matching response plus the prior head (plus the carried previous heatmaps (B, J, h, w)
        when ``carry`` is on): (B, J, h, w)."""
        out = self.distillator.respond(features, kernels) + self.prior(features)
        return out if self.carry is None else out + self.carry(previous)

    def forward_clip(self, clip: torch.Tensor, first_heatmaps: torch.Tensor) -> torch.Tensor:
        b, t = clip.shape[:2]
        features = self.encoder(clip.flatten(0, 1)).unflatten(0, (b, t))
        maps = [first_heatmaps]
        for i in range(1, t):
            kernels = self.distillator(maps[-1], features[:, i - 1])
            maps.append(self.heatmaps(features[:, i], kernels, maps[-1]))
        return torch.stack(maps, dim=1)


class TemporalDiscriminator(nn.Module):
    """Scores a heatmap sequence (B, T, J, h, w): one number per sequence, high for real.

    Two 3D convolutions over (time, y, x) with the joints as channels, then a mean and a
    linear score; it sees how heatmaps move from frame to frame, not only single frames."""

    def __init__(self, joints: int, width: int = 32):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv3d(joints, width, 3, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv3d(width, width, 3, stride=(1, 2, 2), padding=1),
            nn.LeakyReLU(0.2),
        )
        self.score = nn.Linear(width, 1)

    def forward(self, heatmaps: torch.Tensor) -> torch.Tensor:
        x = self.net(heatmaps.transpose(1, 2))  # (B, J, T, h, w) -> (B, W, T, h', w')
        return self.score(x.mean(dim=(2, 3, 4))).squeeze(-1)


def hinge_losses(real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Hinge GAN losses from discriminator scores (B,): (discriminator loss, the generator's
    adversarial loss on the same fake scores)."""
    d_loss = F.relu(1 - real).mean() + F.relu(1 + fake).mean()
    return d_loss, -fake.mean()


@dataclass
class StreamState:
    """What :class:`DKDStream` carries from one frame to the next (bounded: one frame's maps)."""

    heatmaps: torch.Tensor | None = None  # (B, J, h, w)
    features: torch.Tensor | None = None  # (B, C, h, w)
    since_init: int = 0


class DKDStream:
    """Frame-by-frame DKD inference with a state: the initializer on the first frame, every
    ``interval`` frames, and whenever the previous frame's mean peak confidence fell below
    ``min_confidence``; the small network otherwise. ``initializer`` maps crops (B, 3, S, S) to
    heatmaps (B, J, h, w). :meth:`reset` forgets the state (a scene cut, a new person)."""

    def __init__(self, model: DKDModel, initializer, interval: int = 10,
                 min_confidence: float = 0.0):  # fmt: skip
        if interval < 1:
            raise ValueError(f"interval must be >= 1, got {interval}")
        self.model, self.initializer = model, initializer
        self.interval, self.min_confidence = interval, min_confidence
        self.state = StreamState()
        self.initialised = 0  # frames that ran the initializer

    def reset(self) -> None:
        self.state = StreamState()

    def due(self) -> bool:
        """Whether the next frame runs the initializer: no state yet, ``interval`` frames since
        the last run, or the previous frame's mean peak below ``min_confidence``."""
        s = self.state
        if s.heatmaps is None or s.since_init >= self.interval:
            return True
        return bool(s.heatmaps.flatten(2).amax(-1).mean() < self.min_confidence)

    @torch.no_grad()
    def step(self, frame: torch.Tensor) -> torch.Tensor:
        """Heatmaps (B, J, h, w) of one frame (B, 3, S, S)."""
        return step_streams([self], frame)


@torch.no_grad()
def step_streams(streams: list[DKDStream], frames: torch.Tensor) -> torch.Tensor:
    """One frame of several :class:`DKDStream` at once: stream i's batch is ``frames[i : i + b]``
    with b its batch size (1 for a person followed alone; all streams share one model and
    initializer). The streams due for the initializer (:meth:`DKDStream.due`) run it in one call,
    the others the small network in one call. Heatmaps (sum of b, J, h, w), each stream's as its
    own :meth:`DKDStream.step` would give them (up to float rounding across batch sizes)."""
    model, init = streams[0].model, streams[0].initializer
    per = len(frames) if len(streams) == 1 else 1  # each stream's batch
    if len(frames) != per * len(streams):
        raise ValueError(f"{len(streams)} streams of batch 1 need {len(streams)} frames, "
                         f"got {len(frames)}")  # fmt: skip
    grouped = frames.unflatten(0, (len(streams), per))
    due = [s.due() for s in streams]
    out: list[torch.Tensor | None] = [None] * len(streams)
    for starting in (True, False):
        which = [i for i, d in enumerate(due) if d == starting]
        if not which:
            continue
        batch = grouped[which].flatten(0, 1)
        if starting:
            heatmaps, features = init(batch), model.encoder(batch)
        else:
            previous = torch.cat([streams[i].state.heatmaps for i in which])
            before = torch.cat([streams[i].state.features for i in which])
            heatmaps, features = model.step(batch, previous, before)
        for i, h, f in zip(which, heatmaps.split(per), features.split(per), strict=True):
            s = streams[i]
            s.state = StreamState(h, f, 1 if starting else s.state.since_init + 1)
            s.initialised += starting
            out[i] = h
    return torch.cat(out)


class SmallPoseNet(nn.Module):
    """The small encoder alone with a plain heatmap head (a 1 x 1 convolution): the baseline
    that shows what the distilled kernels add. Crops (B, 3, S, S) -> {"heatmaps": (B, J, h, w)}."""

    def __init__(self, joints: int, width: int = 32, depth: int = 2, stride: int = 4):
        super().__init__()
        self.encoder = SmallEncoder(width, depth, stride)
        self.head = nn.Conv2d(width, joints, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"heatmaps": self.head(self.encoder(x))}


# --- the model file: a head.pt with a "dkd" section ------------------------------------------------
def dkd_section(model: DKDModel, interval: int, min_confidence: float, metrics: dict) -> dict:
    """The ``dkd`` section that turns a 2D model file (the initializer's ``head.pt`` payload,
    :func:`~css_pose.models.pose_model.save_pose_model`) into a DKD model file: the small
    network's settings and weights, when to re-run the initializer, and its measured metrics."""
    enc = model.encoder
    return {
        "width": enc.out_channels,
        "depth": len(enc.net) - (enc.stride.bit_length() - 1),
        "stride": enc.stride,
        "kernel": model.distillator.size,
        "carry": 0 if model.carry is None else model.carry.kernel_size[0],
        "interval": int(interval),
        "min_confidence": float(min_confidence),
        "metrics": dict(metrics),
        "weights": model.state_dict(),
    }


def build_dkd(section: dict, joints: int, source: str = "") -> DKDModel:
    """The small network of a ``dkd`` section (:func:`dkd_section`), weights loaded strictly,
    in eval mode."""
    model = DKDModel(joints, section["width"], section["depth"], section["kernel"],
                     section["stride"], section.get("carry", 0))  # fmt: skip
    load_strict(model, section["weights"], source or "the dkd section")
    return model.eval()


def soft_keypoint_maps(
    heatmaps: torch.Tensor, weights: torch.Tensor, sigma: float, sharpness: float = 20.0
) -> torch.Tensor:
    """What the temporal discriminator sees of a prediction: heatmaps (B, J, h, w) -> Gaussians
    of ``sigma`` cells, peak 1, at each joint's soft-argmax (a spatial softmax of ``sharpness``
    x the heatmap), zero for joints of weight 0 in ``weights`` (B, J). The ground-truth targets
    have exactly this form, so the discriminator can judge only where the joints are from frame
    to frame, not how the heatmaps look. Differentiable."""
    b, j, h, w = heatmaps.shape
    prob = torch.softmax(sharpness * heatmaps.flatten(2), dim=-1).view(b, j, h, w)
    xs = torch.arange(w, dtype=heatmaps.dtype, device=heatmaps.device)
    ys = torch.arange(h, dtype=heatmaps.dtype, device=heatmaps.device)
    centres = torch.stack([(prob.sum(2) * xs).sum(-1), (prob.sum(3) * ys).sum(-1)], dim=-1)
    return gaussian_heatmaps(centres, weights, (w, h), sigma)
