"""``forecast predict``: checkpoint + data -> CF ensemble file, and its one-line errors."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import netCDF4
import numpy as np
import pandas as pd
import pytest

from forecast.cli import main
from forecast.data import open_dataset, synthetic_traffic, synthetic_weather
from forecast.dims import INIT_TIME, LEAD_TIME, MEMBER, NODE, TIME
from forecast.export import open_ensemble
from forecast.models import PersistenceEnsemble, PooledEnsemble, forecast_many, load_model

REPO = Path(__file__).resolve().parents[1]
CONTEXT, HORIZON = 3, 6


@pytest.fixture(scope="module")
def weather(tmp_path_factory) -> dict[str, Path]:
    """A small synthetic grid as a NetCDF file and a persistence checkpoint trained on it."""
    folder = tmp_path_factory.mktemp("weather")
    ds = synthetic_weather(seed=0, n_lat=5, n_lon=6, days=4, spinup_days=1)
    ds.to_netcdf(folder / "weather.nc")
    model = PersistenceEnsemble(context=CONTEXT, horizon=HORIZON).fit(ds.isel({TIME: slice(0, 60)}))
    model.save(folder / "persistence.safetensors")
    other = PersistenceEnsemble(context=CONTEXT, horizon=HORIZON).fit(ds.isel({TIME: slice(0, 50)}))
    PooledEnsemble.from_models([model, other], labels=["a", "b"]).save(folder / "pool.safetensors")
    return {
        "data": folder / "weather.nc",
        "ckpt": folder / "persistence.safetensors",
        "pool": folder / "pool.safetensors",
    }


@pytest.fixture(scope="module")
def traffic(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("traffic")
    ds = synthetic_traffic(seed=0, n_sensors=8, days=1, n_corridors=1)
    ds.to_netcdf(folder / "traffic.nc")
    model = PersistenceEnsemble(context=CONTEXT, horizon=HORIZON).fit(
        ds.isel({TIME: slice(0, 200)})
    )
    model.save(folder / "persistence.safetensors")
    return {"data": folder / "traffic.nc", "ckpt": folder / "persistence.safetensors"}


def predict(files: dict[str, Path], out: Path, *extra: str) -> int:
    return main(
        [
            "predict",
            "--checkpoint",
            str(files["ckpt"]),
            "--data",
            str(files["data"]),
            "--out",
            str(out),
            *extra,
        ]
    )


def one_line_error(capsys, *needles: str) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: "), err
    assert "\n" not in err and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


def test_predict_writes_what_forecast_many_gives(weather, tmp_path, capsys):
    out = tmp_path / "f.nc"
    times = ["2021-01-03T00:00", "2021-01-03T06:00"]
    code = predict(
        weather,
        out,
        "--init-time",
        times[0],
        "--init-time",
        times[1],
        "--members",
        "7",
        "--seed",
        "5",
        "--institution",
        "Test Lab",
    )
    assert code == 0
    assert f"wrote {out}" in capsys.readouterr().out
    got = open_ensemble(out)
    model = load_model(weather["ckpt"])
    ds = open_dataset(weather["data"])
    want = forecast_many(model, ds, pd.DatetimeIndex(times), 7, seed=5)
    assert got.t2m.dims == want.t2m.dims
    np.testing.assert_array_equal(got.t2m.values, want.t2m.values)
    for name in (INIT_TIME, LEAD_TIME, MEMBER, "valid_time", "lat", "lon"):
        np.testing.assert_array_equal(got[name].values, want[name].values)
    assert got.t2m.attrs["units"] == "K"
    sha = hashlib.sha256(weather["ckpt"].read_bytes()).hexdigest()
    assert sha in got.attrs["source"] and got.attrs["checkpoint_sha256"] == sha
    assert got.attrs["model"] == "persistence" and got.attrs["seed"] == 5
    assert got.attrs["institution"] == "Test Lab"
    assert "forecast predict --checkpoint" in got.attrs["history"]
    assert "sampler" not in got.attrs  # a baseline has none
    with netCDF4.Dataset(out) as nc:
        assert nc["t2m"].standard_name == "air_temperature"
        assert nc["t2m"].chunking() == [1, 1, HORIZON, 5, 6]


def test_init_range_and_summary(weather, tmp_path):
    out = tmp_path / "r.nc"
    assert (
        predict(
            weather,
            out,
            "--init-range",
            "2021-01-02T00",
            "2021-01-02T12",
            "4h",
            "--members",
            "4",
            "--summary",
            "--thresholds",
            "t2m=275",
            "t2m=280",
        )
        == 0
    )
    got = open_ensemble(out, summary=True)
    assert list(pd.DatetimeIndex(got[INIT_TIME].values).hour) == [0, 4, 8, 12]
    np.testing.assert_allclose(got.t2m_mean.values, got.t2m.mean(MEMBER).values, rtol=1e-6)
    assert list(got.t2m_threshold.values) == [275.0, 280.0]
    np.testing.assert_allclose(
        got.t2m_exceedance.sel(t2m_threshold=280.0).values,
        (got.t2m > 280.0).mean(MEMBER).values,
    )


def test_sensor_network_gives_a_timeseries_file(traffic, tmp_path):
    out = tmp_path / "s.nc"
    assert predict(traffic, out, "--init-time", "2021-03-01T20:00", "--members", "3") == 0
    got = open_ensemble(out)
    assert got.speed.dims == (INIT_TIME, MEMBER, LEAD_TIME, NODE)
    assert got.speed.attrs["units"] == "mph"
    assert list(got[NODE].values) == [f"S{k:03d}" for k in range(8)]
    assert got[LEAD_TIME].values[0] == np.timedelta64(5, "m")
    with netCDF4.Dataset(out) as nc:
        assert nc.featureType == "timeSeries"
        assert nc["forecast_period"].units == "minutes"


def test_overwrite(weather, tmp_path, capsys):
    out = tmp_path / "f.nc"
    args = ("--init-time", "2021-01-03T00:00", "--members", "2")
    assert predict(weather, out, *args) == 0
    capsys.readouterr()  # the progress bar
    before = out.read_bytes()
    assert predict(weather, out, *args) == 2
    one_line_error(capsys, "exists", "--overwrite")
    assert out.read_bytes() == before
    assert predict(weather, out, *args, "--members", "3", "--overwrite") == 0
    assert open_ensemble(out).sizes[MEMBER] == 3


@pytest.mark.parametrize(
    ("extra", "needles"),
    [
        (
            ("--init-time", "2030-01-01T00:00"),
            ("not a time step of the data", "valid issue times: 2021-01-01T02:00:00 .."),
        ),
        (
            ("--init-time", "2021-01-01T01:00"),
            ("context of 3", "valid issue times: 2021-01-01T02:00:00 .. 2021-01-04T23:00:00"),
        ),
        (("--init-time", "yesterday-ish"), ("bad issue time",)),
        (("--init-range", "2021-01-02T00", "2021-01-01T00", "1h"), ("no issue time",)),
        (("--init-time", "2021-01-03T00", "--init-time", "2021-01-03T00"), ("twice",)),
        (("--init-time", "2021-01-03T00", "--members", "0"), ("--members must be at least 1",)),
        (("--init-time", "2021-01-03T00", "--sampler", "ddim"), ("has no sampler",)),
        (("--init-time", "2021-01-03T00", "--thresholds", "280"), ("needs --summary",)),
        (("--init-time", "2021-01-03T00", "--summary", "--thresholds", "warm"), ("not a number",)),
        (
            ("--init-time", "2021-01-03T00", "--summary", "--thresholds", "rain=1"),
            ("unknown variable",),
        ),
    ],
)
def test_bad_input_exits_2_with_one_line(weather, tmp_path, capsys, extra, needles):
    out = tmp_path / "f.nc"
    assert predict(weather, out, *extra) == 2
    one_line_error(capsys, *needles)
    assert list(tmp_path.iterdir()) == []


def test_bad_output_and_mismatched_checkpoint(weather, traffic, tmp_path, capsys):
    args = ("--init-time", "2021-01-03T00:00", "--members", "2")
    assert predict(weather, tmp_path / "missing" / "f.nc", *args) == 2
    one_line_error(capsys, "does not exist")
    mixed = {"ckpt": traffic["ckpt"], "data": weather["data"]}
    assert predict(mixed, tmp_path / "f.nc", *args) == 2
    one_line_error(capsys, "checkpoint persistence.safetensors")
    other_grid = tmp_path / "other.nc"
    ds = open_dataset(weather["data"])
    ds.assign_coords(lat=ds.lat + 1.0).to_netcdf(other_grid)
    assert predict({"ckpt": weather["ckpt"], "data": other_grid}, tmp_path / "f.nc", *args) == 2
    one_line_error(capsys, "lat")
    assert (
        predict(
            {"ckpt": tmp_path / "none.safetensors", "data": weather["data"]},
            tmp_path / "f.nc",
            *args,
        )
        == 2
    )
    one_line_error(capsys, "not found")
    assert not (tmp_path / "f.nc").exists()


def _written(files: Iterable[Path]) -> int:
    """Bytes in ``files`` so far (0 for one renamed away meanwhile)."""
    total = 0
    for f in files:
        try:
            total += f.stat().st_size
        except FileNotFoundError:
            pass
    return total


def _blocked_sigint() -> None:
    """``preexec_fn`` of a child that starts with SIGINT blocked (a mask inherited from a
    parent in which some library blocked it)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})


@pytest.mark.slow
@pytest.mark.parametrize(
    ("checkpoint", "start"), [("ckpt", "default"), ("pool", "default"), ("ckpt", "blocked")]
)
def test_ctrl_c_leaves_no_file(weather, tmp_path, child_sigint, interrupt_child, checkpoint, start):
    """Also for a pool on two torch threads, whose models draw in worker threads, and for a
    process started with SIGINT blocked (the command unblocks it)."""
    out = tmp_path / "big.nc"
    env = {**os.environ, "OMP_NUM_THREADS": "2"} if checkpoint == "pool" else None
    cmd = [
        sys.executable,
        "-m",
        "forecast.cli",
        "predict",
        "--checkpoint",
        str(weather[checkpoint]),
        "--data",
        str(weather["data"]),
        "--init-range",
        "2021-01-01T02",
        "2021-01-04T17",
        "1h",
        "--members",
        "2000",
        "--out",
        str(out),
    ]
    proc = subprocess.Popen(
        cmd,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=child_sigint if start == "default" else _blocked_sigint,
        env=env,
    )
    try:
        # Interrupt once issue times are being written (a few slabs of 1.4 MB).
        deadline = time.monotonic() + 120
        while _written(tmp_path.glob(".big.nc.*.tmp")) < 3e6:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no temporary file grew"
            time.sleep(0.02)
        err = interrupt_child(proc, signal.SIGINT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_forecast_evaluate_reads_the_file(weather, tmp_path):
    out = tmp_path / "f.nc"
    assert (
        predict(
            weather,
            out,
            "--init-range",
            "2021-01-03T00",
            "2021-01-04T00",
            "6h",
            "--members",
            "5",
            "--summary",
        )
        == 0
    )
    assert (
        main(
            [
                "evaluate",
                "--forecast",
                f"persistence={out}",
                "--truth",
                str(weather["data"]),
                "--out",
                str(tmp_path / "eval"),
            ]
        )
        == 0
    )
    card = (tmp_path / "eval" / "scorecard.csv").read_text()
    assert "persistence" in card


@pytest.mark.slow
def test_sampler_and_nfe_reach_a_diffusion_model(weather, tmp_path):
    diffusion = pytest.importorskip("forecast.models.diffusion")
    from forecast.data import context_of
    from forecast.models import issue_seed

    ds = open_dataset(weather["data"])
    model = diffusion.ConditionalDiffusion.tiny(CONTEXT, HORIZON).fit(
        ds.isel({TIME: slice(0, 60)}), ds.isel({TIME: slice(60, 80)})
    )
    ckpt = {"ckpt": tmp_path / "diffusion.safetensors", "data": weather["data"]}
    model.save(ckpt["ckpt"])
    t = "2021-01-03T06:00"
    assert (
        predict(
            ckpt,
            tmp_path / "d.nc",
            "--init-time",
            t,
            "--members",
            "3",
            "--seed",
            "2",
            "--sampler",
            "ddim",
            "--nfe",
            "3",
        )
        == 0
    )
    got = open_ensemble(tmp_path / "d.nc")
    assert got.attrs["sampler"] == "ddim" and got.attrs["nfe"] == 3
    want = (
        load_model(ckpt["ckpt"])
        .with_sampler("ddim", 3)
        .sample(context_of(ds, t, CONTEXT), 3, seed=issue_seed(2, pd.Timestamp(t)))
    )
    np.testing.assert_allclose(got.t2m.isel({INIT_TIME: 0}).values, want.t2m.values, rtol=1e-6)
    assert predict(ckpt, tmp_path / "e.nc", "--init-time", t, "--members", "2") == 0
    default = open_ensemble(tmp_path / "e.nc").attrs
    assert default["sampler"] == model.sampler and default["nfe"] == model.nfe
