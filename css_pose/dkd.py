"""Training dynamic kernel distillation on clips (issue 17; the model: :mod:`css_pose.models.dkd`).

The large initializer is a trained, frozen 2D heatmap model (``train_head.py``'s ``head.pt``). Its
heatmaps of each clip's first frame are computed once (:func:`initial_heatmaps`). The small
network then learns to carry them through the clip (:func:`train_dkd`):
- the loss is the heatmap codec's loss on every later frame;
- with ``adv_weight`` > 0, a :class:`~css_pose.models.dkd.TemporalDiscriminator` is trained
  against it. It sees the ground-truth target sequences as real and the predicted ones as fake,
  with hinge losses, and the small network's loss gains ``adv_weight`` x its adversarial loss.
  The predictions reach it as Gaussians at their soft-argmax joints
  (:func:`~css_pose.models.dkd.soft_keypoint_maps`), the form of the targets. Raw predicted
  heatmaps differ from the targets in shape (a sigmoid's background), and on them the
  discriminator won outright within a few hundred steps, judging looks instead of motion.

Both players' losses are logged per step. When the discriminator wins outright, the training
stops with :class:`DiscriminatorWinsError` and says what to change. It wins outright when its
loss stays below ``win_loss`` for ``win_steps`` steps in a row.

Clips: :class:`~css_pose.data.clips.Clips` (crops (N, T, 3, S, S) uint8, keypoints (N, T, J, 2)
crop px, visibility (N, T, J)), read by :func:`css_pose.data.clips.load_clips`.
"""

from __future__ import annotations

import sys

import torch
from tqdm import tqdm

from css_pose.models.dkd import DKDModel, TemporalDiscriminator, hinge_losses, soft_keypoint_maps


class DiscriminatorWinsError(RuntimeError):
    """The temporal discriminator separated real from predicted sequences for too long."""


@torch.no_grad()
def initial_heatmaps(large, frames: torch.Tensor, batch: int, device) -> torch.Tensor:
    """The initializer's heatmaps (N, J, h, w) of crops (N, 3, S, S) uint8 or float in [0, 1]."""
    large.eval()
    out = []
    for chunk in frames.split(batch):
        x = chunk.float().div(255.0) if chunk.dtype == torch.uint8 else chunk
        out.append(large(x.to(device))["heatmaps"].float().cpu())
    return torch.cat(out)


def train_dkd(
    model: DKDModel,
    clips,
    first: torch.Tensor,
    codec,
    steps: int,
    batch: int = 32,
    lr: float = 2e-3,
    seed: int = 0,
    adv_weight: float = 0.0,
    win_loss: float = 0.05,
    win_steps: int = 200,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> dict[str, list[float]]:
    """Train ``model`` (and, with ``adv_weight`` > 0, a discriminator) for ``steps`` steps of
    ``batch`` clips; ``first`` (N, J, h, w) holds the initializer's heatmaps of each clip's frame
    0. AdamW, cosine schedule, random mirroring off (the initializer's heatmaps are of the
    unmirrored crop). Returns the per-step losses: ``pose``, and ``disc`` and ``adversarial``
    when the discriminator is on.

    Raises:
        DiscriminatorWinsError: its loss stayed below ``win_loss`` for ``win_steps`` steps.
    """
    gen = torch.Generator().manual_seed(seed)
    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1))
    disc = d_opt = None
    if adv_weight > 0:
        disc = TemporalDiscriminator(model.joints).to(device)
        d_opt = torch.optim.Adam(disc.parameters(), lr=lr, betas=(0.5, 0.9))
    history: dict[str, list[float]] = {"pose": []}
    if disc is not None:
        history.update(disc=[], adversarial=[])
    winning = 0
    bar = tqdm(range(steps), desc="DKD", file=sys.stderr, disable=not progress)
    for _ in bar:
        idx = torch.randint(len(clips), (batch,), generator=gen)
        clip = clips.images(idx).to(device)
        kp, vis = clips.keypoints[idx].to(device), clips.visibility[idx].to(device)
        pred = model.forward_clip(clip, first[idx].to(device))  # (B, T, J, h, w)
        later = pred[:, 1:].flatten(0, 1)
        targets = codec.encode(kp[:, 1:].flatten(0, 1), vis[:, 1:].flatten(0, 1))
        pose = sum(codec.loss({"heatmaps": later}, targets).values())
        loss = pose
        if disc is not None:
            real = targets["heatmaps"].unflatten(0, (batch, -1))
            fake = soft_keypoint_maps(later, targets["heatmap_weights"], codec.sigma)
            fake = fake.unflatten(0, (batch, -1))
            d_loss, _ = hinge_losses(disc(real), disc(fake.detach()))
            d_opt.zero_grad(set_to_none=True)
            d_loss.backward()
            d_opt.step()
            _, adversarial = hinge_losses(disc(real).detach(), disc(fake))
            loss = pose + adv_weight * adversarial
            history["disc"].append(d_loss.item())
            history["adversarial"].append(adversarial.item())
            winning = winning + 1 if d_loss.item() < win_loss else 0
            if winning >= win_steps:
                raise DiscriminatorWinsError(
                    f"the temporal discriminator's loss stayed below {win_loss} for {win_steps} "
                    f"steps (last {d_loss.item():.4f}; the pose network's adversarial loss "
                    f"{adversarial.item():.3f}): it tells predicted from true sequences "
                    "apart and its gradient no longer helps; lower adv_weight (now "
                    f"{adv_weight}) or train without it (adv_weight=0)"
                )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        history["pose"].append(pose.item())
        bar.set_postfix(pose=f"{pose.item():.4g}")
    return history


def train_frames(
    net, clips, codec, steps: int, batch: int = 32, lr: float = 2e-3, seed: int = 0,
    device: str | torch.device = "cpu", progress: bool = True,
) -> list[float]:  # fmt: skip
    """Train a single-frame heatmap network ``net`` (crops -> {"heatmaps"}) on every frame of
    the clips, batches of ``batch`` x T crops: the small encoder alone, for comparison."""
    gen = torch.Generator().manual_seed(seed)
    net.to(device).train()
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1))
    losses = []
    for _ in tqdm(range(steps), desc="small alone", file=sys.stderr, disable=not progress):
        idx = torch.randint(len(clips), (batch,), generator=gen)
        x = clips.images(idx).flatten(0, 1).to(device)
        kp = clips.keypoints[idx].flatten(0, 1).to(device)
        vis = clips.visibility[idx].flatten(0, 1).to(device)
        loss = sum(codec.loss(net(x), codec.encode(kp, vis)).values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    return losses
