"""Spatially whitened diffusion (``whiten_space``): the DCT whitening itself, and a diffusion
model trained with it (spatially correlated members, checkpoints, inversion, bad input)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr
from scipy.fft import dctn

from forecast.checkpoint import load_checkpoint, save_checkpoint
from forecast.data.synthetic import synthetic_traffic, synthetic_weather
from forecast.data.windows import context_of, target_of
from forecast.dims import LON, MEMBER, TIME
from forecast.errors import ForecastError
from forecast.models import load_model
from forecast.models.diffusion import ConditionalDiffusion
from forecast.models.generative import TINY_TRAIN
from forecast.models.info import checkpoint_info, format_info
from forecast.models.whitening import POWER_FLOOR, SpectralWhitener, dct_matrix

K, H = 6, 8

pytestmark = pytest.mark.usefixtures("one_thread")


def _smooth_fields(n: int, shape=(2, 3, 10, 14), seed: int = 0) -> torch.Tensor:
    """Random fields with a red spectrum: white noise, cumulatively summed along both axes."""
    gen = np.random.default_rng(seed)
    x = gen.standard_normal((n, *shape)).cumsum(axis=-1).cumsum(axis=-2)
    return torch.from_numpy(x - x.mean(axis=(-2, -1), keepdims=True))


def test_dct_matrix_is_scipys_orthonormal_dct():
    d = dct_matrix(7)
    np.testing.assert_allclose(d @ d.T, np.eye(7), atol=1e-12)
    x = np.random.default_rng(1).standard_normal((7, 5))
    np.testing.assert_allclose(d @ x @ dct_matrix(5).T, dctn(x, norm="ortho"), atol=1e-12)


def test_whiten_then_colour_is_the_identity():
    w = SpectralWhitener.fit(_smooth_fields(64))
    x = _smooth_fields(3, seed=5)
    np.testing.assert_allclose(w.colour(w.whiten(x)).numpy(), x.numpy(), atol=1e-10)
    np.testing.assert_allclose(w.whiten(w.colour(x)).numpy(), x.numpy(), atol=1e-10)


def test_fitted_power_whitens_the_training_fields():
    x = _smooth_fields(256)
    w = SpectralWhitener.fit(x)
    assert w.power.shape == (2, 3, 10, 14)
    np.testing.assert_allclose(w.power.mean(axis=(2, 3)), 1.0, rtol=0.05)  # floor aside
    assert w.power.min() >= POWER_FLOOR
    # whitened training fields: (nearly: the fit iterates on the standard deviation by point)
    # the same mean power in every DCT mode that is not floored
    y = w.whiten(x).numpy()
    power = (dctn(y, axes=(-2, -1), norm="ortho") ** 2).mean(axis=0)
    kept = w.power > POWER_FLOOR
    per_channel_lead = [power[c, h][kept[c, h]] for c in range(2) for h in range(3)]
    for p in per_channel_lead:
        assert p.std() / p.mean() < 0.01
    # red input: low modes carry more power than high ones
    assert w.power[0, 0, 0, 1] > 10 * w.power[0, 0, -1, -1]


def test_white_noise_coloured_has_the_training_covariance():
    x = _smooth_fields(512, shape=(1, 1, 6, 8))
    w = SpectralWhitener.fit(x)
    z = torch.from_numpy(np.random.default_rng(3).standard_normal((20000, 1, 1, 6, 8)))
    coloured = w.colour(z).numpy().reshape(20000, -1)
    # expected: S^-1 D^T diag(power) D S^-1, S the standard deviation by point of D^T diag(power)
    # D: the correlation of the (stationary part of the) training covariance, unit variance
    full = np.kron(dct_matrix(6), dct_matrix(8))  # (48, 48): coefficients of the flat field
    cov = full.T @ np.diag(w.power.ravel()) @ full
    std = np.sqrt(np.diag(cov))
    np.testing.assert_allclose(std, w.point_std.ravel(), rtol=1e-10)
    expected = cov / np.outer(std, std)
    np.testing.assert_allclose(np.cov(coloured, rowvar=False), expected, atol=0.05)
    # unit variance at every point, borders included (the DCT alone gives them more)
    np.testing.assert_allclose(coloured.var(axis=0), 1.0, atol=0.05)
    assert std.reshape(6, 8)[0, 0] > 1.2 * std.reshape(6, 8)[3, 4]


def test_bad_whitening_input():
    with pytest.raises(ForecastError, match="lat, lon"):
        SpectralWhitener.fit(torch.zeros(4, 1, 2, 12))
    with pytest.raises(ForecastError, match="positive"):
        SpectralWhitener(np.zeros((1, 2, 3, 4)))
    w = SpectralWhitener.fit(_smooth_fields(8))
    with pytest.raises(ForecastError, match="do not match the whitening spectrum"):
        w.whiten(torch.zeros(1, 2, 3, 9, 14, dtype=torch.float64))


# -- a diffusion model trained with whiten_space ------------------------------------------------
@pytest.fixture(scope="module")
def weather():
    return synthetic_weather(seed=0, n_lat=10, n_lon=14, days=10)


def _tiny(**kw) -> ConditionalDiffusion:
    return ConditionalDiffusion(**{**ConditionalDiffusion.tiny(K, H).config(), **kw})


@pytest.fixture(scope="module")
def models(weather, one_thread):
    train, valid = weather.isel({TIME: slice(0, 170)}), weather.isel({TIME: slice(170, 220)})
    return {flag: _tiny(whiten_space=flag).fit(train, valid) for flag in (False, True)}


@pytest.fixture(scope="module")
def ctx(weather):
    return context_of(weather, weather[TIME].values[225], K)


def _lag1_corr(dev: np.ndarray) -> float:
    """Correlation of neighbouring grid points along longitude."""
    a, b = dev[..., :-1].ravel(), dev[..., 1:].ravel()
    return float(np.corrcoef(a, b)[0, 1])


def test_whitened_members_are_spatially_correlated(models, ctx):
    """The tiny network leaves most of its starting noise: plain, the members' departures from
    their mean are nearly white in space; whitened, they are smooth like the data."""
    dev = {}
    for flag, m in models.items():
        ens = m.sample(ctx, 8, seed=0)["t2m"].transpose(MEMBER, ..., LON).values
        dev[flag] = ens - ens.mean(axis=0)
    assert _lag1_corr(dev[True]) > 0.8
    assert _lag1_corr(dev[False]) < 0.5
    assert models[True].whitener.power.shape == (1, H, 10, 14)


def test_whitened_training_quantity_has_unit_scale(models):
    assert 0.5 < models[True].sigma_data < 1.5
    assert models[False].whitener is None


def test_whitened_save_load_identical(models, ctx, tmp_path):
    m = models[True]
    m.save(tmp_path / "w.safetensors")
    back = load_model(tmp_path / "w.safetensors")
    assert back.whiten_space and back.config() == m.config()
    np.testing.assert_array_equal(back.whitener.power, m.whitener.power)
    xr.testing.assert_identical(back.sample(ctx, 3, seed=2), m.sample(ctx, 3, seed=2))
    text = format_info(checkpoint_info(tmp_path / "w.safetensors"))
    assert "diffused in spatially whitened coordinates" in text


def test_whitened_inversion_round_trip(models, weather, ctx):
    m = models[True]
    target = target_of(weather, weather[TIME].values[225], H)
    rec = m.decode(ctx, m.encode(ctx, target))["t2m"].values[0]
    anomaly = target["t2m"].values - ctx["t2m"].values[-1]
    frac = np.abs(rec - target["t2m"].values).mean() / np.abs(anomaly).mean()
    assert frac < 0.01


def test_checkpoint_without_power_refused(models, tmp_path):
    path = tmp_path / "w.safetensors"
    models[True].save(path)
    arrays, meta = load_checkpoint(path)
    del arrays["whiten_power"]
    save_checkpoint(path, arrays, {k: v for k, v in meta.items() if k not in ("format", "version")})
    with pytest.raises(ForecastError, match="lacks its whiten_power"):
        load_model(path)


def test_whiten_space_refused_for_sensor_networks():
    ds = synthetic_traffic(seed=0, n_sensors=12, days=1.5, n_corridors=2)
    with pytest.raises(ForecastError, match="whiten_space=True needs gridded"):
        ConditionalDiffusion(
            **{**ConditionalDiffusion.tiny(6, 4).config(), "whiten_space": True}
        ).fit(ds.isel({TIME: slice(0, 300)}))


# -- whiten_loss: where the training loss measures the error ------------------------------------
def _loss(error_map=None) -> float:
    from forecast.sampling import EDMProcess

    torch.manual_seed(0)
    net = torch.nn.Conv3d(3, 3, 1).double()
    x0 = _smooth_fields(4, shape=(3, 2, 5, 6))
    gen = torch.Generator().manual_seed(3)
    process = EDMProcess(sigma_data=1.0)
    with torch.no_grad():
        return float(process.loss(lambda x, s, cond: net(x), x0, None, gen, error_map=error_map))


def test_loss_error_map_reweights_the_error():
    """The map acts on the denoising error before squaring: identity changes nothing, a factor
    of 2 multiplies the loss by 4 (same noise from the same generator)."""
    plain = _loss()
    assert _loss(lambda e: e) == pytest.approx(plain, rel=1e-12)
    assert _loss(lambda e: 2 * e) == pytest.approx(4 * plain, rel=1e-12)


def test_field_loss_trains_other_weights_and_keeps_coloured_members(models, weather, ctx):
    """``whiten_loss = "field"`` changes what is optimized (same seed and data as the
    whitened-loss model, other weights) and keeps the members' spatial correlation."""
    train, valid = weather.isel({TIME: slice(0, 170)}), weather.isel({TIME: slice(170, 220)})
    white = models[True]
    field = _tiny(whiten_space=True, whiten_loss="field").fit(train, valid)
    np.testing.assert_array_equal(white.whitener.power, field.whitener.power)
    diff = [
        float((a - b).detach().abs().max())
        for a, b in zip(white.net.parameters(), field.net.parameters(), strict=True)
    ]
    assert max(diff) > 1e-4
    ens = field.sample(ctx, 8, seed=0)["t2m"].transpose(MEMBER, ..., LON).values
    assert _lag1_corr(ens - ens.mean(axis=0)) > 0.8
    assert field.config()["whiten_loss"] == "field"
    assert white.config()["whiten_loss"] == "whitened"


def test_field_loss_saved_and_named(weather, tmp_path):
    train = weather.isel({TIME: slice(0, 170)})
    m = _tiny(whiten_space=True, whiten_loss="field", train={**TINY_TRAIN, "max_steps": 2})
    m.fit(train)
    m.save(tmp_path / "f.safetensors")
    assert load_model(tmp_path / "f.safetensors").whiten_loss == "field"
    text = format_info(checkpoint_info(tmp_path / "f.safetensors"))
    assert "whitened coordinates (loss on the field)" in text


def test_bad_whiten_loss():
    with pytest.raises(ForecastError, match="whiten_loss must be one of whitened, field"):
        _tiny(whiten_space=True, whiten_loss="grid")
    with pytest.raises(ForecastError, match="needs whiten_space=True"):
        _tiny(whiten_loss="field")
    with pytest.raises(ForecastError, match="whiten_net must be one of whitened, field"):
        _tiny(whiten_space=True, whiten_net="fields")
    with pytest.raises(ForecastError, match="whiten_net='field' needs whiten_space=True"):
        _tiny(whiten_net="field")


# -- whiten_net: the network in field coordinates -----------------------------------------------
@pytest.fixture(scope="module")
def field_net_model(weather, one_thread):
    train, valid = weather.isel({TIME: slice(0, 170)}), weather.isel({TIME: slice(170, 220)})
    return _tiny(whiten_space=True, whiten_loss="field", whiten_net="field").fit(train, valid)


def test_field_net_is_a_plain_denoiser_under_coloured_noise(field_net_model):
    """With ``whiten_net = "field"``, the denoiser coloured back to the field is the EDM
    denoiser of the bare network applied to the coloured input: the network sees fields."""
    m = field_net_model
    w = m.whitener
    y = torch.randn(2, 1, H, 10, 14, generator=torch.Generator().manual_seed(0))
    sigma = torch.tensor([0.5, 3.0])
    cond = {"context": torch.zeros(2, 1, K, 10, 14)}
    calls = []

    def net(x, c_noise, cond):
        calls.append(x)
        return 0.3 * x + c_noise.reshape(-1, 1, 1, 1, 1)

    with torch.no_grad():
        got = w.colour(m.process.denoiser(m._framed(net), cond)(y, sigma))
        view = sigma.reshape(-1, 1, 1, 1, 1)
        c_skip, c_out, c_in, c_noise = m.process.coefficients(view)
        x = w.colour(y)
        want = c_skip * x + c_out * net(c_in * x, c_noise.reshape(-1), cond)
    np.testing.assert_allclose(calls[0].numpy(), (c_in * x).numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-4)


def test_field_net_members_inversion_and_checkpoint(field_net_model, weather, ctx, tmp_path):
    m = field_net_model
    ens = m.sample(ctx, 8, seed=0)["t2m"].transpose(MEMBER, ..., LON).values
    assert _lag1_corr(ens - ens.mean(axis=0)) > 0.8
    target = target_of(weather, weather[TIME].values[225], H)
    rec = m.decode(ctx, m.encode(ctx, target))["t2m"].values[0]
    anomaly = target["t2m"].values - ctx["t2m"].values[-1]
    assert np.abs(rec - target["t2m"].values).mean() / np.abs(anomaly).mean() < 0.01
    m.save(tmp_path / "n.safetensors")
    back = load_model(tmp_path / "n.safetensors")
    assert back.whiten_net == "field"
    text = format_info(checkpoint_info(tmp_path / "n.safetensors"))
    assert "whitened coordinates (network and loss on the field)" in text
    xr.testing.assert_identical(back.sample(ctx, 3, seed=2), m.sample(ctx, 3, seed=2))
