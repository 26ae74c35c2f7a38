"""Gaussian-process forecaster: recovery of a known function, calibration, Gaussian output."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from forecast.data.synthetic import synthetic_weather
from forecast.data.windows import context_of
from forecast.dims import INIT_TIME, LAT, LEAD_TIME, LON, MEMBER, TIME, VALID_TIME
from forecast.errors import ForecastError
from forecast.models import GaussianProcessForecaster, load_model
from forecast.models.gp import BatchGP, gaussian_many

NOISE = 0.1


def _data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(2, n, 2, generator=g, dtype=torch.float64)
    f = torch.stack([torch.sin(6 * x[0, :, 0]) + 0.5 * x[0, :, 1], torch.cos(4 * x[1].sum(-1))])
    y = f + NOISE * torch.randn(2, n, generator=g, dtype=torch.float64)
    return x, f, y


@pytest.mark.parametrize(("method", "n_train"), [("exact", 200), ("svgp", 800)])
def test_recovers_smooth_function_with_calibrated_intervals(method, n_train):
    x, _, y = _data(n_train, 0)
    gp = BatchGP(method, iterations=150 if method == "svgp" else 80, n_inducing=48).fit(x, y)
    xt, ft, yt = _data(4000, 1)
    mean, var = gp.predict(xt)
    assert mean.shape == var.shape == (2, 4000)
    rmse = ((mean - ft) ** 2).mean(dim=1).sqrt()
    assert (rmse < 0.05).all(), rmse
    inside = ((yt - mean).abs() <= 1.6449 * var.sqrt()).double().mean(dim=1)
    assert ((inside > 0.86) & (inside < 0.94)).all(), inside  # 90 % interval
    # the learned noise is the true one
    noise = var.min(dim=1).values.sqrt()
    assert torch.allclose(noise, torch.full((2,), NOISE, dtype=torch.float64), rtol=0.25)


def test_batchgp_state_round_trip():
    x, _, y = _data(100, 0)
    gp = BatchGP(iterations=20).fit(x, y)
    xt, _, _ = _data(50, 1)
    again = BatchGP().restore({k: v.detach().numpy() for k, v in gp.state().items()})
    for a, b in zip(gp.predict(xt), again.predict(xt), strict=True):
        torch.testing.assert_close(a, b)


def test_batchgp_bad_input():
    with pytest.raises(ForecastError, match="method"):
        BatchGP("lanczos")
    with pytest.raises(ForecastError, match="B, N, D"):
        BatchGP().fit(torch.zeros(5, 2), torch.zeros(5))


@pytest.fixture(scope="module")
def weather() -> xr.Dataset:
    return synthetic_weather(seed=3, n_lat=4, n_lon=5, days=14)


@pytest.fixture(scope="module")
def fitted(weather) -> GaussianProcessForecaster:
    model = GaussianProcessForecaster(
        context=6, horizon=6, n_train=1500, iterations=40, n_inducing=32
    )
    return model.fit(weather.isel({TIME: slice(0, 250)}))


def test_predict_gaussian_layout(fitted, weather):
    issue = weather[TIME].values[280]
    mean, std = fitted.predict_gaussian(context_of(weather, issue, 6))
    for ds in (mean, std):
        assert ds["t2m"].dims == (LEAD_TIME, LAT, LON)
        assert ds[INIT_TIME].values == issue
        np.testing.assert_array_equal(ds[VALID_TIME].values, issue + ds[LEAD_TIME].values)
        assert ds["t2m"].attrs["units"] == "K"
    assert (std["t2m"] > 0).all()
    # the predicted spread grows with lead time on average
    by_lead = std["t2m"].mean([LAT, LON]).values
    assert by_lead[-1] > by_lead[0]


def test_samples_follow_the_gaussian(fitted, weather):
    ctx = context_of(weather, weather[TIME].values[280], 6)
    mean, std = fitted.predict_gaussian(ctx)
    ens = fitted.sample(ctx, 400, seed=2)
    assert ens["t2m"].dims == (MEMBER, LEAD_TIME, LAT, LON)
    z = (ens["t2m"].mean(MEMBER) - mean["t2m"]) / (std["t2m"] / np.sqrt(400))
    assert float(np.abs(z).max()) < 5
    ratio = ens["t2m"].std(MEMBER) / std["t2m"]
    assert float(ratio.mean()) == pytest.approx(1.0, abs=0.03)
    small = fitted.sample(ctx, 5, seed=2)
    np.testing.assert_array_equal(small["t2m"].values, ens["t2m"].values[:5])


def test_save_load_and_many(fitted, weather, tmp_path):
    path = tmp_path / "gp.safetensors"
    fitted.save(path)
    again = load_model(path)
    assert isinstance(again, GaussianProcessForecaster)
    issues = weather[TIME].values[[270, 282]]
    m1, s1 = gaussian_many(fitted, weather, issues)
    m2, s2 = gaussian_many(again, weather, issues)
    xr.testing.assert_allclose(m1, m2)
    xr.testing.assert_allclose(s1, s2)
    assert m1["t2m"].dims == (INIT_TIME, LEAD_TIME, LAT, LON)


def test_exact_method_round_trip(weather, tmp_path):
    model = GaussianProcessForecaster(
        context=6, horizon=4, method="exact", n_train=100, iterations=10
    ).fit(weather.isel({TIME: slice(0, 200)}))
    ctx = context_of(weather, weather[TIME].values[230], 6)
    model.save(tmp_path / "exact.safetensors")
    again = load_model(tmp_path / "exact.safetensors")
    for a, b in zip(model.predict_gaussian(ctx), again.predict_gaussian(ctx), strict=True):
        xr.testing.assert_allclose(a, b)
    xr.testing.assert_identical(model.sample(ctx, 3, seed=1), again.sample(ctx, 3, seed=1))


def test_gp_beats_persistence_mean_on_diurnal_data(fitted, weather):
    issues = weather[TIME].values[260:330:7]
    idx = np.searchsorted(weather[TIME].values, issues)
    truth = weather["t2m"].values[idx[:, None] + np.arange(1, 7)]
    mean, _ = gaussian_many(fitted, weather, issues)
    gp_rmse = np.sqrt(np.mean((mean["t2m"].values - truth) ** 2))
    persistence = weather["t2m"].values[idx][:, None]
    pers_rmse = np.sqrt(np.mean((persistence - truth) ** 2))
    assert gp_rmse < pers_rmse


def test_bad_config():
    with pytest.raises(ForecastError, match="method"):
        GaussianProcessForecaster(context=6, horizon=6, method="nystrom")
    with pytest.raises(ForecastError, match="n_train"):
        GaussianProcessForecaster(context=6, horizon=6, n_train=2)


def test_gp_settings_are_held_by_one_thread_at_a_time():
    """gpytorch's settings are process-wide: a thread inside a GP block keeps others out (a
    pool's models draw side by side, the dashboard serves sessions in threads)."""
    from concurrent.futures import ThreadPoolExecutor

    import gpytorch

    from forecast.models.gp import GP_LOCK, _Settings

    def free() -> bool:
        if GP_LOCK.acquire(blocking=False):
            GP_LOCK.release()
            return True
        return False

    with ThreadPoolExecutor(1) as other:
        with _Settings():
            assert gpytorch.settings.max_cholesky_size.value() == 100_000
            assert not other.submit(free).result()
            with _Settings():  # nested in the same thread
                assert not other.submit(free).result()
        assert other.submit(free).result()
