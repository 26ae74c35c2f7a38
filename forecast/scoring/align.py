"""Pairing observations with forecasts: strict checks that never broadcast silently.

:func:`obs_for` picks the truth at each forecast's valid time; :func:`check_pair` checks that an
(obs, forecast) pair has the same dimensions (forecast = obs + member), the same coordinate
values and the same units, and otherwise raises a one-line
:class:`~forecast.errors.ForecastError` naming the coordinate and the problem.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence

import numpy as np
import pandas as pd
import xarray as xr

from forecast.dims import INIT_TIME, LEAD_TIME, MEMBER, TIME, VALID_TIME, space_dims
from forecast.errors import ForecastError

XrObj = xr.DataArray | xr.Dataset


def _short(values: np.ndarray, n: int = 3) -> str:
    vals = [str(v) for v in np.asarray(values).ravel()[:n]]
    return "[" + ", ".join(vals) + (", ...]" if np.size(values) > n else "]")


def check_member(forecast: XrObj, member_dim: str = MEMBER) -> int:
    """Number of members; raises when ``forecast`` has no ``member_dim`` dimension."""
    if member_dim not in forecast.dims:
        raise ForecastError(
            f"forecast has no '{member_dim}' dimension (dims {tuple(forecast.dims)}); "
            f"pass an ensemble or set member_dim= to the name of its member dimension"
        )
    return int(forecast.sizes[member_dim])


def _check_coord(name: Hashable, a: XrObj, b: XrObj, what_a: str, what_b: str) -> None:
    if a.sizes[name] != b.sizes[name]:
        raise ForecastError(
            f"coordinate '{name}' does not align: {what_a} has {a.sizes[name]} values, "
            f"{what_b} {b.sizes[name]}; select the same '{name}' values in both"
        )
    if name not in a.coords or name not in b.coords:
        return
    va, vb = np.asarray(a[name].values), np.asarray(b[name].values)
    if {va.dtype.kind, vb.dtype.kind} == {"U", "O"}:  # sensor ids read back from NetCDF
        va, vb = va.astype(str), vb.astype(str)  # are objects; the data set's are strings
    if va.dtype.kind != vb.dtype.kind and not (va.dtype.kind in "iuf" and vb.dtype.kind in "iuf"):
        raise ForecastError(
            f"coordinate '{name}' does not align: {what_a} has dtype {va.dtype}, "
            f"{what_b} {vb.dtype}; convert one of them"
        )
    if va.dtype.kind in "f" or vb.dtype.kind in "f":
        same = np.isclose(va.astype(float), vb.astype(float), rtol=0, atol=1e-9)
    else:
        same = va == vb
    if not np.all(same):
        i = int(np.argmin(same))
        raise ForecastError(
            f"coordinate '{name}' does not align: {what_a} has {va[i]} where {what_b} has "
            f"{vb[i]} (index {i}, {int(np.size(same) - np.sum(same))} of {np.size(same)} "
            f"differ); select matching '{name}' values (e.g. with obs_for or .sel)"
        )


def check_units(obs: xr.DataArray, forecast: xr.DataArray, name: Hashable = None) -> None:
    """Raise when both carry ``units`` and they differ."""
    uo, uf = obs.attrs.get("units"), forecast.attrs.get("units")
    if uo is not None and uf is not None and str(uo) != str(uf):
        label = f" of '{name}'" if name is not None else ""
        raise ForecastError(
            f"units{label} differ: obs in '{uo}', forecast in '{uf}'; "
            f"convert one of them before scoring"
        )


def check_pair(
    obs: xr.DataArray,
    forecast: xr.DataArray,
    member_dim: str | None = MEMBER,
    name: Hashable = None,
    what: str = "obs",
) -> None:
    """Check that ``obs`` has exactly the forecast's dims minus ``member_dim``, aligned.

    Parameters
    ----------
    obs, forecast : xarray.DataArray
        The pair to check.
    member_dim : str or None
        The forecast's member dimension (None: the two must have the same dims).
    name : hashable, optional
        Variable name used in messages.
    what : str
        How ``obs`` is called in messages ("obs", "reference", "mu"...).
    """
    label = f" for '{name}'" if name is not None else ""
    fdims = [d for d in forecast.dims if d != member_dim]
    extra = [d for d in obs.dims if d not in fdims]
    if extra:
        raise ForecastError(
            f"{what}{label} has dimension(s) {extra} that the forecast lacks "
            f"(forecast dims {tuple(forecast.dims)}); select or reduce them first"
        )
    missing = [d for d in fdims if d not in obs.dims]
    if missing:
        hint = " (use forecast.scoring.obs_for)" if LEAD_TIME in missing else ""
        raise ForecastError(
            f"{what}{label} lacks forecast dimension(s) {missing}; scores never broadcast "
            f"{what} silently: give it the forecast's dims{hint}"
        )
    for d in fdims:
        _check_coord(d, obs, forecast, what, "forecast")
    check_units(obs, forecast, name)


def pair_variables(
    obs: XrObj, forecast: XrObj
) -> list[tuple[Hashable, xr.DataArray, xr.DataArray]]:
    """``[(name, obs_da, forecast_da)]`` for DataArrays or matching Datasets."""
    if isinstance(forecast, xr.DataArray) and isinstance(obs, xr.DataArray):
        return [(forecast.name, obs, forecast)]
    if isinstance(forecast, xr.Dataset) and isinstance(obs, xr.Dataset):
        names = list(forecast.data_vars)
        if not names:
            raise ForecastError("forecast Dataset has no data variables; nothing to score")
        absent = [n for n in names if n not in obs.data_vars]
        if absent:
            raise ForecastError(
                f"obs lacks forecast variable(s) {absent} (obs has {list(obs.data_vars)}); "
                f"score matching variables"
            )
        return [(n, obs[n], forecast[n]) for n in names]
    raise ForecastError(
        f"obs and forecast must both be DataArrays or both Datasets, got "
        f"{type(obs).__name__} and {type(forecast).__name__}"
    )


def reduce_dims(dim: str | Iterable[str] | None, obj: xr.DataArray, member_dim: str | None) -> list:
    """Dims to reduce: None -> every dim of ``obj`` but ``member_dim``; checks they exist."""
    if dim is None:
        return [d for d in obj.dims if d != member_dim]
    dims = [dim] if isinstance(dim, str) else list(dim)
    bad = [d for d in dims if d not in obj.dims or d == member_dim]
    if bad:
        raise ForecastError(
            f"cannot reduce over {bad}: not a non-member dimension of the forecast "
            f"(dims {tuple(obj.dims)}); pick dims from those"
        )
    return dims


def _valid_times(ensemble: XrObj) -> xr.DataArray:
    if LEAD_TIME not in ensemble.dims:
        raise ForecastError(
            f"ensemble has no '{LEAD_TIME}' dimension (dims {tuple(ensemble.dims)}); "
            f"obs_for needs the standard ensemble layout"
        )
    if VALID_TIME in ensemble.coords:
        return ensemble[VALID_TIME]
    if INIT_TIME not in ensemble.coords:
        raise ForecastError(
            f"ensemble has neither '{VALID_TIME}' nor '{INIT_TIME}' coordinate; "
            f"add init_time (the issue time) to the ensemble"
        )
    return ensemble[INIT_TIME] + ensemble[LEAD_TIME]


def obs_for(ensemble: XrObj, truth: xr.Dataset, variables: Sequence[str] | None = None) -> XrObj:
    """Truth at the valid times of an ensemble, laid out like the ensemble without members.

    Parameters
    ----------
    ensemble : xarray.Dataset or xarray.DataArray
        Dims ``([init_time,] member, lead_time, *space)``; coords ``init_time`` and
        ``lead_time`` (or ``valid_time``).
    truth : xarray.Dataset
        A standard data set with a ``time`` dimension and the same spatial coords (or a superset:
        the ensemble's points are selected exactly).
    variables : sequence of str, optional
        Variables to take (default: the ensemble's data variables).

    Returns
    -------
    xarray.Dataset or xarray.DataArray
        Same type as ``ensemble``; dims ``([init_time,] lead_time, *space)``.

    Raises
    ------
    ForecastError
        When a valid time or a grid point is absent from the truth, or a variable is missing.

    Examples
    --------
    >>> obs = obs_for(ens, truth)  # doctest: +SKIP
    >>> crps_ensemble(obs, ens, dim=[])  # doctest: +SKIP
    """
    if TIME not in truth.dims:
        raise ForecastError(f"truth has no '{TIME}' dimension (dims {tuple(truth.dims)})")
    vt = _valid_times(ensemble)
    times = pd.DatetimeIndex(truth[TIME].values)
    wanted = pd.DatetimeIndex(np.asarray(vt.values).ravel())
    absent = wanted[~wanted.isin(times)].unique()
    if len(absent):
        raise ForecastError(
            f"truth lacks {len(absent)} valid time(s) of the ensemble, first {absent[0]} "
            f"(truth covers {times.min()} .. {times.max()}); give truth that covers "
            f"init_time + lead_time"
        )
    if isinstance(ensemble, xr.DataArray):
        names = [ensemble.name] if variables is None else list(variables)
    else:
        names = list(ensemble.data_vars) if variables is None else list(variables)
    absent_vars = [n for n in names if n not in truth.data_vars]
    if absent_vars:
        raise ForecastError(
            f"truth lacks variable(s) {absent_vars} (has {list(truth.data_vars)}); "
            f"open the data set that was forecast"
        )
    sel = truth[names].sel({TIME: vt.drop_vars(VALID_TIME, errors="ignore")})
    sel = sel.drop_vars(TIME, errors="ignore")
    space = space_dims(ensemble)
    for d in space:
        if d not in sel.dims:
            raise ForecastError(f"truth lacks spatial dimension '{d}' of the ensemble")
        if d in ensemble.coords and d in sel.coords:
            try:
                sel = sel.sel({d: ensemble[d].values})
            except KeyError as err:
                raise ForecastError(
                    f"truth lacks '{d}' value(s) {err} of the ensemble; regrid or select first"
                ) from None
    # Carry the ensemble's time coordinates so that the pair aligns exactly.
    keep = {
        k: v
        for k, v in ensemble.coords.items()
        if MEMBER not in v.dims and not set(v.dims) & set(space) and k not in space
    }
    sel = sel.assign_coords(keep)
    if isinstance(ensemble, xr.DataArray):
        return sel[names[0]]
    return sel
