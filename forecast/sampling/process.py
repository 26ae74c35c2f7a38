"""The diffusion process: EDM preconditioning, training noise distribution and loss weighting.

Karras et al. (2022), "Elucidating the Design Space of Diffusion-Based Generative Models":
``D(x, sigma) = c_skip x + c_out F(c_in x, c_noise)`` with ``F`` the network. The process owns
everything that maps between the raw network and the denoiser ``D`` that samplers call; it
knows nothing about the network's architecture or the sampler.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class EDMProcess:
    """Variance-exploding diffusion ``x_sigma = x_0 + sigma eps`` with EDM preconditioning.

    Parameters
    ----------
    sigma_data : float
        Standard deviation of the (normalized) training targets.
    sigma_min, sigma_max : float
        Range of noise levels used for sampling; the prior is ``N(0, sigma_max^2 I)``.
    p_mean, p_std : float
        Training noise levels are ``log sigma ~ N(p_mean, p_std^2)``.
    """

    sigma_data: float = 1.0
    sigma_min: float = 0.002
    sigma_max: float = 40.0
    p_mean: float = -1.0
    p_std: float = 1.4

    def coefficients(self, sigma: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``(c_skip, c_out, c_in, c_noise)`` for noise levels ``sigma`` (any shape)."""
        sd2 = self.sigma_data**2
        s2 = sigma**2
        c_skip = sd2 / (s2 + sd2)
        c_out = sigma * self.sigma_data / torch.sqrt(s2 + sd2)
        c_in = 1 / torch.sqrt(s2 + sd2)
        c_noise = torch.log(sigma.clamp(min=1e-20)) / 4
        return c_skip, c_out, c_in, c_noise

    def loss_weight(self, sigma: torch.Tensor) -> torch.Tensor:
        """EDM loss weight ``(sigma^2 + sigma_data^2) / (sigma sigma_data)^2``."""
        return (sigma**2 + self.sigma_data**2) / (sigma * self.sigma_data) ** 2

    def denoiser(self, net: torch.nn.Module, cond: Any) -> Denoiser:
        """The denoiser ``D(x, sigma)`` of ``net`` under conditioning ``cond``.

        ``sigma`` is a scalar tensor or one value per batch item; ``cond`` is passed to the
        network unchanged (it must broadcast over the batch of ``x``).
        """

        def denoise(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
            sig = torch.as_tensor(sigma, dtype=x.dtype).reshape(-1)
            if sig.numel() == 1:
                sig = sig.expand(x.shape[0])
            view = sig.reshape(-1, *([1] * (x.ndim - 1)))
            c_skip, c_out, c_in, c_noise = self.coefficients(view)
            out = net(c_in * x, c_noise.reshape(-1), cond)
            return c_skip * x + c_out * out

        return denoise

    def sample_sigma(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Training noise levels: ``n`` draws of ``exp(N(p_mean, p_std^2))``."""
        return torch.exp(self.p_mean + self.p_std * torch.randn(n, generator=generator))

    def loss(
        self,
        net: torch.nn.Module,
        x0: torch.Tensor,
        cond: Any,
        generator: torch.Generator | None = None,
        error_map: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Weighted denoising loss of ``net`` on clean targets ``x0`` (batch first), a scalar.

        ``error_map``: a linear map applied to the denoising error before it is squared (e.g.
        back from whitened coordinates to the field), which reweights the error's components.
        """
        sigma = self.sample_sigma(x0.shape[0], generator).to(x0.dtype)
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
        view = sigma.reshape(-1, *([1] * (x0.ndim - 1)))
        denoised = self.denoiser(net, cond)(x0 + view * noise, sigma)
        diff = denoised - x0
        err = (diff if error_map is None else error_map(diff)) ** 2
        return (self.loss_weight(view) * err).mean()

    def to_dict(self) -> dict[str, float]:
        """JSON-able parameters."""
        return {
            "sigma_data": self.sigma_data,
            "sigma_min": self.sigma_min,
            "sigma_max": self.sigma_max,
            "p_mean": self.p_mean,
            "p_std": self.p_std,
        }

    def snr_db(self, sigma: float) -> float:
        """Signal-to-noise ratio of level ``sigma`` in decibels (for reports)."""
        return 20 * math.log10(self.sigma_data / sigma)
