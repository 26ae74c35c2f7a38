"""Named data sets: resolution through FORECAST_DATA_DIR, the real files, the synthetic ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import forecast
from forecast.data import DATASETS, data_dir, open_dataset, time_step
from forecast.data.catalog import DATA_DIR_ENV, default_data_dir
from forecast.dims import ADJACENCY, LAT, LON, NODE, NODE_J, TIME
from forecast.errors import ForecastError

REPO = Path(__file__).resolve().parents[1]


def test_registered_names():
    assert DATASETS.names() == ["era5-uk-t2m", "los-loop", "synthetic-traffic", "synthetic-weather"]
    assert DATASETS.get("synthetic-weather").generated
    assert not DATASETS.get("los-loop").generated


def test_data_dir_default_and_env(monkeypatch, tmp_path):
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    assert default_data_dir() == REPO.parent / "shared" / "data"
    assert (
        default_data_dir()
        == Path(forecast.__file__).resolve().parents[1].parent / "shared" / "data"
    )
    assert data_dir() == default_data_dir()
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    assert data_dir() == tmp_path
    assert DATASETS.get("era5-uk-t2m").paths() == [
        tmp_path / "era5-uk-t2m" / "era5-2mt-2019-03-uk.grib"
    ]


def test_absent_files_say_where_and_which_variable(monkeypatch, tmp_path):
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    assert not DATASETS.get("los-loop").present()
    with pytest.raises(ForecastError) as err:
        open_dataset("los-loop")
    text = str(err.value)
    assert str(tmp_path / "los-loop" / "los_speed.csv") in text
    assert DATA_DIR_ENV in text and "\n" not in text
    with pytest.raises(ForecastError, match=r"era5-2mt-2019-03-uk\.grib; set FORECAST_DATA_DIR"):
        open_dataset("era5-uk-t2m")


def test_unknown_name_lists_valid_names():
    with pytest.raises(ForecastError, match=r"'los-lop' is neither a named data set.*los-loop"):
        open_dataset("los-lop")


def test_los_loop_layout_from_env_folder(monkeypatch, tmp_path):
    """A small copy of the Los-loop layout under $FORECAST_DATA_DIR: no time column, no header
    in the adjacency; the named data set supplies start, step, units and the adjacency."""
    folder = tmp_path / "los-loop"
    folder.mkdir()
    rng = np.random.default_rng(5)
    values = np.round(rng.uniform(10, 70, (30, 3)), 3)
    pd.DataFrame(values, columns=["773869", "767541", "767542"]).to_csv(
        folder / "los_speed.csv", index=False
    )
    adj = np.array([[1.0, 0.5, 0.0], [0.5, 1.0, 0.2], [0.0, 0.2, 1.0]])
    np.savetxt(folder / "los_adj.csv", adj, delimiter=",")
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    ds = open_dataset("los-loop")
    np.testing.assert_array_equal(ds["speed"].values, values)
    assert ds["speed"].attrs["units"] == "mph"
    assert ds[TIME].values[0] == np.datetime64("2012-03-01T00:00")
    assert ds[TIME].values[-1] == np.datetime64("2012-03-01T02:25")  # 29 steps of 5 min
    np.testing.assert_array_equal(ds[ADJACENCY].values, adj)
    with pytest.raises(ForecastError, match="variable 'flow' not in los-loop; available: speed"):
        open_dataset("los-loop", "flow")
    assert open_dataset("los-loop", units="km/h")["speed"].attrs["units"] == "km/h"


def test_los_loop_real(monkeypatch, los_loop_dir):
    monkeypatch.setenv(DATA_DIR_ENV, str(los_loop_dir.parent))
    ds = open_dataset("los-loop")
    assert ds["speed"].dims == (TIME, NODE) and ds["speed"].shape == (2016, 207)
    assert ds[TIME].values[0] == np.datetime64("2012-03-01T00:00")
    assert ds[TIME].values[-1] == np.datetime64("2012-03-07T23:55")
    assert time_step(ds) == pd.Timedelta("5min")
    assert ds["speed"].attrs["units"] == "mph"
    raw = pd.read_csv(los_loop_dir / "los_speed.csv")
    assert ds[NODE].values.tolist() == list(raw.columns)
    np.testing.assert_array_equal(ds["speed"].values, raw.to_numpy())
    adj = ds[ADJACENCY]
    assert adj.dims == (NODE, NODE_J) and adj.shape == (207, 207)
    np.testing.assert_array_equal(adj.values, adj.values.T)
    np.testing.assert_array_equal(np.diag(adj.values), 1.0)
    np.testing.assert_array_equal(
        adj.values, np.loadtxt(los_loop_dir / "los_adj.csv", delimiter=",")
    )
    assert not np.isnan(ds["speed"].values).any()


def test_era5_real(monkeypatch, era5_path):
    monkeypatch.setenv(DATA_DIR_ENV, str(era5_path.parents[1]))
    ds = open_dataset("era5-uk-t2m")
    assert ds["t2m"].dims == (TIME, LAT, LON) and ds["t2m"].shape == (744, 33, 49)
    np.testing.assert_allclose(ds[LAT].values, np.linspace(50.0, 58.0, 33))
    np.testing.assert_allclose(ds[LON].values, np.linspace(-10.0, 2.0, 49))
    assert ds["t2m"].attrs["units"] == "K"
    # a 2 m temperature in March over the UK, in kelvin
    assert 250 < float(ds["t2m"].min()) and float(ds["t2m"].max()) < 300


def test_synthetic_traffic_named_equals_function():
    synthetic = pytest.importorskip("forecast.data.synthetic")
    ds = open_dataset("synthetic-traffic")
    ref = synthetic.synthetic_traffic(seed=0)
    assert ds["speed"].dims == (TIME, NODE)
    np.testing.assert_array_equal(ds["speed"].values, ref["speed"].transpose(TIME, NODE).values)
    np.testing.assert_array_equal(ds[ADJACENCY].values, ref[ADJACENCY].values)
    assert ds["speed"].attrs["units"] == ref["speed"].attrs["units"]
    other = open_dataset("synthetic-traffic", seed=1)
    assert not np.array_equal(other["speed"].values, ds["speed"].values)
    with pytest.raises(ForecastError, match="do not apply to a synthetic data set"):
        open_dataset("synthetic-traffic", units="km/h")


def test_synthetic_weather_named():
    pytest.importorskip("forecast.data.synthetic")
    ds = open_dataset("synthetic-weather")
    assert ds["t2m"].dims == (TIME, LAT, LON)
    assert ds["t2m"].attrs["units"] == "K"
    assert time_step(ds) == pd.Timedelta("1h")
    assert np.all(np.diff(ds[LAT].values) > 0)
    assert isinstance(ds, xr.Dataset) and not np.isnan(ds["t2m"].values).any()
