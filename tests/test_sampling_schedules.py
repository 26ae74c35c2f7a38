"""Noise schedules: endpoints, monotonicity, closed forms, bad input."""

import math

import pytest
import torch

from forecast.errors import ForecastError
from forecast.sampling.schedules import (
    cosine_alpha_bar,
    cosine_sigmas,
    get_schedule,
    karras_sigmas,
    loglinear_sigmas,
    sigma_from_alpha_bar,
)


@pytest.mark.parametrize("fn", [karras_sigmas, loglinear_sigmas, cosine_sigmas])
@pytest.mark.parametrize("n", [1, 2, 7, 50])
def test_endpoints_and_monotone(fn, n):
    s = fn(n, 0.01, 20.0)
    assert s.shape == (n + 1,)
    assert s.dtype == torch.float64
    assert s[0].item() == pytest.approx(20.0)
    assert s[-1].item() == 0.0
    if n > 1:
        assert s[-2].item() == pytest.approx(0.01, rel=1e-3)
    assert torch.all(s[1:] < s[:-1])


def test_karras_closed_form():
    # rho = 1 is a linear ramp in sigma
    s = karras_sigmas(5, 1.0, 5.0, rho=1.0)
    assert s.tolist() == pytest.approx([5.0, 4.0, 3.0, 2.0, 1.0, 0.0])
    # midpoint of the rho-warped ramp: ((a^(1/rho) + b^(1/rho)) / 2)^rho
    s = karras_sigmas(3, 0.002, 80.0, rho=7.0)
    mid = ((0.002 ** (1 / 7) + 80.0 ** (1 / 7)) / 2) ** 7
    assert s[1].item() == pytest.approx(mid)


def test_loglinear_is_geometric():
    s = loglinear_sigmas(4, 0.1, 100.0)[:-1]
    ratios = (s[1:] / s[:-1]).tolist()
    assert ratios == pytest.approx([10 ** (-1)] * 3)


def test_cosine_alpha_bar_closed_form():
    t = torch.tensor([0.0, 0.5], dtype=torch.float64)
    ab = cosine_alpha_bar(t)
    assert ab[0].item() == pytest.approx(1.0)
    s = 0.008
    want = (
        math.cos((0.5 + s) / (1 + s) * math.pi / 2) ** 2 / math.cos(s / (1 + s) * math.pi / 2) ** 2
    )
    assert ab[1].item() == pytest.approx(want)
    assert sigma_from_alpha_bar(torch.tensor(0.2)).item() == pytest.approx(2.0)


@pytest.mark.parametrize("n", [0, -3])
def test_bad_steps(n):
    with pytest.raises(ForecastError, match="NFE"):
        karras_sigmas(n)


def test_bad_range_and_name():
    with pytest.raises(ForecastError, match="sigma_min < sigma_max"):
        karras_sigmas(4, 5.0, 1.0)
    with pytest.raises(ForecastError, match="valid names"):
        get_schedule("nope")
