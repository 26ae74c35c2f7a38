"""`forecast data list` / `info` / `convert`: output on real files, every bad input -> exit 2."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from forecast.cli import main
from forecast.data.catalog import DATA_DIR_ENV

REPO = Path(__file__).resolve().parents[1]


def grid(n_time: int = 10) -> xr.Dataset:
    rng = np.random.default_rng(7)
    shape = (n_time, 3, 4)
    return xr.Dataset(
        {
            "t2m": (
                ("time", "latitude", "longitude"),
                280 + rng.standard_normal(shape),
                {"units": "K"},
            ),
            "sp": (
                ("time", "latitude", "longitude"),
                1e5 + rng.standard_normal(shape),
                {"units": "Pa"},
            ),
        },
        coords={
            "time": pd.date_range("2020-01-01", periods=n_time, freq="h"),
            "latitude": [52.0, 51.5, 51.0],
            "longitude": [-1.0, 0.0, 1.0, 2.0],
        },
    )


def sensor_frame(n_time: int = 12) -> pd.DataFrame:
    rng = np.random.default_rng(8)
    values = np.round(rng.uniform(20, 70, (n_time, 4)), 2)
    return pd.DataFrame(
        values,
        index=pd.date_range("2012-03-01", periods=n_time, freq="5min", name="time"),
        columns=["s1", "s2", "s3", "s4"],
    )


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory) -> Path:
    """A folder with one file (or pair of files) per bad-input case."""
    root = tmp_path_factory.mktemp("bad")
    g = grid()
    g.to_netcdf(root / "g.nc")
    (root / "x.txt").write_text("hello")
    g.isel(time=0, drop=True).to_netcdf(root / "static.nc")
    g.drop_isel(time=[4]).to_netcdf(root / "gap.nc")
    g.isel(time=slice(0, 6)).to_netcdf(root / "a.nc")
    g.isel(time=slice(5, 10)).to_netcdf(root / "b.nc")
    nan = g.copy()
    nan["sp"] = nan["sp"] * np.nan
    nan.to_netcdf(root / "nan.nc")
    frame = sensor_frame()
    frame.to_csv(root / "s.csv")
    np.savetxt(root / "adj3.csv", np.eye(3), delimiter=",")
    bad = frame.astype(object)
    bad.iloc[2, 1] = "broken"
    bad.to_csv(root / "bad.csv")
    frame.to_csv(root / "plain.csv", index=False)
    return root


BAD_CASES = [
    ("missing path", ["nope.nc"], "nope.nc does not exist"),
    ("unknown format", ["x.txt"], "unknown format of"),
    (
        "variable not in file",
        ["g.nc", "--variable", "tp"],
        "variable 'tp' not in g.nc; available: t2m, sp",
    ),
    ("no time dimension", ["static.nc"], "static.nc has no time dimension"),
    (
        "irregular times",
        ["gap.nc"],
        "irregular time step: expected 1h but 2020-01-01T05:00:00 follows 2020-01-01T03:00:00",
    ),
    ("duplicated times", ["a.nc", "b.nc"], "time 2020-01-01T05:00:00 appears 2 times"),
    ("all-NaN variable", ["nan.nc"], "variable 'sp' is missing everywhere (all NaN)"),
    (
        "adjacency shape",
        ["s.csv", "--adjacency", "adj3.csv"],
        "adjacency adj3.csv is 3 x 3 but the data has 4 sensors",
    ),
    (
        "non-numeric sensor column",
        ["bad.csv"],
        "sensor column 's2' is not numeric (data row 3: 'broken')",
    ),
    ("no time column", ["plain.csv"], "plain.csv has no time column; pass both start= and step="),
    ("bad step", ["plain.csv", "--start", "2012-03-01", "--step", "fast"], "bad start="),
    ("unknown named data set", ["los-lop"], "'los-lop' is neither a named data set"),
]


@pytest.mark.parametrize(("case", "args", "message"), BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_input_exits_2_with_one_line(case, args, message, bad_files, capsys, monkeypatch):
    monkeypatch.chdir(bad_files)
    argv = ["data", "info", *args]
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("error: ") and err.endswith("\n") and err.count("\n") == 1, err
    assert message in err, err
    assert "Traceback" not in err


def test_named_data_set_absent(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    assert main(["data", "info", "los-loop"]) == 2
    _, err = capsys.readouterr()
    assert err.count("\n") == 1
    assert f"looked for {tmp_path / 'los-loop' / 'los_speed.csv'}" in err
    assert f"set {DATA_DIR_ENV}" in err


def _statuses(out: str) -> dict[str, str]:
    return dict(re.findall(r"^(\S+)\s+(present|ABSENT|generated)\s", out, flags=re.M))


def test_list_shows_resolution_and_presence(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("synthetic-weather", "synthetic-traffic", "era5-uk-t2m", "los-loop"):
        assert name in out
    assert str(tmp_path / "los-loop" / "los_speed.csv") in out
    assert _statuses(out) == {
        "era5-uk-t2m": "ABSENT",
        "los-loop": "ABSENT",
        "synthetic-traffic": "generated",
        "synthetic-weather": "generated",
    }
    assert f"data folder: {tmp_path} (set {DATA_DIR_ENV}" in out
    (tmp_path / "los-loop").mkdir()
    for name in ("los_speed.csv", "los_adj.csv"):
        (tmp_path / "los-loop" / name).write_text("1\n")
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert _statuses(out)["los-loop"] == "present" and _statuses(out)["era5-uk-t2m"] == "ABSENT"


def test_info_era5(monkeypatch, era5_path, capsys):
    monkeypatch.setenv(DATA_DIR_ENV, str(era5_path.parents[1]))
    assert main(["data", "info", "era5-uk-t2m"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "source:    era5-uk-t2m"
    assert lines[1] == "dims:      time=744, lat=33, lon=49"
    assert lines[2] == "time:      2019-03-01T00:00:00 .. 2019-03-31T23:00:00, step 1h, 744 steps"
    assert lines[3] == "grid:      33 x 49 (lat x lon), lat 50..58, lon -10..2"
    assert lines[5].startswith(
        "  t2m [K] (2 metre temperature) over (time, lat, lon): missing 0.00%"
    )


def test_info_los_loop(monkeypatch, los_loop_dir, capsys):
    monkeypatch.setenv(DATA_DIR_ENV, str(los_loop_dir.parent))
    assert main(["data", "info", "los-loop", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["dims"] == {"time": 2016, "node": 207, "node_j": 207}
    assert summary["time"] == {
        "start": "2012-03-01T00:00:00",
        "end": "2012-03-07T23:55:00",
        "step": "5min",
        "steps": 2016,
    }
    assert summary["space"]["sensors"] == 207 and summary["space"]["adjacency_symmetric"]
    adj = np.loadtxt(los_loop_dir / "los_adj.csv", delimiter=",")
    assert summary["space"]["adjacency_nonzero_fraction"] == pytest.approx(np.mean(adj != 0))
    speed = summary["variables"]["speed"]
    assert speed["units"] == "mph" and speed["missing_fraction"] == 0.0
    raw = pd.read_csv(los_loop_dir / "los_speed.csv").to_numpy()
    assert speed["mean"] == pytest.approx(raw.mean()) and speed["max"] == raw.max()


def test_info_sensor_csv_missing_fraction(tmp_path, capsys):
    frame = sensor_frame()
    frame.iloc[0, 0] = 0.0
    frame.iloc[5, 3] = 0.0
    frame.iloc[7, 2] = np.nan
    frame.to_csv(tmp_path / "s.csv")
    argv = ["data", "info", str(tmp_path / "s.csv"), "--units", "mph", "-v", "flow"]
    assert main([*argv, "--json"]) == 0
    flow = json.loads(capsys.readouterr().out)["variables"]["flow"]
    assert flow["missing_fraction"] == pytest.approx(1 / 48) and flow["units"] == "mph"
    assert main([*argv, "--json", "--zeros-missing"]) == 0
    flow = json.loads(capsys.readouterr().out)["variables"]["flow"]
    assert flow["missing_fraction"] == pytest.approx(3 / 48)
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "sensors:   4" in out and "flow [mph] over (time, node): missing 2.08%" in out


def test_convert_a_sensor_csv_with_its_graph(tmp_path, capsys):
    """A sensor CSV read with its adjacency and units becomes one NetCDF file that opens as
    the same data set without options (what `forecast train --data FILE.nc` reads)."""
    from forecast.data import open_dataset

    frame = sensor_frame(n_time=30)
    frame.to_csv(tmp_path / "s.csv")
    adj = np.eye(4) + np.eye(4, k=1) + np.eye(4, k=-1)
    np.savetxt(tmp_path / "adj.csv", adj, delimiter=",")
    out = tmp_path / "network.nc"
    argv = ["data", "convert", str(tmp_path / "s.csv"), "--adjacency", str(tmp_path / "adj.csv")]
    assert main([*argv, "--units", "mph", "--out", str(out)]) == 0
    assert f"wrote {out}: read it with --data {out}" in capsys.readouterr().out
    expected = open_dataset(tmp_path / "s.csv", adjacency=tmp_path / "adj.csv", units="mph")
    got = open_dataset(out)
    xr.testing.assert_equal(got[["speed", "adjacency"]], expected[["speed", "adjacency"]])
    assert got["speed"].attrs["units"] == "mph"
    # an existing file is kept without --overwrite; nothing is left half-written
    before = out.read_bytes()
    assert main([*argv, "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert out.read_bytes() == before
    assert main([*argv, "--out", str(out), "--overwrite"]) == 0  # without --units now
    assert open_dataset(out)["speed"].attrs.get("units") != "mph"  # replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adj.csv", "network.nc", "s.csv"]
    for bad, message in (
        (tmp_path / "net.csv", "is not a .nc file"),
        (tmp_path / "missing" / "net.nc", "does not exist; create it"),
    ):
        assert main([*argv, "--out", str(bad)]) == 2
        assert message in capsys.readouterr().err


def _forecast_script() -> Path:
    for candidate in (
        REPO / ".venv" / "bin" / "forecast",
        Path(sys.executable).parent / "forecast",
    ):
        if candidate.is_file():
            return candidate
    pytest.skip("the `forecast` console script is not installed")


def test_real_process_prints_one_line_without_traceback(tmp_path):
    result = subprocess.run(
        [str(_forecast_script()), "data", "info", str(tmp_path / "missing.grib")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert (
        result.stderr == f"error: {tmp_path / 'missing.grib'} does not exist; give an "
        "existing file, folder or glob, or a named data set (see `forecast data list`)\n"
    )
