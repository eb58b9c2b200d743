"""Left-right mirroring, defined once: joints, crops and keypoints, 3D poses, head outputs, flows.

Mirroring swaps left and right joints (:func:`css_pose.skeleton.flip_permutation`) and sends
x to -x (3D camera coordinates, normalised 2D) or, for a W-wide image, pixel u to W - 1 - u. With
the codecs' cell convention (cell i centred on pixel i * s + (s - 1) / 2) that sends cell i to
w - 1 - i, so flipping a map's width axis un-mirrors it exactly, without a half-cell shift.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import torch

from css_pose.skeleton import NUM_JOINTS, flip_permutation


def flip_joints(
    keypoints_2d: np.ndarray, visibility: np.ndarray, keypoints_3d: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Relabel joints after a horizontal image flip: (..., J, 2), (..., J), (..., J, 3).

    The 2D points are already mirrored by the crop matrix; here left and right joints swap, and the
    3D pose is mirrored through the camera's y-z plane (x -> -x), which mirrors a root-relative
    pose exactly.
    """
    perm = flip_permutation()
    mirrored = keypoints_3d[..., perm, :] * np.array([-1.0, 1.0, 1.0], keypoints_3d.dtype)
    return keypoints_2d[..., perm, :], visibility[..., perm], mirrored


def mirror_batch(
    frames: torch.Tensor, keypoints: torch.Tensor, visibility: torch.Tensor, which: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mirror the samples where ``which`` (B,) is True: crops (B, 3, H, W), keypoints (B, J, 2) px
    (x -> W - 1 - x, left and right joints swap), visibility (B, J)."""
    perm = flip_permutation()
    width = frames.shape[-1]
    flipped_kp = keypoints[:, perm].clone()
    flipped_kp[..., 0] = width - 1 - flipped_kp[..., 0]
    sel = which.view(-1, 1, 1, 1)
    return (
        torch.where(sel, frames.flip(-1), frames),
        torch.where(which.view(-1, 1, 1), flipped_kp, keypoints),
        torch.where(which.view(-1, 1), visibility[:, perm], visibility),
    )


_PERM = torch.from_numpy(flip_permutation())


def flip_pose(x: torch.Tensor) -> torch.Tensor:
    """Mirror poses (..., J, D) left-right: negate x, swap left and right joints.

    Exact for normalised 2D (x = 0 is the image's vertical centre line) and camera-frame 3D."""
    x = x[..., _PERM, :].clone()
    x[..., 0] = -x[..., 0]
    return x


# Keys un-mirrored by unflip_outputs; anything else a head returns (e.g. "stages") is dropped.
FLIPPABLE_KEYS = ("heatmaps", "offsets", "coords")


def unflip_outputs(outputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map outputs computed on a mirrored crop back onto the original crop.

    Left and right joints swap (:func:`css_pose.skeleton.flip_permutation`); then

    - ``heatmaps`` (B, J, h, w): the width axis flips;
    - ``offsets`` (B, J, 2, h, w) as (dx, dy): the width axis flips and dx changes sign;
    - ``coords`` (B, J, 2) crop-normalised in [0, 1]: x -> 1 - x.

    Returns:
        the keys of :data:`FLIPPABLE_KEYS` that ``outputs`` has, un-mirrored.
    """
    perm = torch.as_tensor(flip_permutation())
    result = {}
    for key in FLIPPABLE_KEYS:
        if key not in outputs:
            continue
        value = outputs[key]
        if value.shape[1] != NUM_JOINTS:
            raise ValueError(f"{key} must have {NUM_JOINTS} joints on dim 1, got {value.shape}")
        value = value[:, perm.to(value.device)]
        if key == "heatmaps":
            value = value.flip(-1)
        elif key == "offsets":
            value = value.flip(-1) * value.new_tensor([-1.0, 1.0]).view(1, 1, 2, 1, 1)
        else:
            value = torch.stack((1 - value[..., 0], value[..., 1]), dim=-1)
        result[key] = value
    if not result:
        raise ValueError(f"outputs have none of {FLIPPABLE_KEYS}: {sorted(outputs)}")
    return result


def flip_average(
    model: Callable[[torch.Tensor], Mapping[str, torch.Tensor]], images: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Mean of ``model(images)`` and the un-mirrored ``model(images mirrored)``.

    Args:
        model: images (B, 3, H, W) -> head outputs (e.g. encoder stages followed by a head).
        images: (B, 3, H, W).
    Returns:
        the :data:`FLIPPABLE_KEYS` entries of the outputs, averaged; decode with the head's codec.
    """
    direct = model(images)
    mirrored = unflip_outputs(model(images.flip(-1)))
    return {key: (direct[key] + value) / 2 for key, value in mirrored.items()}


def mirror_flows(flows: torch.Tensor) -> torch.Tensor:
    """The flows (..., 2, H, W) (dx, dy) px of the same clip with every crop mirrored.

    Mirroring sends x to W - 1 - x. If a(x, y) ~ b(x + dx(x, y), y + dy(x, y)), then the mirrored
    a'(x, y) = a(W - 1 - x, y) ~ b'(x - dx(W - 1 - x, y), y + dy(W - 1 - x, y)): the field flips
    left-right and dx changes sign.
    """
    return flows.flip(-1) * flows.new_tensor([-1.0, 1.0]).view(2, 1, 1)
