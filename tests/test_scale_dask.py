"""Scale-out with dask and Zarr: lazy opening, lazy windows, chunked scoring, Zarr export."""

from __future__ import annotations

import signal
from pathlib import Path

import dask.array as dsa
import numpy as np
import pytest
import torch
import xarray as xr
import zarr
from test_export_netcdf import grid_ensemble, sensor_ensemble
from test_scoring_align import make_case

from forecast.cli import main
from forecast.data import (
    LazyWindowDataset,
    Normalizer,
    WindowDataset,
    calendar_features,
    make_windows,
    open_dataset,
    to_array,
)
from forecast.dims import INIT_TIME, LAT, LEAD_TIME, LON, MEMBER, TIME
from forecast.errors import ForecastError
from forecast.export import open_ensemble, to_netcdf, to_zarr
from forecast.scoring import diagnostics, scorecard

REPO = Path(__file__).resolve().parents[1]


def _raw_files(ds: xr.Dataset, folder: Path, parts: int = 3) -> list[Path]:
    """Split a standard data set into NetCDF files with raw names: latitude descending,
    longitude, valid_time; files in time order, the data inside each file reversed in time."""
    n = ds.sizes[TIME]
    edges = np.linspace(0, n, parts + 1).astype(int)
    paths = []
    for k in range(parts):
        part = ds.isel({TIME: slice(edges[k], edges[k + 1])})
        part = part.isel({TIME: slice(None, None, -1), LAT: slice(None, None, -1)})
        part = part.rename({TIME: "valid_time", LAT: "latitude", LON: "longitude"})
        path = folder / f"part{k}.nc"
        part.to_netcdf(path)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def weather(synthetic_weather_ds):
    return synthetic_weather_ds.isel({TIME: slice(0, 96)})


def _is_dask(ds: xr.Dataset) -> bool:
    return all(isinstance(v.data, dsa.Array) for v in ds.data_vars.values())


def test_lazy_multifile_netcdf_is_dask_backed_and_equal(weather, tmp_path):
    _raw_files(weather, tmp_path)
    eager = open_dataset(str(tmp_path / "part*.nc"))
    lazy = open_dataset(str(tmp_path / "part*.nc"), chunks={TIME: 24})
    assert _is_dask(lazy)
    assert lazy["t2m"].chunks[0] == (24, 24, 24, 24)
    assert lazy["t2m"].dims == (TIME, LAT, LON)
    assert bool(lazy.indexes[LAT].is_monotonic_increasing)
    xr.testing.assert_identical(lazy.compute(), eager)
    np.testing.assert_array_equal(eager["t2m"].values, weather["t2m"].values)


def test_lazy_zarr_store_is_dask_backed_and_equal(weather, tmp_path):
    store = tmp_path / "weather.zarr"
    weather.chunk({TIME: 32}).to_zarr(store, zarr_format=2, consolidated=True)
    lazy = open_dataset(store, chunks={})
    assert _is_dask(lazy)
    assert lazy["t2m"].chunks[0] == (32, 32, 32)
    xr.testing.assert_equal(lazy.compute(), open_dataset(store))
    np.testing.assert_array_equal(lazy["t2m"].values, weather["t2m"].values)


@pytest.mark.parametrize(
    ("chunks", "message"),
    [({"time": 0}, "not a chunk size"), ({"member": 2}, "lacks"), ("big", "not understood")],
)
def test_bad_chunks_raise(weather, tmp_path, chunks, message):
    path = tmp_path / "w.nc"
    weather.to_netcdf(path)
    with pytest.raises(ForecastError, match=message):
        open_dataset(path, chunks=chunks)


def test_lazy_windows_equal_eager_windows(weather, tmp_path):
    path = tmp_path / "w.nc"
    weather.to_netcdf(path)
    lazy = open_dataset(path, chunks={TIME: 10})
    norm = Normalizer.fit(weather)
    windows = make_windows(weather, 6, 4, stride=7)
    eager = WindowDataset(
        norm.transform_array(to_array(weather)), windows, calendar_features(weather[TIME].values)
    )
    lazy_items = LazyWindowDataset(lazy, windows, norm)
    assert len(lazy_items) == len(eager) > 5
    for k in range(len(eager)):
        a, b = eager[k], lazy_items[k]
        assert a["issue_index"] == b["issue_index"]
        for key in ("context", "target", "calendar"):
            torch.testing.assert_close(b[key], a[key], rtol=0, atol=0)
    batch = next(iter(torch.utils.data.DataLoader(lazy_items, batch_size=4)))
    assert tuple(batch["context"].shape) == (4, 6, 1, 16, 24)
    with pytest.raises(ForecastError, match="windows reach"):
        LazyWindowDataset(lazy.isel({TIME: slice(0, 20)}), windows)


def test_chunked_scorecard_equals_in_memory():
    truth, fc = make_case(m=6, n_init=4, seed=3)
    lazy = fc.chunk({INIT_TIME: 1, MEMBER: -1})
    eager_card = scorecard({"a": fc}, truth, progress=False)
    lazy_card = scorecard({"a": lazy}, truth, progress=False)
    assert eager_card["t2m"].shape == lazy_card["t2m"].shape
    np.testing.assert_allclose(lazy_card["t2m"].values, eager_card["t2m"].values, rtol=1e-12)
    d_eager = diagnostics({"a": fc}, truth)["t2m"]
    d_lazy = diagnostics({"a": lazy}, truth)["t2m"]
    for name in d_eager.data_vars:
        np.testing.assert_allclose(d_lazy[name].values, d_eager[name].values, rtol=1e-12)


@pytest.mark.parametrize("make", [grid_ensemble, sensor_ensemble])
def test_zarr_round_trip_equals_netcdf_round_trip(make, tmp_path):
    ens = make()
    to_netcdf(ens, tmp_path / "e.nc")
    gen = (ens.isel({INIT_TIME: i}) for i in range(ens.sizes[INIT_TIME]))
    to_zarr(gen, tmp_path / "e.zarr")
    nc = open_ensemble(tmp_path / "e.nc").load()
    zr = open_ensemble(tmp_path / "e.zarr")
    assert _is_dask(zr)
    xr.testing.assert_identical(zr.compute().drop_attrs(), nc.drop_attrs())
    assert {k: v for k, v in zr.attrs.items() if k != "history"} == {
        k: v for k, v in nc.attrs.items() if k != "history"
    }
    # chunks: one member x one issue time x all leads x the whole grid; consolidated metadata
    assert (tmp_path / "e.zarr" / ".zmetadata").is_file()
    var = next(iter(ens.data_vars))
    space = ens[var].shape[3:]
    stored = zarr.open_group(str(tmp_path / "e.zarr"), mode="r")[var]
    assert stored.chunks == (1, 1, ens.sizes[LEAD_TIME], *space)
    assert zr[var].chunks[:2] == ((1,) * ens.sizes[INIT_TIME], (1,) * ens.sizes[MEMBER])


def test_zarr_scalar_and_lazy_input(tmp_path):
    ens = grid_ensemble(n_init=2)
    one = ens.isel({INIT_TIME: 1})
    to_zarr(one, tmp_path / "one.zarr")
    back = open_ensemble(tmp_path / "one.zarr").compute()
    assert back[INIT_TIME].ndim == 0
    np.testing.assert_array_equal(back["t2m"].values, one["t2m"].values)
    to_zarr(ens.chunk({MEMBER: 1}), tmp_path / "lazy.zarr")
    np.testing.assert_array_equal(
        open_ensemble(tmp_path / "lazy.zarr", chunks={INIT_TIME: 1})["t2m"].values,
        ens["t2m"].values,
    )


def test_zarr_targets(tmp_path):
    ens = grid_ensemble(n_init=1)
    target = tmp_path / "e.zarr"
    to_zarr(ens, target)
    with pytest.raises(ForecastError, match="exists"):
        to_zarr(ens, target)
    to_zarr(ens * 2, target, overwrite=True)
    np.testing.assert_array_equal(open_ensemble(target)["t2m"].values, (ens * 2)["t2m"].values)
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "keep.txt").write_text("x")
    with pytest.raises(ForecastError, match="not a Zarr store"):
        to_zarr(ens, tmp_path / "plain", overwrite=True)
    assert (tmp_path / "plain" / "keep.txt").is_file()
    with pytest.raises(ForecastError, match="chunks"):
        open_ensemble(target, chunks={"time": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.zarr", "plain"]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_interrupted_zarr_write_leaves_no_target(tmp_path, sig, interrupt_slow_writer):
    interrupt_slow_writer("to_zarr", tmp_path / "out.zarr", sig)


@pytest.fixture(scope="module")
def eval_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("scale_eval")
    truth, fc = make_case(m=5, n_init=4, seed=2)
    truth.to_netcdf(d / "truth.nc")
    to_netcdf(fc, d / "ens.nc")
    to_zarr(fc, d / "ens.zarr")
    return d, truth, fc


def _evaluate(d: Path, forecast: Path, out: str, *extra: str) -> xr.Dataset:
    rc = main(
        [
            "evaluate",
            "--forecast",
            f"m={forecast}",
            "--truth",
            str(d / "truth.nc"),
            "--out",
            str(d / out),
            *extra,
        ]
    )
    assert rc == 0
    return xr.open_dataset(d / out / "scorecard.nc").load()


def test_evaluate_zarr_equals_netcdf_and_in_memory(eval_files):
    d, truth, fc = eval_files
    card_nc = _evaluate(d, d / "ens.nc", "nc")
    card_zarr = _evaluate(d, d / "ens.zarr", "zarr", "--issue-chunk", "2")
    memory = scorecard({"m": fc}, truth, progress=False)
    np.testing.assert_allclose(card_nc["t2m"].values, memory["t2m"].values, rtol=1e-12)
    np.testing.assert_allclose(card_zarr["t2m"].values, memory["t2m"].values, rtol=1e-12)


@pytest.mark.slow
def test_evaluate_on_a_local_cluster_equals_default(eval_files):
    d, _, _ = eval_files
    plain = _evaluate(d, d / "ens.nc", "plain")
    cluster = _evaluate(d, d / "ens.nc", "cluster", "--workers", "2", "--memory-limit", "1GB")
    np.testing.assert_allclose(cluster["t2m"].values, plain["t2m"].values, rtol=1e-12)
    assert list(cluster["metric"].values) == list(plain["metric"].values)


def test_evaluate_cluster_options_errors(eval_files, capsys):
    d, _, _ = eval_files
    base = [
        "evaluate",
        "--forecast",
        str(d / "ens.nc"),
        "--truth",
        str(d / "truth.nc"),
        "--out",
        str(d / "bad"),
    ]
    for extra, message in [
        (["--memory-limit", "1GB"], "need --workers"),
        (["--workers", "0"], "at least 1"),
        (["--issue-chunk", "0"], "at least 1"),
    ]:
        assert main([*base, *extra]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err


@pytest.mark.slow
def test_lazy_grib_equals_eager(era5_path):
    before = sorted(p.name for p in era5_path.parent.iterdir())
    lazy = open_dataset(era5_path, chunks={TIME: 48})
    assert _is_dask(lazy)
    assert lazy["t2m"].chunks[0][0] == 48
    eager = open_dataset(era5_path)
    np.testing.assert_array_equal(lazy["t2m"].values, eager["t2m"].values)
    assert sorted(p.name for p in era5_path.parent.iterdir()) == before  # no index written


def test_predict_out_zarr_equals_netcdf(tmp_path, capsys):
    from forecast.data.synthetic import synthetic_weather
    from forecast.models import PersistenceEnsemble

    ds = synthetic_weather(seed=0, n_lat=5, n_lon=6, days=4, spinup_days=1)
    ds.to_netcdf(tmp_path / "w.nc")
    PersistenceEnsemble(context=3, horizon=6).fit(ds.isel({TIME: slice(0, 60)})).save(
        tmp_path / "p.safetensors"
    )
    base = [
        "predict",
        "--checkpoint",
        str(tmp_path / "p.safetensors"),
        "--data",
        str(tmp_path / "w.nc"),
        "--init-range",
        "2021-01-02T06",
        "2021-01-02T12",
        "3h",
        "--members",
        "4",
    ]
    assert main([*base, "--out", str(tmp_path / "f.nc")]) == 0
    assert main([*base, "--out", str(tmp_path / "f.zarr")]) == 0
    nc = open_ensemble(tmp_path / "f.nc").load()
    zr = open_ensemble(tmp_path / "f.zarr").compute()
    assert zr.sizes[INIT_TIME] == 3 and zr.sizes[MEMBER] == 4
    xr.testing.assert_identical(zr.drop_attrs(), nc.drop_attrs())
    assert main([*base, "--summary", "--out", str(tmp_path / "g.zarr")]) == 2
    assert "NetCDF only" in capsys.readouterr().err
    assert main([*base, "--out", str(tmp_path / "f.zarr")]) == 2
    assert "exists" in capsys.readouterr().err
