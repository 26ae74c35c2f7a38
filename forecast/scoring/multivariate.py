"""Multivariate scores over the spatial dimensions: energy score and variogram score."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence

import numpy as np
import xarray as xr

from forecast.dims import MEMBER, space_dims
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
