"""Conditional VAE with a first guess (``first_guess``) and the spread-calibration windows
(``calibration``), on small synthetic weather."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from forecast.checkpoint import load_checkpoint
from forecast.data.windows import context_of, target_of
from forecast.errors import ForecastError
from forecast.models import load_model
from forecast.models.vae import ConditionalVAE

torch.set_num_threads(1)
K, H = 6, 6


@pytest.fixture(scope="module")
def weather(synthetic_weather_ds):
    return synthetic_weather_ds


def _tiny(**kw) -> ConditionalVAE:
    model = ConditionalVAE.tiny(K, H)
    return ConditionalVAE(**{**model.config(), **kw})


@pytest.fixture(scope="module")
def fg_model(weather):
    """Tiny grid VAE on the diurnal first guess, 20 steps on the first 400 hours."""
    return _tiny(first_guess="diurnal").fit(
        weather.isel(time=slice(0, 400)), weather.isel(time=slice(400, 504))
    )


def _first_guess_physical(model, ctx):
    values = ctx["t2m"].values[:, None]
    return model.fg.predict(values, ctx["time"].values, np.array([K - 1]))[0, :, 0]


def test_bad_options():
    from forecast.models.first_guess import FIRST_GUESSES

    with pytest.raises(ForecastError, match="unknown first_guess 'nope'.*" + FIRST_GUESSES[0]):
        ConditionalVAE(context=K, horizon=H, first_guess="nope")
    with pytest.raises(ForecastError, match="needs a first_guess"):
        ConditionalVAE(context=K, horizon=H, first_guess_condition=True)
    with pytest.raises(ForecastError, match="calibration must be one of"):
        ConditionalVAE(context=K, horizon=H, calibration="test")
    with pytest.raises(ForecastError, match="calibration_windows"):
        ConditionalVAE(context=K, horizon=H, calibration_windows=0)


def test_shapes_and_first_guess_added_back(fg_model, weather):
    ctx = context_of(weather, 450, K)
    ens = fg_model.sample(ctx, 3, seed=1)
    assert ens["t2m"].shape == (3, H, 16, 24)
    assert np.isfinite(ens["t2m"].values).all()
    # with a decoder that outputs zeros, every member is the first guess itself
    zero = copy.deepcopy(fg_model)
    zero.spread_factor = None
    zero.net.decode = lambda z, feats, emb: torch.zeros(z.shape[0], 1, H, 16, 24)
    members = zero.sample(ctx, 2, seed=0)["t2m"].values
    fg = _first_guess_physical(fg_model, ctx)
    np.testing.assert_allclose(members[0], fg, rtol=0, atol=1e-3)
    np.testing.assert_allclose(members[1], fg, rtol=0, atol=1e-3)


def test_precomputed_first_guess_equals_the_one_at_sampling(fg_model, weather):
    """The first guess stored with each training window is what sampling computes from that
    window's context alone."""
    data = fg_model._window_dataset(weather.isel(time=slice(0, 400)))
    k = 37
    item = data[k]
    i = int(data.windows.issue_index[k])
    ctx = context_of(weather, i, K)
    fg = fg_model.normalizer.inverse_array(item["first_guess"].numpy(), channel_axis=1)[:, 0]
    np.testing.assert_allclose(fg, _first_guess_physical(fg_model, ctx), rtol=0, atol=1e-3)


def test_save_load_identical_members(fg_model, weather, tmp_path):
    path = tmp_path / "vae-fg.safetensors"
    fg_model.save(path)
    arrays, meta = load_checkpoint(path)
    assert meta["state"]["first_guess"]["kind"] == "diurnal"
    assert any(k.startswith("first_guess.") for k in arrays)
    loaded = load_model(path)
    assert loaded.config() == fg_model.config()
    ctx = context_of(weather, 460, K)
    np.testing.assert_array_equal(
        loaded.sample(ctx, 4, seed=3)["t2m"].values, fg_model.sample(ctx, 4, seed=3)["t2m"].values
    )
    # a checkpoint whose first guess was removed is refused with a clear message
    from forecast.checkpoint import save_checkpoint

    meta["state"].pop("first_guess")
    save_checkpoint(tmp_path / "bad.safetensors", arrays, meta)
    with pytest.raises(ForecastError, match="lacks its 'diurnal' first guess"):
        load_model(tmp_path / "bad.safetensors")


def test_encode_decode_round_trip_with_first_guess(fg_model, weather):
    ctx, target = context_of(weather, 440, K), target_of(weather, 440, H)
    seen = {}
    model = copy.deepcopy(fg_model)
    posterior = model.net.posterior

    def spy(x, feats, emb):
        seen["x"] = x.clone()
        return posterior(x, feats, emb)

    model.net.posterior = spy
    z = model.encode(ctx, target)
    assert tuple(z.shape) == (1, *model.latent_shape()) and torch.isfinite(z).all()
    # the posterior sees the residual target - first guess (normalized)
    residual = target["t2m"].values - _first_guess_physical(model, ctx)
    scale = model.normalizer.inverse_array(np.ones((1, 1, 1, 1), np.float32), channel_axis=1)
    offset = model.normalizer.inverse_array(np.zeros((1, 1, 1, 1), np.float32), channel_axis=1)
    np.testing.assert_allclose(
        seen["x"][0, 0].numpy(), residual / float((scale - offset).squeeze()), rtol=0, atol=1e-3
    )
    # decode(encode(target)) reconstructs the target better than the first guess alone
    recon = model.decode(ctx, z)["t2m"].values[0]
    fg = _first_guess_physical(model, ctx)
    assert np.abs(recon - target["t2m"].values).mean() < np.abs(fg - target["t2m"].values).mean()


def test_first_guess_conditioning_and_train_valid_calibration(weather):
    train, valid = weather.isel(time=slice(0, 400)), weather.isel(time=slice(400, 504))
    model = _tiny(
        first_guess="diurnal",
        first_guess_condition=True,
        calibration="train+valid",
        calibration_windows=5,
    ).fit(train, valid)
    assert model._net_context() == K + H
    ens = model.sample(context_of(weather, 450, K), 2, seed=0)
    assert ens["t2m"].shape == (2, H, 16, 24)
    items = model._calibration_set(model._window_dataset(train), valid)
    assert len(items) == 10
    factor = model.recalibrate(train, valid, "valid")
    assert factor.shape == (1, H) and model.calibration == "valid"
    with pytest.raises(ForecastError, match="calibration must be one of"):
        model.recalibrate(train, valid, "test")
    # the spread-skill objective: factors are the fit_spread_factors choice on the same draws
    from forecast.models.spread import fit_spread_factors

    items = model._calibration_set(None, valid)
    grid = np.array([0.5, 1.0, 2.0, 4.0])
    model.calibration_objective = "spread-skill"
    got = model.calibrate_spread(items, members=4, grid=grid)
    centres, devs, obs = [], [], []
    for k, item in enumerate(items):
        ctx, anchor, tgt, cal = model._batch([item])
        eps = model._prior_eps(model.latent_shape(), 4, seed=10_000 + k)
        x = model._decode_eps(model.net, ctx, cal, eps).numpy()
        centre = model._decode_eps(model.net, ctx, cal, torch.zeros_like(eps[:1])).numpy()
        centres.append(centre[0])
        devs.append(np.moveaxis(x - centre, 0, -1))
        obs.append((tgt - anchor)[0].numpy())
    want = fit_spread_factors(
        np.stack(obs), np.stack(centres), np.stack(devs), grid, "spread-skill"
    )
    np.testing.assert_allclose(got, want)
    assert model.recalibrate(train, valid, objective="spread-skill").shape == (1, H)
    with pytest.raises(ForecastError, match="calibration_objective must be one of"):
        model.recalibrate(train, valid, objective="rmse")
    with pytest.raises(ForecastError, match="calibration_objective must be one of"):
        _tiny(calibration_objective="mae")
