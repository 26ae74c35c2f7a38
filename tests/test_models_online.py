"""Online spread calibration (``forecast.models.online``) and ``forecast online-spread``."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from forecast.cli import main
from forecast.data.windows import context_of, target_of
from forecast.dims import LEAD_TIME, MEMBER, SOURCE_MODEL, TIME, LatentForecaster
from forecast.errors import ForecastError
from forecast.export import open_ensemble
from forecast.models import (
    ClimatologyEnsemble,
    OnlineSpread,
    PersistenceEnsemble,
    PooledEnsemble,
    issue_seed,
    load_model,
)
from forecast.models.online import (
    LatentOnlineSpread,
    diurnal_kernel,
    hour_of_day,
    online_factors,
    persistence_weights,
)
from forecast.models.pooled import with_member_sources
from forecast.models.vae import ConditionalVAE
from forecast.pipeline import run_protocol

pytestmark = pytest.mark.usefixtures("one_thread")

HISTORY = 8


@pytest.fixture(scope="module")
def split(tiny_data, tiny_protocol):
    return tiny_protocol.split(tiny_data, "train"), tiny_protocol.split(tiny_data, "val")


@pytest.fixture(scope="module")
def climatology(split, tiny_protocol):
    geometry = {"context": tiny_protocol.context, "horizon": tiny_protocol.horizon}
    return ClimatologyEnsemble(**geometry).fit(split[0])


@pytest.fixture(scope="module")
def vae(split, tiny_protocol):
    config = ConditionalVAE.tiny(tiny_protocol.context, tiny_protocol.horizon).config()
    config["train"] = {**config["train"], "max_steps": 4}
    return ConditionalVAE(**config).fit(*split)


@pytest.fixture(scope="module")
def issue(tiny_data):
    return tiny_data[TIME].values[-40]


def brute_force(
    base, ds, issue, history, members, weight, blend=False, reference_seed=0, diurnal=None
):
    """Centre, spread factors and persistence weights of OnlineSpread, recomputed from the base
    model's own forecasts (``diurnal``: the kernel's half width in hours)."""
    times = ds[TIME].values
    i = int(np.searchsorted(times, issue))
    (name,) = list(ds.data_vars)
    horizon = base.horizon
    sq, cross, dd = np.zeros(horizon), np.zeros(horizon), np.zeros(horizon)
    var, n = np.zeros(horizon), np.zeros(horizon)
    hourly = {k: np.zeros(horizon) for k in ("sq", "cross", "dd", "var", "n")}
    centre = None
    for lag in range(history, -1, -1):
        t = times[i - lag]
        ens = base.sample(
            context_of(ds, t, base.context), members, seed=issue_seed(reference_seed, t)
        )
        x = ens[name].values.astype(np.float64)  # (member, lead, *space)
        mean = x.mean(0)
        if lag == 0:
            centre = mean
            continue
        k = min(lag, horizon)
        obs = ds[name].values[i - lag + 1 : i - lag + 1 + k]
        e = (obs - mean[:k]).reshape(k, -1)
        d = (ds[name].values[i - lag][None] - mean[:k]).reshape(k, -1)
        m = x.shape[0]
        terms = {
            "sq": (e**2).sum(-1),
            "cross": (d * e).sum(-1),
            "dd": (d**2).sum(-1),
            "var": (x.var(0, ddof=1) * (m + 1) / m)[:k].reshape(k, -1).sum(-1),
            "n": 1.0,
        }
        for total, key in ((sq, "sq"), (cross, "cross"), (dd, "dd"), (var, "var"), (n, "n")):
            total[:k] += terms[key]
        if diurnal:  # hours between the two issue times' times of day, on the 24-h circle
            hours = (times[i] - t) / np.timedelta64(1, "h")
            kappa = np.log(2) / (1 - np.cos(2 * np.pi * diurnal / 24))
            w = np.exp(kappa * (np.cos(2 * np.pi * hours / 24) - 1))
            for key, total in hourly.items():
                total[:k] += w * terms[key]
    a = np.clip(cross / dd, 0, 1) * n / (n + weight) if blend else np.zeros(horizon)
    sq = sq - 2 * a * cross + a**2 * dd
    gain2 = (n * sq / var + weight) / (n + weight)
    if diurnal:
        h = hourly
        hsq = h["sq"] - 2 * a * h["cross"] + a**2 * h["dd"]
        gain2 = (h["n"] * hsq / h["var"] + weight * gain2) / (h["n"] + weight)
    return centre, np.sqrt(gain2), a


def test_online_factors_closed_form():
    squared = np.array([[4.0, 9.0, 1.0, 5.0]])
    variance = np.array([[1.0, 1.0, 4.0, 0.0]])
    windows = np.array([3.0, 2.0, 1.0, 0.0])
    got = online_factors(squared, variance, windows, prior_weight=1.0)
    want = np.sqrt([(3 * 4 + 1) / 4, (2 * 9 + 1) / 3, (0.25 + 1) / 2, 1.0])
    np.testing.assert_allclose(got[0], want)
    # no prior: the raw ratio where windows were verified, 1 where none was
    np.testing.assert_allclose(online_factors(squared, variance, windows, 0.0)[0], [2, 3, 0.5, 1])


def test_sample_is_the_base_ensemble_rescaled_by_its_recent_errors(climatology, tiny_data, issue):
    model = OnlineSpread.from_model(climatology, history=HISTORY, members=6, prior_weight=2.0)
    assert model.context == climatology.context + HISTORY
    assert not isinstance(model, LatentForecaster)
    ctx = context_of(tiny_data, issue, model.context)
    centre, gain, _ = brute_force(climatology, tiny_data, issue, HISTORY, 6, 2.0)
    np.testing.assert_allclose(model.factors(ctx)["spread_factor"].values[0], gain, rtol=1e-10)
    assert not np.allclose(gain, 1.0)

    ens = model.sample(ctx, 5, seed=3)
    base = climatology.sample(context_of(tiny_data, issue, climatology.context), 5, seed=3)
    g = gain.reshape(1, -1, 1, 1)
    np.testing.assert_allclose(
        ens["t2m"].values, centre + g * (base["t2m"].values - centre), rtol=1e-5
    )
    assert ens.attrs == base.attrs and ens["t2m"].attrs == base["t2m"].attrs
    np.testing.assert_array_equal(ens[LEAD_TIME].values, base[LEAD_TIME].values)
    # member m depends only on (seed, m); the reference ensembles do not depend on the seed
    xr.testing.assert_allclose(model.sample(ctx, 2, seed=3), ens.isel({MEMBER: slice(0, 2)}))
    np.testing.assert_allclose(model.factors(ctx)["spread_factor"].values[0], gain, rtol=1e-10)


def test_persistence_blend_moves_the_mean_towards_the_last_observation(
    climatology, tiny_data, issue
):
    model = OnlineSpread.from_model(
        climatology, history=HISTORY, members=6, prior_weight=2.0, persistence_blend=True
    )
    ctx = context_of(tiny_data, issue, model.context)
    centre, gain, weight = brute_force(climatology, tiny_data, issue, HISTORY, 6, 2.0, blend=True)
    got = model.factors(ctx)
    np.testing.assert_allclose(got["persistence_weight"].values[0], weight, rtol=1e-10)
    np.testing.assert_allclose(got["spread_factor"].values[0], gain, rtol=1e-10)
    assert (weight > 0).any() and (weight <= 1).all()
    base = climatology.sample(context_of(tiny_data, issue, climatology.context), 5, seed=3)
    last = tiny_data["t2m"].sel({TIME: issue}).values
    g, a = gain.reshape(1, -1, 1, 1), weight.reshape(1, -1, 1, 1)
    want = centre + g * (base["t2m"].values - centre) + a * (last - centre)
    np.testing.assert_allclose(model.sample(ctx, 5, seed=3)["t2m"].values, want, rtol=1e-5)
    # without the blend the weights are zero
    plain = OnlineSpread.from_model(climatology, history=HISTORY, members=6, prior_weight=2.0)
    assert (plain.factors(ctx)["persistence_weight"].values == 0).all()


def test_diurnal_kernel_closed_form():
    got = diurnal_kernel(np.array([0.0, 3.0, -3.0, 21.0, 27.0, 12.0]), 3.0)
    np.testing.assert_allclose(got[:5], [1.0, 0.5, 0.5, 0.5, 0.5])  # periodic, symmetric
    assert 0 < got[5] < 0.01  # the opposite hour of day hardly counts
    times = np.array(["2019-03-01T00:00", "2019-03-02T06:30", "2019-03-03T23:00"], "M8[ns]")
    np.testing.assert_allclose(hour_of_day(times), [0.0, 6.5, 23.0])


def test_online_factors_shrink_towards_a_given_prior():
    got = online_factors(np.array([[4.0, 1.0]]), np.array([[1.0, 1.0]]), np.zeros(2), 1.0, 2.25)
    np.testing.assert_allclose(got[0], [1.5, 1.5])  # no window: the prior's factor
    got = online_factors(np.array([[4.0]]), np.array([[1.0]]), np.array([1.0]), 1.0, 2.25)
    np.testing.assert_allclose(got[0], [np.sqrt((4 + 2.25) / 2)])


@pytest.mark.parametrize("blend", [False, True])
def test_diurnal_factors_follow_the_issue_hour(climatology, tiny_data, issue, blend):
    options = {"history": 30, "members": 6, "prior_weight": 2.0, "persistence_blend": blend}
    model = OnlineSpread.from_model(climatology, diurnal_width=3.0, **options)
    assert "diurnal_width=3" in repr(model)
    ctx = context_of(tiny_data, issue, model.context)
    centre, gain, weight = brute_force(
        climatology, tiny_data, issue, 30, 6, 2.0, blend=blend, diurnal=3.0
    )
    got = model.factors(ctx)
    np.testing.assert_allclose(got["spread_factor"].values[0], gain, rtol=1e-10)
    np.testing.assert_allclose(got["persistence_weight"].values[0], weight, rtol=1e-10)
    plain = OnlineSpread.from_model(climatology, **options).factors(ctx)["spread_factor"]
    assert not np.allclose(gain, plain.values[0])  # the hour's windows tell another story
    # members are moved the same way as without the kernel, with the hour's factors
    base = climatology.sample(context_of(tiny_data, issue, climatology.context), 5, seed=3)
    last = tiny_data["t2m"].sel({TIME: issue}).values
    g, a = gain.reshape(1, -1, 1, 1), weight.reshape(1, -1, 1, 1)
    want = centre + g * (base["t2m"].values - centre) + a * (last - centre)
    np.testing.assert_allclose(model.sample(ctx, 5, seed=3)["t2m"].values, want, rtol=1e-5)


def test_online_weights_closed_form():
    cross = np.array([[2.0, -1.0, 9.0, 1.0]])
    dd = np.array([[4.0, 1.0, 4.0, 0.0]])
    got = persistence_weights(cross, dd, np.array([3.0, 3.0, 1.0, 2.0]), prior_weight=1.0)
    np.testing.assert_allclose(got[0], [0.5 * 3 / 4, 0.0, 1.0 * 1 / 2, 0.0])


def test_a_heavy_prior_keeps_the_base_ensemble(climatology, tiny_data, issue):
    model = OnlineSpread.from_model(climatology, history=HISTORY, members=4, prior_weight=1e12)
    ctx = context_of(tiny_data, issue, model.context)
    base = climatology.sample(context_of(tiny_data, issue, climatology.context), 4, seed=0)
    np.testing.assert_allclose(model.factors(ctx)["spread_factor"].values, 1.0, atol=1e-9)
    np.testing.assert_allclose(
        model.sample(ctx, 4, seed=0)["t2m"].values, base["t2m"].values, rtol=1e-5
    )


def test_reference_ensembles_are_cached_without_changing_results(climatology, tiny_data, issue):
    model = OnlineSpread.from_model(climatology, history=HISTORY, members=4)
    times = tiny_data[TIME].values
    i = int(np.searchsorted(times, issue))
    first = model.sample(context_of(tiny_data, times[i], model.context), 3, seed=1)
    assert len(model._cache) == HISTORY + 1
    model.sample(context_of(tiny_data, times[i + 1], model.context), 3, seed=1)
    assert len(model._cache) == HISTORY + 2  # the next issue time adds one reference ensemble
    fresh = OnlineSpread.from_model(climatology, history=HISTORY, members=4)
    xr.testing.assert_identical(
        fresh.sample(context_of(tiny_data, times[i], model.context), 3, seed=1), first
    )
    # other values at the same times are not taken from the cache
    shifted = context_of(tiny_data, times[i], model.context) + 1.0
    assert not np.allclose(
        model.factors(shifted)["spread_factor"], fresh.factors(shifted - 1.0)["spread_factor"]
    )


def test_reference_ensembles_on_disk_serve_the_next_process(
    climatology, split, tiny_protocol, tiny_data, issue, tmp_path, monkeypatch
):
    """With a disk cache a new model instance (the next ``forecast predict``) re-forecasts only
    the hours it has not seen, with the same results; other models use other folders, and a
    damaged file is a one-line error."""
    times = tiny_data[TIME].values
    i = int(np.searchsorted(times, issue))
    first = OnlineSpread.from_model(climatology, history=HISTORY, members=4)
    folder = first.use_reference_cache(tmp_path / "refs")
    expected = first.sample(context_of(tiny_data, times[i], first.context), 3, seed=1)
    assert len(list(folder.glob("*.safetensors"))) == HISTORY + 1
    calls = []
    base_sample = climatology.sample
    monkeypatch.setattr(
        climatology, "sample", lambda *a, **k: calls.append(1) or base_sample(*a, **k)
    )
    later = OnlineSpread.from_model(climatology, history=HISTORY, members=4)
    assert later.use_reference_cache(tmp_path / "refs") == folder
    got = later.sample(context_of(tiny_data, times[i], later.context), 3, seed=1)
    xr.testing.assert_identical(got, expected)
    assert len(calls) == 1  # the members only: every reference ensemble came from the disk
    later.sample(context_of(tiny_data, times[i + 1], later.context), 3, seed=1)
    assert len(calls) == 3  # one new reference ensemble and the members
    monkeypatch.undo()
    # another base model, or other reference members, writes to a folder of its own
    geometry = {"context": tiny_protocol.context, "horizon": tiny_protocol.horizon}
    other = OnlineSpread.from_model(PersistenceEnsemble(**geometry).fit(split[0]), history=HISTORY)
    assert other.use_reference_cache(tmp_path / "refs") != folder
    more = OnlineSpread.from_model(climatology, history=HISTORY, members=5)
    assert more.use_reference_cache(tmp_path / "refs") != folder
    # a damaged file is named, with the fix
    damaged = sorted(folder.glob("*.safetensors"))[0]
    damaged.write_bytes(b"not a safetensors file")
    again = OnlineSpread.from_model(climatology, history=HISTORY, members=4)
    again.use_reference_cache(tmp_path / "refs")
    with pytest.raises(ForecastError, match=r"reference cache file .* cannot be used .*delete"):
        again.sample(context_of(tiny_data, times[i], again.context), 3, seed=1)
    with pytest.raises(ForecastError, match="is a file; pass a folder"):
        again.use_reference_cache(damaged)


def test_reference_cache_keeps_the_newest_files(climatology, tiny_data, issue, tmp_path):
    """``max_files`` deletes the least recently written reference files beyond that many; the
    dashboard keeps ten horizons' worth per model in its cache folder, or says why not."""
    import os

    from forecast.dashboard.queries import keep_references

    times = tiny_data[TIME].values
    i = int(np.searchsorted(times, issue))
    model = OnlineSpread.from_model(climatology, history=HISTORY, members=4)
    folder = model.use_reference_cache(tmp_path / "refs")
    model.sample(context_of(tiny_data, times[i], model.context), 2, seed=1)
    files = sorted(folder.glob("*.safetensors"))
    assert len(files) == HISTORY + 1
    for age, f in enumerate(files):  # the first file is the newest
        os.utime(f, (1e9 - age, 1e9 - age))
    again = OnlineSpread.from_model(climatology, history=HISTORY, members=4)
    assert again.use_reference_cache(tmp_path / "refs", max_files=3) == folder
    assert sorted(folder.glob("*.safetensors")) == files[:3]
    with pytest.raises(ForecastError, match="max_files must be an integer >= 0"):
        again.use_reference_cache(tmp_path / "refs", max_files=-1)

    dash = OnlineSpread.from_model(climatology, history=HISTORY, members=4)
    assert keep_references(dash, tmp_path / "cache") is None
    assert dash.use_reference_cache(tmp_path / "cache" / "online-references").is_dir()
    assert keep_references(climatology, tmp_path / "cache") is None  # not an online model
    assert keep_references(dash, None) is None  # the cache turned off
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    note = keep_references(OnlineSpread.from_model(climatology, history=HISTORY), blocked)
    assert note is not None and "kept in memory only" in note and "FORECAST_CACHE_DIR" in note


def test_latent_base_decode_and_encode(vae, tiny_data, issue, tmp_path):
    model = OnlineSpread.from_model(vae, history=HISTORY, members=4, persistence_blend=True)
    assert isinstance(model, LatentOnlineSpread) and isinstance(model, LatentForecaster)
    ctx = context_of(tiny_data, issue, model.context)
    base_ctx = context_of(tiny_data, issue, vae.context)
    z = model.prior(ctx, 3, seed=2)
    np.testing.assert_array_equal(np.asarray(z), np.asarray(vae.prior(base_ctx, 3, seed=2)))
    decoded = model.decode(ctx, z)
    xr.testing.assert_allclose(decoded, model.sample(ctx, 3, seed=2), rtol=1e-5, atol=1e-5)

    centre, gain, a = brute_force(vae, tiny_data, issue, HISTORY, 4, float(vae.horizon), True)
    last = tiny_data["t2m"].sel({TIME: issue}).values
    target = target_of(tiny_data, issue, vae.horizon)
    unscaled = target.copy()
    g, a = gain.reshape(-1, 1, 1), a.reshape(-1, 1, 1)
    back = centre + (target["t2m"].values - centre - a * (last - centre)) / g
    unscaled["t2m"] = target["t2m"].copy(data=back.astype(np.float32))
    np.testing.assert_allclose(
        np.asarray(model.encode(ctx, target)),
        np.asarray(vae.encode(base_ctx, unscaled)),
        rtol=1e-4,
        atol=1e-5,
    )

    path = tmp_path / "online-vae.safetensors"
    model.save(path)
    loaded = load_model(path)
    assert type(loaded) is LatentOnlineSpread
    assert loaded.config() == model.config()
    xr.testing.assert_allclose(loaded.sample(ctx, 3, seed=2), decoded, rtol=1e-6, atol=1e-6)


def test_wrapped_pool_names_its_members(
    climatology, split, tiny_protocol, tiny_data, issue, tmp_path, capsys
):
    geometry = {"context": tiny_protocol.context, "horizon": tiny_protocol.horizon}
    pool = PooledEnsemble.from_models(
        [PersistenceEnsemble(**geometry).fit(split[0]), climatology], labels=["p", "c"]
    )
    model = OnlineSpread.from_model(pool, history=HISTORY, members=4)
    ens = with_member_sources(model, model.sample(context_of(tiny_data, issue, model.context), 4))
    assert list(ens[SOURCE_MODEL].values) == ["p", "c", "p", "c"]
    assert model.composition == "pooled (p (persistence) x1, c (climatology) x1)"  # predict's
    # `forecast model info` shows the settings, the base pool and its models
    path = tmp_path / "online-pool.safetensors"
    model.save(path)
    assert main(["model", "info", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2:5] == [
        "  model: online-spread, context 4 steps, horizon 5 steps",
        "  online spread: factors from the last 8 issue times (4 reference members each, prior "
        "weight 5); reads 12 steps",
        "  base model:",
    ]
    assert "    component c (weight 1):" in lines


def test_protocol_run_scores_a_wrapped_checkpoint(climatology, tiny_protocol, tiny_data, tmp_path):
    path = tmp_path / "online.safetensors"
    OnlineSpread.from_model(climatology, history=HISTORY, members=4).save(path)
    result = run_protocol(
        tiny_protocol,
        ["climatology"],
        tmp_path / "run",
        members=4,
        data=tiny_data,
        progress=False,
        checkpoints={"online": path},
        metrics=("crps", "spread_skill"),
    )
    card = result["scorecard"]["t2m"]
    assert list(card["model"].values) == ["climatology", "online"]
    assert np.isfinite(card.sel(model="online")).all()
    written = open_ensemble(result["files"]["ensemble_online"])
    assert written.sizes[MEMBER] == 4


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"history": 0}, "history must be an integer >= 1"),
        ({"members": 1}, "members must be an integer >= 2"),
        ({"prior_weight": -1.0}, "prior_weight must be a finite number >= 0"),
        ({"prior_weight": "many"}, "prior_weight must be a finite number >= 0"),
        ({"reference_seed": 1.5}, "reference_seed must be an integer"),
        ({"persistence_blend": "yes"}, "persistence_blend must be true or false"),
        ({"diurnal_width": 0}, r"diurnal_width must be a number of hours in \(0, 12\)"),
        ({"diurnal_width": 12.5}, r"diurnal_width must be a number of hours in \(0, 12\)"),
        ({"diurnal_width": True}, r"diurnal_width must be a number of hours in \(0, 12\)"),
    ],
)
def test_bad_settings(climatology, kwargs, message):
    with pytest.raises(ForecastError, match=message):
        OnlineSpread.from_model(climatology, **kwargs)


def test_bad_models_and_contexts(climatology, tiny_data, issue):
    wrapped = OnlineSpread.from_model(climatology, history=HISTORY, members=4)
    with pytest.raises(ForecastError, match="cannot wrap another"):
        OnlineSpread.from_model(wrapped)
    with pytest.raises(ForecastError, match="cannot wrap another"):
        OnlineSpread(context=4, horizon=5, model={"kind": "online-spread", "config": {}})
    with pytest.raises(ForecastError, match=r"needs a base model: give \[model.model\]"):
        OnlineSpread(context=4, horizon=5)
    with pytest.raises(ForecastError, match=r"is not \{'kind'"):
        OnlineSpread(context=4, horizon=5, model={"kind": "vae"})
    with pytest.raises(ForecastError, match="not fitted"):
        OnlineSpread.from_model(ClimatologyEnsemble(context=4, horizon=5))
    with pytest.raises(ForecastError, match=r"needs exactly 12 \(4 for its base model and 8 of"):
        wrapped.sample(context_of(tiny_data, issue, climatology.context), 2)
    with pytest.raises(ForecastError, match="not fitted"):
        OnlineSpread(context=4, horizon=5, model={"kind": "climatology", "config": {}}).sample(
            context_of(tiny_data, issue, 12), 2
        )


def test_cli_wraps_a_checkpoint(climatology, tiny_data, tmp_path, capsys):
    src = tmp_path / "clim.safetensors"
    climatology.save(src)
    out = tmp_path / "online.safetensors"
    argv = ["online-spread", "--checkpoint", str(src), "--history", "8", "--members", "4"]
    assert main([*argv, "--out", str(out)]) == 0
    assert "it reads 12 steps of context (4 for the model, 8 of history)" in capsys.readouterr().out
    model = load_model(out)
    assert (model.history, model.members, model.prior_weight) == (8, 4, 5.0)
    before = out.read_bytes()
    assert main([*argv, "--prior-weight", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "--overwrite" in err
    assert out.read_bytes() == before
    blend = tmp_path / "blend.safetensors"
    assert main([*argv, "--persistence-blend", "--out", str(blend)]) == 0
    assert "persistence_blend=True" in capsys.readouterr().out
    assert load_model(blend).persistence_blend and not model.persistence_blend
    assert main(["model", "info", str(blend)]) == 0
    assert "; mean blended with persistence; reads 12 steps" in capsys.readouterr().out
    assert load_model(blend).diurnal_width is None
    hourly = tmp_path / "hourly.safetensors"
    assert main([*argv, "--diurnal-width", "2.5", "--out", str(hourly)]) == 0
    assert "diurnal_width=2.5" in capsys.readouterr().out
    assert load_model(hourly).diurnal_width == 2.5
    assert main(["model", "info", str(hourly)]) == 0
    assert "factors by time of day (kernel half width 2.5 h)" in capsys.readouterr().out
    assert main([*argv, "--diurnal-width", "24", "--out", str(tmp_path / "y.safetensors")]) == 2
    assert "diurnal_width must be a number of hours in (0, 12)" in capsys.readouterr().err
    assert not (tmp_path / "y.safetensors").exists()
    missing = ["--checkpoint", str(tmp_path / "no.safetensors")]
    assert main(["online-spread", *missing, "--out", str(tmp_path / "x.safetensors")]) == 2
    assert "not found" in capsys.readouterr().err
    assert not (tmp_path / "x.safetensors").exists()


def test_predict_with_a_wrapped_checkpoint(climatology, tiny_data, tmp_path, capsys):
    src = tmp_path / "online.safetensors"
    OnlineSpread.from_model(climatology, history=HISTORY, members=4).save(src)
    data = tmp_path / "data.nc"
    tiny_data.to_netcdf(data)
    issue = str(tiny_data[TIME].values[30])[:16]
    out = tmp_path / "ens.nc"
    argv = ["predict", "--checkpoint", str(src), "--data", str(data), "--init-time", issue]
    assert main([*argv, "--members", "3", "--out", str(out)]) == 0
    ens = open_ensemble(out)
    assert ens.sizes[MEMBER] == 3
    # a reference cache: written by the first run, read by the second, the same members
    cache = ["--reference-cache", str(tmp_path / "refs"), "--members", "3"]
    for name in ("cached-1.nc", "cached-2.nc"):
        assert main([*argv, *cache, "--out", str(tmp_path / name)]) == 0
        xr.testing.assert_identical(open_ensemble(tmp_path / name)["t2m"], ens["t2m"])
    assert len(list((tmp_path / "refs").glob("*/*.safetensors"))) == HISTORY + 1
    plain = tmp_path / "climatology.safetensors"
    climatology.save(plain)
    argv_plain = ["predict", "--checkpoint", str(plain), "--data", str(data), "--init-time", issue]
    assert main([*argv_plain, *cache, "--out", str(tmp_path / "plain.nc")]) == 2
    assert "--reference-cache keeps the reference forecasts of online-spread models" in (
        capsys.readouterr().err
    )
    # too little history before the issue time for the calibration: a one-line error
    early = str(tiny_data[TIME].values[8])[:16]
    argv = ["predict", "--checkpoint", str(src), "--data", str(data), "--init-time", early]
    assert main([*argv, "--out", str(tmp_path / "early.nc")]) == 2
    assert not (tmp_path / "early.nc").exists()
