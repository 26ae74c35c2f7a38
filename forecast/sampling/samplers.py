"""Samplers: objects that integrate a denoiser from noise to data along a noise schedule.

A sampler knows only a denoiser ``D(x, sigma) -> x0`` (see :mod:`forecast.sampling.process`),
a start ``x`` at ``sigma_max`` and the schedule; it never sees the network. ``nfe`` is the budget
of network evaluations; ``Sampler.nfe_used`` says how many a run costs exactly.

Registered names (``SAMPLERS``): ``ddpm`` (ancestral), ``ddim`` (deterministic, eta = 0),
``dpmpp-2m`` (DPM-Solver++(2M), Lu et al. 2022) and ``heun`` (EDM second order, Karras et al.
2022). Stochastic samplers draw their noise through ``noise(step)``, which the caller builds
from per-member generators so that a member never depends on the batch it is drawn in.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from forecast.errors import ForecastError
from forecast.registry import Registry
from forecast.sampling.process import Denoiser
from forecast.sampling.schedules import get_schedule

SAMPLERS: Registry[type[Sampler]] = Registry("sampler")

NoiseFn = Callable[[int], torch.Tensor]


def check_nfe(nfe: int) -> int:
    """Validate a network-evaluation budget: an integer ``>= 1``."""
    if isinstance(nfe, bool) or int(nfe) != nfe or int(nfe) < 1:
        raise ForecastError(f"NFE must be an integer >= 1, got {nfe!r}; pass e.g. --nfe 10")
    return int(nfe)


class Sampler:
    """Base class: schedule handling and the common call signature.

    Parameters
    ----------
    nfe : int
        Budget of network evaluations, ``>= 1``.
    schedule : str
        Name of the noise schedule (``karras``, ``loglinear``, ``cosine``).
    """

    name = "base"
    deterministic = True

    def __init__(self, nfe: int = 10, schedule: str = "karras") -> None:
        self.nfe = check_nfe(nfe)
        self.schedule = schedule
        get_schedule(schedule)  # validate the name now

    def n_steps(self) -> int:
        """Number of noise intervals integrated for the budget ``nfe``."""
        return self.nfe

    @property
    def nfe_used(self) -> int:
        """Network evaluations one run costs."""
        return self.n_steps()

    def sigmas(self, sigma_min: float, sigma_max: float) -> torch.Tensor:
        """The schedule, decreasing from ``sigma_max`` to 0, float64."""
        return get_schedule(self.schedule)(self.n_steps(), sigma_min, sigma_max)

    def __call__(
        self,
        denoise: Denoiser,
        x: torch.Tensor,
        sigmas: torch.Tensor,
        noise: NoiseFn | None = None,
    ) -> torch.Tensor:
        """Integrate from ``x`` (at noise ``sigmas[0]``) to a clean sample at ``sigmas[-1] = 0``."""
        raise NotImplementedError

    def to_dict(self) -> dict[str, object]:
        """JSON-able description: name, NFE and schedule."""
        return {"name": self.name, "nfe": self.nfe, "schedule": self.schedule}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(nfe={self.nfe}, schedule={self.schedule!r})"


def _scalar(s: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return s.to(like.dtype)


@SAMPLERS.register("ddim")
class DDIMSampler(Sampler):
    """Deterministic DDIM (eta = 0): Euler steps of the probability-flow ODE in ``sigma``."""

    name = "ddim"

    def __call__(self, denoise, x, sigmas, noise=None):
        for i in range(len(sigmas) - 1):
            s, s_next = sigmas[i], sigmas[i + 1]
            x0 = denoise(x, _scalar(s, x))
            if s_next == 0:
                x = x0
            else:
                x = x0 + (s_next / s).to(x.dtype) * (x - x0)
        return x


@SAMPLERS.register("ddpm")
class DDPMSampler(Sampler):
    """Ancestral DDPM sampling: the DDIM update with eta = 1 (fresh noise at every step)."""

    name = "ddpm"
    deterministic = False

    def __call__(self, denoise, x, sigmas, noise=None):
        if noise is None:
            raise ForecastError("the ddpm sampler needs a noise source; pass noise=")
        for i in range(len(sigmas) - 1):
            s, s_next = sigmas[i], sigmas[i + 1]
            x0 = denoise(x, _scalar(s, x))
            if s_next == 0:
                x = x0
                continue
            # posterior q(x_next | x, x0) in variance-exploding form
            s_up = torch.sqrt(s_next**2 * (s**2 - s_next**2) / s**2)
            s_down = torch.sqrt(s_next**2 - s_up**2)
            x = x0 + (s_down / s).to(x.dtype) * (x - x0) + s_up.to(x.dtype) * noise(i)
        return x


@SAMPLERS.register("dpmpp-2m")
class DPMSolverPP2MSampler(Sampler):
    """DPM-Solver++(2M): second-order multistep solver in data prediction, one NFE per step."""

    name = "dpmpp-2m"

    def __call__(self, denoise, x, sigmas, noise=None):
        old = None
        h_last = None
        for i in range(len(sigmas) - 1):
            s, s_next = sigmas[i], sigmas[i + 1]
            x0 = denoise(x, _scalar(s, x))
            if s_next == 0:
                x = x0
                break
            h = torch.log(s) - torch.log(s_next)  # lambda_next - lambda, lambda = -log sigma
            if old is None:
                d = x0
            else:
                r = h_last / h
                d = (1 + 1 / (2 * r)).to(x.dtype) * x0 - (1 / (2 * r)).to(x.dtype) * old
            x = (s_next / s).to(x.dtype) * x - torch.expm1(-h).to(x.dtype) * d
            old, h_last = x0, h
        return x


@SAMPLERS.register("heun")
class HeunSampler(Sampler):
    """EDM Heun: second-order steps (two NFE), the last step to zero is Euler (one NFE).

    ``nfe`` buys ``(nfe + 1) // 2`` steps, costing ``2 * steps - 1`` evaluations.
    """

    name = "heun"

    def n_steps(self) -> int:
        return (self.nfe + 1) // 2

    @property
    def nfe_used(self) -> int:
        return 2 * self.n_steps() - 1

    def __call__(self, denoise, x, sigmas, noise=None):
        for i in range(len(sigmas) - 1):
            s, s_next = sigmas[i], sigmas[i + 1]
            x0 = denoise(x, _scalar(s, x))
            d = (x - x0) / s.to(x.dtype)
            x_next = x + (s_next - s).to(x.dtype) * d
            if s_next > 0:
                d2 = (x_next - denoise(x_next, _scalar(s_next, x))) / s_next.to(x.dtype)
                x_next = x + (s_next - s).to(x.dtype) * (d + d2) / 2
            x = x_next
        return x


def get_sampler(name: str, nfe: int = 10, schedule: str = "karras") -> Sampler:
    """Build the sampler registered as ``name`` with budget ``nfe``.

    Examples
    --------
    >>> get_sampler("dpmpp-2m", nfe=10).nfe_used
    10
    """
    return SAMPLERS.get(name)(nfe=nfe, schedule=schedule)
