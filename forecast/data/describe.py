"""What a data set is: its forecast variables, time step, a JSON description and a summary.

:func:`describe_dataset` produces the JSON-able description that checkpoints store;
:func:`check_compatible` compares it with new data and names the first mismatch.
:func:`summarize` / :func:`format_summary` back ``forecast data info``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from forecast.dims import ADJACENCY, NODE, TIME, space_dims
from forecast.errors import ForecastError

#: Value of the ``units`` attribute where neither the file nor the caller gave units.
UNKNOWN_UNITS = "unknown"


def data_variables(ds: xr.Dataset) -> list[str]:
    """The forecast variables of a data set: data variables with a ``time`` dimension.

    Parameters
    ----------
    ds : xarray.Dataset
        A standard data set (see :func:`forecast.data.open_dataset`).

    Returns
    -------
    list of str
        Variable names in the data set's order; the ``adjacency`` matrix is not among them.
    """
    return [str(name) for name, var in ds.data_vars.items() if TIME in var.dims]


def format_time(value: Any) -> str:
    """A timestamp as ISO 8601 to the second, e.g. ``2019-03-01T00:00:00``."""
    return pd.Timestamp(value).isoformat()


def format_step(step: pd.Timedelta | np.timedelta64) -> str:
    """A time step in short form: ``1h``, ``5min``, ``1d``, ``30s``."""
    seconds = pd.Timedelta(step).total_seconds()
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min"), (1, "s")):
        if seconds and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return str(pd.Timedelta(step))


def check_time_axis(times: Sequence[Any] | np.ndarray, where: str = "data") -> pd.Timedelta:
    """Check that sorted times are unique and regularly spaced; return the step.

    Parameters
    ----------
    times : array-like of datetime64
        Time coordinate, already sorted ascending.
    where : str
        What the times belong to, used in error messages (a file name or data set name).

    Returns
    -------
    pandas.Timedelta
        The time step.

    Raises
    ------
    ForecastError
        Fewer than two times, a duplicated time, or an irregular step (a gap or an
        off-grid time); the message names the first offending time. Nothing is filled in.
    """
    values = np.asarray(times)
    if not np.issubdtype(values.dtype, np.datetime64):
        raise ForecastError(
            f"{where}: the time coordinate holds {values.dtype} values, not datetimes; "
            "give a time coordinate with a standard calendar (datetime64)"
        )
    if values.size < 2:
        raise ForecastError(
            f"{where}: only {values.size} time step(s); at least 2 are needed to define the "
            "time step: open a longer period"
        )
    diffs = np.diff(values)
    if np.any(diffs < np.timedelta64(0, "s")):
        first = int(np.flatnonzero(diffs < np.timedelta64(0, "s"))[0])
        raise ForecastError(
            f"{where}: times are not sorted ({format_time(values[first + 1])} follows "
            f"{format_time(values[first])}); sort by time first"
        )
    dup = np.flatnonzero(diffs == np.timedelta64(0, "s"))
    if dup.size:
        t = values[dup[0]]
        count = int(np.sum(values == t))
        raise ForecastError(
            f"{where}: time {format_time(t)} appears {count} times (first duplicated time, "
            f"{dup.size} duplicates in all); remove the duplicated steps (overlapping files?) "
            "before opening"
        )
    uniq, counts = np.unique(diffs, return_counts=True)
    step = uniq[int(np.argmax(counts))]
    if uniq.size > 1:
        first = int(np.flatnonzero(diffs != step)[0])
        gap = diffs[first]
        if gap > step and gap % step == np.timedelta64(0, "s"):
            detail = f"{int(gap // step) - 1} missing step(s)"
        else:
            detail = "an off-grid time"
        raise ForecastError(
            f"{where}: irregular time step: expected {format_step(step)} but "
            f"{format_time(values[first + 1])} follows {format_time(values[first])} ({detail}); "
            "supply the missing times (NaN where there is no data) or open a regular period"
        )
    return pd.Timedelta(step)


def time_step(ds: xr.Dataset | xr.DataArray) -> pd.Timedelta:
    """The regular time step of a data set.

    Parameters
    ----------
    ds : xarray.Dataset or xarray.DataArray
        Anything with a sorted ``time`` coordinate of at least two values.

    Returns
    -------
    pandas.Timedelta

    Raises
    ------
    ForecastError
        No ``time`` coordinate, fewer than two times, duplicated or irregular times.

    Examples
    --------
    >>> import pandas as pd, xarray as xr
    >>> ds = xr.Dataset(coords={"time": pd.date_range("2020-01-01", periods=3, freq="5min")})
    >>> time_step(ds)
    Timedelta('0 days 00:05:00')
    """
    if TIME not in ds.coords:
        raise ForecastError(
            f"no '{TIME}' coordinate (dims: {', '.join(map(str, ds.dims)) or 'none'}); "
            "open the data with forecast.data.open_dataset"
        )
    return check_time_axis(ds[TIME].values)


def _space_kind(ds: xr.Dataset) -> str:
    dims = space_dims(ds)
    if dims == (NODE,):
        return "sensors"
    return "grid" if dims else "none"


def _adjacency_digest(ds: xr.Dataset) -> str | None:
    if ADJACENCY not in ds:
        return None
    values = np.ascontiguousarray(ds[ADJACENCY].values, dtype=np.float64)
    return hashlib.sha256(values.tobytes()).hexdigest()


def describe_dataset(ds: xr.Dataset) -> dict[str, Any]:
    """A JSON-able description of a data set, as stored in checkpoints.

    Parameters
    ----------
    ds : xarray.Dataset
        A standard data set.

    Returns
    -------
    dict
        ``kind`` (``"grid"`` or ``"sensors"``), ``variables``, ``units`` (per variable),
        ``space_dims``, ``shape`` (size per spatial dim), ``coords`` (coordinate values per
        spatial dim: floats for grids, sensor id strings for ``node``; ``None`` where a dim has
        no coordinate), ``time_step_s`` (seconds, ``None`` for fewer than two times) and
        ``adjacency_sha256`` (digest of the adjacency matrix or ``None``). The time length is
        not part of it: train and test periods differ.

    Examples
    --------
    >>> import numpy as np, pandas as pd, xarray as xr
    >>> ds = xr.Dataset(
    ...     {"t": (("time", "lat", "lon"), np.zeros((2, 1, 2)), {"units": "K"})},
    ...     coords={"time": pd.date_range("2020", periods=2, freq="h"), "lat": [0.0],
    ...             "lon": [0.0, 1.0]})
    >>> d = describe_dataset(ds)
    >>> d["kind"], d["units"], d["shape"], d["time_step_s"]
    ('grid', {'t': 'K'}, {'lat': 1, 'lon': 2}, 3600)
    """
    variables = data_variables(ds)
    dims = space_dims(ds)
    coords: dict[str, list[Any] | None] = {}
    for dim in dims:
        if dim not in ds.coords:
            coords[dim] = None
        elif dim == NODE:
            coords[dim] = [str(v) for v in ds[dim].values]
        else:
            coords[dim] = [float(v) for v in ds[dim].values]
    step = None
    if TIME in ds.coords and ds.sizes.get(TIME, 0) >= 2:
        step = int(time_step(ds).total_seconds())
    return {
        "kind": _space_kind(ds),
        "variables": variables,
        "units": {v: str(ds[v].attrs.get("units", UNKNOWN_UNITS)) for v in variables},
        "space_dims": list(dims),
        "shape": {d: int(ds.sizes[d]) for d in dims},
        "coords": coords,
        "time_step_s": step,
        "adjacency_sha256": _adjacency_digest(ds),
    }


def _fmt_shape(shape: Mapping[str, int]) -> str:
    return " x ".join(str(n) for n in shape.values()) + f" ({' x '.join(shape)})"


def check_compatible(
    description: Mapping[str, Any] | xr.Dataset, ds: xr.Dataset, *, what: str = "the model"
) -> None:
    """Refuse data that does not fit a stored description.

    Checks, in order: spatial layout (grid or sensors, dim names), shape, coordinates
    (grid coordinates within 1e-6, sensor ids and their order), variables, units, time step and
    adjacency matrix.

    Parameters
    ----------
    description : dict or xarray.Dataset
        Output of :func:`describe_dataset` (or a data set, described on the fly).
    ds : xarray.Dataset
        The data to check.
    what : str
        What the description belongs to, for the message (e.g. ``"checkpoint model.safetensors"``).

    Raises
    ------
    ForecastError
        At the first mismatch, naming it and the fix.
    """
    if isinstance(description, xr.Dataset):
        description = describe_dataset(description)
    have = describe_dataset(ds)
    retrain = "train a new model on this data"
    fix = f"use data like the data {what} was trained on, or {retrain}"
    want_dims = list(description["space_dims"])
    if have["space_dims"] != want_dims:
        raise ForecastError(
            f"data has spatial dims ({', '.join(have['space_dims'])}) but {what} expects "
            f"({', '.join(want_dims)}); {fix}"
        )
    want_shape = {d: int(n) for d, n in description["shape"].items()}
    if have["shape"] != want_shape:
        raise ForecastError(
            f"data is {_fmt_shape(have['shape'])} but {what} expects "
            f"{_fmt_shape(want_shape)}; {fix}"
        )
    for dim in want_dims:
        want, got = description["coords"].get(dim), have["coords"].get(dim)
        if want is None or got is None:
            if want is not got:
                raise ForecastError(
                    f"coordinate '{dim}' is {'missing' if got is None else 'present'} in the "
                    f"data but {'present' if want is not None else 'missing'} in {what}; {fix}"
                )
            continue
        if dim == NODE:
            diff = [i for i, (a, b) in enumerate(zip(want, got, strict=True)) if a != b]
            if diff:
                i = diff[0]
                raise ForecastError(
                    f"sensor {i} is '{got[i]}' in the data but '{want[i]}' in {what} "
                    f"({len(diff)} sensors differ); select and order the sensors as in training "
                    f"(ds.sel(node=...)), or {retrain}"
                )
        else:
            a, b = np.asarray(want, dtype=float), np.asarray(got, dtype=float)
            bad = np.flatnonzero(~np.isclose(a, b, rtol=0.0, atol=1e-6))
            if bad.size:
                i = int(bad[0])
                raise ForecastError(
                    f"{dim}[{i}] is {b[i]:g} in the data but {a[i]:g} in {what}; regrid the data "
                    f"to the training grid, or {retrain}"
                )
    want_vars = list(description["variables"])
    if have["variables"] != want_vars:
        missing = [v for v in want_vars if v not in have["variables"]]
        extra = [v for v in have["variables"] if v not in want_vars]
        detail = (
            (f"missing {', '.join(missing)}" if missing else f"unexpected {', '.join(extra)}")
            if (missing or extra)
            else "in a different order"
        )
        raise ForecastError(
            f"data variables [{', '.join(have['variables'])}] do not match {what} "
            f"[{', '.join(want_vars)}] ({detail}); open the data with "
            f"variable={want_vars!r}"
        )
    for var in want_vars:
        want_u, got_u = description["units"].get(var), have["units"][var]
        if want_u != got_u:
            raise ForecastError(
                f"variable '{var}' is in {got_u} but {what} expects {want_u}; convert the data "
                f"to {want_u} (or set its units attribute if it is only mislabelled)"
            )
    want_step = description.get("time_step_s")
    if want_step is not None and have["time_step_s"] is not None:
        if int(want_step) != have["time_step_s"]:
            raise ForecastError(
                f"data time step is {format_step(pd.Timedelta(seconds=have['time_step_s']))} but "
                f"{what} expects {format_step(pd.Timedelta(seconds=int(want_step)))}; resample "
                f"the data, or {retrain}"
            )
    want_adj = description.get("adjacency_sha256")
    if want_adj != have["adjacency_sha256"]:
        state = (
            "differs from"
            if want_adj and have["adjacency_sha256"]
            else ("is missing, unlike" if want_adj else "is present, unlike")
        )
        raise ForecastError(
            f"the data's adjacency matrix {state} the one {what} was trained with; {fix}"
        )


def summarize(ds: xr.Dataset) -> dict[str, Any]:
    """Facts ``forecast data info`` prints: dims, time axis, space, variables with statistics.

    Parameters
    ----------
    ds : xarray.Dataset
        A standard data set.

    Returns
    -------
    dict
        JSON-able: ``dims`` (name -> size), ``time`` (``start``, ``end``, ``step``, ``steps``),
        ``space`` (``kind`` plus grid extent or sensor count and adjacency density) and
        ``variables`` (name -> ``units``, ``long_name``, ``dims``, ``missing_fraction``,
        ``min``, ``mean``, ``max``; statistics are ``None`` for an all-missing variable).
    """
    out: dict[str, Any] = {"dims": {str(k): int(v) for k, v in ds.sizes.items()}}
    times = ds[TIME].values
    step = time_step(ds) if times.size >= 2 else None
    out["time"] = {
        "start": format_time(times[0]),
        "end": format_time(times[-1]),
        "step": format_step(step) if step is not None else None,
        "steps": int(times.size),
    }
    dims = space_dims(ds)
    space: dict[str, Any] = {"kind": _space_kind(ds), "dims": list(dims)}
    if dims == (NODE,):
        space["sensors"] = int(ds.sizes[NODE])
        if ADJACENCY in ds:
            adj = ds[ADJACENCY].values
            off = ~np.eye(adj.shape[0], dtype=bool)
            space["adjacency_nonzero_fraction"] = float(np.mean(adj != 0))
            space["adjacency_symmetric"] = bool(np.allclose(adj, adj.T, equal_nan=True))
            space["edges"] = int(np.count_nonzero(adj[off]))
    elif dims:
        space["shape"] = [int(ds.sizes[d]) for d in dims]
        for d in dims:
            if d in ds.coords and np.issubdtype(ds[d].dtype, np.number):
                values = ds[d].values
                space[f"{d}_range"] = [float(values.min()), float(values.max())]
    out["space"] = space
    variables = {}
    for name in data_variables(ds):
        values = np.asarray(ds[name].values, dtype=np.float64)
        finite = np.isfinite(values)
        n_ok = int(finite.sum())
        variables[name] = {
            "units": str(ds[name].attrs.get("units", UNKNOWN_UNITS)),
            "long_name": str(ds[name].attrs.get("long_name", "")),
            "dims": [str(d) for d in ds[name].dims],
            "missing_fraction": float(1.0 - n_ok / values.size) if values.size else 1.0,
            "min": float(values[finite].min()) if n_ok else None,
            "mean": float(values[finite].mean()) if n_ok else None,
            "max": float(values[finite].max()) if n_ok else None,
        }
    out["variables"] = variables
    return out


def format_summary(summary: Mapping[str, Any], title: str | None = None) -> str:
    """Render :func:`summarize` output as the text ``forecast data info`` prints."""
    lines = [f"source:    {title}"] if title else []
    lines.append("dims:      " + ", ".join(f"{k}={v}" for k, v in summary["dims"].items()))
    t = summary["time"]
    lines.append(f"time:      {t['start']} .. {t['end']}, step {t['step']}, {t['steps']} steps")
    s = summary["space"]
    if s["kind"] == "sensors":
        text = f"sensors:   {s['sensors']}"
        if "adjacency_nonzero_fraction" in s:
            sym = "symmetric" if s["adjacency_symmetric"] else "not symmetric"
            text += (
                f"; adjacency {s['sensors']} x {s['sensors']}, {s['edges']} off-diagonal "
                f"non-zero ({100 * s['adjacency_nonzero_fraction']:.1f}% of entries non-zero), "
                f"{sym}"
            )
        lines.append(text)
    elif s["kind"] == "grid":
        text = (
            "grid:      " + " x ".join(str(n) for n in s["shape"]) + f" ({' x '.join(s['dims'])})"
        )
        extents = [
            f"{d} {s[f'{d}_range'][0]:g}..{s[f'{d}_range'][1]:g}"
            for d in s["dims"]
            if f"{d}_range" in s
        ]
        if extents:
            text += ", " + ", ".join(extents)
        lines.append(text)
    lines.append("variables:")
    for name, v in summary["variables"].items():
        label = f" ({v['long_name']})" if v["long_name"] else ""
        stats = (
            f"min {v['min']:.6g}, mean {v['mean']:.6g}, max {v['max']:.6g}"
            if v["min"] is not None
            else "no values"
        )
        lines.append(
            f"  {name} [{v['units']}]{label} over ({', '.join(v['dims'])}): "
            f"missing {100 * v['missing_fraction']:.2f}%, {stats}"
        )
    return "\n".join(lines)
