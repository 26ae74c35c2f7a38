"""The one boundary between xarray and torch.

- :func:`to_array`: data set -> ``(time, channel, *space)`` float32 numpy array; channels are
  :func:`forecast.data.describe.data_variables` in the data set's order, space dims in the
  order of :func:`forecast.dims.space_dims`.
- :class:`WindowDataset`: a ``torch.utils.data.Dataset`` over :class:`Windows` of such an
  (already normalized) array; items are views into one tensor, nothing is precomputed per
  window.
- :class:`LazyWindowDataset`: the same items read per window from a (dask-backed, lazily
  opened) data set: nothing is loaded up front, each item reads ``context + horizon`` steps, so
  memory is bounded by a batch.
- :func:`ensemble_from_array`: sampled ``(member, lead, channel, *space)`` values -> the standard
  ensemble data set with ``init_time``, ``lead_time``, ``valid_time`` and the spatial coords.

No other module converts between xarray and torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
import xarray as xr
from torch.utils.data import Dataset

from forecast.data.describe import data_variables, time_step
from forecast.data.windows import Windows
from forecast.dims import INIT_TIME, LEAD_TIME, MEMBER, TIME, VALID_TIME, space_dims
from forecast.errors import ForecastError

__all__ = ["LazyWindowDataset", "WindowDataset", "ensemble_from_array", "to_array"]


def to_array(ds: xr.Dataset) -> np.ndarray:
    """Stack the forecast variables of ``ds`` into a ``(time, channel, *space)`` float32 array.

    Parameters
    ----------
    ds : xarray.Dataset
        A standard data set (physical or normalized units). NaN stays NaN.

    Returns
    -------
    numpy.ndarray
        One new float32 array; channel ``k`` is ``data_variables(ds)[k]``.

    Raises
    ------
    ForecastError
        No forecast variable, or a variable whose dims are not ``(time, *space_dims(ds))``.
    """
    variables = data_variables(ds)
    if not variables:
        raise ForecastError("no forecast variable (none has a time dim); open a standard data set")
    space = space_dims(ds)
    want = {TIME, *space}
    n_time = ds.sizes[TIME]
    shape = (n_time, len(variables), *(ds.sizes[d] for d in space))
    out = np.empty(shape, dtype=np.float32)
    for k, name in enumerate(variables):
        dims = set(map(str, ds[name].dims))
        if dims != want:
            raise ForecastError(
                f"variable '{name}' has dims ({', '.join(map(str, ds[name].dims))}) but the "
                f"forecast variables need ({', '.join([TIME, *space])}); select or drop it"
            )
        out[:, k] = ds[name].transpose(TIME, *space).values
    return out


class WindowDataset(Dataset):
    """Windows of a normalized ``(time, channel, *space)`` array as a torch Dataset.

    Parameters
    ----------
    values : numpy.ndarray or torch.Tensor
        Normalized data from :func:`to_array` (and ``Normalizer.transform_array``). Shared, not
        copied (a numpy array becomes a tensor on the same memory).
    windows : Windows
        Issue indices and geometry (:func:`forecast.data.windows.make_windows` or a protocol).
    calendar : numpy.ndarray
        ``(time, 4)`` calendar features of every step
        (:func:`forecast.data.windows.calendar_features` of the time axis).

    Notes
    -----
    Item ``k`` is a dict: ``context`` ``(context, channel, *space)``, ``target``
    ``(horizon, channel, *space)`` (views into ``values``), ``calendar`` ``(4,)`` float32 of the
    issue time, ``issue_index`` (int). The default collate function stacks them into batches.
    """

    def __init__(self, values: np.ndarray | torch.Tensor, windows: Windows, calendar: Any):
        tensor = (
            values
            if isinstance(values, torch.Tensor)
            else torch.from_numpy(np.ascontiguousarray(values))
        )
        if tensor.ndim < 2:
            raise ForecastError(
                f"values must be (time, channel, *space), got {tuple(tensor.shape)}; use to_array"
            )
        cal = (
            calendar
            if isinstance(calendar, torch.Tensor)
            else torch.from_numpy(np.ascontiguousarray(calendar, dtype=np.float32))
        )
        n_time = tensor.shape[0]
        if tuple(cal.shape) != (n_time, 4):
            raise ForecastError(
                f"calendar must be ({n_time}, 4) (calendar_features of every time step), got "
                f"{tuple(cal.shape)}"
            )
        if len(windows) and int(windows.issue_index.max()) + windows.horizon >= n_time:
            raise ForecastError(
                f"windows reach step {int(windows.issue_index.max()) + windows.horizon} but the "
                f"array has {n_time} steps; build the windows on the same data"
            )
        self.values = tensor
        self.calendar = cal
        self.windows = windows

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, k: int) -> dict[str, Any]:
        if not -len(self) <= k < len(self):
            raise IndexError(f"window {k} out of range for {len(self)} windows")
        i = int(self.windows.issue_index[k])
        c, h = self.windows.context, self.windows.horizon
        return {
            "context": self.values[i - c + 1 : i + 1],
            "target": self.values[i + 1 : i + 1 + h],
            "calendar": self.calendar[i],
            "issue_index": i,
        }


class LazyWindowDataset(Dataset):
    """Windows of a lazily opened data set as a torch Dataset, read one window at a time.

    Items are those of :class:`WindowDataset` built on
    ``normalizer.transform_array(to_array(ds))``, but item ``k`` reads only the steps
    ``[i - context + 1, i + horizon]`` of the data (``i`` its issue index) and normalizes them
    then, so a data set opened with ``open_dataset(..., chunks=...)`` is never loaded whole:
    memory is bounded by a batch (times the chunk overlap of the reads).

    Parameters
    ----------
    ds : xarray.Dataset
        A standard data set, dask-backed or in memory, in physical units.
    windows : Windows
        Issue indices and geometry on the time axis of ``ds``.
    normalizer : forecast.data.normalize.Normalizer, optional
        Applied to each item (``transform_array`` over the channel axis); default: none.

    Notes
    -----
    Items are dicts with ``context`` ``(context, channel, *space)`` and ``target``
    ``(horizon, channel, *space)`` float32 tensors (new memory, not views), ``calendar`` ``(4,)``
    and ``issue_index``. The data set pickles (DataLoader workers re-open nothing: dask graphs
    and xarray's file managers are picklable).
    """

    def __init__(self, ds: xr.Dataset, windows: Windows, normalizer: Any = None):
        from forecast.data.windows import calendar_features

        variables = data_variables(ds)
        if not variables:
            raise ForecastError(
                "no forecast variable (none has a time dim); open a standard data set"
            )
        space = space_dims(ds)
        for name in variables:
            if set(map(str, ds[name].dims)) != {TIME, *space}:
                raise ForecastError(
                    f"variable '{name}' has dims ({', '.join(map(str, ds[name].dims))}) but the "
                    f"forecast variables need ({', '.join([TIME, *space])}); select or drop it"
                )
        n_time = ds.sizes[TIME]
        if len(windows) and int(windows.issue_index.max()) + windows.horizon >= n_time:
            raise ForecastError(
                f"windows reach step {int(windows.issue_index.max()) + windows.horizon} but the "
                f"data set has {n_time} steps; build the windows on the same data"
            )
        if len(windows) and int(windows.issue_index.min()) - windows.context + 1 < 0:
            raise ForecastError(
                "a window's context starts before the first step; build the windows with "
                "make_windows on the same data"
            )
        self.ds = ds[variables]
        self.variables = variables
        self.space = space
        self.windows = windows
        self.normalizer = normalizer
        self.calendar = torch.from_numpy(
            np.ascontiguousarray(calendar_features(ds[TIME].values), dtype=np.float32)
        )

    def __len__(self) -> int:
        return len(self.windows)

    def read(self, start: int, stop: int) -> np.ndarray:
        """Steps ``[start, stop)`` as a normalized ``(time, channel, *space)`` float32 array."""
        part = self.ds.isel({TIME: slice(start, stop)})
        out = np.empty(
            (stop - start, len(self.variables), *(part.sizes[d] for d in self.space)),
            dtype=np.float32,
        )
        for k, name in enumerate(self.variables):
            out[:, k] = part[name].transpose(TIME, *self.space).values
        if self.normalizer is not None:
            out = self.normalizer.transform_array(out, 1, self.variables, copy=False)
        return out

    def __getitem__(self, k: int) -> dict[str, Any]:
        if not -len(self) <= k < len(self):
            raise IndexError(f"window {k} out of range for {len(self)} windows")
        i = int(self.windows.issue_index[k])
        c, h = self.windows.context, self.windows.horizon
        block = torch.from_numpy(self.read(i - c + 1, i + 1 + h))
        return {
            "context": block[:c],
            "target": block[c:],
            "calendar": self.calendar[i],
            "issue_index": i,
        }


def ensemble_from_array(
    values: np.ndarray | torch.Tensor,
    context: xr.Dataset,
    lead_steps: int | Sequence[int],
    *,
    step: pd.Timedelta | str | None = None,
) -> xr.Dataset:
    """The standard ensemble data set from sampled values in physical units.

    Parameters
    ----------
    values : numpy.ndarray or torch.Tensor
        ``(member, lead, channel, *space)``, channels as ``data_variables(context)``.
    context : xarray.Dataset
        The context window; its last time is the issue time (``init_time``). Supplies variable
        names, attributes (``units``) and the spatial coords.
    lead_steps : int or sequence of int
        Lead of each ``lead`` entry in time steps; an int ``n`` means ``1..n``.
    step : pandas.Timedelta or str, optional
        Time step; default: that of ``context`` (needs at least two context times).

    Returns
    -------
    xarray.Dataset
        Variables over ``(member, lead_time, *space)`` (float32), coords ``member`` (0..M-1),
        ``lead_time`` (timedelta64), scalar ``init_time``, ``valid_time`` over ``lead_time``, and
        the spatial coords of ``context``.
    """
    if isinstance(values, torch.Tensor):
        values = values.detach().to("cpu", torch.float32).numpy()
    values = np.asarray(values, dtype=np.float32)
    variables = data_variables(context)
    space = space_dims(context)
    leads = (
        np.arange(1, int(lead_steps) + 1)
        if np.ndim(lead_steps) == 0
        else np.asarray(lead_steps, dtype=np.int64)
    )
    want = (len(leads), len(variables), *(context.sizes[d] for d in space))
    if values.ndim != len(want) + 1 or tuple(values.shape[1:]) != want:
        raise ForecastError(
            f"values have shape {tuple(values.shape)} but (member, {', '.join(map(str, want))}) "
            f"= (member, lead, channel{''.join(', ' + d for d in space)}) is needed"
        )
    dt = time_step(context) if step is None else pd.Timedelta(step)
    init = np.datetime64(pd.Timestamp(context[TIME].values[-1]).as_unit("ns").to_datetime64())
    lead_time = (leads * dt.to_timedelta64()).astype("timedelta64[ns]")
    coords: dict[str, Any] = {
        MEMBER: np.arange(values.shape[0]),
        LEAD_TIME: lead_time,
        INIT_TIME: init,
        VALID_TIME: (LEAD_TIME, init + lead_time),
    }
    for name, coord in context.coords.items():
        if name != TIME and TIME not in coord.dims and set(coord.dims) <= set(space):
            coords[str(name)] = coord.variable
    data = {
        name: ((MEMBER, LEAD_TIME, *space), values[:, :, k], dict(context[name].attrs))
        for k, name in enumerate(variables)
    }
    return xr.Dataset(data, coords=coords)
