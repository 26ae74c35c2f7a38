"""The protocol runner with already-trained checkpoints (``checkpoints={label: path}``)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from forecast.cli import main
from forecast.data.protocols import chronological
from forecast.data.synthetic import synthetic_weather
from forecast.dims import METRIC, MODEL
from forecast.errors import ForecastError
from forecast.models import PersistenceEnsemble
from forecast.models.diffusion import ConditionalDiffusion
from forecast.pipeline import load_checked, run_protocol


@pytest.fixture(scope="module")
def ckpts(tiny_data, tiny_protocol, tmp_path_factory):
    """A tiny diffusion model and a persistence model, trained on the protocol's train split."""
    d = tmp_path_factory.mktemp("ckpt")
    context, horizon = tiny_protocol.context, tiny_protocol.horizon
    train, valid = tiny_protocol.split(tiny_data, "train"), tiny_protocol.split(tiny_data, "val")
    config = ConditionalDiffusion.tiny(context, horizon).config()
    config["train"] = {**config["train"], "max_steps": 4}  # weights do not matter here
    diffusion = ConditionalDiffusion(**config)
    diffusion.fit(train, valid)
    diffusion.save(d / "diffusion.safetensors")
    PersistenceEnsemble(context=context, horizon=horizon).fit(train).save(d / "persist.safetensors")
    other = synthetic_weather(seed=5, n_lat=4, n_lon=4, days=10)
    PersistenceEnsemble(context=context, horizon=horizon).fit(other).save(d / "grid.safetensors")
    PersistenceEnsemble(context=context, horizon=horizon + 1).fit(train).save(d / "h6.safetensors")
    return d


def test_checkpoint_scored_like_a_trained_model(ckpts, tiny_protocol, tiny_data, tmp_path):
    """A saved persistence model scored by label equals the one the run trains itself."""
    result = run_protocol(
        tiny_protocol,
        ["persistence"],
        tmp_path,
        members=5,
        seed=2,
        data=tiny_data,
        progress=False,
        checkpoints={"saved-persistence": ckpts / "persist.safetensors"},
    )
    card = result["scorecard"]["t2m"]
    assert list(card[MODEL].values) == ["persistence", "saved-persistence"]
    np.testing.assert_allclose(
        card.sel({MODEL: "saved-persistence"}), card.sel({MODEL: "persistence"})
    )
    assert result["sampled"] == ["persistence", "saved-persistence"]
    assert result["trained"] == ["persistence"]


def test_diffusion_checkpoint_run_resume_and_rerun(ckpts, tiny_protocol, tiny_data, tmp_path):
    path = ckpts / "diffusion.safetensors"
    kwargs = dict(members=4, seed=0, data=tiny_data, progress=False)
    first = run_protocol(
        tiny_protocol, ["persistence"], tmp_path, checkpoints={"diffusion": path}, **kwargs
    )
    card = first["scorecard"]["t2m"]
    assert list(card[MODEL].values) == ["persistence", "diffusion"]
    assert np.isfinite(card.sel({MODEL: "diffusion", METRIC: "crps"})).all()
    ens = first["files"]["ensemble_diffusion"]
    assert ens.is_file() and ens.name.startswith("diffusion-tiny-s0-")
    # the diffusion model is tested against the run's baseline at every lead
    table = pd.read_csv(first["files"]["significance_csv"])
    assert table["model"].unique().tolist() == ["diffusion"]
    assert set(table["reference"]) == {"persistence"} and len(table) == tiny_protocol.horizon
    np.testing.assert_allclose(table["crps"], card.sel({MODEL: "diffusion", METRIC: "crps"}))
    assert first["significance"][0].startswith("diffusion against the best baseline")
    run = json.loads((tmp_path / "run.json").read_text())
    entry = run["checkpoints"]["diffusion"]
    assert entry["kind"] == "diffusion" and len(entry["sha256"]) == 64
    assert entry["path"] == str(path) and "sample_s" in run["timings_s"]["diffusion"]

    again = run_protocol(
        tiny_protocol, ["persistence"], tmp_path, checkpoints={"diffusion": path}, **kwargs
    )
    assert again["sampled"] == [] and again["trained"] == []
    xr.testing.assert_allclose(again["scorecard"], first["scorecard"])

    # a different file under the same label is sampled again (the key hashes the file's bytes)
    alone = run_protocol(
        tiny_protocol, [], tmp_path / "b", checkpoints={"diffusion": path}, **kwargs
    )
    np.testing.assert_allclose(
        alone["scorecard"]["t2m"].sel({MODEL: "diffusion"}), card.sel({MODEL: "diffusion"})
    )
    other = run_protocol(
        tiny_protocol,
        [],
        tmp_path,
        checkpoints={"diffusion": ckpts / "persist.safetensors"},
        **kwargs,
    )
    assert other["sampled"] == ["diffusion"]
    # no baseline in this run: the first run's significance table is removed, not left stale
    assert not (tmp_path / "significance.csv").exists() and other["significance"] == []


@pytest.mark.usefixtures("one_thread")
def test_jobs_fit_and_sample_side_by_side(ckpts, tiny_protocol, tiny_data, tmp_path):
    """``jobs=2`` fits the run's models and samples every ensemble in worker processes (one
    thread each here): the same ensembles and scorecard as one after the other; a rerun
    resumes."""
    given = {"diffusion": ckpts / "diffusion.safetensors", "saved": ckpts / "persist.safetensors"}
    kwargs = dict(members=4, seed=1, data=tiny_data, progress=False, checkpoints=given)
    models = ["persistence", "climatology"]
    one = run_protocol(tiny_protocol, models, tmp_path / "one", **kwargs)
    two = run_protocol(tiny_protocol, models, tmp_path / "two", jobs=2, **kwargs)
    assert two["trained"] == one["trained"] == models
    assert two["sampled"] == one["sampled"] == [*models, "diffusion", "saved"]
    assert two["timings"]["diffusion"]["sample_s"] > 0
    assert two["timings"]["climatology"]["fit_s"] > 0
    xr.testing.assert_identical(two["scorecard"], one["scorecard"])
    for label in [*models, *given]:
        with (
            xr.open_dataset(one["files"][f"ensemble_{label}"]) as a,
            xr.open_dataset(two["files"][f"ensemble_{label}"]) as b,
        ):
            xr.testing.assert_equal(a["t2m"], b["t2m"])
    again = run_protocol(tiny_protocol, models, tmp_path / "two", jobs=2, **kwargs)
    assert again["sampled"] == again["trained"] == []
    with pytest.raises(ForecastError, match="jobs must be an integer >= 1, got 0"):
        run_protocol(tiny_protocol, ["persistence"], tmp_path / "bad", jobs=0, **kwargs)


@pytest.mark.parametrize(
    ("label", "name", "message"),
    [
        ("diffusion", "missing.safetensors", "not found"),
        ("bad label", "persist.safetensors", "not usable"),
        ("", "persist.safetensors", "not usable"),
        ("persistence", "persist.safetensors", "also --models names"),
        ("grid", "grid.safetensors", "checkpoint"),
        ("h6", "h6.safetensors", "horizon 6"),
    ],
)
def test_bad_checkpoints(ckpts, tiny_protocol, tiny_data, tmp_path, label, name, message):
    with pytest.raises(ForecastError, match=message) as err:
        run_protocol(
            tiny_protocol,
            ["persistence"],
            tmp_path,
            members=2,
            data=tiny_data,
            progress=False,
            checkpoints={label: ckpts / name},
        )
    assert "\n" not in str(err.value)
    assert not (tmp_path / "scorecard.nc").exists()


def test_mismatched_grid_names_the_difference(ckpts, tiny_protocol, tiny_data):
    with pytest.raises(ForecastError, match=r"data is .* but checkpoint .*grid.safetensors"):
        load_checked("grid", ckpts / "grid.safetensors", tiny_protocol, tiny_data)


def test_cli_checkpoint_errors_exit_2_in_one_line(ckpts, tmp_path, capsys):
    good = ckpts / "diffusion.safetensors"
    cases = [
        (["--protocol", "P1", "--checkpoint", str(good)], "is not LABEL=PATH"),
        (["--protocol", "P1", "--checkpoint", f"={good}"], "is not LABEL=PATH"),
        (["--protocol", "P1", "--checkpoint", "d="], "is not LABEL=PATH"),
        (["--protocol", "P1", "--checkpoint", f"d={tmp_path / 'no.safetensors'}"], "not found"),
        (
            ["--protocol", "P1", "--checkpoint", f"d={good}", "--checkpoint", f"d={good}"],
            "given twice",
        ),
        (["--protocol", "P1", "--checkpoint", f"a b={good}"], "not usable"),
        (
            ["--forecast", str(good), "--truth", "x.nc", "--checkpoint", f"d={good}"],
            "belong to --protocol mode",
        ),
        (["--forecast", str(good), "--truth", "x.nc", "--jobs", "2"], "belong to --protocol mode"),
        (["--protocol", "P1", "--checkpoint", f"d={good}", "--jobs", "0"], "--jobs must be >= 1"),
        # trained on a 3 x 4 grid, context 4: the synthetic-weather protocol has 32 x 48, 6
        (["--protocol", "synthetic-weather", "--checkpoint", f"d={good}"], "checkpoint"),
    ]
    for argv, message in cases:
        assert main(["evaluate", *argv, "--out", str(tmp_path / "o")]) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err, err
        assert err.count("\n") == 1


def test_cli_passes_checkpoints(ckpts, tmp_path, monkeypatch):
    import sys
    import types

    calls = []
    fake = types.ModuleType("forecast.pipeline")
    fake.run_protocol = lambda **kw: calls.append(kw) or {"significance": []}  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "forecast.pipeline", fake)
    path = ckpts / "diffusion.safetensors"
    argv = ["evaluate", "--protocol", "P1", "--out", str(tmp_path), "--checkpoint", f"d={path}"]
    assert main(argv) == 0
    assert calls == [{"protocol": "P1", "models": [], "out": tmp_path, "checkpoints": {"d": path}}]
    assert main([*argv, "--jobs", "2"]) == 0
    assert calls[-1]["jobs"] == 2


def test_resume_on_sensors(tmp_path):
    """Cached sensor ensembles come back with object-dtype node ids; the resumed run still
    scores them against the data's string ids (regression: 'does not align' error)."""
    from forecast.data.synthetic import synthetic_traffic

    data = synthetic_traffic(seed=1, n_sensors=16, days=3)
    proto = chronological(
        "tiny-traffic", "synthetic-traffic", data.sizes["time"], 6, 4, step="5min"
    )
    train = proto.split(data, "train")
    PersistenceEnsemble(context=6, horizon=4).fit(train).save(tmp_path / "p.safetensors")
    kwargs = dict(members=3, data=data, progress=False, metrics=("crps", "spread_skill"))
    ckpt = {"saved": tmp_path / "p.safetensors"}
    first = run_protocol(proto, ["persistence"], tmp_path / "o", checkpoints=ckpt, **kwargs)
    again = run_protocol(proto, ["persistence"], tmp_path / "o", checkpoints=ckpt, **kwargs)
    assert again["sampled"] == [] and again["trained"] == []
    xr.testing.assert_allclose(again["scorecard"], first["scorecard"])
