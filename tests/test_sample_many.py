"""Drawing for several contexts at once (``sample_many``, ``sample_batch``): the same members as
one context at a time, for a diffusion model, a pool and an online-spread model's reference
forecasts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from forecast.data.synthetic import synthetic_weather
from forecast.data.windows import context_of
from forecast.dims import MEMBER, TIME
from forecast.errors import ForecastError
from forecast.models import OnlineSpread, PooledEnsemble, sample_many
from forecast.models.baselines import ClimatologyEnsemble
from forecast.models.diffusion import ConditionalDiffusion

K, H = 6, 5

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def weather():
    return synthetic_weather(seed=2, n_lat=6, n_lon=7, days=8)


@pytest.fixture(scope="module")
def diffusion(weather, one_thread):
    """A tiny residual model conditioned on its first guess (every conditioning key)."""
    config = {
        **ConditionalDiffusion.tiny(K, H).config(),
        "target": "residual",
        "first_guess": "diurnal",
        "condition_on_first_guess": True,
        "member_batch": 5,  # 3 contexts x 4 members: batches that cross the contexts
    }
    config["train"] = {**config["train"], "max_steps": 6}
    return ConditionalDiffusion(**config).fit(weather.isel({TIME: slice(0, 120)}))


@pytest.fixture(scope="module")
def contexts(weather):
    return [context_of(weather, weather[TIME].values[i], K) for i in (130, 137, 151)]


SEEDS = [3, 11, 3]


def assert_members_close(got: xr.Dataset, want: xr.Dataset) -> None:
    """Equal coordinates and members up to float32 rounding (the batch-size tolerance)."""
    assert got.sizes == want.sizes
    for name in want.coords:
        xr.testing.assert_identical(got[name], want[name])
    np.testing.assert_allclose(got["t2m"].values, want["t2m"].values, rtol=0, atol=1e-4)


def test_diffusion_draws_every_context_in_one_batch(diffusion, contexts):
    one_by_one = [diffusion.sample(c, 4, seed=s) for c, s in zip(contexts, SEEDS, strict=True)]
    together = diffusion.sample_batch(contexts, 4, SEEDS)
    assert len(together) == 3
    for got, want in zip(together, one_by_one, strict=True):
        assert_members_close(got, want)
    # the contexts' forecasts differ: a batch that mixed up their conditioning would show
    assert np.abs(together[0]["t2m"].values - together[2]["t2m"].values).mean() > 0.1
    ddpm = diffusion.with_sampler("ddpm", nfe=4)
    for got, want in zip(
        ddpm.sample_batch(contexts, 4, SEEDS),
        [ddpm.sample(c, 4, seed=s) for c, s in zip(contexts, SEEDS, strict=True)],
        strict=True,
    ):
        assert_members_close(got, want)


def test_a_pool_draws_every_context_in_one_batch_per_model(diffusion, weather, contexts):
    clim = ClimatologyEnsemble(context=K, horizon=H).fit(weather.isel({TIME: slice(0, 120)}))
    pool = PooledEnsemble.from_models([diffusion, diffusion, clim], labels=["a", "b", "clim"])
    one_by_one = [pool.sample(c, 7, seed=s) for c, s in zip(contexts, SEEDS, strict=True)]
    threads = torch.get_num_threads()
    for n_threads in (1, 2):
        torch.set_num_threads(n_threads)
        try:
            together = sample_many(pool, contexts, 7, SEEDS)
        finally:
            torch.set_num_threads(threads)
        for got, want in zip(together, one_by_one, strict=True):
            assert_members_close(got, want)
            assert list(got[MEMBER].values) == list(range(7))


def test_sample_many_falls_back_to_one_context_at_a_time(weather, contexts):
    clim = ClimatologyEnsemble(context=K, horizon=H).fit(weather.isel({TIME: slice(0, 120)}))
    for got, c, s in zip(sample_many(clim, contexts, 3, SEEDS), contexts, SEEDS, strict=True):
        xr.testing.assert_identical(got, clim.sample(c, 3, seed=s))
    with pytest.raises(ForecastError, match="3 contexts but 2 seeds; give one each"):
        sample_many(clim, contexts, 3, SEEDS[:2])


def test_bad_batches(diffusion, contexts):
    with pytest.raises(ForecastError, match="3 contexts but 1 seeds"):
        diffusion.sample_batch(contexts, 2, [0])
    with pytest.raises(ForecastError, match="members"):
        diffusion.sample_batch(contexts, 0, SEEDS)
    assert diffusion.sample_batch([], 2, []) == []


def test_online_reference_forecasts_are_drawn_together(diffusion, weather, monkeypatch):
    import forecast.models.online as online

    calls: list[int] = []
    batch = diffusion.sample_batch

    def spy(contexts, n_members, seeds):
        calls.append(len(contexts))
        return batch(contexts, n_members, seeds)

    monkeypatch.setattr(diffusion, "sample_batch", spy)
    history = 9
    ctx = context_of(weather, weather[TIME].values[160], K + history)
    together = OnlineSpread.from_model(diffusion, history=history, members=3).factors(ctx)
    assert calls == [history + 1]  # all ten reference forecasts in one draw
    monkeypatch.setattr(online, "_REFERENCE_BATCH", 4)
    calls.clear()
    chunks = OnlineSpread.from_model(diffusion, history=history, members=3).factors(ctx)
    assert calls == [3, 4, 3]  # chunks of equal size up to 4
    monkeypatch.setattr(online, "_REFERENCE_BATCH", 1)
    single = OnlineSpread.from_model(diffusion, history=history, members=3).factors(ctx)
    for other in (chunks, single):
        np.testing.assert_allclose(
            other["spread_factor"].values, together["spread_factor"].values, rtol=1e-4
        )
    # the next issue time runs one new reference forecast, alone
    model = OnlineSpread.from_model(diffusion, history=history, members=3)
    model.factors(ctx)
    calls.clear()
    model.factors(context_of(weather, weather[TIME].values[161], K + history))
    assert calls == [1]


def test_compare_reference_batching_prints_how_far_members_move(
    load_script, tmp_path, monkeypatch, capsys
):
    import re
    import sys

    from forecast.data import open_dataset

    ds = open_dataset("synthetic-weather").isel({TIME: slice(0, 200)})
    config = ConditionalDiffusion.tiny(K, H).config()
    config["train"] = {**config["train"], "max_steps": 2}
    base = ConditionalDiffusion(**config).fit(ds)
    path = tmp_path / "online.safetensors"
    OnlineSpread.from_model(base, history=5, members=3).save(path)
    bench = load_script("benchmarks/compare_reference_batching.py")
    argv = ["bench", "--checkpoint", str(path), "--data", "synthetic-weather", "--members", "4"]
    monkeypatch.setattr(sys, "argv", argv)
    bench.main()
    out = capsys.readouterr().out
    found = re.search(
        r"references drawn up to 24 at a time vs one at a time: max \|difference\| (\S+), mean "
        r"(\S+); mean spread of the members (\S+)$",
        out.strip(),
    )
    assert found, out
    most, mean, spread = (float(v.rstrip(";,")) for v in found.groups())
    assert 0 <= mean <= most < 1e-3 < spread
