"""The flow-aligned temporal 2D pose model (Pfister et al., ICCV 2015; shared/methods.md
section 2): a per-frame heatmap network on a clip of person crops, the neighbours' heatmaps warped
onto the centre crop by optical flow and pooled (:class:`TemporalPoseModel`); its clip inputs
(:func:`clip_frame_indices`, :func:`crop_clip_flows`), inference (:func:`predict_clip`) and cost
(:func:`temporal_cost`). Training is :mod:`css_pose.temporal2d`'s."""

from __future__ import annotations

import numpy as np
import torch
from einops import rearrange
from torch import nn
from torch.nn import functional as F

from css_pose.flip import mirror_flows, unflip_outputs
from css_pose.flow import SKELETON, clip_flows, resize_flow, skeleton_flow, warp
from css_pose.models.heads import ParametricPooling, average_pooling
from css_pose.models.heads.cost import gflops, num_params

# Flow channels at the input are px / FLOW_INPUT_PX: a few px of limb motion gives O(1) inputs,
# like the normalised image channels.
FLOW_INPUT_PX = 4.0


# --- data -----------------------------------------------------------------------------------------
def clip_frame_indices(t: int, start: int, stop: int, frames: int, step: int) -> np.ndarray:
    """(2n + 1,) int64 video frames ``t + k * step``, k = -n .. n, clamped to the track's span
    [start, stop): near the first or last frame of a video (of a person's track) the edge frame
    repeats, so the clip keeps its length and its centre."""
    return np.clip(t + step * np.arange(-frames, frames + 1), start, stop - 1).astype(np.int64)


def crop_clip_flows(
    crops: np.ndarray,
    frame_idx: np.ndarray,
    centre: int,
    preset: str,
    keypoints: np.ndarray | None = None,
) -> np.ndarray:
    """(T, S, S, 2) float32 px: the flow aligning each crop onto ``crops[centre]``, once per
    distinct frame (a repeated edge frame is not recomputed; the centre's own frame gets exact
    zeros). crops (T, S, S, 3) uint8, frame_idx (T,) video frames. preset: a DIS preset, or
    ``"skeleton"``: the true skeleton's motion (:func:`css_pose.flow.skeleton_flow`), from
    keypoints (T, J, 2) crop px, a diagnostic for synthetic data."""
    if preset == SKELETON:
        if keypoints is None:
            raise ValueError(
                "temporal.flow_preset=skeleton is the true motion of labelled synthetic clips; "
                "it cannot run on video without labels: use a DIS preset (ultrafast, fast, medium)"
            )
        size = crops.shape[1]
        return np.stack([skeleton_flow(keypoints[centre], kp, size) for kp in keypoints])
    _, first, inverse = np.unique(frame_idx, return_index=True, return_inverse=True)
    c = int(inverse[centre])
    flows = clip_flows(crops[first], range(-c, len(first) - c), preset, centre=c)
    return np.stack([flows[int(i) - c] for i in inverse])


# --- model ----------------------------------------------------------------------------------------
def _first_conv(encoder: nn.Module) -> nn.Conv2d:
    return next(m for m in encoder.modules() if isinstance(m, nn.Conv2d))


class TemporalPoseModel(nn.Module):
    """Per-frame heatmap network on a clip, neighbours' heatmaps warped onto the centre and pooled.

    Args:
        encoder: :class:`~css_pose.models.encoders.Encoder`.
        head: :class:`~css_pose.models.heads.HeatmapHead` on it (one or two stages).
        frames: n neighbours each side; T = 2n + 1, the centre frame at index n.
        pooling: "parametric" (one :class:`ParametricPooling` per stage), "average" (over the
            valid warped samples) or "none" (the centre's own heatmaps).
        warp: align the neighbours by flow before pooling; False pools them unaligned.
        input_flow: instead, run the network on the centre crop only with the flows to t - 1
            and t + 1 (clip indices n - 1, n + 1) as 4 more input channels: ``flow_conv``, a
            conv like the encoder's first, zero-initialised, whose output is added to that
            conv's (the same as 4 more input channels of it), so the encoder is unchanged at init.
        centre_weight: parametric pooling's initial weight of the centre frame; the other
            2n frames share the rest equally (1.0: the centre frame's heatmaps; 1 / T: the
            plain average, unmasked).
        warp_scale: warp the neighbours' heatmaps on a grid this many times finer (bilinear
            upsampling, the flow resized to it, then the mean of each s x s block), so a joint
            moves by the flow near it rather than by the flow at its cell's centre. 1: on the
            heatmap grid.

    ``forward(clip (B, T, 3, S, S) in [0, 1], flows (B, T, 2, S, S) px)`` returns ``heatmaps``
    (B, J, h, w), the pooled last stage; ``stages``, every pooled stage; ``frame_stages``, every
    stage's per-frame heatmaps (B, T', J, h, w), T' = T (1 with input_flow).
    """

    def __init__(
        self,
        encoder: nn.Module,
        head: nn.Module,
        frames: int,
        pooling: str = "parametric",
        warp: bool = True,
        input_flow: bool = False,
        centre_weight: float = 1.0,
        warp_scale: int = 1,
    ):
        super().__init__()
        if frames < 1:
            raise ValueError(f"frames must be >= 1 neighbour each side, got {frames}")
        if input_flow and (frames != 1 or pooling != "none"):
            raise ValueError("input_flow needs frames=1 and pooling='none'")
        self.encoder, self.head = encoder, head
        self.num_frames, self.centre = 2 * frames + 1, frames
        self.pooling, self.warp, self.input_flow = pooling, warp, input_flow
        self.warp_scale = warp_scale
        num_stages = 1 if head.fusion is None else 2
        # Everything the per-frame network does not have, saved beside it in head.pt.
        self.temporal = nn.ModuleDict()
        if pooling == "parametric":
            side = (1.0 - centre_weight) / (self.num_frames - 1)
            self.temporal["pool"] = nn.ModuleList(
                ParametricPooling(self.num_frames, head.num_joints, centre_weight, side)
                for _ in range(num_stages)
            )
        if input_flow:
            conv = _first_conv(encoder)
            flow_conv = nn.Conv2d(
                4, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, bias=False
            )
            nn.init.zeros_(flow_conv.weight)
            self.temporal["flow_conv"] = flow_conv

    @classmethod
    def from_config(cls, encoder, head, temporal) -> TemporalPoseModel:
        """From the ``temporal`` config section (a DictConfig or dict)."""
        return cls(
            encoder,
            head,
            temporal["frames"],
            temporal["pooling"],
            temporal["warp"],
            temporal["input_flow"],
            temporal.get("centre_weight", 1.0),  # head.pt files before this key: 1.0
            temporal.get("warp_scale", 1),
        )

    def encoder_input(self, clip: torch.Tensor, flows: torch.Tensor) -> torch.Tensor:
        """(B * T, 3, S, S) crops; with input_flow (B, 7, S, S): the centre crop, then the flows
        to t - 1 and t + 1 in units of FLOW_INPUT_PX."""
        if not self.input_flow:
            return rearrange(clip, "b t c h w -> (b t) c h w")
        c = self.centre
        flow = rearrange(flows[:, [c - 1, c + 1]], "b k d h w -> b (k d) h w").to(clip.dtype)
        return torch.cat((clip[:, c], flow / FLOW_INPUT_PX), dim=1)

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Encoder stage maps of :meth:`encoder_input`'s output."""
        if not self.input_flow:
            return self.encoder.forward_stages(x)
        flow_conv = self.temporal["flow_conv"]
        hook = _first_conv(self.encoder).register_forward_hook(
            lambda _module, _inputs, out: out + flow_conv(x[:, 3:])
        )
        try:
            return self.encoder.forward_stages(x[:, :3])
        finally:
            hook.remove()

    def decode_stages(self, stages: list, flows: torch.Tensor) -> dict[str, torch.Tensor | list]:
        """Stage maps of B * T' crops (``None`` for maps the head does not read) -> outputs."""
        per_frame = [
            rearrange(m, "(b t) j h w -> b t j h w", b=flows.shape[0])
            for m in self.head(stages)["stages"]
        ]
        pooled = [self._pool(i, maps, flows) for i, maps in enumerate(per_frame)]
        return {"heatmaps": pooled[-1], "stages": pooled, "frame_stages": per_frame}

    def forward(self, clip: torch.Tensor, flows: torch.Tensor) -> dict[str, torch.Tensor | list]:
        return self.decode_stages(self.encode(self.encoder_input(clip, flows)), flows)

    def align(self, maps: torch.Tensor, flows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-frame heatmaps (B, T, J, h, w) and flows (B, T, 2, S, S) px -> aligned heatmaps
        (B, T, J, h, w) and valid (B, T, 1, h, w) bool. The centre is not warped (warping by a
        zero flow still rounds); a neighbour's sample outside its map is 0 and invalid."""
        b, t = maps.shape[:2]
        others = [k for k in range(t) if k != self.centre]
        side = rearrange(maps[:, others], "b t j h w -> (b t) j h w")
        if self.warp:
            flow = rearrange(flows[:, others], "b t d h w -> (b t) d h w").float()
            s = self.warp_scale
            if s > 1:
                side = F.interpolate(side, scale_factor=s, mode="bilinear", align_corners=False)
            side, ok = warp(side, resize_flow(flow, side.shape[-2:]))
            if s > 1:  # back to the heatmap grid; a cell is valid where most of it is
                side, ok = F.avg_pool2d(side, s), F.avg_pool2d(ok.float(), s) >= 0.5
        else:
            ok = torch.ones_like(side[:, :1], dtype=torch.bool)
        side = rearrange(side, "(b t) j h w -> b t j h w", b=b)
        ok = rearrange(ok, "(b t) one h w -> b t one h w", b=b)
        c = self.centre
        aligned = torch.cat((side[:, :c], maps[:, c : c + 1], side[:, c:]), dim=1)
        centre_ok = torch.ones_like(ok[:, :1])
        return aligned, torch.cat((ok[:, :c], centre_ok, ok[:, c:]), dim=1)

    def _pool(self, stage: int, maps: torch.Tensor, flows: torch.Tensor) -> torch.Tensor:
        if maps.shape[1] == 1:  # input_flow: only the centre went through the network
            return maps[:, 0]
        if self.pooling == "none":
            return maps[:, self.centre]
        aligned, valid = self.align(maps, flows)
        if self.pooling == "average":
            return average_pooling(aligned, valid)
        return self.temporal["pool"][stage](aligned)


@torch.no_grad()
def predict_clip(
    model: TemporalPoseModel, codec, clip: torch.Tensor, flows: torch.Tensor, flip_test: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Clips (B, T, 3, S, S) in [0, 1] and flows (B, T, 2, S, S) px -> keypoints (B, J, 2) crop px
    of the centre frame and scores (B, J); eval mode. The flip test averages the pooled heatmaps
    with those of the mirrored clip (crops and flows mirrored), mapped back."""
    model.eval()
    heatmaps = model(clip, flows)["heatmaps"]
    if flip_test:
        mirrored = model(clip.flip(-1), mirror_flows(flows))
        heatmaps = (heatmaps + unflip_outputs(mirrored)["heatmaps"]) / 2
    return codec.decode({"heatmaps": heatmaps})


def temporal_cost(model: TemporalPoseModel, size: int) -> dict[str, float]:
    """GFLOPs and parameters of one prediction (all T crops; flow not included), with the keys
    of :func:`~css_pose.models.heads.head_cost`; eval mode, modes restored afterwards."""
    device = next(model.parameters()).device
    clip = torch.zeros(1, model.num_frames, 3, size, size, device=device)
    flows = torch.zeros(1, model.num_frames, 2, size, size, device=device)
    training = model.training
    model.eval()
    try:
        total = gflops(model, clip, flows)
        encoder = gflops(lambda: model.encode(model.encoder_input(clip, flows)))
    finally:
        model.train(training)
    head_params = num_params(model.head) + num_params(model.temporal)
    encoder_params = num_params(model.encoder)
    return {
        "head_gflops": total - encoder,
        "encoder_gflops": encoder,
        "total_gflops": total,
        "head_params": head_params,
        "encoder_params": encoder_params,
        "total_params": head_params + encoder_params,
    }
