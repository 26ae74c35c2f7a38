"""Readers (NetCDF, GRIB, Zarr, sensor CSV/HDF5, adjacency), describe and compatibility checks."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from forecast.data import (
    check_compatible,
    check_time_axis,
    data_variables,
    describe_dataset,
    open_dataset,
    read_adjacency,
    summarize,
    time_step,
)
from forecast.dims import ADJACENCY, LAT, LON, NODE, NODE_J, TIME
from forecast.errors import ForecastError

RNG_SEED = 1234


def raw_grid(n_time: int = 12, freq: str = "h", start: str = "2020-01-01") -> xr.Dataset:
    """A file-like grid: CF-ish names, latitude descending, scalar junk coords, attributes."""
    rng = np.random.default_rng(RNG_SEED)
    times = pd.date_range(start, periods=n_time, freq=freq)
    lat = np.array([52.0, 51.5, 51.0])  # north first, as ERA5
    lon = np.array([-1.0, 0.0, 1.0, 2.0])
    t2m = 280 + rng.standard_normal((n_time, lat.size, lon.size)).astype(np.float32)
    sp = 1e5 + rng.standard_normal((n_time, lat.size, lon.size))
    return xr.Dataset(
        {
            "t2m": (("time", "latitude", "longitude"), t2m, {"units": "K", "long_name": "temp"}),
            "sp": (("time", "latitude", "longitude"), sp, {"units": "Pa"}),
            "lsm": (("latitude", "longitude"), np.ones((lat.size, lon.size))),
        },
        coords={
            "time": times,
            "latitude": ("latitude", lat, {"units": "degrees_north"}),
            "longitude": lon,
            "number": 0,
            "surface": 0.0,
        },
        attrs={"institution": "test"},
    )


# ---------------------------------------------------------------- gridded


def test_netcdf_names_order_units(tmp_path):
    raw = raw_grid()
    path = tmp_path / "grid.nc"
    raw.to_netcdf(path)
    ds = open_dataset(path)
    assert ds["t2m"].dims == (TIME, LAT, LON)
    assert data_variables(ds) == ["t2m", "sp"]  # lsm has no time axis
    np.testing.assert_array_equal(ds[LAT].values, [51.0, 51.5, 52.0])  # ascending
    # values follow the flipped latitude: lat 52 was row 0 in the file
    np.testing.assert_array_equal(ds["t2m"].sel(lat=52.0).values, raw["t2m"].values[:, 0, :])
    assert ds["t2m"].attrs["units"] == "K" and ds["t2m"].attrs["long_name"] == "temp"
    assert ds[LAT].attrs["units"] == "degrees_north"
    assert ds.attrs["institution"] == "test"
    assert "number" not in ds.coords and "surface" not in ds.coords
    assert time_step(ds) == pd.Timedelta("1h")


def test_netcdf_unsorted_times_are_sorted(tmp_path):
    raw = raw_grid()
    order = np.random.default_rng(0).permutation(raw.sizes["time"])
    raw.isel(time=order).to_netcdf(tmp_path / "shuffled.nc")
    ds = open_dataset(tmp_path / "shuffled.nc", "t2m")
    np.testing.assert_array_equal(ds[TIME].values, raw["time"].values)
    np.testing.assert_array_equal(ds["t2m"].values[:, ::-1, :], raw["t2m"].values)


def test_glob_and_list_concatenate_in_time_with_valid_time_dim(tmp_path):
    raw = raw_grid(n_time=15).rename(time="valid_time")  # new-style CDS NetCDF
    for k in range(3):
        raw.isel(valid_time=slice(5 * k, 5 * k + 5)).to_netcdf(tmp_path / f"part{k}.nc")
    from_glob = open_dataset(str(tmp_path / "part*.nc"), "t2m")
    from_list = open_dataset([tmp_path / f"part{k}.nc" for k in (2, 0, 1)], "t2m")
    assert from_glob.sizes[TIME] == 15
    np.testing.assert_array_equal(from_glob[TIME].values, raw["valid_time"].values)
    xr.testing.assert_identical(from_glob["t2m"], from_list["t2m"])
    np.testing.assert_array_equal(from_glob["t2m"].values[:, ::-1], raw["t2m"].values)


def test_cfgrib_style_valid_time_coordinate_becomes_time(tmp_path):
    raw = raw_grid(n_time=6)
    valid = raw["time"].values + np.timedelta64(3, "h")
    raw = raw.assign_coords(valid_time=("time", valid), step=np.timedelta64(3, "h"))
    raw.to_netcdf(tmp_path / "fc.nc")
    ds = open_dataset(tmp_path / "fc.nc", "t2m")
    np.testing.assert_array_equal(ds[TIME].values, valid)
    assert "step" not in ds.coords and "valid_time" not in ds.variables


def test_forecast_steps_dim_with_valid_time(tmp_path):
    raw = raw_grid(n_time=6)
    steps = pd.to_timedelta(np.arange(6), unit="h")
    init = raw["time"].values[0]
    raw = raw.rename(time="step").assign_coords(
        step=steps.values, valid_time=("step", init + steps.values), time=init
    )
    raw.to_netcdf(tmp_path / "steps.nc")
    ds = open_dataset(tmp_path / "steps.nc", "t2m")
    np.testing.assert_array_equal(ds[TIME].values, init + steps.values)
    assert ds["t2m"].dims == (TIME, LAT, LON)


def test_time_found_in_a_datetime_variable(tmp_path):
    raw = raw_grid(n_time=5)
    raw = raw.rename_dims(time="t").rename_vars(time="date")
    raw.to_netcdf(tmp_path / "t.nc")
    ds = open_dataset(tmp_path / "t.nc", "t2m")
    assert ds["t2m"].dims == (TIME, LAT, LON)
    np.testing.assert_array_equal(ds[TIME].values, raw_grid(n_time=5)["time"].values)


def test_zarr_round_trip(tmp_path):
    raw = raw_grid(n_time=8)
    raw.to_zarr(tmp_path / "grid.zarr", mode="w", consolidated=False)  # zarr format 3
    ds = open_dataset(tmp_path / "grid.zarr", ["t2m", "sp"])
    ref = open_dataset(_write_nc(raw, tmp_path / "ref.nc"), ["t2m", "sp"])
    np.testing.assert_array_equal(ds["t2m"].values, ref["t2m"].values)
    np.testing.assert_allclose(ds["sp"].values, ref["sp"].values)
    assert ds["sp"].attrs["units"] == "Pa"
    # a store without the .zarr suffix is recognised by its metadata (format 2: .zgroup)
    raw.to_zarr(tmp_path / "store", mode="w", zarr_format=2)
    assert (tmp_path / "store" / ".zgroup").exists()
    assert open_dataset(tmp_path / "store", "t2m").sizes[TIME] == 8


def _write_nc(ds: xr.Dataset, path):
    ds.to_netcdf(path)
    return path


def test_extra_dimension_needs_select_and_units_override(tmp_path):
    raw = raw_grid(n_time=4)
    level = xr.concat([raw["t2m"] + k for k in range(3)], dim="level").assign_coords(
        level=[1000, 850, 500]
    )
    path = _write_nc(xr.Dataset({"t": level}), tmp_path / "levels.nc")
    with pytest.raises(ForecastError, match=r"extra dimension 'level' with 3 values.*select"):
        open_dataset(path)
    with pytest.raises(ForecastError, match="cannot select along 'step': not a dimension"):
        open_dataset(path, select={"step": 0})
    with pytest.raises(ForecastError, match="cannot select"):
        open_dataset(path, select={"level": 925})
    ds = open_dataset(path, select={"level": 850}, units="degC")
    np.testing.assert_array_equal(ds["t"].values[:, ::-1], raw["t2m"].values + 1)
    assert ds["t"].attrs["units"] == "degC" and "level" not in ds.coords


def test_grib_real_file(era5_path):
    before = sorted(p.name for p in era5_path.parent.iterdir())
    ds = open_dataset(era5_path)
    assert sorted(p.name for p in era5_path.parent.iterdir()) == before  # no index written
    assert ds["t2m"].dims == (TIME, LAT, LON)
    assert ds["t2m"].shape == (744, 33, 49)
    assert ds["t2m"].attrs["units"] == "K"
    assert ds[LAT].values[0] == 50.0 and ds[LAT].values[-1] == 58.0
    assert np.all(np.diff(ds[LAT].values) > 0)
    assert ds[TIME].values[0] == np.datetime64("2019-03-01T00:00")
    assert ds[TIME].values[-1] == np.datetime64("2019-03-31T23:00")
    assert time_step(ds) == pd.Timedelta("1h")
    assert set(ds.coords) == {TIME, LAT, LON}
    raw = xr.open_dataset(era5_path, engine="cfgrib", backend_kwargs={"indexpath": ""})
    # file row 0 is 58 N; standard order puts it last
    np.testing.assert_array_equal(ds["t2m"].values[5, -1, :], raw["t2m"].values[5, 0, :])
    raw.close()


# ---------------------------------------------------------------- grid errors


def _dup_files(tmp_path):
    raw = raw_grid(n_time=10)
    raw.isel(time=slice(0, 6)).to_netcdf(tmp_path / "a.nc")
    raw.isel(time=slice(4, 10)).to_netcdf(tmp_path / "b.nc")
    return [tmp_path / "a.nc", tmp_path / "b.nc"]


def test_grid_errors(tmp_path):
    raw = raw_grid(n_time=10)
    with pytest.raises(ForecastError, match="does not exist"):
        open_dataset(tmp_path / "nope.nc")
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(ForecastError, match=r"unknown format .*suffix '\.txt'"):
        open_dataset(tmp_path / "x.txt")
    (tmp_path / "broken.nc").write_text("not netcdf")
    with pytest.raises(ForecastError, match=r"cannot read .*broken\.nc as netcdf"):
        open_dataset(tmp_path / "broken.nc")
    path = _write_nc(raw, tmp_path / "g.nc")
    with pytest.raises(ForecastError, match=r"variable 'tp' not in g.nc; available: t2m, sp$"):
        open_dataset(path, "tp")
    with pytest.raises(ForecastError, match="2020-01-01T04:00:00 appears 2 times"):
        open_dataset(_dup_files(tmp_path))
    gap = _write_nc(raw.drop_isel(time=[3, 4]), tmp_path / "gap.nc")
    with pytest.raises(
        ForecastError,
        match=r"expected 1h but 2020-01-01T05:00:00 follows 2020-01-01T02:00:00 \(2 missing",
    ):
        open_dataset(gap)
    nan = raw.copy()
    nan["sp"] = nan["sp"] * np.nan
    with pytest.raises(ForecastError, match="variable 'sp' is missing everywhere"):
        open_dataset(_write_nc(nan, tmp_path / "nan.nc"))
    assert open_dataset(tmp_path / "nan.nc", "t2m").sizes[TIME] == 10  # only sp is empty
    static = _write_nc(raw.isel(time=0, drop=True), tmp_path / "static.nc")
    with pytest.raises(ForecastError, match="no time dimension"):
        open_dataset(static)
    series = _write_nc(
        raw["t2m"].isel(latitude=0, longitude=0, drop=True).to_dataset(), tmp_path / "series.nc"
    )
    with pytest.raises(ForecastError, match="no spatial dims"):
        open_dataset(series)
    with pytest.raises(ForecastError, match="no files match"):
        open_dataset(str(tmp_path / "zzz*.nc"))
    with pytest.raises(ForecastError, match="unknown format 'tiff'"):
        open_dataset(path, format="tiff")
    with pytest.raises(ForecastError, match=r"do not apply to g\.nc"):
        open_dataset(path, start="2020-01-01")


def test_concatenation_of_different_grids_is_refused(tmp_path):
    raw = raw_grid(n_time=6)
    raw.isel(time=slice(0, 3)).to_netcdf(tmp_path / "a.nc")
    other = raw.isel(time=slice(3, 6)).assign_coords(longitude=raw["longitude"].values + 0.5)
    other.to_netcdf(tmp_path / "b.nc")
    with pytest.raises(ForecastError, match="cannot concatenate 2 files"):
        open_dataset([tmp_path / "a.nc", tmp_path / "b.nc"])


# ---------------------------------------------------------------- sensors


def speeds(n_time: int = 20, n_node: int = 4) -> pd.DataFrame:
    rng = np.random.default_rng(RNG_SEED)
    values = np.round(rng.uniform(20, 70, (n_time, n_node)), 2)
    values[3, 1] = 0.0
    values[7, 2] = 0.0
    columns = [str(717000 + k) for k in range(n_node)]
    index = pd.date_range("2012-03-01", periods=n_time, freq="5min")
    return pd.DataFrame(values, index=index, columns=columns)


def test_sensor_csv_with_timestamp_column(tmp_path):
    frame = speeds()
    frame.rename_axis("timestamp").to_csv(tmp_path / "s.csv")
    ds = open_dataset(tmp_path / "s.csv", units="mph")
    assert ds["speed"].dims == (TIME, NODE)
    assert ds[NODE].values.tolist() == list(frame.columns)
    assert ds[NODE].dtype.kind == "U"
    np.testing.assert_array_equal(ds["speed"].values, frame.to_numpy())
    np.testing.assert_array_equal(ds[TIME].values, frame.index.values)
    assert ds["speed"].attrs["units"] == "mph"
    assert ADJACENCY not in ds


def test_sensor_csv_start_step_zeros_adjacency(tmp_path):
    frame = speeds()
    frame.to_csv(tmp_path / "speed.csv", index=False)
    adj = np.eye(4) + np.diag([0.5, 0.5, 0.5], 1) + np.diag([0.5, 0.5, 0.5], -1)
    np.savetxt(tmp_path / "adj.csv", adj, delimiter=",")
    ds = open_dataset(
        tmp_path / "speed.csv",
        "flow",
        start="2012-03-01 00:00",
        step="5min",
        units="veh/h",
        adjacency=tmp_path / "adj.csv",
        zeros_as_missing=True,
    )
    assert data_variables(ds) == ["flow"]
    assert ds[TIME].values[1] - ds[TIME].values[0] == np.timedelta64(5, "m")
    assert ds[TIME].values[0] == np.datetime64("2012-03-01T00:00")
    values = ds["flow"].values
    assert np.isnan(values[3, 1]) and np.isnan(values[7, 2])
    assert np.isnan(values).sum() == 2
    expected = frame.to_numpy().copy()
    expected[expected == 0] = np.nan
    np.testing.assert_array_equal(values, expected)
    assert ds[ADJACENCY].dims == (NODE, NODE_J)
    np.testing.assert_array_equal(ds[ADJACENCY].values, adj)
    assert summarize(ds)["variables"]["flow"]["missing_fraction"] == pytest.approx(2 / 80)


def test_metr_la_hdf5_layout(tmp_path):
    frame = speeds()
    frame.columns = [int(c) for c in frame.columns]  # METR-LA keeps integer sensor ids
    frame.to_hdf(tmp_path / "metr-la.h5", key="df")
    ds = open_dataset(tmp_path / "metr-la.h5", zeros_as_missing=True, units="mph")
    assert ds[NODE].values.tolist() == [str(c) for c in frame.columns]
    np.testing.assert_array_equal(ds[TIME].values, frame.index.values)
    assert np.isnan(ds["speed"].values[3, 1]) and np.isnan(ds["speed"].values).sum() == 2
    kept = open_dataset(tmp_path / "metr-la.h5")
    assert kept["speed"].values[3, 1] == 0.0  # zeros kept unless asked
    # PEMS-BAY style: several keys, pick by key or by variable name
    frame.to_hdf(tmp_path / "two.h5", key="speed")
    (frame * 10).to_hdf(tmp_path / "two.h5", key="flow")
    with pytest.raises(ForecastError, match="holds 2 pandas objects"):
        open_dataset(tmp_path / "two.h5", "occupancy")
    np.testing.assert_array_equal(
        open_dataset(tmp_path / "two.h5", "flow")["flow"].values, frame.to_numpy() * 10
    )
    with pytest.raises(ForecastError, match=r"key 'x' not in two\.h5; keys: "):
        open_dataset(tmp_path / "two.h5", key="x")


def test_sensor_errors(tmp_path):
    frame = speeds()
    frame.to_csv(tmp_path / "plain.csv", index=False)
    with pytest.raises(ForecastError, match="has no time column; pass both start= and step="):
        open_dataset(tmp_path / "plain.csv")
    bad = frame.rename_axis("time").astype(object)
    bad.iloc[4, 2] = "n/a?"
    bad.to_csv(tmp_path / "bad.csv")
    with pytest.raises(
        ForecastError, match=r"sensor column '717002' is not numeric \(data row 5: 'n/a\?'\)"
    ):
        open_dataset(tmp_path / "bad.csv")
    np.savetxt(tmp_path / "adj3.csv", np.eye(3), delimiter=",")
    frame.rename_axis("time").to_csv(tmp_path / "t.csv")
    with pytest.raises(ForecastError, match=r"adjacency adj3\.csv is 3 x 3 but the data has 4"):
        open_dataset(tmp_path / "t.csv", adjacency=tmp_path / "adj3.csv")
    np.save(tmp_path / "obj.npy", np.array([[{"a": 1}]], dtype=object), allow_pickle=True)
    with pytest.raises(ForecastError, match=r"cannot read adjacency obj\.npy"):
        read_adjacency(tmp_path / "obj.npy")
    (tmp_path / "adj_mx.pkl").write_bytes(b"\x80\x04.")
    with pytest.raises(ForecastError, match=r"pickles such as adj_mx\.pkl are refused"):
        read_adjacency(tmp_path / "adj_mx.pkl")
    dup = pd.concat([frame.iloc[:5], frame.iloc[4:]]).rename_axis("time")
    dup.to_csv(tmp_path / "dup.csv")
    with pytest.raises(ForecastError, match="2012-03-01T00:20:00 appears 2 times"):
        open_dataset(tmp_path / "dup.csv")


def test_adjacency_npy_and_labelled_csv(tmp_path):
    rng = np.random.default_rng(3)
    adj = rng.uniform(size=(4, 4))
    np.save(tmp_path / "adj.npy", adj)
    np.testing.assert_array_equal(read_adjacency(tmp_path / "adj.npy"), adj)
    ids = ["a", "b", "c", "d"]
    order = [2, 0, 3, 1]  # the file lists the sensors in another order
    labelled = pd.DataFrame(
        adj[np.ix_(order, order)], index=[ids[i] for i in order], columns=[ids[i] for i in order]
    )
    labelled.to_csv(tmp_path / "labelled.csv")
    np.testing.assert_allclose(read_adjacency(tmp_path / "labelled.csv", ids), adj, rtol=1e-15)
    with pytest.raises(ForecastError, match="labels do not match the sensor ids"):
        read_adjacency(tmp_path / "labelled.csv", ["a", "b", "c", "zz"])


# ---------------------------------------------------------------- describe / compatible


def test_check_time_axis_and_time_step():
    t = pd.date_range("2020-01-01", periods=5, freq="15min").values
    assert check_time_axis(t) == pd.Timedelta("15min")
    with pytest.raises(ForecastError, match="only 1 time step"):
        check_time_axis(t[:1])
    with pytest.raises(ForecastError, match="off-grid time"):
        check_time_axis(np.concatenate([t, t[-1:] + np.timedelta64(7, "m")]))
    with pytest.raises(ForecastError, match="not sorted"):
        check_time_axis(t[::-1])


def grid_ds(n_time=24, step="h"):
    return open_dataset_like(raw_grid(n_time=n_time, freq=step))


def open_dataset_like(raw: xr.Dataset) -> xr.Dataset:
    from forecast.data.sources import finalize, standardize

    return finalize(standardize(raw, ["t2m", "sp"]), "test")


def test_describe_is_json_and_compatible_with_another_period():
    ds = grid_ds()
    desc = json.loads(json.dumps(describe_dataset(ds)))
    assert desc == {
        "kind": "grid",
        "variables": ["t2m", "sp"],
        "units": {"t2m": "K", "sp": "Pa"},
        "space_dims": [LAT, LON],
        "shape": {LAT: 3, LON: 4},
        "coords": {LAT: [51.0, 51.5, 52.0], LON: [-1.0, 0.0, 1.0, 2.0]},
        "time_step_s": 3600,
        "adjacency_sha256": None,
    }
    check_compatible(desc, ds.isel(time=slice(10, 20)))  # another period fits
    check_compatible(desc, ds.isel(time=[3]))  # one step: nothing to say about the step


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda d: d.isel(lon=slice(0, 3)),
            r"data is 3 x 3 \(lat x lon\) but the model expects "
            r"3 x 4",
        ),
        (lambda d: d.assign_coords(lat=d.lat + 0.1), r"lat\[0\] is 51.1 in the data but 51"),
        (lambda d: d[["t2m"]], r"\(missing sp\); open the data with variable=\['t2m', 'sp'\]"),
        (lambda d: d[["sp", "t2m"]], "in a different order"),
        (
            lambda d: d.assign(t2m=d.t2m.assign_attrs(units="degC")),
            "variable 't2m' is in degC but the model expects K",
        ),
        (
            lambda d: d.isel(time=slice(None, None, 3)),
            "data time step is 3h but the model expects 1h",
        ),
        (lambda d: d.rename(lat="y", lon="x"), r"spatial dims \(y, x\) but the model expects"),
    ],
)
def test_check_compatible_names_first_mismatch(change, message):
    ds = grid_ds()
    with pytest.raises(ForecastError, match=message):
        check_compatible(describe_dataset(ds), change(ds))


def test_check_compatible_sensors(tmp_path):
    frame = speeds()
    from forecast.data import sensor_dataset

    adj = np.eye(4)
    ds = sensor_dataset(frame.to_numpy(), frame.index, frame.columns, units="mph", adjacency=adj)
    desc = describe_dataset(ds)
    assert desc["kind"] == "sensors" and desc["coords"][NODE] == list(frame.columns)
    check_compatible(desc, ds.isel(time=slice(5, 15)))
    swapped = ds.isel(node=[1, 0, 2, 3], node_j=[1, 0, 2, 3])
    with pytest.raises(ForecastError, match="sensor 0 is '717001' in the data but '717000'"):
        check_compatible(desc, swapped)
    other = ds.assign(adjacency=ds[ADJACENCY] * 0.5)
    with pytest.raises(ForecastError, match="adjacency matrix differs from the one"):
        check_compatible(desc, other)
    with pytest.raises(ForecastError, match="adjacency matrix is missing"):
        check_compatible(desc, ds.drop_vars(ADJACENCY))


def test_summarize_numbers():
    ds = grid_ds()
    values = ds["t2m"].values.copy()
    values[0, 0, :2] = np.nan
    ds["t2m"].values = values
    s = summarize(ds)
    v = s["variables"]["t2m"]
    assert v["missing_fraction"] == pytest.approx(2 / values.size)
    assert v["mean"] == pytest.approx(float(np.nanmean(values.astype(np.float64))))
    assert v["min"] == pytest.approx(float(np.nanmin(values)))
    assert v["max"] == pytest.approx(float(np.nanmax(values)))
    assert s["time"] == {
        "start": "2020-01-01T00:00:00",
        "end": "2020-01-01T23:00:00",
        "step": "1h",
        "steps": 24,
    }
    assert s["space"]["shape"] == [3, 4] and s["space"]["lat_range"] == [51.0, 52.0]
