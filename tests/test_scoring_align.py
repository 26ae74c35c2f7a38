"""obs_for: truth at the valid times; alignment errors. Also the synthetic case other tests use."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from forecast.dims import INIT_TIME, LAT, LEAD_TIME, LON, MEMBER, TIME, VALID_TIME
from forecast.errors import ForecastError
from forecast.scoring import crps_ensemble, obs_for


def make_case(
    m: int = 8,
    n_init: int = 3,
    n_lead: int = 4,
    seed: int = 0,
    spread: float = 1.0,
    calibrated: bool = True,
    nlat: int = 3,
    nlon: int = 4,
):
    """Truth (time, lat, lon) and an ensemble (init_time, member, lead_time, lat, lon), in K.

    ``calibrated``: the truth and the members are independent draws around the same signal
    (spread ``spread`` for the members, 1 for the truth), so with ``spread=1`` the truth is
    exchangeable with the members.
    """
    rng = np.random.default_rng(seed)
    times = pd.date_range("2024-01-01", periods=48, freq="h")
    lat = 50.0 + np.arange(nlat)
    lon = np.arange(nlon) * 1.0
    signal = 280 + 3 * np.sin(np.arange(48) / 5)[:, None, None] + np.zeros((48, nlat, nlon))
    truth = xr.Dataset(
        {"t2m": ((TIME, LAT, LON), signal + rng.standard_normal(signal.shape), {"units": "K"})},
        coords={TIME: times, LAT: lat, LON: lon},
    )
    init = times[5 : 5 + 5 * n_init : 5]
    lead = pd.to_timedelta(np.arange(1, n_lead + 1), "h")
    idx = np.searchsorted(times, init)[:, None] + np.arange(1, n_lead + 1)[None]
    centre = signal[idx] if calibrated else truth.t2m.values[idx]
    ens = centre[:, None] + spread * rng.standard_normal((n_init, m, n_lead, nlat, nlon))
    fc = xr.Dataset(
        {"t2m": ((INIT_TIME, MEMBER, LEAD_TIME, LAT, LON), ens.astype(np.float32), {"units": "K"})},
        coords={INIT_TIME: init, MEMBER: np.arange(m), LEAD_TIME: lead, LAT: lat, LON: lon},
    )
    return truth, fc.assign_coords({VALID_TIME: fc[INIT_TIME] + fc[LEAD_TIME]})


def test_obs_for_selects_valid_times():
    truth, fc = make_case()
    obs = obs_for(fc, truth)
    assert obs["t2m"].dims == (INIT_TIME, LEAD_TIME, LAT, LON)
    for i in range(fc.sizes[INIT_TIME]):
        for k in range(fc.sizes[LEAD_TIME]):
            vt = fc[INIT_TIME].values[i] + fc[LEAD_TIME].values[k]
            np.testing.assert_array_equal(
                obs["t2m"].values[i, k], truth["t2m"].sel({TIME: vt}).values
            )
    assert obs["t2m"].attrs["units"] == "K"
    # a DataArray ensemble and a single-issue ensemble (scalar init_time) work too
    one = fc.isel({INIT_TIME: 0})
    o1 = obs_for(one["t2m"], truth)
    assert o1.dims == (LEAD_TIME, LAT, LON)
    np.testing.assert_array_equal(o1.values, obs["t2m"].values[0])
    crps_ensemble(o1, one["t2m"])  # aligns exactly


def test_obs_for_subset_grid_and_missing_points():
    truth, fc = make_case()
    sub = fc.isel({LAT: [0, 2]})
    obs = obs_for(sub, truth)
    np.testing.assert_array_equal(obs[LAT].values, sub[LAT].values)
    with pytest.raises(ForecastError, match="truth lacks 'lat' value"):
        obs_for(fc.assign_coords({LAT: fc[LAT] + 0.25}), truth)


def test_obs_for_missing_times_and_variables():
    truth, fc = make_case()
    with pytest.raises(ForecastError, match="truth lacks 2 valid time") as err:
        obs_for(fc, truth.isel({TIME: slice(0, 18)}))
    assert "\n" not in str(err.value)
    with pytest.raises(ForecastError, match="truth lacks variable"):
        obs_for(fc, truth.rename({"t2m": "u10"}))
    with pytest.raises(ForecastError, match="no 'lead_time' dimension"):
        obs_for(fc.isel({LEAD_TIME: 0}), truth)


def test_dataset_variable_mismatch():
    truth, fc = make_case()
    obs = obs_for(fc, truth)
    with pytest.raises(ForecastError, match="obs lacks forecast variable"):
        crps_ensemble(obs.rename({"t2m": "x"}), fc)
    with pytest.raises(ForecastError, match="both be DataArrays or both Datasets"):
        crps_ensemble(obs["t2m"], fc)
    with pytest.raises(ForecastError, match="cannot reduce over"):
        crps_ensemble(obs, fc, dim="height")


def test_sensor_ids_as_objects_align_with_strings():
    """Ids read back from NetCDF are objects, a data set's strings: the same ids align;
    other ids, or ids of another kind, do not."""
    from forecast.dims import NODE

    rng = np.random.default_rng(0)
    ids = np.array(["s1", "s2", "s3"])
    obs = xr.DataArray(rng.normal(size=3), dims=NODE, coords={NODE: ids}, name="speed")
    fc = xr.DataArray(
        rng.normal(size=(4, 3)), dims=(MEMBER, NODE), coords={NODE: ids.astype(object)}
    )
    expected = crps_ensemble(obs, fc.assign_coords({NODE: ids}))
    np.testing.assert_allclose(crps_ensemble(obs, fc).values, expected.values)
    with pytest.raises(ForecastError, match="has s3 where"):
        crps_ensemble(obs, fc.assign_coords({NODE: np.array(["s1", "s2", "s4"], dtype=object)}))
    with pytest.raises(ForecastError, match="convert one of them"):
        crps_ensemble(obs, fc.assign_coords({NODE: [1, 2, 3]}))
