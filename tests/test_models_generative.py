"""Tests of the helpers shared by the generative forecasters (forecast.models.generative)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from forecast.data.windows import make_windows
from forecast.errors import ForecastError
from forecast.models.generative import (
    as_latents,
    check_member_batch,
    data_layout,
    training_of,
    training_state,
    window_dataset,
)


def test_data_layout(synthetic_weather_ds, synthetic_traffic_ds):
    assert data_layout(synthetic_weather_ds) == "grid"
    assert data_layout(synthetic_traffic_ds) == "graph"
    with pytest.raises(ForecastError, match="no grid"):
        data_layout(synthetic_weather_ds.isel(lat=0))


def test_window_dataset_drops_windows_with_nan(synthetic_weather_ds):
    ds = synthetic_weather_ds.isel(time=slice(0, 60))
    values = np.random.default_rng(0).normal(size=(60, 1, 2)).astype(np.float32)
    full = window_dataset(values, ds, 4, 3)
    assert len(full) == len(make_windows(ds, 4, 3))
    values[30, 0, 1] = np.nan
    data = window_dataset(values, ds, 4, 3)
    issue = data.windows.issue_index
    # a window (issue i) covers steps i - 3 .. i + 3: those touching step 30 are gone
    assert len(data) == len(full) - 7
    assert not ((issue - 3 <= 30) & (issue + 3 >= 30)).any()
    assert all(not torch.isnan(data[k]["target"]).any() for k in range(len(data)))
    with pytest.raises(ForecastError, match="every training window contains NaN"):
        window_dataset(np.full_like(values, np.nan), ds, 4, 3)


def test_as_latents():
    z = as_latents(np.zeros((2, 3)), (2, 3))
    assert isinstance(z, torch.Tensor) and tuple(z.shape) == (1, 2, 3)
    assert tuple(as_latents(torch.zeros(4, 2, 3), (2, 3)).shape) == (4, 2, 3)
    with pytest.raises(ForecastError, match=r"latents have shape \(4, 3, 2\)"):
        as_latents(torch.zeros(4, 3, 2), (2, 3))


def test_training_state_round_trip():
    training = {"steps": 5, "history": [{"step": 1}]}
    state = training_state(training)
    assert state == {"training": {"steps": 5}, "history": [{"step": 1}]}
    assert training_of(state) == training
    assert training_of({}) == {"history": []}


def test_check_member_batch():
    assert check_member_batch(3.0) == 3
    with pytest.raises(ForecastError, match="member_batch must be >= 1, got 0"):
        check_member_batch(0)
