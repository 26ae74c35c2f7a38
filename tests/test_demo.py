"""``forecast demo`` (the main job): errors, issue-time choice, and a small full run."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
import xarray as xr

from forecast.cli import main
from forecast.data import get_protocol
from forecast.dims import INIT_TIME, LEAD_TIME, MEMBER, METRIC, MODEL
from forecast.errors import ForecastError
from forecast.mainjob import (
    MODELS_DIR,
    MODELS_ENV,
    demo_issue_times,
    load_shipped,
    shipped_path,
)


def test_missing_checkpoints_are_a_one_line_error(tmp_path, capsys) -> None:
    status = main(["demo", "--models-dir", str(tmp_path), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert status == 2
    assert err.count("\n") == 0 and err.startswith("error: shipped checkpoint")
    assert "scripts/train_shipped_models.py" in err
    assert not (tmp_path / "out").exists()  # checked before any work


def test_shipped_folder_follows_the_dashboard_variable(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv(MODELS_ENV, raising=False)
    default = shipped_path("vae", "synthetic-weather")
    assert default == MODELS_DIR / "vae-synthetic-weather.safetensors"
    monkeypatch.setenv(MODELS_ENV, str(tmp_path))
    assert shipped_path("vae", "synthetic-weather") == (
        tmp_path / "models" / "vae-synthetic-weather.safetensors"
    )
    assert shipped_path("vae", "x", tmp_path / "other") == tmp_path / "other" / "vae-x.safetensors"


def test_bad_arguments(tmp_path, capsys) -> None:
    assert main(["demo", "--issues", "0", "--out", str(tmp_path)]) == 2
    assert main(["demo", "--data", "los-loop", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--issues >= 1" in err and "no shipped models for ['los-loop']" in err


def test_checkpoint_for_other_data_is_refused(tmp_path, synthetic_traffic_ds) -> None:
    # a weather checkpoint under the traffic name is refused against traffic data
    src = shipped_path("diffusion", "synthetic-weather", MODELS_DIR)
    shutil.copy(src, tmp_path / "diffusion-synthetic-traffic.safetensors")
    with pytest.raises(ForecastError, match="does not fit synthetic-traffic"):
        load_shipped("diffusion", "synthetic-traffic", synthetic_traffic_ds, tmp_path)


def test_issue_times_evenly_spread_over_the_test_period(synthetic_weather_ds) -> None:
    ds = synthetic_weather_ds
    proto = get_protocol("synthetic-weather")
    if ds.sizes["time"] != proto.n_steps:
        proto = proto.resized(ds.sizes["time"])
    every = pd.DatetimeIndex(proto.windows(ds, "test").issue_times(ds))
    got = demo_issue_times(ds, proto, 3)
    assert list(got) == [every[0], every[round((len(every) - 1) / 2)], every[-1]]
    assert list(demo_issue_times(ds, proto, 1)) == [every[0]]
    assert len(demo_issue_times(ds, proto, 10**6)) == len(every)
    with pytest.raises(ForecastError):
        demo_issue_times(ds, proto, 0)


@pytest.mark.slow
def test_small_run_writes_everything(tmp_path, capsys) -> None:
    from forecast.export import open_ensemble

    out = tmp_path / "outputs"
    status = main(
        [
            "demo",
            "--data",
            "synthetic-traffic",
            "--issues",
            "2",
            "--members",
            "4",
            "--out",
            str(out),
            "--threads",
            "1",
        ]
    )
    text = capsys.readouterr().out
    assert status == 0
    base = out / "synthetic-traffic"
    for rel in (
        "ensemble-diffusion.nc",
        "ensemble-vae.nc",
        "report/scorecard.nc",
        "report/scorecard.md",
        "report/crps_by_lead.png",
        "map_mean_spread.png",
        "plume.png",
        "latent_path.png",
    ):
        path = base / rel
        assert path.is_file() and path.stat().st_size > 0, rel
    for name in (
        "ensemble-diffusion.nc",
        "scorecard.md",
        "crps_by_lead.png",
        "map_mean_spread.png",
        "plume.png",
        "latent_path.png",
    ):
        assert name in text  # the summary gives the paths
    assert "forecast app" in text and "streamlit run app.py" in text
    ens = open_ensemble(base / "ensemble-diffusion.nc")
    proto = get_protocol("synthetic-traffic")
    assert ens.sizes[MEMBER] == 4 and ens.sizes[INIT_TIME] == 2
    assert ens.sizes[LEAD_TIME] == proto.horizon
    card = xr.open_dataset(base / "report" / "scorecard.nc")
    assert set(card[MODEL].values) == {"diffusion", "vae", "diurnal-persistence", "climatology"}
    assert {"crps", "area_crps", "area_spread_skill"} <= set(card[METRIC].values)
    assert float(card["speed"].sel(metric="crps").min()) > 0
    assert float(card["speed"].sel(metric="area_crps").min()) > 0  # the network-mean speed
    # the summary's mean CRPS of the diffusion model is the scorecard's
    line = next(x for x in text.splitlines() if "mean CRPS" in x)
    crps = float(line.split("diffusion ")[1].split(",")[0])
    assert crps == pytest.approx(
        float(card["speed"].sel(model="diffusion", metric="crps").mean()), abs=6e-4
    )
