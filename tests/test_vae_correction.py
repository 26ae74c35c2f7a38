"""The VAE's calibrated correction weight (``calibrate_correction``): how much of its decoded
correction of the anchor a model keeps, fitted by least squares on held-out windows."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import xarray as xr

from forecast.checkpoint import load_checkpoint, save_checkpoint
from forecast.errors import ForecastError
from forecast.models import load_model
from forecast.models.info import checkpoint_info, format_info
from forecast.models.spread import fit_correction_weights, fit_spread_factors
from forecast.models.vae import ConditionalVAE

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def valid(synthetic_weather_ds):
    return synthetic_weather_ds.isel(time=slice(400, 504))


@pytest.fixture(scope="module")
def model(synthetic_weather_ds, valid):
    """Tiny grid VAE (context 6, horizon 6) with calibrate_correction, trained 20 steps."""
    config = {**ConditionalVAE.tiny(6, 6).config(), "calibrate_correction": True}
    return ConditionalVAE(**config).fit(synthetic_weather_ds.isel(time=slice(0, 400)), valid)


def _ctx(ds, i, k):
    from forecast.data.windows import context_of

    return context_of(ds, i, k)


def test_weights_are_the_clipped_least_squares_per_channel_and_lead():
    rng = np.random.default_rng(3)
    centre = rng.normal(size=(40, 2, 4, 5, 3))
    true = np.array([[0.3, 0.8, -0.5, 1.7], [0.0, 0.5, 1.0, 0.2]])
    truth = true[None, :, :, None, None] * centre + 0.3 * rng.normal(size=centre.shape)
    got = fit_correction_weights(truth, centre)
    assert got.shape == (2, 4)
    for c in range(2):
        for h in range(4):
            x, y = centre[:, c, h].reshape(-1, 1), truth[:, c, h].reshape(-1)
            want = np.linalg.lstsq(x, y, rcond=None)[0][0]
            assert got[c, h] == pytest.approx(np.clip(want, 0, 1), abs=1e-12)
    assert got[0, 2] == 0.0 and got[0, 3] == 1.0  # a negative and a > 1 slope are clipped
    # a (channel, lead) without any correction keeps weight 1 (nothing to shrink)
    centre[:, 1, 0] = 0.0
    assert fit_correction_weights(truth, centre)[1, 0] == 1.0
    with pytest.raises(ForecastError, match="share one"):
        fit_correction_weights(truth, centre[:, :1])


def test_fit_sets_weights_and_factors_from_the_calibration_windows(model, valid):
    weight = model.correction_weight
    assert weight is not None and weight.shape == (1, 6)
    assert ((weight >= 0) & (weight <= 1)).all()
    # recomputed from the same windows and members: weights first, factors about w * g(mu)
    items = model._calibration_items(valid, model.calibration_windows)
    truth, centre, dev = model.spread_samples(items, 16)
    want = fit_correction_weights(truth, centre)
    np.testing.assert_allclose(weight, want, rtol=1e-6)
    shrunk = centre * want.astype(np.float32)[None, :, :, None, None]
    factors = fit_spread_factors(truth, shrunk, dev, np.geomspace(0.5, 4.0, 25), "spread-skill")
    np.testing.assert_allclose(model.spread_factor, factors, rtol=1e-6)


def test_members_keep_the_weighted_share_of_the_reference_mean(model, synthetic_weather_ds):
    ctx = _ctx(synthetic_weather_ds, 450, 6)
    models = {}
    for w in (0.0, 0.25, 1.0):
        models[w] = copy.copy(model)
        models[w].correction_weight = np.full((1, 6), w, np.float32)
        models[w].spread_factor = None
    # the members are affine in w: w = 0.25 lies a quarter of the way from w = 0 to w = 1
    s = {w: m.sample(ctx, 3, seed=2)["t2m"].values.astype(np.float64) for w, m in models.items()}
    np.testing.assert_allclose(s[0.25], 0.75 * s[0.0] + 0.25 * s[1.0], rtol=0, atol=1e-4)
    # ... and w = 1 keeps the whole reference mean: the mean decode of the fixed latents,
    # measured from the anchor (here the last step)
    plain = copy.copy(model)
    plain.correction_weight = plain.spread_factor = None
    ref = plain.decode(ctx, model._reference_eps())["t2m"].mean("member").values
    shift = ref - ctx["t2m"].values[-1]
    np.testing.assert_allclose(s[1.0] - s[0.0], np.broadcast_to(shift, s[1.0].shape), atol=1e-4)
    # with weight 1 and no factor the members are the uncalibrated ones
    np.testing.assert_allclose(s[1.0], plain.sample(ctx, 3, seed=2)["t2m"].values, atol=1e-4)
    # the reference latents are fixed and antithetic: their mean is zero
    eps = model._reference_eps()
    torch.testing.assert_close(eps, model._reference_eps(), rtol=0, atol=0)
    torch.testing.assert_close(eps.mean(0), torch.zeros_like(eps[0]))


def test_checkpoint_keeps_the_weights(model, synthetic_weather_ds, tmp_path):
    path = tmp_path / "m.safetensors"
    model.save(path)
    back = load_model(path)
    np.testing.assert_array_equal(back.correction_weight, model.correction_weight)
    ctx = _ctx(synthetic_weather_ds, 450, 6)
    xr.testing.assert_identical(back.sample(ctx, 3, seed=1), model.sample(ctx, 3, seed=1))
    assert "kept share of the correction by lead" in format_info(checkpoint_info(path))
    # a checkpoint that says calibrate_correction but lost its weights is refused
    arrays, meta = load_checkpoint(path)
    meta["state"].pop("correction_weight")
    meta.pop("format"), meta.pop("version")
    save_checkpoint(path, arrays, meta)
    with pytest.raises(ForecastError, match="lacks its correction weights; retrain"):
        load_model(path)


def test_correction_calibration_needs_the_spread_calibration():
    with pytest.raises(ForecastError, match=r"calibrate_correction .* spread_calibration"):
        ConditionalVAE(context=2, horizon=2, spread_calibration=False, calibrate_correction=True)
