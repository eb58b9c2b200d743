"""Networks: image encoders, the CSS latent heads and the image decoder."""

from css_pose.models.decoder import Decoder
from css_pose.models.encoders import ENCODER_NAMES, Encoder, build_encoder, load_state_dict_strict
from css_pose.models.latent import LatentHeads

__all__ = [
    "ENCODER_NAMES",
    "Decoder",
    "Encoder",
    "LatentHeads",
    "build_encoder",
    "load_state_dict_strict",
]
