"""First guesses (forecast.models.first_guess): shapes, values, checkpoints, bad input, and the
out-of-fold first guesses of the training windows (``first_guess_folds``)."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from forecast.checkpoint import load_checkpoint, save_checkpoint
from forecast.data.synthetic import synthetic_traffic, synthetic_weather
from forecast.data.torch import to_array
from forecast.data.windows import context_of
from forecast.dims import TIME
from forecast.errors import ForecastError
from forecast.models import load_model
from forecast.models.diffusion import ConditionalDiffusion
from forecast.models.first_guess import (
    FIRST_GUESSES,
    DiurnalFirstGuess,
    FoldedFirstGuess,
    GPFirstGuess,
    ShrunkGPFirstGuess,
    fit_first_guess,
    fit_folded_first_guess,
    restore_first_guess,
    shrink_weights,
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


@pytest.fixture(scope="module")
def gp_guess(train, one_thread):
    return GPFirstGuess(GaussianProcessForecaster.tiny(K, H).fit(train))


def _values(ds: xr.Dataset) -> np.ndarray:
    return ds["t2m"].values[:, None]  # (time, channel, lat, lon)


def _guess(kind: str, train: xr.Dataset, gp_guess: GPFirstGuess):
    if kind == "gp":
        return gp_guess
    if kind == "gp-clim":  # the fixture's GP, weights 0..1 across the leads
        clim = fit_first_guess("climatology", train, context=K, horizon=H)
        return ShrunkGPFirstGuess(gp_guess, clim, np.linspace(0, 1, H)[None])
    return fit_first_guess(kind, train, context=K, horizon=H)


@pytest.mark.parametrize("kind", FIRST_GUESSES)
def test_predict_shape_units(kind, weather, train, gp_guess):
    fg = _guess(kind, train, gp_guess)
    assert fg.kind == kind
    out = fg.predict(_values(weather), weather[TIME].values, np.array([10, 100, 230]))
    assert out.shape == (3, H, 1, 5, 6) and out.dtype == np.float32
    # physical units (Kelvin): close to the observed field, not normalized
    obs = weather["t2m"].values[[11, 101, 231]]
    assert np.isfinite(out).all()
    assert np.abs(out[:, 0, 0] - obs).mean() < 3.0
    # a single context window with origins = [T - 1] gives the same as the long array
    ctx = context_of(weather, weather[TIME].values[100], K)
    one = fg.predict(_values(ctx), ctx[TIME].values, np.array([K - 1]))
    np.testing.assert_allclose(one[0], out[1], rtol=0, atol=1e-4)


def test_diurnal_is_the_baseline_mean_formula(weather, train):
    # c(slot(t + h)) + a(t) from DiurnalPersistenceEnsemble's own attributes, and the mean of
    # its members once their bootstrapped anomaly errors are removed
    from forecast.models.baselines import (
        DiurnalPersistenceEnsemble,
        draw_origins,
        increments,
        slot_of,
    )

    dp = DiurnalPersistenceEnsemble(context=K, horizon=H).fit(train)
    fg = fit_first_guess("diurnal", train, context=K, horizon=H)
    times, values = weather[TIME].values, weather["t2m"].values
    i = 200
    got = fg.predict(_values(weather), times, np.array([i]))[0, :, 0]
    step = times[1] - times[0]
    slots = slot_of(times[i] + step * np.arange(0, H + 1), dp.step, dp.period_)
    want = dp.means_[slots[1:], 0] + (values[i] - dp.means_[slots[0], 0])[None]
    np.testing.assert_allclose(got, want, atol=1e-4)
    ctx = context_of(weather, times[i], K)
    members = dp.sample(ctx, 7, seed=4)["t2m"].values
    errors = increments(dp.anomaly_, draw_origins(dp.origins_, 7, 4), H).reshape(7, H, 5, 6)
    np.testing.assert_allclose((members - errors).mean(axis=0), got, atol=1e-4)


def test_damped_learns_ar1_decay():
    # daily cycle + a uniform AR(1) anomaly, phi = 0.9: rho_h = 0.9 ** h and
    # fg - c = rho_h (fg_diurnal - c)
    ds = synthetic_weather(seed=2, n_lat=3, n_lon=4, days=60)
    n = ds.sizes[TIME]
    rng = np.random.default_rng(1)
    a = np.zeros(n)
    for t in range(1, n):
        a[t] = 0.9 * a[t - 1] + rng.normal()
    hour = (ds[TIME].values.astype("datetime64[h]").astype(np.int64) % 24).astype(float)
    cycle = 280 + 4 * np.sin(2 * np.pi * hour / 24)
    field = np.broadcast_to((cycle + a)[:, None, None], ds["t2m"].shape).astype(np.float32)
    ds = ds.assign(t2m=(ds["t2m"].dims, field, ds["t2m"].attrs))
    damped = fit_first_guess("damped", ds, context=K, horizon=H)
    np.testing.assert_allclose(damped.rho[0], 0.9 ** np.arange(1, H + 1), atol=0.06)
    plain = fit_first_guess("diurnal", ds, context=K, horizon=H)
    np.testing.assert_array_equal(plain.rho, 1.0)
    args = (ds["t2m"].values[:, None], ds[TIME].values, np.array([500]))
    fd, fp = damped.predict(*args)[0], plain.predict(*args)[0]
    # damping only moves the first guess towards the climatology c(slot(t + h))
    from forecast.models.baselines import slot_of

    t0 = ds[TIME].values[500]
    valid = t0 + np.arange(1, H + 1) * (ds[TIME].values[1] - ds[TIME].values[0])
    clim = damped.means[slot_of(valid, damped.step, damped.period)]  # (H, C, *s)
    rho = damped.rho.T.reshape(H, 1, 1, 1)
    np.testing.assert_allclose(fd - clim, rho * (fp - clim), atol=1e-3)
    assert float(np.abs(fp - clim).max()) > 0.1  # the anomaly is not zero here


def test_climatology_is_the_slot_mean(weather, train):
    clim = fit_first_guess("climatology", train, context=K, horizon=H)
    damped = fit_first_guess("damped", train, context=K, horizon=H)
    np.testing.assert_array_equal(clim.rho, 0.0)
    np.testing.assert_array_equal(clim.means, damped.means)
    times = weather[TIME].values
    got = clim.predict(_values(weather), times, np.array([200]))[0]
    from forecast.models.baselines import slot_of

    valid = times[200] + np.arange(1, H + 1) * (times[1] - times[0])
    np.testing.assert_allclose(got, clim.means[slot_of(valid, clim.step, clim.period)], atol=1e-4)


def test_shrink_weights_closed_form():
    rng = np.random.default_rng(0)
    c = rng.normal(size=(40, 4, 2, 3, 5))
    g = c + rng.normal(size=c.shape)
    # target = c + w (g - c) exactly, per lead and channel; w outside [0, 1] is clipped
    w = np.array([[0.0, 0.3, 1.0, 1.7], [-0.5, 0.5, 0.9, 0.2]])  # (channel, lead)
    target = c + w.T[None, :, :, None, None] * (g - c)
    np.testing.assert_allclose(shrink_weights(target, g, c), np.clip(w, 0, 1), atol=1e-12)
    # with noise independent of g - c the estimate stays near w; a NaN target is skipped
    noisy = target + 0.1 * rng.normal(size=c.shape)
    noisy[0, 0, 0, 0, 0] = np.nan
    np.testing.assert_allclose(shrink_weights(noisy, g, c), np.clip(w, 0, 1), atol=0.03)
    # a lead where the guess equals the climatology keeps w = 1
    g[:, 2] = c[:, 2]
    assert shrink_weights(target, g, c)[0, 2] == 1.0


def test_gp_clim_fits_its_weights_on_validation(weather, train, one_thread):
    valid = weather.isel({TIME: slice(170, 240)})
    fg = fit_first_guess("gp-clim", train, context=K, horizon=H, seed=1, valid=valid)
    assert fg.kind == "gp-clim" and fg.weights.shape == (1, H) and fg.gp.gp.seed == 1
    assert np.all((fg.weights >= 0) & (fg.weights <= 1))
    # the weights are shrink_weights of the fitted parts on every validation window
    v, t = _values(valid), valid[TIME].values
    o = np.arange(fg.gp.gp.n_lags, len(v) - H)
    target = np.stack([v[i + 1 : i + 1 + H] for i in o])
    g, c = fg.gp.predict(v, t, o), fg.climatology.predict(v, t, o)
    want = shrink_weights(target.astype(np.float64), g.astype(np.float64), c.astype(np.float64))
    np.testing.assert_allclose(fg.weights, want, atol=1e-6)
    # and the guess is c + w (g - c) on any window
    args = (_values(weather), weather[TIME].values, np.array([200, 230]))
    g, c = fg.gp.predict(*args), fg.climatology.predict(*args)
    np.testing.assert_allclose(
        fg.predict(*args), c + fg.weights.T[None, :, :, None, None] * (g - c), atol=1e-4
    )
    with pytest.raises(ForecastError, match="fits its shrinkage weights on validation data"):
        fit_first_guess("gp-clim", train, context=K, horizon=H)
    with pytest.raises(ForecastError, match="validation part has 10 steps"):
        fit_first_guess(
            "gp-clim", train, context=K, horizon=H, valid=weather.isel({TIME: slice(170, 180)})
        )


@pytest.mark.parametrize("method", ["svgp", "exact"])
def test_gp_matches_forecaster_mean(method, weather, train, gp_guess):
    if method == "exact":
        gp = GaussianProcessForecaster(context=K, horizon=H, method="exact", n_train=128)
        gp_guess = GPFirstGuess(gp.fit(train))
    times = weather[TIME].values
    issues = [50, 120, 231]
    out = gp_guess.predict(_values(weather), times, np.array(issues))
    for k, i in enumerate(issues):
        mean, _ = gp_guess.gp.predict_gaussian(context_of(weather, times[i], K))
        np.testing.assert_allclose(out[k, :, 0], mean["t2m"].values, rtol=0, atol=1e-4)
    # batching over (origin, point) pairs does not change the result
    small = GPFirstGuess(gp_guess.gp)
    small.block, small.chunk = 50, 17
    np.testing.assert_allclose(
        small.predict(_values(weather), times, np.array(issues)), out, rtol=0, atol=1e-4
    )


def test_gp_needs_lagged_steps(weather, gp_guess):
    with pytest.raises(ForecastError, match="origins must lie in"):
        gp_guess.predict(_values(weather), weather[TIME].values, np.array([1]))


def test_fit_gp_default_settings():
    ds = synthetic_traffic(seed=0, n_sensors=8, days=1.5, n_corridors=2)
    fg = fit_first_guess("gp", ds.isel({TIME: slice(0, 300)}), context=K, horizon=4, seed=3)
    assert fg.kind == "gp" and fg.gp.method == "svgp" and fg.gp.seed == 3
    out = fg.predict(ds["speed"].values[:, None], ds[TIME].values, np.array([320, 350]))
    assert out.shape == (2, 4, 1, 8) and np.isfinite(out).all()


@pytest.mark.parametrize("kind", FIRST_GUESSES)
def test_state_restore_round_trip(kind, weather, train, gp_guess, tmp_path):
    fg = _guess(kind, train, gp_guess)
    arrays, meta = fg.state()
    # through a real checkpoint file, with the prefix a model uses
    path = tmp_path / "fg.safetensors"
    save_checkpoint(path, {f"first_guess.{k}": v for k, v in arrays.items()}, {"first_guess": meta})
    stored, back_meta = load_checkpoint(path)
    sub = {k[len("first_guess.") :]: v for k, v in stored.items()}
    back = restore_first_guess(kind, sub, back_meta["first_guess"])
    assert back.kind == kind
    args = (_values(weather), weather[TIME].values, np.array([40, 200]))
    np.testing.assert_array_equal(back.predict(*args), fg.predict(*args))


def test_unknown_kind_and_missing_state(train):
    with pytest.raises(
        ForecastError,
        match=r"unknown first guess 'nope'.*diurnal, damped, climatology, gp, gp-clim",
    ):
        fit_first_guess("nope", train, context=K, horizon=H)
    with pytest.raises(ForecastError, match="kind must be one of diurnal, damped, climatology"):
        DiurnalFirstGuess("gp", np.zeros((24, 1, 2)), np.ones((1, H)), "1D", "1h")
    with pytest.raises(ForecastError, match="unknown first guess"):
        restore_first_guess("nope", {}, {})
    with pytest.raises(ForecastError, match="lacks"):
        restore_first_guess("damped", {}, {"period": "1D", "step": "1h"})


# -- out-of-fold first guesses of the training windows (first_guess_folds) ----------------


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
