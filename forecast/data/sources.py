"""Readers: files (NetCDF, GRIB, Zarr, sensor CSV / HDF5, adjacency) -> the standard data set.

The standard data set (see ``docs/data.md``) has a ``time`` dimension, sorted and regular, and
either grid dimensions (``lat``, ``lon`` with ``lat`` ascending; or ``y``, ``x``) or a ``node``
dimension of sensor ids (strings) with an ``adjacency`` variable over ``(node, node_j)``. Data
variables lie over ``(time, *space)`` and carry ``units``; missing values are NaN. Every reader
loads the data into memory and closes its files, unless ``chunks=`` is given: then NetCDF, GRIB
and Zarr sources (one file, a glob or a list) stay lazy, dask-backed, and every standardization
step (time sorting, step checks, renames, selection) works on coordinates only.
"""

from __future__ import annotations

import glob
import json
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from forecast.data.describe import UNKNOWN_UNITS, check_time_axis, data_variables
from forecast.dims import (
    ADJACENCY,
    DIM_ALIASES,
    GRID_DIMS,
    LAT,
    LON,
    NODE,
    NODE_J,
    TIME,
    VALID_TIME,
    space_dims,
)
from forecast.errors import ForecastError

#: File formats :func:`open_dataset` reads, by name.
FORMATS = ("netcdf", "grib", "zarr", "csv", "hdf5")
_SUFFIXES = {
    ".nc": "netcdf",
    ".nc4": "netcdf",
    ".netcdf": "netcdf",
    ".cdf": "netcdf",
    ".grib": "grib",
    ".grb": "grib",
    ".grib1": "grib",
    ".grib2": "grib",
    ".grb2": "grib",
    ".zarr": "zarr",
    ".csv": "csv",
    ".h5": "hdf5",
    ".hdf5": "hdf5",
    ".hdf": "hdf5",
}
#: Column names recognised as the time column of a sensor CSV when none is given.
TIME_COLUMN_NAMES = ("time", "timestamp", "date", "datetime", "valid_time", "unnamed: 0", "")
#: Name of the variable of a sensor file when the caller gives none.
DEFAULT_SENSOR_VARIABLE = "speed"
_GLOB_CHARS = set("*?[")


# --------------------------------------------------------------------------------------------
# entry point


def open_dataset(
    source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    variable: str | Sequence[str] | None = None,
    **options: Any,
) -> xr.Dataset:
    """Open a named data set, a file, a glob or a list of files as the standard data set.

    Parameters
    ----------
    source : str, path or sequence of paths
        A named data set (``forecast data list``: ``synthetic-weather``, ``synthetic-traffic``,
        ``era5-uk-t2m``, ``los-loop``), a path (NetCDF, GRIB, Zarr store, sensor CSV, pandas
        HDF5), a glob pattern, or a list of paths concatenated along time.
    variable : str or sequence of str, optional
        Gridded files: the variable(s) to keep (default: every variable over time and space).
        Sensor files hold one quantity; ``variable`` names it (default ``"speed"``).
    **options
        Reader options:

        - ``format``: one of :data:`FORMATS`, overriding detection by suffix.
        - ``units``: units to set on the variable (required knowledge for sensor files; grid
          files keep the file's units unless given).
        - ``select``: mapping ``{dim: value}`` applied with ``.sel`` before anything else
          (e.g. one pressure level or one forecast step).
        - ``filter_by_keys``: GRIB only, passed to cfgrib.
        - Sensor files: ``time_column`` (name of the timestamp column), ``start`` and ``step``
          (for files without time column, e.g. ``"2012-03-01"`` and ``"5min"``),
          ``adjacency`` (path of a CSV or ``.npy`` matrix), ``zeros_as_missing`` (exact zeros
          become NaN, as METR-LA / PEMS-BAY need), ``key`` (HDF5 key).
        - Synthetic named data sets: ``seed``.
        - ``chunks``: open lazily with dask instead of loading: a mapping ``{dim: size}`` in the
          standard dim names (``{"time": 24}``), an int, ``"auto"``, or ``{}`` (the chunks of
          the file). NetCDF, GRIB and Zarr files are then read only when computed (many files
          are concatenated lazily along time, as ``xr.open_mfdataset`` does); the all-NaN
          check is skipped (it would read everything). Sensor files and named data sets are
          read into memory first and then chunked.

    Returns
    -------
    xarray.Dataset
        The standard data set, in memory (dask-backed when ``chunks`` is given).

    Raises
    ------
    ForecastError
        Missing path, unknown format, unknown variable, no time dimension, duplicated or
        irregular times, an all-NaN variable, bad sensor columns or adjacency, absent files of
        a named data set. The message is one line naming the problem and the fix.

    Examples
    --------
    >>> ds = open_dataset("era5-uk-t2m")  # doctest: +SKIP
    >>> ds.t2m.dims  # doctest: +SKIP
    ('time', 'lat', 'lon')
    """
    options = dict(options)
    chunks = options.pop("chunks", None)
    if chunks is not None:
        return _open_lazy(source, variable, chunks, options)
    if isinstance(source, str):
        from forecast.data.catalog import DATASETS

        if source in DATASETS:
            return DATASETS.get(source).open(variable, **options)
        if not _looks_like_path(source) and not Path(source).exists():
            raise ForecastError(
                f"'{source}' is neither a named data set nor an existing path; named data sets: "
                f"{', '.join(DATASETS.names())} (see `forecast data list`), or give a file path"
            )
    paths = expand_source(source)
    if len(paths) == 1:
        return _open_path(paths[0], variable, options)
    parts = [_open_path(p, variable, options, check=False) for p in paths]
    where = f"{len(paths)} files ({paths[0].name} .. {paths[-1].name})"
    try:
        ds = xr.concat(
            parts,
            dim=TIME,
            data_vars="minimal",
            coords="minimal",
            compat="override",
            join="exact",
            combine_attrs="drop_conflicts",
        )
    except ValueError as err:
        raise ForecastError(
            f"cannot concatenate {where} in time: {_first_line(err)}; give files with the same "
            "variables and the same grid or sensors"
        ) from None
    return finalize(ds, where)


def _check_chunks(chunks: Any) -> Any:
    """Validate a ``chunks=`` value: mapping of dim -> positive int / -1, an int, or "auto"."""
    if chunks == "auto":
        return chunks
    if isinstance(chunks, Mapping):
        for dim, size in chunks.items():
            ok = size == "auto" or (
                isinstance(size, int | np.integer)
                and not isinstance(size, bool)
                and (size > 0 or size == -1)
            )
            if not ok:
                raise ForecastError(
                    f"chunks[{dim!r}] = {size!r} is not a chunk size; give a positive integer, "
                    "-1 (whole dimension) or 'auto'"
                )
        return dict(chunks)
    if isinstance(chunks, int | np.integer) and not isinstance(chunks, bool) and chunks > 0:
        return int(chunks)
    raise ForecastError(
        f"chunks={chunks!r} is not understood; give {{dim: size}} (e.g. {{'time': 24}}), a "
        "positive integer, 'auto' or {} (the file's own chunks)"
    )


def _rechunk(ds: xr.Dataset, chunks: Any, where: str) -> xr.Dataset:
    """Apply the user's chunks (standard dim names) to a standardized data set."""
    if isinstance(chunks, dict):
        unknown = [str(d) for d in chunks if d not in ds.dims]
        if unknown:
            raise ForecastError(
                f"{where}: chunks name dimension '{unknown[0]}' that the data set lacks (dims: "
                f"{', '.join(map(str, ds.dims))}); use the standard dim names"
            )
        if not chunks:
            return ds if all(v.chunks is not None for v in ds.data_vars.values()) else ds.chunk()
    return ds.chunk(chunks)


def _open_lazy(
    source: Any, variable: str | Sequence[str] | None, chunks: Any, options: Mapping[str, Any]
) -> xr.Dataset:
    """``open_dataset(..., chunks=...)``: the standard data set backed by dask arrays."""
    chunks = _check_chunks(chunks)
    if isinstance(source, str):
        from forecast.data.catalog import DATASETS

        if source in DATASETS:
            ds = DATASETS.get(source).open(variable, **options)
            return _rechunk(ds, chunks, source)
    paths = expand_source(source)
    opts = dict(options)
    fmts = {detect_format(p, opts.get("format")) for p in paths}
    if fmts & {"csv", "hdf5"}:
        ds = open_dataset(source, variable, **options)
        return _rechunk(ds, chunks, paths[0].name)
    parts = [_open_path(p, variable, opts, check=False, lazy=True) for p in paths]
    if len(parts) == 1:
        ds, where = parts[0], paths[0].name
    else:
        where = f"{len(paths)} files ({paths[0].name} .. {paths[-1].name})"
        try:
            ds = xr.concat(
                parts,
                dim=TIME,
                data_vars="minimal",
                coords="minimal",
                compat="override",
                join="exact",
                combine_attrs="drop_conflicts",
            )
        except ValueError as err:
            raise ForecastError(
                f"cannot concatenate {where} in time: {_first_line(err)}; give files with the "
                "same variables and the same grid or sensors"
            ) from None
    ds = finalize(ds, where, load=False)
    return _rechunk(ds, chunks, where)


def _looks_like_path(text: str) -> bool:
    return os.sep in text or "." in Path(text).name or bool(_GLOB_CHARS & set(text))


def expand_source(source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[Path]:
    """The existing paths a source stands for: one path, a glob's matches (sorted) or a list.

    Raises
    ------
    ForecastError
        A path that does not exist, a glob that matches nothing, or an empty list.
    """
    if isinstance(source, (str, os.PathLike)):
        text = os.fspath(source)
        if _GLOB_CHARS & set(text) and not Path(text).exists():
            matches = sorted(glob.glob(text))
            if not matches:
                raise ForecastError(
                    f"no files match {text!r}; check the pattern (quote it so the shell does not "
                    "expand it)"
                )
            paths = [Path(m) for m in matches]
        else:
            paths = [Path(text)]
    else:
        paths = [Path(os.fspath(p)) for p in source]
        if not paths:
            raise ForecastError("empty list of files; give at least one path")
    for path in paths:
        if not path.exists():
            raise ForecastError(
                f"{path} does not exist; give an existing file, folder or glob, or a named data "
                "set (see `forecast data list`)"
            )
    return paths


def detect_format(path: Path, format: str | None = None) -> str:
    """The reader for ``path``: ``format`` if given, else from the suffix or a Zarr folder."""
    if format is not None:
        if format not in FORMATS:
            raise ForecastError(f"unknown format {format!r}; valid formats: {', '.join(FORMATS)}")
        return format
    suffix = path.suffix.lower()
    if suffix in _SUFFIXES:
        return _SUFFIXES[suffix]
    if path.is_dir() and any((path / m).exists() for m in (".zgroup", "zarr.json", ".zmetadata")):
        return "zarr"
    what = "folder" if path.is_dir() else f"suffix {path.suffix!r}" if path.suffix else "no suffix"
    raise ForecastError(
        f"unknown format of {path} ({what}); use one of the suffixes "
        f"{', '.join(sorted(_SUFFIXES))} or pass format= (one of {', '.join(FORMATS)})"
    )


def _open_path(
    path: Path,
    variable: str | Sequence[str] | None,
    options: Mapping[str, Any],
    check: bool = True,
    lazy: bool = False,
) -> xr.Dataset:
    opts = dict(options)
    fmt = detect_format(path, opts.pop("format", None))
    if fmt in ("csv", "hdf5"):
        if variable is not None and not isinstance(variable, str):
            raise ForecastError(
                f"{path.name} is a sensor file holding one quantity; give one variable name"
            )
        reader = read_sensor_csv if fmt == "csv" else read_sensor_hdf
        _reject_unknown(opts, _SENSOR_OPTIONS[fmt], path)
        ds = reader(path, variable=variable or DEFAULT_SENSOR_VARIABLE, **opts)
        return finalize(ds, path.name) if check else ds
    _reject_unknown(opts, {"units", "select", "filter_by_keys"}, path)
    ds = read_grid(path, fmt, filter_by_keys=opts.get("filter_by_keys"), lazy=lazy)
    ds = standardize(ds, variable, where=path.name, select=opts.get("select"))
    if opts.get("units") is not None:
        names = data_variables(ds)
        if len(names) != 1:
            raise ForecastError(
                f"units= applies to one variable but {path.name} gives {len(names)} "
                f"({', '.join(names)}); pick one with variable="
            )
        ds[names[0]].attrs["units"] = str(opts["units"])
    return finalize(ds, path.name, load=not lazy) if check else ds


_SENSOR_OPTIONS = {
    "csv": {"units", "time_column", "start", "step", "adjacency", "zeros_as_missing"},
    "hdf5": {"units", "key", "start", "step", "adjacency", "zeros_as_missing"},
}


def _reject_unknown(opts: Mapping[str, Any], allowed: Iterable[str], path: Path) -> None:
    unknown = sorted(set(opts) - set(allowed) - {k for k, v in opts.items() if v is None})
    if unknown:
        raise ForecastError(
            f"option(s) {', '.join(unknown)} do not apply to {path.name}; options for this "
            f"format: {', '.join(sorted(allowed))}"
        )


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


# --------------------------------------------------------------------------------------------
# gridded files


def read_grid(
    path: Path,
    fmt: str,
    *,
    filter_by_keys: Mapping[str, Any] | None = None,
    lazy: bool = False,
) -> xr.Dataset:
    """Open a NetCDF, GRIB or Zarr file as it is (lazily, names not yet normalized).

    GRIB goes through cfgrib with ``indexpath=""``, so no index file is written beside it.
    With ``lazy=True`` the variables are dask arrays in the file's own chunks (``chunks={}``).
    """
    chunks: dict[str, Any] | None = {} if lazy else None
    try:
        if fmt == "netcdf":
            return xr.open_dataset(path, chunks=chunks)
        if fmt == "grib":
            kwargs: dict[str, Any] = {"indexpath": ""}
            if filter_by_keys:
                kwargs["filter_by_keys"] = dict(filter_by_keys)
            return xr.open_dataset(path, engine="cfgrib", backend_kwargs=kwargs, chunks=chunks)
        if fmt == "zarr":
            return xr.open_zarr(path, consolidated=_zarr_consolidated(path), chunks=chunks)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, EOFError) as err:
        hint = ""
        if fmt == "grib" and "filter_by_keys" in str(err):
            hint = " (several GRIB hypercubes: pass filter_by_keys, e.g. {'typeOfLevel': ...})"
        raise ForecastError(
            f"cannot read {path} as {fmt}: {_first_line(err)}{hint}; check that the file is a "
            "complete, valid file of that format (or pass the right format=)"
        ) from None
    raise ForecastError(f"{fmt} is not a grid format; use one of netcdf, grib, zarr")


def _zarr_consolidated(path: Path) -> bool:
    """Whether a Zarr store carries consolidated metadata (format 2 or 3)."""
    if (path / ".zmetadata").is_file():
        return True
    meta = path / "zarr.json"
    if meta.is_file():
        try:
            return bool(json.loads(meta.read_text()).get("consolidated_metadata"))
        except (OSError, ValueError):
            return False
    return False


def _time_from_valid_time(ds: xr.Dataset, where: str) -> xr.Dataset:
    """Make ``valid_time`` the time axis where a file keeps it as a coordinate or dimension."""
    if VALID_TIME not in ds.variables:
        return ds
    vt = ds[VALID_TIME]
    if VALID_TIME in ds.dims:  # new-style CDS NetCDF: valid_time is the dimension
        return ds.drop_vars([TIME], errors="ignore") if TIME not in ds.dims else ds
    if vt.ndim == 0:
        return ds.drop_vars(VALID_TIME)
    if vt.ndim > 1:
        raise ForecastError(
            f"{where}: valid_time spans {', '.join(map(str, vt.dims))} (several forecast steps "
            "per time); pick one with select={'step': ...} (CLI --select step=...)"
        )
    (dim,) = vt.dims
    # e.g. cfgrib analysis: dim 'time' = reference time with valid_time(time); or a forecast:
    # dim 'step' with valid_time(step). The valid time is the time axis.
    ds = ds.drop_vars([v for v in (TIME,) if v in ds.variables and v != dim])
    ds = ds.swap_dims({dim: VALID_TIME})
    if dim in ds.variables:
        ds = ds.drop_vars(dim)
    return ds.rename({VALID_TIME: TIME})


def standardize(
    ds: xr.Dataset,
    variable: str | Sequence[str] | None = None,
    *,
    where: str = "data",
    select: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    """Bring a raw gridded data set to the standard names and layout (no time checks yet).

    Steps: apply ``select``; make ``valid_time`` the time axis; rename dims and coords by
    :data:`forecast.dims.DIM_ALIASES`; find the time axis (a 1-D datetime coordinate if no
    ``time`` dim); drop scalar coordinates (``step``, ``surface``, ``number`` ...) and coordinates
    off the time/space axes; keep the chosen variables; squeeze length-1 extra dims; transpose
    to ``(time, *space)``; sort by time and ``lat``/``lon`` ascending. Units and attributes are
    kept; variables without units get ``units = "unknown"``.

    Parameters
    ----------
    ds : xarray.Dataset
        As read from a file.
    variable : str or sequence of str, optional
        Variables to keep; default every variable over time.
    where : str
        Name used in error messages.
    select : mapping, optional
        ``{dim: value}`` applied with ``ds.sel`` first.

    Returns
    -------
    xarray.Dataset
    """
    if select:
        not_dims = [str(k) for k in select if k not in ds.dims]
        if not_dims:
            raise ForecastError(
                f"{where}: cannot select along '{not_dims[0]}': not a dimension (dims: "
                f"{', '.join(map(str, ds.dims))}); select only along one of those"
            )
        try:
            ds = ds.sel(dict(select))
        except (KeyError, ValueError, TypeError) as err:
            raise ForecastError(
                f"{where}: cannot select {dict(select)}: {_first_line(err)}; use dims and values "
                f"present in the file (dims: {', '.join(map(str, ds.dims))})"
            ) from None
    ds = _time_from_valid_time(ds, where)
    renames = {
        old: new for old, new in DIM_ALIASES.items() if old in ds.variables or old in ds.dims
    }
    clash = [new for new in renames.values() if new in ds.variables or new in ds.dims]
    if clash:
        raise ForecastError(
            f"{where}: both '{clash[0]}' and an alias of it exist; drop one of them before opening"
        )
    ds = ds.rename(renames)
    if TIME not in ds.dims:
        ds = _find_time_axis(ds, where)
    # scalar coordinates (step, surface, number, heightAboveGround, expver ...) carry no axis
    scalar = [name for name, c in ds.coords.items() if c.ndim == 0]
    ds = ds.drop_vars(scalar)
    names = _choose_variables(ds, variable, where)
    ds = ds[names]
    axes = {TIME, NODE, NODE_J, *(d for pair in GRID_DIMS for d in pair)}
    if not space_dims(ds):
        dims = ", ".join(f"{d}={n}" for d, n in ds.sizes.items())
        raise ForecastError(
            f"{where}: no spatial dims (dims: {dims}); expected (time, lat, lon), (time, y, x) or "
            "(time, node): rename the dims"
        )
    extra = [d for d in ds.dims if d not in axes]
    for dim in extra:
        if ds.sizes[dim] == 1:
            ds = ds.squeeze(dim, drop=True)
        else:
            user = [n for n in names if dim in ds[n].dims]
            raise ForecastError(
                f"{where}: variable '{user[0]}' has an extra dimension '{dim}' with "
                f"{ds.sizes[dim]} values; pick one with select={{'{dim}': ...}} "
                f"(CLI --select {dim}=...)"
            )
    off_axis = [n for n, c in ds.coords.items() if n not in ds.dims and not set(c.dims) <= axes]
    ds = ds.drop_vars(off_axis)
    space = space_dims(ds)
    for name in names:
        dims = ds[name].dims
        if TIME in dims and set(dims) != {TIME, *space}:
            raise ForecastError(
                f"{where}: variable '{name}' has dims ({', '.join(map(str, dims))}); expected "
                f"(time, lat, lon), (time, y, x) or (time, node): rename its dims"
            )
    ds = ds.transpose(TIME, *space, ...)
    ds = _sorted_by(ds, TIME)
    for dim in (LAT, LON):
        if dim in ds.coords and ds[dim].ndim == 1 and dim in ds.dims:
            ds = _sorted_by(ds, dim)
    for name in data_variables(ds):
        ds[name].attrs.setdefault("units", UNKNOWN_UNITS)
    return ds


def _sorted_by(ds: xr.Dataset, dim: str) -> xr.Dataset:
    """``ds.sortby(dim)``, skipped when already ascending (keeps dask graphs free of takes)."""
    index = ds.indexes.get(dim)
    if index is not None and index.is_monotonic_increasing:
        return ds
    return ds.sortby(dim)


def _find_time_axis(ds: xr.Dataset, where: str) -> xr.Dataset:
    candidates = [
        name
        for name, var in ds.variables.items()
        if var.ndim == 1 and np.issubdtype(var.dtype, np.datetime64) and name not in ds.dims
    ]
    dims_text = ", ".join(f"{d}={n}" for d, n in ds.sizes.items()) or "none"
    if len(candidates) != 1:
        found = f" (datetime variables: {', '.join(map(str, candidates))})" if candidates else ""
        raise ForecastError(
            f"{where} has no time dimension (dims: {dims_text}){found}; give data with a 'time' "
            "or 'valid_time' axis of datetimes"
        )
    name = candidates[0]
    (dim,) = ds[name].dims
    ds = ds.set_coords(name).swap_dims({dim: name})
    if dim in ds.variables:
        ds = ds.drop_vars(dim)
    return ds.rename({name: TIME})


def _choose_variables(
    ds: xr.Dataset, variable: str | Sequence[str] | None, where: str
) -> list[str]:
    bounds = {str(c.attrs.get("bounds")) for c in ds.variables.values() if "bounds" in c.attrs}
    available = [
        str(n)
        for n, v in ds.data_vars.items()
        if TIME in v.dims and n not in bounds and n != ADJACENCY
    ]
    keep = [ADJACENCY] if ADJACENCY in ds.data_vars else []
    if variable is None:
        if not available:
            raise ForecastError(
                f"{where}: no data variable over time (variables: "
                f"{', '.join(map(str, ds.data_vars)) or 'none'}); give data with a 'time' axis"
            )
        return available + keep
    wanted = [variable] if isinstance(variable, str) else list(variable)
    for name in wanted:
        if name not in available:
            raise ForecastError(
                f"variable '{name}' not in {where}; available: {', '.join(available) or 'none'}"
            )
    return wanted + keep


def finalize(ds: xr.Dataset, where: str, *, load: bool = True) -> xr.Dataset:
    """Check a standardized data set (regular unique times, no all-NaN variable) and load it.

    With ``load=False`` the data stay as they are (dask-backed): only the coordinates are
    checked (time order and step); the all-NaN check, which would read every value, is skipped.

    Raises
    ------
    ForecastError
        Duplicated or irregular times, fewer than two times, or an all-NaN variable.
    """
    if TIME not in ds.dims:
        raise ForecastError(f"{where} has no time dimension; give data with a 'time' axis")
    if not space_dims(ds):
        raise ForecastError(
            f"{where}: no spatial dims (dims: {', '.join(map(str, ds.dims))}); expected lat/lon, "
            "y/x or node: rename the dims"
        )
    ds = _sorted_by(ds, TIME)
    check_time_axis(ds[TIME].values, where)
    if not load:
        ds.attrs.setdefault("source", where)
        return ds
    ds = ds.load()
    for name in data_variables(ds):
        values = ds[name].values
        if np.issubdtype(values.dtype, np.floating) and not np.isfinite(values).any():
            raise ForecastError(
                f"{where}: variable '{name}' is missing everywhere (all NaN); pick another "
                "variable or period, or check the missing-value settings (zeros_as_missing?)"
            )
    ds.attrs.setdefault("source", where)
    return ds


# --------------------------------------------------------------------------------------------
# sensor networks


def sensor_dataset(
    values: np.ndarray,
    times: Sequence[Any] | np.ndarray,
    nodes: Sequence[Any],
    *,
    variable: str = DEFAULT_SENSOR_VARIABLE,
    units: str | None = None,
    adjacency: np.ndarray | None = None,
    zeros_as_missing: bool = False,
    where: str = "data",
) -> xr.Dataset:
    """The standard sensor-network data set from a ``(time, node)`` array.

    Parameters
    ----------
    values : numpy.ndarray
        ``(time, node)`` numbers.
    times : array-like of datetime64
    nodes : sequence
        Sensor ids; stored as strings in coordinate ``node`` (and ``node_j``).
    variable, units : str
        Name and units of the quantity (``units`` default ``"unknown"``).
    adjacency : numpy.ndarray, optional
        ``(node, node)`` matrix stored as variable ``adjacency`` over ``(node, node_j)``.
    zeros_as_missing : bool
        Turn exact zeros into NaN.
    where : str
        Name used in error messages.

    Returns
    -------
    xarray.Dataset
    """
    values = np.asarray(values, dtype=np.float64)
    ids = np.asarray([str(n) for n in nodes], dtype=str)
    if values.shape != (len(times), ids.size):
        raise ForecastError(
            f"{where}: values are {values.shape}, expected (time, node) = "
            f"({len(times)}, {ids.size}); give one value per time and sensor"
        )
    if len(set(ids.tolist())) != ids.size:
        dup = pd.Index(ids).duplicated()
        raise ForecastError(
            f"{where}: sensor id '{ids[dup][0]}' appears more than once; give unique column names"
        )
    if zeros_as_missing:
        values = np.where(values == 0.0, np.nan, values)
    ds = xr.Dataset(
        {variable: ((TIME, NODE), values, {"units": units or UNKNOWN_UNITS})},
        coords={TIME: pd.DatetimeIndex(times).as_unit("ns").values, NODE: ids},
    )
    if zeros_as_missing:
        ds[variable].attrs["comment"] = "exact zeros in the source were treated as missing"
    if adjacency is not None:
        adjacency = np.asarray(adjacency, dtype=np.float64)
        if adjacency.shape != (ids.size, ids.size):
            raise ForecastError(
                f"{where}: adjacency is {' x '.join(map(str, adjacency.shape))} but the data has "
                f"{ids.size} sensors; give the adjacency matrix of these sensors (same order)"
            )
        ds[ADJACENCY] = ((NODE, NODE_J), adjacency, {"long_name": "sensor adjacency weights"})
        ds = ds.assign_coords({NODE_J: ids})
    return ds


def _numeric_frame(frame: pd.DataFrame, where: str) -> np.ndarray:
    """The frame's values as float64, or a ForecastError naming the first non-numeric column."""
    out = np.empty(frame.shape, dtype=np.float64)
    for j, col in enumerate(frame.columns):
        series = frame[col]
        if pd.api.types.is_bool_dtype(series) or not pd.api.types.is_numeric_dtype(series):
            numbers = pd.to_numeric(series, errors="coerce")
            bad = numbers.isna() & series.notna()
            if pd.api.types.is_bool_dtype(series) or bad.any():
                row = int(np.flatnonzero(bad.to_numpy())[0]) if bad.any() else 0
                raise ForecastError(
                    f"{where}: sensor column '{col}' is not numeric (data row {row + 1}: "
                    f"{series.iloc[row]!r}); sensor columns must hold numbers: fix or drop the "
                    "column, or name it as the time column (time_column=)"
                )
            series = numbers
        out[:, j] = series.to_numpy(dtype=np.float64, na_value=np.nan)
    return out


def _parse_times(values: Any, where: str, column: str) -> pd.DatetimeIndex:
    try:
        times = pd.DatetimeIndex(pd.to_datetime(values))
    except (ValueError, TypeError) as err:
        raise ForecastError(
            f"{where}: column '{column}' does not parse as times ({_first_line(err)}); give "
            "ISO 8601 timestamps, or pass start= and step= instead"
        ) from None
    if times.tz is not None:
        times = times.tz_convert("UTC").tz_localize(None)
    if times.isna().any():
        row = int(np.flatnonzero(times.isna())[0])
        raise ForecastError(
            f"{where}: time column '{column}' is empty in data row {row + 1}; fill in every time"
        )
    return times


def _regular_times(start: Any, step: Any, n: int, where: str) -> pd.DatetimeIndex:
    if start is None or step is None:
        raise ForecastError(
            f"{where} has no time column; pass both start= and step= (CLI --start, --step), e.g. "
            "start='2012-03-01 00:00', step='5min'"
        )
    try:
        t0, dt = pd.Timestamp(start), pd.Timedelta(step)
    except (ValueError, TypeError) as err:
        raise ForecastError(
            f"bad start={start!r} or step={step!r} ({_first_line(err)}); give e.g. "
            "start='2012-03-01 00:00', step='5min'"
        ) from None
    if dt <= pd.Timedelta(0):
        raise ForecastError(f"step={step!r} must be positive; give e.g. step='5min'")
    return pd.date_range(t0, periods=n, freq=dt)


def _is_time_like(series: pd.Series) -> bool:
    if pd.api.types.is_datetime64_any_dtype(series):
        return True
    if pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        try:
            pd.to_datetime(series.head(5))
        except (ValueError, TypeError):
            return False
    return True


def read_sensor_csv(
    path: str | os.PathLike[str],
    *,
    variable: str = DEFAULT_SENSOR_VARIABLE,
    units: str | None = None,
    time_column: str | None = None,
    start: Any = None,
    step: Any = None,
    adjacency: str | os.PathLike[str] | np.ndarray | None = None,
    zeros_as_missing: bool = False,
) -> xr.Dataset:
    """Read a wide sensor CSV: one column per sensor (header = sensor ids), one row per time.

    Parameters
    ----------
    path : path
        The CSV file.
    variable, units : str
        Name and units of the quantity (e.g. ``speed``, ``mph``).
    time_column : str, optional
        Name of the timestamp column. When neither it nor ``start`` is given, a first column
        named like a time (``time``, ``timestamp``, ``date``, an unnamed index) or holding
        timestamps is used.
    start, step : optional
        Time of the first row and the step (e.g. ``"2012-03-01"``, ``"5min"``) for files
        without a time column.
    adjacency : path or array, optional
        Adjacency matrix (CSV or ``.npy``, see :func:`read_adjacency`).
    zeros_as_missing : bool
        Treat exact zeros as missing (NaN).

    Returns
    -------
    xarray.Dataset
        Unchecked (call :func:`finalize` or use :func:`open_dataset`).
    """
    path = Path(path)
    where = path.name
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError) as err:
        raise ForecastError(
            f"cannot read {path} as CSV: {_first_line(err)}; give a comma-separated file with a "
            "header row of sensor ids"
        ) from None
    if frame.shape[1] == 0 or frame.shape[0] == 0:
        raise ForecastError(f"{where} holds no data rows; give a CSV with one row per time")
    if time_column is not None and start is not None:
        raise ForecastError("give either time_column= or start=/step=, not both")
    if time_column is None and start is None:
        first = frame.columns[0]
        named = str(first).strip().lower() in TIME_COLUMN_NAMES
        if named or _is_time_like(frame[first]):
            time_column = str(first)
    if time_column is not None:
        if time_column not in frame.columns:
            raise ForecastError(
                f"{where} has no column '{time_column}'; columns start with "
                f"{', '.join(map(str, frame.columns[:5]))}"
            )
        times = _parse_times(frame[time_column], where, time_column)
        frame = frame.drop(columns=time_column)
    else:
        times = _regular_times(start, step, len(frame), where)
    return _frame_dataset(frame, times, variable, units, adjacency, zeros_as_missing, where)


def read_sensor_hdf(
    path: str | os.PathLike[str],
    *,
    key: str | None = None,
    variable: str = DEFAULT_SENSOR_VARIABLE,
    units: str | None = None,
    start: Any = None,
    step: Any = None,
    adjacency: str | os.PathLike[str] | np.ndarray | None = None,
    zeros_as_missing: bool = False,
) -> xr.Dataset:
    """Read the METR-LA / PEMS-BAY layout: a pandas HDF5 store with one wide DataFrame.

    The frame has a DatetimeIndex and one column per sensor. METR-LA stores it under key
    ``df``, PEMS-BAY under ``speed``; with one key it is found automatically. Both record
    missing readings as exact zeros, so pass ``zeros_as_missing=True`` for them.

    Parameters
    ----------
    path : path
        The ``.h5`` file.
    key : str, optional
        Key of the frame in the store; default the only key, or the key named ``variable``.
    variable, units, start, step, adjacency, zeros_as_missing
        As in :func:`read_sensor_csv`; ``start``/``step`` only where the index holds no times.

    Returns
    -------
    xarray.Dataset
        Unchecked (call :func:`finalize` or use :func:`open_dataset`).
    """
    path = Path(path)
    where = path.name
    try:
        with pd.HDFStore(path, mode="r") as store:
            keys = [k.lstrip("/") for k in store.keys()]
            if key is None:
                if len(keys) == 1:
                    key = keys[0]
                elif variable in keys:
                    key = variable
                else:
                    raise ForecastError(
                        f"{where} holds {len(keys)} pandas objects "
                        f"({', '.join(keys) or 'none: not a pandas HDF5 store'}); pick one with "
                        "key= (CLI --key), or pass format='netcdf' if it is NetCDF4/HDF5"
                    )
            elif key not in keys:
                raise ForecastError(
                    f"key '{key}' not in {where}; keys: {', '.join(keys) or 'none'}"
                )
            frame = store[key]
    except ForecastError:
        raise
    except (OSError, ValueError, TypeError, KeyError, ImportError) as err:
        raise ForecastError(
            f"cannot read {path} as a pandas HDF5 store: {_first_line(err)}; give a file written "
            "by pandas (METR-LA / PEMS-BAY layout) or pass format='netcdf'"
        ) from None
    if not isinstance(frame, pd.DataFrame) or frame.empty:
        raise ForecastError(
            f"{where}[{key}] is not a non-empty table; give the wide frame (time x sensor)"
        )
    if isinstance(frame.index, pd.DatetimeIndex):
        if start is not None:
            raise ForecastError(f"{where} has times in its index; do not pass start=/step=")
        times = _parse_times(frame.index, where, "index")
    else:
        times = _regular_times(start, step, len(frame), where)
    return _frame_dataset(frame, times, variable, units, adjacency, zeros_as_missing, where)


def _frame_dataset(
    frame: pd.DataFrame,
    times: np.ndarray,
    variable: str,
    units: str | None,
    adjacency: Any,
    zeros_as_missing: bool,
    where: str,
) -> xr.Dataset:
    """The standard sensor data set of a wide (time x sensor) frame whose times are parsed;
    ``adjacency`` is a matrix, a file to read (ordered by the frame's columns) or None."""
    values = _numeric_frame(frame, where)
    nodes = [str(c) for c in frame.columns]
    if isinstance(adjacency, (str, os.PathLike)):
        adjacency = read_adjacency(adjacency, nodes)
    return sensor_dataset(
        values,
        times,
        nodes,
        variable=variable,
        units=units,
        adjacency=adjacency,
        zeros_as_missing=zeros_as_missing,
        where=where,
    )


def read_adjacency(path: str | os.PathLike[str], nodes: Sequence[str] | None = None) -> np.ndarray:
    """Read an adjacency matrix from CSV or ``.npy`` (never pickle).

    A CSV is either ``n x n`` numbers in sensor order, or labelled: a header row of sensor
    ids, optionally with an id column too; labelled rows/columns are reordered to ``nodes``.

    Parameters
    ----------
    path : path
        ``.csv`` or ``.npy`` file (``np.load`` with ``allow_pickle=False``).
    nodes : sequence of str, optional
        Sensor ids in data order; the matrix must be ``len(nodes)`` square.

    Returns
    -------
    numpy.ndarray
        ``(n, n)`` float64.
    """
    path = Path(path)
    if not path.is_file():
        raise ForecastError(f"adjacency file {path} does not exist; give the path of a CSV or .npy")
    suffix = path.suffix.lower()
    labels: tuple[list[str] | None, list[str] | None] = (None, None)
    if suffix == ".npy":
        try:
            matrix = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:
            raise ForecastError(
                f"cannot read adjacency {path.name}: {_first_line(err)}; save it with "
                "np.save(path, numeric_array) (object arrays and pickles are refused)"
            ) from None
    elif suffix == ".csv":
        matrix, labels = _read_adjacency_csv(path, None if nodes is None else len(nodes))
    else:
        raise ForecastError(
            f"unknown adjacency format {path.name}; give a .csv or .npy file (pickles such as "
            "adj_mx.pkl are refused: convert them with np.save)"
        )
    if matrix.dtype.kind not in "biuf":
        raise ForecastError(
            f"adjacency {path.name} holds {matrix.dtype} values; give a numeric matrix"
        )
    matrix = np.asarray(matrix, dtype=np.float64)
    n = None if nodes is None else len(nodes)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or (n and matrix.shape[0] != n):
        want = f"the data has {n} sensors" if n else "it must be square"
        raise ForecastError(
            f"adjacency {path.name} is {' x '.join(map(str, matrix.shape))} but {want}; give "
            "the adjacency matrix of these sensors (same order as the data columns)"
        )
    if not np.isfinite(matrix).all():
        i, j = np.argwhere(~np.isfinite(matrix))[0]
        raise ForecastError(
            f"adjacency {path.name} has a non-finite entry at ({i}, {j}); use 0 for no connection"
        )
    rows, cols = labels
    if nodes is not None and (rows is not None or cols is not None):
        order = []
        for which in (rows, cols):
            if which is None:
                order.append(np.arange(len(nodes)))
                continue
            pos = {name: i for i, name in enumerate(which)}
            unknown = [s for s in nodes if s not in pos]
            if unknown or len(pos) != len(which):
                raise ForecastError(
                    f"adjacency {path.name} labels do not match the sensor ids (first missing: "
                    f"{unknown[0] if unknown else 'duplicated label'}); label it with the data's "
                    "sensor ids or drop the labels"
                )
            order.append(np.array([pos[s] for s in nodes]))
        matrix = matrix[np.ix_(order[0], order[1])]
    return matrix


def _read_adjacency_csv(
    path: Path, n: int | None
) -> tuple[np.ndarray, tuple[list[str] | None, list[str] | None]]:
    try:
        raw = pd.read_csv(path, header=None, dtype=str, keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError) as err:
        raise ForecastError(
            f"cannot read adjacency {path.name}: {_first_line(err)}; give a comma-separated matrix"
        ) from None
    cells = raw.to_numpy(dtype=object)
    rows, cols = cells.shape
    header = index = False
    if n is not None:
        header = rows == n + 1
        index = cols == n + 1
    else:
        header = not _all_numeric(cells[0, 1:]) or cells[0, 0].strip() == ""
        index = cols == rows and header
    col_labels = [str(c).strip() for c in cells[0, int(index) :]] if header else None
    row_labels = [str(c).strip() for c in cells[int(header) :, 0]] if index else None
    body = cells[int(header) :, int(index) :]
    try:
        matrix = np.array([[float(v) for v in row] for row in body], dtype=np.float64)
    except ValueError:
        bad = next(
            (i, j) for i, row in enumerate(body) for j, v in enumerate(row) if not _is_number(v)
        )
        raise ForecastError(
            f"adjacency {path.name} has a non-numeric entry {body[bad]!r} at row {bad[0]}, column "
            f"{bad[1]}; give numbers only (optionally one header row / column of sensor ids)"
        ) from None
    return matrix, (row_labels, col_labels)


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def _all_numeric(values: Iterable[Any]) -> bool:
    return all(_is_number(v) for v in values)
