"""DDIM inversion round trips with analytic denoisers; process coefficients in closed form."""

import math

import pytest
import torch

from forecast.sampling import EDMProcess, get_sampler, invert

MU, S0 = 0.3, 0.8


def gaussian_denoiser(x, sigma):
    return MU + S0**2 / (S0**2 + sigma**2) * (x - MU)


def nonlinear_denoiser(x, sigma):
    # smooth and non-linear with the limits of a real denoiser: identity at sigma -> 0 and a
    # Jacobian that decays like 1 / sigma at high noise (a conditional mean)
    c = 1 / (1 + sigma**2)
    return c * x + (1 - c) * 0.5 * torch.tanh(x / (1 + sigma**2) ** 0.5)


@pytest.mark.parametrize(("denoise", "sd"), [(gaussian_denoiser, S0), (nonlinear_denoiser, 1.0)])
@pytest.mark.parametrize("steps", [4, 10, 30])
def test_round_trip(denoise, sd, steps):
    sampler = get_sampler("ddim", steps)
    sigmas = sampler.sigmas(0.002, 40.0)
    x0 = torch.randn(256, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x_t = invert(denoise, x0, sigmas, refine=6, sigma_data=sd)
    back = sampler(denoise, x_t, sigmas)
    assert (back - x0).abs().max().item() < 1e-6


def test_refinement_beats_plain_ddim_inversion():
    sampler = get_sampler("ddim", 8)
    sigmas = sampler.sigmas(0.002, 40.0)
    x0 = torch.randn(256, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    errs = []
    for refine in (0, 1, 3):
        back = sampler(nonlinear_denoiser, invert(nonlinear_denoiser, x0, sigmas, refine), sigmas)
        errs.append((back - x0).abs().mean().item())
    assert errs[2] < errs[1] < errs[0]
    assert errs[0] > 1e-4  # plain inversion leaves a discretization error


def test_gaussian_latent_is_standard_normal():
    # for Gaussian data the exact latent of x0 is (x0 - mu) / s0 (up to the sigma_max offset)
    sampler = get_sampler("ddim", 200)
    sigmas = sampler.sigmas(0.002, 40.0)
    x0 = MU + S0 * torch.randn(
        20000, generator=torch.Generator().manual_seed(1), dtype=torch.float64
    )
    z = invert(gaussian_denoiser, x0, sigmas, refine=3) / 40.0
    assert z.std().item() == pytest.approx(math.sqrt(S0**2 + 40.0**2) / 40.0 / S0 * S0, rel=0.03)


def test_process_coefficients_closed_form():
    p = EDMProcess(sigma_data=0.5)
    sigma = torch.tensor([0.1, 0.5, 2.0], dtype=torch.float64)
    c_skip, c_out, c_in, c_noise = p.coefficients(sigma)
    assert torch.allclose(c_skip, 0.25 / (sigma**2 + 0.25))
    assert torch.allclose(c_out, sigma * 0.5 / torch.sqrt(sigma**2 + 0.25))
    assert torch.allclose(c_in, 1 / torch.sqrt(sigma**2 + 0.25))
    assert torch.allclose(c_noise, torch.log(sigma) / 4)
    # unit effective weight: lambda(sigma) * c_out(sigma)^2 == 1
    assert torch.allclose(p.loss_weight(sigma) * c_out**2, torch.ones(3, dtype=torch.float64))


def test_process_denoiser_of_zero_network_is_skip():
    p = EDMProcess(sigma_data=1.0)

    def zero_net(x, c_noise, cond):
        return torch.zeros_like(x)

    x = torch.ones(3, 2)
    out = p.denoiser(zero_net, None)(x, torch.tensor(1.0))
    assert torch.allclose(out, 0.5 * x)


def test_training_noise_levels_are_lognormal():
    p = EDMProcess(p_mean=-1.0, p_std=1.4)
    s = p.sample_sigma(50000, torch.Generator().manual_seed(0))
    assert torch.log(s).mean().item() == pytest.approx(-1.0, abs=0.03)
    assert torch.log(s).std().item() == pytest.approx(1.4, rel=0.02)
