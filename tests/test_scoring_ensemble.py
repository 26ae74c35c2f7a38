"""RMSE of the mean, MAE of the median, spread and spread-skill against brute force."""

from __future__ import annotations

import numpy as np
import xarray as xr

from forecast.dims import LAT, LEAD_TIME, MEMBER
from forecast.scoring import (
    ensemble_spread,
    mae_ensemble_median,
    rmse_ensemble_mean,
    spread_skill_ratio,
)


def _pair(m, n=(4, 500), seed=0, spread=1.0):
    rng = np.random.default_rng(seed)
    centre = rng.standard_normal(n) * 3
    obs = xr.DataArray(centre + rng.standard_normal(n), dims=(LEAD_TIME, LAT))
    fc = xr.DataArray(
        (centre + spread * rng.standard_normal((m, *n))).astype(np.float32),
        dims=(MEMBER, LEAD_TIME, LAT),
    )
    return obs, fc


def test_brute_force_values():
    obs, fc = _pair(7, (3, 40), seed=1)
    x, y = fc.values.astype(np.float64), obs.values
    np.testing.assert_allclose(
        rmse_ensemble_mean(obs, fc, dim=LAT).values,
        np.sqrt(((x.mean(0) - y) ** 2).mean(-1)),
        rtol=1e-10,
    )
    np.testing.assert_allclose(
        mae_ensemble_median(obs, fc, dim=LAT).values,
        np.abs(np.median(x, 0) - y).mean(-1),
        rtol=1e-6,
    )
    np.testing.assert_allclose(
        ensemble_spread(obs, fc, dim=LAT).values,
        np.sqrt(x.var(0, ddof=1).mean(-1)),
        rtol=1e-6,
    )
    ratio = spread_skill_ratio(obs, fc, dim=LAT).values
    expect = (
        np.sqrt(8 / 7)
        * np.sqrt(x.var(0, ddof=1).mean(-1))
        / np.sqrt(((x.mean(0) - y) ** 2).mean(-1))
    )
    np.testing.assert_allclose(ratio, expect, rtol=1e-6)
    assert rmse_ensemble_mean(obs, fc).dtype == np.float64


def test_spread_skill_calibrated_and_underdispersed():
    # obs drawn from the same distribution as the members: ratio ~ 1 even for 5 members
    obs, fc = _pair(5, (2, 20000), seed=2, spread=1.0)
    r = spread_skill_ratio(obs, fc).values
    assert abs(r - 1) < 0.03, r
    obs, fc = _pair(5, (2, 20000), seed=3, spread=0.4)
    assert spread_skill_ratio(obs, fc).values < 0.6
    # without the (M+1)/M factor the calibrated 5-member ratio would be ~0.91
    obs, fc = _pair(5, (2, 20000), seed=2, spread=1.0)
    raw = ensemble_spread(obs, fc) / rmse_ensemble_mean(obs, fc)
    assert abs(float(raw) - np.sqrt(5 / 6)) < 0.03


def test_skipna_masks_points():
    obs, fc = _pair(6, (2, 30), seed=4)
    obs[0, 3] = np.nan
    assert np.isnan(rmse_ensemble_mean(obs, fc, dim=LAT).values[0])
    keep = [i for i in range(30) if i != 3]
    np.testing.assert_allclose(
        rmse_ensemble_mean(obs, fc, dim=LAT, skipna=True).values[0],
        rmse_ensemble_mean(obs[:, keep], fc[:, :, keep], dim=LAT).values[0],
        rtol=1e-12,
    )
    np.testing.assert_allclose(
        ensemble_spread(obs, fc, dim=LAT, skipna=True).values[0],
        ensemble_spread(obs[:, keep], fc[:, :, keep], dim=LAT).values[0],
        rtol=1e-7,
    )
