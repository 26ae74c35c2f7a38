"""`forecast evaluate`: files in, scorecard + plots out; argument errors exit 2 in one line."""

from __future__ import annotations

import sys
import types

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from test_scoring_align import make_case

from forecast.cli import main
from forecast.dims import LEAD_TIME, METRIC, MODEL
from forecast.scoring import scorecard


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("eval")
    truth, good = make_case(m=6, seed=0)
    _, small = make_case(m=3, seed=1, spread=0.3)
    truth.to_netcdf(d / "truth.nc")
    good.to_netcdf(d / "good.nc")
    small.to_netcdf(d / "other.nc")
    return d, truth, {"good": good, "small": small}


def test_evaluate_files(files, capsys):
    d, truth, fcs = files
    out = d / "out"
    rc = main(
        [
            "evaluate",
            "--forecast",
            str(d / "good.nc"),
            "--forecast",
            f"small={d / 'other.nc'}",
            "--truth",
            str(d / "truth.nc"),
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "| good | 1h |" in printed and "| small | 4h |" in printed
    for name in (
        "scorecard.nc",
        "scorecard.csv",
        "scorecard.md",
        "diagnostics_t2m.nc",
        "crps_by_lead.png",
        "rank_histograms.png",
        "spread_skill_by_lead.png",
        "reliability.png",
    ):
        assert (out / name).stat().st_size > 0, name
    card = xr.open_dataset(out / "scorecard.nc").load()
    assert list(card[MODEL].values) == ["good", "small"]
    expect = scorecard(fcs, truth, progress=False)
    xr.testing.assert_allclose(card["t2m"], expect["t2m"])
    assert card["t2m"].dims == (MODEL, LEAD_TIME, METRIC)
    df = pd.read_csv(out / "scorecard.csv")
    assert set(df[MODEL]) == {"good", "small"}


def test_evaluate_reference_writes_the_significance_table(files, capsys):
    d = files[0]
    out = d / "out-ref"
    argv = ["evaluate", "--forecast", str(d / "good.nc"), "--forecast", f"small={d / 'other.nc'}"]
    argv += ["--truth", str(d / "truth.nc"), "--out", str(out), "--reference", "small"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "good against the best baseline per lead: " in printed
    table = pd.read_csv(out / "significance.csv")
    assert table["model"].unique().tolist() == ["good"]
    assert set(table["reference"]) == {"small"} and len(table) == 4
    assert (out / "significance.md").read_text().startswith("# Significance")


def test_evaluate_cf_file(files, tmp_path):
    export = pytest.importorskip("forecast.export")
    d, truth, fcs = files
    cf = export.to_netcdf(fcs["good"], tmp_path / "cf.nc")
    raw = xr.open_dataset(cf)
    assert "member" not in raw.dims  # really the CF layout (realization)
    raw.close()
    rc = main(
        [
            "evaluate",
            "--forecast",
            f"cf={cf}",
            "--truth",
            str(d / "truth.nc"),
            "--out",
            str(tmp_path / "o"),
            "--threshold",
            "t2m=280.5",
        ]
    )
    assert rc == 0
    card = xr.open_dataset(tmp_path / "o" / "scorecard.nc").load()
    expect = scorecard({"cf": fcs["good"]}, truth, thresholds={"t2m": 280.5}, progress=False)
    np.testing.assert_allclose(card["t2m"].values, expect["t2m"].values, rtol=1e-6)
    assert card.attrs["threshold_t2m"] == 280.5


def test_evaluate_a_sensor_network_file(tmp_path):
    """A network ensemble written by the CF export (sensor ids come back as objects) scores
    against the data set (ids as strings): it used to stop at "coordinate 'node' does not
    align"."""
    from forecast.data import context_of, get_protocol, open_dataset
    from forecast.export import open_ensemble, to_netcdf
    from forecast.models import PersistenceEnsemble

    ds = open_dataset("synthetic-traffic")
    proto = get_protocol("synthetic-traffic")
    issues = proto.windows(ds, "test").issue_times(ds)[:2]
    model = PersistenceEnsemble(context=proto.context, horizon=proto.horizon).fit(ds)
    ens = xr.concat(
        [model.sample(context_of(ds, t, model.context), 4, seed=0) for t in issues], "init_time"
    )
    path = to_netcdf(ens, tmp_path / "network.nc")
    assert open_ensemble(path)["node"].dtype == object and ds["node"].dtype.kind == "U"
    out = tmp_path / "o"
    argv = ["evaluate", "--forecast", f"p={path}", "--truth", "synthetic-traffic"]
    assert main([*argv, "--out", str(out)]) == 0
    card = xr.open_dataset(out / "scorecard.nc").load()
    expect = scorecard({"p": ens}, ds, progress=False)
    for metric in ("crps", "area_crps", "spread_skill"):
        np.testing.assert_allclose(
            card["speed"].sel({METRIC: metric}).values,
            expect["speed"].sel({METRIC: metric}).values,
            rtol=1e-5,
        )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--truth", "x.nc"], "one of the arguments --forecast --protocol is required"),
        (["--forecast", "a.nc", "--protocol", "P1"], "not allowed with argument"),
    ],
)
def test_parser_errors(argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as err:
        main(["evaluate", *argv, "--out", str(tmp_path)])
    assert err.value.code == 2
    assert message in capsys.readouterr().err


def test_bad_input_exits_2_in_one_line(files, tmp_path, capsys):
    d, _, _ = files
    cases = [
        (["--forecast", str(d / "good.nc"), "--out", str(tmp_path)], "needs --truth"),
        (
            [
                "--forecast",
                str(d / "nope.nc"),
                "--truth",
                str(d / "truth.nc"),
                "--out",
                str(tmp_path),
            ],
            "not found",
        ),
        (
            [
                "--forecast",
                str(d / "good.nc"),
                "--forecast",
                f"good={d / 'other.nc'}",
                "--truth",
                str(d / "truth.nc"),
                "--out",
                str(tmp_path),
            ],
            "given twice",
        ),
        (
            [
                "--forecast",
                str(d / "truth.nc"),
                "--truth",
                str(d / "truth.nc"),
                "--out",
                str(tmp_path),
            ],
            "is not an ensemble file",
        ),
        (["--protocol", "P1", "--out", str(tmp_path)], "needs --models"),
    ]
    one_file = ["--forecast", str(d / "good.nc"), "--truth", str(d / "truth.nc")]
    cases += [
        ([*one_file, "--out", str(tmp_path), "--reference", ref], message)
        for ref, message in [
            ("nope", "--reference nope is not a --forecast name"),
            ("good", "every --forecast is a --reference"),
        ]
    ]
    for argv, message in cases:
        assert main(["evaluate", *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err, err
        assert err.count("\n") == 1


def test_protocol_mode_calls_run_protocol(tmp_path, monkeypatch):
    calls = []
    fake = types.ModuleType("forecast.pipeline")

    def fake_run(**kw):
        calls.append(kw)
        return {"significance": [], "files": {}}

    fake.run_protocol = fake_run  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "forecast.pipeline", fake)
    rc = main(
        [
            "evaluate",
            "--protocol",
            "P1",
            "--models",
            "persistence, gp",
            "--out",
            str(tmp_path),
            "--members",
            "10",
            "--seed",
            "3",
        ]
    )
    assert rc == 0
    assert calls == [
        {
            "protocol": "P1",
            "models": ["persistence", "gp"],
            "out": tmp_path,
            "members": 10,
            "seed": 3,
        }
    ]
