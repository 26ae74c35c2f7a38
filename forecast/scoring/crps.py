"""Continuous ranked probability score: ensemble (standard and fair), Gaussian, skill score."""

from __future__ import annotations

from collections.abc import Hashable, Iterable

import numpy as np
import xarray as xr

from forecast.dims import MEMBER
from forecast.errors import ForecastError
from forecast.scoring import kernels
from forecast.scoring._core import (
    apply_pointwise,
    is_lazy,
    per_variable,
    reduce_dims_for,
    reduce_mean,
)
from forecast.scoring.align import XrObj, check_member, check_pair, pair_variables

Dims = str | Iterable[str] | None


def _crps_kernel(obs: np.ndarray, fct: np.ndarray, *, which: int, skipna: bool) -> np.ndarray:
    terms = kernels.crps_ensemble_terms(obs, fct, skipna=skipna)
    return np.ascontiguousarray(terms[..., which])


def _check_fair(name: Hashable, f: xr.DataArray, member_dim: str) -> None:
    if f.sizes[member_dim] < 2:
        label = f" of '{name}'" if name is not None else ""
        raise ForecastError(
            f"fair CRPS{label} needs at least 2 members, the forecast has "
            f"{f.sizes[member_dim]}; use the standard CRPS (fair=False)"
        )


def crps_ensemble(
    obs: XrObj,
    forecast: XrObj,
    *,
    member_dim: str = MEMBER,
    dim: Dims = None,
    weights: xr.DataArray | None = None,
    skipna: bool = False,
    fair: bool = False,
) -> XrObj:
    """CRPS of an ensemble forecast, mean over ``dim``.

    Uses the sorted-members identity
    ``CRPS = mean_i |x_i - y| - (1/M^2) sum_i (2i - M - 1) x_(i)``; the fair (unbiased,
    finite-ensemble) estimator divides the spread term by ``M (M - 1)`` instead. Accumulates
    in float64 whatever the input dtype; lazy on dask inputs.

    Parameters
    ----------
    obs : xarray.DataArray or xarray.Dataset
        Observations with exactly the forecast's dims minus ``member_dim``, same coordinates
        and units (see :func:`forecast.scoring.obs_for`).
    forecast : xarray.DataArray or xarray.Dataset
        Ensemble with a ``member_dim`` dimension.
    member_dim : str
        Name of the member dimension.
    dim : str or list of str, optional
        Dims to average over; None: all but ``member_dim``; ``[]``: no reduction (pointwise).
    weights : xarray.DataArray, optional
        Non-negative weights over some of the reduced dims (e.g. ``cos(lat)``).
    skipna : bool
        False: a NaN observation or member gives NaN. True: NaN members are dropped point by
        point (as in ``properscoring``) and NaN points are left out of the mean; an average
        over nothing raises.
    fair : bool
        Return the fair CRPS (needs at least two members).

    Returns
    -------
    xarray.DataArray or xarray.Dataset
        float64 scores over the dims not reduced.

    Raises
    ------
    ForecastError
        Missing member dim, misaligned coordinates, different units, fair CRPS with one
        member, weights of the wrong shape, empty selection after skipping NaNs.

    Examples
    --------
    >>> crps_ensemble(obs, ens, dim=["lat", "lon"])  # doctest: +SKIP
    """

    def one(name: Hashable, o: xr.DataArray, f: xr.DataArray) -> xr.DataArray:
        if fair:
            _check_fair(name, f, member_dim)
        dims = reduce_dims_for(dim, f, member_dim)
        pt = apply_pointwise(_crps_kernel, o, f, [member_dim], which=int(fair), skipna=skipna)
        return reduce_mean(pt, dims, weights, skipna, name)

    return per_variable(one, obs, forecast, member_dim)


def crps_fair(obs: XrObj, forecast: XrObj, **kwargs: object) -> XrObj:
    """Fair CRPS: :func:`crps_ensemble` with ``fair=True`` (same arguments)."""
    return crps_ensemble(obs, forecast, fair=True, **kwargs)  # type: ignore[arg-type]


def crps_pair(
    obs: XrObj,
    forecast: XrObj,
    *,
    member_dim: str = MEMBER,
    dim: Dims = None,
    weights: xr.DataArray | None = None,
    skipna: bool = False,
) -> tuple[XrObj, XrObj]:
    """Standard and fair CRPS from one sort of the members (fair is NaN with one member)."""
    std: dict = {}
    fr: dict = {}
    for name, o, f in pair_variables(obs, forecast):
        check_member(f, member_dim)
        check_pair(o, f, member_dim, name=name)
        dims = reduce_dims_for(dim, f, member_dim)

        def both(y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            t = kernels.crps_ensemble_terms(y, x, skipna=skipna)
            return np.ascontiguousarray(t[..., 0]), np.ascontiguousarray(t[..., 1])

        s, fa = apply_pointwise(both, o, f, [member_dim], nout=2)
        std[name] = reduce_mean(s, dims, weights, skipna, name)
        fr[name] = (
            reduce_mean(fa, dims, weights, skipna, name)
            if f.sizes[member_dim] > 1
            else xr.full_like(std[name], np.nan)
        )
    if isinstance(forecast, xr.DataArray):
        return next(iter(std.values())), next(iter(fr.values()))
    return xr.Dataset(std), xr.Dataset(fr)


def crps_gaussian(
    obs: XrObj,
    mu: XrObj,
    sig: XrObj,
    *,
    dim: Dims = None,
    weights: xr.DataArray | None = None,
    skipna: bool = False,
) -> XrObj:
    """CRPS of a normal forecast ``N(mu, sig^2)`` (closed form), mean over ``dim``.

    Parameters
    ----------
    obs, mu, sig : xarray.DataArray or xarray.Dataset
        Same dims, coordinates and units; ``sig >= 0`` (``sig = 0`` gives ``|obs - mu|``).
    dim, weights, skipna
        As in :func:`crps_ensemble`.

    Returns
    -------
    xarray.DataArray or xarray.Dataset
        float64 scores.
    """

    def one(name: Hashable, o: xr.DataArray, m: xr.DataArray) -> xr.DataArray:
        s = sig[name] if isinstance(sig, xr.Dataset) else sig
        check_pair(s, m, None, name=name, what="sig")
        if not is_lazy(s) and bool((s < 0).any()):
            raise ForecastError(f"sig of '{name}' has negative values; give a standard deviation")
        dims = reduce_dims_for(dim, m, None)
        pt = xr.apply_ufunc(
            kernels.crps_gaussian_np,
            o,
            m,
            s,
            dask="parallelized",
            output_dtypes=[np.float64],
        )
        return reduce_mean(pt, dims, weights, skipna, name)

    return per_variable(one, obs, mu, None, what="obs")


def crpss(
    obs: XrObj,
    forecast: XrObj,
    reference: XrObj,
    *,
    member_dim: str = MEMBER,
    dim: Dims = None,
    weights: xr.DataArray | None = None,
    skipna: bool = False,
    fair: bool = False,
) -> XrObj:
    """CRPS skill score ``1 - CRPS(forecast) / CRPS(reference)`` (both means over ``dim``).

    ``reference`` is an ensemble (e.g. climatology or persistence) on the same points; its
    member count may differ (use ``fair=True`` to compare ensembles of different sizes).
    """
    kw = {"member_dim": member_dim, "dim": dim, "weights": weights, "skipna": skipna, "fair": fair}
    f = crps_ensemble(obs, forecast, **kw)
    r = crps_ensemble(obs, reference, **kw)
    return 1.0 - f / r
