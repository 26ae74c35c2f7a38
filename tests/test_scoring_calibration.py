"""Rank/PIT histograms, flatness, Brier score and reliability data against brute force."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from forecast.dims import BIN, LAT, LEAD_TIME, MEMBER, RANK, THRESHOLD
from forecast.errors import ForecastError
from forecast.scoring import brier_score, flatness, pit_histogram, rank_histogram, reliability


def _pair(m, n=(3, 400), seed=0, spread=1.0, integer=False):
    rng = np.random.default_rng(seed)
    obs = rng.standard_normal(n)
    fc = spread * rng.standard_normal((m, *n))
    if integer:  # many ties
        obs, fc = np.round(obs), np.round(fc)
    return (
        xr.DataArray(obs, dims=(LEAD_TIME, LAT)),
        xr.DataArray(fc, dims=(MEMBER, LEAD_TIME, LAT)),
    )


def test_rank_histogram_brute_force_without_ties():
    obs, fc = _pair(6, seed=1)
    h = rank_histogram(obs, fc, dim=LAT)
    ranks = (fc.values < obs.values).sum(0)
    expect = np.stack([np.bincount(r, minlength=7) for r in ranks])
    np.testing.assert_array_equal(h.transpose(LEAD_TIME, RANK).values, expect)
    np.testing.assert_array_equal(h[RANK].values, np.arange(7))


def test_rank_histogram_ties_broken_at_random():
    obs, fc = _pair(4, (1, 20000), seed=2, integer=True)
    h = rank_histogram(obs, fc, seed=3)
    below = (fc.values < obs.values).sum(0).ravel()
    ties = (fc.values == obs.values).sum(0).ravel()
    # each rank lies in [below, below + ties]; totals match
    assert int(h.sum()) == below.size
    lo = np.bincount(below, minlength=5)
    assert h.values[0] <= lo[0] and h.values[0] >= np.sum((below == 0) & (ties == 0))
    # exchangeable integer ensemble: flat up to sampling noise thanks to the random ties
    freq = h.values / h.values.sum()
    np.testing.assert_allclose(freq, 0.2, atol=0.015)
    assert float(flatness(h)) < 3
    # same seed, same histogram; the result depends on the seed only through ties
    xr.testing.assert_equal(h, rank_histogram(obs, fc, seed=3))


def test_flatness_and_pit():
    obs, fc = _pair(9, (1, 30000), seed=4)
    h = rank_histogram(obs, fc)
    chi2 = ((h.values - h.values.mean()) ** 2 / h.values.mean()).sum()
    np.testing.assert_allclose(float(flatness(h)), chi2 / 10)
    assert float(flatness(h)) < 3
    obs, under = _pair(9, (1, 30000), seed=5, spread=0.3)
    assert float(flatness(rank_histogram(obs, under))) > 100  # U-shaped
    pit = pit_histogram(obs, fc, bins=5)
    np.testing.assert_allclose(pit.values, 1.0, atol=0.05)
    np.testing.assert_allclose(pit[BIN].values, [0.1, 0.3, 0.5, 0.7, 0.9])
    pit_u = pit_histogram(obs, under, bins=5)
    assert pit_u.values[0] > 1.5 and pit_u.values[-1] > 1.5


def test_brier_brute_force():
    obs, fc = _pair(7, seed=6)
    fc[0, 0, 0] = np.nan
    thr = [-0.5, 0.0, 0.8]
    bs = brier_score(obs, fc, thr, dim=LAT, skipna=True)
    assert set(bs.dims) == {THRESHOLD, LEAD_TIME}
    bs = bs.transpose(THRESHOLD, LEAD_TIME)
    x, y = fc.values, obs.values
    for k, t in enumerate(thr):
        p = np.nanmean(np.where(np.isnan(x), np.nan, x > t), axis=0)
        o = (y > t).astype(float)
        np.testing.assert_allclose(bs.values[k], ((p - o) ** 2).mean(-1), rtol=1e-12)
    assert np.isnan(brier_score(obs, fc, 0.0, dim=LAT).values[0])


def test_reliability_brute_force():
    obs, fc = _pair(10, (1, 3000), seed=7)
    rel = reliability(obs, fc, 0.3, bins=5)
    p = (fc.values > 0.3).mean(0).ravel()
    o = (obs.values > 0.3).ravel()
    idx = np.minimum((p * 5).astype(int), 4)
    for b in range(5):
        sel = idx == b
        assert rel["count"].values[b] == sel.sum()
        np.testing.assert_allclose(rel["forecast_probability"].values[b], p[sel].mean())
        np.testing.assert_allclose(rel["observed_frequency"].values[b], o[sel].mean())


def test_empty_rank_histogram():
    obs, fc = _pair(3, (2, 5))
    obs[1] = np.nan
    with pytest.raises(ForecastError, match="empty selection"):
        rank_histogram(obs, fc, dim=LAT)
