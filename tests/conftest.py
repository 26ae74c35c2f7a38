"""Layered fixtures: paths to the real data (skipped where absent), then synthetic data sets."""

from __future__ import annotations

import os
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
