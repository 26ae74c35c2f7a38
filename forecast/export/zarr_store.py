"""Zarr ensemble stores beside the CF NetCDF files: :func:`to_zarr`.

The store holds the same CF layout as :func:`forecast.export.to_netcdf` (variables
``realization``, ``forecast_reference_time``, ``forecast_period``, ``time``, the grid or the
``station_id`` of sensors, data ``(forecast_reference_time, realization, forecast_period,
*space)``), in Zarr format 2 with consolidated metadata (``.zmetadata``). Each data chunk is one
member x one issue time x all lead times x the whole grid, and the store is written member by
member and issue time by issue time, so memory holds one member of one issue time (a lazy,
dask-backed ensemble is computed member by member). The store is built in a hidden temporary
folder beside the target and renamed at the end: an interrupted export leaves nothing at the
target. :func:`forecast.export.open_ensemble` reads it back.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from forecast.checkpoint import umask_mode
from forecast.dims import LAT, LEAD_TIME, LON, MEMBER, NODE, X, Y
from forecast.errors import ForecastError
from forecast.export.netcdf import (
    _AUX_FILE_DIMS,
    _EPOCH,
    FP,
    FRT,
    REALIZATION,
    STATION,
    STATION_ID,
    VTIME,
    _as_slab,
    _checked_slabs,
    _clean_attrs,
    _encode_time,
    _global_attrs,
    _Layout,
    _make_layout,
    _portable_numbers,
    _slabs,
    _var_attrs,
    encode_issue,
)

#: Zarr format of the stores (2: readable by every Zarr and xarray version; ``.zmetadata``).
ZARR_FORMAT = 2
_MARKERS = (".zgroup", ".zmetadata", "zarr.json")
_AUX_ATTRS = {
    LAT: {"standard_name": "latitude", "long_name": "latitude", "units": "degrees_north"},
    LON: {"standard_name": "longitude", "long_name": "longitude", "units": "degrees_east"},
}
_GRID_ATTRS = {
    LAT: {**_AUX_ATTRS[LAT], "axis": "Y"},
    LON: {**_AUX_ATTRS[LON], "axis": "X"},
    Y: {"axis": "Y"},
    X: {"axis": "X"},
}


def is_zarr_path(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` names a Zarr store: suffix ``.zarr`` or a folder with Zarr metadata."""
    p = Path(path)
    return p.suffix.lower() == ".zarr" or (p.is_dir() and any((p / m).exists() for m in _MARKERS))


def check_zarr_target(path: Path, overwrite: bool) -> None:
    """Refuse a missing/read-only parent folder, or an existing target without ``overwrite``.

    With ``overwrite`` only an existing Zarr store (or a file) is replaced, never another folder.
    """
    parent = path.parent
    if not parent.is_dir():
        raise ForecastError(f"output folder {parent} does not exist; create it or pick another")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ForecastError(f"output folder {parent} is not writable; pick another --out")
    if path.exists() or path.is_symlink():
        if not overwrite:
            raise ForecastError(
                f"output {path} exists; pass --overwrite (overwrite=True) to replace"
            )
        if path.is_dir() and not any((path / m).exists() for m in _MARKERS):
            raise ForecastError(
                f"output {path} is a folder that is not a Zarr store; refusing to replace it, "
                "pick another --out"
            )


def _space_file_dims(lay: _Layout) -> tuple[str, ...]:
    return (STATION,) if lay.sensors else lay.space


def _template(first: xr.Dataset, lay: _Layout, attrs: dict[str, Any]) -> tuple[xr.Dataset, dict]:
    """The store's metadata as a Dataset whose per-issue variables are unwritten dask arrays."""
    import dask.array as da

    n_lead = lay.leads_ns.size
    n_mem = lay.members.size
    space_file = _space_file_dims(lay)
    issue = () if lay.scalar else (FRT,)
    n0 = () if lay.scalar else (0,)
    t_units = f"{lay.time_unit} since {_EPOCH}"
    coords: dict[str, Any] = {
        REALIZATION: (
            REALIZATION,
            lay.members.astype(np.int32),
            {"standard_name": "realization", "long_name": "ensemble member number", "units": "1"},
        ),
        FP: (
            FP,
            _encode_time(lay.leads_ns, lay.lead_unit),
            {
                "standard_name": "forecast_period",
                "long_name": "forecast lead time",
                "units": lay.lead_unit,
            },
        ),
    }
    frt_attrs = {
        "standard_name": "forecast_reference_time",
        "long_name": "forecast reference time (issue time, last observed step)",
        "units": t_units,
        "calendar": "standard",
    }
    vt_attrs = {
        "standard_name": "time",
        "long_name": "valid time (forecast_reference_time + forecast_period)",
        "units": t_units,
        "calendar": "standard",
    }
    if lay.scalar:
        coords[FRT] = ((), np.float64(np.nan), frt_attrs)
        coords[VTIME] = ((FP,), np.full(n_lead, np.nan), vt_attrs)
    else:
        coords[FRT] = ((FRT,), np.zeros(0, dtype=np.float64), frt_attrs)
        coords[VTIME] = ((FRT, FP), np.zeros((0, n_lead), dtype=np.float64), vt_attrs)
    if lay.sensors:
        ids = np.asarray(first[NODE].values)
        ids = _portable_numbers(NODE, ids) if ids.dtype.kind in "iu" else ids.astype(str)
        coords[STATION_ID] = (
            (STATION,),
            ids,
            {
                "cf_role": "timeseries_id",
                "long_name": "sensor id",
                **_clean_attrs(first[NODE].attrs),
            },
        )
    else:
        for dim in lay.space:
            vals = np.asarray(first[dim].values)
            if vals.dtype.kind not in "iuf":
                raise ForecastError(f"grid coordinate {dim} must be numeric, got {vals.dtype}")
            coords[dim] = ((dim,), vals, {**_clean_attrs(first[dim].attrs), **_GRID_ATTRS[dim]})
    for name in lay.aux_names:
        c = first[name]
        vals = np.asarray(c.values)
        vals = vals.astype(str) if vals.dtype.kind in "USO" else _portable_numbers(name, vals)
        dims = tuple(_AUX_FILE_DIMS.get(d, d) for d in c.dims)
        caux = _clean_attrs(c.attrs)
        if name in _AUX_ATTRS:
            caux = {**_AUX_ATTRS[name], **caux}
        elif vals.dtype.kind != "U":
            caux.setdefault("long_name", name)
        coords[name] = (dims, vals, caux)
    shape = (*n0, n_mem, n_lead, *lay.space_sizes)
    chunk = (*((1,) * len(issue)), 1, n_lead, *lay.space_sizes)
    data, encoding = {}, {}
    for var in lay.variables:
        dtype = np.dtype(first[var].dtype)
        if dtype.kind != "f":
            dtype = np.dtype(np.float32)
        lazy = da.full(shape, np.nan, dtype=dtype, chunks=tuple(max(1, c) for c in chunk))
        dims = (*issue, REALIZATION, FP, *space_file)
        data[var] = (dims, lazy, _var_attrs(var, first[var].attrs))
        encoding[var] = {"chunks": chunk, "_FillValue": np.nan}
    for name in (FRT, VTIME):
        encoding[name] = {"_FillValue": None}
    ds = xr.Dataset(data, coords=coords, attrs=attrs)
    return ds, encoding


def to_zarr(
    ensemble: xr.Dataset | Iterable[xr.Dataset],
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
    institution: str | None = None,
    model: str | None = None,
    checkpoint_sha256: str | None = None,
    sampler: str | None = None,
    nfe: int | None = None,
    seed: int | None = None,
    references: str | None = None,
    history: str | None = None,
    overwrite: bool = False,
    progress: bool = False,
    total: int | None = None,
) -> Path:
    """Write an ensemble forecast as a Zarr store (CF names, consolidated metadata).

    Parameters
    ----------
    ensemble
        As for :func:`forecast.export.to_netcdf`: a standard ensemble Dataset (with or without
        an ``init_time`` dim; it may be dask-backed) or an iterable of one-issue-time
        ensembles, written one by one as they come.
    path
        Target store (a folder, by convention ``*.zarr``). Built in a hidden temporary folder
        beside it and renamed when complete.
    title, institution, model, checkpoint_sha256, sampler, nfe, seed, references, history
        Global attributes, as for :func:`forecast.export.to_netcdf`.
    overwrite
        Replace an existing store (never a folder that is not a Zarr store).
    progress, total
        tqdm bar over issue times; ``total`` sizes it for a generator.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ForecastError
        Bad ensemble (dims, coords, mismatching or unsorted issue times), missing or read-only
        folder, existing target without ``overwrite``.

    Notes
    -----
    Chunks: one member x one issue time x all lead times x the whole grid (or all sensors);
    ``forecast_reference_time`` and ``time`` grow by one issue time per slab. Data are stored
    as float32/float64 (as given) with NaN as fill value.

    Examples
    --------
    >>> to_zarr(ens, "forecast.zarr", institution="Met Lab")  # doctest: +SKIP
    >>> open_ensemble("forecast.zarr")  # doctest: +SKIP
    """
    import zarr

    path = Path(path)
    check_zarr_target(path, overwrite)
    slabs, n_issue, scalar, known = _slabs(ensemble)
    try:
        first = next(slabs)
    except StopIteration:
        raise ForecastError("no ensembles to export; pass at least one issue time") from None
    first = _as_slab(first, "the ensemble" if n_issue == 1 else "ensemble #0")
    lay = _make_layout(first, scalar, n_issue, known)
    meta = {
        "title": title,
        "institution": institution,
        "model": model,
        "checkpoint_sha256": checkpoint_sha256,
        "sampler": sampler,
        "nfe": nfe,
        "seed": seed,
        "references": references,
        "history": history or "forecast.export.to_zarr",
    }
    attrs = _global_attrs(first, lay, meta)
    template, encoding = _template(first, lay, attrs)

    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        template.to_zarr(
            tmp,
            mode="w",
            compute=False,
            consolidated=False,
            zarr_format=ZARR_FORMAT,
            encoding=encoding,
        )
        group = zarr.open_group(str(tmp), mode="r+", zarr_format=ZARR_FORMAT)
        order = (MEMBER, LEAD_TIME, *lay.space)
        for i, slab, t in _checked_slabs(first, slabs, lay, n_issue or total, progress):
            frt, times = encode_issue(t, lay)
            if lay.scalar:
                group[FRT][...] = frt
                group[VTIME][:] = times
            else:
                for name in (FRT, VTIME, *lay.variables):
                    arr = group[name]
                    arr.resize((i + 1, *arr.shape[1:]))
                group[FRT][i] = frt
                group[VTIME][i, :] = times
            for var in lay.variables:
                arr = group[var]
                da = slab[var].transpose(*order)
                for m in range(lay.members.size):
                    values = np.asarray(da.isel({MEMBER: m}).values, dtype=arr.dtype)
                    if lay.scalar:
                        arr[m] = values
                    else:
                        arr[i, m] = values
        zarr.consolidate_metadata(str(tmp), zarr_format=ZARR_FORMAT)
        _replace_dir(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return path


def _replace_dir(tmp: Path, path: Path) -> None:
    """Move the finished store ``tmp`` to ``path``, replacing an old store there."""
    os.chmod(tmp, umask_mode(directory=True))  # mkdtemp made it private
    if not path.exists() and not path.is_symlink():
        os.replace(tmp, path)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
    old.rmdir()
    os.replace(path, old)
    try:
        os.replace(tmp, path)
    except BaseException:
        os.replace(old, path)
        raise
    if old.is_dir():
        shutil.rmtree(old, ignore_errors=True)
    else:
        old.unlink(missing_ok=True)
