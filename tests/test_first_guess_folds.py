"""Cross-fitted (out-of-fold) first guesses of the training windows (``first_guess_folds``)."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from forecast.data.synthetic import synthetic_weather
from forecast.data.torch import to_array
from forecast.data.windows import context_of
from forecast.dims import TIME
from forecast.errors import ForecastError
from forecast.models import load_model
from forecast.models.diffusion import ConditionalDiffusion
from forecast.models.first_guess import (
    FoldedFirstGuess,
    fit_first_guess,
    fit_folded_first_guess,
)
from forecast.models.gp import GaussianProcessForecaster
from forecast.models.info import checkpoint_info, format_info
from forecast.models.vae import ConditionalVAE

K, H = 6, 8

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def weather():
    return synthetic_weather(seed=0, n_lat=5, n_lon=6, days=10)


@pytest.fixture(scope="module")
def train(weather):
    return weather.isel({TIME: slice(0, 170)})


def _arrays(ds: xr.Dataset) -> tuple[np.ndarray, np.ndarray]:
    return to_array(ds).astype(np.float64), ds[TIME].values


def _block(folded: FoldedFirstGuess, times: np.ndarray, k: int) -> np.ndarray:
    """Issue indices of fold ``k``."""
    return np.flatnonzero((times >= folded.starts[k]) & (times <= folded.stops[k]))


def test_a_fold_never_sees_its_own_windows(train):
    folded = fit_folded_first_guess("climatology", train, context=K, horizon=H, folds=3)
    values, times = _arrays(train)
    issues = np.concatenate([_block(folded, times, k) for k in range(3)])
    # the blocks tile every training window's issue time, in order, without overlap
    np.testing.assert_array_equal(issues, np.arange(K - 1, len(times) - H))
    block = _block(folded, times, 1)
    # change every step that fold 1's windows touch (context and target) by +20 K
    touched = np.arange(block[0] - K + 1, block[-1] + H + 1)
    changed = train.copy()
    bump = xr.DataArray(np.isin(np.arange(len(times)), touched) * 20.0, dims=TIME)
    changed["t2m"] = train["t2m"] + bump
    again = fit_folded_first_guess("climatology", changed, context=K, horizon=H, folds=3)
    # fold 1's first guesses do not move; fold 0's (fitted on those steps) and the full fit's do
    np.testing.assert_array_equal(
        again.predict(values, times, block), folded.predict(values, times, block)
    )
    other = _block(folded, times, 0)
    assert not np.allclose(
        again.predict(values, times, other), folded.predict(values, times, other)
    )
    full = fit_first_guess("climatology", train, context=K, horizon=H)
    full_changed = fit_first_guess("climatology", changed, context=K, horizon=H)
    assert not np.allclose(
        full.predict(values, times, block), full_changed.predict(values, times, block)
    )
    # an issue time of fold k gets fold k's first guess, a whole batch at once
    mixed = np.array([other[3], block[0], block[-1], other[0]])
    out = folded.predict(values, times, mixed)
    for j, o in enumerate(mixed):
        k = 1 if o in block else 0
        np.testing.assert_array_equal(out[j], folded.guesses[k].predict(values, times, [o])[0])


def test_folded_errors(weather, train):
    with pytest.raises(ForecastError, match="needs 2 <= folds"):
        fit_folded_first_guess("damped", train, context=K, horizon=H, folds=1)
    with pytest.raises(ForecastError, match="needs 2 <= folds"):
        fit_folded_first_guess("damped", train, context=K, horizon=H, folds=10_000)
    with pytest.raises(ForecastError, match=r"fold 1 of 3 .* use fewer first_guess_folds"):
        # a training split just long enough for one window per fold: the folds see no data
        fit_folded_first_guess(
            "gp", train.isel({TIME: slice(0, K + H + 2)}), context=K, horizon=H, folds=3
        )
    folded = fit_folded_first_guess("damped", train, context=K, horizon=H, folds=2)
    values, times = _arrays(weather)
    with pytest.raises(ForecastError, match="outside the training windows"):
        folded.predict(values, times, np.array([200]))  # a validation issue time


def test_gp_fits_on_data_with_a_nan_gap(train):
    # the lagged features of the origins just after a gap were NaN (NaN Cholesky); the GP now
    # keeps only origins whose lags, issue time and horizon are all finite
    gapped = train.copy()
    gapped["t2m"] = train["t2m"].where(
        xr.DataArray(~np.isin(np.arange(170), range(60, 90)), dims=TIME)
    )
    gp = GaussianProcessForecaster.tiny(K, H).fit(gapped)
    ctx = context_of(train, train[TIME].values[120], K)
    mean = gp.predict_gaussian(ctx)[0]
    assert all(np.isfinite(mean[v].values).all() for v in mean.data_vars)


def _tiny_diffusion(**kw) -> ConditionalDiffusion:
    base = ConditionalDiffusion.tiny(K, H).config()
    return ConditionalDiffusion(**{**base, "train": {**base["train"], "max_steps": 3}, **kw})


def test_diffusion_trains_on_out_of_fold_guesses(weather, train, tmp_path):
    kw = dict(target="residual", first_guess="damped")
    plain = _tiny_diffusion(**kw).fit(train)
    folded = _tiny_diffusion(**kw, first_guess_folds=3).fit(train)
    values, times = _arrays(weather)
    origins = np.array([10, 100, 200])
    # the first guess the model keeps is the one fitted on the whole training split ...
    full = fit_first_guess("damped", train, context=K, horizon=H)
    np.testing.assert_array_equal(
        folded.fg.predict(values, times, origins), full.predict(values, times, origins)
    )
    # ... while the training windows (here: the residual scale fitted on them) saw others
    assert not np.allclose(folded.lead_scale, plain.lead_scale)
    folded.save(tmp_path / "d.safetensors")
    back = load_model(tmp_path / "d.safetensors")
    assert back.first_guess_folds == 3
    ctx = context_of(weather, weather[TIME].values[200], K)
    xr.testing.assert_identical(back.sample(ctx, 2, seed=1), folded.sample(ctx, 2, seed=1))
    info = checkpoint_info(tmp_path / "d.safetensors")
    assert info["first_guess"] == {"kind": "damped", "training_folds": 3}
    assert "cross-fitted over 3 folds" in format_info(info)


def test_vae_trains_on_out_of_fold_guesses(train, tmp_path):
    base = ConditionalVAE.tiny(K, H).config()
    kw = dict(base, first_guess="climatology", scale_points=True)
    kw["train"] = {**base["train"], "max_steps": 2}
    plain = ConditionalVAE(**kw).fit(train)
    folded = ConditionalVAE(**{**kw, "first_guess_folds": 2}).fit(train)
    # the per-point scale is fitted on the training residuals, which are now out of fold
    assert not np.allclose(folded.point_scale, plain.point_scale)
    assert folded.fg.kind == "climatology"
    folded.save(tmp_path / "v.safetensors")
    assert load_model(tmp_path / "v.safetensors").first_guess_folds == 2


def test_bad_fold_settings():
    for bad in (0, 1.5, True):
        with pytest.raises(ForecastError, match="first_guess_folds must be an integer >= 1"):
            ConditionalVAE(context=K, horizon=H, first_guess="gp", first_guess_folds=bad)
    with pytest.raises(ForecastError, match="set first_guess too"):
        ConditionalVAE(context=K, horizon=H, first_guess_folds=3)
    with pytest.raises(ForecastError, match="set first_guess too"):
        ConditionalDiffusion(context=K, horizon=H, first_guess_folds=3)
