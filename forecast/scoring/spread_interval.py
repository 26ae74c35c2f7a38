"""Confidence intervals of the spread-skill ratio by lead time (block bootstrap over issue times).

The spread-skill ratio of :func:`forecast.scoring.spread_skill_ratio` is
``sqrt((M+1)/M) * sqrt(mean var / mean mse)``: the mean member variance and the mean squared
error of the ensemble mean over every issue time and point. Per issue time ``t`` this module
keeps ``var(t)`` and ``mse(t)`` (means over space) and resamples the issue times with the
circular block bootstrap of ``arch`` (:class:`arch.bootstrap.CircularBlockBootstrap`), blocks of
``h = ceil(lead / issue spacing)`` issue times so that overlapping forecasts stay together.
The percentile interval then says whether a ratio outside a target band (0.8-1.2 in the
issues) is more than sampling noise.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from forecast.dims import INIT_TIME, LEAD_TIME, MEMBER
from forecast.errors import ForecastError
from forecast.scoring.ensemble import ensemble_spread, rmse_ensemble_mean
from forecast.scoring.significance import issue_aligned, overlap_steps

#: Verdicts of :func:`spread_skill_interval`.
UNDER, OVER, CONSISTENT, UNKNOWN = "under-dispersed", "over-dispersed", "consistent", "undetermined"


def spread_skill_interval(
    forecast: xr.Dataset,
    truth: xr.Dataset,
    *,
    band: tuple[float, float] = (0.8, 1.2),
    confidence: float = 0.95,
    reps: int = 1000,
    seed: int = 0,
    member_dim: str = MEMBER,
) -> xr.Dataset:
    """Spread-skill ratio per lead with its bootstrap interval and a verdict against ``band``.

    Parameters
    ----------
    forecast
        Ensemble ``(init_time, member, lead_time, *space)``.
    truth
        The data set (``time`` dimension) or observations laid out like the ensemble.
    band
        Target range of the ratio.
    confidence
        Coverage of the percentile interval, in (0, 1).
    reps
        Bootstrap replications.
    seed
        Seed of the resampling (same seed, same interval).
    member_dim
        Member dimension.

    Returns
    -------
    xarray.Dataset
        Per variable ``<v>``: ``<v>`` (the ratio, as ``spread_skill_ratio``), ``<v>_lower``,
        ``<v>_upper`` and ``<v>_verdict``: ``"under-dispersed"`` (interval below the band),
        ``"over-dispersed"`` (above it), ``"consistent"`` (it overlaps the band) or
        ``"undetermined"`` (no finite interval), over ``lead_time``.
    """
    import dask
    from arch.bootstrap import CircularBlockBootstrap

    if not 0 < confidence < 1:
        raise ForecastError(f"confidence must lie in (0, 1), got {confidence}")
    if reps < 10:
        raise ForecastError(f"reps must be at least 10, got {reps}")
    if not band[0] < band[1]:
        raise ForecastError(f"band must be (low, high) with low < high, got {band}")
    obs, names, space = issue_aligned(forecast, truth, member_dim)
    kw = {"member_dim": member_dim, "dim": space}
    var = ensemble_spread(obs[names], forecast[names], **kw) ** 2
    mse = rmse_ensemble_mean(obs[names], forecast[names], **kw) ** 2
    var, mse = dask.compute(var, mse)  # one pass over a dask-backed ensemble; no-op otherwise
    m = forecast.sizes[member_dim]
    factor = np.sqrt((m + 1) / m)
    h = overlap_steps(forecast[INIT_TIME].values, forecast[LEAD_TIME].values)

    def ratio(v: np.ndarray, e: np.ndarray) -> np.ndarray:
        return np.array([factor * np.sqrt(np.mean(v) / np.mean(e))])

    out = {}
    for name in names:
        v = var[name].transpose(LEAD_TIME, INIT_TIME).values.astype(np.float64)
        e = mse[name].transpose(LEAD_TIME, INIT_TIME).values.astype(np.float64)
        point = np.array([ratio(v[i], e[i])[0] for i in range(len(v))])
        bounds = np.full((len(v), 2), np.nan)
        for i in range(len(v)):
            ok = np.isfinite(v[i]) & np.isfinite(e[i])
            if ok.sum() < 3 or not np.any(e[i][ok] > 0):
                continue
            boot = CircularBlockBootstrap(int(min(h[i], ok.sum())), v[i][ok], e[i][ok], seed=seed)
            ci = boot.conf_int(ratio, reps=reps, method="percentile", size=confidence)
            bounds[i] = ci[:, 0]
        lo, hi = bounds[:, 0], bounds[:, 1]
        verdict = np.where(
            ~np.isfinite(lo),
            UNKNOWN,
            np.where(hi < band[0], UNDER, np.where(lo > band[1], OVER, CONSISTENT)),
        )
        out[name] = (LEAD_TIME, point)
        out[f"{name}_lower"] = (LEAD_TIME, lo)
        out[f"{name}_upper"] = (LEAD_TIME, hi)
        out[f"{name}_verdict"] = (LEAD_TIME, verdict.astype(str))
    return xr.Dataset(
        out,
        coords={LEAD_TIME: forecast[LEAD_TIME].values},
        attrs={"band": list(band), "confidence": confidence, "reps": reps, "seed": seed},
    )
