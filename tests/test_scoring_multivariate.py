"""Energy and variogram scores against scoringrules; one point gives the CRPS."""

from __future__ import annotations

import numpy as np
import pytest
import scoringrules as sr
import xarray as xr

from forecast.dims import INIT_TIME, LAT, LEAD_TIME, LON, MEMBER
from forecast.errors import ForecastError
from forecast.scoring import crps_ensemble, energy_score, variogram_score


def _pair(m=6, seed=0, nlat=3, nlon=4):
    rng = np.random.default_rng(seed)
    dims = (INIT_TIME, LEAD_TIME, LAT, LON)
    obs = xr.DataArray(rng.standard_normal((2, 3, nlat, nlon)), dims=dims)
    fc = xr.DataArray(
        rng.standard_normal((2, m, 3, nlat, nlon)).astype(np.float32),
        dims=(INIT_TIME, MEMBER, LEAD_TIME, LAT, LON),
    )
    return obs, fc


def _flat(obs, fc):
    x = fc.transpose(INIT_TIME, LEAD_TIME, MEMBER, LAT, LON).values.astype(np.float64)
    return obs.values.reshape(2, 3, -1), x.reshape(2, 3, x.shape[2], -1)


def test_energy_score_equals_scoringrules():
    obs, fc = _pair()
    y, x = _flat(obs, fc)
    ours = energy_score(obs, fc, dim=[])
    assert ours.dims == (INIT_TIME, LEAD_TIME)
    np.testing.assert_allclose(ours.values, sr.es_ensemble(y, x, backend="numpy"), rtol=1e-9)
    np.testing.assert_allclose(
        energy_score(obs, fc, dim=INIT_TIME).values,
        sr.es_ensemble(y, x, backend="numpy").mean(0),
        rtol=1e-9,
    )


# the kernel's square-root path for every order k / 4, k = 1..8, and its pow path
@pytest.mark.parametrize("p", [0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 0.7, 3.0])
def test_variogram_score_equals_scoringrules(p):
    obs, fc = _pair(seed=1)
    y, x = _flat(obs, fc)
    ours = variogram_score(obs, fc, dim=[], p=p)
    np.testing.assert_allclose(ours.values, sr.vs_ensemble(y, x, p=p, backend="numpy"), rtol=1e-9)


def test_quarter_orders_take_the_square_root_path():
    from forecast.scoring.kernels import quarter_order

    assert [quarter_order(p) for p in (0.25, 0.5, 1.0, 1.75, 2.0)] == [1, 2, 4, 7, 8]
    assert [quarter_order(p) for p in (0.7, 0.0, 2.25, 0.5 + 1e-9, -0.5)] == [0] * 5


def test_variogram_score_nan_spoils_only_its_sample():
    obs, fc = _pair(seed=3)
    want = variogram_score(obs, fc, dim=[]).values  # (init, lead)
    bad = fc.copy()
    bad[0, 1, 0, 0, 0] = np.nan  # issue 0, member 1, lead 0, one point
    got = variogram_score(obs, bad, dim=[]).values
    assert np.isnan(got[0, 0]) and np.isfinite(got).sum() == got.size - 1
    keep = np.isfinite(got)
    np.testing.assert_allclose(got[keep], want[keep], rtol=1e-12)


def test_energy_one_point_is_crps_and_errors():
    obs, fc = _pair(nlat=1, nlon=1, seed=2)
    np.testing.assert_allclose(
        energy_score(obs, fc, dim=[]).values,
        crps_ensemble(obs, fc, dim=[]).isel({LAT: 0, LON: 0}).values,
        rtol=1e-9,
    )
    with pytest.raises(ForecastError, match="vector dims"):
        energy_score(obs, fc, dim=LAT)
    o2, f2 = obs.isel({LAT: 0, LON: 0}, drop=True), fc.isel({LAT: 0, LON: 0}, drop=True)
    with pytest.raises(ForecastError, match="needs spatial dims"):
        energy_score(o2, f2)


def test_area_means_of_a_network_are_plain_means_and_need_space():
    from forecast.dims import NODE
    from forecast.scoring.multivariate import area_means

    rng = np.random.default_rng(0)
    fc = xr.DataArray(rng.normal(size=(5, 2, 4)), dims=(MEMBER, LEAD_TIME, NODE), name="speed")
    obs = xr.DataArray(rng.normal(size=(2, 4)), dims=(LEAD_TIME, NODE), name="speed")
    obs[1, 3] = np.nan
    o_area, f_area = area_means(obs, fc, skipna=True)
    np.testing.assert_allclose(o_area.values, [obs.values[0].mean(), obs.values[1, :3].mean()])
    np.testing.assert_allclose(f_area.values[:, 0], fc.values[:, 0].mean(-1))
    np.testing.assert_allclose(f_area.values[:, 1], fc.values[:, 1, :3].mean(-1))  # as the obs
    assert np.isnan(area_means(obs, fc)[0].values[1])  # skipna off: missing stays missing
    with pytest.raises(ForecastError, match="needs spatial dims"):
        area_means(obs.isel({NODE: 0}), fc.isel({NODE: 0}))
