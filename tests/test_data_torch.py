"""The xarray <-> torch boundary: array layout, window items as views, ensemble data sets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
from torch.utils.data import DataLoader

from forecast.data.normalize import Normalizer
from forecast.data.protocols import get_protocol
from forecast.data.torch import WindowDataset, ensemble_from_array, to_array
from forecast.data.windows import calendar_features, context_of, make_windows, target_of
from forecast.dims import (
    ADJACENCY,
    INIT_TIME,
    LAT,
    LEAD_TIME,
    LON,
    MEMBER,
    NODE,
    TIME,
    VALID_TIME,
)
from forecast.errors import ForecastError


def _grid(n: int = 30) -> xr.Dataset:
    rng = np.random.default_rng(1)
    return xr.Dataset(
        {
            "u10": ((TIME, LON, LAT), rng.standard_normal((n, 4, 3)), {"units": "m s-1"}),
            "t2m": ((TIME, LAT, LON), 280 + rng.standard_normal((n, 3, 4)), {"units": "K"}),
        },
        coords={
            TIME: pd.date_range("2020-01-01", periods=n, freq="h"),
            LAT: [50.0, 51.0, 52.0],
            LON: [0.0, 1.0, 2.0, 3.0],
        },
    )


def test_to_array_layout_and_channel_order():
    ds = _grid()
    arr = to_array(ds)
    assert arr.shape == (30, 2, 3, 4) and arr.dtype == np.float32
    # channels in data-set order; each variable transposed to (time, lat, lon)
    u10 = ds["u10"].transpose(TIME, LAT, LON).values.astype(np.float32)
    np.testing.assert_array_equal(arr[:, 0], u10)
    np.testing.assert_array_equal(arr[:, 1], ds["t2m"].values.astype(np.float32))


def test_to_array_sensor_data_skips_adjacency(synthetic_traffic_ds):
    arr = to_array(synthetic_traffic_ds)
    assert arr.shape == (2016, 1, 20)
    np.testing.assert_array_equal(arr[:, 0], synthetic_traffic_ds["speed"].values)


def test_to_array_errors():
    ds = _grid()
    with pytest.raises(ForecastError, match="no forecast variable"):
        to_array(ds.isel({TIME: 0}, drop=True))
    bad = ds.assign(prof=ds["t2m"].expand_dims(level=[1, 2]))
    with pytest.raises(ForecastError, match="'prof' has dims"):
        to_array(bad)


def test_window_items_are_views_of_the_right_steps(synthetic_weather_ds):
    ds = synthetic_weather_ds
    norm = Normalizer.fit(ds)
    values = norm.transform_array(to_array(ds))
    windows = make_windows(ds, 6, 24, hours=[0, 12])
    cal = calendar_features(ds[TIME])
    wds = WindowDataset(values, windows, cal)
    assert len(wds) == len(windows)
    k = 3
    item = wds[k]
    i = int(windows.issue_index[k])
    assert item["issue_index"] == i
    assert item["context"].shape == (6, 1, 16, 24) and item["target"].shape == (24, 1, 16, 24)
    assert item["context"].dtype == torch.float32 and item["calendar"].shape == (4,)
    # exact steps, matching the xarray-side slices
    issue_time = ds[TIME].values[i]
    expected_ctx = to_array(norm.transform(context_of(ds, issue_time, 6)))
    expected_tgt = to_array(norm.transform(target_of(ds, issue_time, 24)))
    np.testing.assert_allclose(item["context"].numpy(), expected_ctx, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(item["target"].numpy(), expected_tgt, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(item["calendar"].numpy(), calendar_features([issue_time])[0])
    # views: the items share memory with the one tensor over the data
    assert item["context"].untyped_storage().data_ptr() == wds.values.untyped_storage().data_ptr()
    assert wds.values.data_ptr() == values.ctypes.data
    with pytest.raises(IndexError):
        wds[len(wds)]


def test_dataloader_batches(synthetic_traffic_ds):
    ds = synthetic_traffic_ds
    p = get_protocol("synthetic-traffic").resized(ds.sizes[TIME])
    norm = Normalizer.fit(p.split(ds, "train"), per_node=True)
    wds = WindowDataset(
        norm.transform_array(to_array(ds)), p.windows(ds, "train"), calendar_features(ds[TIME])
    )
    batch = next(iter(DataLoader(wds, batch_size=8, shuffle=False)))
    assert batch["context"].shape == (8, 12, 1, 20) and batch["target"].shape == (8, 12, 1, 20)
    assert batch["calendar"].shape == (8, 4) and batch["issue_index"].tolist() == list(
        range(11, 19)
    )
    n = sum(b["context"].shape[0] for b in DataLoader(wds, batch_size=256))
    assert n == len(wds)


def test_window_dataset_errors():
    ds = _grid()
    values = to_array(ds)
    w = make_windows(ds, 3, 4)
    with pytest.raises(ForecastError, match="calendar must be"):
        WindowDataset(values, w, np.zeros((10, 4)))
    with pytest.raises(ForecastError, match="array has 20 steps"):
        WindowDataset(values[:20], w, np.zeros((20, 4)))


def test_ensemble_from_array_grid():
    ds = _grid()
    ctx = context_of(ds, 10, 4)
    values = np.random.default_rng(0).standard_normal((5, 6, 2, 3, 4)).astype(np.float32)
    ens = ensemble_from_array(torch.from_numpy(values), ctx, 6)
    assert ens["t2m"].dims == (MEMBER, LEAD_TIME, LAT, LON)
    assert ens[MEMBER].values.tolist() == [0, 1, 2, 3, 4]
    init = ds[TIME].values[10]
    assert ens[INIT_TIME].values == init and ens[INIT_TIME].ndim == 0
    np.testing.assert_array_equal(
        ens[LEAD_TIME].values, (np.arange(1, 7) * np.timedelta64(1, "h")).astype("m8[ns]")
    )
    np.testing.assert_array_equal(ens[VALID_TIME].values, ds[TIME].values[11:17])
    np.testing.assert_array_equal(ens["u10"].values, values[:, :, 0])
    assert ens["t2m"].attrs["units"] == "K" and ens["u10"].attrs["units"] == "m s-1"
    np.testing.assert_array_equal(ens[LAT].values, ds[LAT].values)
    # leads as explicit steps and an explicit time step
    ens2 = ensemble_from_array(values[:, :2], ctx.isel({TIME: [-1]}), [3, 6], step="1h")
    assert (ens2[LEAD_TIME].values / np.timedelta64(1, "h")).tolist() == [3.0, 6.0]


def test_ensemble_from_array_sensors_round_trip(synthetic_traffic_ds):
    """Target windows put through the ensemble builder come back as the observed values."""
    ds = synthetic_traffic_ds
    ctx, tgt = context_of(ds, 100, 12), target_of(ds, 100, 12)
    ens = ensemble_from_array(to_array(tgt)[None], ctx, 12)
    assert ens["speed"].dims == (MEMBER, LEAD_TIME, NODE)
    assert ADJACENCY not in ens
    for name in (NODE, LAT, LON, "corridor", "position_km"):
        np.testing.assert_array_equal(ens[name].values, ds[name].values)
    obs = ds["speed"].sel({TIME: ens[VALID_TIME]})
    np.testing.assert_array_equal(ens["speed"].isel({MEMBER: 0}).values, obs.values)


def test_ensemble_from_array_errors():
    ds = _grid()
    ctx = context_of(ds, 10, 4)
    with pytest.raises(ForecastError, match="shape"):
        ensemble_from_array(np.zeros((2, 6, 1, 3, 4)), ctx, 6)
    with pytest.raises(ForecastError, match="shape"):
        ensemble_from_array(np.zeros((2, 6, 2, 3, 4)), ctx, 5)
    with pytest.raises(ForecastError, match="at least 2"):
        ensemble_from_array(np.zeros((2, 6, 2, 3, 4)), ctx.isel({TIME: [-1]}), 6)
