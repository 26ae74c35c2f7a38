"""Evaluation protocols P1, P2 and the synthetic ones: exact splits, counts, no leakage."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from forecast.data.protocols import PROTOCOLS, Protocol, chronological, get_protocol
from forecast.data.synthetic import synthetic_traffic, synthetic_weather
from forecast.data.windows import get_protocol as get_protocol_from_windows
from forecast.dims import ADJACENCY, NODE, NODE_J, TIME
from forecast.errors import ForecastError


def _axis(n: int, start: str, freq: str) -> xr.Dataset:
    return xr.Dataset(
        {
            "v": ((TIME, NODE), np.zeros((n, 2), np.float32), {"units": "1"}),
            ADJACENCY: ((NODE, NODE_J), np.eye(2)),
        },
        coords={
            TIME: pd.date_range(start, periods=n, freq=freq),
            NODE: ["a", "b"],
            NODE_J: ["a", "b"],
        },
    )


LOS = _axis(2016, "2012-03-01", "5min")
ERA5 = _axis(744, "2019-03-01", "h")


def _assert_no_leakage(p: Protocol, ds: xr.Dataset) -> None:
    for split in ("train", "val", "test"):
        a, b = p.range(split)
        w = p.windows(ds, split)
        i = w.issue_index
        assert np.all(i + 1 >= a) and np.all(i + p.horizon <= b - 1), split  # target inside
        if split != "test":
            assert np.all(i - p.context + 1 >= a), split  # context inside too
        assert np.all(i - p.context + 1 >= 0)
        assert (w.context, w.horizon) == (p.context, p.horizon)


def test_registry_names_and_windows_alias():
    assert PROTOCOLS.names() == ["P1", "P2", "synthetic-traffic", "synthetic-weather"]
    assert get_protocol_from_windows("P1") is get_protocol("P1")
    with pytest.raises(ForecastError, match="valid names: P1, P2"):
        get_protocol("P3")


def test_p1_exact():
    p = get_protocol("P1")
    assert (p.dataset, p.context, p.horizon) == ("los-loop", 12, 12)
    assert (p.train, p.val, p.test) == ((0, 1411), (1411, 1613), (1613, 2016))
    test = p.windows(LOS, "test")
    assert len(test) == 392
    assert test.issue_index.tolist() == list(range(1612, 2004))  # stride 1
    # the first test context reaches into val; the last target ends at the last step
    assert test.context_slice(0) == slice(1601, 1613) and test.target_slice(0) == slice(1613, 1625)
    assert test.target_slice(391) == slice(2004, 2016)
    assert p.windows(LOS, "train").issue_index.tolist() == list(range(11, 1399))
    assert p.windows(LOS, "val").issue_index.tolist() == list(range(1422, 1601))
    _assert_no_leakage(p, LOS)


def test_p2_exact():
    p = get_protocol("P2")
    assert (p.dataset, p.context, p.horizon) == ("era5-uk-t2m", 6, 24)
    times = pd.DatetimeIndex(ERA5[TIME].values)
    for split, first, last in [
        ("train", "2019-03-01", "2019-03-21"),
        ("val", "2019-03-22", "2019-03-24"),
        ("test", "2019-03-25", "2019-03-31"),
    ]:
        part = times[slice(*p.range(split))]
        assert part[0] == pd.Timestamp(first) and part[-1] == pd.Timestamp(f"{last}T23:00")
    test = p.windows(ERA5, "test")
    assert len(test) == 24
    expected = pd.date_range("2019-03-25", "2019-03-30T18:00", freq="6h")
    np.testing.assert_array_equal(test.issue_times(ERA5), expected.values)
    issue = test.issue_index
    assert np.all(issue + 24 <= 743) and issue.tolist()[:2] == [576, 582]
    val = p.windows(ERA5, "val")
    assert pd.DatetimeIndex(val.issue_times(ERA5)).hour.isin([0, 6, 12, 18]).all()
    assert len(p.windows(ERA5, "train")) == 504 - 6 - 24 + 1
    _assert_no_leakage(p, ERA5)


def test_split_returns_time_slice_and_keeps_static_variables():
    p = get_protocol("P1")
    val = p.split(LOS, "val")
    assert val.sizes[TIME] == 202
    assert pd.Timestamp(val[TIME].values[0]) == pd.Timestamp("2012-03-01") + 1411 * pd.Timedelta(
        "5min"
    )
    assert ADJACENCY in val and val[ADJACENCY].dims == (NODE, NODE_J)


def test_protocol_refuses_other_data():
    p1, p2 = get_protocol("P1"), get_protocol("P2")
    with pytest.raises(ForecastError, match="needs 2016 time steps"):
        p1.windows(LOS.isel({TIME: slice(0, 2000)}), "test")
    with pytest.raises(ForecastError, match="needs a 1h time step"):
        p2.split(_axis(744, "2019-03-01", "30min"), "train")
    with pytest.raises(ForecastError, match="starts at 2019-03-01"):
        p2.windows(_axis(744, "2019-04-01", "h"), "test")
    with pytest.raises(ForecastError, match="unknown split"):
        p1.split(LOS, "validation")
    with pytest.raises(ForecastError, match="fixed splits"):
        p1.resized(100)
    with pytest.raises(ForecastError, match="contiguous"):
        Protocol("bad", "x", 1, 1, (0, 10), (11, 20), (20, 30), n_steps=30)


def test_overrides_of_the_issue_time_selection():
    p = get_protocol("P2")
    every = p.windows(ERA5, "test", hours=None)
    # every issue time whose target lies in [576, 744): 575 (03-24T23, context in val) .. 719
    assert every.issue_index.tolist() == list(range(575, 720))
    assert len(p.windows(ERA5, "test", stride=2)) == 12


def test_synthetic_protocols_fit_default_data():
    pw, pt = get_protocol("synthetic-weather"), get_protocol("synthetic-traffic")
    assert (pw.context, pw.horizon, pw.hours, pw.step) == (6, 24, (0, 6, 12, 18), "1h")
    assert (pt.context, pt.horizon, pt.step) == (12, 12, "5min")
    assert (pw.train, pw.val, pw.test) == ((0, 1512), (1512, 1728), (1728, 2160))
    weather = synthetic_weather(n_lat=2, n_lon=2)  # default length, tiny grid
    traffic = synthetic_traffic(n_sensors=16)
    _assert_no_leakage(pw, weather)
    _assert_no_leakage(pt, traffic)
    assert len(pw.windows(weather, "test")) == 17 * 4  # days 72..88 at 00/06/12/18
    test = pt.windows(traffic, "test")
    assert np.all(np.diff(test.issue_index) == 12)


def test_resized_synthetic_protocol_on_fixtures(synthetic_weather_ds, synthetic_traffic_ds):
    with pytest.raises(ForecastError, match="resized"):
        get_protocol("synthetic-weather").windows(synthetic_weather_ds, "train")
    pw = get_protocol("synthetic-weather").resized(synthetic_weather_ds.sizes[TIME])
    assert (pw.train, pw.val, pw.test) == ((0, 353), (353, 403), (403, 504))
    _assert_no_leakage(pw, synthetic_weather_ds)
    pt = get_protocol("synthetic-traffic").resized(synthetic_traffic_ds.sizes[TIME])
    _assert_no_leakage(pt, synthetic_traffic_ds)


def test_chronological_and_to_dict():
    p = chronological("demo", "x", 100, 3, 4, step="1h", fractions=(0.5, 0.25, 0.25))
    assert (p.train, p.val, p.test) == ((0, 50), (50, 75), (75, 100))
    d = json.loads(json.dumps(p.to_dict()))
    assert d["train"] == [0, 50] and d["step"] == "1h"
    with pytest.raises(ForecastError, match="fractions"):
        chronological("demo", "x", 100, 3, 4, step="1h", fractions=(0.5, 0.5, 0.5))
    with pytest.raises(ForecastError, match="too few"):
        chronological("demo", "x", 3, 1, 1, step="1h", fractions=(0.98, 0.01, 0.01))


def test_p1_on_the_real_los_loop(los_loop_dir):
    from forecast.data import open_dataset

    ds = open_dataset("los-loop")
    p = get_protocol("P1")
    assert len(p.windows(ds, "test")) == 392
    assert p.split(ds, "train").sizes[TIME] == 1411
    _assert_no_leakage(p, ds)


def test_p2_on_the_real_era5(era5_path):
    from forecast.data import open_dataset

    ds = open_dataset("era5-uk-t2m")
    p = get_protocol("P2")
    test = p.windows(ds, "test")
    assert len(test) == 24
    assert pd.Timestamp(test.issue_times(ds)[0]) == pd.Timestamp("2019-03-25T00:00")
    _assert_no_leakage(p, ds)
