"""The exported files pass the CF checker (cfchecks) and the IOOS compliance checker (cf:1.8).

Both checkers are optional development tools (PyPI ``cfchecker`` and ``compliance-checker``;
cfchecks also needs Debian ``libudunits2-0``). cfchecks runs offline with the tables described
in ``../shared/cf-tables/README.md`` (or ``$FORECAST_CF_TABLES``). Each test skips, naming what
is missing, where a piece is absent.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from forecast.dims import INIT_TIME, LAT, LEAD_TIME, LON, MEMBER, NODE, SOURCE_MODEL, VALID_TIME
from forecast.export import to_netcdf

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    path = BIN / name
    if path.is_file():
        return str(path)
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} not installed (pip install cfchecker compliance-checker)")
    return found


def _cf_tables() -> Path:
    folder = Path(os.environ.get("FORECAST_CF_TABLES", REPO.parent / "shared" / "cf-tables"))
    for name in ("area-type-table.xml", "standardized-region-list.xml"):
        if not (folder / name).is_file():
            pytest.skip(f"CF table {name} absent in {folder} (set FORECAST_CF_TABLES)")
    return folder


def _standard_name_table() -> Path:
    try:
        import compliance_checker
    except ImportError:
        pytest.skip("compliance-checker not installed; it ships the standard-name table")
    path = Path(compliance_checker.__file__).parent / "data" / "cf-standard-name-table.xml"
    if not path.is_file():
        pytest.skip(f"standard-name table absent at {path}")
    return path


def _ensemble(space: str, n_init: int = 2) -> xr.Dataset:
    rng = np.random.default_rng(3)
    m, n_lead = 3, 4
    if space == "grid":
        step = np.timedelta64(1, "h")
        shape: tuple[int, ...] = (5, 6)
        dims: tuple[str, ...] = (LAT, LON)
        coords = {
            LAT: (LAT, np.linspace(58.0, 50.0, 5), {"units": "degrees_north"}),
            LON: (LON, np.linspace(-10.0, 2.0, 6), {"units": "degrees_east"}),
        }
        var, attrs, mean = "t2m", {"units": "K"}, 280.0
    else:
        step = np.timedelta64(5, "m")
        shape, dims = (4,), (NODE,)
        coords = {
            NODE: np.array(["773869", "767541", "767542", "717447"]),
            LAT: (NODE, rng.uniform(34.0, 34.2, 4)),
            LON: (NODE, rng.uniform(-118.3, -118.0, 4)),
        }
        var, attrs, mean = "speed", {"units": "mph", "long_name": "traffic speed"}, 60.0
    init = np.datetime64("2019-03-01T00", "ns") + np.arange(n_init) * 6 * step
    lead = (np.arange(1, n_lead + 1) * step).astype("timedelta64[ns]")
    values = rng.normal(mean, 3.0, (n_init, m, n_lead, *shape)).astype(np.float32)
    values[0, 0, 0, ...] = np.nan  # missing data -> _FillValue
    return xr.Dataset(
        {var: ((INIT_TIME, MEMBER, LEAD_TIME, *dims), values, attrs)},
        coords={
            INIT_TIME: init,
            MEMBER: np.arange(m),
            LEAD_TIME: lead,
            VALID_TIME: ((INIT_TIME, LEAD_TIME), init[:, None] + lead[None]),
            **coords,
        },
    )


CASES = {
    "grid": lambda p: to_netcdf(
        _ensemble("grid"),
        p,
        summary=True,
        thresholds=[278.0, 283.0],
        seed=1,
        sampler="ddim",
        nfe=20,
        model="diffusion",
        checkpoint_sha256="0" * 64,
        institution="Test",
    ),
    "grid-one-issue": lambda p: to_netcdf(_ensemble("grid", 1).isel({INIT_TIME: 0}), p),
    # a pool's ensemble: the model of each member as an auxiliary coordinate (char labels)
    "grid-pooled": lambda p: to_netcdf(
        _ensemble("grid").assign_coords(
            {
                SOURCE_MODEL: xr.Variable(
                    MEMBER, ["vae-s0", "diffusion-s0", "vae-s1"], {"long_name": "model"}
                )
            }
        ),
        p,
        summary=True,
    ),
    "sensors": lambda p: to_netcdf(_ensemble("sensors"), p, summary=True, thresholds=[50.0]),
    "sensors-stream": lambda p: to_netcdf(
        (d.isel({INIT_TIME: i}) for d in [_ensemble("sensors", 3)] for i in range(3)), p
    ),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def exported(request, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cf") / f"{request.param}.nc"
    CASES[request.param](path)
    return path


def test_cfchecks_reports_no_errors(exported):
    tables = _cf_tables()
    names = _standard_name_table()
    cfchecks = _tool("cfchecks")
    res = subprocess.run(
        [
            cfchecks,
            "-s",
            str(names),
            "-a",
            str(tables / "area-type-table.xml"),
            "-r",
            str(tables / "standardized-region-list.xml"),
            str(exported),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = res.stdout + res.stderr
    if "udunits" in out.lower() and "ERRORS detected" not in out:
        pytest.skip(f"cfchecks cannot load UDUNITS-2 (apt-get install libudunits2-0): {out[-300:]}")
    m = re.search(r"ERRORS detected:\s*(\d+)", out)
    assert m, out[-2000:]
    assert int(m.group(1)) == 0, out
    assert "CHECKING NetCDF FILE" in out and "CF-1.8" in out


def test_compliance_checker_has_no_high_priority_failures(exported, tmp_path):
    checker = _tool("compliance-checker")
    report = tmp_path / "report.json"
    subprocess.run(
        [checker, "--test=cf:1.8", "-f", "json", "-o", str(report), str(exported)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    result = json.loads(report.read_text())["cf:1.8"]
    failed = [f"{p['name']}: {p['msgs']}" for p in result["high_priorities"] if p["msgs"]]
    assert result["high_count"] == 0, failed
    assert result["scored_points"] > 0
