"""Multi-model ensembles (``forecast.models.pooled``) and the ``forecast pool`` command."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from forecast.cli import main
from forecast.data.synthetic import synthetic_weather
from forecast.data.windows import context_of
from forecast.dims import MEMBER, TIME
from forecast.errors import ForecastError
from forecast.export import open_ensemble
from forecast.models import (
    ClimatologyEnsemble,
    PersistenceEnsemble,
    PooledEnsemble,
    load_model,
)
from forecast.models.diffusion import ConditionalDiffusion
from forecast.models.pooled import member_origins, member_sources, model_seed
from forecast.models.vae import ConditionalVAE
from forecast.pipeline import run_protocol

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def split(tiny_data, tiny_protocol):
    return tiny_protocol.split(tiny_data, "train"), tiny_protocol.split(tiny_data, "val")


@pytest.fixture(scope="module")
def baselines(split, tiny_protocol):
    geometry = {"context": tiny_protocol.context, "horizon": tiny_protocol.horizon}
    return [
        PersistenceEnsemble(**geometry).fit(split[0]),
        ClimatologyEnsemble(**geometry).fit(split[0]),
    ]


@pytest.fixture(scope="module")
def generative(split, tiny_protocol, tmp_path_factory):
    """A tiny diffusion model and a tiny VAE (4 optimizer steps each), saved."""
    folder = tmp_path_factory.mktemp("generative")
    paths = []
    for cls in (ConditionalDiffusion, ConditionalVAE):
        config = cls.tiny(tiny_protocol.context, tiny_protocol.horizon).config()
        config["train"] = {**config["train"], "max_steps": 4}
        model = cls(**config).fit(*split)
        path = folder / cls.kind / "model.safetensors"
        path.parent.mkdir()
        model.save(path)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def context(tiny_data, tiny_protocol):
    issue = tiny_protocol.windows(tiny_data, "test").issue_times(tiny_data)[0]
    return context_of(tiny_data, issue, tiny_protocol.context)


def test_member_sources_round_robin_and_shares():
    np.testing.assert_array_equal(member_sources([1, 1, 1], 7), [0, 1, 2, 0, 1, 2, 0])
    sources = member_sources([2.0, 1.0, 1.0], 50)
    counts = np.bincount(sources, minlength=3)
    np.testing.assert_allclose(counts, [25, 12.5, 12.5], atol=1)
    for n in (1, 5, 13, 49):  # prefix-stable: member m's model does not depend on n
        np.testing.assert_array_equal(member_sources([2.0, 1.0, 1.0], n), sources[:n])
    assert model_seed(0, 0) != model_seed(0, 1) and model_seed(0, 1) != model_seed(1, 1)


def test_members_come_from_their_models(baselines, context):
    pool = PooledEnsemble.from_models(baselines, weights=[2, 1], labels=["pers", "clim"])
    ens = pool.sample(context, 9, seed=3)
    np.testing.assert_array_equal(ens[MEMBER].values, np.arange(9))
    sources = member_sources([2, 1], 9)
    for k, model in enumerate(baselines):
        own = model.sample(context, int((sources == k).sum()), seed=model_seed(3, k))
        np.testing.assert_array_equal(ens["t2m"].values[sources == k], own["t2m"].values)
    single = baselines[0].sample(context, 9, seed=3)
    assert ens["t2m"].dims == single["t2m"].dims
    assert set(ens.coords) == set(single.coords)


def test_same_model_twice_gives_distinct_members(generative, context):
    """Each pooled model samples with its own seed: no member is drawn twice."""
    model = load_model(generative[0])
    ens = PooledEnsemble.from_models([model, model], labels=["a", "b"]).sample(context, 6, seed=2)
    values = ens["t2m"].values.reshape(6, -1)
    assert min(np.abs(values[i] - values[j]).max() for i in range(6) for j in range(i)) > 1e-3


def test_member_origins_index_each_models_members():
    sources, index = member_origins([2.0, 1.0, 1.0], 13)
    np.testing.assert_array_equal(sources, member_sources([2.0, 1.0, 1.0], 13))
    for k in range(3):  # a model's members are numbered 0, 1, ... in pool order
        np.testing.assert_array_equal(index[sources == k], np.arange((sources == k).sum()))
    head = member_origins([2.0, 1.0, 1.0], 5)
    np.testing.assert_array_equal(np.stack(head), np.stack((sources, index))[:, :5])


@pytest.fixture(scope="module")
def latent_pool(generative, baselines):
    """A DDIM diffusion model (its sampler is its latent sampler), a VAE and persistence."""
    diffusion, vae = (load_model(p) for p in generative)
    diffusion = diffusion.with_sampler("ddim", diffusion.latent_nfe)
    return PooledEnsemble.from_models([diffusion, vae, baselines[0]], labels=["d", "v", "p"])


def test_member_latent_decodes_to_the_pooled_member(latent_pool, context):
    assert list(latent_pool.latent_models()) == ["d", "v"]
    ens = latent_pool.sample(context, 7, seed=4)
    sources = member_sources(latent_pool.weights, 7)
    for m in range(7):
        if sources[m] == 2:
            with pytest.raises(ForecastError, match=f"member {m} comes from 'p' .*no latent"):
                latent_pool.member_latent(context, m, seed=4)
            continue
        label, z = latent_pool.member_latent(context, m, seed=4)
        assert label == "dv"[sources[m]]
        decoded = latent_pool.latent_models()[label].decode(context, z)
        np.testing.assert_allclose(
            decoded["t2m"].values[0], ens["t2m"].values[m], rtol=0, atol=1e-4
        )
    with pytest.raises(ForecastError, match="member must be >= 0"):
        latent_pool.member_latent(context, -1, seed=4)


def test_save_load_is_self_contained(generative, context, tmp_path):
    pool = PooledEnsemble.from_checkpoints(generative)
    assert pool.labels == ["diffusion", "vae"]
    want = pool.sample(context, 6, seed=1)
    path = tmp_path / "pool.safetensors"
    pool.save(path)
    for p in generative:  # the pool file carries the models' weights itself
        p.rename(p.with_suffix(".moved"))
    try:
        loaded = load_model(path)
    finally:
        for p in generative:
            p.with_suffix(".moved").rename(p)
    assert isinstance(loaded, PooledEnsemble)
    assert [m.kind for m in loaded.models] == ["diffusion", "vae"]
    xr.testing.assert_allclose(loaded.sample(context, 6, seed=1), want, rtol=1e-6, atol=1e-5)


def test_protocol_runner_scores_a_pool(generative, tiny_data, tiny_protocol, tmp_path):
    path = tmp_path / "pool.safetensors"
    PooledEnsemble.from_checkpoints(generative).save(path)
    result = run_protocol(
        tiny_protocol,
        ["persistence"],
        tmp_path / "run",
        members=4,
        data=tiny_data,
        progress=False,
        checkpoints={"pool": path},
        metrics=("crps", "spread_skill"),
    )
    card = result["scorecard"]["t2m"]
    assert list(card["model"].values) == ["persistence", "pool"]
    assert np.isfinite(card.sel(model="pool")).all()
    # the run's ensemble file of the pool names the model of every member
    written = open_ensemble(result["files"]["ensemble_pool"])
    assert list(written["source_model"].values) == ["diffusion", "vae"] * 2


def test_a_pool_of_pools_is_flattened(baselines, context):
    inner = PooledEnsemble.from_models(baselines, weights=[3, 1], labels=["pers", "clim"])
    outer = PooledEnsemble.from_models([inner, baselines[1]], weights=[2, 1], labels=["in", "c"])
    assert outer.labels == ["in/pers", "in/clim", "c"]
    np.testing.assert_allclose(outer.weights, [1.5, 0.5, 1.0])
    assert all(model is not inner for model in outer.models)
    flat = PooledEnsemble.from_models([*baselines, baselines[1]], weights=[1.5, 0.5, 1.0])
    xr.testing.assert_identical(outer.sample(context, 8, seed=2), flat.sample(context, 8, seed=2))


def test_bad_pools(baselines, split, tiny_protocol, tmp_path):
    with pytest.raises(ForecastError, match="at least one model"):
        PooledEnsemble(context=4, horizon=5)
    with pytest.raises(ForecastError, match="one weight per model"):
        PooledEnsemble.from_models(baselines, weights=[1])
    with pytest.raises(ForecastError, match="positive"):
        PooledEnsemble.from_models(baselines, weights=[1, 0])
    with pytest.raises(ForecastError, match="unique"):
        PooledEnsemble.from_models(baselines, labels=["a", "a"])
    longer = PersistenceEnsemble(context=4, horizon=6).fit(split[0])
    with pytest.raises(ForecastError, match="'persistence-1' has context 4 and horizon 6"):
        PooledEnsemble.from_models([baselines[0], longer])
    other = synthetic_weather(seed=5, n_lat=4, n_lon=4, days=10)
    elsewhere = PersistenceEnsemble(context=4, horizon=5).fit(other)
    with pytest.raises(ForecastError, match=r"different data .*coords"):
        PooledEnsemble.from_models([baselines[0], elsewhere])
    with pytest.raises(ForecastError, match="not fitted"):
        PooledEnsemble.from_models([baselines[0], PersistenceEnsemble(context=4, horizon=5)])
    pool = PooledEnsemble.from_models(baselines)
    with pytest.raises(ForecastError, match="2 labels for 1 models"):
        PooledEnsemble.from_models([pool], labels=["a", "b"])
    nested = {"kind": "pooled", "config": {"components": pool.components}}
    with pytest.raises(ForecastError, match="cannot hold another pool"):
        PooledEnsemble(context=4, horizon=5, components=[nested]).fit(split[0])
    ctx = context_of(other, other[TIME].values[100], 4)
    with pytest.raises(ForecastError, match="expects"):  # a grid the models do not know
        pool.sample(ctx, 2, seed=0)
    with pytest.raises(ForecastError, match="n_members"):
        pool.sample(ctx, 0, seed=0)


def test_cli_pool(generative, tiny_data, tiny_protocol, tmp_path, capsys):
    data_path = tmp_path / "data.nc"
    tiny_data.to_netcdf(data_path)
    issue = tiny_protocol.windows(tiny_data, "test").issue_times(tiny_data)[0]
    out = tmp_path / "pool.safetensors"
    d, v = (str(p) for p in generative)
    assert main(["pool", "--checkpoint", f"d={d}", "--checkpoint", f"v={v}", "--weights", "3,1",
                 "--out", str(out)]) == 0  # fmt: skip
    assert "pooled 2 models (d (diffusion) x3, v (vae) x1)" in capsys.readouterr().out
    pool = load_model(out)
    assert pool.labels == ["d", "v"] and pool.weights == [3.0, 1.0]
    nc = tmp_path / "pool.nc"
    args = ["predict", "--checkpoint", str(out), "--data", str(data_path), "--out", str(nc)]
    assert main([*args, "--init-time", str(issue), "--members", "4"]) == 0
    written = open_ensemble(nc)
    assert written.attrs["model"] == "pooled: d (diffusion) x3, v (vae) x1"
    # each member names the model that drew it: weights 3:1 -> d, d, v, d (round robin)
    assert list(written["source_model"].values) == ["d", "d", "v", "d"] == pool.member_labels(4)
    capsys.readouterr()
    cases = [
        (["--checkpoint", d], "at least two"),
        (["--checkpoint", d, "--checkpoint", str(tmp_path / "no.safetensors")], "not found"),
        (["--checkpoint", f"d={d}", "--checkpoint", v], "label all"),
        (["--checkpoint", d, "--checkpoint", v, "--weights", "1,x"], "not comma-separated"),
        (["--checkpoint", d, "--checkpoint", v, "--weights", "1"], "1 values for 2"),
        (["--checkpoint", d, "--checkpoint", v], "exists; pass --overwrite"),
    ]
    for extra, message in cases:
        assert main(["pool", *extra, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    missing = tmp_path / "no" / "pool.safetensors"
    assert main(["pool", "--checkpoint", d, "--checkpoint", v, "--out", str(missing)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_dashboard_lists_and_samples_a_pool(generative, tiny_data, context, tmp_path):
    from forecast.dashboard import queries

    path = tmp_path / "pool.safetensors"
    PooledEnsemble.from_checkpoints(generative).save(path)
    readable, unreadable, _ = queries.scan_checkpoints([path], tiny_data)
    assert [(info["kind"], fits) for _, info, fits in readable] == [("pooled", True)]
    assert unreadable == []
    pool = load_model(path)
    assert not queries.is_latent(pool)  # no common latent space: paths walk one model's
    assert queries.latent_parts(pool) == ["diffusion", "vae"]
    ens = queries.sample_at(pool, tiny_data, context["time"].values[-1], 4, 0)
    assert ens.sizes[MEMBER] == 4


def test_seeds_make_a_deep_ensemble_of_one_configuration(split, tiny_protocol, context, tmp_path):
    """``seeds`` trains one model per seed; each equals the model trained alone with that
    seed, and the pool survives save / load with its expanded models."""
    geometry = {"context": tiny_protocol.context, "horizon": tiny_protocol.horizon}
    config = ConditionalDiffusion.tiny(**geometry).config()
    config["train"] = {**config["train"], "max_steps": 4}
    own = {k: v for k, v in config.items() if k not in geometry}
    component = {"kind": "diffusion", "config": own}
    pool = PooledEnsemble(**geometry, components=[component], weights=[2.0], seeds=[3, 5])
    assert pool.labels == ["diffusion-0-s3", "diffusion-0-s5"]
    assert pool.weights == [2.0, 2.0]
    assert [c["config"]["train"]["seed"] for c in pool.components] == [3, 5]
    assert component["config"]["train"].get("seed") != 3  # the given table is left as it was
    pool.fit(*split)
    alone = ConditionalDiffusion(**{**config, "train": {**config["train"], "seed": 5}})
    alone.fit(*split)
    np.testing.assert_array_equal(
        pool.models[1].sample(context, 3, seed=0)["t2m"].values,
        alone.sample(context, 3, seed=0)["t2m"].values,
    )
    pool.save(tmp_path / "deep.safetensors")
    again = load_model(tmp_path / "deep.safetensors")
    assert again.labels == pool.labels
    xr.testing.assert_equal(again.sample(context, 6, seed=1), pool.sample(context, 6, seed=1))


def test_jobs_fit_the_models_side_by_side_as_one_after_the_other(split, tiny_protocol, context):
    """``fit(jobs=2)`` fits each model in a process of its own, on one thread here: the models
    equal those of a fit in this process; a model that fails stops the fit with its error."""
    geometry = {"context": tiny_protocol.context, "horizon": tiny_protocol.horizon}
    components = []
    for cls in (ConditionalDiffusion, ConditionalVAE):
        config = {k: v for k, v in cls.tiny(**geometry).config().items() if k not in geometry}
        config["train"] = {**config["train"], "max_steps": 3}
        components.append({"kind": cls.kind, "config": config})
    components.append({"kind": "persistence", "config": {}})
    apart = PooledEnsemble(**geometry, components=components).fit(*split)
    side = PooledEnsemble(**geometry, components=components).fit(*split, jobs=2)
    assert side.models[1].training["step"] == 3
    xr.testing.assert_identical(side.sample(context, 6, seed=4), apart.sample(context, 6, seed=4))
    broken = split[0].copy(deep=True)
    broken["t2m"][:] = np.nan
    with pytest.raises(ForecastError, match="'t2m' has no finite value in the fitting data"):
        PooledEnsemble(**geometry, components=components[:2]).fit(broken, split[1], jobs=2)
    for jobs in (0, 1.5, True):
        with pytest.raises(ForecastError, match="jobs must be an integer >= 1"):
            PooledEnsemble(**geometry, components=components[2:]).fit(*split, jobs=jobs)


def test_bad_seeds(tiny_protocol):
    geometry = {"context": tiny_protocol.context, "horizon": tiny_protocol.horizon}
    diffusion = [{"kind": "diffusion", "config": {}}]
    for seeds in ([], [1, 1], [0.5], "01", [True]):
        with pytest.raises(ForecastError, match="pool seeds must be distinct integers"):
            PooledEnsemble(**geometry, components=diffusion, seeds=seeds)
    with pytest.raises(ForecastError, match="labels or seeds, not both"):
        PooledEnsemble(**geometry, components=diffusion, seeds=[0], labels=["a"])
    with pytest.raises(ForecastError, match="'persistence' has no training seed"):
        PooledEnsemble(**geometry, components=[{"kind": "persistence", "config": {}}], seeds=[0])


def test_training_settings_reach_every_trained_model(tiny_protocol):
    geometry = {"context": tiny_protocol.context, "horizon": tiny_protocol.horizon}
    components = [
        {"kind": "persistence", "config": {}},
        {"kind": "vae", "config": {"train": {"max_steps": 9, "lr": 0.01}}},
    ]
    pool = PooledEnsemble(**geometry, components=components, train={"max_steps": 3})
    assert pool.components[0] == components[0]
    assert pool.components[1]["config"]["train"] == {"max_steps": 3, "lr": 0.01}
    assert components[1]["config"]["train"]["max_steps"] == 9  # the input is left as it was
    pool = PooledEnsemble(**geometry, components=components[1:], train={"lr": 0.1}, seeds=[1, 2])
    assert [c["config"]["train"] for c in pool.components] == [
        {"max_steps": 9, "lr": 0.1, "seed": 1},
        {"max_steps": 9, "lr": 0.1, "seed": 2},
    ]
    with pytest.raises(ForecastError, match="pool seeds or a training seed, not both"):
        PooledEnsemble(**geometry, components=components[1:], train={"seed": 1}, seeds=[1])
    with pytest.raises(ForecastError, match="no model of this pool trains"):
        PooledEnsemble(**geometry, components=components[:1], train={"max_steps": 3})
    quiet = PooledEnsemble(**geometry, components=components[:1], train={"progress": False})
    assert quiet.components == components[:1]


def test_dashboard_walks_the_latent_space_of_one_pool_model(
    latent_pool, context, tiny_data, tmp_path
):
    from forecast.dashboard import queries as q
    from forecast.data.windows import target_of

    assert q.latent_parts(latent_pool) == ["d", "v"]
    assert q.latent_parts(latent_pool.models[1]) == [""] and q.latent_parts(object()) == []
    assert q.part_members(latent_pool, "v", 7) == [1, 4]  # round robin d, v, p, d, v, p, d
    assert q.part_members(latent_pool.models[1], "", 3) == [0, 1, 2]
    with pytest.raises(ForecastError, match="pool model 'x' has no latent space"):
        q.part_members(latent_pool, "x", 7)
    ens = latent_pool.sample(context, 7, seed=4)
    z_a, z_b = q.scenario_latents(latent_pool, context, 1, 4, n_members=7, seed=4, part="v")
    path, *_ = q.latent_explorer(q.latent_part(latent_pool, "v"), context, z_a, z_b, 3)
    np.testing.assert_allclose(path["t2m"].values[0], ens["t2m"].values[1], rtol=0, atol=1e-4)
    np.testing.assert_allclose(path["t2m"].values[-1], ens["t2m"].values[4], rtol=0, atol=1e-4)
    # the app's members (sample_at: the issue time's seed) are the path's ends as well
    issue = context["time"].values[-1]
    shown = q.sample_at(latent_pool, tiny_data, issue, 7, 0)
    z_a, _ = q.scenario_latents(
        latent_pool, context, 4, 1, n_members=7, seed=q.issue_seed(0, issue), part="v"
    )
    path, *_ = q.latent_explorer(q.latent_part(latent_pool, "v"), context, z_a, z_b, 3)
    np.testing.assert_allclose(path["t2m"].values[0], shown["t2m"].values[4], rtol=0, atol=1e-4)
    target = target_of(tiny_data, issue, latent_pool.horizon)
    z_obs, _ = q.scenario_latents(
        latent_pool, context, "observed", 0, n_members=7, seed=4, target=target, part="d"
    )
    want = latent_pool.models[0].encode(context, target)[0]  # the diffusion model's inversion
    np.testing.assert_allclose(np.asarray(z_obs), np.asarray(want), rtol=0, atol=1e-6)
    with pytest.raises(ForecastError, match="member 0 comes from pool model 'd', not 'v'"):
        q.scenario_latents(latent_pool, context, 0, 1, n_members=7, seed=4, part="v")
    with pytest.raises(ForecastError, match="pool model 'p' has no latent space"):
        q.latent_part(latent_pool, "p")
    # the shown ensemble of a pool (and its download) names each member's model
    raw = q.ensemble_netcdf_bytes(shown, model="pooled")
    (tmp_path / "shown.nc").write_bytes(raw)
    back = open_ensemble(tmp_path / "shown.nc")
    assert list(back["source_model"].values) == ["d", "v", "p", "d", "v", "p", "d"]
    single = q.sample_at(latent_pool.models[1], tiny_data, issue, 7, 0)
    assert "source_model" not in single.coords
    with pytest.raises(ForecastError, match=r"member 9 outside 0\.\.6"):
        q.scenario_latents(latent_pool, context, 1, 9, n_members=7, seed=4, part="v")


def test_side_by_side_keeps_order_joins_the_block_and_restores_threads():
    """Draws run on one torch thread each, several at once; a result they share through the
    block's memo is computed once even when they ask for it at the same moment; the first
    error reaches the caller; the caller's thread count is kept."""
    import threading
    import time

    import torch

    from forecast.models.first_guess import once, shared_first_guesses
    from forecast.models.pooled import side_by_side

    computed: list[int] = []
    seen: list[tuple[int, int]] = []
    start = threading.Barrier(3)

    def slow() -> str:
        computed.append(1)
        time.sleep(0.2)
        return "shared"

    def draw(k: int):
        def run():
            seen.append((threading.get_ident(), torch.get_num_threads()))
            start.wait(timeout=10)  # all three ask for the shared result together
            return k, once(lambda: "key", slow)

        return run

    torch.set_num_threads(3)
    try:
        with shared_first_guesses() as memo:
            out = side_by_side([draw(k) for k in range(3)], memo)
        assert out == [(0, "shared"), (1, "shared"), (2, "shared")]
        assert computed == [1]
        assert len({t for t, _ in seen}) == 3 and {n for _, n in seen} == {1}
        assert torch.get_num_threads() == 3

        def fails():
            raise ForecastError("model 1 failed")

        with shared_first_guesses() as memo, pytest.raises(ForecastError, match="model 1 failed"):
            side_by_side([lambda: 0, fails, lambda: 2], memo)
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(1)
    with shared_first_guesses() as memo:  # one thread: a plain loop in the caller's thread
        assert side_by_side([threading.get_ident], memo) == [threading.get_ident()]
