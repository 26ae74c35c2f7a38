"""Baselines: shapes and coords, seeds, closed-form behaviour, calibration, bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from forecast.data.synthetic import synthetic_traffic, synthetic_weather
from forecast.data.windows import context_of
from forecast.dims import INIT_TIME, LAT, LEAD_TIME, LON, MEMBER, NODE, TIME, VALID_TIME
from forecast.errors import ForecastError
from forecast.models import (
    ClimatologyEnsemble,
    DiurnalPersistenceEnsemble,
    PersistenceEnsemble,
    forecast_many,
)
from forecast.models.baselines import slot_means, slot_of, valid_origins

BASELINES = [PersistenceEnsemble, ClimatologyEnsemble, DiurnalPersistenceEnsemble]


@pytest.fixture(scope="module")
def weather() -> xr.Dataset:
    return synthetic_weather(seed=1, n_lat=5, n_lon=6, days=16)


@pytest.fixture(scope="module")
def traffic() -> xr.Dataset:
    return synthetic_traffic(seed=1, n_sensors=16, days=3)


def _sensor_ds(values: np.ndarray, start: str = "2020-01-01", freq: str = "1h") -> xr.Dataset:
    times = pd.date_range(start, periods=values.shape[0], freq=freq)
    nodes = [f"S{i}" for i in range(values.shape[1])]
    return xr.Dataset(
        {"v": ((TIME, NODE), values, {"units": "1"})}, coords={TIME: times, NODE: nodes}
    )


@pytest.mark.parametrize("cls", BASELINES)
def test_shapes_coords_units(cls, weather):
    model = cls(context=6, horizon=24).fit(weather.isel({TIME: slice(0, 300)}))
    issue = weather[TIME].values[320]
    ens = model.sample(context_of(weather, issue, 6), 7, seed=3)
    assert ens["t2m"].dims == (MEMBER, LEAD_TIME, LAT, LON)
    assert ens["t2m"].shape == (7, 24, 5, 6)
    assert ens[INIT_TIME].values == issue
    np.testing.assert_array_equal(
        ens[LEAD_TIME].values, (np.arange(1, 25) * np.timedelta64(1, "h")).astype("m8[ns]")
    )
    np.testing.assert_array_equal(ens[VALID_TIME].values, issue + ens[LEAD_TIME].values)
    np.testing.assert_allclose(ens[LAT].values, weather[LAT].values)
    assert ens["t2m"].attrs["units"] == "K"
    assert np.isfinite(ens["t2m"].values).all()


@pytest.mark.parametrize("cls", BASELINES)
def test_seeds_and_member_independence(cls, traffic):
    model = cls(context=12, horizon=12).fit(traffic.isel({TIME: slice(0, 600)}))
    ctx = context_of(traffic, traffic[TIME].values[700], 12)
    a = model.sample(ctx, 6, seed=5)
    b = model.sample(ctx, 6, seed=5)
    c = model.sample(ctx, 6, seed=6)
    small = model.sample(ctx, 3, seed=5)
    xr.testing.assert_identical(a, b)
    assert not np.array_equal(a["speed"].values, c["speed"].values)
    # member m depends only on (seed, m), not on the ensemble size
    np.testing.assert_array_equal(small["speed"].values, a["speed"].values[:3])
    assert a["speed"].dims == (MEMBER, LEAD_TIME, NODE)
    assert list(a["lat"].dims) == [NODE]  # auxiliary sensor coordinates carried over


def test_persistence_members_are_training_increments():
    rng = np.random.default_rng(0)
    values = np.cumsum(rng.normal(size=(200, 3)), axis=0)
    ds = _sensor_ds(values)
    model = PersistenceEnsemble(context=2, horizon=4).fit(ds.isel({TIME: slice(0, 150)}))
    ctx = context_of(ds, ds[TIME].values[170], 2)
    ens = model.sample(ctx, 20, seed=1)["v"].values  # (member, lead, node)
    train = values[:150].astype(np.float32).astype(np.float64)
    increments = np.stack([train[o + 1 : o + 5] - train[o] for o in range(150 - 4)])
    last = values[170]
    for member in ens:
        diff = np.abs(increments - (member - last)[None]).max(axis=(1, 2))
        assert diff.min() < 1e-4  # a whole (lead, node) trajectory from one training origin


def test_persistence_calibrated_on_random_walk():
    rng = np.random.default_rng(42)
    values = np.cumsum(rng.normal(size=(3000, 40)), axis=0)
    ds = _sensor_ds(values)
    model = PersistenceEnsemble(context=1, horizon=6).fit(ds.isel({TIME: slice(0, 2000)}))
    issues = ds[TIME].values[2000:2990:5]
    ens = forecast_many(model, ds, issues, 40, seed=0)["v"].values  # (init, member, lead, node)
    idx = np.searchsorted(ds[TIME].values, issues)
    truth = values[idx[:, None] + np.arange(1, 7)]  # (init, lead, node)
    m = ens.shape[1]
    for lead in range(6):
        f = ens[:, :, lead]
        rmse = np.sqrt(np.mean((f.mean(axis=1) - truth[:, lead]) ** 2))
        spread = np.sqrt((m + 1) / m * np.mean(f.var(axis=1, ddof=1)))
        assert spread / rmse == pytest.approx(1.0, abs=0.1)
        assert spread == pytest.approx(np.sqrt(lead + 1), rel=0.1)  # random walk: sd sqrt(l)


def test_climatology_same_time_of_day():
    times = pd.date_range("2020-01-01", periods=24 * 30, freq="1h")
    hour = times.hour.to_numpy()
    values = (hour[:, None] * 100 + np.arange(30 * 24)[:, None] % 7).astype(float)
    ds = _sensor_ds(np.repeat(values, 2, axis=1))
    model = ClimatologyEnsemble(context=1, horizon=5, weekly=False, min_candidates=20).fit(
        ds.isel({TIME: slice(0, 24 * 25)})
    )
    issue = times[24 * 27 + 9]
    ens = model.sample(context_of(ds, issue, 1), 30, seed=0)["v"].values
    # every member's value at lead l carries the hour of the valid time
    expected_hours = (9 + np.arange(1, 6)) % 24
    np.testing.assert_array_equal(ens[:, :, 0] // 100, np.broadcast_to(expected_hours, (30, 5)))


def test_climatology_widens_slots_when_history_is_short():
    times = pd.date_range("2020-01-01", periods=24 * 4, freq="1h")
    ds = _sensor_ds(np.arange(len(times), dtype=float)[:, None])
    model = ClimatologyEnsemble(context=1, horizon=2, min_candidates=10).fit(ds)
    cands = model.candidates(times[-1])
    hours = times[cands].hour
    assert len(cands) >= 10
    assert set(hours) == {22, 23, 0}  # issue at 23 h: +-1 slot needed for 10 origins


def test_weekly_cycle_auto(traffic):
    long = synthetic_traffic(seed=2, n_sensors=16, days=15)
    daily = ClimatologyEnsemble(context=12, horizon=12).fit(traffic)
    weekly = ClimatologyEnsemble(context=12, horizon=12).fit(long)
    forced = ClimatologyEnsemble(context=12, horizon=12, weekly=False).fit(long)
    assert daily.period_ == pd.Timedelta(days=1)
    assert weekly.period_ == pd.Timedelta(days=7)
    assert forced.period_ == pd.Timedelta(days=1)
    grid = ClimatologyEnsemble(context=6, horizon=6).fit(
        synthetic_weather(seed=1, n_lat=3, n_lon=3, days=15)
    )
    assert grid.period_ == pd.Timedelta(days=1)  # no weekly cycle assumed for weather


def test_diurnal_persistence_exact_on_pure_cycle():
    times = pd.date_range("2020-01-01", periods=24 * 20, freq="1h")
    cycle = 10 * np.sin(2 * np.pi * times.hour.to_numpy() / 24)
    values = cycle[:, None] + np.array([280.0, 290.0, 300.0])
    ds = _sensor_ds(values)
    model = DiurnalPersistenceEnsemble(context=3, horizon=12, weekly=False, min_samples=5).fit(
        ds.isel({TIME: slice(0, 24 * 15)})
    )
    issue = times[24 * 17 + 5]
    ens = model.sample(context_of(ds, issue, 3), 4, seed=0)["v"].values
    i = 24 * 17 + 5
    truth = values[i + 1 : i + 13]
    np.testing.assert_allclose(ens, np.broadcast_to(truth, ens.shape), atol=1e-3)


def test_slot_means_smooth_until_enough_samples():
    times = pd.date_range("2020-01-01", periods=48, freq="1h")
    slots = slot_of(times.values, pd.Timedelta("1h"), pd.Timedelta(days=1))
    np.testing.assert_array_equal(slots, np.tile(np.arange(24), 2))
    values = np.tile(np.arange(24.0), 2)[:, None]
    means, half = slot_means(values, slots, 24, min_samples=6)
    assert half == 1  # 3 slots x 2 days = 6 samples
    assert means[5, 0] == pytest.approx(5.0)
    assert means[0, 0] == pytest.approx((23 + 0 + 1) / 3)


def test_valid_origins_skip_nan_and_ignore_all_nan_columns():
    values = np.ones((10, 3))
    values[:, 2] = np.nan  # e.g. a masked grid point
    values[4, 0] = np.nan
    origins = valid_origins(values, horizon=2)
    np.testing.assert_array_equal(origins, [0, 1, 5, 6, 7])


def test_bad_input(weather):
    model = PersistenceEnsemble(context=6, horizon=4)
    ctx = context_of(weather, weather[TIME].values[100], 6)
    with pytest.raises(ForecastError, match="not fitted"):
        model.sample(ctx, 3)
    model.fit(weather.isel({TIME: slice(0, 90)}))
    with pytest.raises(ForecastError, match="exactly 6"):
        model.sample(context_of(weather, weather[TIME].values[100], 5), 3)
    with pytest.raises(ForecastError, match="n_members"):
        model.sample(ctx, 0)
    with pytest.raises(ForecastError):
        model.sample(ctx.isel({LAT: slice(0, 3)}), 3)  # another grid
    with pytest.raises(ForecastError, match="context"):
        PersistenceEnsemble(context=0, horizon=4)
    with pytest.raises(ForecastError, match="fewer than context"):
        PersistenceEnsemble(context=6, horizon=4).fit(weather.isel({TIME: slice(0, 8)}))
    with pytest.raises(ForecastError, match="min_candidates"):
        ClimatologyEnsemble(context=6, horizon=4, min_candidates=0)


@pytest.mark.parametrize("cls", BASELINES)
def test_no_complete_training_trajectory(cls):
    """Every third step missing everywhere: no origin has a complete 4-step trajectory."""
    values = np.random.default_rng(0).normal(size=(60, 5))
    values[::3] = np.nan
    with pytest.raises(ForecastError, match=r"no complete \(origin, horizon\) trajectory"):
        cls(context=2, horizon=4).fit(_sensor_ds(values))
