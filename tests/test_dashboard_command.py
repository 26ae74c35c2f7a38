"""`forecast app`: the streamlit command line it runs, and its bad input."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from forecast.cli import build_parser, main
from forecast.commands.app import app_path, streamlit_command, warm_up
from forecast.errors import ForecastError

REPO = Path(__file__).resolve().parents[1]


def test_app_path_is_the_project_app():
    assert app_path() == REPO / "app.py"


def test_streamlit_command():
    cmd = streamlit_command(8600, headless=True)
    assert cmd[:5] == [sys.executable, "-m", "streamlit", "run", str(REPO / "app.py")]
    opts = dict(zip(cmd[5::2], cmd[6::2], strict=True))
    assert opts["--server.port"] == "8600"
    assert opts["--server.address"] == "127.0.0.1"
    assert opts["--server.headless"] == "true"
    assert opts["--server.fileWatcherType"] == "none"


def test_bad_port_and_missing_app(tmp_path, capsys):
    with pytest.raises(ForecastError, match="port 0 outside"):
        streamlit_command(0)
    with pytest.raises(ForecastError, match="not found"):
        streamlit_command(8501, app=tmp_path / "app.py")
    assert main(["app", "--port", "70000"]) == 2
    assert "error: port 70000 outside 1..65535" in capsys.readouterr().err
    assert main(["app", "--threads", "0"]) == 2
    assert "error: --threads must be >= 1, got 0" in capsys.readouterr().err


def test_parser_defaults():
    args = build_parser().parse_args(["app"])
    assert (args.port, args.address, args.headless, args.warm_up) == (
        8501,
        "127.0.0.1",
        False,
        True,
    )
    assert build_parser().parse_args(["app", "--no-warm-up"]).warm_up is False
    assert args.threads is None
    assert build_parser().parse_args(["app", "--threads", "2"]).threads == 2


def test_warm_up_prepares_the_default_page(tmp_path, monkeypatch):
    from forecast.dashboard.datacache import CACHE_ENV
    from forecast.dashboard.paths import CHECKPOINT_ENV, SHIPPED_ENV

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(CHECKPOINT_ENV, raising=False)
    monkeypatch.delenv(SHIPPED_ENV, raising=False)
    shipped = REPO / "data" / "models" / "vae-synthetic-weather.safetensors"
    if shipped.is_file():
        assert warm_up() == "synthetic-weather, vae-synthetic-weather.safetensors"
    # the data set is now on disk for the app's first run
    assert len(list((tmp_path / "cache").glob("synthetic-weather-seed0-*.npz"))) == 1
    empty = tmp_path / "none"
    empty.mkdir()
    monkeypatch.setenv(SHIPPED_ENV, str(empty))
    assert warm_up() == "synthetic-weather"  # no checkpoint: the baselines are fitted live


@pytest.mark.slow
def test_forecast_app_serves_and_stops(tmp_path):
    import socket
    import subprocess
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path / "app.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "forecast.cli", "app", "--headless", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/_stcore/health", timeout=2
                ) as r:
                    assert r.read().strip() == b"ok"
                    break
            except OSError:
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "forecast app did not answer"
                time.sleep(0.3)
        # the server answers while the first page is prepared in the background
        while "dashboard: warm-up done in" not in log.read_text():
            assert "warm-up skipped" not in log.read_text(), log.read_text()
            assert time.monotonic() < deadline + 90, log.read_text()
            time.sleep(0.3)
    finally:
        proc.terminate()  # the server runs in this very process, so it stops
        proc.wait(20)
    assert proc.returncode is not None
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2)
