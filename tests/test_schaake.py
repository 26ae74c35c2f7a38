"""Schaake shuffle (``forecast.models.schaake``) and ``forecast schaake``."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from forecast.cli import main
from forecast.data.windows import context_of
from forecast.dims import LEAD_TIME, MEMBER, TIME, window_context
from forecast.errors import ForecastError
from forecast.export import open_ensemble
from forecast.models import (
    GaussianProcessForecaster,
    OnlineSpread,
    SchaakeShuffle,
    load_model,
)
from forecast.models.schaake import schaake_shuffle, template_starts
from forecast.pipeline import run_protocol

pytestmark = pytest.mark.usefixtures("one_thread")

MEMBERS = 8


@pytest.fixture(scope="module")
def split(tiny_data, tiny_protocol):
    return tiny_protocol.split(tiny_data, "train"), tiny_protocol.split(tiny_data, "val")


@pytest.fixture(scope="module")
def gp(split, tiny_protocol):
    """The GP baseline: members independent from point to point."""
    model = GaussianProcessForecaster.tiny(tiny_protocol.context, tiny_protocol.horizon)
    return model.fit(*split)


@pytest.fixture(scope="module")
def shuffled(gp, split):
    return SchaakeShuffle.from_model(gp, split[0])


@pytest.fixture(scope="module")
def issue(tiny_data):
    return tiny_data[TIME].values[-40]


def _ranks(a: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(a, axis=0, kind="stable"), axis=0, kind="stable")


def _members(ens: xr.Dataset) -> np.ndarray:
    return ens["t2m"].transpose(MEMBER, LEAD_TIME, ...).values


def test_shuffle_keeps_each_points_values_and_takes_the_template_ranks():
    rng = np.random.default_rng(0)
    members, template = rng.normal(size=(2, 7, 3, 4, 5))
    out = schaake_shuffle(members, template)
    np.testing.assert_array_equal(np.sort(out, axis=0), np.sort(members, axis=0))
    np.testing.assert_array_equal(_ranks(out), _ranks(template))
    # brute force at one position
    order = np.argsort(template[:, 1, 2, 3])
    expected = np.empty(7)
    expected[order] = np.sort(members[:, 1, 2, 3])
    np.testing.assert_array_equal(out[:, 1, 2, 3], expected)
    # ties in the template keep the template's order
    tied = schaake_shuffle(np.array([3.0, 1.0, 2.0]), np.array([5.0, 5.0, 1.0]))
    np.testing.assert_array_equal(tied, [2.0, 3.0, 1.0])
    with pytest.raises(ForecastError, match="members and templates of one shape"):
        schaake_shuffle(members, template[:6])


def test_template_windows_are_observed_by_the_issue_time_and_near_its_time_of_day():
    times = np.arange("2020-01-01T00", "2020-01-04T00", dtype="datetime64[h]")  # 72 hours
    issue = np.datetime64("2020-01-03T06")  # step 54
    starts = template_starts(times, issue, horizon=3, n=5)
    assert (starts + 3 <= 54).all()  # every template's target observed by the issue time
    # 06 UTC windows of 2 and 1 January first (most recent first), then 05 and 07 UTC of 2 Jan
    np.testing.assert_array_equal(starts, [30, 6, 31, 29, 7])
    with pytest.raises(ForecastError, match="ask for at most 52 members"):
        template_starts(times, issue, horizon=3, n=53)
    daily = np.arange("2020-01-01", "2020-01-11", dtype="datetime64[D]")
    np.testing.assert_array_equal(template_starts(daily, daily[-1], 2, 3), [7, 6, 5])


def test_sample_reorders_the_base_ensemble_to_the_templates(gp, shuffled, tiny_data, issue):
    ctx = context_of(tiny_data, issue, shuffled.context)
    base = gp.sample(ctx, MEMBERS, seed=3)
    ens = shuffled.sample(ctx, MEMBERS, seed=3)
    xr.testing.assert_identical(ens[LEAD_TIME], base[LEAD_TIME])
    assert ens["t2m"].dims == base["t2m"].dims
    x, b = _members(ens), _members(base)
    np.testing.assert_array_equal(np.sort(x, axis=0), np.sort(b, axis=0))  # same values per point
    template = shuffled.templates(issue, MEMBERS)[:, 0]  # (member, lead, lat, lon)
    np.testing.assert_array_equal(_ranks(x), _ranks(template))
    # the templates are observed changes from the issue time of the chosen windows
    starts = template_starts(shuffled.record_times, issue, shuffled.horizon, MEMBERS)
    obs = tiny_data["t2m"].values
    np.testing.assert_allclose(template[0, 1], obs[starts[0] + 2] - obs[starts[0]], rtol=1e-6)
    # the GP's members are independent from point to point, the shuffled ones follow the
    # spatially smooth observed changes
    corr = {}
    for name, a in (("base", b), ("shuffled", x)):
        dep = a - a.mean(axis=0)
        left, right = dep[..., :-1].ravel(), dep[..., 1:].ravel()
        corr[name] = np.corrcoef(left, right)[0, 1]
    assert corr["base"] < 0.2 and corr["shuffled"] > 0.4  # measured: 0.13 and 0.49
    xr.testing.assert_identical(shuffled.sample(ctx, MEMBERS, seed=3), ens)  # seeded


def test_save_load_the_protocol_runner_and_the_benchmark(
    gp, shuffled, tiny_protocol, tiny_data, issue, tmp_path, monkeypatch, capsys, load_script
):
    path = tmp_path / "schaake.safetensors"
    shuffled.save(path)
    loaded = load_model(path)
    assert isinstance(loaded, SchaakeShuffle)
    np.testing.assert_array_equal(loaded.record_times, shuffled.record_times)
    ctx = context_of(tiny_data, issue, shuffled.context)
    xr.testing.assert_identical(loaded.sample(ctx, 4, seed=1), shuffled.sample(ctx, 4, seed=1))
    gp.save(tmp_path / "gp.safetensors")
    result = run_protocol(
        tiny_protocol,
        [],
        tmp_path / "run",
        members=MEMBERS,
        data=tiny_data,
        progress=False,
        checkpoints={"base": tmp_path / "gp.safetensors", "schaake": path},
        metrics=("crps", "energy", "area_crps", "area_spread_skill"),
    )
    card = result["scorecard"]["t2m"]
    crps, energy = (card.sel(metric=m) for m in ("crps", "energy"))
    # the per-point score is the base ensemble's to rounding; the energy score is not
    np.testing.assert_allclose(crps.sel(model="schaake"), crps.sel(model="base"), rtol=1e-6)
    assert not np.allclose(energy.sel(model="schaake"), energy.sel(model="base"), rtol=1e-3)
    # benchmarks/bench_schaake.py: the post-hoc shuffle of the base's ensembles is the
    # checkpoint's, and the shuffled scores it prints are the run's
    bench = load_script("benchmarks/bench_schaake.py")
    monkeypatch.setattr(bench, "open_dataset", lambda name: tiny_data)
    bench.main([str(tmp_path / "run"), "--model", "base", "--same", "base=schaake"])
    text = capsys.readouterr().out
    assert "schaake equals the shuffle of base: True" in text
    shuffled_line = next(line for line in text.splitlines() if "shuffled:" in line)
    mean_energy = float(energy.sel(model="schaake").mean())
    assert f"CRPS {float(crps.sel(model='base').mean()):.4f}" in shuffled_line
    assert f"energy {mean_energy:.3f}" in shuffled_line
    area = {
        m: float(card.sel(model="schaake", metric=m).mean())
        for m in ("area_crps", "area_spread_skill")
    }
    assert (
        f"area mean: CRPS {area['area_crps']:.4f}, spread-skill {area['area_spread_skill']:.2f}"
        in shuffled_line
    )  # the scorecard's (cos-latitude weighted) area mean
    assert "energy, shuffled against as sampled: " in text
    # --templates: the other kinds; the day-change templates are x(t0 + L) - x(t0 + L - 1 day)
    bench.main([str(tmp_path / "run"), "--model", "base", "--templates"])
    text = capsys.readouterr().out
    assert "day-change templates: CRPS" in text and "random templates: CRPS" in text
    values = tiny_data["t2m"].values[:, None].astype(np.float32)
    times = tiny_data[TIME].values
    complete = np.ones(len(times), dtype=bool)
    day = bench.templates_for("day-change", values, times, issue, 5, 4, complete)
    assert complete.all()  # the caller's mask is left as it was
    starts = template_starts(times, issue, 5, 4)
    assert (starts >= 24).all()
    np.testing.assert_array_equal(day[2, 1], values[starts[2] + 2, 0] - values[starts[2] - 22, 0])


def test_wraps_an_online_spread_model_and_fits_from_a_config(split, tiny_data, issue):
    online_spec = {
        "kind": "online-spread",
        "config": {"model": {"kind": "climatology", "config": {}}, "history": 6, "members": 4},
    }
    model = SchaakeShuffle(context=4, horizon=5, model=online_spec).fit(*split)
    assert isinstance(model.model, OnlineSpread)
    assert (window_context(model), model.context) == (4, 10)
    np.testing.assert_array_equal(model.record_times, split[0][TIME].values)
    ens = model.sample(context_of(tiny_data, issue, 10), 4, seed=0)
    assert ens.sizes[MEMBER] == 4
    assert model.config() == {"context": 4, "horizon": 5, "model": model.spec}


def test_bad_input(gp, shuffled, split, tiny_data, issue):
    ctx = context_of(tiny_data, issue, shuffled.context)
    with pytest.raises(ForecastError, match=r"ask for at most \d+ members"):
        shuffled.sample(ctx, 10_000)
    with pytest.raises(ForecastError, match="members must be"):
        shuffled.sample(ctx, 0)
    with pytest.raises(ForecastError, match="cannot wrap another"):
        SchaakeShuffle.from_model(shuffled, split[0])
    with pytest.raises(ForecastError, match="cannot wrap another"):
        SchaakeShuffle(context=4, horizon=5, model={"kind": "schaake", "config": {}})
    with pytest.raises(ForecastError, match=r"a schaake model needs a base model"):
        SchaakeShuffle(context=4, horizon=5)
    with pytest.raises(ForecastError, match="not fitted"):
        SchaakeShuffle(context=4, horizon=5, model={"kind": "gp", "config": {}}).sample(ctx, 2)
    gappy = split[0].isel({TIME: [0, 1, 2, 5, 6, 7, 8, 9, 10]})
    with pytest.raises(ForecastError, match="irregular time step"):
        SchaakeShuffle.from_model(gp, gappy)
    arrays, meta = shuffled.checkpoint_content()
    arrays = {**arrays, "record/times": arrays["record/times"][[0, 2, 3]]}
    with pytest.raises(ForecastError, match="must be regular in time"):
        SchaakeShuffle.from_checkpoint(arrays, meta)
    with pytest.raises(ForecastError, match="not a readable schaake checkpoint"):
        SchaakeShuffle.from_checkpoint({}, meta)
    with pytest.raises(ForecastError, match=r"data is 2 x 4 \(lat x lon\) but the base model"):
        SchaakeShuffle.from_model(gp, split[0].isel(lat=slice(0, 2)))
    # windows with a missing value are no templates
    holed = split[0].copy(deep=True)
    hours = holed[TIME].dt.hour.values
    holed["t2m"][hours == 0, 1, 2] = np.nan  # every 00 UTC window has a gap at one point
    gappy = SchaakeShuffle.from_model(gp, holed)
    midnight = issue - (issue - issue.astype("datetime64[D]"))
    starts = template_starts(gappy.record_times, midnight, 5, 4, complete=gappy._complete)
    assert np.isfinite(gappy.templates(midnight, 4)).all()
    assert not np.isin(hours[starts], [19, 20, 21, 22, 23, 0]).any()  # windows through 00 UTC
    holed["t2m"][:] = np.nan
    with pytest.raises(ForecastError, match="without gaps, its data record has 0"):
        SchaakeShuffle.from_model(gp, holed).sample(ctx, 4)


def test_cli_wraps_a_checkpoint(gp, tiny_data, tmp_path, capsys):
    src = tmp_path / "gp.safetensors"
    gp.save(src)
    out = tmp_path / "schaake.safetensors"
    argv = ["schaake", "--checkpoint", str(src), "--data", "synthetic-weather"]
    # the named data set's protocol has another grid than the tiny model's
    assert main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert not out.exists()
    data = tmp_path / "tiny.nc"
    tiny_data.to_netcdf(data)
    argv = ["schaake", "--checkpoint", str(src), "--data", str(data)]
    assert main([*argv, "--out", str(out)]) == 0
    assert "SchaakeShuffle(gp, record of" in capsys.readouterr().out
    model = load_model(out)
    from forecast.commands.train import protocol_for  # a file's data: its 70/10/20 split

    train = protocol_for(str(data), tiny_data, None, None).split(tiny_data, "train")
    np.testing.assert_array_equal(model.record_times, train[TIME].values)
    before = out.read_bytes()
    assert main([*argv, "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert out.read_bytes() == before
    assert main(["model", "info", str(out)]) == 0
    assert "Schaake shuffle: members reordered to the ranks of observed changes" in (
        capsys.readouterr().out
    )
    missing = ["schaake", "--checkpoint", str(tmp_path / "no.safetensors"), "--data", str(data)]
    assert main([*missing, "--out", str(tmp_path / "x.safetensors")]) == 2
    assert "not found" in capsys.readouterr().err


def test_predict_keeps_the_reference_forecasts_of_a_wrapped_online_model(
    split, tiny_data, tmp_path
):
    """``forecast predict --reference-cache`` reaches the online-spread model inside a schaake
    wrapper (and the dashboard's keep_references does too)."""
    from forecast.dashboard.queries import keep_references
    from forecast.models import ClimatologyEnsemble

    climatology = ClimatologyEnsemble(context=4, horizon=5).fit(split[0])
    online = OnlineSpread.from_model(climatology, history=6, members=4)
    src = tmp_path / "schaake.safetensors"
    SchaakeShuffle.from_model(online, split[0]).save(src)
    data = tmp_path / "data.nc"
    tiny_data.to_netcdf(data)
    issue = str(tiny_data[TIME].values[-30])[:16]
    argv = ["predict", "--checkpoint", str(src), "--data", str(data), "--init-time", issue]
    cache = ["--reference-cache", str(tmp_path / "refs"), "--members", "3"]
    for name in ("first.nc", "second.nc"):
        assert main([*argv, *cache, "--out", str(tmp_path / name)]) == 0
    assert len(list((tmp_path / "refs").glob("*/*.safetensors"))) == 6 + 1
    first, second = (open_ensemble(tmp_path / n)["t2m"] for n in ("first.nc", "second.nc"))
    xr.testing.assert_identical(first, second)
    # the file names the whole stack, not only the outer wrapper
    written = xr.open_dataset(tmp_path / "first.nc")
    assert written.attrs["model"] == "schaake: online-spread of climatology"
    model = load_model(src)
    assert keep_references(model, tmp_path / "dash") is None
    assert model.model._disk is not None and model.model._disk.is_relative_to(tmp_path / "dash")
