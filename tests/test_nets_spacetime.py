"""The space-time grid denoiser (``grid_net="space-time"``): shapes, conditioning, a model
built on it, and its bad settings."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from forecast.data.synthetic import synthetic_traffic, synthetic_weather
from forecast.data.windows import context_of, target_of
from forecast.dims import TIME
from forecast.errors import ForecastError
from forecast.models import load_model
from forecast.models.diffusion import ConditionalDiffusion
from forecast.models.nets import GridDenoiser, SpaceTimeDenoiser

K, H = 6, 8

pytestmark = pytest.mark.usefixtures("one_thread")


def _net(**kw) -> SpaceTimeDenoiser:
    torch.manual_seed(0)
    net = SpaceTimeDenoiser(2, H, K, base=4, mults=(1, 2), emb_dim=16, **kw)
    torch.nn.init.normal_(net.out.weight, std=0.1)  # zero at start: make the output visible
    return net.eval()


def _cond(batch: int, ny: int = 9, nx: int = 11, guess: bool = False) -> dict:
    g = torch.Generator().manual_seed(1)
    cond = {
        "context": torch.randn(batch, 2, K, ny, nx, generator=g),
        "calendar": torch.randn(batch, 4, generator=g),
    }
    if guess:
        cond["first_guess"] = torch.randn(batch, 2, H, ny, nx, generator=g)
    return cond


def test_output_shape_and_batch_one_conditioning_broadcasts():
    net = _net(first_guess=True)
    x = torch.randn(3, 2, H, 9, 11, generator=torch.Generator().manual_seed(2))
    noise = torch.full((3,), 0.3)
    with torch.inference_mode():
        one = net(x, noise, _cond(1, guess=True))
        three = net(
            x, noise, {k: v.expand(3, *v.shape[1:]) for k, v in _cond(1, guess=True).items()}
        )
    assert one.shape == x.shape and one.is_contiguous()
    torch.testing.assert_close(one, three, rtol=1e-5, atol=1e-6)
    with pytest.raises(ForecastError, match="first_guess"):
        net(x, noise, _cond(1))


def test_space_time_weights_are_shared_by_the_leads():
    """A longer horizon adds only its lead embedding to the space-time net (every convolution
    is shared by the leads), where leads as channels widen the first and last layers."""

    def size(net: torch.nn.Module) -> int:
        return sum(p.numel() for p in net.parameters())

    def space_time(horizon: int) -> SpaceTimeDenoiser:
        return SpaceTimeDenoiser(1, horizon, K, base=4, mults=(1, 2), emb_dim=16)

    def channels(horizon: int) -> GridDenoiser:
        return GridDenoiser(1, horizon, K, base=4, mults=(1, 2), emb_dim=16)

    assert size(space_time(48)) - size(space_time(24)) == 4 * 24
    assert size(channels(48)) - size(channels(24)) > 2 * 9 * 4 * 24


def test_space_time_weights_are_channels_last_and_survive_a_state_dict_round_trip():
    net = _net()
    conv = net.down_blocks[0].conv1.space.weight
    assert conv.is_contiguous(memory_format=torch.channels_last_3d)
    state = {k: torch.from_numpy(v.detach().numpy().copy()) for k, v in net.state_dict().items()}
    other = SpaceTimeDenoiser(2, H, K, base=4, mults=(1, 2), emb_dim=16)
    other.load_state_dict(state)
    x = torch.randn(2, 2, H, 9, 11, generator=torch.Generator().manual_seed(4))
    with torch.inference_mode():
        torch.testing.assert_close(
            other.eval()(x, torch.ones(2), _cond(1)), net(x, torch.ones(2), _cond(1))
        )
    assert other.down_blocks[0].conv1.space.weight.is_contiguous(
        memory_format=torch.channels_last_3d
    )


def test_a_space_time_diffusion_model_trains_samples_reloads_and_inverts(tmp_path):
    weather = synthetic_weather(seed=0, n_lat=10, n_lon=14, days=10)
    model = ConditionalDiffusion(
        **{**ConditionalDiffusion.tiny(K, H).config(), "grid_net": "space-time", "base": 4}
    ).fit(weather.isel({TIME: slice(0, 170)}))
    assert isinstance(model.net, SpaceTimeDenoiser)
    issue = weather[TIME].values[225]
    ctx = context_of(weather, issue, K)
    ens = model.sample(ctx, 4, seed=1)
    assert ens["t2m"].shape == (4, H, 10, 14) and np.isfinite(ens["t2m"].values).all()
    model.save(tmp_path / "st.safetensors")
    back = load_model(tmp_path / "st.safetensors")
    assert back.config()["grid_net"] == "space-time" and isinstance(back.net, SpaceTimeDenoiser)
    xr.testing.assert_identical(back.sample(ctx, 4, seed=1), ens)
    target = target_of(weather, issue, H)
    rec = model.decode(ctx, model.encode(ctx, target))["t2m"].values[0]
    anomaly = target["t2m"].values - ctx["t2m"].values[-1]
    assert np.abs(rec - target["t2m"].values).mean() / np.abs(anomaly).mean() < 0.01


def test_the_default_grid_net_is_leads_as_channels():
    model = ConditionalDiffusion.tiny(K, H)
    assert model.config()["grid_net"] == "leads-as-channels"
    assert isinstance(model._build_net("grid", 1), GridDenoiser)


def test_bad_grid_net():
    with pytest.raises(
        ForecastError, match="grid_net must be one of leads-as-channels, space-time"
    ):
        ConditionalDiffusion(context=K, horizon=H, grid_net="3d")
    ds = synthetic_traffic(seed=0, n_sensors=12, days=1.5, n_corridors=2)
    model = ConditionalDiffusion(
        **{**ConditionalDiffusion.tiny(6, 4).config(), "grid_net": "space-time"}
    )
    with pytest.raises(ForecastError, match="grid_net='space-time' is for grids"):
        model.fit(ds.isel({TIME: slice(0, 300)}))
