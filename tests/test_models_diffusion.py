"""ConditionalDiffusion: ensembles, seeds, checkpoints, latent space, bad input, skill."""

from __future__ import annotations

import numpy as np
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


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # the CI machine has 2 shared cores: one thread avoids oversubscription
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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
