"""ConditionalDiffusion with first_guess="gp" and condition_on_first_guess (issue 5 follow-up)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from forecast.checkpoint import load_checkpoint
from forecast.data.synthetic import synthetic_traffic, synthetic_weather
from forecast.data.windows import context_of
from forecast.dims import TIME
from forecast.errors import ForecastError
from forecast.models import load_model
from forecast.models.diffusion import ConditionalDiffusion
from forecast.models.first_guess import GPFirstGuess
from forecast.models.gp import GaussianProcessForecaster
from forecast.models.nets import GraphDenoiser, GridDenoiser

K, H = 6, 8


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True, scope="module")
def small_gp():
    # the default GP first guess takes ~15 s to fit here; its own tests (test_first_guess.py)
    # cover the default settings, these only need a fitted GP
    original = GPFirstGuess.fit

    def fit(cls, train, *, context, horizon, seed=0):
        gp = GaussianProcessForecaster.tiny(context, horizon)
        gp.seed = seed
        return cls(gp.fit(train))

    GPFirstGuess.fit = classmethod(fit)
    yield
    GPFirstGuess.fit = original


def _tiny(context: int = K, horizon: int = H, **kw) -> ConditionalDiffusion:
    return ConditionalDiffusion(**{**ConditionalDiffusion.tiny(context, horizon).config(), **kw})


@pytest.fixture(scope="module")
def weather():
    return synthetic_weather(seed=0, n_lat=10, n_lon=14, days=10)


@pytest.fixture(scope="module")
def ctx(weather):
    return context_of(weather, weather[TIME].values[225], K)


@pytest.fixture(scope="module")
def gp_cond(weather, one_thread, small_gp):
    m = _tiny(target="residual", first_guess="gp", condition_on_first_guess=True)
    return m.fit(weather.isel({TIME: slice(0, 170)}), weather.isel({TIME: slice(170, 220)}))


def test_gp_conditioned_samples_and_round_trip(gp_cond, ctx, tmp_path):
    assert gp_cond.fg.kind == "gp" and gp_cond.net.in_guess is not None
    ens = gp_cond.sample(ctx, 4, seed=1)
    assert ens["t2m"].shape == (4, H, 10, 14) and np.isfinite(ens["t2m"].values).all()
    # a zero residual decodes to the GP mean (physical units)
    cond = gp_cond._cond(ctx["t2m"].values[:, None], ctx[TIME].values)
    zero = gp_cond._physical(cond, torch.zeros(1, 1, H, 10, 14))[0]
    mean, _ = gp_cond.fg.gp.predict_gaussian(ctx)
    np.testing.assert_allclose(zero[:, 0], mean["t2m"].values, atol=2e-3)
    path = tmp_path / "gp.safetensors"
    gp_cond.save(path)
    arrays, meta = load_checkpoint(path)
    assert meta["state"]["first_guess"]["kind"] == "gp"
    assert meta["config"]["condition_on_first_guess"] is True
    assert "first_guess.means" in arrays and "net.in_guess.weight" in arrays
    back = load_model(path)
    xr.testing.assert_identical(back.sample(ctx, 4, seed=1), ens)


def test_network_sees_the_first_guess(gp_cond, ctx):
    cond = gp_cond._cond(ctx["t2m"].values[:, None], ctx[TIME].values)
    assert cond["first_guess"].shape == (1, 1, H, 10, 14)
    x = torch.randn(2, 1, H, 10, 14)
    with torch.no_grad():
        a = gp_cond.net(x, torch.zeros(2), cond)
        b = gp_cond.net(x, torch.zeros(2), {**cond, "first_guess": cond["first_guess"] + 1})
        assert float((a - b).abs().max()) > 1e-4
        with pytest.raises(ForecastError, match="needs cond\\['first_guess'\\]"):
            gp_cond.net(x, torch.zeros(2), {k: v for k, v in cond.items() if k != "first_guess"})


def test_training_table_matches_per_window_first_guess(weather):
    # the first guesses precomputed for all windows equal the ones computed per window
    from forecast.data.torch import to_array

    m = _tiny(target="residual", first_guess="damped", train={"max_steps": 1})
    train = weather.isel({TIME: slice(0, 170)})
    m.fit(train)
    data = m._window_dataset(train)
    table = m._guess_table(train, data.windows.issue_index)
    values, times = to_array(train), train[TIME].values
    for k in (0, 57, len(data) - 1):
        i = int(data.windows.issue_index[k])
        one = m.first_guess_of(values[i - K + 1 : i + 1], times[i - K + 1 : i + 1], [K - 1])
        np.testing.assert_allclose(table([i]).numpy(), one.numpy(), atol=1e-6)
    with pytest.raises(ForecastError, match="outside its precomputed table"):
        table([0])  # no window is issued at the first step


def test_condition_off_by_default_keeps_the_network():
    # default nets have no first-guess weights (shipped checkpoints load unchanged)
    grid = GridDenoiser(1, H, K, base=8, mults=(1, 2), emb_dim=16)
    assert not any("in_guess" in k for k in grid.state_dict())
    with_fg = GridDenoiser(1, H, K, base=8, mults=(1, 2), emb_dim=16, first_guess=True)
    assert set(with_fg.state_dict()) - set(grid.state_dict()) == {"in_guess.weight"}
    adj = np.ones((5, 5))
    graph = GraphDenoiser(1, H, K, adj, hidden=8, blocks=1, emb_dim=16, first_guess=True)
    x = torch.randn(3, 1, H, 5)
    cond = {"context": torch.randn(1, 1, K, 5), "calendar": torch.zeros(1, 4)}
    out = graph(x, torch.zeros(3), {**cond, "first_guess": torch.randn(1, 1, H, 5)})
    assert out.shape == x.shape
    with pytest.raises(ForecastError, match="first_guess=True"):
        graph(x, torch.zeros(3), cond)


def test_graph_layout_gp_conditioned(tmp_path):
    ds = synthetic_traffic(seed=0, n_sensors=12, days=1.5, n_corridors=2)
    m = _tiny(6, 4, target="residual", first_guess="gp", condition_on_first_guess=True)
    m.fit(ds.isel({TIME: slice(0, 300)}))
    ctx = context_of(ds, ds[TIME].values[350], 6)
    ens = m.sample(ctx, 3, seed=0)
    assert ens["speed"].shape == (3, 4, 12) and np.isfinite(ens["speed"].values).all()
    m.save(tmp_path / "g.safetensors")
    xr.testing.assert_identical(load_model(tmp_path / "g.safetensors").sample(ctx, 3, seed=0), ens)


def test_checkpoint_of_the_older_first_guess_layout_loads(weather, ctx, tmp_path):
    # residual checkpoints written before forecast.models.first_guess kept normalized slot
    # means (first_guess_means), the damping (first_guess_rho) and the period in the state
    from forecast.checkpoint import save_checkpoint

    m = _tiny(target="residual", damp_anomaly=True, train={"max_steps": 3})
    m.fit(weather.isel({TIME: slice(0, 170)}))
    path = tmp_path / "new.safetensors"
    m.save(path)
    arrays, meta = load_checkpoint(path)
    arrays = {k: v for k, v in arrays.items() if not k.startswith("first_guess.")}
    means = m.normalizer.transform_array(m.fg.means.astype(np.float32), channel_axis=1)
    arrays["first_guess_means"] = np.nan_to_num(means).astype(np.float32)
    arrays["first_guess_rho"] = m.fg.rho.astype(np.float32)
    state = {k: v for k, v in meta["state"].items() if k != "first_guess"}
    state["first_guess_period"] = str(m.fg.period)
    meta = {k: v for k, v in meta.items() if k not in ("format", "version")}
    save_checkpoint(tmp_path / "old.safetensors", arrays, {**meta, "state": state})
    old = load_model(tmp_path / "old.safetensors")
    assert old.first_guess == "damped"
    np.testing.assert_allclose(old.fg.rho, m.fg.rho, atol=1e-6)
    a, b = old.sample(ctx, 3, seed=0)["t2m"].values, m.sample(ctx, 3, seed=0)["t2m"].values
    np.testing.assert_allclose(a, b, atol=1e-3)


def test_gp_clim_first_guess_needs_validation_and_round_trips(weather, ctx, tmp_path):
    m = _tiny(target="residual", first_guess="gp-clim", condition_on_first_guess=True)
    train = weather.isel({TIME: slice(0, 170)})
    with pytest.raises(ForecastError, match="fits its shrinkage weights on validation data"):
        m.fit(train)
    m.fit(train, weather.isel({TIME: slice(170, 220)}))
    assert m.fg.kind == "gp-clim" and m.fg.weights.shape == (1, H)
    # a zero residual decodes to the shrunk first guess
    cond = m._cond(ctx["t2m"].values[:, None], ctx[TIME].values)
    zero = m._physical(cond, torch.zeros(1, 1, H, 10, 14))[0]
    want = m.fg.predict(ctx["t2m"].values[:, None], ctx[TIME].values, np.array([K - 1]))[0]
    np.testing.assert_allclose(zero, want, atol=2e-3)
    ens = m.sample(ctx, 3, seed=2)
    m.save(tmp_path / "s.safetensors")
    arrays, meta = load_checkpoint(tmp_path / "s.safetensors")
    assert meta["state"]["first_guess"]["kind"] == "gp-clim"
    assert "first_guess.weights" in arrays and "first_guess.means" in arrays
    assert any(k.startswith("first_guess.gp.") for k in arrays)
    back = load_model(tmp_path / "s.safetensors")
    np.testing.assert_array_equal(back.fg.weights, m.fg.weights)
    # forecast model info shows the weights from the file alone
    from forecast.models.info import checkpoint_info

    shown = checkpoint_info(tmp_path / "s.safetensors")["first_guess"]
    assert shown == {"kind": "gp-clim", "weights": np.round(m.fg.weights, 4).tolist()}
    xr.testing.assert_identical(back.sample(ctx, 3, seed=2), ens)
