"""Shared plumbing of the xarray-level scores: per-variable mapping and weighted reduction."""

from __future__ import annotations

from collections.abc import Callable, Hashable

import numpy as np
import xarray as xr

from forecast.errors import ForecastError
from forecast.scoring.align import XrObj, check_member, check_pair, pair_variables, reduce_dims


def is_lazy(obj: XrObj) -> bool:
    """True when ``obj`` holds dask arrays."""
    if isinstance(obj, xr.Dataset):
        return any(v.chunks is not None for v in obj.data_vars.values())
    return obj.chunks is not None


def check_weights(weights: xr.DataArray | None, score: xr.DataArray, dims: list) -> None:
    """Weights must be a DataArray over some of the reduced dims, with matching sizes/coords."""
    if weights is None:
        return
    if not isinstance(weights, xr.DataArray):
        raise ForecastError(
            f"weights must be an xarray.DataArray over reduced dims {dims}, "
            f"got {type(weights).__name__}"
        )
    bad = [d for d in weights.dims if d not in dims]
    if bad:
        raise ForecastError(
            f"weights have dimension(s) {bad} that are not reduced (reduced: {dims}); "
            f"give weights over the reduced dims only"
        )
    for d in weights.dims:
        if weights.sizes[d] != score.sizes[d]:
            raise ForecastError(
                f"weights have wrong shape: '{d}' has {weights.sizes[d]} values, "
                f"the data {score.sizes[d]}; give one weight per '{d}' value"
            )
        if d in weights.coords and d in score.coords:
            wv, sv = np.asarray(weights[d].values), np.asarray(score[d].values)
            if not np.array_equal(wv, sv):
                raise ForecastError(
                    f"weights coordinate '{d}' does not match the data's; build weights from "
                    f"the forecast's '{d}' values"
                )
    if weights.chunks is None:
        w = np.asarray(weights.values)
        if not np.all(np.isfinite(w)) or np.any(w < 0) or not np.any(w > 0):
            raise ForecastError("weights must be finite, >= 0 and not all zero")


def reduce_mean(
    score: xr.DataArray,
    dims: list,
    weights: xr.DataArray | None,
    skipna: bool,
    name: Hashable = None,
) -> xr.DataArray:
    """(Weighted) mean over ``dims``; raises when skipping NaNs leaves nothing to average."""
    if not dims:
        return score
    check_weights(weights, score, dims)
    if weights is not None:
        w = weights.drop_vars([c for c in weights.coords if c not in weights.dims])
        out = score.weighted(w.astype(np.float64)).mean(dims, skipna=skipna)
    else:
        out = score.mean(dims, skipna=skipna)
    if skipna and not is_lazy(score):
        empty = score.notnull().sum(dims) == 0
        if bool(empty.any()):
            where = ""
            if empty.ndim:
                first = empty.where(empty, drop=True)
                where = " at " + ", ".join(
                    f"{d}={first[d].values[0]}" for d in first.dims if d in first.coords
                )
            label = f" of '{name}'" if name is not None else ""
            raise ForecastError(
                f"empty selection{label}{where}: no finite (obs, forecast) pair left after "
                f"skipping NaNs over {dims}; check the NaN masks or reduce over fewer dims"
            )
    return out


def per_variable(
    fn: Callable[[Hashable, xr.DataArray, xr.DataArray], xr.DataArray],
    obs: XrObj,
    forecast: XrObj,
    member_dim: str | None,
    what: str = "obs",
) -> XrObj:
    """Check each (obs, forecast) variable pair, apply ``fn`` and rebuild the input's type."""
    pairs = pair_variables(obs, forecast)
    results = {}
    for name, o, f in pairs:
        if member_dim is not None:
            check_member(f, member_dim)
        check_pair(o, f, member_dim, name=name, what=what)
        results[name] = fn(name, o, f)
    if isinstance(forecast, xr.DataArray):
        return next(iter(results.values()))
    return xr.Dataset(results)


def apply_pointwise(
    kernel: Callable[..., np.ndarray],
    obs: xr.DataArray,
    forecast: xr.DataArray,
    core: list,
    obs_core: list | None = None,
    nout: int = 1,
    **kwargs: object,
) -> xr.DataArray | tuple[xr.DataArray, ...]:
    """``xr.apply_ufunc`` a kernel ``(obs (..., *obs_core), fct (..., *core)) -> float64 (...)``.

    Lazy on dask inputs (``dask="parallelized"``); core dims are rechunked to one chunk.
    """
    obs_core = [] if obs_core is None else obs_core
    return xr.apply_ufunc(
        kernel,
        obs,
        forecast,
        input_core_dims=[obs_core, core],
        output_core_dims=[[]] * nout,
        kwargs=kwargs,
        dask="parallelized",
        output_dtypes=[np.float64] * nout,
        dask_gufunc_kwargs={"allow_rechunk": True},
        keep_attrs=False,
    )


def reduce_dims_for(dim: object, forecast: xr.DataArray, member_dim: str | None) -> list:
    """Alias of :func:`forecast.scoring.align.reduce_dims` for the score modules."""
    return reduce_dims(dim, forecast, member_dim)  # type: ignore[arg-type]
