"""Noise-level schedules: pure functions returning decreasing noise levels ending in zero.

The process is written in the variance-exploding form of Karras et al. (2022, "EDM"):
``x_sigma = x_0 + sigma * eps``. Every DDPM/DDIM schedule maps onto it (``sigma = sqrt((1 -
alpha_bar) / alpha_bar)`` and ``x = x_vp / sqrt(alpha_bar)``), so one set of samplers serves all.
"""

from __future__ import annotations

import math

import torch

from forecast.errors import ForecastError


def _check(n: int, sigma_min: float, sigma_max: float) -> None:
    if int(n) < 1:
        raise ForecastError(f"number of sampling steps must be >= 1, got {n}; pass a positive NFE")
    if not 0 < sigma_min < sigma_max:
        raise ForecastError(
            f"need 0 < sigma_min < sigma_max, got {sigma_min} and {sigma_max}; fix the config"
        )


def karras_sigmas(
    n: int, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0
) -> torch.Tensor:
    """The EDM schedule: ``n`` noise levels from ``sigma_max`` to ``sigma_min``, then a zero.

    Parameters
    ----------
    n : int
        Number of steps (noise levels before the final zero), ``>= 1``.
    sigma_min, sigma_max : float
        Smallest and largest noise level.
    rho : float
        Warping exponent; larger values spend more steps at low noise.

    Returns
    -------
    torch.Tensor
        ``(n + 1,)`` float64, strictly decreasing, last entry 0.

    Examples
    --------
    >>> karras_sigmas(2, 1.0, 4.0, rho=1.0).tolist()
    [4.0, 1.0, 0.0]
    """
    _check(n, sigma_min, sigma_max)
    if n == 1:
        return torch.tensor([sigma_max, 0.0], dtype=torch.float64)
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sig = (hi + ramp * (lo - hi)) ** rho
    return torch.cat([sig, sig.new_zeros(1)])


def loglinear_sigmas(n: int, sigma_min: float = 0.002, sigma_max: float = 80.0) -> torch.Tensor:
    """Noise levels evenly spaced in ``log sigma`` (uniform in DPM-Solver's ``lambda``), then 0.

    Examples
    --------
    >>> [round(s, 6) for s in loglinear_sigmas(3, 1.0, 100.0).tolist()]
    [100.0, 10.0, 1.0, 0.0]
    """
    _check(n, sigma_min, sigma_max)
    if n == 1:
        return torch.tensor([sigma_max, 0.0], dtype=torch.float64)
    lo, hi = math.log(sigma_min), math.log(sigma_max)
    sig = torch.exp(torch.linspace(hi, lo, n, dtype=torch.float64))
    return torch.cat([sig, sig.new_zeros(1)])


def cosine_alpha_bar(t: torch.Tensor, s: float = 0.008) -> torch.Tensor:
    """The cosine schedule of Nichol & Dhariwal (2021): ``alpha_bar(t)`` for ``t`` in [0, 1]."""
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    f0 = math.cos(s / (1 + s) * math.pi / 2) ** 2
    return (f / f0).clamp(min=1e-12, max=1.0)


def sigma_from_alpha_bar(alpha_bar: torch.Tensor) -> torch.Tensor:
    """Variance-exploding noise level of a variance-preserving ``alpha_bar``."""
    return torch.sqrt((1 - alpha_bar) / alpha_bar)


def cosine_t(sigma: float, s: float = 0.008) -> float:
    """The time ``t`` at which the cosine schedule reaches noise level ``sigma`` (its inverse)."""
    alpha_bar = 1.0 / (1.0 + sigma**2)
    f0 = math.cos(s / (1 + s) * math.pi / 2) ** 2
    return (1 + s) * 2 / math.pi * math.acos(min(math.sqrt(alpha_bar * f0), 1.0)) - s


def cosine_sigmas(n: int, sigma_min: float = 0.002, sigma_max: float = 80.0) -> torch.Tensor:
    """The cosine (DDPM-style) schedule in ``sigma`` form: ``n`` uniform steps in ``t``, then 0.

    ``t`` runs uniformly between the times where the schedule reaches ``sigma_max`` and
    ``sigma_min``.
    """
    _check(n, sigma_min, sigma_max)
    if n == 1:
        return torch.tensor([sigma_max, 0.0], dtype=torch.float64)
    t = torch.linspace(cosine_t(sigma_max), cosine_t(sigma_min), n, dtype=torch.float64)
    out = sigma_from_alpha_bar(cosine_alpha_bar(t))
    out[0], out[-1] = sigma_max, sigma_min  # exact ends despite rounding
    return torch.cat([out, out.new_zeros(1)])


SCHEDULES = {"karras": karras_sigmas, "loglinear": loglinear_sigmas, "cosine": cosine_sigmas}


def get_schedule(name: str):
    """The schedule function called ``name`` (``karras``, ``loglinear``, ``cosine``)."""
    if name not in SCHEDULES:
        raise ForecastError(f"unknown schedule {name!r}; valid names: {', '.join(SCHEDULES)}")
    return SCHEDULES[name]
