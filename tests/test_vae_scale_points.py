"""Conditional VAE with ``scale_points``: the generated change (or residual) divided by its
training standard deviation per (channel, lead, point); on small synthetic weather and traffic."""

from __future__ import annotations

import copy
from unittest import mock

import numpy as np
import pytest
import torch

from forecast.checkpoint import load_checkpoint, save_checkpoint
from forecast.data.torch import to_array
from forecast.data.windows import context_of, target_of
from forecast.errors import ForecastError
from forecast.models import load_model
from forecast.models.generative import SCALE_WINDOWS, broadcast_scale, window_std
from forecast.models.vae import ConditionalVAE

torch.set_num_threads(1)
K, H = 6, 6


def _tiny(**kw) -> ConditionalVAE:
    model = ConditionalVAE.tiny(K, H)
    return ConditionalVAE(**{**model.config(), **kw})


@pytest.fixture(scope="module")
def weather(synthetic_weather_ds):
    return synthetic_weather_ds


@pytest.fixture(scope="module")
def traffic(synthetic_traffic_ds):
    return synthetic_traffic_ds


@pytest.fixture(scope="module")
def grid_sp(weather):
    """Tiny grid VAE with scale_points, 20 steps on the first 400 hours, calibrated after."""
    return _tiny(scale_points=True).fit(
        weather.isel(time=slice(0, 400)), weather.isel(time=slice(400, 504))
    )


@pytest.fixture(scope="module")
def graph_sp(traffic):
    return _tiny(scale_points=True).fit(traffic.isel(time=slice(0, 600)))


def _expected_scale(model: ConditionalVAE, train) -> np.ndarray:
    """Std of ``x = z(t + 1..t + H) - z(t)`` over the evenly spaced complete training windows,
    computed here from the normalized array (float64)."""
    norm = model.normalizer.transform_array(to_array(train[model.variables]), channel_axis=1)
    norm = np.asarray(norm, dtype=np.float64)
    last = range(K - 1, norm.shape[0] - H)
    issues = [i for i in last if np.isfinite(norm[i - K + 1 : i + H + 1]).all()]
    assert len(issues) > SCALE_WINDOWS  # the evenly spaced subset is exercised
    pick = np.linspace(0, len(issues) - 1, SCALE_WINDOWS).astype(int)
    x = np.stack([norm[issues[k] + 1 : issues[k] + H + 1] - norm[issues[k]] for k in pick])
    return np.maximum(np.swapaxes(x, 1, 2).std(axis=0, ddof=1), 1e-6)  # (C, H, *s)


def _spied(model: ConditionalVAE) -> ConditionalVAE:
    """A copy of ``model`` whose posterior network records its calls (``call_args_list``)."""
    spied = copy.deepcopy(model)
    spied.net.posterior = mock.Mock(wraps=spied.net.posterior)
    return spied


def _posterior_input(spied: ConditionalVAE) -> np.ndarray:
    """The ``x`` of the first call of a :func:`_spied` model's posterior."""
    return spied.net.posterior.call_args_list[0].args[0].numpy()


def _normalized(model: ConditionalVAE, ds) -> np.ndarray:
    return model.normalizer.transform_array(to_array(ds[model.variables]), channel_axis=1)


# -- the fitted scale ----------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["grid", "graph"])
def test_scale_is_the_training_std_per_point(which, grid_sp, graph_sp, weather, traffic):
    model, train = {
        "grid": (grid_sp, weather.isel(time=slice(0, 400))),
        "graph": (graph_sp, traffic.isel(time=slice(0, 600))),
    }[which]
    space = (16, 24) if which == "grid" else (traffic.sizes["node"],)
    scale = model.point_scale
    assert scale.dtype == np.float64 and scale.shape == (1, H, *space)
    np.testing.assert_allclose(scale, _expected_scale(model, train), rtol=2e-4, atol=1e-7)
    assert np.ptp(scale[0, -1]) > 0  # differs between points
    assert (scale[0, -1].mean() > scale[0, 0].mean()) or which == "graph"


def test_shared_helpers():
    x = torch.randn(50, 2, 3, 4, 5, generator=torch.Generator().manual_seed(0))
    per_point = window_std(x)
    assert per_point.dtype == np.float64 and per_point.shape == (2, 3, 4, 5)
    np.testing.assert_allclose(per_point, x.numpy().std(axis=0, ddof=1), rtol=1e-5)
    pooled = window_std(x, per_point=False)
    assert pooled.shape == (2, 3)
    np.testing.assert_allclose(pooled, x.numpy().std(axis=(0, 3, 4), ddof=1), rtol=1e-5)
    assert window_std(torch.zeros(4, 1, 2, 3)).min() == np.float32(1e-6)  # clamped in float32
    assert broadcast_scale(per_point, x).shape == (1, 2, 3, 4, 5)
    assert broadcast_scale(pooled, x).shape == (1, 2, 3, 1, 1)
    assert broadcast_scale(pooled, x).dtype == x.dtype


# -- checkpoints ---------------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["grid", "graph"])
def test_save_load_identical_samples(which, grid_sp, graph_sp, weather, traffic, tmp_path):
    model, ds, issue = {"grid": (grid_sp, weather, 450), "graph": (graph_sp, traffic, 700)}[which]
    path = tmp_path / "vae-sp.safetensors"
    model.save(path)
    arrays, meta = load_checkpoint(path)
    assert arrays["point_scale"].dtype == np.float64
    np.testing.assert_array_equal(arrays["point_scale"], model.point_scale)
    assert "point_scale" not in meta["state"]  # an array, not JSON
    loaded = load_model(path)
    assert loaded.scale_points and loaded.config() == model.config()
    np.testing.assert_array_equal(loaded.point_scale, model.point_scale)
    ctx = context_of(ds, issue, K)
    var = model.variables[0]
    np.testing.assert_array_equal(
        loaded.sample(ctx, 4, seed=3)[var].values, model.sample(ctx, 4, seed=3)[var].values
    )
    # a checkpoint without its scale is refused with a clear message
    arrays.pop("point_scale")
    save_checkpoint(tmp_path / "bad.safetensors", arrays, meta)
    with pytest.raises(ForecastError, match="lacks its point_scale"):
        load_model(tmp_path / "bad.safetensors")


# -- the scale in encode / decode ------------------------------------------------------------
def _doubled(model: ConditionalVAE) -> ConditionalVAE:
    other = copy.deepcopy(model)
    other.point_scale = 2 * model.point_scale
    return other


def test_decode_multiplies_by_the_scale(grid_sp, weather):
    ctx = context_of(weather, 440, K)
    eps = grid_sp.prior(ctx, 3, seed=5)
    last = ctx["t2m"].values[-1]
    one = grid_sp.decode(ctx, eps)["t2m"].values - last
    two = _doubled(grid_sp).decode(ctx, eps)["t2m"].values - last
    np.testing.assert_allclose(two, 2 * one, rtol=1e-4, atol=1e-4)
    assert np.abs(one).max() > 1e-2
    # sample == decode(prior) with the option
    np.testing.assert_allclose(
        grid_sp.sample(ctx, 3, seed=5)["t2m"].values - last, one, rtol=0, atol=1e-5
    )


def test_encode_divides_by_the_scale(grid_sp, weather):
    ctx, target = context_of(weather, 440, K), target_of(weather, 440, H)
    # the posterior sees (normalized target - last step) / point_scale
    model = _spied(grid_sp)
    z = model.encode(ctx, target)
    x = np.swapaxes(_normalized(model, target), 0, 1) - _normalized(model, ctx)[-1][:, None]
    np.testing.assert_allclose(_posterior_input(model)[0], x / model.point_scale, atol=1e-4)
    # a model with a doubled scale encodes the target whose change is halved like this one
    last = _normalized(grid_sp, ctx)[-1]
    half = target.copy(deep=True)
    half_norm = last + 0.5 * (_normalized(grid_sp, target) - last)
    half["t2m"].values[:] = grid_sp.normalizer.inverse_array(half_norm, channel_axis=1)[:, 0]
    np.testing.assert_allclose(
        _doubled(grid_sp).encode(ctx, target).numpy(),
        grid_sp.encode(ctx, half).numpy(),
        rtol=1e-3,
        atol=1e-4,
    )
    np.testing.assert_array_equal(z.numpy(), grid_sp.encode(ctx, target).numpy())
    assert not np.allclose(
        _doubled(grid_sp).encode(ctx, target).numpy(), grid_sp.encode(ctx, target).numpy()
    )


def test_round_trip_is_scale_times_decoded_posterior_mean(grid_sp, weather):
    """decode(encode(target)) = anchor + scale * g(mu_q(x / scale)) (no spread factor)."""
    model = copy.deepcopy(grid_sp)
    model.spread_factor = None
    ctx, target = context_of(weather, 440, K), target_of(weather, 440, H)
    back = model.decode(ctx, model.encode(ctx, target))["t2m"].values[0]
    net_ctx, anchor, cal = model._cond(ctx["t2m"].values[:, None], ctx["time"].values)
    tgt = model._normalized_target(target)
    scale = torch.from_numpy(model.point_scale).float()[None]
    with torch.inference_mode():
        feats, emb = model.net.features(net_ctx, cal)
        mu_q, _ = model.net.posterior((tgt - anchor) / scale, feats, emb)
        x = model.net.decode(mu_q, feats, emb) * scale
    want = model.normalizer.inverse_array((x + anchor)[0].numpy(), channel_axis=0)[0]
    np.testing.assert_allclose(back, want, rtol=0, atol=1e-3)


def test_latent_usage_sees_the_scaled_change(grid_sp, weather):
    model = _spied(grid_sp)
    data = model._window_dataset(weather.isel(time=slice(400, 504)))
    usage = model.latent_usage(data, max_windows=4)
    assert usage["windows"] == 4
    items = model._pick(data, 4)
    _, anchor, tgt, _ = model._batch(items)
    want = (tgt - anchor).numpy() / model.point_scale
    np.testing.assert_allclose(_posterior_input(model), want, rtol=1e-5, atol=1e-5)


# -- the option off ------------------------------------------------------------------------------
def test_option_off_is_unchanged(weather, tmp_path):
    train, valid = weather.isel(time=slice(0, 300)), weather.isel(time=slice(300, 380))
    plain = ConditionalVAE.tiny(K, H).fit(train, valid)
    off = _tiny(scale_points=False).fit(train, valid)
    assert off.point_scale is None
    ctx = context_of(weather, 420, K)
    np.testing.assert_array_equal(
        off.sample(ctx, 4, seed=2)["t2m"].values, plain.sample(ctx, 4, seed=2)["t2m"].values
    )
    np.testing.assert_array_equal(off.spread_factor, plain.spread_factor)
    plain.save(tmp_path / "plain.safetensors")
    off.save(tmp_path / "off.safetensors")
    a, meta_a = load_checkpoint(tmp_path / "plain.safetensors")
    b, meta_b = load_checkpoint(tmp_path / "off.safetensors")
    assert sorted(a) == sorted(b) and "point_scale" not in b
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert meta_a["state"].keys() == meta_b["state"].keys()
    # a checkpoint written before the option (no scale_points in its config) loads as off
    meta_a["config"].pop("scale_points")
    save_checkpoint(tmp_path / "old.safetensors", a, meta_a)
    old = load_model(tmp_path / "old.safetensors")
    assert not old.scale_points and old.point_scale is None
    np.testing.assert_array_equal(
        old.sample(ctx, 4, seed=2)["t2m"].values, plain.sample(ctx, 4, seed=2)["t2m"].values
    )
    # the option on changes the members
    on = _tiny(scale_points=True).fit(train, valid)
    assert not np.allclose(
        on.sample(ctx, 4, seed=2)["t2m"].values, plain.sample(ctx, 4, seed=2)["t2m"].values
    )


def test_loss_sees_the_scaled_change(grid_sp, weather):
    model = _spied(grid_sp)
    items = model._pick(model._window_dataset(weather.isel(time=slice(400, 504))), 2)
    ctx = torch.stack([i["context"] for i in items]).transpose(1, 2)
    tgt = torch.stack([i["target"] for i in items]).transpose(1, 2)
    cal = torch.stack([i["calendar"] for i in items])
    gen = torch.Generator().manual_seed(0)
    terms = model.loss_terms(model.net, model.log_scale, ctx, tgt, cal, gen)
    assert torch.isfinite(terms["nll"]) and torch.isfinite(terms["crps"])
    want = (tgt - ctx[:, :, -1:]).numpy() / model.point_scale
    np.testing.assert_allclose(_posterior_input(model), want, rtol=1e-5, atol=1e-5)


def test_scale_of_the_first_guess_residual(weather):
    """With a first guess the scale is the std of the residual ``target - first guess``."""
    train = weather.isel(time=slice(0, 400))
    model = _tiny(scale_points=True, first_guess="diurnal").fit(train)
    data = model._window_dataset(train)
    pick = np.linspace(0, len(data) - 1, SCALE_WINDOWS).astype(int)
    res = np.stack(
        [(data[int(k)]["target"] - data[int(k)]["first_guess"]).numpy() for k in pick]
    ).astype(np.float64)
    want = np.swapaxes(res, 1, 2).std(axis=0, ddof=1)
    np.testing.assert_allclose(model.point_scale, want, rtol=2e-4, atol=1e-7)
    ctx = context_of(weather, 450, K)
    assert np.isfinite(model.sample(ctx, 2, seed=0)["t2m"].values).all()
