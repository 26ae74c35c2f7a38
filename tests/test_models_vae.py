"""Tests of the conditional VAE forecaster (forecast.models.vae) on small synthetic data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from forecast.checkpoint import load_checkpoint, save_checkpoint
from forecast.dims import LEAD_TIME, MEMBER, PATH, LatentForecaster
from forecast.errors import ForecastError
from forecast.models import MODELS, load_model
from forecast.models.vae import ConditionalVAE, fair_crps, gaussian_kl
from forecast.sampling import latent_path

torch.set_num_threads(1)


# -- fixtures ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def weather(synthetic_weather_ds):
    return synthetic_weather_ds


@pytest.fixture(scope="module")
def grid_model(weather):
    """Tiny grid VAE, context 6 / horizon 6, trained 20 steps on the first 400 hours; spread
    calibrated on the next 104."""
    return ConditionalVAE.tiny(6, 6).fit(
        weather.isel(time=slice(0, 400)), weather.isel(time=slice(400, 504))
    )


@pytest.fixture(scope="module")
def graph_model(synthetic_traffic_ds):
    return ConditionalVAE.tiny(12, 12).fit(synthetic_traffic_ds.isel(time=slice(0, 1400)))


def _ctx(ds, i, k):
    from forecast.data.windows import context_of

    return context_of(ds, i, k)


# -- loss pieces against closed forms ------------------------------------------------------------
def test_gaussian_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mu_q, ls_q, mu_p, ls_p = (torch.randn(50, generator=g) for _ in range(4))
    ref = torch.distributions.kl_divergence(
        torch.distributions.Normal(mu_q, ls_q.exp()), torch.distributions.Normal(mu_p, ls_p.exp())
    )
    torch.testing.assert_close(gaussian_kl(mu_q, ls_q, mu_p, ls_p), ref, rtol=1e-5, atol=1e-6)


def test_fair_crps_matches_reference_kernel():
    from forecast.scoring.kernels import crps_ensemble_np

    rng = np.random.default_rng(1)
    samples = rng.normal(size=(3, 5, 7))
    obs = rng.normal(size=(3, 7))
    ours = fair_crps(torch.from_numpy(samples), torch.from_numpy(obs)).numpy()
    ref = crps_ensemble_np(obs, np.moveaxis(samples, 1, -1), fair=True)
    np.testing.assert_allclose(ours, ref, rtol=1e-10)
    with pytest.raises(ForecastError, match="at least 2 members"):
        fair_crps(torch.zeros(1, 1, 3), torch.zeros(1, 3))


def test_kl_annealing_and_free_bits():
    m = ConditionalVAE(context=2, horizon=2, beta=2.0, kl_warmup=100, free_bits=0.5)
    assert [m.beta_at(s) for s in (0, 50, 100, 1000)] == [0.0, 1.0, 2.0, 2.0]
    kl_units = torch.tensor([0.1, 0.2, 3.0], requires_grad=True)
    terms = {"nll": torch.zeros(()), "crps": torch.zeros(()), "kl_units": kl_units, "n": 10}
    loss = m.total_loss(terms, step=100)
    # (0.5 + 0.5 + 3.0) / 10 elements * beta 2 = 0.8
    assert float(loss.detach()) == pytest.approx(0.8)
    loss.backward()
    # units below the free bits get no gradient (they may carry information for free)
    assert kl_units.grad.tolist() == pytest.approx([0.0, 0.0, 0.2])


# -- protocol, shapes, seeds ---------------------------------------------------------------------
def test_registered_and_latent_forecaster(grid_model):
    assert MODELS.get("vae") is ConditionalVAE
    assert isinstance(grid_model, LatentForecaster)


def test_grid_ensemble_shapes_and_coords(grid_model, weather):
    ctx = _ctx(weather, 450, 6)
    ens = grid_model.sample(ctx, 5, seed=3)
    assert ens["t2m"].dims == (MEMBER, LEAD_TIME, "lat", "lon")
    assert ens["t2m"].shape == (5, 6, 16, 24)
    assert ens["t2m"].attrs["units"] == "K"
    np.testing.assert_array_equal(ens["lat"].values, weather["lat"].values)
    assert ens["init_time"].values == weather["time"].values[450]
    np.testing.assert_array_equal(ens["valid_time"].values, weather["time"].values[451:457])
    assert np.isfinite(ens["t2m"].values).all()
    # members differ (the prior has spread) and stay in a physical range
    assert float(ens["t2m"].std(MEMBER).mean()) > 0
    assert abs(float(ens["t2m"].mean()) - float(ctx["t2m"].isel(time=-1).mean())) < 10


def test_graph_ensemble_shapes(graph_model, synthetic_traffic_ds):
    ctx = _ctx(synthetic_traffic_ds, 1500, 12)
    ens = graph_model.sample(ctx, 4, seed=0)
    assert ens["speed"].dims == (MEMBER, LEAD_TIME, "node")
    assert ens["speed"].shape == (4, 12, 20)
    np.testing.assert_array_equal(ens["node"].values, synthetic_traffic_ds["node"].values)
    assert graph_model.latent_shape() == (2, 20)


def test_same_seed_same_members_whatever_the_batch(grid_model, weather):
    ctx = _ctx(weather, 450, 6)
    few = grid_model.sample(ctx, 3, seed=11)
    many = grid_model.sample(ctx, 7, seed=11)
    np.testing.assert_array_equal(
        grid_model.prior(ctx, 3, seed=11).numpy(), grid_model.prior(ctx, 7, seed=11)[:3].numpy()
    )
    np.testing.assert_allclose(
        few["t2m"].values, many["t2m"].isel(member=slice(0, 3)).values, rtol=0, atol=1e-4
    )
    import copy

    other = copy.copy(grid_model)
    other.member_batch = 2
    np.testing.assert_allclose(
        other.sample(ctx, 7, seed=11)["t2m"].values, many["t2m"].values, rtol=0, atol=1e-4
    )
    again = grid_model.sample(ctx, 3, seed=11)
    np.testing.assert_array_equal(again["t2m"].values, few["t2m"].values)
    diff = grid_model.sample(ctx, 3, seed=12)
    assert not np.allclose(diff["t2m"].values, few["t2m"].values)


def test_sample_is_decode_of_prior(grid_model, weather):
    ctx = _ctx(weather, 420, 6)
    eps = grid_model.prior(ctx, 4, seed=2)
    assert tuple(eps.shape) == (4, *grid_model.latent_shape())
    np.testing.assert_allclose(
        grid_model.decode(ctx, eps)["t2m"].values,
        grid_model.sample(ctx, 4, seed=2)["t2m"].values,
        rtol=0,
        atol=1e-4,
    )


def test_decode_is_deterministic_and_encode_has_latent_shape(grid_model, weather):
    from forecast.data.windows import target_of

    ctx = _ctx(weather, 430, 6)
    z = grid_model.encode(ctx, target_of(weather, 430, 6))
    assert tuple(z.shape) == (1, *grid_model.latent_shape())
    assert torch.isfinite(z).all()
    a = grid_model.decode(ctx, z)["t2m"].values
    b = grid_model.decode(ctx, z[0])["t2m"].values  # a single latent without member axis
    np.testing.assert_array_equal(a, b)


def test_spread_calibration_scales_deviations_from_the_prior_mean(grid_model, weather):
    import copy

    factor = grid_model.spread_factor
    assert factor is not None and factor.shape == (1, 6)
    assert ((factor >= 0.5) & (factor <= 4.0)).all()
    ctx = _ctx(weather, 450, 6)
    raw, doubled = copy.copy(grid_model), copy.copy(grid_model)
    raw.spread_factor = None
    doubled.spread_factor = np.full((1, 6), 2.0, np.float32)
    centre = raw.decode(ctx, torch.zeros(1, *grid_model.latent_shape()))["t2m"].values
    a = raw.sample(ctx, 3, seed=4)["t2m"].values - centre
    b = doubled.sample(ctx, 3, seed=4)["t2m"].values - centre
    np.testing.assert_allclose(b, 2 * a, rtol=0, atol=2e-3)
    # with a one-value grid the fitted factor is that value

    items = raw._calibration_items(weather.isel(time=slice(400, 504)), max_windows=4)
    np.testing.assert_array_equal(
        raw.calibrate_spread(items, members=4, grid=[1.5]), np.full((1, 6), 1.5, np.float32)
    )


# -- latent paths ---------------------------------------------------------------------------------
def test_latent_path_endpoints_equal_decoded_endpoints(grid_model, weather):
    from forecast.data.windows import target_of

    ctx = _ctx(weather, 440, 6)
    eps = grid_model.prior(ctx, 2, seed=5)
    path = latent_path(grid_model, ctx, eps[0], eps[1], steps=20)
    assert path["t2m"].dims[0] == PATH and path.sizes[PATH] == 20
    np.testing.assert_allclose(
        path["t2m"].isel(path=0).values,
        grid_model.decode(ctx, eps[0])["t2m"].isel(member=0).values,
        rtol=0,
        atol=1e-4,
    )
    np.testing.assert_allclose(
        path["t2m"].isel(path=-1).values,
        grid_model.decode(ctx, eps[1])["t2m"].isel(member=0).values,
        rtol=0,
        atol=1e-4,
    )
    # an observed scenario (encode) to a member works the same way
    z_obs = grid_model.encode(ctx, target_of(weather, 440, 6))
    mixed = latent_path(grid_model, ctx, z_obs[0], eps[0], steps=3)
    np.testing.assert_allclose(
        mixed["t2m"].isel(path=0).values,
        grid_model.decode(ctx, z_obs)["t2m"].isel(member=0).values,
        rtol=0,
        atol=1e-4,
    )
    # smooth: no step of the 20-point path jumps by more than a quarter of the end difference
    steps = np.abs(np.diff(path["t2m"].values, axis=0)).max(axis=tuple(range(1, 4)))
    ends = np.abs(path["t2m"].values[-1] - path["t2m"].values[0]).max()
    assert steps.max() / ends < 0.25


# -- checkpoints ---------------------------------------------------------------------------------
def test_save_load_identical_samples(grid_model, weather, tmp_path):
    path = tmp_path / "vae.safetensors"
    grid_model.save(path)
    loaded = load_model(path)
    assert isinstance(loaded, ConditionalVAE)
    assert loaded.config() == grid_model.config()
    ctx = _ctx(weather, 450, 6)
    np.testing.assert_array_equal(
        loaded.sample(ctx, 4, seed=9)["t2m"].values, grid_model.sample(ctx, 4, seed=9)["t2m"].values
    )
    assert loaded.training["latent"] == grid_model.training["latent"]


def test_save_load_graph(graph_model, synthetic_traffic_ds, tmp_path):
    path = tmp_path / "g.safetensors"
    graph_model.save(path)
    loaded = ConditionalVAE.load(path)
    ctx = _ctx(synthetic_traffic_ds, 1500, 12)
    np.testing.assert_array_equal(
        loaded.sample(ctx, 3, seed=1)["speed"].values,
        graph_model.sample(ctx, 3, seed=1)["speed"].values,
    )


def test_exact_resume(synthetic_traffic_ds, tmp_path):
    """Interrupted at step 6 and resumed == uninterrupted (KL annealing step included)."""
    train = synthetic_traffic_ds.isel(time=slice(0, 600))
    full = ConditionalVAE.tiny(12, 12)
    full.kl_warmup = 12
    full.fit(train, out_dir=tmp_path / "a")
    part = ConditionalVAE.tiny(12, 12)
    part.kl_warmup = 12
    part.fit(train, out_dir=tmp_path / "b", stop_after=6)
    assert part.training["stopped"] == "interrupted"
    # a resumed run may change the time limit, the display and the device setting
    cfg = ConditionalVAE.tiny(12, 12).config()
    changed = {"max_minutes": 30.0, "progress": False, "device": "cpu"}
    resumed = ConditionalVAE(**{**cfg, "train": {**cfg["train"], **changed}})
    resumed.kl_warmup = 12
    resumed.fit(train, out_dir=tmp_path / "b", resume=True)
    assert resumed.training["step"] == full.training["step"] == 20
    for (k, a), b in zip(
        full.net.state_dict().items(), resumed.net.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=k)
    with pytest.raises(ForecastError, match="another configuration"):
        ConditionalVAE.tiny(12, 6).fit(train, out_dir=tmp_path / "b", resume=True)


def test_keep_a_step(synthetic_traffic_ds, tmp_path):
    """``keep = N``: the model holds the weights of step N (those of a run interrupted there);
    a step the training never reaches is a one-line error."""
    train = synthetic_traffic_ds.isel(time=slice(0, 600))
    cfg = ConditionalVAE.tiny(12, 12).config()
    kept = ConditionalVAE(**{**cfg, "train": {**cfg["train"], "keep": 6}})
    kept.fit(train, out_dir=tmp_path / "a")
    assert kept.training["step"] == 6 and kept.training["stopped"] == "done"
    part = ConditionalVAE.tiny(12, 12).fit(train, out_dir=tmp_path / "b", stop_after=6)
    for (k, a), b in zip(
        kept.net.state_dict().items(), part.net.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=k)
    never = ConditionalVAE(**{**cfg, "train": {**cfg["train"], "keep": 20, "epochs": 1}})
    with pytest.raises(ForecastError, match=r"train.keep = 20, but training stopped at step 10"):
        never.fit(train.isel(time=slice(0, 103)), out_dir=tmp_path / "c")  # 80 windows


# -- posterior collapse guard, skill -------------------------------------------------------------
def test_active_latent_dimensions_after_short_training(grid_model, graph_model):
    for model in (grid_model, graph_model):
        usage = model.training["latent"]
        assert usage["latent_units"] == int(np.prod(model.latent_shape()))
        assert usage["active_units"] > 0
        assert len(usage["kl_per_channel"]) == model.latent_channels


@pytest.mark.slow
def test_tiny_model_beats_climatology(weather):
    """Trained ~1 min on 16x24 synthetic weather: lower CRPS than the climatology ensemble."""
    from forecast.models import ClimatologyEnsemble, forecast_many
    from forecast.scoring import crps_ensemble
    from forecast.scoring.align import obs_for

    train, valid = weather.isel(time=slice(0, 380)), weather.isel(time=slice(380, 430))
    model = ConditionalVAE(
        context=6,
        horizon=6,
        base=8,
        mults=(1, 2),
        latent_channels=2,
        emb_dim=16,
        loc_channels=2,
        kl_warmup=50,
        train={
            "epochs": 20,
            "max_steps": 150,
            "batch_size": 16,
            "eval_every": 0,
            "progress": False,
            "warmup_steps": 10,
        },
    ).fit(train, valid)
    clim = ClimatologyEnsemble(context=6, horizon=6).fit(train)
    issues = weather["time"].values[440:496:6]
    scores = {}
    for name, m in (("vae", model), ("climatology", clim)):
        ens = forecast_many(m, weather, issues, 16, seed=0)
        scores[name] = float(crps_ensemble(obs_for(ens, weather), ens)["t2m"].mean())
    assert scores["vae"] < scores["climatology"], scores


# -- bad input -----------------------------------------------------------------------------------
def _one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    return msg


def test_bad_members(grid_model, weather):
    ctx = _ctx(weather, 450, 6)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ForecastError) as err:
            grid_model.sample(ctx, bad)
        assert "n_members" in _one_line(err)
        with pytest.raises(ForecastError):
            grid_model.prior(ctx, bad)


def test_short_context(grid_model, weather):
    with pytest.raises(ForecastError) as err:
        grid_model.sample(_ctx(weather, 450, 4), 2)
    assert "exactly 6" in _one_line(err)


def test_nan_context_names_the_place(grid_model, weather):
    ctx = _ctx(weather, 450, 6).copy(deep=True)
    ctx["t2m"][2, 3, 4] = np.nan
    with pytest.raises(ForecastError) as err:
        grid_model.sample(ctx, 2)
    msg = _one_line(err)
    assert "NaN" in msg and "lat=" in msg and "interpolate_na" in msg


def test_mismatched_data_and_checkpoint(grid_model, weather, synthetic_traffic_ds, tmp_path):
    from forecast.data.synthetic import synthetic_weather

    path = tmp_path / "m.safetensors"
    grid_model.save(path)
    loaded = load_model(path)
    other = synthetic_weather(seed=1, n_lat=12, n_lon=24, days=3)
    with pytest.raises(ForecastError) as err:
        loaded.sample(_ctx(other, 20, 6), 2)
    _one_line(err)
    with pytest.raises(ForecastError):
        loaded.sample(_ctx(synthetic_traffic_ds, 100, 6), 2)
    renamed = _ctx(weather, 450, 6).rename({"t2m": "tas"})
    with pytest.raises(ForecastError):
        loaded.sample(renamed, 2)


def test_bad_latents_and_unfitted(grid_model, weather):
    ctx = _ctx(weather, 450, 6)
    with pytest.raises(ForecastError, match="latents have shape"):
        grid_model.decode(ctx, torch.zeros(2, 3, 3))
    with pytest.raises(ForecastError, match="NaN or inf"):
        grid_model.decode(ctx, torch.full((1, *grid_model.latent_shape()), float("nan")))
    with pytest.raises(ForecastError, match="not fitted"):
        ConditionalVAE(context=6, horizon=6).sample(ctx, 2)
    with pytest.raises(ForecastError, match="crps_members"):
        ConditionalVAE(context=6, horizon=6, crps_members=1)


def test_incompatible_checkpoint_format(grid_model, tmp_path):
    path = tmp_path / "m.safetensors"
    grid_model.save(path)
    arrays, meta = load_checkpoint(path)
    meta["state"]["format"] = 99
    meta.pop("format"), meta.pop("version")
    save_checkpoint(path, arrays, meta)
    with pytest.raises(ForecastError, match="model format 99"):
        load_model(path)


def test_short_training_data(weather):
    with pytest.raises(ForecastError, match="fewer than context"):
        ConditionalVAE.tiny(6, 6).fit(weather.isel(time=slice(0, 10)))


def test_encode_target_length(grid_model, weather):
    from forecast.data.windows import target_of

    ctx = _ctx(weather, 430, 6)
    with pytest.raises(ForecastError, match="target has 3 steps"):
        grid_model.encode(ctx, target_of(weather, 430, 3))


@pytest.mark.slow
def test_train_command_vae(weather, tmp_path, capsys):
    """``forecast train --model vae`` goes through the shared command and training loop."""
    from forecast.cli import main

    data = tmp_path / "w.nc"
    weather.isel(time=slice(0, 240)).to_netcdf(data)
    config = tmp_path / "tiny.toml"
    config.write_text(
        "[model]\nbase = 8\nmults = [1, 2]\nlatent_channels = 2\nemb_dim = 16\n"
        "loc_channels = 2\n[train]\nmax_steps = 6\nbatch_size = 4\nwarmup_steps = 2\n"
        "eval_every = 0\nval_issue_times = 2\nval_members = 4\n"
    )
    out = tmp_path / "run"
    argv = [
        "train",
        "--data",
        str(data),
        "--model",
        "vae",
        "--config",
        str(config),
        "--out",
        str(out),
        "--context",
        "4",
        "--horizon",
        "3",
        "--no-progress",
        "--threads",
        "1",
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "trained vae" in printed and "active latent units" in printed
    model = load_model(out / "model.safetensors")
    assert isinstance(model, ConditionalVAE) and (model.context, model.horizon) == (4, 3)
    assert (out / "last.safetensors").is_file() and (out / "best.safetensors").is_file()


def test_checkpoint_keeps_the_calibration_objective(grid_model, weather, tmp_path):
    path = tmp_path / "m.safetensors"
    grid_model.save(path)
    back = load_model(path)
    assert back.calibration_objective == grid_model.calibration_objective == "spread-skill"
    # a checkpoint written before the option existed was calibrated by CRPS: it says so
    arrays, meta = load_checkpoint(path)
    meta["state"].pop("calibration_objective"), meta["config"].pop("calibration_objective")
    meta.pop("format"), meta.pop("version")
    save_checkpoint(path, arrays, meta)
    old = load_model(path)
    assert old.calibration_objective == "crps"
    np.testing.assert_array_equal(old.spread_factor, grid_model.spread_factor)
    ctx = _ctx(weather, 450, 6)
    xr.testing.assert_identical(old.sample(ctx, 3, seed=1), grid_model.sample(ctx, 3, seed=1))
