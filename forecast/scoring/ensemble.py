"""Deterministic summaries of an ensemble: RMSE of the mean, MAE of the median, spread-skill."""

from __future__ import annotations

from collections.abc import Hashable, Iterable

import numpy as np
import xarray as xr

from forecast.dims import MEMBER
from forecast.scoring._core import per_variable, reduce_dims_for, reduce_mean
from forecast.scoring.align import XrObj

Dims = str | Iterable[str] | None


def _mean(f: xr.DataArray, member_dim: str, skipna: bool) -> xr.DataArray:
    return f.mean(member_dim, skipna=skipna, dtype=np.float64)


def _var(f: xr.DataArray, member_dim: str, skipna: bool) -> xr.DataArray:
    return f.var(member_dim, skipna=skipna, ddof=1, dtype=np.float64)


def rmse_ensemble_mean(
    obs: XrObj,
    forecast: XrObj,
    *,
    member_dim: str = MEMBER,
    dim: Dims = None,
    weights: xr.DataArray | None = None,
    skipna: bool = False,
) -> XrObj:
    """Root mean square error of the ensemble mean over ``dim`` (float64).

    Arguments as in :func:`forecast.scoring.crps_ensemble`; with ``skipna`` NaN members are
    left out of each mean.
    """

    def one(name: Hashable, o: xr.DataArray, f: xr.DataArray) -> xr.DataArray:
        dims = reduce_dims_for(dim, f, member_dim)
        se = (_mean(f, member_dim, skipna) - o.astype(np.float64)) ** 2
        return np.sqrt(reduce_mean(se, dims, weights, skipna, name))

    return per_variable(one, obs, forecast, member_dim)


def mae_ensemble_median(
    obs: XrObj,
    forecast: XrObj,
    *,
    member_dim: str = MEMBER,
    dim: Dims = None,
    weights: xr.DataArray | None = None,
    skipna: bool = False,
) -> XrObj:
    """Mean absolute error of the ensemble median over ``dim`` (float64)."""

    def one(name: Hashable, o: xr.DataArray, f: xr.DataArray) -> xr.DataArray:
        dims = reduce_dims_for(dim, f, member_dim)
        med = f.chunk({member_dim: -1}) if f.chunks is not None else f
        med = med.median(member_dim, skipna=skipna).astype(np.float64)
        ae = abs(med - o.astype(np.float64))
        return reduce_mean(ae, dims, weights, skipna, name)

    return per_variable(one, obs, forecast, member_dim)


def ensemble_spread(
    obs: XrObj,
    forecast: XrObj,
    *,
    member_dim: str = MEMBER,
    dim: Dims = None,
    weights: xr.DataArray | None = None,
    skipna: bool = False,
) -> XrObj:
    """Ensemble spread ``sqrt(mean over dim of the member variance (ddof=1))``.

    ``obs`` is only used to check alignment and to mask the same points (where obs is NaN
    the point is left out when ``skipna``, NaN otherwise), so that spread and RMSE of the mean
    are computed on the same sample.
    """

    def one(name: Hashable, o: xr.DataArray, f: xr.DataArray) -> xr.DataArray:
        dims = reduce_dims_for(dim, f, member_dim)
        var = _var(f, member_dim, skipna).where(o.notnull())
        return np.sqrt(reduce_mean(var, dims, weights, skipna, name))

    return per_variable(one, obs, forecast, member_dim)


def spread_skill_ratio(
    obs: XrObj,
    forecast: XrObj,
    *,
    member_dim: str = MEMBER,
    dim: Dims = None,
    weights: xr.DataArray | None = None,
    skipna: bool = False,
) -> XrObj:
    """Spread-skill ratio ``sqrt((M+1)/M) * spread / RMSE(ensemble mean)``.

    With the finite-ensemble factor ``sqrt((M+1)/M)`` (Fortin et al. 2014), a calibrated
    ensemble (observation exchangeable with the members) gives 1 in expectation; an
    under-dispersed one gives less than 1. ``M`` is the size of ``member_dim``.
    """
    kw = {"member_dim": member_dim, "dim": dim, "weights": weights, "skipna": skipna}

    def one(name: Hashable, o: xr.DataArray, f: xr.DataArray) -> xr.DataArray:
        m = f.sizes[member_dim]
        spread = ensemble_spread(o, f, **kw)
        rmse = rmse_ensemble_mean(o, f, **kw)
        return np.sqrt((m + 1) / m) * spread / rmse

    return per_variable(one, obs, forecast, member_dim)
