"""Samplers against the exact probability-flow map of Gaussian data, NFE accounting, registry.

For data ``x0 ~ N(mu, s0^2)`` (elementwise) the ideal denoiser is
``D(x, sigma) = mu + s0^2 / (s0^2 + sigma^2) (x - mu)`` and the probability-flow ODE keeps
``(x - mu) / sqrt(s0^2 + sigma^2)`` constant, so the exact sample from ``x_T = sigma_max z`` is
``mu + s0 (sigma_max z - mu) / sqrt(s0^2 + sigma_max^2)``.
"""

import math

import pytest
import torch

from forecast.errors import ForecastError
from forecast.sampling import SAMPLERS, get_sampler
from forecast.sampling.samplers import check_nfe

MU, S0, SMIN, SMAX = 0.7, 0.5, 0.002, 40.0


class Counting:
    def __init__(self):
        self.calls = 0

    def __call__(self, x, sigma):
        self.calls += 1
        return MU + S0**2 / (S0**2 + sigma**2) * (x - MU)


def exact(z):
    return MU + S0 * (SMAX * z - MU) / math.sqrt(S0**2 + SMAX**2)


def run(name, nfe, z, noise=None):
    sampler = get_sampler(name, nfe)
    den = Counting()
    out = sampler(den, z * SMAX, sampler.sigmas(SMIN, SMAX), noise)
    return out, den.calls, sampler


def test_registry_names():
    assert set(SAMPLERS.names()) == {"ddim", "ddpm", "dpmpp-2m", "heun"}
    with pytest.raises(ForecastError, match="valid names: ddim, ddpm, dpmpp-2m, heun"):
        get_sampler("euler")


@pytest.mark.parametrize("name", ["ddim", "dpmpp-2m", "heun", "ddpm"])
@pytest.mark.parametrize("nfe", [1, 2, 5, 10])
def test_nfe_accounting(name, nfe):
    z = torch.randn(4, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    gen = torch.Generator().manual_seed(1)
    noise = lambda i: torch.randn(z.shape, generator=gen, dtype=z.dtype)  # noqa: E731
    _, calls, sampler = run(name, nfe, z, noise)
    assert calls == sampler.nfe_used <= max(nfe, 1)
    if name != "heun":
        assert calls == nfe


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_bad_nfe(bad):
    with pytest.raises(ForecastError, match="NFE must be an integer >= 1"):
        check_nfe(bad)
    with pytest.raises(ForecastError, match="NFE"):
        get_sampler("ddim", bad)


@pytest.mark.parametrize("name", ["ddim", "dpmpp-2m", "heun"])
def test_deterministic_converges_to_exact_flow(name):
    z = torch.randn(1000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    err = {nfe: (run(name, nfe, z)[0] - exact(z)).abs().max().item() for nfe in (5, 20, 100)}
    assert err[100] < err[20] < err[5]
    # first order (ddim) vs second order: the error at 100 steps is small in both cases
    assert err[100] < (0.1 if name == "ddim" else 0.02) * S0
    if name != "ddim":
        assert err[100] < err[20] / 4


@pytest.mark.parametrize("schedule", ["karras", "loglinear"])
def test_high_order_beats_ddim_at_few_steps(schedule):
    z = torch.randn(1000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def err(name):
        sampler = get_sampler(name, 10, schedule)
        out = sampler(Counting(), z * SMAX, sampler.sigmas(SMIN, SMAX))
        return (out - exact(z)).abs().mean().item()

    assert err("dpmpp-2m") < (0.7 if schedule == "karras" else 0.25) * err("ddim")


def test_ddpm_samples_the_data_distribution():
    n = 20000
    z = torch.randn(n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    gen = torch.Generator().manual_seed(1)
    noise = lambda i: torch.randn(n, generator=gen, dtype=torch.float64)  # noqa: E731
    # ancestral sampling is first order: under-dispersed at few steps, converging with many
    out, _, _ = run("ddpm", 500, z, noise)
    assert out.mean().item() == pytest.approx(MU, abs=4 * S0 / math.sqrt(n))
    assert out.std().item() == pytest.approx(S0, rel=0.02)
    few, _, _ = run("ddpm", 20, z, noise)
    assert few.std().item() < out.std().item()
    # stochastic: not the deterministic image of z
    assert (out - exact(z)).abs().mean().item() > 0.1 * S0


def test_ddpm_needs_noise():
    with pytest.raises(ForecastError, match="noise"):
        run("ddpm", 3, torch.zeros(2, dtype=torch.float64))


def test_deterministic_flags():
    assert get_sampler("ddim").deterministic and get_sampler("dpmpp-2m").deterministic
    assert get_sampler("heun").deterministic and not get_sampler("ddpm").deterministic
    assert get_sampler("heun", 10).nfe_used == 9
    assert get_sampler("heun", 1).nfe_used == 1
