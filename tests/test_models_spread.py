"""Spread-factor calibration shared by the generative models (forecast.models.spread)."""

import numpy as np
import properscoring as ps
import pytest
import xarray as xr

from forecast.errors import ForecastError
from forecast.models.spread import fit_spread_factors, spread_factor_scores
from forecast.scoring import spread_skill_ratio


def _windows(scale: float, members: int = 8, seed: int = 0):
    """Truth ~ N(0, 1) per point; members centre + scale * N(0, 1): the calibrated factor is
    1 / scale (for C=1, H=2 leads with the second lead twice as wide)."""
    rng = np.random.default_rng(seed)
    w, c, h, s = 40, 1, 2, 30
    truth = rng.standard_normal((w, c, h, s))
    truth[:, :, 1] *= 2.0
    centre = np.zeros_like(truth)
    dev = scale * rng.standard_normal((w, c, h, s, members))
    dev[:, :, 1] *= 2.0
    return truth, centre, dev


def test_crps_scores_equal_properscoring():
    truth, centre, dev = _windows(0.5, members=5)
    grid = np.array([0.5, 2.0])
    scores = spread_factor_scores(truth, centre, dev, grid, "crps")
    for g, f in enumerate(grid):
        ref = ps.crps_ensemble(truth, centre[..., None] + f * dev).mean(axis=(0, 3))
        np.testing.assert_allclose(scores[g], ref, rtol=1e-10)


def test_spread_skill_scores_equal_the_scoring_module():
    truth, centre, dev = _windows(0.5, members=6, seed=1)
    dims = ("w", "c", "h", "s")
    for f in (0.7, 1.9):
        ens = xr.DataArray(centre[..., None] + f * dev, dims=(*dims, "member"))
        ssr = spread_skill_ratio(xr.DataArray(truth, dims=dims), ens, dim=["w", "s"])
        got = spread_factor_scores(truth, centre, dev, np.array([f]), "spread-skill")[0, 0]
        np.testing.assert_allclose(got, np.abs(np.log(ssr.values[0])), rtol=1e-10)


def test_spread_skill_objective_finds_the_calibrating_factor():
    truth, centre, dev = _windows(0.5, members=16)
    grid = np.round(np.arange(0.5, 4.01, 0.1), 2)
    factors = fit_spread_factors(truth, centre, dev, grid, "spread-skill")
    assert factors.shape == (1, 2)
    np.testing.assert_allclose(factors, 2.0, atol=0.25)  # 1 / 0.5 up to sampling noise


def test_crps_optimum_of_heavy_tailed_errors_is_sharper_than_spread_skill():
    rng = np.random.default_rng(3)
    truth, centre, dev = _windows(1.0, members=16)
    truth = rng.standard_t(2.5, size=truth.shape)  # heavy tails inflate the RMSE
    grid = np.round(np.geomspace(0.3, 4.0, 40), 3)
    crps = fit_spread_factors(truth, centre, dev, grid, "crps")
    ssr = fit_spread_factors(truth, centre, dev, grid, "spread-skill")
    assert (ssr > crps).all()


def test_bad_objective_and_shapes_are_refused():
    truth, centre, dev = _windows(1.0)
    with pytest.raises(ForecastError, match="calibration_objective must be one of"):
        fit_spread_factors(truth, centre, dev, np.array([1.0]), "rmse")
    with pytest.raises(ForecastError, match="does not match truth"):
        fit_spread_factors(truth, centre, dev[:, :, :1], np.array([1.0]))
    with pytest.raises(ForecastError, match="at least 2 members"):
        fit_spread_factors(truth, centre, dev[..., :1], np.array([1.0]), "spread-skill")
