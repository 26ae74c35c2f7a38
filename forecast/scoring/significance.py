"""Is a model's CRPS really different from a reference's? Diebold-Mariano tests by lead time.

Two ensembles scored on the same issue times are paired: for each issue time ``t`` and lead,
``d(t) = CRPS_model(t) - CRPS_reference(t)``, each CRPS averaged over the grid points or
sensors. The mean of ``d`` over the issue times is the difference a scorecard shows; whether it
is more than sampling noise depends on how much ``d`` varies from one issue time to the next
and on how strongly neighbouring issue times share errors. Forecasts of lead ``L`` issued every
``s`` overlap with the next ``ceil(L / s) - 1`` forecasts, so ``d`` is autocorrelated up to that
lag and a plain t-test would overstate the certainty.

The test is the modified Diebold-Mariano test of ``scores`` (Bureau of Meteorology,
:func:`scores.stats.statistical_tests.diebold_mariano`) with ``h = ceil(L / s)``: the
Hering-Genton estimate of the long-run variance (always positive) by default, or the
Harvey-Leybourne-Newbold small-sample version, and Student's t quantiles with ``n - 1``
degrees of freedom (24 issue times on P2). Each lead is tested on its own, without a
multiple-testing correction: at 95 % about one lead in twenty can come out "better" or "worse"
by chance alone. :func:`significance_table` adds each model's spread-skill interval
(:mod:`forecast.scoring.spread_interval`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from forecast.dims import INIT_TIME, LEAD_TIME, MEMBER
from forecast.errors import ForecastError
from forecast.scoring.align import obs_for, pair_variables
from forecast.scoring.crps import crps_pair

#: Verdicts of :func:`compare_scores`.
BETTER, WORSE, UNCLEAR, UNDETERMINED = "better", "worse", "not significant", "undetermined"
METHODS = ("HG", "HLN")

#: Columns of :func:`significance_table`, in order.
COLUMNS = [
    "model",
    "variable",
    "lead_time",
    "crps",
    "reference",
    "reference_crps",
    "relative_difference",
    "ci_lower",
    "ci_upper",
    "p_value",
    "verdict",
    "spread_skill",
    "spread_skill_lower",
    "spread_skill_upper",
    "dispersion",
]


def issue_aligned(
    forecast: xr.Dataset, truth: xr.Dataset, member_dim: str = MEMBER
) -> tuple[xr.Dataset, list, list]:
    """``(observations laid out like forecast, paired variables, dims to average over)``: every
    dim but member, issue time and lead. Raises when ``forecast`` has no issue times."""
    if INIT_TIME not in forecast.dims:
        raise ForecastError(
            f"forecast has no '{INIT_TIME}' dimension (dims {tuple(forecast.dims)}); "
            "a per-issue-time test needs several issue times"
        )
    obs = obs_for(forecast, truth) if "time" in truth.dims else truth
    names = [n for n, _, _ in pair_variables(obs, forecast)]
    dims = [d for d in forecast[names[0]].dims if d not in (member_dim, INIT_TIME, LEAD_TIME)]
    return obs, names, dims


def crps_by_issue_time(
    forecast: xr.Dataset,
    truth: xr.Dataset,
    *,
    member_dim: str = MEMBER,
    fair: bool = False,
    skipna: bool = False,
) -> xr.Dataset:
    """CRPS per ``(init_time, lead_time)``, averaged over every other dimension.

    Parameters
    ----------
    forecast
        Ensemble ``(init_time, member, lead_time, *space)``.
    truth
        The data set with a ``time`` dimension (:func:`forecast.scoring.obs_for` picks the
        valid times) or observations already laid out like the ensemble.
    member_dim
        Member dimension.
    fair
        The fair (unbiased) CRPS instead of the standard ensemble CRPS.
    skipna
        See :func:`forecast.scoring.crps_ensemble`.
    """
    obs, names, dims = issue_aligned(forecast, truth, member_dim)
    std, fr = crps_pair(obs[names], forecast[names], member_dim=member_dim, dim=dims, skipna=skipna)
    out = fr if fair else std
    return out.drop_vars([c for c in out.coords if c not in (INIT_TIME, LEAD_TIME)])


def overlap_steps(init_times: np.ndarray, lead_times: np.ndarray) -> np.ndarray:
    """``h = ceil(lead / issue spacing)`` per lead: how many issue times a forecast spans.

    The spacing is the smallest gap between consecutive issue times (all gaps are taken as
    that spacing: the series of issue times is treated as regular).
    """
    t = np.sort(np.asarray(init_times, dtype="datetime64[ns]"))
    if len(t) < 3:
        raise ForecastError(
            f"a significance test needs at least 3 issue times, got {len(t)}; "
            "score more issue times"
        )
    gaps = np.diff(t).astype("timedelta64[ns]").astype(np.int64)
    if np.any(gaps <= 0):
        raise ForecastError("issue times repeat; give each issue time once")
    spacing = gaps.min()
    leads = np.asarray(lead_times, dtype="timedelta64[ns]").astype(np.int64)
    if np.any(leads <= 0):
        raise ForecastError("lead times must be positive")
    return np.array([max(1, math.ceil(int(lead) / int(spacing))) for lead in leads])


def _check_paired(score: xr.DataArray, reference: xr.DataArray) -> None:
    for d in (INIT_TIME, LEAD_TIME):
        if d not in score.dims or d not in reference.dims:
            raise ForecastError(
                f"scores need dims ({INIT_TIME}, {LEAD_TIME}); got {tuple(score.dims)} and "
                f"{tuple(reference.dims)}"
            )
        a, b = score[d].values, reference[d].values
        if len(a) != len(b) or not np.all(a == b):
            raise ForecastError(
                f"the two scores are not paired: their '{d}' values differ; score both "
                "ensembles on the same issue times and lead times"
            )


def compare_scores(
    score: xr.DataArray,
    reference: xr.DataArray,
    *,
    confidence: float = 0.95,
    method: str = "HG",
) -> xr.Dataset:
    """Per lead: is ``score`` lower (better) or higher (worse) than ``reference``?

    Parameters
    ----------
    score, reference
        Paired scores ``(init_time, lead_time)`` of a model and of a reference, lower is better
        (e.g. from :func:`crps_by_issue_time`).
    confidence
        Confidence level of the interval, in (0, 1).
    method
        ``"HG"`` (Hering-Genton) or ``"HLN"`` (Harvey-Leybourne-Newbold).

    Returns
    -------
    xarray.Dataset
        Over ``lead_time``: ``score`` and ``reference`` (means), ``difference`` (mean of
        ``score - reference``), ``relative_difference`` (``difference / reference``),
        ``ci_lower`` / ``ci_upper`` (the confidence interval of ``relative_difference``, the
        reference mean taken as fixed), ``p_value`` (two-sided, equal skill), ``h`` (overlap
        steps), ``n`` (issue times) and ``verdict``: ``"better"`` (interval below 0),
        ``"worse"`` (above 0), ``"not significant"`` or ``"undetermined"`` (no variance
        estimate, e.g. identical scores, or fewer issue times than ``h + 1``).
    """
    from scores.stats.statistical_tests import diebold_mariano

    if not 0 < confidence < 1:
        raise ForecastError(f"confidence must lie in (0, 1), got {confidence}")
    if method not in METHODS:
        raise ForecastError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")
    _check_paired(score, reference)
    diffs = (score - reference).transpose(LEAD_TIME, INIT_TIME).astype(np.float64)
    h = overlap_steps(score[INIT_TIME].values, score[LEAD_TIME].values)
    n = diffs.count(INIT_TIME).values
    diffs = diffs.assign_coords(h=(LEAD_TIME, h))
    n_lead = diffs.sizes[LEAD_TIME]
    ci = np.full((2, n_lead), np.nan)
    p = np.full(n_lead, np.nan)
    # the Hering-Genton fit in ``scores`` starts from unit autocovariance, so its estimate
    # depends on the scores' units (a variogram score's ~1e4 differences came out with an
    # interval of zero width, differences ~1e-5 with one of +-300 %): each lead's
    # differences are tested in units of their standard deviation and the interval scaled back
    scale = diffs.std(INIT_TIME).values
    scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
    testable = np.flatnonzero(n > h)
    if len(testable):
        res = diebold_mariano(
            (diffs / xr.DataArray(scale, dims=LEAD_TIME)).isel({LEAD_TIME: testable}),
            LEAD_TIME,
            "h",
            method=method,
            confidence_level=confidence,
            statistic_distribution="t",
        )
        ci[0, testable] = res["ci_lower"].values * scale[testable]
        ci[1, testable] = res["ci_upper"].values * scale[testable]
        above = res["confidence_gt_0"].values
        p[testable] = 2 * np.minimum(above, 1 - above)
    ref_mean = reference.mean(INIT_TIME).values.astype(np.float64)
    diff_mean = diffs.mean(INIT_TIME).values
    lo, hi = np.minimum(ci[0], ci[1]), np.maximum(ci[0], ci[1])
    verdict = np.where(
        ~np.isfinite(lo), UNDETERMINED, np.where(hi < 0, BETTER, np.where(lo > 0, WORSE, UNCLEAR))
    )
    coords = {LEAD_TIME: score[LEAD_TIME].values}
    return xr.Dataset(
        {
            "score": (LEAD_TIME, score.mean(INIT_TIME).values.astype(np.float64)),
            "reference": (LEAD_TIME, ref_mean),
            "difference": (LEAD_TIME, diff_mean),
            "relative_difference": (LEAD_TIME, diff_mean / ref_mean),
            "ci_lower": (LEAD_TIME, lo / ref_mean),
            "ci_upper": (LEAD_TIME, hi / ref_mean),
            "p_value": (LEAD_TIME, p),
            "h": (LEAD_TIME, h),
            "n": (LEAD_TIME, n.astype(np.int64)),
            "verdict": (LEAD_TIME, verdict.astype(str)),
        },
        coords=coords,
        attrs={"confidence": confidence, "method": method},
    )


def significance_table(
    forecasts: Mapping[str, xr.Dataset],
    truth: xr.Dataset,
    references: Sequence[str],
    *,
    confidence: float = 0.95,
    method: str = "HG",
    member_dim: str = MEMBER,
    skipna: bool = False,
) -> pd.DataFrame:
    """Every model that is not a reference against the best reference at each lead.

    The best reference at a lead is the one with the lowest mean CRPS there (chosen on the same
    issue times, as a scorecard's "below every baseline" reading does). One row per (model,
    variable, lead) with the columns :data:`COLUMNS`; ``relative_difference``, ``ci_lower``
    and ``ci_upper`` are fractions of the reference's CRPS (-0.05: 5 % lower). The last four
    columns are the model's spread-skill ratio, its interval and its verdict against 0.8-1.2
    (:func:`forecast.scoring.spread_interval.spread_skill_interval`, same confidence).

    Parameters
    ----------
    forecasts
        Name -> ensemble; the references must be among them.
    truth
        The data set (``time`` dimension).
    references
        Names of the reference ensembles (e.g. the baselines).
    confidence, method
        As in :func:`compare_scores`.
    member_dim, skipna
        As in :func:`crps_by_issue_time`.
    """
    missing = [r for r in references if r not in forecasts]
    if not references or missing:
        raise ForecastError(
            f"reference(s) {missing or '(none)'} not among the forecasts "
            f"{sorted(forecasts)}; pass the names of scored ensembles"
        )
    models = [m for m in forecasts if m not in references]
    if not models:
        raise ForecastError("every forecast is a reference; add a model to compare")
    import dask

    from forecast.scoring.spread_interval import spread_skill_interval  # imports this module

    names = [*references, *models]
    lazy = [
        crps_by_issue_time(forecasts[n], truth, member_dim=member_dim, skipna=skipna) for n in names
    ]
    # the scores per (issue time, lead) are small: computed once here (one pass over dask-backed
    # ensembles), not again for every lead's test below
    scores = dict(zip(names, dask.compute(*lazy), strict=True))
    ssr = {
        m: spread_skill_interval(forecasts[m], truth, confidence=confidence, member_dim=member_dim)
        for m in models
    }
    rows = []
    for variable in scores[models[0]].data_vars:
        ref_means = xr.concat(
            [scores[r][variable].mean(INIT_TIME) for r in references], dim="reference"
        )
        best = np.asarray(ref_means.argmin("reference").values)
        for model in models:
            score = scores[model][variable]
            for i, lead in enumerate(score[LEAD_TIME].values):
                ref = references[int(best[i])]
                one = compare_scores(
                    score.isel({LEAD_TIME: [i]}),
                    scores[ref][variable].isel({LEAD_TIME: [i]}),
                    confidence=confidence,
                    method=method,
                ).isel({LEAD_TIME: 0})
                rows.append(
                    [
                        model,
                        str(variable),
                        pd.Timedelta(lead),
                        float(one["score"]),
                        ref,
                        float(one["reference"]),
                        float(one["relative_difference"]),
                        float(one["ci_lower"]),
                        float(one["ci_upper"]),
                        float(one["p_value"]),
                        str(one["verdict"].values),
                        *(float(ssr[model][f"{variable}{k}"][i]) for k in ("", "_lower", "_upper")),
                        str(ssr[model][f"{variable}_verdict"].values[i]),
                    ]
                )
    return pd.DataFrame(rows, columns=COLUMNS)


def _counts(rows: pd.DataFrame) -> str:
    counts = rows["verdict"].value_counts()
    verdicts = [BETTER, UNCLEAR, WORSE] + ([UNDETERMINED] if counts.get(UNDETERMINED) else [])
    crps = ", ".join(f"{counts.get(k, 0)} {k}" for k in verdicts)
    spread = rows["dispersion"].value_counts()
    kinds = ["consistent", "under-dispersed", "over-dispersed"]
    kinds += ["undetermined"] if spread.get("undetermined") else []
    return crps + "; spread-skill " + ", ".join(f"{spread.get(k, 0)} {k}" for k in kinds)


def significance_markdown(table: pd.DataFrame, confidence: float = 0.95) -> str:
    """A Markdown summary of :func:`significance_table`: per model a count line and the rows."""
    from forecast.scoring.scorecard import lead_label

    lines = [
        "# Significance against the best baseline at each lead",
        "",
        f"Modified Diebold-Mariano test (scores), {confidence:.0%} intervals of the CRPS "
        "difference relative to the best baseline's CRPS; negative = the model is better. "
        f"Spread-skill ratio with its {confidence:.0%} block-bootstrap interval (arch); "
        "consistent = the interval overlaps 0.8-1.2.",
        "",
    ]
    for model, rows in table.groupby("model", sort=False):
        lines += [f"## {model}", "", f"Leads: {_counts(rows)} (of {len(rows)}).", ""]
        lines += [
            "| variable | lead | CRPS | best baseline | its CRPS | difference | interval | p | "
            "verdict | spread-skill | interval | dispersion |",
            "|---|---|---:|---|---:|---:|---|---:|---|---:|---|---|",
        ]
        for r in rows.itertuples():
            lines.append(
                f"| {r.variable} | {lead_label(r.lead_time)} | {r.crps:.4g} | {r.reference} | "
                f"{r.reference_crps:.4g} | {r.relative_difference:+.1%} | "
                f"[{r.ci_lower:+.1%}, {r.ci_upper:+.1%}] | {r.p_value:.2g} | {r.verdict} | "
                f"{r.spread_skill:.2f} | [{r.spread_skill_lower:.2f}, {r.spread_skill_upper:.2f}]"
                f" | {r.dispersion} |"
            )
        lines.append("")
    return "\n".join(lines)


def summary_lines(table: pd.DataFrame) -> list[str]:
    """One line per model: how many leads are better, not significant, worse."""
    return [
        f"{model} against the best baseline per lead: {_counts(rows)} (of {len(rows)} leads)"
        for model, rows in table.groupby("model", sort=False)
    ]


def write_significance(
    table: pd.DataFrame, out_dir: str | Path, confidence: float = 0.95
) -> dict[str, Path]:
    """Write ``significance.csv`` and ``significance.md`` into ``out_dir`` (atomic renames)."""
    from forecast.scoring.scorecard import _atomic, lead_label

    out = Path(out_dir)
    csv = table.assign(lead_time=table["lead_time"].map(lead_label))
    return {
        "significance_csv": _atomic(out / "significance.csv", lambda t: csv.to_csv(t, index=False)),
        "significance_md": _atomic(
            out / "significance.md",
            lambda t: Path(t).write_text(significance_markdown(table, confidence) + "\n"),
        ),
    }


__all__ = [
    "BETTER",
    "COLUMNS",
    "UNCLEAR",
    "UNDETERMINED",
    "WORSE",
    "compare_scores",
    "crps_by_issue_time",
    "issue_aligned",
    "overlap_steps",
    "significance_markdown",
    "significance_table",
    "summary_lines",
    "write_significance",
]
