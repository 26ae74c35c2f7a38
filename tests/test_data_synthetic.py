"""Synthetic data sets: determinism, layout, and the structure their docstrings promise."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from forecast.data.describe import data_variables, time_step
from forecast.data.synthetic import synthetic_traffic, synthetic_weather
from forecast.dims import ADJACENCY, LAT, LON, NODE, NODE_J, TIME
from forecast.errors import ForecastError


def _lagged_corr(x: np.ndarray, y: np.ndarray, lag: int) -> float:
    """corr(x[t], y[t + lag])."""
    if lag >= 0:
        a, b = x[: len(x) - lag], y[lag:]
    else:
        a, b = x[-lag:], y[: len(y) + lag]
    return float(np.corrcoef(a, b)[0, 1])


# -- weather ---------------------------------------------------------------------------------
def test_weather_is_deterministic_by_seed():
    a = synthetic_weather(seed=3, n_lat=6, n_lon=8, days=2)
    b = synthetic_weather(seed=3, n_lat=6, n_lon=8, days=2)
    c = synthetic_weather(seed=4, n_lat=6, n_lon=8, days=2)
    xr.testing.assert_identical(a, b)
    assert not np.allclose(a["t2m"].values, c["t2m"].values)


def test_weather_layout(synthetic_weather_ds):
    ds = synthetic_weather_ds
    assert dict(ds["t2m"].sizes) == {TIME: 21 * 24, LAT: 16, LON: 24}
    assert ds["t2m"].dims == (TIME, LAT, LON)
    assert ds["t2m"].dtype == np.float32
    assert data_variables(ds) == ["t2m"]
    attrs = ds["t2m"].attrs
    assert attrs["units"] == "K" and attrs["standard_name"] == "air_temperature"
    assert attrs["long_name"]
    assert np.all(np.diff(ds[LAT].values) > 0)
    assert ds[LAT].values[[0, -1]].tolist() == [50.0, 58.0]
    assert ds[LON].values[[0, -1]].tolist() == [-10.0, 2.0]
    assert time_step(ds) == pd.Timedelta("1h")
    assert pd.Timestamp(ds[TIME].values[0]) == pd.Timestamp("2021-01-01")
    values = ds["t2m"].values
    assert np.isfinite(values).all()
    assert 255 < values.min() and values.max() < 300  # plausible winter temperatures in K


def test_weather_diurnal_cycle_peaks_mid_afternoon_local_time(synthetic_weather_ds):
    ds = synthetic_weather_ds
    hourly = ds["t2m"].mean((LAT, LON)).groupby(f"{TIME}.hour").mean().values
    hours = np.arange(24)
    harmonic = 2 / 24 * np.sum(hourly * np.exp(-2j * np.pi * hours / 24))
    peak_utc = (-np.angle(harmonic) * 24 / (2 * np.pi)) % 24
    # the model puts the maximum at 15 h local solar time = 15 - lon / 15 UTC
    expected = 15 - ds[LON].values.mean() / 15
    assert abs(np.abs(harmonic)) > 0.3
    assert abs(peak_utc - expected) < 0.75


def test_weather_anomalies_are_advected_eastward(synthetic_weather_ds):
    """Mean wind 8 m/s westerly: anomalies 6 h later sit ~5 cells (34 km each) further east."""
    x = synthetic_weather_ds["t2m"]
    anomaly = (x.groupby(f"{TIME}.hour") - x.groupby(f"{TIME}.hour").mean(TIME)).values
    lag, n_lon = 6, anomaly.shape[2]

    def corr(shift: int) -> float:
        a = anomaly[:-lag, :, : n_lon - shift] if shift >= 0 else anomaly[:-lag, :, -shift:]
        b = anomaly[lag:, :, shift:] if shift >= 0 else anomaly[lag:, :, : n_lon + shift]
        return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])

    shifts = list(range(-3, 10))
    scores = [corr(s) for s in shifts]
    best = shifts[int(np.argmax(scores))]
    assert 2 <= best <= 8
    assert max(scores) > corr(0) + 0.05 > corr(-3) + 0.1


def test_weather_anomaly_is_linear_in_anomaly_std():
    """The forcing is sigma = s sqrt(2 / tau) and the wind does not depend on the anomaly, so
    without weather systems halving ``anomaly_std`` halves every deviation from the mean
    diurnal cycle (and the mean state is unchanged)."""
    kw = dict(seed=2, n_lat=6, n_lon=9, days=5, system_rate_per_day=0.0)
    full = synthetic_weather(anomaly_std=3.0, **kw)["t2m"].astype(np.float64)
    half = synthetic_weather(anomaly_std=1.5, **kw)["t2m"].astype(np.float64)
    off = synthetic_weather(anomaly_std=0.0, **kw)["t2m"].astype(np.float64)
    np.testing.assert_allclose((half - off).values, 0.5 * (full - off).values, atol=2e-3)
    assert float((full - off).std()) > 0.5


def test_weather_bad_sizes():
    with pytest.raises(ForecastError, match="n_lat"):
        synthetic_weather(n_lat=0)
    with pytest.raises(ForecastError, match="too small"):
        synthetic_weather(n_lat=1, n_lon=5, days=1)


# -- traffic ---------------------------------------------------------------------------------
def test_traffic_is_deterministic_by_seed():
    a = synthetic_traffic(seed=3, n_sensors=10, days=1, n_corridors=2)
    b = synthetic_traffic(seed=3, n_sensors=10, days=1, n_corridors=2)
    c = synthetic_traffic(seed=4, n_sensors=10, days=1, n_corridors=2)
    xr.testing.assert_identical(a, b)
    assert not np.allclose(a["speed"].values, c["speed"].values)


def test_traffic_layout(synthetic_traffic_ds):
    ds = synthetic_traffic_ds
    assert ds["speed"].dims == (TIME, NODE) and ds["speed"].shape == (2016, 20)
    assert ds["speed"].dtype == np.float32
    assert ds["speed"].attrs["units"] == "mph"
    assert data_variables(ds) == ["speed"]
    assert time_step(ds) == pd.Timedelta("5min")
    assert all(isinstance(v, str) for v in ds[NODE].values.tolist())
    assert ds[NODE].values.tolist() == ds[NODE_J].values.tolist()
    assert ds[LAT].dims == (NODE,) and ds[LON].dims == (NODE,)
    assert np.all(np.abs(ds[LAT].values - 34.05) < 1) and np.all(np.abs(ds[LON] + 118.25) < 1)
    speed = ds["speed"].values
    assert np.isfinite(speed).all() and speed.min() >= 3 and speed.max() <= 80
    assert pd.Timestamp(ds[TIME].values[0]).day_of_week == 0  # starts on a Monday


def test_traffic_adjacency_is_gaussian_kernel_of_road_distance(synthetic_traffic_ds):
    ds = synthetic_traffic_ds
    adj = ds[ADJACENCY].values.astype(float)
    assert ds[ADJACENCY].dims == (NODE, NODE_J)
    np.testing.assert_array_equal(adj, adj.T)
    np.testing.assert_array_equal(np.diag(adj), 1.0)
    off = adj[~np.eye(len(adj), dtype=bool)]
    assert np.all((off == 0) | ((off >= 0.1) & (off <= 1)))
    # neighbours along one corridor: road distance = difference of positions
    pos, cor = ds["position_km"].values, ds["corridor"].values
    checked = 0
    for i in range(len(pos) - 1):
        if cor[i] == cor[i + 1]:
            expected = np.exp(-(((pos[i + 1] - pos[i]) / 2.0) ** 2))
            assert adj[i, i + 1] == pytest.approx(expected, rel=1e-6)
            checked += 1
    assert checked >= 15


def test_traffic_rush_hours_and_weekends(synthetic_traffic_ds):
    speed = synthetic_traffic_ds["speed"].mean(NODE)
    t = pd.DatetimeIndex(speed[TIME].values)
    weekday = t.day_of_week < 5
    hour = t.hour + t.minute / 60

    def mean(mask: np.ndarray) -> float:
        return float(speed.values[mask].mean())

    night_wd = mean(weekday & (hour < 4))
    am_wd = mean(weekday & (hour >= 7.5) & (hour < 8.5))
    pm_wd = mean(weekday & (hour >= 17) & (hour < 18.5))
    am_we = mean(~weekday & (hour >= 7.5) & (hour < 8.5))
    pm_we = mean(~weekday & (hour >= 17) & (hour < 18.5))
    assert night_wd - am_wd > 3
    assert night_wd - pm_wd > 3
    assert am_we - am_wd > 2 and pm_we - pm_wd > 2


def test_traffic_congestion_waves_travel_upstream():
    """Speed changes at a bottleneck reach a sensor d km upstream d / w later."""
    w = 6.0
    ds = synthetic_traffic(seed=0, n_sensors=20, days=7, n_corridors=2, wave_speed_kmh=w)
    ids = ds[NODE].values.tolist()
    pos, cor = ds["position_km"].values, ds["corridor"].values
    speed = np.diff(ds["speed"].values.astype(float), axis=0)
    lags = np.arange(-8, 9)
    pairs = 0
    for b in ds.attrs["bottlenecks"].split():
        j = ids.index(b)
        for u in np.flatnonzero((cor == cor[j]) & (pos < pos[j]) & (pos > pos[j] - 2.0)):
            scores = [_lagged_corr(speed[:, j], speed[:, u], int(lag)) for lag in lags]
            best = int(lags[int(np.argmax(scores))])
            expected = (pos[j] - pos[u]) / w * 12  # steps of 5 min
            assert best >= 1, (b, ids[u])  # the downstream sensor leads
            assert abs(best - expected) <= 1.0, (b, ids[u], best, expected)
            pairs += 1
    assert pairs >= 3


def test_traffic_incidents_slow_traffic_at_night():
    """Without incidents nights flow freely; with many incidents some night speeds collapse."""
    kw = {"seed": 1, "n_sensors": 12, "days": 4, "n_corridors": 2}
    calm = synthetic_traffic(**kw, incident_rate_per_day=0)
    busy = synthetic_traffic(**kw, incident_rate_per_day=30)

    def night(ds: xr.Dataset) -> np.ndarray:
        return ds["speed"].values[pd.DatetimeIndex(ds[TIME].values).hour < 4]

    assert night(calm).min() > 40
    assert (night(busy) < 30).sum() > 10


def test_traffic_bad_sizes():
    with pytest.raises(ForecastError, match="too small"):
        synthetic_traffic(n_sensors=6, n_corridors=4)
    with pytest.raises(ForecastError, match="incident_rate"):
        synthetic_traffic(n_sensors=12, days=1, incident_rate_per_day=-1)


@pytest.mark.parametrize("coef", [(0.9,), (1.6, -0.81)])
def test_recursive_filter_equals_scipy_lfilter(coef):
    from scipy.signal import lfilter

    from forecast.data.synthetic import _recursive_filter

    eps = np.random.default_rng(0).standard_normal((500, 3))
    expected = lfilter([1.0], [1.0, *(-c for c in coef)], eps, axis=0)
    np.testing.assert_array_equal(_recursive_filter(eps, coef), expected)
