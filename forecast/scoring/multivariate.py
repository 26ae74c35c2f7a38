"""Multivariate scores over the spatial dimensions: energy score, variogram score, and the
area mean (the field averaged over space) that the scorecard's ``area_crps`` and
``area_spread_skill`` score."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence

import numpy as np
import xarray as xr

from forecast.dims import LAT, LON, MEMBER, space_dims
from forecast.errors import ForecastError
from forecast.scoring import kernels
from forecast.scoring._core import per_variable, reduce_mean
from forecast.scoring.align import XrObj, reduce_dims

Dims = str | Iterable[str] | None


def _flat_kernel(fn: Callable[..., np.ndarray], nspace: int, **kw: object) -> Callable:
    """Wrap a ``(obs (..., D), fct (..., M, D))`` kernel for ``nspace`` trailing space axes."""

    def run(o: np.ndarray, f: np.ndarray) -> np.ndarray:
        d = int(np.prod(f.shape[f.ndim - nspace :]))
        x = f.reshape(*f.shape[: f.ndim - nspace], d)
        y = o.reshape(*o.shape[: o.ndim - nspace], d)
        return fn(y, x, **kw)

    return run


def _multivariate(
    fn: Callable[..., np.ndarray],
    obs: XrObj,
    forecast: XrObj,
    member_dim: str,
    over: Sequence[str] | None,
    dim: Dims,
    weights: xr.DataArray | None,
    skipna: bool,
    **kw: object,
) -> XrObj:
    def one(name: Hashable, o: xr.DataArray, f: xr.DataArray) -> xr.DataArray:
        space = list(space_dims(f) if over is None else over)
        if not space or any(d not in f.dims for d in space):
            raise ForecastError(
                f"multivariate score of '{name}' needs spatial dims (lat/lon, y/x or node) or "
                f"over= naming dims of the forecast; it has {tuple(f.dims)}"
            )
        rest = [d for d in f.dims if d != member_dim and d not in space]
        dims = rest if dim is None else reduce_dims(dim, f, member_dim)
        bad = [d for d in dims if d in space]
        if bad:
            raise ForecastError(f"dims {bad} are the score's vector dims; reduce over {rest}")
        pt = xr.apply_ufunc(
            _flat_kernel(fn, len(space), **kw),
            o,
            f,
            input_core_dims=[space, [member_dim, *space]],
            dask="parallelized",
            output_dtypes=[np.float64],
            dask_gufunc_kwargs={"allow_rechunk": True},
        )
        return reduce_mean(pt, dims, weights, skipna, name)

    return per_variable(one, obs, forecast, member_dim)


def energy_score(
    obs: XrObj,
    forecast: XrObj,
    *,
    member_dim: str = MEMBER,
    over: Sequence[str] | None = None,
    dim: Dims = None,
    weights: xr.DataArray | None = None,
    skipna: bool = False,
) -> XrObj:
    """Energy score ``E||X - y|| - 0.5 E||X - X'||`` with the vector over the spatial dims.

    Parameters
    ----------
    obs, forecast, member_dim
        As in :func:`forecast.scoring.crps_ensemble`.
    over : sequence of str, optional
        Dims forming the vector (default: the spatial dims, ``forecast.dims.space_dims``).
    dim : str or list of str, optional
        Remaining dims to average over (None: all of them).
    weights, skipna
        Weights over ``dim``; with ``skipna`` samples containing NaN are left out of the mean
        (a NaN anywhere in a sample makes its score NaN).

    Returns
    -------
    xarray.DataArray or xarray.Dataset
        float64 scores. With one spatial point this is the CRPS.
    """
    return _multivariate(
        kernels.energy_score_np, obs, forecast, member_dim, over, dim, weights, skipna
    )


def variogram_score(
    obs: XrObj,
    forecast: XrObj,
    *,
    member_dim: str = MEMBER,
    over: Sequence[str] | None = None,
    dim: Dims = None,
    weights: xr.DataArray | None = None,
    skipna: bool = False,
    p: float = 0.5,
) -> XrObj:
    """Variogram score of order ``p`` (Scheuerer & Hamill 2015) over the spatial dims.

    ``sum_{i,j} (|y_i - y_j|^p - mean_m |x_mi - x_mj|^p)^2`` over all ordered pairs with unit
    weights (as ``scoringrules.vs_ensemble``); cost
    ``O(M D^2)`` per sample for ``D`` spatial points. Arguments as in :func:`energy_score`.
    """
    return _multivariate(
        kernels.variogram_score_np, obs, forecast, member_dim, over, dim, weights, skipna, p=p
    )


def area_mean(field: xr.DataArray, *, skipna: bool = True) -> xr.DataArray:
    """``field`` averaged over its spatial dims: weighted by cos(latitude) on a lat/lon grid
    (each point by the area it covers), plain on a ``(y, x)`` grid or a sensor network (the
    network's mean). With ``skipna`` missing points are left out, else they make the mean NaN.
    Coordinates and attributes (units) are kept."""
    space = list(space_dims(field))
    if not space:
        raise ForecastError(
            f"no grid or sensor dimension in {tuple(field.dims)}; an area mean needs a "
            "gridded or network field"
        )
    if space == [LAT, LON]:
        weights = np.cos(np.deg2rad(field[LAT].astype(np.float64)))
        return field.weighted(weights).mean(space, skipna=skipna, keep_attrs=True)
    return field.mean(space, skipna=skipna, keep_attrs=True)


def area_means(
    obs: XrObj, forecast: XrObj, *, member_dim: str = MEMBER, skipna: bool = False
) -> tuple[XrObj, XrObj]:
    """The :func:`area_mean` of the observations and of every member, paired: a point where
    the observation is missing is left out of the members' means too (with ``skipna``; without
    it, the pair's mean is NaN), so both average the same area."""

    def one(name: Hashable, o: xr.DataArray, f: xr.DataArray) -> xr.DataArray:
        if not space_dims(f):
            raise ForecastError(
                f"the area mean of '{name}' needs spatial dims (lat/lon, y/x or node); "
                f"it has {tuple(f.dims)}"
            )
        return f.where(o.notnull()) if skipna else f

    masked = per_variable(one, obs, forecast, member_dim)
    if isinstance(masked, xr.Dataset):
        names = list(masked.data_vars)
        o_area = xr.Dataset({n: area_mean(obs[n], skipna=skipna) for n in names})
        f_area = xr.Dataset({n: area_mean(masked[n], skipna=skipna) for n in names})
        return o_area, f_area
    return area_mean(obs, skipna=skipna), area_mean(masked, skipna=skipna)
