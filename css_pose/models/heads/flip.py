"""Flip test: average a head's outputs on a crop and on its mirror image, mapped back.

Mirroring a W-wide crop sends pixel u to W - 1 - u. With the codecs' cell convention (cell i
centred on pixel i * s + (s - 1) / 2) that sends cell i to w - 1 - i, so flipping a map's width
axis un-mirrors it exactly, without the half-cell shift other conventions need.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

from css_pose.skeleton import NUM_JOINTS, flip_permutation

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
