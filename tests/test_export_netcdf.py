"""CF ensemble NetCDF writer and reader: layout, exact round trips, summaries, bad input."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import netCDF4
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from forecast.dims import INIT_TIME, LAT, LEAD_TIME, LON, MEMBER, NODE, QUANTILE, VALID_TIME
from forecast.errors import ForecastError
from forecast.export import open_ensemble, summarize, to_netcdf

REPO = Path(__file__).resolve().parents[1]


def grid_ensemble(
    n_init: int = 3, m: int = 4, n_lead: int = 5, ny: int = 6, nx: int = 7, seed: int = 0
) -> xr.Dataset:
    """(init_time, member, lead_time, lat, lon) with hourly leads, a NaN, realistic attrs."""
    rng = np.random.default_rng(seed)
    init = pd.date_range("2019-03-01", periods=n_init, freq="6h").values.astype("datetime64[ns]")
    lead = (np.arange(1, n_lead + 1) * np.timedelta64(1, "h")).astype("timedelta64[ns]")
    t = rng.normal(280.0, 5.0, (n_init, m, n_lead, ny, nx)).astype(np.float32)
    t[0, 1, 2, 3, 4] = np.nan
    return xr.Dataset(
        {
            "t2m": (
                (INIT_TIME, MEMBER, LEAD_TIME, LAT, LON),
                t,
                {"units": "K", "long_name": "2 metre temperature"},
            )
        },
        coords={
            INIT_TIME: init,
            MEMBER: np.arange(m),
            LEAD_TIME: lead,
            VALID_TIME: ((INIT_TIME, LEAD_TIME), init[:, None] + lead[None]),
            LAT: (LAT, np.linspace(58.0, 50.0, ny), {"units": "degrees_north"}),
            LON: (LON, np.linspace(-10.0, 2.0, nx), {"units": "degrees_east"}),
        },
        attrs={"experiment": "unit test", "members_per_issue": 4},
    )


def sensor_ensemble(n_init: int = 2, m: int = 3, n_lead: int = 4, n_node: int = 5) -> xr.Dataset:
    """(init_time, member, lead_time, node) with 5-minute leads, string ids, lat/lon per node."""
    rng = np.random.default_rng(1)
    init = pd.date_range("2012-03-01", periods=n_init, freq="5min").values.astype("datetime64[ns]")
    lead = (np.arange(1, n_lead + 1) * np.timedelta64(5, "m")).astype("timedelta64[ns]")
    v = rng.normal(60.0, 5.0, (n_init, m, n_lead, n_node)).astype(np.float32)
    return xr.Dataset(
        {
            "speed": (
                (INIT_TIME, MEMBER, LEAD_TIME, NODE),
                v,
                {"units": "mph", "long_name": "traffic speed"},
            )
        },
        coords={
            INIT_TIME: init,
            MEMBER: np.arange(m),
            LEAD_TIME: lead,
            VALID_TIME: ((INIT_TIME, LEAD_TIME), init[:, None] + lead[None]),
            NODE: np.array([f"S{k:03d}" for k in range(n_node)]),
            LAT: (NODE, rng.uniform(34.0, 34.2, n_node), {"units": "degrees_north"}),
            LON: (NODE, rng.uniform(-118.3, -118.1, n_node), {"units": "degrees_east"}),
            "corridor": (NODE, np.arange(n_node) % 2),
        },
    )


def assert_round_trip(back: xr.Dataset, ens: xr.Dataset) -> None:
    """Same dims order, coords and values (NaN where NaN); input attrs kept."""
    assert set(back.data_vars) == set(ens.data_vars)
    for var in ens.data_vars:
        assert back[var].dims == ens[var].dims
        assert back[var].dtype == ens[var].dtype
        np.testing.assert_array_equal(back[var].values, ens[var].values)
        for key, value in ens[var].attrs.items():
            assert back[var].attrs[key] == value
    assert set(back.coords) == set(ens.coords)
    for name in ens.coords:
        assert back[name].dims == ens[name].dims, name
        np.testing.assert_array_equal(back[name].values, ens[name].values)
        for key, value in ens[name].attrs.items():
            assert back[name].attrs[key] == value
    for name in (INIT_TIME, VALID_TIME):
        assert back[name].dtype == np.dtype("datetime64[ns]")
    assert back[LEAD_TIME].dtype == np.dtype("timedelta64[ns]")
    for key, value in ens.attrs.items():
        assert back.attrs[key] == value


def test_grid_round_trip_is_exact(tmp_path):
    ens = grid_ensemble()
    path = to_netcdf(
        ens,
        tmp_path / "f.nc",
        seed=7,
        sampler="ddim",
        nfe=12,
        model="diffusion",
        checkpoint_sha256="ab" * 32,
        institution="Test Lab",
    )
    back = open_ensemble(path)
    assert_round_trip(back, ens)
    assert back.t2m.dims == (INIT_TIME, MEMBER, LEAD_TIME, LAT, LON)
    assert np.isnan(back.t2m.values[0, 1, 2, 3, 4])
    assert np.isnan(back.t2m.values).sum() == 1
    assert back.attrs["Conventions"] == "CF-1.8"
    assert back.attrs["institution"] == "Test Lab"
    assert back.attrs["seed"] == 7 and back.attrs["nfe"] == 12 and back.attrs["sampler"] == "ddim"
    assert "ab" * 32 in back.attrs["source"] and "forecast 0.1.0" in back.attrs["source"]
    assert "diffusion" in back.attrs["source"]


def test_reader_is_lazy(tmp_path):
    path = to_netcdf(grid_ensemble(), tmp_path / "f.nc")
    back = open_ensemble(path)
    assert not back.t2m.variable._in_memory
    one = back.t2m.isel({MEMBER: 2, INIT_TIME: 1}).values
    np.testing.assert_array_equal(one, grid_ensemble().t2m.values[1, 2])


def test_single_issue_time_round_trip_keeps_scalar_init_time(tmp_path):
    ens = grid_ensemble().isel({INIT_TIME: 1})
    back = open_ensemble(to_netcdf(ens, tmp_path / "one.nc"))
    assert back[INIT_TIME].ndim == 0
    assert_round_trip(back, ens)
    with netCDF4.Dataset(tmp_path / "one.nc") as nc:
        assert nc["forecast_reference_time"].dimensions == ()
        assert nc["t2m"].dimensions == ("realization", "forecast_period", LAT, LON)
        assert "forecast_reference_time" in nc["t2m"].coordinates.split()


def test_generator_gives_the_same_file_as_a_dataset(tmp_path):
    ens = grid_ensemble()
    to_netcdf(ens, tmp_path / "a.nc")
    gen = (ens.isel({INIT_TIME: i}) for i in range(ens.sizes[INIT_TIME]))
    to_netcdf(gen, tmp_path / "b.nc", progress=True, total=3)
    to_netcdf([ens.isel({INIT_TIME: i}) for i in range(3)], tmp_path / "c.nc")
    a, b, c = (open_ensemble(tmp_path / n) for n in ("a.nc", "b.nc", "c.nc"))
    assert_round_trip(b, ens)
    assert_round_trip(c, ens)
    xr.testing.assert_identical(a.drop_attrs(), b.drop_attrs())
    with netCDF4.Dataset(tmp_path / "b.nc") as nc:
        assert nc.dimensions["forecast_reference_time"].isunlimited()
    with netCDF4.Dataset(tmp_path / "a.nc") as nc:
        assert not nc.dimensions["forecast_reference_time"].isunlimited()


def test_sensor_round_trip_and_dsg_layout(tmp_path):
    ens = sensor_ensemble()
    path = to_netcdf(ens, tmp_path / "s.nc")
    back = open_ensemble(path)
    assert_round_trip(back, ens)
    assert list(back[NODE].values) == [f"S{k:03d}" for k in range(5)]
    assert back.speed.attrs["units"] == "mph"
    assert back[LEAD_TIME].values[0] == np.timedelta64(5, "m")
    with netCDF4.Dataset(path) as nc:
        assert nc.featureType == "timeSeries"
        assert nc["station_id"].cf_role == "timeseries_id"
        assert nc["speed"].dimensions == (
            "forecast_reference_time",
            "realization",
            "forecast_period",
            "station",
        )
        assert nc["speed"].units == "mile hour-1"  # UDUNITS reads "mph" as milli-phot
        assert "standard_name" not in nc["speed"].ncattrs()  # no CF name for traffic speed
        assert nc["forecast_period"].units == "minutes"
        assert nc["lat"].units == "degrees_north" and nc["lat"].dimensions == ("station",)
        assert nc["corridor"].dtype == np.int32
        coords = nc["speed"].coordinates.split()
        assert {"time", "station_id", "lat", "lon", "corridor"} <= set(coords)
        ids = netCDF4.chartostring(nc["station_id"][:])
        assert list(ids) == [f"S{k:03d}" for k in range(5)]


def test_file_layout_with_plain_netcdf4(tmp_path):
    ens = grid_ensemble()
    path = to_netcdf(ens, tmp_path / "f.nc")
    with netCDF4.Dataset(path) as nc:
        assert nc.Conventions == "CF-1.8"
        for key in ("title", "institution", "source", "history", "references"):
            assert str(getattr(nc, key))
        r = nc["realization"]
        assert r.standard_name == "realization"
        np.testing.assert_array_equal(r[:], np.arange(4))
        assert nc["forecast_period"].units == "hours"
        np.testing.assert_array_equal(nc["forecast_period"][:], np.arange(1, 6))
        assert nc["forecast_reference_time"].standard_name == "forecast_reference_time"
        assert nc["lat"].axis == "Y" and nc["lon"].axis == "X"
        assert nc["lat"].units == "degrees_north" and nc["lon"].units == "degrees_east"
        t = nc["t2m"]
        assert t.dimensions == (
            "forecast_reference_time",
            "realization",
            "forecast_period",
            LAT,
            LON,
        )
        assert t.standard_name == "air_temperature" and t.units == "K"
        assert t.long_name == "2 metre temperature"
        assert t.chunking() == [1, 1, 5, 6, 7]
        filt = t.filters()
        assert filt["zlib"] and filt["shuffle"]
        assert t._FillValue == netCDF4.default_fillvals["f4"]
        raw = t[:]
        assert np.ma.is_masked(raw) and raw.mask.sum() == 1 and raw.mask[0, 1, 2, 3, 4]
        # time = forecast_reference_time + forecast_period, both in hours
        frt, fp, vt = nc["forecast_reference_time"][:], nc["forecast_period"][:], nc["time"][:]
        np.testing.assert_array_equal(vt, frt[:, None] + fp[None, :])
        assert nc["time"].units == nc["forecast_reference_time"].units
        assert nc["time"].units == "hours since 1970-01-01 00:00:00"
        d = netCDF4.num2date(frt, nc["time"].units, nc["time"].calendar)
        assert str(d[0]) == "2019-03-01 00:00:00"
        for name, var in nc.variables.items():
            assert "dtype" not in var.ncattrs(), name
            if name in nc.dimensions or name == "time":
                assert "_FillValue" not in var.ncattrs(), name
                assert not np.ma.is_masked(var[:]), name


def test_uncompressed_file_has_no_filters(tmp_path):
    ens = grid_ensemble()
    a = to_netcdf(ens, tmp_path / "z.nc")
    b = to_netcdf(ens, tmp_path / "raw.nc", compress=False)
    with netCDF4.Dataset(b) as nc:
        assert not nc["t2m"].filters()["zlib"]
    assert_round_trip(open_ensemble(b), ens)
    assert a.stat().st_size < b.stat().st_size


def test_summarize_closed_forms():
    vals = np.array([1.0, 2.0, 3.0, 4.0])[:, None]
    ens = xr.Dataset({"t": ((MEMBER, LEAD_TIME), vals, {"units": "K"})})
    s = summarize(ens, quantiles=[0.0, 0.5, 1.0], thresholds=[2.0, 3.5, 9.0])
    assert float(s.t_mean.values[0]) == 2.5
    assert float(s.t_std.values[0]) == pytest.approx(np.sqrt(1.25))
    np.testing.assert_allclose(s.t_quantile.values[:, 0], [1.0, 2.5, 4.0])
    np.testing.assert_allclose(s.t_exceedance.values[:, 0], [0.5, 0.25, 0.0])
    assert s.t_exceedance.attrs["units"] == "1"
    assert s.t_threshold.attrs["units"] == "K"
    assert s.t_quantile.dims == (QUANTILE, LEAD_TIME)


def test_summarize_propagates_nan():
    vals = np.array([[1.0, 5.0], [np.nan, 6.0]])
    s = summarize(xr.Dataset({"t": ((MEMBER, LEAD_TIME), vals)}), thresholds=[0.0])
    for name in ("t_mean", "t_std", "t_exceedance"):
        assert np.isnan(s[name].values[..., 0]).all(), name
    assert float(s.t_exceedance.values[0, 1]) == 1.0


def test_summary_variables_match_numpy(tmp_path):
    ens = grid_ensemble()
    path = to_netcdf(ens, tmp_path / "s.nc", summary=True, thresholds={"t2m": [275.0, 285.0]})
    back = open_ensemble(path, summary=True)
    assert set(open_ensemble(path).data_vars) == {"t2m"}
    x = ens.t2m.values.astype(np.float64)  # (init, member, lead, lat, lon)
    np.testing.assert_allclose(back.t2m_mean.values, x.mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(back.t2m_std.values, x.std(axis=1), rtol=1e-5)
    q = np.moveaxis(np.quantile(x, [0.05, 0.25, 0.5, 0.75, 0.95], axis=1), 0, 1)
    np.testing.assert_allclose(back.t2m_quantile.values, q, rtol=1e-6)
    p = np.stack([(x > 275.0).mean(axis=1), (x > 285.0).mean(axis=1)], axis=1)
    p[np.isnan(x).any(axis=1)[:, None].repeat(2, axis=1)] = np.nan
    np.testing.assert_allclose(back.t2m_exceedance.values, p)
    assert back.t2m_mean.dims == (INIT_TIME, LEAD_TIME, LAT, LON)
    assert back.t2m_quantile.dims == (INIT_TIME, QUANTILE, LEAD_TIME, LAT, LON)
    assert back.t2m_exceedance.dims == (INIT_TIME, "t2m_threshold", LEAD_TIME, LAT, LON)
    assert list(back[QUANTILE].values) == [0.05, 0.25, 0.5, 0.75, 0.95]
    with netCDF4.Dataset(path) as nc:
        assert nc["t2m_mean"].cell_methods == "realization: mean"
        assert nc["t2m_threshold"].units == "K"
        assert nc["t2m_exceedance"].units == "1"


def test_torch_is_not_imported(tmp_path):
    code = (
        "import sys, numpy as np, xarray as xr\n"
        "from forecast.export import to_netcdf, open_ensemble\n"
        "ens = xr.Dataset({'t': (('member','lead_time','node'), np.zeros((2,1,1),'f4'))},\n"
        "  coords={'member': [0, 1], 'lead_time': np.array([3600], 'timedelta64[s]'),\n"
        "          'node': ['a'], 'init_time': np.datetime64('2020-01-01T00')})\n"
        f"to_netcdf(ens, {str(tmp_path / 'x.nc')!r}, summary=True, thresholds=[0.5])\n"
        f"open_ensemble({str(tmp_path / 'x.nc')!r}, summary=True).load()\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda e: e.drop_vars(VALID_TIME).assign_coords(
                {
                    VALID_TIME: (
                        (INIT_TIME, LEAD_TIME),
                        e[VALID_TIME].values + np.timedelta64(1, "h"),
                    )
                }
            ),
            "valid_time != init_time",
        ),
        (lambda e: e.isel({MEMBER: 0}), "has dims"),
        (lambda e: e.drop_vars(LAT), "no 'lat' coordinate"),
        (lambda e: e.isel({INIT_TIME: [1, 0, 2]}), "must increase strictly"),
        (lambda e: e.isel({LEAD_TIME: [1, 0]}), "must increase strictly"),
        (
            lambda e: e.assign_coords(extra=((MEMBER, LEAD_TIME), np.zeros((4, 5)))),
            "cannot be exported",
        ),
        (lambda e: e.assign(bad=e.t2m.isel({LEAD_TIME: 0})), "has dims"),
    ],
)
def test_bad_ensembles_raise(tmp_path, change, message):
    with pytest.raises(ForecastError, match=message):
        to_netcdf(change(grid_ensemble()), tmp_path / "bad.nc")
    assert not (tmp_path / "bad.nc").exists()
    assert list(tmp_path.iterdir()) == []  # no temporary file left behind either


def test_bad_slabs_in_a_stream_raise(tmp_path):
    ens = grid_ensemble()
    slabs = [ens.isel({INIT_TIME: i}) for i in range(3)]
    with pytest.raises(ForecastError, match="other lead times"):
        to_netcdf(iter([slabs[0], slabs[1].isel({LEAD_TIME: slice(0, 4)})]), tmp_path / "a.nc")
    with pytest.raises(ForecastError, match="not after"):
        to_netcdf(iter([slabs[1], slabs[0]]), tmp_path / "a.nc")
    with pytest.raises(ForecastError, match="no ensembles"):
        to_netcdf(iter([]), tmp_path / "a.nc")
    with pytest.raises(ForecastError, match="other members"):
        to_netcdf(iter([slabs[0], slabs[1].isel({MEMBER: [0, 1, 3, 2]})]), tmp_path / "a.nc")
    with pytest.raises(ForecastError, match="variables"):
        to_netcdf(iter([slabs[0], slabs[1].rename(t2m="t")]), tmp_path / "a.nc")
    assert list(tmp_path.iterdir()) == []


def test_bad_targets_and_options_raise(tmp_path):
    ens = grid_ensemble()
    with pytest.raises(ForecastError, match="does not exist"):
        to_netcdf(ens, tmp_path / "missing" / "f.nc")
    target = to_netcdf(ens, tmp_path / "f.nc")
    before = target.stat().st_mtime_ns
    with pytest.raises(ForecastError, match="exists; pass --overwrite"):
        to_netcdf(ens, target)
    assert target.stat().st_mtime_ns == before
    to_netcdf(ens.isel({INIT_TIME: [0]}), target, overwrite=True)
    assert open_ensemble(target).sizes[INIT_TIME] == 1
    with pytest.raises(ForecastError, match="only written with summary"):
        to_netcdf(ens, tmp_path / "g.nc", thresholds=[1.0])
    with pytest.raises(ForecastError, match="unknown variable"):
        to_netcdf(ens, tmp_path / "g.nc", summary=True, thresholds={"rain": [1.0]})
    with pytest.raises(ForecastError, match=r"quantile levels must lie in \[0, 1\]"):
        to_netcdf(ens, tmp_path / "g.nc", summary=True, quantiles=[0.5, 1.5])
    with pytest.raises(ForecastError, match="cannot be stored"):
        to_netcdf(ens.assign_attrs(meta={"a": 1}), tmp_path / "g.nc")
    assert not (tmp_path / "g.nc").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into read-only folders")
def test_read_only_folder_raises(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(ForecastError, match="not writable"):
            to_netcdf(grid_ensemble(), folder / "f.nc")
    finally:
        folder.chmod(0o700)


def test_folder_without_write_permission_raises(tmp_path, monkeypatch):
    """The permission check itself (root passes os.access, so simulate a read-only folder)."""
    real = os.access
    monkeypatch.setattr(
        os, "access", lambda p, mode: False if Path(p) == tmp_path else real(p, mode)
    )
    with pytest.raises(ForecastError, match="not writable"):
        to_netcdf(grid_ensemble(), tmp_path / "f.nc")


def test_open_ensemble_rejects_other_files(tmp_path):
    with pytest.raises(ForecastError, match="not found"):
        open_ensemble(tmp_path / "none.nc")
    xr.Dataset({"a": ("x", [1.0, 2.0])}).to_netcdf(tmp_path / "plain.nc")
    with pytest.raises(ForecastError, match="not an ensemble file"):
        open_ensemble(tmp_path / "plain.nc")
    (tmp_path / "junk.nc").write_text("not netcdf")
    with pytest.raises(ForecastError, match="not a readable NetCDF"):
        open_ensemble(tmp_path / "junk.nc")


@pytest.mark.skipif(shutil.which("ncdump") is None, reason="ncdump absent (Debian netcdf-bin)")
def test_ncdump_reads_the_header(tmp_path):
    path = to_netcdf(sensor_ensemble(), tmp_path / "s.nc", summary=True)
    out = subprocess.run(
        ["ncdump", "-h", str(path)], check=True, capture_output=True, text=True
    ).stdout
    assert "realization = 3 ;" in out
    assert ':featureType = "timeSeries" ;' in out
    assert 'speed:units = "mile hour-1" ;' in out


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_interrupted_write_leaves_no_target(tmp_path, sig, interrupt_slow_writer):
    interrupt_slow_writer("to_netcdf", tmp_path / "out.nc", sig, timeout=30)


def test_integer_sensor_ids_round_trip(tmp_path):
    ens = sensor_ensemble().assign_coords({NODE: np.array([773869, 767541, 767542, 717447, 5])})
    back = open_ensemble(to_netcdf(ens, tmp_path / "i.nc"))
    assert_round_trip(back, ens)
    assert back[NODE].dtype == np.int64
    with netCDF4.Dataset(tmp_path / "i.nc") as nc:
        assert nc["station_id"].dtype == np.int32
        assert nc["station_id"].cf_role == "timeseries_id"


@pytest.mark.parametrize("writer", ["netcdf", "zarr"])
def test_streamed_issue_time_off_the_time_unit(writer, tmp_path):
    """Issue times are stored in the first one's unit; a later one between units is refused."""
    from forecast.export import to_zarr

    ens = grid_ensemble(n_init=2)
    first = ens.isel({INIT_TIME: 0})
    late = ens.isel({INIT_TIME: 1}).assign_coords(
        {INIT_TIME: first[INIT_TIME].values + np.timedelta64(30, "m")}
    )
    late = late.assign_coords({VALID_TIME: late[INIT_TIME] + late[LEAD_TIME]})
    write = to_netcdf if writer == "netcdf" else to_zarr
    target = tmp_path / f"e.{'nc' if writer == 'netcdf' else 'zarr'}"
    with pytest.raises(ForecastError, match="not a whole number of hours"):
        write(iter([first, late]), target)
    assert not target.exists()


@pytest.mark.parametrize("writer", ["netcdf", "zarr"])
def test_member_labels_of_a_pool_round_trip(tmp_path, writer):
    """A coordinate over the members (a pool's source_model) is written once, over
    realization, read back over member, and kept off the summary variables."""
    from forecast.dims import SOURCE_MODEL
    from forecast.export import to_zarr

    labels = ["vae-s0", "diffusion-s0", "vae-s1"]
    ens = grid_ensemble(m=3).assign_coords({SOURCE_MODEL: (MEMBER, labels)})
    if writer == "netcdf":
        path = to_netcdf(ens, tmp_path / "f.nc", summary=True)
        with netCDF4.Dataset(path) as nc:
            assert nc["source_model"].dimensions[0] == "realization"
            assert "source_model" in nc["t2m"].coordinates
            assert "source_model" not in nc["t2m_mean"].coordinates
        summary = open_ensemble(path, summary=True)
        assert summary["t2m_mean"].dims == (INIT_TIME, LEAD_TIME, LAT, LON)
    else:
        path = to_zarr(ens, tmp_path / "f.zarr")
    back = open_ensemble(path)
    assert back[SOURCE_MODEL].dims == (MEMBER,)
    assert list(back[SOURCE_MODEL].values) == labels
    np.testing.assert_array_equal(back.t2m.values, ens.t2m.values)


def test_member_labels_must_agree_between_issue_times(tmp_path):
    from forecast.dims import SOURCE_MODEL

    ens = grid_ensemble(m=3)
    slabs = [
        ens.isel({INIT_TIME: i}).assign_coords({SOURCE_MODEL: (MEMBER, list(names))})
        for i, names in enumerate(("abc", "abd"))
    ]
    with pytest.raises(ForecastError, match="another 'source_model' coordinate than the first"):
        to_netcdf(iter(slabs), tmp_path / "f.nc")
    assert not (tmp_path / "f.nc").exists()
    with pytest.raises(ForecastError, match=r"coordinate 'extra' over .* cannot be exported"):
        to_netcdf(
            ens.assign_coords(extra=((MEMBER, LEAD_TIME), np.zeros((3, 5)))), tmp_path / "g.nc"
        )
