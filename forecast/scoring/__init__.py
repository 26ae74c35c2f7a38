"""Scores of ensemble forecasts on xarray objects: numpy/numba kernels, never torch.

Every score takes ``(obs, forecast, *, member_dim="member", dim=None, weights=None,
skipna=False)`` and returns float64 xarray objects; dask-backed inputs stay lazy.
"""

from forecast.scoring.align import check_pair, obs_for
from forecast.scoring.calibration import (
    brier_score,
    flatness,
    pit_histogram,
    rank_histogram,
    reliability,
)
from forecast.scoring.crps import crps_ensemble, crps_fair, crps_gaussian, crps_pair, crpss
from forecast.scoring.ensemble import (
    ensemble_spread,
    mae_ensemble_median,
    rmse_ensemble_mean,
    spread_skill_ratio,
)
from forecast.scoring.multivariate import energy_score, variogram_score
from forecast.scoring.report import write_report
from forecast.scoring.scorecard import (
    METRICS,
    diagnostics,
    scorecard,
    to_csv,
    to_dataframe,
    to_markdown,
    to_netcdf,
)
from forecast.scoring.significance import (
    compare_scores,
    crps_by_issue_time,
    significance_table,
)

__all__ = [
    "METRICS",
    "brier_score",
    "check_pair",
    "compare_scores",
    "crps_by_issue_time",
    "crps_ensemble",
    "crps_fair",
    "crps_gaussian",
    "crps_pair",
    "crpss",
    "diagnostics",
    "energy_score",
    "ensemble_spread",
    "flatness",
    "mae_ensemble_median",
    "obs_for",
    "pit_histogram",
    "rank_histogram",
    "reliability",
    "rmse_ensemble_mean",
    "scorecard",
    "significance_table",
    "spread_skill_ratio",
    "to_csv",
    "to_dataframe",
    "to_markdown",
    "to_netcdf",
    "variogram_score",
    "write_report",
]
