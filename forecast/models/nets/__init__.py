"""Denoising / decoding networks (``torch.nn.Module`` only, no data handling).

Every network here maps ``(x, c_noise, cond) -> tensor shaped like x`` where ``x`` is the
(scaled, noisy) target ``(B, channel, lead, *space)``, ``c_noise`` one conditioning scalar per
batch item (the diffusion noise level; a VAE passes zeros or its own scalar), and ``cond`` a
dict with ``context`` ``(B or 1, channel, context_steps, *space)`` and ``calendar`` ``(B or 1,
n_calendar)``. Conditioning with batch 1 broadcasts over the batch of ``x``.
"""

import numpy as np
import torch

from forecast.errors import ForecastError
from forecast.models.nets.blocks import ConditionEmbedding, FiLMResBlock, fourier_features
from forecast.models.nets.graph import GraphDenoiser, normalized_adjacency
from forecast.models.nets.spacetime import SpaceTimeDenoiser
from forecast.models.nets.unet import GridDenoiser

__all__ = [
    "ConditionEmbedding",
    "FiLMResBlock",
    "GraphDenoiser",
    "GridDenoiser",
    "SpaceTimeDenoiser",
    "fourier_features",
    "normalized_adjacency",
]


def load_net_weights(module: torch.nn.Module, arrays: dict[str, np.ndarray]) -> None:
    """Load the ``net.``-prefixed arrays of a checkpoint into ``module`` (all keys must fit)."""
    sd = {k[4:]: torch.from_numpy(np.array(v)) for k, v in arrays.items() if k.startswith("net.")}
    missing, unexpected = module.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise ForecastError(
            f"checkpoint weights do not fit the network (missing {missing[:3]}, unexpected "
            f"{unexpected[:3]}); retrain with this version"
        )
