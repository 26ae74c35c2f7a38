"""Models that differ only in ``train.keep`` trained in one run (``forecast.models.snapshots``)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
import xarray as xr
from safetensors import safe_open

import forecast.training.loop as loop
from forecast.data.windows import context_of
from forecast.errors import ForecastError
from forecast.models import PooledEnsemble
from forecast.models.diffusion import ConditionalDiffusion
from forecast.models.snapshots import fit_snapshots, snapshot_groups
from forecast.models.vae import ConditionalVAE
from forecast.training.loop import untimed

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
    config["train"] = {
        **config["train"],
        **{"max_steps": 12, "epochs": 10, "batch_size": 32, "eval_every_steps": 3},
        **train,
    }
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
    """Steps 4, 5, 6 and 10 from one 10-step run (an epoch ends at 5 or 6; a validation is due
    at 6): each model has the weights, training record (validations, epoch) and calibration of
    the model trained to its step alone."""
    geometry = {"context": tiny_protocol.context, "horizon": tiny_protocol.horizon}
    train = tiny_protocol.split(tiny_data, "train")
    valid = tiny_protocol.split(tiny_data, "val")
    specs = [_tiny(cls, geometry, keep=k) for k in (6, 4, 10, 5)]
    steps = _optimizer_steps(monkeypatch)
    together = fit_snapshots(specs, train, valid)
    assert len(steps) == 10  # one run to the last step (separately: 25)
    issue = tiny_protocol.windows(tiny_data, "test").issue_times(tiny_data)[0]
    ctx = context_of(tiny_data, issue, tiny_protocol.context)
    for s, model in zip(specs, together, strict=True):
        alone = cls(**s["config"]).fit(train, valid)
        keep = s["config"]["train"]["keep"]
        assert model.training["step"] == alone.training["step"] == keep
        assert untimed(model.training) == untimed(alone.training)  # timings aside
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


def test_a_group_fits_its_first_guess_once(tiny_data, tiny_protocol, monkeypatch):
    """With a first guess cross-fitted over 2 folds, the group fits it once per fold and once
    for the model, and predicts each set of windows once: the models are those of separate
    fits, which fit it every time (the GP first guess works the same way, at seconds a fit)."""
    from forecast.models import first_guess

    geometry = {"context": tiny_protocol.context, "horizon": tiny_protocol.horizon}
    train = tiny_protocol.split(tiny_data, "train")
    valid = tiny_protocol.split(tiny_data, "val")
    fg = {"target": "residual", "first_guess": "damped", "first_guess_folds": 2}
    specs = []
    for keep in (6, 3):
        s = _tiny(ConditionalDiffusion, geometry, keep=keep)
        specs.append({**s, "config": {**s["config"], **fg, "condition_on_first_guess": True}})
    fits, predictions = [], []
    kind = first_guess.DiurnalFirstGuess
    fit, predict = kind.fit.__func__, kind.predict

    def counted_fit(cls, *args, **kwargs):
        fits.append(1)
        return fit(cls, *args, **kwargs)

    def counted_predict(self, *args, **kwargs):
        predictions.append(1)
        return predict(self, *args, **kwargs)

    monkeypatch.setattr(kind, "fit", classmethod(counted_fit))
    monkeypatch.setattr(kind, "predict", counted_predict)
    alone = ConditionalDiffusion(**specs[0]["config"]).fit(train, valid)
    fits_alone, predictions_alone = len(fits), len(predictions)
    assert fits_alone == 3  # the model's and one per fold
    together = fit_snapshots(specs, train, valid)
    assert len(fits) - fits_alone == fits_alone
    assert len(predictions) - predictions_alone == predictions_alone
    issue = tiny_protocol.windows(tiny_data, "test").issue_times(tiny_data)[0]
    ctx = context_of(tiny_data, issue, tiny_protocol.context)
    xr.testing.assert_identical(together[0].sample(ctx, 3, seed=1), alone.sample(ctx, 3, seed=1))
    short = ConditionalDiffusion(**specs[1]["config"]).fit(train, valid)
    xr.testing.assert_identical(together[1].sample(ctx, 3, seed=1), short.sample(ctx, 3, seed=1))


def test_a_pool_shares_equal_first_guesses(tiny_data, tiny_protocol, tmp_path, monkeypatch):
    """Snapshots saved and loaded one by one carry equal copies of their first guess: the pool
    keeps one object for them (not for a model with another first guess) and predicts it once
    per draw, with the members of unshared copies bit for bit."""
    import copy

    from forecast.models import first_guess, load_model

    geometry = {"context": tiny_protocol.context, "horizon": tiny_protocol.horizon}
    train = tiny_protocol.split(tiny_data, "train")
    valid = tiny_protocol.split(tiny_data, "val")
    fg = {"target": "residual", "first_guess": "damped", "condition_on_first_guess": True}
    specs = []
    for keep in (6, 3):
        s = _tiny(ConditionalDiffusion, geometry, keep=keep)
        specs.append({**s, "config": {**s["config"], **fg}})
    paths = []
    for k, model in enumerate(fit_snapshots(specs, train, valid)):
        model.save(tmp_path / f"snap{k}.safetensors")
        paths.append(tmp_path / f"snap{k}.safetensors")
    other = _tiny(ConditionalDiffusion, geometry, keep=3)
    other["config"] = {**other["config"], **fg, "first_guess": "diurnal"}  # rho = 1
    ConditionalDiffusion(**other["config"]).fit(train, valid).save(tmp_path / "other.safetensors")
    paths.append(tmp_path / "other.safetensors")
    loaded = [load_model(path) for path in paths]
    assert len({id(m.fg) for m in loaded}) == 3  # each file its own copy

    pool = PooledEnsemble.from_checkpoints(paths)
    a, b, c = pool.models
    assert a.fg is b.fg and c.fg is not a.fg
    pool.save(tmp_path / "pool.safetensors")
    arrays = pool.checkpoint_content()[0]
    copies = [n for n in arrays if n.startswith("c1/first_guess") and arrays[n].nbytes >= 1024]
    with safe_open(str(tmp_path / "pool.safetensors"), framework="numpy") as f:
        assert copies and not set(copies) & set(f.keys())  # the file holds the shared one once
    reloaded = PooledEnsemble.load(tmp_path / "pool.safetensors")
    assert len({id(m.fg) for m in reloaded.models}) == 2

    calls: list[int] = []
    predict = first_guess.DiurnalFirstGuess.predict

    def counted(self, *args, **kwargs):
        calls.append(1)
        return predict(self, *args, **kwargs)

    monkeypatch.setattr(first_guess.DiurnalFirstGuess, "predict", counted)
    issue = tiny_protocol.windows(tiny_data, "test").issue_times(tiny_data)[0]
    ctx = context_of(tiny_data, issue, tiny_protocol.context)
    shared = pool.sample(ctx, 6, seed=4)
    assert len(calls) == 2  # one prediction per distinct first guess
    # on two torch threads two models draw at once, each on one thread, in worker threads
    # that join the block: the same members and the same two predictions
    draws: list[tuple[int, int]] = []
    sample = ConditionalDiffusion.sample

    def recorded(self, *args, **kwargs):
        draws.append((threading.get_ident(), torch.get_num_threads()))
        return sample(self, *args, **kwargs)

    monkeypatch.setattr(ConditionalDiffusion, "sample", recorded)
    torch.set_num_threads(2)
    try:
        xr.testing.assert_identical(pool.sample(ctx, 6, seed=4), shared)
        assert len(calls) == 4
        assert len(draws) == 3 and {n for _, n in draws} == {1}
        assert threading.get_ident() not in {t for t, _ in draws}
        assert torch.get_num_threads() == 2  # the caller's threads, also for later threads
        with ThreadPoolExecutor(1) as later:
            assert later.submit(torch.get_num_threads).result() == 2
    finally:
        torch.set_num_threads(1)
    for model in pool.models:
        model.fg = copy.deepcopy(model.fg)
    xr.testing.assert_identical(pool.sample(ctx, 6, seed=4), shared)
    assert len(calls) == 7


def test_shared_first_guesses_compute_once_inside_the_block_only():
    from forecast.models.first_guess import array_key, once, shared_first_guesses

    calls: list[int] = []

    def compute():
        calls.append(1)
        return len(calls)

    def k():
        return "k"

    def never():
        raise AssertionError("a key made outside a block")

    assert once(never, compute) == 1 and once(never, compute) == 2  # no block: every time
    with shared_first_guesses():
        assert once(k, compute) == 3 and once(k, compute) == 3
        with shared_first_guesses():  # a nested block shares the outer memo
            assert once(k, compute) == 3 and once(lambda: "j", compute) == 4
    assert once(never, compute) == 5
    # blocks are per thread (the dashboard samples in several at once)
    with shared_first_guesses(), ThreadPoolExecutor(1) as pool:
        assert once(k, compute) == 6
        assert pool.submit(once, never, compute).result() == 7  # no block in that thread
        assert once(k, compute) == 6
    a = np.arange(6.0)
    assert array_key(a) == array_key(a.copy()) != array_key(a.reshape(2, 3))
    assert array_key(a) != array_key(a.astype(np.float32))


def test_compare_checkpoints_tells_same_models_from_different_ones(
    tiny_data, tiny_protocol, tmp_path, capsys, load_script
):
    """benchmarks/compare_checkpoints.py: a snapshot pool saved twice is the same; a pool
    whose models differ in one step is not (exit 1)."""
    script = load_script("benchmarks/compare_checkpoints.py")
    geometry = {"context": tiny_protocol.context, "horizon": tiny_protocol.horizon}
    train = tiny_protocol.split(tiny_data, "train")

    def pool(*keeps):
        components = []
        for keep in keeps:
            s = _tiny(ConditionalDiffusion, geometry, keep=keep)
            own = {k: v for k, v in s["config"].items() if k not in geometry}
            components.append({"kind": "diffusion", "config": own})
        return PooledEnsemble(**geometry, components=components).fit(train)

    pool(2, 4).save(tmp_path / "a.safetensors")
    pool(2, 4).save(tmp_path / "b.safetensors")
    pool(2, 5).save(tmp_path / "c.safetensors")
    assert script.main([str(tmp_path / "a.safetensors"), str(tmp_path / "b.safetensors")]) == 0
    assert capsys.readouterr().out.endswith("same models\n")
    assert script.main([str(tmp_path / "a.safetensors"), str(tmp_path / "c.safetensors")]) == 1
    out = capsys.readouterr().out
    assert "diffusion-0: arrays identical True, training records equal True" in out
    assert "diffusion-1: arrays identical False, training records equal False" in out


def test_a_list_of_steps_makes_one_component_per_step():
    """``keep = [a, b]`` in a pool component: the pool of the same component listed once per
    step (with seeds: step-major, each step's seeds in order), weights repeated."""
    train = {"max_steps": 12, "lr": 1e-3}
    listed = {"kind": "diffusion", "config": {"train": {**train, "keep": [4, 8]}}}
    apart = [{"kind": "diffusion", "config": {"train": {**train, "keep": k}}} for k in (4, 8)]
    persistence = {"kind": "persistence", "config": {}}
    a = PooledEnsemble(context=4, horizon=5, components=[listed, persistence], weights=[2, 1])
    b = PooledEnsemble(context=4, horizon=5, components=[*apart, persistence], weights=[2, 2, 1])
    assert a.config() == b.config()
    a = PooledEnsemble(context=4, horizon=5, components=[listed], seeds=[0, 1])
    b = PooledEnsemble(context=4, horizon=5, components=apart, seeds=[0, 1])
    assert a.config() == b.config()
    assert a.labels == ["diffusion-0-s0", "diffusion-0-s1", "diffusion-1-s0", "diffusion-1-s1"]


@pytest.mark.parametrize(
    ("keep", "labels", "message"),
    [
        ([], None, r"a list of train.keep steps must hold distinct step numbers, got \[\]"),
        ([4, 4], None, r"must hold distinct step numbers, got \[4, 4\]"),
        ([4, "best"], None, "must hold distinct step numbers"),
        ([4, True], None, "must hold distinct step numbers"),
        ([4, 8], ["a", "b"], "give pool labels or lists of train.keep steps, not both"),
    ],
)
def test_bad_lists_of_steps(keep, labels, message):
    component = {"kind": "diffusion", "config": {"train": {"max_steps": 12, "keep": keep}}}
    with pytest.raises(ForecastError, match=message):
        PooledEnsemble(context=4, horizon=5, components=[component], labels=labels)


def test_one_model_refuses_a_list_of_steps():
    with pytest.raises(
        ForecastError, match=r"train.keep = \[4, 8\] makes one model per step: give the list to a"
    ):
        ConditionalDiffusion(context=4, horizon=5, train={"max_steps": 12, "keep": [4, 8]})


def test_untimed_drops_timings_at_any_depth():
    record = {"step": 5, "seconds": 1.5, "setup_seconds": 0.2, "cross_fit": {"seconds": 3}}
    assert untimed(record) == {"step": 5, "cross_fit": {}}
