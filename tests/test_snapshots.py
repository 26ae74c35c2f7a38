"""Models that differ only in ``train.keep`` trained in one run (``forecast.models.snapshots``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

import forecast.training.loop as loop
from forecast.data.windows import context_of
from forecast.errors import ForecastError
from forecast.models import PooledEnsemble
from forecast.models.diffusion import ConditionalDiffusion
from forecast.models.snapshots import fit_snapshots, snapshot_groups
from forecast.models.vae import ConditionalVAE

pytestmark = pytest.mark.usefixtures("one_thread")


def spec(kind: str, **train) -> dict:
    return {"kind": kind, "config": {"context": 4, "horizon": 5, "train": {"lr": 1e-3, **train}}}


def test_groups_join_the_models_that_differ_only_in_an_integer_keep():
    specs = [
        spec("diffusion", keep=15),  # 0
        spec("diffusion", keep=30),  # 1: with 0
        spec("diffusion", keep=30, lr=5e-4),  # 2: another configuration
        spec("vae", keep=45),  # 3: another kind
        spec("diffusion", keep="best"),  # 4: no step
        spec("diffusion", keep=15),  # 5: the same model as 0 again
        {"kind": "persistence", "config": {"context": 4, "horizon": 5}},  # 6
        spec("diffusion", keep=60),  # 7: with 0 and 1
        spec("diffusion", keep=True),  # 8: not a step
    ]
    assert snapshot_groups(specs) == [[0, 1, 7], [2], [3], [4], [5], [6], [8]]
    assert snapshot_groups([]) == []


def _tiny(cls, geometry: dict, **train) -> dict:
    config = cls.tiny(**geometry).config()
    config["train"] = {**config["train"], "max_steps": 12, "eval_every_steps": 3, **train}
    return {"kind": cls.kind, "config": config}


def _optimizer_steps(monkeypatch) -> list[int]:
    """Count the optimizer steps of every training loop (one EMA update per step)."""
    calls: list[int] = []
    update = loop.update_ema

    def counted(*args, **kwargs):
        calls.append(1)
        return update(*args, **kwargs)

    monkeypatch.setattr(loop, "update_ema", counted)
    return calls


@pytest.mark.parametrize("cls", [ConditionalDiffusion, ConditionalVAE])
def test_one_run_gives_the_models_of_separate_runs(cls, tiny_data, tiny_protocol, monkeypatch):
    """Steps 4, 6 and 10 from one 10-step run: each model has the weights, training record
    (validations included) and calibration of the model trained to its step alone."""
    geometry = {"context": tiny_protocol.context, "horizon": tiny_protocol.horizon}
    train = tiny_protocol.split(tiny_data, "train")
    valid = tiny_protocol.split(tiny_data, "val")
    specs = [_tiny(cls, geometry, keep=k) for k in (6, 4, 10)]
    steps = _optimizer_steps(monkeypatch)
    together = fit_snapshots(specs, train, valid)
    assert len(steps) == 10  # one run to the last step (separately: 21)
    issue = tiny_protocol.windows(tiny_data, "test").issue_times(tiny_data)[0]
    ctx = context_of(tiny_data, issue, tiny_protocol.context)
    for s, model in zip(specs, together, strict=True):
        alone = cls(**s["config"]).fit(train, valid)
        keep = s["config"]["train"]["keep"]
        assert model.training["step"] == alone.training["step"] == keep
        assert model.training["history"] == alone.training["history"]
        assert [h["step"] for h in model.training["history"]] == [*range(3, keep, 3), keep]
        assert model.config() == alone.config()
        for (name, a), b in zip(
            model.net.state_dict().items(), alone.net.state_dict().values(), strict=True
        ):
            torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
        xr.testing.assert_identical(model.sample(ctx, 3, seed=2), alone.sample(ctx, 3, seed=2))
    assert not torch.equal(
        next(iter(together[0].net.parameters())), next(iter(together[1].net.parameters()))
    )


def test_a_pool_of_snapshots_trains_each_seed_once(tiny_data, tiny_protocol, monkeypatch):
    """Components that differ only in ``keep``, with two seeds: two runs (one per seed), in this
    process or in workers, and the models of components fitted one by one."""
    geometry = {"context": tiny_protocol.context, "horizon": tiny_protocol.horizon}
    train = tiny_protocol.split(tiny_data, "train")
    valid = tiny_protocol.split(tiny_data, "val")
    components = []
    for keep in (3, 6):
        s = _tiny(ConditionalDiffusion, geometry, keep=keep)
        own = {k: v for k, v in s["config"].items() if k not in geometry}
        components.append({"kind": "diffusion", "config": own})
    steps = _optimizer_steps(monkeypatch)
    pool = PooledEnsemble(**geometry, components=components, seeds=[0, 1]).fit(train, valid)
    assert len(steps) == 12  # 6 per seed (one by one: 18)
    side = PooledEnsemble(**geometry, components=components, seeds=[0, 1]).fit(train, valid, jobs=2)
    issue = tiny_protocol.windows(tiny_data, "test").issue_times(tiny_data)[1]
    ctx = context_of(tiny_data, issue, tiny_protocol.context)
    xr.testing.assert_identical(side.sample(ctx, 8, seed=0), pool.sample(ctx, 8, seed=0))
    for label, model in zip(pool.labels, pool.models, strict=True):
        alone = ConditionalDiffusion(**{**geometry, **model.config()}).fit(train, valid)
        assert model.training["step"] == model.config()["train"]["keep"], label
        np.testing.assert_array_equal(
            model.sample(ctx, 2, seed=0)["t2m"].values,
            alone.sample(ctx, 2, seed=0)["t2m"].values,
            err_msg=label,
        )


def test_snapshots_need_distinct_steps(tiny_data, tiny_protocol):
    geometry = {"context": tiny_protocol.context, "horizon": tiny_protocol.horizon}
    train = tiny_protocol.split(tiny_data, "train")
    for keeps in ((4, 4), (4, "best")):
        specs = [_tiny(ConditionalDiffusion, geometry, keep=k) for k in keeps]
        with pytest.raises(ForecastError, match=r"differ only in distinct integer train\.keep"):
            fit_snapshots(specs, train, None)
