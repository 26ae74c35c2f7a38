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


@pytest.mark.parametrize(
    ("kind", "train_kw"),
    [
        ("diffusion", {"lr": 3e-3, "max_steps": 30, "epochs": 5}),
        ("vae", {"lr": 3e-2, "max_steps": 60, "epochs": 6}),
    ],
)
def test_fit_without_a_folder_keeps_the_configured_weights(
    kind, train_kw, synthetic_weather_ds, tmp_path, monkeypatch
):
    """``fit`` without ``out_dir`` (the protocol runner, pools, the Python API) ends with the
    ``train.keep`` weights, as ``forecast train`` does, and leaves no folder behind."""
    import tempfile

    from forecast.data import context_of
    from forecast.models import MODELS
    from forecast.models.generative import TINY_TRAIN
    from forecast.models.info import checkpoint_info, format_info

    torch.set_num_threads(1)
    cls = MODELS.get(kind)
    ds = synthetic_weather_ds
    train, valid = ds.isel(time=slice(0, 240)), ds.isel(time=slice(240, 312))
    config = cls.tiny(6, 6).config()
    config["train"] = {**TINY_TRAIN, "eval_every": 1, **train_kw}
    ref = cls(**config).fit(train, valid, out_dir=tmp_path / "ref")
    assert ref.training["best_step"] < ref.training["step"]  # best and last weights differ
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    plain = cls(**config).fit(train, valid)
    assert not list(scratch.iterdir())

    context = context_of(ds, ds.time.values[300], 6)
    best = cls.load(tmp_path / "ref" / "best.safetensors").sample(context, 3, seed=1)
    last = cls.load(tmp_path / "ref" / "last.safetensors").sample(context, 3, seed=1)
    assert not best.equals(last)
    for model in (plain, ref):  # with or without a folder: the best weights
        np.testing.assert_array_equal(model.sample(context, 3, seed=1)["t2m"], best["t2m"])
        assert model.training["weights_step"] == ref.training["best_step"]
    plain.save(tmp_path / "plain.safetensors")  # its record says which weights it holds
    text = format_info(checkpoint_info(tmp_path / "plain.safetensors"))
    assert f"weights of step {ref.training['best_step']} " in text
    config["train"]["keep"] = "last"
    plain_last = cls(**config).fit(train, valid)
    np.testing.assert_array_equal(plain_last.sample(context, 3, seed=1)["t2m"], last["t2m"])
