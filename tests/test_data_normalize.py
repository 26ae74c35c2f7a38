"""Normalizer: statistics against numpy, round trips through data sets, arrays and JSON."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from forecast.data.normalize import Normalizer
from forecast.data.protocols import get_protocol
from forecast.data.torch import to_array
from forecast.dims import ADJACENCY, LAT, LON, NODE, NODE_J, TIME
from forecast.errors import ForecastError


def _two_vars(n: int = 50) -> xr.Dataset:
    rng = np.random.default_rng(0)
    time = pd.date_range("2020-01-01", periods=n, freq="h")
    return xr.Dataset(
        {
            "t2m": ((TIME, LAT, LON), 280 + 5 * rng.standard_normal((n, 3, 4)), {"units": "K"}),
            "u10": ((TIME, LAT, LON), 2 + rng.standard_normal((n, 3, 4)), {"units": "m s-1"}),
        },
        coords={TIME: time, LAT: [50.0, 51.0, 52.0], LON: [0.0, 1.0, 2.0, 3.0]},
    )


def test_fit_matches_numpy_and_ignores_nan():
    ds = _two_vars()
    ds["t2m"][0, 0, 0] = np.nan
    norm = Normalizer.fit(ds)
    assert norm.variables == ("t2m", "u10")
    t = ds["t2m"].values
    assert float(norm.mean["t2m"]) == pytest.approx(np.nanmean(t))
    assert float(norm.std["t2m"]) == pytest.approx(np.nanstd(t))
    z = norm.transform(ds)
    assert z["t2m"].attrs["units"] == "1"
    assert float(z["u10"].mean()) == pytest.approx(0, abs=1e-12)
    assert float(z["u10"].std()) == pytest.approx(1)
    assert np.isnan(z["t2m"].values[0, 0, 0])  # missing stays missing


def test_dataset_and_json_round_trip():
    ds = _two_vars()
    norm = Normalizer.fit(ds)
    again = Normalizer.from_dict(json.loads(json.dumps(norm.to_dict())))
    back = again.inverse(norm.transform(ds))
    xr.testing.assert_allclose(back, ds)
    assert back["u10"].attrs["units"] == "m s-1"


def test_fit_on_training_part_only(synthetic_traffic_ds):
    p = get_protocol("synthetic-traffic").resized(synthetic_traffic_ds.sizes[TIME])
    train = p.split(synthetic_traffic_ds, "train")
    norm = Normalizer.fit(train)
    assert float(norm.mean["speed"]) == pytest.approx(float(train["speed"].mean()), rel=1e-6)
    assert float(norm.mean["speed"]) != pytest.approx(
        float(synthetic_traffic_ds["speed"].mean()), rel=1e-6
    )


def test_per_node_statistics_and_round_trip(synthetic_traffic_ds):
    ds = synthetic_traffic_ds
    norm = Normalizer.fit(ds, per_node=True)
    speed = ds["speed"].values.astype(float)
    np.testing.assert_allclose(norm.mean["speed"], speed.mean(0), rtol=1e-9)
    np.testing.assert_allclose(norm.std["speed"], speed.std(0), rtol=1e-9)
    z = norm.transform(ds)
    np.testing.assert_allclose(z["speed"].mean(TIME), 0, atol=1e-4)
    np.testing.assert_allclose(z["speed"].std(TIME), 1, atol=1e-4)
    xr.testing.assert_identical(z[ADJACENCY], ds[ADJACENCY])  # static variables untouched
    again = Normalizer.from_dict(json.loads(json.dumps(norm.to_dict())))
    xr.testing.assert_allclose(again.inverse(z), ds, rtol=1e-5)
    with pytest.raises(ForecastError, match="sensors differ"):
        norm.transform(ds.isel({NODE: slice(0, 5), NODE_J: slice(0, 5)}))


def test_arrays_match_datasets(synthetic_traffic_ds):
    ds = synthetic_traffic_ds
    for per_node in (False, True):
        norm = Normalizer.fit(ds, per_node=per_node)
        arr = to_array(ds)  # (time, channel, node)
        z = norm.transform_array(arr)
        np.testing.assert_allclose(z, to_array(norm.transform(ds)), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(norm.inverse_array(z), arr, rtol=1e-5)
        ens = np.stack([z[:12], z[12:24]])  # (member, lead, channel, node)
        np.testing.assert_allclose(
            norm.inverse_array(ens, channel_axis=2), np.stack([arr[:12], arr[12:24]]), rtol=1e-5
        )


def test_arrays_on_grids():
    ds = _two_vars()
    norm = Normalizer.fit(ds)
    arr = to_array(ds)  # (time, channel, lat, lon)
    mean, std = norm.stats_array(channel_axis=1, ndim=4)
    np.testing.assert_allclose(std.ravel(), [ds["t2m"].std(), ds["u10"].std()], rtol=1e-6)
    assert mean.shape == (1, 2, 1, 1) and mean.dtype == np.float32
    np.testing.assert_allclose(
        norm.transform_array(arr), to_array(norm.transform(ds)), rtol=1e-5, atol=1e-5
    )
    with pytest.raises(ForecastError, match="channels"):
        norm.transform_array(arr[:, :1])
    with pytest.raises(ForecastError, match="no statistics"):
        norm.stats_array(1, 4, variables=["q"])


def test_bad_input():
    ds = _two_vars()
    with pytest.raises(ForecastError, match="per_node=True needs"):
        Normalizer.fit(ds, per_node=True)
    const = ds.assign(u10=ds["u10"] * 0 + 3.0)
    with pytest.raises(ForecastError, match="'u10' is constant"):
        Normalizer.fit(const)
    empty = ds.assign(u10=ds["u10"] * np.nan)
    with pytest.raises(ForecastError, match="'u10' has no finite value"):
        Normalizer.fit(empty)
    with pytest.raises(ForecastError, match="no forecast variable"):
        Normalizer.fit(xr.Dataset({"z": ((LAT,), [1.0])}))
    norm = Normalizer.fit(ds)
    with pytest.raises(ForecastError, match="do not match"):
        norm.transform(ds.drop_vars("u10"))
    with pytest.raises(ForecastError, match="malformed"):
        Normalizer.from_dict({"per_node": False})
    bad = norm.to_dict()
    bad["variables"]["t2m"]["std"] = 0.0
    with pytest.raises(ForecastError, match="non-positive std"):
        Normalizer.from_dict(bad)


def test_blockwise_moments_match_numpy_with_nan():
    from forecast.data.normalize import _moments

    ds = _two_vars(n=37)
    da = ds["t2m"].copy()
    da[5, 1, 2] = np.nan
    da[30, :, :] = np.nan
    values = da.values
    for block in (1, 12 * 5, 2**22):  # one step, several steps, everything in one block
        count, mean, std = _moments(da, per_node=False, block_elements=block)
        assert int(count) == np.isfinite(values).sum()
        assert float(mean) == pytest.approx(np.nanmean(values), rel=1e-12)
        assert float(std) == pytest.approx(np.nanstd(values), rel=1e-12)


def test_transform_array_in_place(synthetic_traffic_ds):
    norm = Normalizer.fit(synthetic_traffic_ds, per_node=True)
    arr = to_array(synthetic_traffic_ds)
    expected = norm.transform_array(arr)
    same = norm.transform_array(arr, copy=False)
    assert same is arr
    np.testing.assert_array_equal(arr, expected)
    with pytest.raises(ForecastError, match="float32"):
        norm.transform_array(arr.astype(np.float64), copy=False)
