"""Scorecard values equal the individual scores; files written by write_report round-trip."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from test_scoring_align import make_case

from forecast.dims import INIT_TIME, LAT, LEAD_TIME, LON, METRIC, MODEL
from forecast.errors import ForecastError
from forecast.scoring import (
    METRICS,
    crps_ensemble,
    diagnostics,
    energy_score,
    obs_for,
    rmse_ensemble_mean,
    scorecard,
    spread_skill_ratio,
    to_dataframe,
    to_markdown,
    write_report,
)


@pytest.fixture(scope="module")
def case():
    truth, good = make_case(m=8, seed=0)
    _, small = make_case(m=3, seed=1, spread=0.3)
    return truth, {"good": good, "small": small}


@pytest.fixture(scope="module")
def card(case):
    truth, fcs = case
    return scorecard(fcs, truth, progress=False)


def test_scorecard_layout_and_values(case, card):
    truth, fcs = case
    assert card["t2m"].dims == (MODEL, LEAD_TIME, METRIC)
    assert list(card[METRIC].values) == list(METRICS)
    assert list(card[MODEL].values) == ["good", "small"]
    assert list(card["n_members"].values) == [8, 3]
    dims = [INIT_TIME, LAT, LON]
    for name, fc in fcs.items():
        obs = obs_for(fc, truth)
        row = card["t2m"].sel({MODEL: name})
        np.testing.assert_allclose(
            row.sel({METRIC: "crps"}).values,
            crps_ensemble(obs, fc, dim=dims)["t2m"].values,
            rtol=1e-12,
        )
        np.testing.assert_allclose(
            row.sel({METRIC: "crps_fair"}).values,
            crps_ensemble(obs, fc, dim=dims, fair=True)["t2m"].values,
            rtol=1e-12,
        )
        np.testing.assert_allclose(
            row.sel({METRIC: "rmse"}).values,
            rmse_ensemble_mean(obs, fc, dim=dims)["t2m"].values,
            rtol=1e-12,
        )
        np.testing.assert_allclose(
            row.sel({METRIC: "spread_skill"}).values,
            spread_skill_ratio(obs, fc, dim=dims)["t2m"].values,
            rtol=1e-12,
        )
        np.testing.assert_allclose(
            row.sel({METRIC: "energy"}).values,
            energy_score(obs, fc, dim=INIT_TIME)["t2m"].values,
            rtol=1e-12,
        )
    good, small = card["t2m"].sel({MODEL: "good"}), card["t2m"].sel({MODEL: "small"})
    # the fair CRPS is below the standard one, more so for the small ensemble
    assert (good.sel({METRIC: "crps_fair"}) < good.sel({METRIC: "crps"})).all()
    # under-dispersed small ensemble: spread-skill well below 1
    assert (small.sel({METRIC: "spread_skill"}) < 0.6).all()
    assert "threshold_t2m" in card.attrs


def test_area_mean_scores_against_properscoring(case, card):
    """``area_crps`` / ``area_spread_skill``: the CRPS (properscoring) and spread-skill ratio of
    the cos(latitude)-weighted mean over the grid, of the truth and of each member."""
    import properscoring as ps

    truth, fcs = case
    fc = fcs["good"]
    obs = obs_for(fc, truth)
    w = np.cos(np.deg2rad(fc[LAT].values))[:, None] * np.ones(fc.sizes[LON])
    o_area = (obs["t2m"].values * w).sum((-2, -1)) / w.sum()  # (init, lead)
    f_area = (fc["t2m"].transpose(INIT_TIME, "member", LEAD_TIME, LAT, LON).values * w).sum(
        (-2, -1)
    ) / w.sum()  # (init, member, lead)
    expected = ps.crps_ensemble(o_area, np.moveaxis(f_area, 1, -1)).mean(axis=0)
    row = card["t2m"].sel({MODEL: "good"})
    np.testing.assert_allclose(row.sel({METRIC: "area_crps"}).values, expected, rtol=1e-10)
    m = f_area.shape[1]
    spread = np.sqrt(f_area.var(axis=1, ddof=1).mean(axis=0))
    rmse = np.sqrt(((f_area.mean(axis=1) - o_area) ** 2).mean(axis=0))
    np.testing.assert_allclose(
        row.sel({METRIC: "area_spread_skill"}).values,
        np.sqrt((m + 1) / m) * spread / rmse,
        rtol=1e-10,
    )


def test_area_mean_scores_with_a_missing_observation(case):
    import properscoring as ps

    truth, fcs = case
    holed = truth.copy(deep=True)
    holed["t2m"][:, 0, 0] = np.nan  # one grid point never observed
    metrics = ["area_crps", "area_spread_skill"]
    # without skipna a missing point makes the area mean missing, as for every other score
    assert np.isnan(scorecard(fcs, holed, metrics=metrics, progress=False)["t2m"]).all()
    # with skipna the members leave out the truth's missing point too (weights renormalized)
    got = scorecard(fcs, holed, metrics=metrics, skipna=True, progress=False)["t2m"]
    fc = fcs["good"]
    w = np.cos(np.deg2rad(fc[LAT].values))[:, None] * np.ones(fc.sizes[LON])
    w[0, 0] = 0.0
    obs = obs_for(fc, truth)["t2m"].values  # the observed value there gets weight 0
    o_area = (obs * w).sum((-2, -1)) / w.sum()
    f = fc["t2m"].transpose(INIT_TIME, LEAD_TIME, "member", LAT, LON).values
    f_area = (f * w).sum((-2, -1)) / w.sum()  # (init, lead, member)
    np.testing.assert_allclose(
        got.sel({MODEL: "good", METRIC: "area_crps"}).values,
        ps.crps_ensemble(o_area, f_area).mean(axis=0),
        rtol=1e-10,
    )


def test_markdown_csv_netcdf_and_plots(case, card, tmp_path):
    truth, fcs = case
    diag = diagnostics(fcs, truth)
    assert diag["t2m"]["rank_frequency"].sizes == {MODEL: 2, "rank": 9}
    np.testing.assert_allclose(diag["t2m"]["rank_frequency"].sum("rank").values, 1.0)
    written = write_report(card, diag, tmp_path / "out")
    for key in ("crps_by_lead", "spread_skill_by_lead", "rank_histograms", "reliability"):
        assert written[key].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    back = xr.open_dataset(written["scorecard_nc"])
    xr.testing.assert_allclose(back["t2m"].load(), card["t2m"])
    df = pd.read_csv(written["scorecard_csv"])
    assert list(df.columns) == ["variable", MODEL, LEAD_TIME, METRIC, "value"]
    assert len(df) == 2 * 4 * len(METRICS)
    sel = df[(df[MODEL] == "good") & (df[LEAD_TIME] == "2h") & (df[METRIC] == "crps")]
    np.testing.assert_allclose(
        sel["value"].item(),
        card["t2m"].sel({MODEL: "good", METRIC: "crps"}).isel({LEAD_TIME: 1}).item(),
    )
    md = written["scorecard_md"].read_text()
    assert md.strip() == to_markdown(card).strip()
    assert "| good | 1h |" in md and "crps_fair" in md
    assert not list((tmp_path / "out").glob("*.tmp"))
    assert len(to_dataframe(card)) == len(df)


def test_scorecard_lazy_input_equals_eager(case, card):
    truth, fcs = case
    lazy = {k: v.chunk({INIT_TIME: 1, LAT: 2}) for k, v in fcs.items()}
    assert lazy["good"]["t2m"].chunks is not None
    got = scorecard(lazy, truth, progress=False)  # every metric, chunked input
    xr.testing.assert_allclose(got["t2m"], card["t2m"])


def test_scorecard_in_threads_equals_one_at_a_time(case, card):
    truth, fcs = case
    three = {**fcs, "again": fcs["good"] + 0.5}
    got = scorecard(three, truth, progress=False, jobs=2)
    assert list(got[MODEL].values) == ["good", "small", "again"]  # the order of the input
    xr.testing.assert_identical(got.sel({MODEL: ["good", "small"]}), card)
    alone = scorecard({"again": three["again"]}, truth, progress=False)
    xr.testing.assert_identical(got.sel({MODEL: ["again"]}), alone)
    for bad in (0, 1.5, True):
        with pytest.raises(ForecastError, match="jobs must be an integer >= 1"):
            scorecard(fcs, truth, progress=False, jobs=bad)


def test_diagnostics_in_threads_equal_one_at_a_time(case):
    truth, fcs = case
    three = {**fcs, "again": fcs["good"] + 0.5}
    want = diagnostics(three, truth)
    got = diagnostics(three, truth, jobs=2)
    assert list(got) == list(want) == ["t2m"]
    assert list(got["t2m"][MODEL].values) == ["good", "small", "again"]  # the input's order
    xr.testing.assert_identical(got["t2m"], want["t2m"])
    alone = diagnostics({"again": three["again"]}, truth)
    np.testing.assert_array_equal(
        got["t2m"]["pit"].sel({MODEL: "again"}).values, alone["t2m"]["pit"].isel({MODEL: 0}).values
    )
    with pytest.raises(ForecastError, match="jobs must be an integer >= 1"):
        diagnostics(fcs, truth, jobs=0)


def test_scorecard_bad_input(case):
    truth, fcs = case
    with pytest.raises(ForecastError, match="unknown metric"):
        scorecard(fcs, truth, metrics=("crps", "skill"))
    with pytest.raises(ForecastError, match="no forecast"):
        scorecard({}, truth)
    with pytest.raises(ForecastError, match="units of 't2m' differ"):
        scorecard(
            fcs, truth.assign({"t2m": truth["t2m"].assign_attrs(units="degC")}), progress=False
        )


def test_lead_labels_of_the_tables():
    """Sub-hour leads print as minutes (a 5-minute sensor network's tables showed
    ``0.0833333h``), whole hours as hours."""
    from forecast.scoring.scorecard import lead_label

    cases = {"5min": "5min", "1h": "1h", "90min": "90min", "36h": "36h", "90s": "90s"}
    assert {k: lead_label(pd.Timedelta(k)) for k in cases} == cases
    card = xr.Dataset(
        {"speed": (("model", "lead_time", "metric"), np.ones((1, 2, 1)))},
        coords={
            "model": ["m"],
            "lead_time": pd.to_timedelta(["5min", "60min"]).values,
            "metric": ["crps"],
        },
    )
    text = to_markdown(card)
    assert "| m | 5min | 1 |" in text and "| m | 1h | 1 |" in text
    assert list(to_dataframe(card)["lead_time"]) == ["5min", "1h"]
