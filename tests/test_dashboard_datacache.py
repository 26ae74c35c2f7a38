"""On-disk cache of generated data sets: exact round trip, keys, atomic files, damaged files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from forecast.dashboard import datacache as dc
from forecast.dims import LAT, LON, NODE, TIME


def small_dataset() -> xr.Dataset:
    """Float32 field, a time index with a frequency, string node ids and an int coordinate."""
    rng = np.random.default_rng(3)
    time = pd.date_range("2021-03-01", periods=7, freq="5min").as_unit("ns")
    ids = np.array([f"S{k:03d}" for k in range(4)])
    return xr.Dataset(
        {
            "speed": (
                (TIME, NODE),
                rng.normal(60, 5, (7, 4)).astype(np.float32),
                {"units": "mph", "long_name": "speed"},
            ),
            "flag": ((NODE,), np.array([True, False, True, True])),
        },
        coords={
            TIME: time,
            NODE: ids,
            LAT: (NODE, rng.uniform(30, 40, 4), {"units": "degrees_north"}),
            "corridor": (NODE, np.array([0, 0, 1, 1])),
        },
        attrs={"title": "small", "seed": 7, "scale": 0.1 + 0.2, "ok": True},
    )


def test_round_trip_is_exact(tmp_path):
    ds = small_dataset()
    dc.write_npz(ds, tmp_path / "a.npz")
    back = dc.read_npz(tmp_path / "a.npz")
    assert dc.same(ds, back)
    assert back.indexes[TIME].freqstr == "5min"
    assert back["speed"].dtype == np.float32 and back[NODE].dtype.kind == "U"
    assert back["speed"].values.tobytes() == ds["speed"].values.tobytes()
    assert back.attrs["scale"] == 0.1 + 0.2 and type(back.attrs["seed"]) is int
    assert set(back.coords) == set(ds.coords) and list(back.data_vars) == ["speed", "flag"]


def test_same_sees_every_difference():
    ds = small_dataset()
    assert dc.same(ds, ds.copy(deep=True))
    other = ds.copy(deep=True)
    other["speed"].values[0, 0] += np.float32(1e-3)
    assert not dc.same(ds, other)
    assert not dc.same(ds, ds.assign(speed=ds["speed"].astype(np.float64)))
    assert not dc.same(ds, ds.assign_attrs(seed=7.0))  # 7 == 7.0, but not the same type
    no_freq = ds.assign_coords({TIME: pd.DatetimeIndex(ds[TIME].values)})
    assert no_freq.identical(ds) and not dc.same(ds, no_freq)


def test_uncacheable_data_are_refused(tmp_path):
    ds = small_dataset()
    with pytest.raises(ValueError, match="attribute 'scale'"):
        dc.write_npz(ds.assign_attrs(scale=np.float64(0.3)), tmp_path / "b.npz")
    with pytest.raises(ValueError, match="dtype object"):
        dc.write_npz(
            ds.assign(note=((NODE,), np.array(["a", None, "b", "c"], dtype=object))),
            tmp_path / "b.npz",
        )


def test_open_generated_writes_once_then_reads(tmp_path):
    calls = []

    def generate():
        calls.append(1)
        return small_dataset()

    first = dc.open_generated("small", generate, folder=tmp_path)
    second = dc.open_generated("small", generate, folder=tmp_path)
    assert len(calls) == 1
    assert dc.same(first, second) and dc.same(second, small_dataset())
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == [dc.cache_path("small", 0, tmp_path).name]  # no temporary file left


def test_key_follows_name_seed_and_code(tmp_path):
    version = dc.code_version()
    assert version == dc.code_version() and len(version) == 64
    base = dc.cache_path("small", 0, tmp_path, version)
    assert base != dc.cache_path("small", 1, tmp_path, version)
    assert base != dc.cache_path("other", 0, tmp_path, version)
    assert base != dc.cache_path("small", 0, tmp_path, version[::-1])
    assert base == dc.cache_path("small", 0, tmp_path)


def test_a_new_code_version_replaces_the_old_file(tmp_path, monkeypatch):
    dc.open_generated("small", small_dataset, folder=tmp_path)
    old = dc.cache_path("small", 0, tmp_path)
    monkeypatch.setattr(dc, "code_version", lambda: "changed")
    changed = small_dataset().assign_attrs(title="changed")
    assert dc.open_generated("small", lambda: changed, folder=tmp_path).attrs["title"] == "changed"
    assert not old.exists()
    assert [p.name for p in tmp_path.iterdir()] == [dc.cache_path("small", 0, tmp_path).name]


def test_damaged_file_is_regenerated(tmp_path):
    path = dc.cache_path("small", 0, tmp_path)
    path.write_bytes(b"PK\x03\x04 not a zip")
    ds = dc.open_generated("small", small_dataset, folder=tmp_path)
    assert dc.same(ds, small_dataset())
    assert dc.same(dc.read_npz(path), ds)


def test_unwritable_folder_still_gives_the_data(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    ds = dc.open_generated("small", small_dataset, folder=blocker / "cache")
    assert dc.same(ds, small_dataset())


def test_cache_dir_from_the_environment(tmp_path):
    assert dc.cache_dir({dc.CACHE_ENV: str(tmp_path)}) == tmp_path
    assert dc.cache_dir({dc.CACHE_ENV: "off"}) is None
    assert dc.cache_dir({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "forecast"
    assert dc.cache_dir({}).name == "forecast"


def test_cached_synthetic_weather_equals_the_generated_one(tmp_path, monkeypatch):
    from forecast.dashboard import queries as q
    from forecast.data import open_dataset

    monkeypatch.setenv(dc.CACHE_ENV, str(tmp_path))
    fresh = open_dataset("synthetic-weather")
    first = q.open_named("synthetic-weather")  # generates and writes the cache
    assert len(list(tmp_path.glob("synthetic-weather-seed0-*.npz"))) == 1
    cached = q.open_named("synthetic-weather")  # reads it
    for ds in (first, cached):
        assert dc.same(fresh, ds)
        assert ds["t2m"].values.tobytes() == fresh["t2m"].values.tobytes()
    assert (cached.sizes[TIME], cached.sizes[LAT], cached.sizes[LON]) == (2160, 32, 48)
