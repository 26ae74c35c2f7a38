"""Diffusion processes, noise schedules, samplers, inversion and latent paths (pure torch).

The denoising network, the diffusion process and the sampler are separate objects: a sampler
only sees a ``denoise(x, sigma) -> x0`` callable and a decreasing noise schedule, so switching
DDPM -> DDIM -> DPM-Solver++ is a configuration change.
"""

from forecast.sampling.inversion import invert
from forecast.sampling.paths import latent_path, slerp
from forecast.sampling.process import EDMProcess
from forecast.sampling.samplers import SAMPLERS, Sampler, get_sampler
from forecast.sampling.schedules import karras_sigmas, loglinear_sigmas

__all__ = [
    "SAMPLERS",
    "EDMProcess",
    "Sampler",
    "get_sampler",
    "invert",
    "karras_sigmas",
    "latent_path",
    "loglinear_sigmas",
    "slerp",
]
