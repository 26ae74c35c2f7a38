"""ConditionalDiffusion: ensembles, seeds, checkpoints, latent space, bad input, skill."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

from forecast.checkpoint import load_checkpoint, save_checkpoint
from forecast.data.synthetic import synthetic_traffic, synthetic_weather
from forecast.data.windows import context_of, target_of
from forecast.dims import INIT_TIME, LAT, LEAD_TIME, LON, MEMBER, NODE, PATH, TIME, VALID_TIME
from forecast.errors import ForecastError
from forecast.models import MODELS, load_model
from forecast.models.diffusion import ConditionalDiffusion
from forecast.sampling.paths import latent_path

K, H = 6, 8


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def weather():
    return synthetic_weather(seed=0, n_lat=10, n_lon=14, days=10)


@pytest.fixture(scope="module")
def model(weather, one_thread):
    m = ConditionalDiffusion.tiny(K, H)
    return m.fit(weather.isel({TIME: slice(0, 170)}), weather.isel({TIME: slice(170, 220)}))


@pytest.fixture(scope="module")
def issue(weather):
    return weather[TIME].values[225]


@pytest.fixture(scope="module")
def ctx(weather, issue):
    return context_of(weather, issue, K)


def test_registered():
    assert MODELS.get("diffusion") is ConditionalDiffusion


def test_ensemble_shapes_and_coords(model, ctx, issue):
    ens = model.sample(ctx, 5, seed=0)
    assert ens["t2m"].dims == (MEMBER, LEAD_TIME, LAT, LON)
    assert ens["t2m"].shape == (5, H, 10, 14)
    assert ens[MEMBER].values.tolist() == list(range(5))
    assert ens[INIT_TIME].values == issue
    steps = (ens[LEAD_TIME].values / np.timedelta64(1, "h")).tolist()
    assert steps == list(range(1, H + 1))
    np.testing.assert_array_equal(ens[VALID_TIME].values, issue + ens[LEAD_TIME].values)
    np.testing.assert_array_equal(ens[LAT].values, ctx[LAT].values)
    assert ens["t2m"].attrs["units"] == "K"
    assert np.isfinite(ens["t2m"].values).all()
    # physical units, near the last observed field, members differ
    last = ctx["t2m"].isel({TIME: -1})
    assert float(abs(ens["t2m"].isel({LEAD_TIME: 0}) - last).mean()) < 5.0
    assert float(ens["t2m"].std(MEMBER).mean()) > 0


def test_same_seed_same_members_any_batch(model, ctx):
    a = model.sample(ctx, 6, seed=3)["t2m"].values
    small = ConditionalDiffusion.with_sampler(model)
    small.member_batch = 2
    b = small.sample(ctx, 4, seed=3)["t2m"].values
    # identical up to float32 rounding of the convolutions (kernels may differ by batch size)
    np.testing.assert_allclose(b, a[:4], rtol=0, atol=1e-4)
    c = model.sample(ctx, 6, seed=3)["t2m"].values
    np.testing.assert_array_equal(a, c)
    d = model.sample(ctx, 6, seed=4)["t2m"].values
    assert np.abs(d - a).mean() > 1e-2


def test_sampler_switch_is_config(model, ctx):
    ddim = model.with_sampler("ddim", 12).sample(ctx, 3, seed=0)["t2m"].values
    dpm = model.with_sampler("dpmpp-2m", 12).sample(ctx, 3, seed=0)["t2m"].values
    ddpm = model.with_sampler("ddpm", 12).sample(ctx, 3, seed=0)["t2m"].values
    assert np.isfinite(ddpm).all()
    # the two ODE solvers agree closely from the same noise; ancestral sampling does not
    assert np.abs(ddim - dpm).mean() < np.abs(ddim - ddpm).mean()


def test_save_load_identical(model, ctx, tmp_path):
    path = tmp_path / "m.safetensors"
    model.save(path)
    back = load_model(path)
    assert isinstance(back, ConditionalDiffusion)
    xr.testing.assert_identical(back.sample(ctx, 4, seed=1), model.sample(ctx, 4, seed=1))
    assert back.config() == model.config()


def test_inversion_round_trip(model, weather, ctx, issue):
    target = target_of(weather, issue, H)
    z = model.encode(ctx, target)
    assert z.shape == (1, 1, H, 10, 14)
    rec = model.decode(ctx, z)["t2m"].values[0]
    anomaly = target["t2m"].values - ctx["t2m"].values[-1]
    frac = np.abs(rec - target["t2m"].values).mean() / np.abs(anomaly).mean()
    assert frac < 0.01


def test_decode_prior_is_deterministic_and_matches_ddim(model, ctx):
    z = model.prior(ctx, 3, seed=5)
    assert z.shape == (3, 1, H, 10, 14)
    torch.testing.assert_close(z, model.prior(ctx, 3, seed=5))
    a, b = model.decode(ctx, z), model.decode(ctx, z)
    xr.testing.assert_identical(a, b)
    ddim = model.with_sampler("ddim", model.latent_nfe).sample(ctx, 3, seed=5)
    np.testing.assert_allclose(a["t2m"].values, ddim["t2m"].values, atol=1e-4)


def test_latent_path_endpoints(model, ctx):
    z = model.prior(ctx, 2, seed=7)
    path = latent_path(model, ctx, z[0], z[1], steps=5)
    assert path["t2m"].dims == (PATH, LEAD_TIME, LAT, LON)
    ends = model.decode(ctx, z)
    np.testing.assert_allclose(path["t2m"].values[0], ends["t2m"].values[0], atol=1e-4)
    np.testing.assert_allclose(path["t2m"].values[-1], ends["t2m"].values[1], atol=1e-4)


# -- bad input ------------------------------------------------------------------------------
def test_short_context(model, ctx):
    with pytest.raises(ForecastError, match="needs exactly 6"):
        model.sample(ctx.isel({TIME: slice(1, None)}), 2)


def test_nan_in_context_named(model, ctx):
    bad = ctx.copy(deep=True)
    bad["t2m"][2, 3, 4] = np.nan
    with pytest.raises(ForecastError, match=r"NaN: variable 't2m' at time=.*lat=.*lon=") as err:
        model.sample(bad, 2)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("bad", [0, -2, 1.5])
def test_bad_nfe(model, bad):
    with pytest.raises(ForecastError, match="NFE must be an integer >= 1"):
        model.with_sampler("ddim", bad)
    with pytest.raises(ForecastError, match="NFE"):
        ConditionalDiffusion(context=K, horizon=H, nfe=bad)


@pytest.mark.parametrize("bad", [0, -1])
def test_bad_members(model, ctx, bad):
    with pytest.raises(ForecastError, match="n_members"):
        model.sample(ctx, bad)
    with pytest.raises(ForecastError, match="n_members"):
        model.prior(ctx, bad)


def test_other_grid_refused(model):
    other = synthetic_weather(seed=1, n_lat=8, n_lon=14, days=1)
    with pytest.raises(ForecastError):
        model.sample(other.isel({TIME: slice(0, K)}), 2)


def test_other_variables_refused(model, ctx):
    renamed = ctx.rename({"t2m": "u10"})
    with pytest.raises(ForecastError):
        model.sample(renamed, 2)


def test_incompatible_checkpoint_version(model, tmp_path):
    path = tmp_path / "m.safetensors"
    model.save(path)
    arrays, meta = load_checkpoint(path)
    meta["state"]["format"] = 999
    save_checkpoint(path, arrays, {k: v for k, v in meta.items() if k not in ("format", "version")})
    with pytest.raises(ForecastError, match="model format 999"):
        load_model(path)


def test_bad_config():
    with pytest.raises(ForecastError, match="target"):
        ConditionalDiffusion(context=K, horizon=H, target="delta")
    with pytest.raises(ForecastError, match="valid names"):
        ConditionalDiffusion(context=K, horizon=H, sampler="euler")
    with pytest.raises(ForecastError, match="unknown key"):
        ConditionalDiffusion(context=K, horizon=H, train={"epoch": 3})


def test_unfitted(ctx):
    with pytest.raises(ForecastError, match="not fitted"):
        ConditionalDiffusion(context=K, horizon=H).sample(ctx, 2)


# -- sensor networks ------------------------------------------------------------------------
def test_graph_layout_round_trip(tmp_path):
    ds = synthetic_traffic(seed=0, n_sensors=12, days=1.5, n_corridors=2)
    m = ConditionalDiffusion.tiny(6, 4).fit(ds.isel({TIME: slice(0, 300)}))
    ctx = context_of(ds, ds[TIME].values[350], 6)
    ens = m.sample(ctx, 3, seed=0)
    assert ens["speed"].dims == (MEMBER, LEAD_TIME, NODE)
    assert ens["speed"].shape == (3, 4, 12)
    assert np.isfinite(ens["speed"].values).all()
    m.save(tmp_path / "g.safetensors")
    back = load_model(tmp_path / "g.safetensors")
    xr.testing.assert_identical(back.sample(ctx, 3, seed=0), ens)
    z = m.encode(ctx, target_of(ds, ds[TIME].values[350], 4))
    assert z.shape == (1, 1, 4, 12)


# -- skill ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_tiny_model_beats_climatology(weather):
    from forecast.data.windows import make_windows
    from forecast.models.baselines import ClimatologyEnsemble
    from forecast.scoring.kernels import crps_ensemble_np

    train = weather.isel({TIME: slice(0, 190)})
    m = ConditionalDiffusion(
        context=K,
        horizon=H,
        base=16,
        mults=(1, 2),
        emb_dim=32,
        nfe=8,
        train={
            "epochs": 40,
            "max_steps": 80,
            "batch_size": 16,
            "eval_every": 0,
            "progress": False,
            "lr": 3e-3,
            "warmup_steps": 10,
        },
    ).fit(train)
    clim = ClimatologyEnsemble(context=K, horizon=H).fit(train)
    windows = make_windows(weather, K, H, target_range=(190, weather.sizes[TIME]), stride=6)
    scores = {"diffusion": [], "climatology": []}
    for t in windows.issue_times(weather):
        ctx = context_of(weather, t, K)
        obs = target_of(weather, t, H)["t2m"].values
        for name, mod in (("diffusion", m), ("climatology", clim)):
            fct = mod.sample(ctx, 16, seed=0)["t2m"].values
            scores[name].append(crps_ensemble_np(obs, np.moveaxis(fct, 0, -1)).mean())
    d, c = np.mean(scores["diffusion"]), np.mean(scores["climatology"])
    assert d < 0.8 * c, (d, c)


# -- first-guess residual target ---------------------------------------------------------------
def _tiny(context: int = K, horizon: int = H, **kw) -> ConditionalDiffusion:
    """The tiny test configuration with some keywords changed (through the constructor)."""
    return ConditionalDiffusion(**{**ConditionalDiffusion.tiny(context, horizon).config(), **kw})


def _first_guess_model(ds: xr.Dataset, kind: str = "diurnal") -> ConditionalDiffusion:
    """A residual-target model with only its normalizer and first guess fitted (no network)."""
    from forecast.data.normalize import Normalizer
    from forecast.models.first_guess import fit_first_guess

    m = ConditionalDiffusion(context=K, horizon=H, target="residual", first_guess=kind)
    m.variables = ["t2m"]
    m.step = pd.Timedelta(ds[TIME].values[1] - ds[TIME].values[0])
    m.normalizer = Normalizer.fit(ds)
    m.fg = fit_first_guess(kind, ds, context=K, horizon=H)
    return m


def _window_tensors(m: ConditionalDiffusion, ds: xr.Dataset, issue_index: list[int]):
    from forecast.data.torch import to_array

    values = m._normalized(ds)  # (time, channel, *space)
    ctx = torch.stack([torch.from_numpy(values[i - K + 1 : i + 1]) for i in issue_index])
    tgt = torch.stack([torch.from_numpy(values[i + 1 : i + 1 + H]) for i in issue_index])
    ctx = ctx.transpose(1, 2)
    guess = m.first_guess_of(to_array(ds), ds[TIME].values, np.array(issue_index))
    off = m.first_guess_offset(guess, ctx[:, :, -1:])
    return ctx, tgt.transpose(1, 2), off


def _with_field(ds: xr.Dataset, field: np.ndarray) -> xr.Dataset:
    return ds.assign(t2m=(ds["t2m"].dims, field.astype(np.float32), ds["t2m"].attrs))


def test_first_guess_residual_exact_for_constant_field(weather):
    pattern = weather["t2m"].isel({TIME: 0}).values
    ds = _with_field(weather, np.broadcast_to(pattern, weather["t2m"].shape).copy())
    m = _first_guess_model(ds)
    ctx, tgt, off = _window_tensors(m, ds, [10, 77, 200])
    assert off.shape == (3, 1, H, 10, 14)
    np.testing.assert_allclose(off.numpy(), 0.0, atol=1e-5)
    np.testing.assert_allclose(m._x0(ctx, tgt, off).numpy(), 0.0, atol=1e-5)


def test_first_guess_residual_exact_for_a_daily_cycle():
    # a field that repeats every day: the diurnal-persistence mean forecast is the truth
    ds = synthetic_weather(seed=1, n_lat=4, n_lon=5, days=22)
    hour = (ds[TIME].values.astype("datetime64[h]").astype(np.int64) % 24).astype(float)
    shape = (1, *ds["t2m"].shape[1:])
    amp = np.random.default_rng(0).uniform(2, 6, shape)
    field = 280 + amp * np.sin(2 * np.pi * hour / 24).reshape(-1, 1, 1)
    ds = _with_field(ds, field)
    m = _first_guess_model(ds)
    idx = [30, 101, 333, 400]
    ctx, tgt, off = _window_tensors(m, ds, idx)
    assert float(off.abs().max()) > 0.5  # the first guess carries the cycle
    np.testing.assert_allclose(m._x0(ctx, tgt, off).numpy(), 0.0, atol=1e-5)
    # inverse: a zero residual decodes to the target itself
    np.testing.assert_allclose(
        m._field(ctx, torch.zeros_like(tgt), off).numpy(), tgt.numpy(), atol=1e-5
    )


@pytest.mark.parametrize("kind", ["diurnal", "damped"])
def test_zero_residual_is_the_first_guess(weather, kind):
    # zero residual == the first guess in physical units; for "diurnal" that is
    # c(slot(t + h)) + a(t), the baseline's mean forecast (its members add anomaly-persistence
    # errors around it)
    from forecast.models.baselines import DiurnalPersistenceEnsemble, slot_of

    train = weather.isel({TIME: slice(0, 170)})
    m = _first_guess_model(train, kind)
    i = 200
    ctx, _, off = _window_tensors(m, weather, [i])
    fct = m.normalizer.inverse_array(
        m._field(ctx, torch.zeros(1, 1, H, 10, 14), off).transpose(1, 2).numpy(), channel_axis=2
    )[0]
    values = weather["t2m"].values
    np.testing.assert_allclose(
        fct, m.fg.predict(values[:, None], weather[TIME].values, [i])[0], atol=2e-4
    )
    if kind == "diurnal":
        dp = DiurnalPersistenceEnsemble(context=K, horizon=H).fit(train)
        times = weather[TIME].values
        slots = slot_of(times[i] + (times[1] - times[0]) * np.arange(0, H + 1), dp.step, dp.period_)
        want = dp.means_[slots[1:]] + (values[i] - dp.means_[slots[0]])[None]
        np.testing.assert_allclose(fct, want, atol=2e-4)


@pytest.fixture(scope="module")
def residual_model(weather, one_thread):
    m = _tiny(target="residual")
    return m.fit(weather.isel({TIME: slice(0, 170)}), weather.isel({TIME: slice(170, 220)}))


def test_residual_save_load_keeps_first_guess(residual_model, ctx, tmp_path):
    path = tmp_path / "r.safetensors"
    residual_model.save(path)
    back = load_model(path)
    assert back.target == "residual" and back.first_guess == "diurnal"
    np.testing.assert_array_equal(back.fg.means, residual_model.fg.means)
    assert back.fg.period == residual_model.fg.period
    xr.testing.assert_identical(back.sample(ctx, 3, seed=2), residual_model.sample(ctx, 3, seed=2))
    # the first guess is part of the checkpoint: without it loading fails clearly
    arrays, meta = load_checkpoint(path)
    assert meta["state"]["first_guess"]["kind"] == "diurnal"
    assert {"first_guess.means", "first_guess.rho"} <= set(arrays)
    keep = {k: v for k, v in meta.items() if k not in ("format", "version")}
    save_checkpoint(path, {k: v for k, v in arrays.items() if k != "first_guess.means"}, keep)
    with pytest.raises(ForecastError, match="state lacks 'means'"):
        load_model(path)
    arrays = {k: v for k, v in arrays.items() if not k.startswith("first_guess.")}
    save_checkpoint(path, arrays, keep)
    with pytest.raises(ForecastError, match="lacks its first guess"):
        load_model(path)


def test_residual_inversion_round_trip(residual_model, weather, ctx, issue):
    tgt = target_of(weather, issue, H)
    rec = residual_model.decode(ctx, residual_model.encode(ctx, tgt))["t2m"].values[0]
    anomaly = np.abs(tgt["t2m"].values - ctx["t2m"].values[-1]).mean()
    assert np.abs(rec - tgt["t2m"].values).mean() / anomaly < 0.05


def test_residual_offset_needed():
    m = ConditionalDiffusion(context=K, horizon=H, target="residual")
    assert m.first_guess == "diurnal"  # the default first guess of the residual target
    times = np.array(["2021-01-01T00"], dtype="datetime64[ns]")
    with pytest.raises(ForecastError, match="no first guess"):
        m.first_guess_of(np.zeros((1, 1, 2, 2)), times, np.array([0]))
    with pytest.raises(ForecastError, match="needs the first-guess offset"):
        m._field(torch.zeros(1, 1, K, 2, 2), torch.zeros(1, 1, H, 2, 2))
    change = ConditionalDiffusion(context=K, horizon=H)
    assert change.first_guess is None
    assert change.first_guess_of(np.zeros((1, 1, 2, 2)), times, np.array([0])) is None
    assert change.first_guess_offset(None, None) is None


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"damp_anomaly": True}, "damp_anomaly=True needs target='residual'"),
        ({"first_guess": "gp"}, "first_guess='gp' needs target='residual'"),
        ({"target": "residual", "first_guess": "ecmwf"}, "unknown first_guess 'ecmwf'"),
        ({"target": "residual", "damp_anomaly": True, "first_guess": "gp"}, "drop damp_anomaly"),
        ({"condition_on_first_guess": True}, "condition_on_first_guess=True needs a first"),
    ],
)
def test_bad_first_guess_options(kw, match):
    with pytest.raises(ForecastError, match=match):
        ConditionalDiffusion(context=K, horizon=H, **kw)


def test_damp_anomaly_is_the_damped_first_guess():
    m = ConditionalDiffusion(context=K, horizon=H, target="residual", damp_anomaly=True)
    assert m.first_guess == "damped"
    again = ConditionalDiffusion(**m.config())  # the config round-trips
    assert (again.first_guess, again.damp_anomaly) == ("damped", True)


# -- spread calibration --------------------------------------------------------------------------
def test_spread_factor_scales_member_departures(model, ctx):
    import copy

    half = copy.copy(model)
    half.spread_scale = np.full((1, H), 0.5)
    last = ctx["t2m"].values[-1]
    a = model.sample(ctx, 4, seed=5)["t2m"].values - last
    b = half.sample(ctx, 4, seed=5)["t2m"].values - last
    np.testing.assert_allclose(b, 0.5 * a, atol=1e-4)


def _calibration_draws(m, valid, n_issues: int, members: int):
    """Truth, last step and member departures ``(W, C, H, *s[, M])`` of the windows that
    calibrate_spread_on picks, recomputed without it (uncalibrated model)."""
    data = m._window_dataset(valid)
    pick = np.unique(np.linspace(0, len(data) - 1, n_issues).astype(int))
    saved, m.spread_scale = m.spread_scale, None
    obs, lasts, devs = [], [], []
    for k in pick:
        item = data[int(k)]
        c = item["context"].transpose(0, 1).unsqueeze(0)
        cond = {"context": c, "calendar": item["calendar"].unsqueeze(0)}
        x0 = m._generate(m.net, cond, members, seed=int(k))
        last = c[:, :, -1:].numpy()
        devs.append(np.moveaxis(m._field(c, x0).numpy() - last, 0, -1))
        lasts.append(np.broadcast_to(last[0], devs[-1].shape[:-1]))
        obs.append(item["target"].transpose(0, 1).numpy())
    m.spread_scale = saved
    return np.stack(obs), np.stack(lasts), np.stack(devs)


def test_calibrate_spread_picks_from_grid_and_round_trips(weather, tmp_path):
    m = ConditionalDiffusion.tiny(K, H)
    m.fit(weather.isel({TIME: slice(0, 170)}))
    valid = weather.isel({TIME: slice(170, 220)})
    one = m.calibrate_spread_on(valid, n_issues=2, n_members=4, factors=[1.0])
    np.testing.assert_array_equal(one, np.ones((1, H)))
    f = m.calibrate_spread_on(valid, n_issues=3, n_members=4, factors=[0.5, 1.0, 1.5])
    assert f.shape == (1, H)
    assert set(np.unique(f)) <= {0.5, 1.0, 1.5}
    # the chosen factor is the CRPS minimizer: recompute one lead by brute force
    from forecast.scoring.kernels import crps_ensemble_np

    obs, last, dev = _calibration_draws(m, valid, 3, 4)
    scores = [
        crps_ensemble_np(obs, last[..., None] + fac * dev)[:, 0, H - 1].mean()
        for fac in (0.5, 1.0, 1.5)
    ]
    assert f[0, H - 1] == (0.5, 1.0, 1.5)[int(np.argmin(scores))]
    m.save(tmp_path / "c.safetensors")
    back = load_model(tmp_path / "c.safetensors")
    np.testing.assert_array_equal(back.spread_scale, f)
    ctx = context_of(weather, weather[TIME].values[225], K)
    xr.testing.assert_identical(back.sample(ctx, 2, seed=0), m.sample(ctx, 2, seed=0))


def test_spread_skill_objective_matches_the_scoring_module(weather, tmp_path):
    from forecast.scoring import spread_skill_ratio

    config = ConditionalDiffusion.tiny(K, H).config()
    with pytest.raises(ForecastError, match="calibration_objective must be one of"):
        ConditionalDiffusion(**{**config, "calibration_objective": "rmse"})
    m = ConditionalDiffusion(**{**config, "calibration_objective": "spread-skill"})
    m.fit(weather.isel({TIME: slice(0, 170)}))
    valid = weather.isel({TIME: slice(170, 220)})
    grid = (0.5, 1.0, 2.0, 4.0)
    f = m.calibrate_spread_on(valid, n_issues=3, n_members=4, factors=grid)
    obs, last, dev = _calibration_draws(m, valid, 3, 4)
    dims = ("w", "c", "h", "y", "x")
    for lead in range(H):
        ssr = [
            float(
                spread_skill_ratio(
                    xr.DataArray(obs[:, :, lead], dims=dims[:2] + dims[3:]),
                    xr.DataArray(
                        last[:, :, lead, ..., None] + fac * dev[:, :, lead],
                        dims=(*dims[:2], *dims[3:], "member"),
                    ),
                )
            )
            for fac in grid
        ]
        assert f[0, lead] == grid[int(np.argmin(np.abs(np.log(ssr))))]
    m.save(tmp_path / "s.safetensors")
    assert load_model(tmp_path / "s.safetensors").calibration_objective == "spread-skill"


def test_calibrate_spread_needs_validation(weather):
    m = ConditionalDiffusion.tiny(K, H)
    m.calibrate_spread = True
    with pytest.raises(ForecastError, match="calibrate_spread"):
        m.fit(weather.isel({TIME: slice(0, 170)}))


@pytest.mark.parametrize("keep", ["best", "last"])
def test_fit_with_calibration_writes_factors_to_the_kept_checkpoint(weather, tmp_path, keep):
    m = ConditionalDiffusion.tiny(K, H)
    m.calibrate_spread = True
    train = {**m.train, "val_issue_times": 2, "keep": keep}
    m.train_config = m.train_config.__class__.from_dict(train)
    m.fit(
        weather.isel({TIME: slice(0, 170)}), weather.isel({TIME: slice(170, 220)}), out_dir=tmp_path
    )
    assert m.spread_scale is not None and m.spread_scale.shape == (1, H)
    kept = load_model(tmp_path / f"{keep}.safetensors")
    np.testing.assert_array_equal(kept.spread_scale, m.spread_scale)
    ctx = context_of(weather, weather[TIME].values[225], K)
    xr.testing.assert_identical(kept.sample(ctx, 2, seed=0), m.sample(ctx, 2, seed=0))


def test_graph_layout_residual_damped(tmp_path):
    ds = synthetic_traffic(seed=0, n_sensors=12, days=1.5, n_corridors=2)
    m = _tiny(6, 4, target="residual", damp_anomaly=True)
    m.fit(ds.isel({TIME: slice(0, 300)}))
    assert m.fg.means.shape[1:] == (1, 12) and m.fg.rho.shape == (1, 4)
    ctx = context_of(ds, ds[TIME].values[350], 6)
    ens = m.sample(ctx, 3, seed=0)
    assert ens["speed"].shape == (3, 4, 12) and np.isfinite(ens["speed"].values).all()
    m.save(tmp_path / "g.safetensors")
    xr.testing.assert_identical(load_model(tmp_path / "g.safetensors").sample(ctx, 3, seed=0), ens)


def test_scale_points_per_point_std(weather, tmp_path):
    m = _tiny(target="residual", first_guess="damped", scale_points=True)
    m.fit(weather.isel({TIME: slice(0, 170)}))
    assert m.lead_scale.shape == (1, H, 10, 14)
    assert np.ptp(m.lead_scale[0, -1]) > 0  # differs between points
    # calibration factors (channel, lead) broadcast over the points
    ctx = context_of(weather, weather[TIME].values[225], K)
    a = m.sample(ctx, 3, seed=1)["t2m"].values
    m.spread_scale = np.full((1, H), 2.0)
    b = m.sample(ctx, 3, seed=1)["t2m"].values
    m.spread_scale = None
    base = m.normalizer.inverse_array(
        m._field(
            m._cond(ctx["t2m"].values[:, None], ctx[TIME].values)["context"],
            torch.zeros(1, 1, H, 10, 14),
            m._cond(ctx["t2m"].values[:, None], ctx[TIME].values)["offset"],
        )
        .transpose(1, 2)
        .numpy(),
        channel_axis=2,
    )[:, :, 0]
    np.testing.assert_allclose(b - base, 2.0 * (a - base), atol=2e-3)
    m.save(tmp_path / "p.safetensors")
    back = load_model(tmp_path / "p.safetensors")
    np.testing.assert_allclose(back.lead_scale, m.lead_scale)
    xr.testing.assert_identical(back.sample(ctx, 2, seed=0), m.sample(ctx, 2, seed=0))


def test_validation_crps_is_the_training_validator_on_the_current_weights(model, weather):
    valid = weather.isel({TIME: slice(170, 220)})
    score = model.validation_crps(valid)
    assert score == model._validator(valid)(model.net) and np.isfinite(score) and score > 0
    with pytest.raises(ForecastError, match="no complete window"):
        model.validation_crps(weather.isel({TIME: slice(0, K + H - 1)}))


# -- stochastic sampler: members fixed by seed -------------------------------------------------
def test_ddpm_same_seed_same_members_any_batch(model, ctx):
    ddpm = model.with_sampler("ddpm", nfe=6)
    a = ddpm.sample(ctx, 6, seed=3)["t2m"].values
    # ancestral sampling draws fresh noise: not the members of the default (ODE) sampler
    ode = model.with_sampler(nfe=6).sample(ctx, 6, seed=3)["t2m"].values
    assert np.abs(a - ode).mean() > 1e-2
    for member_batch, n in ((2, 4), (4, 6)):  # even and uneven splits of the members
        small = ddpm.with_sampler()
        small.member_batch = member_batch
        b = small.sample(ctx, n, seed=3)["t2m"].values
        # identical up to float32 rounding of the convolutions (kernels may differ by batch size)
        np.testing.assert_allclose(b, a[:n], rtol=0, atol=1e-4, err_msg=f"batch {member_batch}")
    np.testing.assert_array_equal(a, ddpm.sample(ctx, 6, seed=3)["t2m"].values)
    d = ddpm.sample(ctx, 6, seed=4)["t2m"].values
    assert np.abs(d - a).mean() > 1e-2


# -- incompatible data: one-line messages that name the mismatch ---------------------------------
def _refusal(m, context) -> str:
    """The message of the ForecastError that sampling ``context`` raises; checks it is one line."""
    with pytest.raises(ForecastError) as err:
        m.sample(context, 2)
    message = str(err.value)
    assert "\n" not in message, message
    return message


def test_other_grid_refused_with_one_line_naming_the_shape(model, ctx):
    import re

    other = synthetic_weather(seed=1, n_lat=8, n_lon=14, days=1)
    message = _refusal(model, other.isel({TIME: slice(0, K)}))
    assert re.match(
        r"data is 8 x 14 \(lat x lon\) but the model expects 10 x 14 \(lat x lon\); "
        r".*train a new model on this data$",
        message,
    ), message
    # same shape, other coordinates: the first differing latitude is named
    shifted = ctx.assign_coords({LAT: ctx[LAT].values + 0.5})
    got, want = shifted[LAT].values[0], ctx[LAT].values[0]
    message = _refusal(model, shifted)
    assert message.startswith(
        f"lat[0] is {got:g} in the data but {want:g} in the model; regrid the data"
    ), message


def test_other_variables_refused_with_one_line_naming_them(model, ctx):
    message = _refusal(model, ctx.rename({"t2m": "u10"}))
    assert message.startswith(
        "data variables [u10] do not match the model [t2m] (missing t2m); "
        "open the data with variable=['t2m']"
    ), message
    message = _refusal(model, ctx.assign(u10=ctx["t2m"]))
    assert message.startswith(
        "data variables [t2m, u10] do not match the model [t2m] (unexpected u10)"
    ), message


def test_other_sensors_refused_with_one_line_naming_them():
    ds = synthetic_traffic(seed=0, n_sensors=12, days=1.5, n_corridors=2)
    m = ConditionalDiffusion.tiny(6, 4).fit(ds.isel({TIME: slice(0, 300)}))
    ctx = context_of(ds, ds[TIME].values[350], 6)
    assert m.sample(ctx, 2, seed=0)["speed"].shape == (2, 4, 12)  # the training sensors pass
    swap = [1, 0, *range(2, 12)]
    renamed = [f"X{i:03d}" for i in range(12)]
    cases = {
        "reordered": (
            ctx.isel({NODE: swap, "node_j": swap}),
            "sensor 0 is 'S001' in the data but 'S000' in the model (2 sensors differ); "
            "select and order the sensors as in training",
        ),
        "other ids": (
            ctx.assign_coords({NODE: renamed, "node_j": renamed}),
            "sensor 0 is 'X000' in the data but 'S000' in the model (12 sensors differ); ",
        ),
        "fewer": (
            ctx.isel({NODE: slice(0, 10), "node_j": slice(0, 10)}),
            "data is 10 (node) but the model expects 12 (node); ",
        ),
    }
    for name, (context, start) in cases.items():
        message = _refusal(m, context)
        assert message.startswith(start), (name, message)
