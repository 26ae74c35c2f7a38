"""Ensemble summaries: mean, standard deviation, quantiles and exceedance probabilities.

Pure numpy/xarray (no torch). :func:`summarize` reduces the ``member`` dim of a standard
ensemble Dataset; the NetCDF writer stores its output beside the members (``--summary``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import xarray as xr

from forecast.dims import MEMBER, QUANTILE
from forecast.errors import ForecastError

#: Quantile levels written by default (5, 25, 50, 75 and 95 %).
QUANTILES: tuple[float, ...] = (0.05, 0.25, 0.5, 0.75, 0.95)

#: Suffixes of the summary variables of a forecast variable ``v``.
MEAN, STD, QUANT, EXCEED = "_mean", "_std", "_quantile", "_exceedance"


def threshold_dim(variable: str) -> str:
    """Name of the threshold dimension (and coordinate) of ``variable``'s exceedance."""
    return f"{variable}_threshold"


def normalize_thresholds(
    thresholds: Mapping[str, Sequence[float]] | Sequence[float] | None,
    variables: Sequence[str],
) -> dict[str, np.ndarray]:
    """Thresholds per variable as sorted float64 arrays.

    A plain sequence applies to every variable; a mapping names its variables, which must exist.
    """
    if thresholds is None:
        return {}
    if isinstance(thresholds, Mapping):
        unknown = sorted(set(thresholds) - set(variables))
        if unknown:
            raise ForecastError(
                f"thresholds given for unknown variable(s) {unknown}; the ensemble has "
                f"{list(variables)}"
            )
        items = dict(thresholds)
    else:
        items = dict.fromkeys(variables, thresholds)
    out = {}
    for var, values in items.items():
        arr = np.asarray(values, dtype=np.float64).ravel()
        if arr.size == 0:
            continue
        if not np.all(np.isfinite(arr)):
            raise ForecastError(f"thresholds of {var} must be finite numbers, got {arr.tolist()}")
        if np.unique(arr).size != arr.size:
            raise ForecastError(f"thresholds of {var} repeat a value: {arr.tolist()}")
        out[var] = np.sort(arr)
    return out


def summarize(
    ensemble: xr.Dataset,
    *,
    quantiles: Sequence[float] = QUANTILES,
    thresholds: Mapping[str, Sequence[float]] | Sequence[float] | None = None,
) -> xr.Dataset:
    """Ensemble mean, standard deviation, quantiles and exceedance probabilities.

    Parameters
    ----------
    ensemble
        A standard ensemble Dataset: every data variable has the ``member`` dim.
    quantiles
        Quantile levels in [0, 1] (linear interpolation between order statistics, numpy's
        default). Empty: no quantile variables.
    thresholds
        Exceedance thresholds in the variables' units: one sequence for every variable, or a
        mapping ``{variable: thresholds}``. ``None``: no exceedance variables.

    Returns
    -------
    xarray.Dataset
        For each variable ``v``: ``v_mean`` and ``v_std`` (population standard deviation,
        ``ddof=0``, as ``Dataset.std``), ``v_quantile`` over a leading ``quantile`` dim and, when
        thresholds are given, ``v_exceedance`` = P(v > threshold) over a leading
        ``v_threshold`` dim. A point where any member is NaN is NaN in every summary.
        Attributes (``units``...) are copied; probabilities have ``units = "1"``.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> ens = xr.Dataset({"t": ("member", np.array([1.0, 3.0]))})
    >>> s = summarize(ens, quantiles=[0.5], thresholds=[2.0])
    >>> float(s.t_mean), float(s.t_std)
    (2.0, 1.0)
    >>> s.t_quantile.values.tolist(), s.t_exceedance.values.tolist()
    ([2.0], [0.5])
    """
    levels = np.asarray(quantiles, dtype=np.float64).ravel()
    if levels.size and (np.any(levels < 0) or np.any(levels > 1) or np.isnan(levels).any()):
        raise ForecastError(f"quantile levels must lie in [0, 1], got {levels.tolist()}")
    variables = [str(v) for v in ensemble.data_vars]
    for var in variables:
        if MEMBER not in ensemble[var].dims:
            raise ForecastError(
                f"variable {var} has no {MEMBER!r} dim; pass an ensemble (dims {MEMBER}, ...)"
            )
    thr = normalize_thresholds(thresholds, variables)
    out: dict[str, xr.DataArray] = {}
    for var in variables:
        da = ensemble[var]
        axis = da.dims.index(MEMBER)
        rest = tuple(d for d in da.dims if d != MEMBER)
        values = np.asarray(da.values)
        attrs = dict(da.attrs)
        with np.errstate(invalid="ignore"):
            mean = values.mean(axis=axis)
            std = values.std(axis=axis)
        out[var + MEAN] = xr.DataArray(mean.astype(values.dtype), dims=rest, attrs=attrs)
        out[var + STD] = xr.DataArray(std.astype(values.dtype), dims=rest, attrs=attrs)
        if levels.size:
            q = np.quantile(values, levels, axis=axis)
            out[var + QUANT] = xr.DataArray(
                q.astype(values.dtype),
                dims=(QUANTILE, *rest),
                coords={QUANTILE: levels},
                attrs=attrs,
            )
        if var in thr:
            levels_v = thr[var].reshape((-1,) + (1,) * values.ndim)
            hits = (values[None] > levels_v).mean(axis=axis + 1)
            hits[:, np.isnan(values).any(axis=axis)] = np.nan
            tdim = threshold_dim(var)
            out[var + EXCEED] = xr.DataArray(
                hits.astype(np.float32),
                dims=(tdim, *rest),
                coords={tdim: xr.Variable(tdim, thr[var], {"units": attrs.get("units", "1")})},
                attrs={"units": "1"},
            )
    coords = {k: c for k, c in ensemble.coords.items() if MEMBER not in c.dims}
    return xr.Dataset(out).assign_coords(coords)
