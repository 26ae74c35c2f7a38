"""The protocol runner on a tiny protocol: files, scorecard layout, determinism, resume."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import xarray as xr

from forecast.dims import INIT_TIME, LEAD_TIME, MEMBER, METRIC, MODEL
from forecast.errors import ForecastError
from forecast.export import open_ensemble
from forecast.pipeline import CRPS_GAUSSIAN, run_protocol

MODELS = ["persistence", "diurnal-persistence", "gp"]
OPTIONS = {"gp": {"n_train": 64, "iterations": 10}}


def run_all(protocol, data, out):
    """The run every test here starts from: MODELS, 6 members, seed 1."""
    return run_protocol(
        protocol, MODELS, out, members=6, seed=1, model_options=OPTIONS, data=data, progress=False
    )


@pytest.fixture(scope="module")
def first_run(tiny_data, tiny_protocol, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    return out, run_all(tiny_protocol, tiny_data, out)


def test_files_and_scorecard(first_run, tiny_protocol, tiny_data):
    out, result = first_run
    for name in (
        "scorecard.nc",
        "scorecard.csv",
        "scorecard.md",
        "run.json",
        "crps_by_lead.png",
        "rank_histograms.png",
    ):
        assert (out / name).is_file(), name
    assert len(list((out / "checkpoints").glob("*.safetensors"))) == 3
    card = result["scorecard"]
    assert card["t2m"].dims == (MODEL, LEAD_TIME, METRIC)
    assert list(card[MODEL].values) == MODELS
    assert card.sizes[LEAD_TIME] == 5
    metrics = list(card[METRIC].values)
    for m in (
        "crps",
        "crps_fair",
        "rmse",
        "mae_median",
        "spread_skill",
        "rank_flatness",
        CRPS_GAUSSIAN,
    ):
        assert m in metrics
    gauss = card["t2m"].sel({METRIC: CRPS_GAUSSIAN})
    assert np.isfinite(gauss.sel({MODEL: "gp"})).all()
    assert np.isnan(gauss.sel({MODEL: "persistence"})).all()
    assert (card["t2m"].sel({METRIC: "crps"}) > 0).all()
    on_disk = xr.open_dataset(out / "scorecard.nc")
    np.testing.assert_allclose(on_disk["t2m"].values, card["t2m"].values)
    ens = open_ensemble(result["files"]["ensemble_persistence"])
    n_issues = len(tiny_protocol.windows(tiny_data, "test"))
    assert ens["t2m"].sizes[INIT_TIME] == n_issues
    assert ens["t2m"].sizes[MEMBER] == 6
    run = json.loads((out / "run.json").read_text())
    assert run["members"] == 6 and run["seed"] == 1
    assert set(run["trained"]) == set(MODELS) and "gpytorch" in run["versions"]
    # baselines only: nothing to test against them
    assert not (out / "significance.csv").exists() and result["significance"] == []


def test_resume_reuses_cache(first_run, tiny_protocol, tiny_data):
    out, result = first_run
    cached = sorted(p for p in out.rglob("*") if p.parent.name in ("checkpoints", "ensembles"))
    mtimes = {p: p.stat().st_mtime_ns for p in cached}
    again = run_all(tiny_protocol, tiny_data, out)
    assert again["trained"] == [] and again["sampled"] == []
    assert {p: p.stat().st_mtime_ns for p in cached} == mtimes
    xr.testing.assert_allclose(again["scorecard"], result["scorecard"])
    run = json.loads((out / "run.json").read_text())
    assert run["trained"] == [] and "fit_s" in run["timings_s"]["gp"]  # timings carried over


def test_deterministic_given_seed(first_run, tiny_protocol, tiny_data, tmp_path):
    _, result = first_run
    same = run_protocol(
        tiny_protocol,
        ["persistence"],
        tmp_path / "a",
        members=6,
        seed=1,
        data=tiny_data,
        progress=False,
    )
    other = run_protocol(
        tiny_protocol,
        ["persistence"],
        tmp_path / "b",
        members=6,
        seed=2,
        data=tiny_data,
        progress=False,
    )
    metrics = list(same["scorecard"][METRIC].values)
    want = result["scorecard"]["t2m"].sel({MODEL: "persistence", METRIC: metrics})
    np.testing.assert_allclose(same["scorecard"]["t2m"].sel({MODEL: "persistence"}), want)
    assert not np.allclose(other["scorecard"]["t2m"].sel({MODEL: "persistence"}), want)


def test_bad_input(tiny_protocol, tiny_data, tmp_path, monkeypatch):
    with pytest.raises(ForecastError, match="valid names"):
        run_protocol(tiny_protocol, ["no-such-model"], tmp_path, data=tiny_data)
    with pytest.raises(ForecastError, match="members"):
        run_protocol(tiny_protocol, ["persistence"], tmp_path, members=0, data=tiny_data)
    with pytest.raises(ForecastError, match="valid names"):
        run_protocol("P9", ["persistence"], tmp_path)
    with pytest.raises(ForecastError, match="not in the run"):
        run_protocol(
            tiny_protocol, ["persistence"], tmp_path, data=tiny_data, model_options=OPTIONS
        )
    monkeypatch.setenv("FORECAST_DATA_DIR", str(tmp_path / "empty"))
    with pytest.raises(ForecastError, match="FORECAST_DATA_DIR"):
        run_protocol("P2", ["persistence"], tmp_path)


def test_trained_key_holds_the_fit_revision():
    """A generative model's cached checkpoint from an older ``fit`` is not reused; the
    baselines' keys (no ``fit_revision``) are those of earlier runs."""
    from forecast.models import MODELS
    from forecast.pipeline import _key, _trained_key

    args = ({"context": 6}, {"name": "P2"}, 0, {"dims": {}})
    payload = {"config": args[0], "protocol": args[1], "seed": 0, "data": args[3]}
    gp = MODELS.get("gp")
    assert _trained_key("gp", gp, *args) == _key({"model": "gp", **payload})
    diffusion = MODELS.get("diffusion")
    assert diffusion.fit_revision == 2
    assert _trained_key("diffusion", diffusion, *args) == _key(
        {"model": "diffusion", **payload, "fit_revision": 2}
    )
    assert _trained_key("diffusion", diffusion, *args) != _key({"model": "diffusion", **payload})


def _run_script(load_script, name: str, monkeypatch, data):
    """``benchmarks/<name>.py``, loaded, with the protocol run's data set (read by
    ``paired_difference.open_run``, which it imports) replaced by ``data``."""
    module = load_script(f"benchmarks/{name}.py")
    monkeypatch.setattr(sys.modules["paired_difference"], "open_dataset", lambda name: data)
    return module


def test_named_leads_benchmark(first_run, tiny_data, monkeypatch, capsys, load_script):
    """benchmarks/named_leads.py: the model's CRPS against the best other baseline at each
    named lead, as the scorecard has them; a lead the run lacks is a one-line error."""
    named = _run_script(load_script, "named_leads", monkeypatch, tiny_data)
    out, result = first_run
    named.main([str(out), "--model", "gp", "--leads", "1", "2"])
    text = capsys.readouterr().out
    crps = result["scorecard"]["t2m"].sel({METRIC: "crps"})
    for k, hours in enumerate((1, 2)):
        at = crps.isel({LEAD_TIME: k})
        others = {m: float(at.sel({MODEL: m})) for m in ("persistence", "diurnal-persistence")}
        best = min(others, key=others.get)
        rel = (float(at.sel({MODEL: "gp"})) / others[best] - 1) * 100
        assert f"  {hours} h: {rel:+.1f} % against {best} (" in text
    with pytest.raises(ForecastError, match=r"lead\(s\) 99 h not in the run"):
        named.main([str(out), "--model", "gp", "--leads", "99"])


def test_area_spread_interval_benchmark(first_run, tiny_data, monkeypatch, capsys, load_script):
    """benchmarks/area_spread_interval.py: the area mean's spread-skill ratio per lead is the
    scorecard's ``area_spread_skill``, with an interval around it and a verdict per lead."""
    bench = _run_script(load_script, "area_spread_interval", monkeypatch, tiny_data)
    out, result = first_run
    bench.main([str(out), "--model", "gp", "--leads", "1", "2"])
    text = capsys.readouterr().out
    ratio = result["scorecard"]["t2m"].sel({MODEL: "gp", METRIC: "area_spread_skill"})
    leads = ratio.sizes[LEAD_TIME]
    head = text.splitlines()[0]
    counts = [int(part.split()[0]) for part in head.split(": ")[1].split(" (")[0].split(", ")]
    assert sum(counts) == leads and head.endswith(f"(of {leads} leads)")
    for k, hours in enumerate((1, 2)):
        line = text.splitlines()[1 + k]
        assert line.startswith(f"  {hours} h: {float(ratio[k]):.2f} (")
        low, high = (float(v) for v in line.split("(")[1].rstrip(")").split(" to "))
        assert low <= float(ratio[k]) + 0.005 and high >= float(ratio[k]) - 0.005


def test_paired_difference_benchmark(first_run, tiny_data, monkeypatch, capsys, load_script):
    """benchmarks/paired_difference.py compares two models of a run: its all-leads means are
    the scorecard's, and an unknown label is a one-line error naming the run's models."""
    paired = load_script("benchmarks/paired_difference.py")
    monkeypatch.setattr(paired, "open_dataset", lambda name: tiny_data)
    out, result = first_run
    paired.main([str(out), "persistence", "gp"])
    text = capsys.readouterr().out
    crps = result["scorecard"]["t2m"].sel({METRIC: "crps"}).mean(LEAD_TIME)
    a, b = (float(crps.sel({MODEL: m})) for m in ("persistence", "gp"))
    assert f"all leads: mean CRPS {a:.4f} against {b:.4f}, {(a / b - 1) * 100:+.2f} %" in text
    assert text.count("verdicts per lead") == 1
    with pytest.raises(ForecastError, match="label of one model of the run: diurnal-persistence"):
        paired.main([str(out), "persist", "gp"])
