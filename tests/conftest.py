"""Layered fixtures: paths to the real data (skipped where absent), then synthetic data sets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


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
