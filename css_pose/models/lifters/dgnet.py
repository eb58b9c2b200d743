"""DG-Net-style lifter: dynamic spatial and temporal graphs over per-joint features.

Our design from the DG-Net abstract (shared/methods.md, section 4); the paper's details were not
available to us, so this is "DG-Net-style", not a reproduction. Each stage runs ``depth`` times

    DSG (per-frame graph conv; affinity from pairwise joint distances in the input 2D and/or the
        layer's features, top-k, plus a learnable skeleton prior)
    -> DTG (aggregation from t-1 and t+1; affinity from the cosine similarity of joint
        velocities, top-k, plus the identity temporal edge)

with BN + ReLU after each, then one temporal conv (per joint, width w, stride w: the dilated conv
evaluated at the centre), dropout and a residual connection. Features stay per joint,
(B, T, J, C).

Ablation switches (same parameter count, except the J x J prior): ``dsg=False`` keeps only the
skeleton prior (a fixed-topology, learnable-weight GCN), ``skeleton=False`` only the dynamic
affinity, ``dtg=False`` only the identity temporal edges.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from css_pose.models.lifters.base import WindowLifter
from css_pose.skeleton import NUM_JOINTS, PARENTS, ROOT

DISTANCES = ("features", "input", "both")


def skeleton_adjacency(parents: tuple[int, ...] = PARENTS) -> torch.Tensor:
    """(J, J) symmetric-normalised skeleton adjacency with self loops, D^-1/2 (A + I) D^-1/2."""
    j = len(parents)
    a = torch.eye(j)
    for child, parent in enumerate(parents):
        if parent >= 0:
            a[child, parent] = a[parent, child] = 1.0
    d = a.sum(1).rsqrt()
    return d[:, None] * a * d[None, :]


def topk_softmax(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Softmax over the last axis restricted to the k largest logits: (..., N) -> (..., N) with
    exactly k non-zero entries per row (ties broken by index), each row summing to 1."""
    k = min(k, logits.shape[-1])
    idx = logits.topk(k, dim=-1).indices
    keep = torch.zeros_like(logits, dtype=torch.bool).scatter_(-1, idx, True)
    return logits.masked_fill(~keep, float("-inf")).softmax(-1)


def pairwise_distance(x: torch.Tensor) -> torch.Tensor:
    """(..., J, D) -> (..., J, J) Euclidean distances between the J rows (0 on the diagonal)."""
    sq = (x * x).sum(-1)
    d2 = sq[..., :, None] + sq[..., None, :] - 2 * x @ x.transpose(-1, -2)
    return d2.clamp_min(1e-8).sqrt()


def _shift(x: torch.Tensor, step: int) -> torch.Tensor:
    """x(t + step) along axis 1 with the edge frame repeated: (B, T, ...) -> (B, T, ...)."""
    if step > 0:
        return torch.cat([x[:, step:], x[:, -1:].expand_as(x[:, :step])], 1)
    return torch.cat([x[:, :1].expand_as(x[:, :-step]), x[:, :step]], 1)


def _batch_norm(bn: nn.BatchNorm1d, x: torch.Tensor) -> torch.Tensor:
    """BatchNorm1d over the channel axis of (..., C)."""
    return bn(x.reshape(-1, x.shape[-1])).view_as(x)


class DynamicSpatialGraph(nn.Module):
    """Per-frame graph convolution over joints with a dynamic + skeleton affinity.

    Logits: -||h_i(t) - h_j(t)|| / sqrt(C) (``distance="features"``), -beta ||p_i(t) - p_j(t)||
    over the input 2D p with a learned beta > 0 (``"input"``), or their sum (``"both"``);
    A_dyn(t) = softmax over the k largest logits of each row; A(t) = A_dyn(t) + A_skel with A_skel
    a learnable copy of :func:`skeleton_adjacency`. ``dynamic=False`` drops A_dyn,
    ``prior=False`` drops A_skel (neither: A = I). Output W (A(t) h(t)). h (B, T, J, C), pos
    (B, T, J, 2) -> (B, T, J, C).
    """

    def __init__(self, channels: int, k: int = 4, joints: int = NUM_JOINTS, dynamic: bool = True,
                 prior: bool = True, distance: str = "features"):  # fmt: skip
        super().__init__()
        if not 1 <= k <= joints:
            raise ValueError(f"k must be in [1, {joints}], got {k}")
        if distance not in DISTANCES:
            raise ValueError(f"distance must be one of {DISTANCES}, got {distance!r}")
        self.k, self.dynamic, self.distance = k, dynamic, distance
        self.skeleton = (
            nn.Parameter(skeleton_adjacency()[:joints, :joints].clone()) if prior else None
        )
        self.log_beta = nn.Parameter(torch.tensor(math.log(10.0)))  # input-distance sharpness
        self.register_buffer("eye", torch.eye(joints), persistent=False)
        self.proj = nn.Linear(channels, channels)
        self.record: list | None = None  # a list: forward appends its affinities (B, T, J, J)

    def affinity(self, h: torch.Tensor, pos: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, J, C) [, pos (B, T, J, 2)] -> (B, T, J, J) dynamic affinity; rows sum to 1, k
        non-zeros per row."""
        logits = 0
        if self.distance in ("features", "both"):
            logits = -pairwise_distance(h) / math.sqrt(h.shape[-1])
        if self.distance in ("input", "both"):
            if pos is None:
                raise ValueError(f"distance={self.distance!r} needs the input 2D (pos)")
            logits = logits - self.log_beta.exp() * pairwise_distance(pos)
        return topk_softmax(logits, self.k)

    def adjacency(self, h: torch.Tensor, pos: torch.Tensor | None = None) -> torch.Tensor:
        """The affinity the convolution uses: A_dyn + A_skel, either, or I; (B, T, J, J)."""
        a = self.affinity(h, pos) if self.dynamic else torch.zeros_like(self.eye)
        if self.skeleton is not None:
            a = a + self.skeleton
        elif not self.dynamic:
            a = a + self.eye
        return a.expand(*h.shape[:2], *a.shape[-2:])

    def forward(self, h: torch.Tensor, pos: torch.Tensor | None = None) -> torch.Tensor:
        a = self.adjacency(h, pos)
        if self.record is not None:
            self.record.append(a.detach())
        return self.proj(torch.einsum("btij,btjc->btic", a, h))


class DynamicTemporalGraph(nn.Module):
    """Aggregation from the previous and next time step over a velocity-based joint affinity.

    v_j(t) = p_j(t+1) - p_j(t-1) from positions p (the input 2D at this block's time steps, edge
    frames repeated). A_+(t)[i, j] = (topk_softmax_j(cos(v_i(t), v_j(t+1)) / tau) + [i == j]) / 2,
    likewise A_- with t-1: joints that move alike exchange features across time, and every joint
    keeps its own temporal edge. ``dynamic=False``: A_+- = I (the identity edges only). Output
    W [h(t), A_- h(t-1), A_+ h(t+1)]. h: (B, T, J, C).
    """

    def __init__(self, channels: int, k: int = 4, tau: float = 0.1, joints: int = NUM_JOINTS,
                 dynamic: bool = True):  # fmt: skip
        super().__init__()
        if not 1 <= k <= joints or tau <= 0:
            raise ValueError(f"need 1 <= k <= {joints} and tau > 0, got k={k}, tau={tau}")
        self.k, self.tau, self.dynamic = k, tau, dynamic
        self.register_buffer("eye", torch.eye(joints), persistent=False)
        self.proj = nn.Linear(3 * channels, channels)
        self.record: list | None = None  # a list: forward appends (A_-, A_+), each (B, T, J, J)

    def affinity(self, pos: torch.Tensor, step: int) -> torch.Tensor:
        """pos (B, T, J, D) -> A_step (B, T, J, J) between joints at t and t + step (+-1);
        rows sum to 1."""
        if not self.dynamic:
            return self.eye.expand(*pos.shape[:2], *self.eye.shape)
        v = F.normalize(_shift(pos, 1) - _shift(pos, -1), dim=-1, eps=1e-6)
        cos = torch.einsum("btid,btjd->btij", v, _shift(v, step))
        return (topk_softmax(cos / self.tau, self.k) + self.eye) / 2

    def forward(self, h: torch.Tensor, pos: torch.Tensor, affinity=None) -> torch.Tensor:
        """h (B, T, J, C), pos (B, T, J, 2); ``affinity``: (A_-, A_+) when already computed from
        the same pos (the layers of one block share them)."""
        a_prev, a_next = affinity or (self.affinity(pos, -1), self.affinity(pos, 1))
        if self.record is not None:
            self.record.append((a_prev.detach(), a_next.detach()))
        prev = torch.einsum("btij,btjc->btic", a_prev, _shift(h, -1))
        nxt = torch.einsum("btij,btjc->btic", a_next, _shift(h, 1))
        return self.proj(torch.cat([h, prev, nxt], -1))


class DGBlock(nn.Module):
    """``depth`` x (DSG -> BN, ReLU -> DTG -> BN, ReLU), then a temporal conv (width w, stride
    w), BN, ReLU, dropout and a residual connection.

    (B, T, J, C), pos (B, T, J, 2) -> (B, T / w, J, C), pos at the kept (centre) time steps.
    ``graph`` holds the DSG / DTG options (:class:`DGNetLifter`).
    """

    def __init__(self, channels: int, width: int, depth: int, dropout: float, joints: int,
                 graph: dict):  # fmt: skip
        super().__init__()
        self.width = width
        self.dsg = nn.ModuleList(
            DynamicSpatialGraph(
                channels,
                graph["k_spatial"],
                joints,
                graph["dsg"],
                graph["skeleton"],
                graph["distance"],
            )  # fmt: skip
            for _ in range(depth)
        )
        self.dtg = nn.ModuleList(
            DynamicTemporalGraph(channels, graph["k_temporal"], graph["tau"], joints, graph["dtg"])
            for _ in range(depth)
        )
        self.conv = nn.Conv1d(channels, channels, width, stride=width, bias=False)
        self.bn = nn.ModuleList(nn.BatchNorm1d(channels) for _ in range(2 * depth + 1))
        self.drop = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, y = h.shape[0], h
        # Every DTG of the block has the same k and tau: its affinity depends on pos alone.
        temporal = (self.dtg[0].affinity(pos, -1), self.dtg[0].affinity(pos, 1))
        for i, (dsg, dtg) in enumerate(zip(self.dsg, self.dtg)):
            y = F.relu(_batch_norm(self.bn[2 * i], dsg(y, pos)))
            y = F.relu(_batch_norm(self.bn[2 * i + 1], dtg(y, pos, temporal)))
        y = self.conv(rearrange(y, "b t j c -> (b j) c t"))
        y = rearrange(y, "(b j) c t -> b t j c", b=b)
        y = self.drop(F.relu(_batch_norm(self.bn[-1], y)))
        centre = slice(self.width // 2, None, self.width)
        return h[:, centre] + y, pos[:, centre]


class DGNetLifter(WindowLifter):
    """DG-Net-style lifter: (B, T, J, 2) normalised 2D -> (B, J, 3) root-relative 3D of the centre
    frame (root exactly 0), in the units of the targets.

    T = receptive_field() = prod(filter_widths), with the temporal structure of
    :class:`TemporalConvLifter`: a per-joint embedding conv (width = stride = filter_widths[0]),
    then one :class:`DGBlock` per further width. Block i works at time stride
    prod(filter_widths[:i + 1]) of the input, so its DTG velocities span that stride (the
    embedding conv sees the frame-to-frame motion).
    depth: DSG -> DTG pairs per block; k_spatial, k_temporal: top-k of the DSG / DTG
    affinities; tau: DTG softmax temperature; distance: what the DSG affinity compares
    ("features", "input" 2D or "both"); dsg, dtg, skeleton: the ablation switches (module
    docstring).
    """

    def __init__(
        self,
        filter_widths: list[int] | tuple[int, ...] = (3, 3, 3),
        channels: int = 128,
        depth: int = 2,
        k_spatial: int = 4,
        k_temporal: int = 4,
        tau: float = 0.1,
        dropout: float = 0.1,
        distance: str = "both",
        dsg: bool = True,
        dtg: bool = True,
        skeleton: bool = True,
        joints: int = NUM_JOINTS,
    ):
        super().__init__(filter_widths, joints)
        w0 = filter_widths[0]
        graph = dict(k_spatial=k_spatial, k_temporal=k_temporal, tau=tau, distance=distance,
                     dsg=dsg, dtg=dtg, skeleton=skeleton)  # fmt: skip
        self.embed = nn.Conv1d(2, channels, w0, stride=w0)
        self.joint_embed = nn.Parameter(torch.randn(joints, channels) * 0.1)
        self.blocks = nn.ModuleList(
            DGBlock(channels, w, depth, dropout, joints, graph) for w in filter_widths[1:]
        )
        self.head = nn.Linear(channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        w0 = self.filter_widths[0]
        h = self.embed(rearrange(x, "b t j d -> (b j) d t"))
        h = rearrange(h, "(b j) c t -> b t j c", b=x.shape[0]) + self.joint_embed
        pos = x[:, w0 // 2 :: w0]
        for block in self.blocks:
            h, pos = block(h, pos)
        y = self.head(h[:, 0])  # (B, J, 3)
        return y - y[:, ROOT : ROOT + 1]

    @torch.no_grad()
    def affinities(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The affinities of the first block's first DSG and DTG on the windows x (B, T, J, 2),
        in eval mode: {"spatial": (B, T1, J, J) the A that DSG convolves with, "temporal_prev",
        "temporal_next": (B, T1, J, J)}, T1 = T / filter_widths[0] time steps."""
        dsg, dtg = self.blocks[0].dsg[0], self.blocks[0].dtg[0]
        dsg.record, dtg.record = [], []
        was_training = self.training
        try:
            self.eval()(x)
            spatial, (prev, nxt) = dsg.record[0], dtg.record[0]
        finally:
            dsg.record = dtg.record = None
            self.train(was_training)
        return {"spatial": spatial, "temporal_prev": prev, "temporal_next": nxt}
