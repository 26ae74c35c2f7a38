"""Diebold-Mariano comparisons of paired CRPS series (forecast.scoring.significance)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import properscoring as ps
import pytest
import scipy.stats
import xarray as xr
from test_scoring_align import make_case

from forecast.dims import INIT_TIME, LEAD_TIME
from forecast.errors import ForecastError
from forecast.scoring import obs_for, spread_skill_ratio
from forecast.scoring.significance import (
    COLUMNS,
    compare_scores,
    crps_by_issue_time,
    overlap_steps,
    significance_markdown,
    significance_table,
    summary_lines,
    write_significance,
)
from forecast.scoring.spread_interval import spread_skill_interval

HOUR = pd.Timedelta("1h")


def paired(diff: np.ndarray, spacing: str = "6h", leads_h=(1,), seed: int = 0):
    """A reference score (init_time, lead_time) and reference + ``diff``."""
    n = diff.shape[0]
    coords = {
        INIT_TIME: pd.date_range("2020-01-01", periods=n, freq=spacing),
        LEAD_TIME: pd.to_timedelta(list(leads_h), unit="h"),
    }
    rng = np.random.default_rng(seed)
    ref = xr.DataArray(1 + rng.random(diff.shape), dims=(INIT_TIME, LEAD_TIME), coords=coords)
    return ref + diff, ref


def test_overlap_steps_count_the_issue_times_a_forecast_spans():
    init = pd.date_range("2019-03-25", periods=24, freq="6h").values
    leads = pd.to_timedelta(np.arange(1, 25), unit="h").values
    assert overlap_steps(init, leads).tolist() == [1] * 6 + [2] * 6 + [3] * 6 + [4] * 6
    five_min = pd.date_range("2012-03-01", periods=10, freq="5min").values
    assert overlap_steps(five_min, pd.to_timedelta([5, 60], unit="min").values).tolist() == [
        1,
        12,
    ]


def test_overlap_steps_bad_input():
    init = pd.date_range("2020-01-01", periods=2, freq="6h").values
    with pytest.raises(ForecastError, match="at least 3 issue times"):
        overlap_steps(init, np.array([HOUR.to_timedelta64()]))
    repeated = np.array(["2020-01-01T00", "2020-01-01T00", "2020-01-01T06"], "datetime64[ns]")
    with pytest.raises(ForecastError, match="repeat"):
        overlap_steps(repeated, np.array([HOUR.to_timedelta64()]))


def test_without_overlap_hln_is_the_one_sample_t_test():
    """With h = 1 the HLN statistic is the t statistic of the differences (scipy reference)."""
    rng = np.random.default_rng(3)
    diff = 0.05 + 0.2 * rng.standard_normal((30, 1))
    score, ref = paired(diff)
    out = compare_scores(score, ref, method="HLN", confidence=0.9).isel({LEAD_TIME: 0})
    t = scipy.stats.ttest_1samp(diff[:, 0], 0.0)
    interval = t.confidence_interval(0.9)
    ref_mean = float(ref.mean())
    assert int(out["h"]) == 1 and int(out["n"]) == 30
    np.testing.assert_allclose(float(out["p_value"]), t.pvalue, rtol=1e-9)
    np.testing.assert_allclose(float(out["ci_lower"]), interval.low / ref_mean, rtol=1e-9)
    np.testing.assert_allclose(float(out["ci_upper"]), interval.high / ref_mean, rtol=1e-9)
    np.testing.assert_allclose(float(out["relative_difference"]), diff.mean() / ref_mean)
    np.testing.assert_allclose(float(out["score"]), float(score.mean()))


@pytest.mark.parametrize("method", ["HG", "HLN"])
def test_verdicts(method):
    rng = np.random.default_rng(0)
    noise = 0.05 * rng.standard_normal((24, 3))
    centred = noise - noise.mean(axis=0)
    diff = np.stack([centred[:, 0] + 0.3, centred[:, 1] - 0.3, centred[:, 2]], axis=1)
    score, ref = paired(diff, leads_h=(1, 6, 12))
    out = compare_scores(score, ref, method=method)
    assert out["verdict"].values.tolist() == ["worse", "better", "not significant"]
    assert out["h"].values.tolist() == [1, 1, 2]
    assert out["ci_lower"][0] > 0 and out["ci_upper"][1] < 0
    assert out["p_value"][0] < 0.01 and out["p_value"][2] > 0.5


@pytest.mark.parametrize("method", ["HG", "HLN"])
def test_the_interval_does_not_depend_on_the_scores_units(method):
    """Scores in other units (x 1e-4 to x 1e6: CRPS differences of 1e-5, variogram scores of
    1e6) give the same relative interval and p-value; ``scores``' Hering-Genton fit alone gave
    an interval of zero width at x 1e6 and one of +-300 % at x 1e-4."""
    rng = np.random.default_rng(0)
    ar = np.zeros((48, 2))
    for i in range(1, 48):
        ar[i] = 0.6 * ar[i - 1] + rng.standard_normal(2)
    ar[:, 1] -= ar[:, 1].mean()  # lead 6 h: no difference on average
    score, ref = paired(0.1 * ar + np.array([-0.15, 0.0]), spacing="1h", leads_h=(1, 6))
    unit = compare_scores(score, ref, method=method)
    assert unit["verdict"].values.tolist() == ["better", "not significant"]
    for factor in (1e-4, 1e6):
        scaled = compare_scores(score * factor, ref * factor, method=method)
        for key in ("ci_lower", "ci_upper", "p_value", "relative_difference"):
            np.testing.assert_allclose(scaled[key].values, unit[key].values, rtol=1e-6, atol=1e-12)
        assert scaled["verdict"].values.tolist() == unit["verdict"].values.tolist()


def test_overlap_widens_the_interval():
    """The same autocorrelated differences: counting the overlap gives a wider interval."""
    rng = np.random.default_rng(1)
    smooth = np.convolve(rng.standard_normal(60), np.ones(4) / 4, mode="valid")[:48]
    diff = np.stack([0.1 + 0.3 * smooth] * 2, axis=1)
    score, ref = paired(diff, spacing="6h", leads_h=(6, 24))
    out = compare_scores(score, ref, method="HLN")
    assert out["h"].values.tolist() == [1, 4]
    width = (out["ci_upper"] - out["ci_lower"]).values
    assert width[1] > 1.2 * width[0]


def test_identical_or_too_short_series_are_undetermined():
    score, ref = paired(np.zeros((5, 1)))
    assert str(compare_scores(score, ref)["verdict"].values[0]) == "undetermined"
    diff = 0.2 + np.array([[0.01, 0], [0, 0.01], [0.02, 0.03]])
    score, ref = paired(diff, "6h", (1, 24))
    out = compare_scores(score, ref)
    assert out["verdict"].values.tolist()[1] == "undetermined"  # h = 4 >= 3 issue times
    assert np.isnan(out["p_value"][1]) and np.isfinite(out["p_value"][0])


def test_compare_scores_bad_input():
    score, ref = paired(np.ones((6, 1)))
    with pytest.raises(ForecastError, match="not paired"):
        compare_scores(score, ref.isel({INIT_TIME: slice(1, None)}))
    with pytest.raises(ForecastError, match="confidence"):
        compare_scores(score, ref, confidence=1.0)
    with pytest.raises(ForecastError, match="unknown method"):
        compare_scores(score, ref, method="DM")
    with pytest.raises(ForecastError, match="dims"):
        compare_scores(score.isel({LEAD_TIME: 0}), ref.isel({LEAD_TIME: 0}))


def test_crps_by_issue_time_matches_properscoring():
    truth, ens = make_case(m=5, n_init=4, seed=2)
    got = crps_by_issue_time(ens, truth)["t2m"]
    assert got.dims == (INIT_TIME, LEAD_TIME)
    obs = np.stack(
        [truth["t2m"].sel(time=t + ens[LEAD_TIME].values).values for t in ens[INIT_TIME].values]
    )
    members = np.moveaxis(ens["t2m"].values, 1, -1)  # (init, lead, lat, lon, member)
    expect = ps.crps_ensemble(obs, members).mean(axis=(2, 3))
    np.testing.assert_allclose(got.values, expect, rtol=1e-10)
    with pytest.raises(ForecastError, match="init_time"):
        crps_by_issue_time(ens.isel({INIT_TIME: 0}), truth)


def test_table_uses_the_best_reference_at_each_lead(tmp_path):
    truth, sharp = make_case(m=6, n_init=8, n_lead=2, seed=0, spread=1.0)
    _, wide = make_case(m=6, n_init=8, n_lead=2, seed=1, spread=3.0)
    _, model = make_case(m=6, n_init=8, n_lead=2, seed=2, spread=1.0)
    # reference "mixed" is the wide one at lead 1 and the sharp one at lead 2
    mixed = xr.concat([wide.isel({LEAD_TIME: [0]}), sharp.isel({LEAD_TIME: [1]})], LEAD_TIME)
    wide2 = xr.concat([sharp.isel({LEAD_TIME: [0]}), wide.isel({LEAD_TIME: [1]})], LEAD_TIME)
    fc = {"a": mixed, "b": wide2, "model": model}
    table = significance_table(fc, truth, ["a", "b"])
    assert list(table.columns) == COLUMNS
    assert table["reference"].tolist() == ["b", "a"]
    assert table["model"].unique().tolist() == ["model"]
    crps = {k: crps_by_issue_time(v, truth)["t2m"].mean(INIT_TIME).values for k, v in fc.items()}
    np.testing.assert_allclose(table["reference_crps"], [crps["b"][0], crps["a"][1]])
    np.testing.assert_allclose(table["crps"], crps["model"])

    ssr = spread_skill_interval(model, truth)
    np.testing.assert_allclose(table["spread_skill"], ssr["t2m"].values)
    assert table["dispersion"].tolist() == ssr["t2m_verdict"].values.tolist()

    text = significance_markdown(table)
    assert "## model" in text and "| t2m | 1h |" in text and "(of 2)" in text
    assert summary_lines(table)[0].startswith("model against the best baseline per lead: ")
    written = write_significance(table, tmp_path)
    back = pd.read_csv(written["significance_csv"])
    assert back["lead_time"].tolist() == ["1h", "2h"] and list(back.columns) == COLUMNS
    assert written["significance_md"].read_text().startswith("# Significance")

    with pytest.raises(ForecastError, match="not among the forecasts"):
        significance_table(fc, truth, ["c"])
    with pytest.raises(ForecastError, match="every forecast is a reference"):
        significance_table({"a": mixed}, truth, ["a"])


def test_table_on_dask_ensembles_reads_each_ensemble_once():
    """Dask-backed ensembles (``forecast evaluate --forecast`` opens them so): the same table
    as in memory, from one computation for the CRPS of all ensembles and one per model for
    its spread-skill (before: one per lead and model, each re-reading both ensembles)."""
    from dask.callbacks import Callback

    truth, a = make_case(m=5, n_init=8, n_lead=4, seed=0, spread=1.0)
    _, b = make_case(m=5, n_init=8, n_lead=4, seed=1, spread=2.0)
    _, model = make_case(m=5, n_init=8, n_lead=4, seed=2, spread=1.0)
    fc = {"a": a, "b": b, "model": model}
    want = significance_table(fc, truth, ["a", "b"])
    # dask data, the coordinates in memory (as the CF reader gives them)
    lazy = {
        k: v.chunk({INIT_TIME: 2}).assign_coords(valid_time=v.valid_time) for k, v in fc.items()
    }
    computes = []
    with Callback(start=lambda dsk: computes.append(len(dsk))):
        got = significance_table(lazy, truth, ["a", "b"])
    pd.testing.assert_frame_equal(got, want)
    assert len(computes) == 2  # CRPS of a, b and model together; the spread of model


def test_spread_skill_interval_point_and_verdicts():
    truth, calibrated = make_case(m=8, n_init=8, seed=4, spread=1.0)
    _, narrow = make_case(m=8, n_init=8, seed=5, spread=0.3)
    _, wide = make_case(m=8, n_init=8, seed=6, spread=3.0)
    for ens, verdict in (
        (calibrated, "consistent"),
        (narrow, "under-dispersed"),
        (wide, "over-dispersed"),
    ):
        out = spread_skill_interval(ens, truth, reps=200)
        expect = spread_skill_ratio(obs_for(ens, truth), ens, dim=["init_time", "lat", "lon"])
        np.testing.assert_allclose(out["t2m"].values, expect["t2m"].values, rtol=1e-10)
        assert set(out["t2m_verdict"].values) == {verdict}, out["t2m_verdict"].values
        assert (out["t2m_lower"] <= out["t2m"]).all() and (out["t2m"] <= out["t2m_upper"]).all()


def test_spread_skill_interval_is_seeded_and_checks_input():
    truth, ens = make_case(m=6, n_init=6, seed=2)
    a = spread_skill_interval(ens, truth, reps=100, seed=1)
    b = spread_skill_interval(ens, truth, reps=100, seed=1)
    c = spread_skill_interval(ens, truth, reps=100, seed=2)
    xr.testing.assert_identical(a, b)
    assert not np.array_equal(a["t2m_lower"].values, c["t2m_lower"].values)
    with pytest.raises(ForecastError, match="confidence"):
        spread_skill_interval(ens, truth, confidence=0.0)
    with pytest.raises(ForecastError, match="reps"):
        spread_skill_interval(ens, truth, reps=5)
    with pytest.raises(ForecastError, match="band"):
        spread_skill_interval(ens, truth, band=(1.2, 0.8))
    with pytest.raises(ForecastError, match="init_time"):
        spread_skill_interval(ens.isel({INIT_TIME: 0}), truth)
