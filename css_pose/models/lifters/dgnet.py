"""DG-Net-style lifter: dynamic spatial and temporal graphs over per-joint features.

Our design from the DG-Net abstract (shared/methods.md, section 4); the paper's details are not
available, so this is "DG-Net-style", not a reproduction. Each block runs

    DSG (per-frame graph conv, affinity from feature distances + learnable skeleton adjacency)
    -> DTG (aggregation from t-1 and t+1, affinity from the cosine similarity of joint velocities)
    -> temporal conv (per joint, width w, stride w: the dilated conv evaluated at the centre)

with BN, ReLU, dropout and a residual connection. Features stay per joint, (B, T, J, C).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from css_pose.models.lifters.base import WindowLifter
from css_pose.skeleton import NUM_JOINTS, PARENTS, ROOT


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

    A_dyn(t)[i] = softmax_j(-||h_i(t) - h_j(t)|| / sqrt(C)) restricted to the k nearest joints;
    A(t) = A_dyn(t) + A_skel with A_skel a learnable copy of :func:`skeleton_adjacency`;
    output W (A(t) h(t)). Input and output (B, T, J, C).
    """

    def __init__(self, channels: int, k: int = 4, joints: int = NUM_JOINTS):
        super().__init__()
        if not 1 <= k <= joints:
            raise ValueError(f"k must be in [1, {joints}], got {k}")
        self.k = k
        self.skeleton = nn.Parameter(skeleton_adjacency()[:joints, :joints].clone())
        self.proj = nn.Linear(channels, channels)

    def affinity(self, h: torch.Tensor) -> torch.Tensor:
        """(B, T, J, C) -> (B, T, J, J) dynamic affinity; rows sum to 1, k non-zeros per row."""
        sq = (h * h).sum(-1)
        d2 = sq[..., :, None] + sq[..., None, :] - 2 * torch.einsum("btic,btjc->btij", h, h)
        dist = d2.clamp_min(1e-8).sqrt() / math.sqrt(h.shape[-1])
        return topk_softmax(-dist, self.k)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        a = self.affinity(h) + self.skeleton
        return self.proj(torch.einsum("btij,btjc->btic", a, h))


class DynamicTemporalGraph(nn.Module):
    """Aggregation from the previous and next time step over a velocity-based joint affinity.

    v_j(t) = p_j(t+1) - p_j(t-1) from positions p (the input 2D at this block's time steps, edge
    frames repeated). A_+(t)[i, j] = (topk_softmax_j(cos(v_i(t), v_j(t+1)) / tau) + [i == j]) / 2,
    likewise A_- with t-1: joints that move alike exchange features across time, and every joint
    keeps its own temporal edge. Output W [h(t), A_- h(t-1), A_+ h(t+1)]. h: (B, T, J, C).
    """

    def __init__(self, channels: int, k: int = 4, tau: float = 0.1, joints: int = NUM_JOINTS):
        super().__init__()
        if not 1 <= k <= joints or tau <= 0:
            raise ValueError(f"need 1 <= k <= {joints} and tau > 0, got k={k}, tau={tau}")
        self.k, self.tau = k, tau
        self.register_buffer("eye", torch.eye(joints), persistent=False)
        self.proj = nn.Linear(3 * channels, channels)

    def affinity(self, pos: torch.Tensor, step: int) -> torch.Tensor:
        """pos (B, T, J, D) -> A_step (B, T, J, J) between joints at t and t + step (+-1);
        rows sum to 1."""
        v = F.normalize(_shift(pos, 1) - _shift(pos, -1), dim=-1, eps=1e-6)
        cos = torch.einsum("btid,btjd->btij", v, _shift(v, step))
        return (topk_softmax(cos / self.tau, self.k) + self.eye) / 2

    def forward(self, h: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        prev = torch.einsum("btij,btjc->btic", self.affinity(pos, -1), _shift(h, -1))
        nxt = torch.einsum("btij,btjc->btic", self.affinity(pos, 1), _shift(h, 1))
        return self.proj(torch.cat([h, prev, nxt], -1))


class DGBlock(nn.Module):
    """DSG -> DTG -> temporal conv (width w, stride w), each with BN + ReLU, dropout, residual.

    (B, T, J, C), pos (B, T, J, 2) -> (B, T / w, J, C), pos at the kept (centre) time steps.
    """

    def __init__(self, channels: int, width: int, k_spatial: int, k_temporal: int, tau: float,
                 dropout: float, joints: int):  # fmt: skip
        super().__init__()
        self.width = width
        self.dsg = DynamicSpatialGraph(channels, k_spatial, joints)
        self.dtg = DynamicTemporalGraph(channels, k_temporal, tau, joints)
        self.conv = nn.Conv1d(channels, channels, width, stride=width, bias=False)
        self.bn = nn.ModuleList(nn.BatchNorm1d(channels) for _ in range(3))
        self.drop = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b = h.shape[0]
        y = F.relu(_batch_norm(self.bn[0], self.dsg(h)))
        y = F.relu(_batch_norm(self.bn[1], self.dtg(y, pos)))
        y = self.conv(rearrange(y, "b t j c -> (b j) c t"))
        y = rearrange(y, "(b j) c t -> b t j c", b=b)
        y = self.drop(F.relu(_batch_norm(self.bn[2], y)))
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
    k_spatial, k_temporal: top-k of the DSG / DTG affinities; tau: DTG softmax temperature.
    """

    def __init__(
        self,
        filter_widths: list[int] | tuple[int, ...] = (3, 3, 3),
        channels: int = 128,
        k_spatial: int = 4,
        k_temporal: int = 4,
        tau: float = 0.1,
        dropout: float = 0.1,
        joints: int = NUM_JOINTS,
    ):
        super().__init__(filter_widths, joints)
        w0 = filter_widths[0]
        self.embed = nn.Conv1d(2, channels, w0, stride=w0)
        self.joint_embed = nn.Parameter(torch.randn(joints, channels) * 0.1)
        self.blocks = nn.ModuleList(
            DGBlock(channels, w, k_spatial, k_temporal, tau, dropout, joints)
            for w in filter_widths[1:]
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
