"""Windows as issue indices: enumeration against brute force, slices, calendar features."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from forecast.data.windows import (
    Windows,
    calendar_features,
    context_of,
    make_windows,
    target_of,
)
from forecast.dims import NODE, TIME
from forecast.errors import ForecastError


def _axis(n: int, freq: str = "h", start: str = "2024-01-01") -> xr.Dataset:
    time = pd.date_range(start, periods=n, freq=freq)
    return xr.Dataset(
        {"x": ((TIME, NODE), np.arange(n * 2, dtype=float).reshape(n, 2), {"units": "m"})},
        coords={TIME: time, NODE: ["a", "b"]},
    )


def _brute(n, times, context, horizon, a, b, stride, hours):
    keep = []
    for i in range(n):
        if i - context + 1 < 0 or i + 1 < a or i + horizon > b - 1:
            continue
        t = pd.Timestamp(times[i])
        if hours is not None and not (t.hour in hours and t.minute == 0):
            continue
        keep.append(i)
    return keep[::stride]


@pytest.mark.parametrize(
    ("context", "horizon", "target_range", "stride", "hours"),
    list(
        itertools.product(
            [1, 3, 12], [1, 5], [None, (0, 40), (20, 70), (31, 80)], [1, 4], [None, (0, 6, 13)]
        )
    ),
)
def test_make_windows_matches_brute_force(context, horizon, target_range, stride, hours):
    ds = _axis(80, freq="30min")
    a, b = target_range or (0, 80)
    expected = _brute(80, ds[TIME].values, context, horizon, a, b, stride, hours)
    if not expected:
        with pytest.raises(ForecastError, match="no window"):
            make_windows(
                ds, context, horizon, target_range=target_range, stride=stride, hours=hours
            )
        return
    w = make_windows(ds, context, horizon, target_range=target_range, stride=stride, hours=hours)
    assert w.issue_index.dtype == np.int64
    assert w.issue_index.tolist() == expected
    assert (w.context, w.horizon, len(w)) == (context, horizon, len(expected))


def test_windows_hold_only_indices():
    ds = _axis(1000)
    small = make_windows(ds, 2, 2)
    large = make_windows(ds, 200, 200)
    assert small.issue_index.nbytes == 8 * len(small)
    assert large.issue_index.nbytes == 8 * len(large)
    assert len(small) == 1000 - 2 - 2 + 1 and len(large) == 1000 - 200 - 200 + 1


def test_slices_and_issue_times():
    ds = _axis(48)
    w = make_windows(ds, 6, 24, hours=[0, 6, 12, 18])
    assert w.issue_index.tolist() == [6, 12, 18]
    np.testing.assert_array_equal(w.issue_times(ds), ds[TIME].values[[6, 12, 18]])
    assert w.context_slice(0) == slice(1, 7) and w.target_slice(0) == slice(7, 31)
    sub = w.subset(np.array([False, True, True]))
    assert sub.issue_index.tolist() == [12, 18] and sub.context == 6


def test_context_and_target_of_are_exact_slices():
    ds = _axis(48)
    issue = pd.Timestamp("2024-01-01T10:00")
    ctx = context_of(ds, issue, 4)
    tgt = target_of(ds, issue, 3)
    np.testing.assert_array_equal(ctx["x"].values, ds["x"].values[7:11])
    np.testing.assert_array_equal(tgt["x"].values, ds["x"].values[11:14])
    assert pd.Timestamp(ctx[TIME].values[-1]) == issue
    assert pd.Timestamp(tgt[TIME].values[0]) == issue + pd.Timedelta("1h")
    # an int is a time index; np.datetime64 and strings work too
    xr.testing.assert_identical(context_of(ds, 10, 4), ctx)
    xr.testing.assert_identical(target_of(ds, np.datetime64("2024-01-01T10:00"), 3), tgt)
    xr.testing.assert_identical(target_of(ds, "2024-01-01 10:00", 3), tgt)


def test_context_and_target_of_errors():
    ds = _axis(48)
    with pytest.raises(ForecastError, match="fewer than the context"):
        context_of(ds, 2, 4)
    with pytest.raises(ForecastError, match="fewer than the horizon"):
        target_of(ds, 45, 3)
    with pytest.raises(ForecastError, match="not a time step"):
        context_of(ds, "2024-01-01T10:30", 2)
    with pytest.raises(ForecastError, match="outside"):
        context_of(ds, 48, 2)
    with pytest.raises(ForecastError, match="positive integer"):
        target_of(ds, 3, 0)


def test_make_windows_errors():
    ds = _axis(48)
    with pytest.raises(ForecastError, match="context"):
        make_windows(ds, 0, 3)
    with pytest.raises(ForecastError, match="stride"):
        make_windows(ds, 2, 3, stride=0)
    with pytest.raises(ForecastError, match="target_range"):
        make_windows(ds, 2, 3, target_range=(10, 60))
    with pytest.raises(ForecastError, match="hours"):
        make_windows(ds, 2, 3, hours=[24])
    with pytest.raises(ForecastError, match="no window"):
        make_windows(ds, 30, 30)
    with pytest.raises(ForecastError, match="time"):
        make_windows(xr.Dataset({"x": ((NODE,), [1.0])}), 1, 1)
    with pytest.raises(ForecastError, match="no room"):
        Windows(np.array([1, 2]), context=3, horizon=1)
    w = make_windows(ds, 2, 3)
    with pytest.raises(ForecastError, match="build the windows"):
        w.issue_times(ds.isel({TIME: slice(0, 20)}))


def test_calendar_features_closed_form():
    times = pd.DatetimeIndex(
        ["2024-01-01T00:00", "2024-01-01T06:00", "2024-01-07T18:00", "2024-01-03T12:30"]
    )
    got = calendar_features(times)
    assert got.dtype == np.float32 and got.shape == (4, 4)
    two_pi = 2 * np.pi
    expected = np.array(
        [
            [0, 1, 0, 1],  # Monday midnight
            [1, 0, 0, 1],  # Monday 06:00
            [-1, 0, np.sin(two_pi * 6 / 7), np.cos(two_pi * 6 / 7)],  # Sunday 18:00
            [
                np.sin(two_pi * 12.5 / 24),
                np.cos(two_pi * 12.5 / 24),
                np.sin(two_pi * 2 / 7),
                np.cos(two_pi * 2 / 7),
            ],  # Wednesday 12:30
        ]
    )
    np.testing.assert_allclose(got, expected, atol=1e-6)
    # DataArray and datetime64 array inputs give the same
    da = xr.DataArray(times.values, dims=TIME)
    np.testing.assert_array_equal(calendar_features(da), got)
    np.testing.assert_array_equal(calendar_features(times.values), got)
