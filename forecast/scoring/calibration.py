"""Calibration diagnostics: rank and PIT histograms, flatness, Brier score, reliability data."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence

import numpy as np
import xarray as xr

from forecast.dims import BIN, MEMBER, RANK, THRESHOLD
from forecast.errors import ForecastError
from forecast.scoring import kernels
from forecast.scoring._core import is_lazy, per_variable, reduce_dims_for, reduce_mean
from forecast.scoring.align import XrObj

Dims = str | Iterable[str] | None


def _uniform_like(o: xr.DataArray, seed: int) -> xr.DataArray:
    """Seeded uniform [0, 1) draws with the layout (and chunks) of ``o``.

    The draws are those of the in-memory case whatever the chunks (one obs-sized float64
    array, split into ``o``'s chunks), so dask and numpy inputs break ties identically.
    """
    data = np.random.default_rng(seed).random(o.shape)
    if o.chunks is not None:
        import dask.array as da

        data = da.from_array(data, chunks=o.data.chunks)
    return xr.DataArray(data, dims=o.dims, coords=o.coords)


def _ranks(o: xr.DataArray, f: xr.DataArray, member_dim: str, seed: int) -> xr.DataArray:
    """Rank (0..M) of each observation among the members, ties at random; -1 where NaN."""
    u = _uniform_like(o, seed)
    return xr.apply_ufunc(
        kernels.ranks_np,
        o,
        f,
        u,
        input_core_dims=[[], [member_dim], []],
        dask="parallelized",
        output_dtypes=[np.int64],
        dask_gufunc_kwargs={"allow_rechunk": True},
    )


def _check_nonempty(count: xr.DataArray, name: Hashable, what: str) -> None:
    if not is_lazy(count) and bool((count == 0).any()):
        label = f" of '{name}'" if name is not None else ""
        raise ForecastError(
            f"empty selection{label}: no point without NaN left for the {what}; "
            f"check the NaN masks or reduce over fewer dims"
        )


def rank_histogram(
    obs: XrObj,
    forecast: XrObj,
    *,
    member_dim: str = MEMBER,
    dim: Dims = None,
    seed: int = 0,
) -> XrObj:
    """Counts of the observation's rank among the members (dim ``rank``, 0..M).

    Ties between the observation and members are broken at random (seeded), so a discrete
    calibrated ensemble still gives a flat histogram. Points with a NaN observation or a NaN
    member are left out.

    Parameters
    ----------
    obs, forecast, member_dim, dim
        As in :func:`forecast.scoring.crps_ensemble`.
    seed : int
        Seed of the tie-breaking draws (results depend on it only where ties occur).

    Returns
    -------
    xarray.DataArray or xarray.Dataset
        int64 counts over ``rank`` and the dims not reduced.
    """

    def one(name: Hashable, o: xr.DataArray, f: xr.DataArray) -> xr.DataArray:
        dims = reduce_dims_for(dim, f, member_dim)
        m = f.sizes[member_dim]
        r = _ranks(o, f, member_dim, seed)
        counts = xr.concat([(r == k).sum(dims) for k in range(m + 1)], dim=RANK)
        counts = counts.assign_coords({RANK: np.arange(m + 1)})
        _check_nonempty(counts.sum(RANK), name, "rank histogram")
        return counts

    return per_variable(one, obs, forecast, member_dim)


def flatness(histogram: XrObj, dim: str = RANK) -> XrObj:
    """Flatness of a histogram: chi-square against the flat one divided by the bin count.

    ``sum_k (n_k - N/K)^2 / (N/K) / K`` over the ``K`` bins; about ``(K-1)/K`` (close to 1)
    for a calibrated ensemble, larger for U-shaped, domed or skewed histograms.
    """
    h = histogram.astype(np.float64)
    k = h.sizes[dim]
    expected = h.sum(dim) / k
    return ((h - expected) ** 2 / expected).sum(dim) / k


def pit_histogram(
    obs: XrObj,
    forecast: XrObj,
    *,
    member_dim: str = MEMBER,
    dim: Dims = None,
    bins: int = 10,
    seed: int = 0,
) -> XrObj:
    """Histogram of the randomized PIT ``(rank + V) / (M + 1)``, ``V ~ U(0, 1)``.

    Returns relative frequencies times ``bins`` over dim ``bin`` (coordinate: bin centres), so
    a calibrated ensemble gives 1 in every bin. Points with NaN are left out.
    """

    def one(name: Hashable, o: xr.DataArray, f: xr.DataArray) -> xr.DataArray:
        dims = reduce_dims_for(dim, f, member_dim)
        m = f.sizes[member_dim]
        r = _ranks(o, f, member_dim, seed)
        v = _uniform_like(o, seed + 1)
        pit = ((r + v) / (m + 1)).where(r >= 0)
        idx = np.floor(pit * bins).clip(0, bins - 1)
        counts = xr.concat([(idx == k).sum(dims) for k in range(bins)], dim=BIN)
        total = counts.sum(BIN)
        _check_nonempty(total, name, "PIT histogram")
        out = counts / total * bins
        return out.assign_coords({BIN: (np.arange(bins) + 0.5) / bins})

    return per_variable(one, obs, forecast, member_dim)


def _thresholds(threshold: float | Sequence[float]) -> xr.DataArray | float:
    arr = np.asarray(threshold, dtype=np.float64)
    if arr.ndim == 0:
        return float(arr)
    if arr.ndim != 1 or arr.size == 0:
        raise ForecastError("threshold must be a number or a 1-D list of numbers")
    return xr.DataArray(arr, dims=[THRESHOLD], coords={THRESHOLD: arr})


def _probabilities(
    o: xr.DataArray, f: xr.DataArray, thr: xr.DataArray | float, member_dim: str, skipna: bool
) -> tuple[xr.DataArray, xr.DataArray]:
    """(forecast probability of exceeding thr, observed exceedance 0/1), NaN where missing."""
    valid = f.notnull()
    exceed = (f > thr).where(valid)
    prob = exceed.mean(member_dim, skipna=skipna, dtype=np.float64)
    event = (o > thr).astype(np.float64).where(o.notnull())
    return prob, event


def brier_score(
    obs: XrObj,
    forecast: XrObj,
    threshold: float | Sequence[float],
    *,
    member_dim: str = MEMBER,
    dim: Dims = None,
    weights: xr.DataArray | None = None,
    skipna: bool = False,
) -> XrObj:
    """Brier score of the event ``value > threshold``, mean over ``dim``.

    The forecast probability is the fraction of members above the threshold. ``threshold``:
    one number, or a list (adds a ``threshold`` dimension).
    """
    thr = _thresholds(threshold)

    def one(name: Hashable, o: xr.DataArray, f: xr.DataArray) -> xr.DataArray:
        dims = reduce_dims_for(dim, f, member_dim)
        prob, event = _probabilities(o, f, thr, member_dim, skipna)
        return reduce_mean((prob - event) ** 2, dims, weights, skipna, name)

    return per_variable(one, obs, forecast, member_dim)


def reliability(
    obs: XrObj,
    forecast: XrObj,
    threshold: float | Sequence[float],
    *,
    member_dim: str = MEMBER,
    dim: Dims = None,
    bins: int = 10,
) -> xr.Dataset | dict:
    """Reliability-diagram data for the event ``value > threshold``.

    Forecast probabilities are binned into ``bins`` equal bins of [0, 1] (1 falls in the last).
    Points with NaN are left out.

    Returns
    -------
    xarray.Dataset
        For a DataArray input: ``forecast_probability`` (mean forecast probability in the bin),
        ``observed_frequency`` (fraction of events) and ``count`` over ``bin``; for a Dataset
        input, a dict of such Datasets keyed by variable.
    """
    thr = _thresholds(threshold)
    results = {}

    def one(name: Hashable, o: xr.DataArray, f: xr.DataArray) -> xr.DataArray:
        dims = reduce_dims_for(dim, f, member_dim)
        prob, event = _probabilities(o, f, thr, member_dim, False)
        ok = prob.notnull() & event.notnull()
        idx = np.floor(prob * bins).clip(0, bins - 1).where(ok)
        count, fp, of = [], [], []
        for k in range(bins):
            inside = idx == k
            n = inside.sum(dims)
            count.append(n)
            fp.append(prob.where(inside).sum(dims) / n)
            of.append(event.where(inside).sum(dims) / n)
        _check_nonempty(sum(count), name, "reliability diagram")
        centres = (np.arange(bins) + 0.5) / bins
        ds = xr.Dataset(
            {
                "forecast_probability": xr.concat(fp, dim=BIN),
                "observed_frequency": xr.concat(of, dim=BIN),
                "count": xr.concat(count, dim=BIN),
            }
        ).assign_coords({BIN: centres})
        ds.attrs["threshold"] = str(threshold)
        results[name] = ds
        return ds["count"]

    per_variable(one, obs, forecast, member_dim)
    if isinstance(forecast, xr.DataArray):
        return next(iter(results.values()))
    return results
