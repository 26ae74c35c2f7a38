"""Forecast windows as indices: (context, target) pairs never copied out of the data.

A window is identified by its issue index ``i`` (the last observed step). Its context is the
``context`` steps ``[i - context + 1, i]`` and its target the ``horizon`` steps
``[i + 1, i + horizon]``. :class:`Windows` stores only the issue indices (int64), so memory
grows with the number of windows, not with their size; slices are taken on demand
(:func:`context_of`, :func:`target_of`, :class:`forecast.data.torch.WindowDataset`).

The evaluation protocols (chronological splits and test issue times) are in
:mod:`forecast.data.protocols`; ``Protocol`` and ``get_protocol`` are importable from here too.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from forecast.dims import TIME
from forecast.errors import ForecastError

__all__ = [
    "Windows",
    "calendar_features",
    "context_of",
    "make_windows",
    "target_of",
]


def _n_time(ds: xr.Dataset | xr.DataArray) -> int:
    if TIME not in ds.dims:
        raise ForecastError(
            f"no '{TIME}' dimension (dims: {', '.join(map(str, ds.dims)) or 'none'}); "
            "open the data with forecast.data.open_dataset"
        )
    return int(ds.sizes[TIME])


def _check_length(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ForecastError(f"{name} must be a positive integer number of steps, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class Windows:
    """Forecast windows over one time axis, stored as issue indices only.

    Parameters
    ----------
    issue_index : numpy.ndarray of int64
        Time index of the issue time (last observed step) of each window, ascending.
    context : int
        Number of context steps, the issue step included: ``[i - context + 1, i]``.
    horizon : int
        Number of target steps after the issue step: ``[i + 1, i + horizon]``.

    Examples
    --------
    >>> w = Windows(np.array([5, 6], dtype=np.int64), context=3, horizon=2)
    >>> len(w), w.context_slice(0), w.target_slice(1)
    (2, slice(3, 6, None), slice(7, 9, None))
    """

    issue_index: np.ndarray
    context: int
    horizon: int

    def __post_init__(self) -> None:
        idx = np.asarray(self.issue_index)
        if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
            raise ForecastError("issue_index must be a 1-d integer array of time indices")
        object.__setattr__(self, "issue_index", idx.astype(np.int64, copy=False))
        _check_length("context", self.context)
        _check_length("horizon", self.horizon)
        if idx.size and idx.min() < self.context - 1:
            raise ForecastError(
                f"issue index {int(idx.min())} leaves no room for a context of {self.context} "
                f"steps; issue indices must be >= {self.context - 1}"
            )

    def __len__(self) -> int:
        return int(self.issue_index.size)

    def context_slice(self, k: int) -> slice:
        """Time slice of the context of window ``k``."""
        i = int(self.issue_index[k])
        return slice(i - self.context + 1, i + 1)

    def target_slice(self, k: int) -> slice:
        """Time slice of the target of window ``k``."""
        i = int(self.issue_index[k])
        return slice(i + 1, i + 1 + self.horizon)

    def issue_times(self, ds: xr.Dataset | xr.DataArray) -> np.ndarray:
        """Issue times (datetime64) of the windows on the time axis of ``ds``."""
        n = _n_time(ds)
        if len(self) and int(self.issue_index.max()) + self.horizon >= n:
            raise ForecastError(
                f"windows reach step {int(self.issue_index.max()) + self.horizon} but the data "
                f"has {n} steps; build the windows on this data set"
            )
        return ds[TIME].values[self.issue_index]

    def subset(self, mask_or_index: Any) -> Windows:
        """The windows selected by a boolean mask or integer positions."""
        return Windows(self.issue_index[mask_or_index], self.context, self.horizon)


def make_windows(
    ds: xr.Dataset | xr.DataArray,
    context: int,
    horizon: int,
    *,
    target_range: tuple[int, int] | None = None,
    stride: int = 1,
    hours: Iterable[int] | None = None,
) -> Windows:
    """All windows whose context starts at >= 0 and whose whole target lies in ``target_range``.

    Parameters
    ----------
    ds : xarray.Dataset or xarray.DataArray
        Data with a ``time`` dimension (only its time axis is read).
    context, horizon : int
        Window geometry in steps (see :class:`Windows`).
    target_range : tuple of int, optional
        ``(a, b)`` time indices: keep issue indices ``i`` with ``a <= i + 1`` and
        ``i + horizon <= b - 1``. Default: the whole time axis. To keep the context inside
        ``[a, b)`` as well (no leakage from an earlier split), pass ``(a + context, b)``.
    stride : int
        Keep every ``stride``-th issue index, counting from the first valid one (applied after
        the ``hours`` filter).
    hours : iterable of int, optional
        Keep only issue times exactly on one of these hours of the day (``HH:00:00``).

    Returns
    -------
    Windows

    Raises
    ------
    ForecastError
        Bad lengths or range, or no window fits (data too short for the geometry).

    Examples
    --------
    >>> import pandas as pd, xarray as xr
    >>> ds = xr.Dataset(coords={"time": pd.date_range("2020-01-01", periods=48, freq="h")})
    >>> w = make_windows(ds, 6, 24, hours=[0, 6, 12, 18])
    >>> [str(t)[:13] for t in w.issue_times(ds)]
    ['2020-01-01T06', '2020-01-01T12', '2020-01-01T18']
    """
    n = _n_time(ds)
    context = _check_length("context", context)
    horizon = _check_length("horizon", horizon)
    stride = _check_length("stride", stride)
    a, b = (0, n) if target_range is None else (int(target_range[0]), int(target_range[1]))
    if not 0 <= a < b <= n:
        raise ForecastError(
            f"target_range ({a}, {b}) is not inside the {n} time steps; use 0 <= a < b <= {n}"
        )
    first = max(context - 1, a - 1)
    last = b - 1 - horizon
    issue = np.arange(first, last + 1, dtype=np.int64) if last >= first else np.zeros(0, np.int64)
    if hours is not None:
        wanted = sorted({int(h) for h in hours})
        if any(not 0 <= h < 24 for h in wanted):
            raise ForecastError(f"hours {wanted} must lie in 0..23")
        t = pd.DatetimeIndex(ds[TIME].values[issue])
        on_hour = (t.minute == 0) & (t.second == 0) & (t.nanosecond == 0) & (t.microsecond == 0)
        issue = issue[np.isin(t.hour, wanted) & on_hour]
    issue = issue[::stride]
    if issue.size == 0:
        raise ForecastError(
            f"no window of context {context} and horizon {horizon} fits in target range "
            f"({a}, {b}) of {n} steps"
            + (f" at hours {sorted(hours)}" if hours else "")
            + "; use longer data or a shorter context/horizon"
        )
    return Windows(issue, context, horizon)


def _issue_position(ds: xr.Dataset | xr.DataArray, issue_time: Any) -> int:
    n = _n_time(ds)
    if isinstance(issue_time, int | np.integer) and not isinstance(issue_time, bool):
        i = int(issue_time)
        if not 0 <= i < n:
            raise ForecastError(f"issue index {i} is outside the {n} time steps")
        return i
    stamp = np.datetime64(pd.Timestamp(issue_time).to_datetime64())
    hits = np.flatnonzero(ds[TIME].values == stamp)
    if hits.size != 1:
        times = ds[TIME].values
        raise ForecastError(
            f"issue time {pd.Timestamp(issue_time).isoformat()} is not a time step of the data "
            f"({pd.Timestamp(times[0]).isoformat()} .. {pd.Timestamp(times[-1]).isoformat()}); "
            "pick one of its time steps"
        )
    return int(hits[0])


def context_of(ds: xr.Dataset, issue_time: Any, context: int) -> xr.Dataset:
    """The ``context`` steps up to and including ``issue_time`` (a time or a time index).

    Variables without a time dimension (e.g. the adjacency) are kept unchanged.

    Raises
    ------
    ForecastError
        ``issue_time`` not on the time axis, or fewer than ``context`` steps before it.
    """
    context = _check_length("context", context)
    i = _issue_position(ds, issue_time)
    if i - context + 1 < 0:
        raise ForecastError(
            f"issue time at step {i} has only {i + 1} steps up to it, fewer than the context of "
            f"{context}; pick a later issue time"
        )
    return ds.isel({TIME: slice(i - context + 1, i + 1)})


def target_of(ds: xr.Dataset, issue_time: Any, horizon: int) -> xr.Dataset:
    """The ``horizon`` steps after ``issue_time`` (a time or a time index).

    Raises
    ------
    ForecastError
        ``issue_time`` not on the time axis, or fewer than ``horizon`` steps after it.
    """
    horizon = _check_length("horizon", horizon)
    i = _issue_position(ds, issue_time)
    n = _n_time(ds)
    if i + horizon >= n:
        raise ForecastError(
            f"issue time at step {i} has only {n - 1 - i} steps after it, fewer than the horizon "
            f"of {horizon}; pick an earlier issue time"
        )
    return ds.isel({TIME: slice(i + 1, i + 1 + horizon)})


def calendar_features(times: Any) -> np.ndarray:
    """Calendar features of times: ``(n, 4)`` float32.

    Columns: ``sin`` and ``cos`` of ``2 pi h / 24`` with ``h`` the hour of day including
    minutes and seconds, then ``sin`` and ``cos`` of ``2 pi d / 7`` with ``d`` the day of week
    (Monday = 0, an integer).

    Parameters
    ----------
    times : array-like of datetime64, pandas.DatetimeIndex or xarray.DataArray

    Examples
    --------
    >>> calendar_features(np.array(["2024-01-01T06:00"], dtype="datetime64[ns]")).round(3)
    array([[1., 0., 0., 1.]], dtype=float32)
    """
    values = times.values if isinstance(times, xr.DataArray) else times
    t = pd.DatetimeIndex(np.atleast_1d(np.asarray(values)))
    hour = t.hour + t.minute / 60.0 + t.second / 3600.0
    day = t.day_of_week.to_numpy(dtype=float)
    out = np.stack(
        [
            np.sin(2 * np.pi * hour / 24.0),
            np.cos(2 * np.pi * hour / 24.0),
            np.sin(2 * np.pi * day / 7.0),
            np.cos(2 * np.pi * day / 7.0),
        ],
        axis=1,
    )
    return out.astype(np.float32)


def __getattr__(name: str) -> Any:
    # Protocol and get_protocol live in forecast.data.protocols (which imports this module).
    if name in ("Protocol", "get_protocol", "PROTOCOLS"):
        from forecast.data import protocols

        return getattr(protocols, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
