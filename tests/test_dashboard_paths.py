"""Path confinement and file sniffing of the dashboard (forecast.dashboard.paths)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from forecast.dashboard.paths import (
    USER_DATA_ENV,
    confine,
    data_roots,
    sniff_format,
    store_upload,
)
from forecast.errors import ForecastError


@pytest.fixture()
def layout(tmp_path: Path) -> dict[str, Path]:
    repo = tmp_path / "repo"
    (repo / "data").mkdir(parents=True)
    shared = tmp_path / "shared" / "data"
    shared.mkdir(parents=True)
    user = tmp_path / "user"
    user.mkdir()
    secret = tmp_path / "secret.nc"
    xr.Dataset({"a": ("x", np.arange(3.0))}).to_netcdf(secret)
    (user / "mine.nc").write_bytes(secret.read_bytes())
    (repo / "data" / "in_repo.csv").write_text("time,s1\n2020-01-01,1.0\n")
    return {"repo": repo, "shared": shared, "user": user, "secret": secret}


def test_roots_are_project_data_shared_and_user(layout):
    env = {USER_DATA_ENV: str(layout["user"])}
    roots = data_roots(layout["repo"], env)
    assert roots == [
        (layout["repo"] / "data").resolve(),
        layout["shared"].resolve(),
        layout["user"].resolve(),
    ]
    # a user folder that does not exist is not a root
    assert len(data_roots(layout["repo"], {USER_DATA_ENV: str(layout["user"] / "nope")})) == 2


def test_confine_accepts_files_inside_roots(layout):
    roots = data_roots(layout["repo"], {USER_DATA_ENV: str(layout["user"])})
    assert confine(layout["user"] / "mine.nc", roots) == (layout["user"] / "mine.nc").resolve()
    # relative names are looked up in the roots
    assert confine("in_repo.csv", roots) == (layout["repo"] / "data" / "in_repo.csv").resolve()


@pytest.mark.parametrize("bad", ["abs", "dotdot", "symlink", "etc"])
def test_confine_refuses_paths_outside_roots(layout, bad):
    roots = data_roots(layout["repo"], {USER_DATA_ENV: str(layout["user"])})
    if bad == "abs":
        path = str(layout["secret"])
    elif bad == "dotdot":
        path = "../secret.nc"
    elif bad == "symlink":
        link = layout["user"] / "link.nc"
        os.symlink(layout["secret"], link)
        path = str(link)
    else:
        path = "/etc/passwd"
    with pytest.raises(ForecastError, match="outside the allowed data folders"):
        confine(path, roots)


def test_confine_missing_and_empty(layout):
    roots = data_roots(layout["repo"], {})
    with pytest.raises(ForecastError, match="not found"):
        confine("absent.nc", roots)
    with pytest.raises(ForecastError, match="no path given"):
        confine("  ", roots)
    with pytest.raises(ForecastError, match="no data folder"):
        confine("x.nc", [])


def test_sniff_format(layout, tmp_path):
    assert sniff_format(layout["secret"]) == "netcdf"
    assert sniff_format(layout["repo"] / "data" / "in_repo.csv") == "csv"
    fake = tmp_path / "fake.nc"
    fake.write_text("hello")
    with pytest.raises(ForecastError, match="not a NetCDF file"):
        sniff_format(fake)
    other = tmp_path / "notes.txt"
    other.write_text("x")
    with pytest.raises(ForecastError, match="not a NetCDF, GRIB or CSV file"):
        sniff_format(other)
    grib = tmp_path / "x.grib"
    grib.write_bytes(b"\x00" * 10)
    with pytest.raises(ForecastError, match="not a GRIB file"):
        sniff_format(grib)
    binary_csv = tmp_path / "b.csv"
    binary_csv.write_bytes(b"\xff\xfe\x00\x01")
    with pytest.raises(ForecastError, match="not a text CSV"):
        sniff_format(binary_csv)


def test_real_grib_sniffs_as_grib(era5_path):
    assert sniff_format(era5_path) == "grib"


def test_store_upload_keeps_only_the_base_name(tmp_path):
    path = store_upload("../../evil/../x.csv", b"a,b\n1,2\n", tmp_path)
    assert path == tmp_path / "x.csv"
    assert path.read_bytes() == b"a,b\n1,2\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.csv"]
    fresh = store_upload("y.nc", b"CDF\x01", None)
    assert fresh.parent != tmp_path and fresh.read_bytes() == b"CDF\x01"
    assert oct(fresh.parent.stat().st_mode & 0o777) == "0o700"
    with pytest.raises(ForecastError, match="not a NetCDF, GRIB or CSV"):
        store_upload("x.exe", b"", tmp_path)
