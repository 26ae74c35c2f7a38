"""Layered fixtures: paths to the real data (skipped where absent), then synthetic data sets."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a test module (the CI machine has 2 shared cores: no
    oversubscription), restored afterwards. Modules opt in with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def load_script():
    """A function that imports a script of the repository (``benchmarks/x.py``,
    ``scripts/x.py``) by its path and returns the module (scripts are not a package)."""
    import importlib.util

    repo = Path(__file__).resolve().parents[1]

    def load(relative: str):
        path = repo / relative
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


def shared_data_dir() -> Path:
    """Folder of the real data sets: $FORECAST_DATA_DIR or ../shared/data beside the repo."""
    return Path(os.environ.get("FORECAST_DATA_DIR", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def era5_path() -> Path:
    path = shared_data_dir() / "era5-uk-t2m" / "era5-2mt-2019-03-uk.grib"
    if not path.is_file():
        pytest.skip(f"real ERA5 file absent at {path} (set FORECAST_DATA_DIR)")
    return path


@pytest.fixture(scope="session")
def los_loop_dir() -> Path:
    path = shared_data_dir() / "los-loop"
    if not (path / "los_speed.csv").is_file():
        pytest.skip(f"real Los-loop files absent at {path} (set FORECAST_DATA_DIR)")
    return path


# --- synthetic data sets (small, non-default sizes; built once per session) -----------------
@pytest.fixture(scope="session")
def synthetic_weather_ds():
    """Small synthetic weather: ``t2m`` (K), 16 x 24 grid, 3 weeks hourly (504 steps), seed 0."""
    from forecast.data.synthetic import synthetic_weather

    return synthetic_weather(seed=0, n_lat=16, n_lon=24, days=21)


@pytest.fixture(scope="session")
def synthetic_traffic_ds():
    """Small synthetic traffic: ``speed`` (mph), 20 sensors on 2 corridors, 1 week of 5 min
    (2016 steps, the P1 length), with ``adjacency``; seed 0."""
    from forecast.data.synthetic import synthetic_traffic

    return synthetic_traffic(seed=0, n_sensors=20, days=7, n_corridors=2)


# --- a tiny protocol for the protocol-runner tests ------------------------------------------
@pytest.fixture(scope="session")
def tiny_data():
    """Synthetic weather on a 3 x 4 grid, 10 days hourly, seed 5: the tiny protocol's data."""
    from forecast.data.synthetic import synthetic_weather

    return synthetic_weather(seed=5, n_lat=3, n_lon=4, days=10)


@pytest.fixture(scope="session")
def tiny_protocol(tiny_data):
    """A chronological protocol on :func:`tiny_data`: context 4 h, leads 1-5 h, issues 00/12."""
    from forecast.data.protocols import chronological

    return chronological(
        "tiny",
        "synthetic-weather",
        tiny_data.sizes["time"],
        4,
        5,
        step="1h",
        hours=(0, 12),
    )


# --- interrupting a streaming writer --------------------------------------------------------
_SLOW_WRITER = """
import sys, time
import numpy as np, xarray as xr
sys.path.insert(0, {repo!r})
from forecast.export import {writer}
HOUR = np.timedelta64(1, 'h')
def slabs():
    for i in range(1000):
        yield xr.Dataset({{'t': (('member', 'lead_time', 'lat', 'lon'),
                               np.zeros((2, 3, 4, 5), 'f4'), {{'units': 'K'}})}},
                        coords={{'member': [0, 1], 'lead_time': np.arange(1, 4) * HOUR,
                                'lat': np.arange(4.0), 'lon': np.arange(5.0),
                                'init_time': np.datetime64('2020-01-01T00') + i * HOUR}})
        if i == 1:
            print('writing', flush=True)
        time.sleep(0.05)
{writer}(slabs(), {target!r})
"""


def default_sigint() -> None:
    """``preexec_fn`` for a child that must react to Ctrl-C: a shell's background job starts
    with SIGINT ignored, and the child would inherit that (Python then never raises
    KeyboardInterrupt); a signal mask that blocks SIGINT would be inherited too."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


@pytest.fixture
def child_sigint():
    """:func:`default_sigint`, for tests that interrupt a child process."""
    return default_sigint


def interrupt(proc, sig: int, timeout: float = 60, tries: int = 5, every: float = 2.0) -> str:
    """Send ``sig`` to the child ``proc`` and wait for it to end; returns its stderr.

    A SIGINT is sent again every ``every`` seconds while the child runs (``tries`` in all), as
    a user presses Ctrl-C again: on a CI machine one SIGINT was once lost (the child ran to
    the end), which no local run reproduced; a child that inherits a mask blocking SIGINT
    behaves so (:func:`default_sigint` now unblocks it)."""
    import subprocess

    for _ in range(tries if sig == signal.SIGINT else 1):
        proc.send_signal(sig)
        try:
            return proc.communicate(timeout=every)[1]
        except subprocess.TimeoutExpired:
            continue
    return proc.communicate(timeout=timeout)[1]


@pytest.fixture
def interrupt_child():
    """:func:`interrupt`, for tests that interrupt a child process."""
    return interrupt


def _interrupt_slow_writer(writer: str, target: Path, sig: int, timeout: float = 60) -> None:
    """Stream 1000 slabs through ``forecast.export.<writer>`` to ``target`` in a child process,
    send ``sig`` while it writes, and check that no (partial) target is left behind; after a
    SIGINT the temporary file or folder is gone too (Python unwinds)."""
    import subprocess
    import sys
    import time

    code = _SLOW_WRITER.format(repo=str(REPO), writer=writer, target=str(target))
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,
    )
    try:
        assert proc.stdout.readline().strip() == "writing"
        time.sleep(0.2)
        temporary = list(target.parent.glob(f".{target.name}.*.tmp"))
        assert temporary, "the writer should be writing to a temporary name"
        interrupt(proc, sig, timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0
    assert not target.exists()
    if sig == signal.SIGINT:
        assert list(target.parent.iterdir()) == []


@pytest.fixture
def interrupt_slow_writer():
    """:func:`_interrupt_slow_writer`, for the export tests of each format."""
    return _interrupt_slow_writer
