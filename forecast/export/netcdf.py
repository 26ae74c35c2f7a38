"""CF-1.8 ensemble NetCDF: the writer :func:`to_netcdf` and the reader :func:`open_ensemble`.

The file is written with ``netCDF4`` directly (no xarray encoding leaks onto coordinates), one
issue time at a time, to a temporary name beside the target that is renamed at the end. No torch.
See ``docs/netcdf.md`` for the layout.
"""

from __future__ import annotations

import datetime as _dt
import itertools
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from forecast import __version__
from forecast.dims import INIT_TIME, LAT, LEAD_TIME, LON, MEMBER, NODE, QUANTILE, VALID_TIME, X, Y
from forecast.dims import space_dims as _space_dims
from forecast.errors import ForecastError
from forecast.export.summary import (
    EXCEED,
    QUANT,
    QUANTILES,
    normalize_thresholds,
    summarize,
    threshold_dim,
)

# Names used inside the file (CF names; the in-memory names come from forecast.dims).
REALIZATION = "realization"
FRT = "forecast_reference_time"
FP = "forecast_period"
VTIME = "time"
STATION = "station"
STATION_ID = "station_id"
STRLEN = "name_strlen"
CONVENTIONS = "CF-1.8"
#: Variable attribute that keeps a units spelling the writer translated for UDUNITS.
ORIGINAL_UNITS = "original_units"

_EPOCH = "1970-01-01 00:00:00"
_EPOCH_NS = np.datetime64("1970-01-01T00:00:00", "ns")
_UNIT_NS = {"hours": 3_600_000_000_000, "minutes": 60_000_000_000, "seconds": 1_000_000_000}
_CALENDAR = "standard"

#: Common spellings that UDUNITS-2 reads as something else (``mph`` is milli-phot) or not at
#: all, and their UDUNITS spelling. The original spelling is kept in ``original_units``.
_UDUNITS = {
    "mph": "mile hour-1",
    "MPH": "mile hour-1",
    "kph": "km hour-1",
    "km/h": "km hour-1",
    "m/s": "m s-1",
    "mm/h": "mm hour-1",
    "mm/hr": "mm hour-1",
    "C": "degC",
}

_TEMPERATURE = {"K", "kelvin", "degC", "celsius", "degree_Celsius", "degrees_Celsius"}
_SPEED = {"m s-1", "km hour-1", "km h-1", "mile hour-1", "knot"}
_PRESSURE = {"Pa", "hPa", "kPa"}
#: Well-known variable names -> (CF standard name, long name, units the standard name accepts).
#: Only names with an unambiguous CF meaning; traffic ``speed`` has no standard name.
KNOWN_VARIABLES: dict[str, tuple[str, str, set[str]]] = {
    **{
        n: ("air_temperature", "2 metre air temperature", _TEMPERATURE)
        for n in ("t2m", "2t", "tas", "t2", "temperature_2m")
    },
    **{
        n: ("dew_point_temperature", "2 metre dew point temperature", _TEMPERATURE)
        for n in ("d2m", "2d", "tdps")
    },
    **{n: ("wind_speed", "10 metre wind speed", _SPEED) for n in ("si10", "ws10", "sfcWind")},
    **{n: ("eastward_wind", "10 metre eastward wind", _SPEED) for n in ("u10", "10u", "uas")},
    **{n: ("northward_wind", "10 metre northward wind", _SPEED) for n in ("v10", "10v", "vas")},
    **{n: ("surface_air_pressure", "surface pressure", _PRESSURE) for n in ("sp", "ps")},
    **{
        n: ("air_pressure_at_mean_sea_level", "mean sea level pressure", _PRESSURE)
        for n in ("msl", "psl")
    },
    "pr": ("precipitation_flux", "precipitation flux", {"kg m-2 s-1"}),
    "tp": ("lwe_thickness_of_precipitation_amount", "total precipitation", {"m", "mm"}),
    **{
        n: ("rainfall_rate", "rainfall rate", {"m s-1", "mm hour-1", "mm h-1", "mm s-1"})
        for n in ("rainfall_rate", "rain_rate")
    },
}

#: Attributes never copied from memory to the file (netCDF/xarray encoding, not metadata).
_RESERVED = {
    "_FillValue",
    "missing_value",
    "coordinates",
    "dtype",
    "scale_factor",
    "add_offset",
    "_Unsigned",
    "_Encoding",
    "calendar",
    "chunksizes",
    "zlib",
    "shuffle",
}


def check_target(path: Path, overwrite: bool) -> None:
    """Refuse a target whose folder is missing or read-only, or that exists (unless overwrite)."""
    parent = path.parent
    if not parent.is_dir():
        raise ForecastError(f"output folder {parent} does not exist; create it or pick another")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ForecastError(f"output folder {parent} is not writable; pick another --out")
    if path.is_dir():
        raise ForecastError(f"output {path} is a folder; pass a file name such as forecast.nc")
    if path.exists() and not overwrite:
        raise ForecastError(f"output {path} exists; pass --overwrite (overwrite=True) to replace")


def _attr_value(name: str, value: Any) -> Any:
    """A value netCDF can store as an attribute, or a ForecastError."""
    if isinstance(value, bool | np.bool_):
        return np.int8(value)
    if isinstance(value, int | np.integer) and abs(int(value)) < 2**31:
        return np.int32(value)  # CF-1.8 (netCDF classic types) has no 64-bit integers
    if isinstance(value, str | int | float | np.integer | np.floating):
        return value
    if isinstance(value, list | tuple | np.ndarray):
        arr = np.asarray(value)
        if arr.ndim == 1 and arr.size and arr.dtype.kind in "iuf":
            return arr
        if arr.ndim == 1 and arr.size and all(isinstance(v, str) for v in arr.tolist()):
            return " ".join(arr.tolist())
    raise ForecastError(
        f"attribute {name!r} = {value!r} cannot be stored in NetCDF; use a string or numbers"
    )


def _clean_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    return {
        str(k): _attr_value(str(k), v)
        for k, v in attrs.items()
        if k not in _RESERVED and v is not None
    }


def _time_unit(ns: np.ndarray, what: str) -> str:
    """Coarsest of hours/minutes/seconds in which every value of ``ns`` is a whole number."""
    ns = np.asarray(ns, dtype=np.int64)
    for unit, size in _UNIT_NS.items():
        if np.all(ns % size == 0):
            return unit
    raise ForecastError(f"{what} are not whole seconds; round them to seconds before export")


def _encode_time(ns: np.ndarray, unit: str) -> np.ndarray:
    return (np.asarray(ns, dtype=np.int64) // _UNIT_NS[unit]).astype(np.float64)


def _decode_time(values: np.ndarray, units: str) -> tuple[np.ndarray, bool]:
    """Numeric CF times -> int64 nanoseconds (since the reference, if any) and is-datetime."""
    m = re.fullmatch(r"\s*(\w+)\s*(?:since\s+(.+?))?\s*", units)
    if not m:
        raise ForecastError(f"time units {units!r} are not 'UNIT [since DATE]'")
    unit = {"hour": "hours", "minute": "minutes", "second": "seconds", "day": "days"}.get(
        m.group(1).rstrip("s"), m.group(1)
    )
    size = {**_UNIT_NS, "days": 86_400_000_000_000}.get(unit)
    if size is None:
        raise ForecastError(f"time unit {m.group(1)!r} not understood; use hours/minutes/seconds")
    values = np.asarray(values, dtype=np.float64)
    whole = np.floor(values)
    ns = whole.astype(np.int64) * size + np.rint((values - whole) * size).astype(np.int64)
    if m.group(2) is None:
        return ns, False
    ref = pd.Timestamp(m.group(2)).tz_localize(None).as_unit("ns").value
    return ns + ref, True


def encode_issue(init_time: Any, lay: _Layout) -> tuple[np.float64, np.ndarray]:
    """``forecast_reference_time`` and ``time`` (per lead) of one issue time, in the file's
    time unit; an issue time that is not a whole number of that unit is refused."""
    init_ns = int((np.datetime64(init_time, "ns") - _EPOCH_NS).astype(np.int64))
    unit = _UNIT_NS[lay.time_unit]
    if init_ns % unit:
        raise ForecastError(
            f"issue time {init_time} is not a whole number of {lay.time_unit} like the first "
            "one; pass all ensembles as one Dataset or a list"
        )
    return np.float64(init_ns // unit), _encode_time(init_ns + lay.leads_ns, lay.time_unit)


def _var_attrs(name: str, attrs: Mapping[str, Any]) -> dict[str, Any]:
    """File attributes of a forecast variable: units (UDUNITS), long_name, standard_name."""
    out = _clean_attrs(attrs)
    units = str(out.get("units", "1"))
    if units in _UDUNITS:
        out[ORIGINAL_UNITS] = units
        units = _UDUNITS[units]
    out["units"] = units
    known = KNOWN_VARIABLES.get(name)
    if "standard_name" not in out and known and units in known[2]:
        out["standard_name"] = known[0]
    if "long_name" not in out:
        out["long_name"] = known[1] if known else name
    return out


def _is_dataset_with_issue_dim(obj: Any) -> bool:
    return isinstance(obj, xr.Dataset) and INIT_TIME in obj.dims


@dataclass
class _Layout:
    """Geometry fixed by the first slab; every later slab must match it."""

    variables: list[str]
    space: tuple[str, ...]
    space_sizes: tuple[int, ...]
    members: np.ndarray
    leads_ns: np.ndarray
    lead_unit: str
    time_unit: str
    scalar: bool
    n_issue: int | None
    space_coords: dict[str, xr.DataArray]
    aux_names: list[str] = field(default_factory=list)
    thresholds: dict[str, np.ndarray] = field(default_factory=dict)
    quantiles: np.ndarray = field(default_factory=lambda: np.asarray(QUANTILES))
    summary: bool = False

    @property
    def sensors(self) -> bool:
        return self.space == (NODE,)


def _as_slab(ds: Any, where: str) -> xr.Dataset:
    """Check one issue time's ensemble: dims (member, lead_time, *space), scalar init_time."""
    if not isinstance(ds, xr.Dataset):
        raise ForecastError(f"{where} is a {type(ds).__name__}; pass xarray ensemble Datasets")
    if INIT_TIME not in ds.coords or ds[INIT_TIME].ndim != 0:
        raise ForecastError(f"{where} has no scalar {INIT_TIME} coordinate; set the issue time")
    space = _space_dims(ds)
    want = {MEMBER, LEAD_TIME, *space}
    if not ds.data_vars:
        raise ForecastError(f"{where} has no data variables; pass an ensemble forecast")
    for var in ds.data_vars:
        if set(ds[var].dims) != want:
            raise ForecastError(
                f"{where}: variable {var} has dims {ds[var].dims}, expected "
                f"{(MEMBER, LEAD_TIME, *space)}; drop or reshape it before export"
            )
    for dim in want:
        if dim not in ds.coords:
            raise ForecastError(f"{where} has no {dim!r} coordinate; assign it before export")
    if ds[LEAD_TIME].dtype.kind != "m":
        raise ForecastError(f"{where}: {LEAD_TIME} must be timedelta64, got {ds[LEAD_TIME].dtype}")
    if VALID_TIME in ds.coords:
        expect = ds[INIT_TIME].values + ds[LEAD_TIME].values
        if not np.array_equal(
            ds[VALID_TIME].values.astype("datetime64[ns]"), expect.astype("datetime64[ns]")
        ):
            raise ForecastError(
                f"{where}: {VALID_TIME} != {INIT_TIME} + {LEAD_TIME}; fix the coords"
            )
    return ds


def _aux_coords(ds: xr.Dataset, space: tuple[str, ...], where: str) -> list[str]:
    """Non-dimension coords to write beside the space dims (lat/lon per station, node info) or
    the members (e.g. ``source_model``, the model that drew each member of a pool)."""
    names = []
    for name, coord in ds.coords.items():
        if name in (INIT_TIME, VALID_TIME, MEMBER, LEAD_TIME, *space):
            continue
        if coord.dims and (set(coord.dims) <= set(space) or coord.dims == (MEMBER,)):
            names.append(str(name))
        else:
            raise ForecastError(
                f"{where}: coordinate {name!r} over {coord.dims} cannot be exported; drop it "
                "(only coordinates over the space dims or the members are written)"
            )
    return names


def _member_aux(lay: _Layout, first: xr.Dataset) -> list[str]:
    """The auxiliary coordinates over the members (not attached to summary variables)."""
    return [n for n in lay.aux_names if first[n].dims == (MEMBER,)]


#: In-memory dims -> file dims of auxiliary coordinates.
_AUX_FILE_DIMS = {NODE: STATION, MEMBER: REALIZATION}


def _slabs(ensemble: Any) -> tuple[Iterator[xr.Dataset], int | None, bool, np.ndarray | None]:
    """(slab iterator, number of issue times or None, scalar layout?, known init times in ns)."""
    if isinstance(ensemble, xr.Dataset):
        if _is_dataset_with_issue_dim(ensemble):
            n = ensemble.sizes[INIT_TIME]
            times = ensemble[INIT_TIME].values.astype("datetime64[ns]")
            return (ensemble.isel({INIT_TIME: i}) for i in range(n)), n, False, times
        return iter([ensemble]), 1, True, None
    if isinstance(ensemble, Sequence):
        items = list(ensemble)
        times = []
        for k, item in enumerate(items):
            _as_slab(item, f"ensemble #{k}")
            times.append(np.datetime64(item[INIT_TIME].values, "ns"))
        return iter(items), len(items), False, np.asarray(times, dtype="datetime64[ns]")
    if isinstance(ensemble, Iterable):
        return iter(ensemble), None, False, None
    raise ForecastError(
        f"cannot export a {type(ensemble).__name__}; pass an ensemble Dataset or an iterable "
        "of them"
    )


def _make_layout(
    first: xr.Dataset, scalar: bool, n_issue: int | None, known_times: np.ndarray | None
) -> _Layout:
    space = _space_dims(first)
    if not space:
        raise ForecastError("the ensemble has no space dims (lat/lon, y/x or node); cannot export")
    leads = first[LEAD_TIME].values.astype("timedelta64[ns]").astype(np.int64)
    if np.any(np.diff(leads) <= 0):
        raise ForecastError(f"{LEAD_TIME} must increase strictly; sort the ensemble by lead time")
    lead_unit = _time_unit(leads, "lead times")
    init_ns = (
        np.atleast_1d(known_times if known_times is not None else first[INIT_TIME].values).astype(
            "datetime64[ns]"
        )
        - _EPOCH_NS
    ).astype(np.int64)
    time_unit = _time_unit(np.concatenate([init_ns, leads]), "issue times and lead times")
    members = first[MEMBER].values
    if members.dtype.kind not in "iu" or np.any(np.diff(members) <= 0):
        raise ForecastError(f"{MEMBER} must be increasing integers; use member = 0..M-1")
    if known_times is not None and np.any(np.diff(known_times.astype(np.int64)) <= 0):
        raise ForecastError(f"{INIT_TIME} must increase strictly; sort the issue times")
    return _Layout(
        variables=[str(v) for v in first.data_vars],
        space=space,
        space_sizes=tuple(first.sizes[d] for d in space),
        members=members,
        leads_ns=leads,
        lead_unit=lead_unit,
        time_unit=time_unit,
        scalar=scalar,
        n_issue=n_issue,
        space_coords={d: first[d] for d in space},
        aux_names=_aux_coords(first, space, "the ensemble"),
    )


def _global_attrs(first: xr.Dataset, layout: _Layout, meta: Mapping[str, Any]) -> dict[str, Any]:
    attrs = _clean_attrs(first.attrs)
    now = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    hist = f"{now}: {meta.get('history') or 'forecast.export.to_netcdf'} (forecast {__version__})"
    if attrs.get("history"):
        hist = f"{hist}\n{attrs['history']}"
    source = [f"forecast {__version__}"]
    if meta.get("model"):
        source.append(f"model {meta['model']}")
    if meta.get("checkpoint_sha256"):
        source.append(f"checkpoint sha256 {meta['checkpoint_sha256']}")
    kind = "sensor network" if layout.sensors else "grid"
    attrs.update(
        Conventions=CONVENTIONS,
        title=meta.get("title")
        or attrs.get("title")
        or f"Ensemble forecast of {', '.join(layout.variables)} ({kind})",
        institution=meta.get("institution") or attrs.get("institution") or "unspecified",
        source="; ".join(source),
        history=hist,
        references=meta.get("references")
        or attrs.get("references")
        or "CF conventions 1.8 (https://cfconventions.org); forecast docs/netcdf.md",
        ensemble_size=np.int32(layout.members.size),
    )
    for key in ("model", "checkpoint_sha256", "sampler", "nfe", "seed"):
        if meta.get(key) is not None:
            attrs[key] = _attr_value(key, meta[key])
    if layout.sensors:
        attrs["featureType"] = "timeSeries"
    return attrs


class _Writer:
    """Creates the variables of one file and writes slabs into them."""

    def __init__(self, nc: Any, layout: _Layout, compress: bool, complevel: int) -> None:
        self.nc, self.lay = nc, layout
        self.comp = {"zlib": True, "shuffle": True, "complevel": complevel} if compress else {}
        self.space_file = (STATION,) if layout.sensors else layout.space
        self.fills: dict[str, Any] = {}

    # -- structure -----------------------------------------------------------------------
    def create(self, first: xr.Dataset, attrs: Mapping[str, Any]) -> None:
        nc, lay = self.nc, self.lay
        nc.setncatts(dict(attrs))
        n_lead = lay.leads_ns.size
        nc.createDimension(REALIZATION, lay.members.size)
        if not lay.scalar:
            nc.createDimension(FRT, lay.n_issue)
        nc.createDimension(FP, n_lead)
        for dim, size in zip(self.space_file, lay.space_sizes, strict=True):
            nc.createDimension(dim, size)

        v = nc.createVariable(REALIZATION, "i4", (REALIZATION,), fill_value=False)
        v.setncatts(
            {"standard_name": "realization", "long_name": "ensemble member number", "units": "1"}
        )
        v[:] = lay.members.astype(np.int32)

        t_units = f"{lay.time_unit} since {_EPOCH}"
        v = nc.createVariable(FRT, "f8", () if lay.scalar else (FRT,), fill_value=False)
        v.setncatts(
            {
                "standard_name": "forecast_reference_time",
                "long_name": "forecast reference time (issue time, last observed step)",
                "units": t_units,
                "calendar": _CALENDAR,
            }
        )
        v = nc.createVariable(FP, "f8", (FP,), fill_value=False)
        v.setncatts(
            {
                "standard_name": "forecast_period",
                "long_name": "forecast lead time",
                "units": lay.lead_unit,
            }
        )
        v[:] = _encode_time(lay.leads_ns, lay.lead_unit)
        tdims = (FP,) if lay.scalar else (FRT, FP)
        v = nc.createVariable(
            VTIME, "f8", tdims, fill_value=False, chunksizes=None if lay.scalar else (1, n_lead)
        )
        v.setncatts(
            {
                "standard_name": "time",
                "long_name": "valid time (forecast_reference_time + forecast_period)",
                "units": t_units,
                "calendar": _CALENDAR,
            }
        )

        if lay.sensors:
            self._create_stations(first)
        else:
            self._create_grid(first)
        common = ([FRT] if lay.scalar else []) + [VTIME] + ([STATION_ID] if lay.sensors else [])
        coords = " ".join(common + self._aux_file_names())
        # issue time first: it is the record (unlimited) dim of streamed files, and the
        # in-memory order (init_time, member, lead_time, *space), so reading needs no transpose
        base = (() if lay.scalar else (FRT,)) + (REALIZATION, FP, *self.space_file)
        chunk = (() if lay.scalar else (1,)) + (1, n_lead, *lay.space_sizes)
        for var in lay.variables:
            self._create_data(var, base, chunk, first[var], coords)
        if lay.summary:  # no members there: no coordinates over the members either
            member_aux = _member_aux(lay, first)
            names = [n for n in self._aux_file_names() if n not in member_aux]
            self._create_summary(first, " ".join(common + names), n_lead)

    def _aux_file_names(self) -> list[str]:
        return list(self.lay.aux_names)

    def _create_grid(self, first: xr.Dataset) -> None:
        defaults = {
            LAT: {
                "standard_name": "latitude",
                "long_name": "latitude",
                "units": "degrees_north",
                "axis": "Y",
            },
            LON: {
                "standard_name": "longitude",
                "long_name": "longitude",
                "units": "degrees_east",
                "axis": "X",
            },
            Y: {"axis": "Y"},
            X: {"axis": "X"},
        }
        for dim in self.lay.space:
            coord = first[dim]
            vals = np.asarray(coord.values)
            if vals.dtype.kind not in "iuf":
                raise ForecastError(f"grid coordinate {dim} must be numeric, got {vals.dtype}")
            d = np.diff(vals)
            if vals.size > 1 and not (np.all(d > 0) or np.all(d < 0)):
                raise ForecastError(f"grid coordinate {dim} must be strictly monotonic")
            v = self.nc.createVariable(dim, vals.dtype, (dim,), fill_value=False)
            v.setncatts({**_clean_attrs(coord.attrs), **defaults[dim]})
            v[:] = vals
        for name in self.lay.aux_names:
            self._create_aux(name, first[name], tuple(first[name].dims))

    def _create_aux(self, name: str, coord: xr.DataArray, dims: tuple[str, ...]) -> None:
        file_dims = tuple(_AUX_FILE_DIMS.get(d, d) for d in dims)
        vals = np.asarray(coord.values)
        attrs = _clean_attrs(coord.attrs)
        if name == LAT:
            attrs = {
                "standard_name": "latitude",
                "long_name": "latitude",
                "units": "degrees_north",
                **attrs,
            }
        elif name == LON:
            attrs = {
                "standard_name": "longitude",
                "long_name": "longitude",
                "units": "degrees_east",
                **attrs,
            }
        if vals.dtype.kind in "US" or vals.dtype == object:
            raw = np.char.encode(vals.astype(str), "utf-8")
            width = max(1, int(raw.dtype.itemsize))
            dim = f"{name}_strlen"
            self.nc.createDimension(dim, width)
            v = self.nc.createVariable(name, "S1", (*file_dims, dim), fill_value=False)
            v.setncatts(attrs)
            v[:] = _to_char(raw, width)
            return
        attrs.setdefault("long_name", name)
        vals = _portable_numbers(name, vals)
        v = self.nc.createVariable(name, vals.dtype, file_dims, fill_value=False)
        v.setncatts(attrs)
        v[:] = vals

    def _create_stations(self, first: xr.Dataset) -> None:
        ids = np.asarray(first[NODE].values)
        attrs = {
            "cf_role": "timeseries_id",
            "long_name": "sensor id",
            **_clean_attrs(first[NODE].attrs),
        }
        if ids.dtype.kind in "iu":
            ids = _portable_numbers(NODE, ids)
            v = self.nc.createVariable(STATION_ID, ids.dtype, (STATION,), fill_value=False)
            v.setncatts(attrs)
            v[:] = ids
        else:
            raw = np.char.encode(ids.astype(str), "utf-8")
            width = max(1, int(raw.dtype.itemsize))
            self.nc.createDimension(STRLEN, width)
            v = self.nc.createVariable(STATION_ID, "S1", (STATION, STRLEN), fill_value=False)
            v.setncatts(attrs)
            v[:] = _to_char(raw, width)
        for name in self.lay.aux_names:
            self._create_aux(name, first[name], tuple(first[name].dims))

    def _create_data(
        self,
        name: str,
        dims: tuple[str, ...],
        chunk: tuple[int, ...],
        da: xr.DataArray,
        coords: str,
        attrs: Mapping[str, Any] | None = None,
        dtype: Any = None,
    ) -> None:
        import netCDF4

        dtype = np.dtype(dtype or da.dtype)
        if dtype.kind not in "f":
            dtype = np.dtype(np.float32)
        fill = netCDF4.default_fillvals[dtype.str[1:]]
        v = self.nc.createVariable(
            name, dtype, dims, fill_value=fill, chunksizes=chunk, **self.comp
        )
        v.setncatts(
            {**(_var_attrs(name, da.attrs) if attrs is None else attrs), "coordinates": coords}
        )
        self.fills[name] = dtype

    def _create_summary(self, first: xr.Dataset, coords: str, n_lead: int) -> None:
        lay = self.lay
        issue = () if lay.scalar else (FRT,)
        one = (1,) * len(issue)

        def dims(extra: tuple[str, ...] = ()) -> tuple[str, ...]:
            return (*issue, *extra, FP, *self.space_file)

        base = dims()
        chunk = (*one, n_lead, *lay.space_sizes)
        chunk1 = (*one, 1, n_lead, *lay.space_sizes)
        if lay.quantiles.size:
            self.nc.createDimension(QUANTILE, lay.quantiles.size)
            v = self.nc.createVariable(QUANTILE, "f8", (QUANTILE,), fill_value=False)
            v.setncatts({"long_name": "quantile level of the ensemble distribution", "units": "1"})
            v[:] = lay.quantiles
        for var in lay.variables:
            da = first[var]
            base_attrs = _var_attrs(var, da.attrs)
            keep = {
                k: base_attrs[k]
                for k in ("units", ORIGINAL_UNITS, "standard_name")
                if k in base_attrs
            }
            long = base_attrs["long_name"]
            self._create_data(
                f"{var}_mean",
                base,
                chunk,
                da,
                coords,
                {
                    **keep,
                    "long_name": f"ensemble mean of {long}",
                    "cell_methods": "realization: mean",
                },
            )
            self._create_data(
                f"{var}_std",
                base,
                chunk,
                da,
                coords,
                {
                    **keep,
                    "long_name": f"ensemble standard deviation of {long}",
                    "cell_methods": "realization: standard_deviation",
                },
            )
            if lay.quantiles.size:
                self._create_data(
                    var + QUANT,
                    dims((QUANTILE,)),
                    chunk1,
                    da,
                    coords,
                    {**keep, "long_name": f"ensemble quantiles of {long}"},
                )
            if var in lay.thresholds:
                tdim = threshold_dim(var)
                levels = lay.thresholds[var]
                self.nc.createDimension(tdim, levels.size)
                t = self.nc.createVariable(tdim, "f8", (tdim,), fill_value=False)
                t.setncatts({**keep, "long_name": f"threshold of {long}"})
                t[:] = levels
                self._create_data(
                    var + EXCEED,
                    dims((tdim,)),
                    chunk1,
                    da,
                    coords,
                    {
                        "units": "1",
                        "long_name": f"probability that {long} exceeds the threshold"
                        " (fraction of members above it)",
                    },
                    dtype=np.float32,
                )

    # -- data ----------------------------------------------------------------------------
    def write(self, i: int, slab: xr.Dataset) -> None:
        lay, nc = self.lay, self.nc
        frt, times = encode_issue(slab[INIT_TIME].values, lay)
        if lay.scalar:
            nc[FRT].assignValue(frt)
            nc[VTIME][:] = times
        else:
            nc[FRT][i] = frt
            nc[VTIME][i, :] = times
        order = (MEMBER, LEAD_TIME, *lay.space)
        for var in lay.variables:
            values = slab[var].transpose(*order).values
            self._put(var, i, values)
        if lay.summary:
            summ = summarize(
                slab[lay.variables], quantiles=lay.quantiles, thresholds=lay.thresholds or None
            )
            for name in summ.data_vars:
                da = summ[name]
                extra = [d for d in da.dims if d not in (LEAD_TIME, *lay.space)]
                values = da.transpose(*extra, LEAD_TIME, *lay.space).values
                self._put(str(name), i, values)

    def _put(self, name: str, i: int, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=self.fills[name])
        if np.isnan(values).any():
            values = np.ma.masked_invalid(values)
        var = self.nc[name]
        if self.lay.scalar:
            var[...] = values
        else:
            var[i, ...] = values


def _portable_numbers(name: str, vals: np.ndarray) -> np.ndarray:
    """Numbers in a CF-1.8 type: 64-bit integers become int32 where they fit (CF-1.8 has no
    int64); booleans int8."""
    if vals.dtype.kind == "b":
        return vals.astype(np.int8)
    if vals.dtype.kind in "iu":
        info = np.iinfo(np.int32)
        if vals.size and (vals.min() < info.min or vals.max() > info.max):
            raise ForecastError(
                f"coordinate {name} holds integers beyond int32; store them as text"
            )
        return vals.astype(np.int32)
    if vals.dtype.kind == "f":
        return vals
    raise ForecastError(f"coordinate {name} of dtype {vals.dtype} cannot be exported")


def _to_char(raw: np.ndarray, width: int) -> np.ndarray:
    """Fixed-width bytes array -> char array with a trailing ``width`` axis."""
    fixed = np.asarray(raw, dtype=f"S{width}")
    return fixed.view("S1").reshape((*fixed.shape, width))


def _checked_slabs(
    first: xr.Dataset, rest: Iterable[Any], lay: _Layout, total: int | None, progress: bool
) -> Iterator[tuple[int, xr.Dataset, np.datetime64]]:
    """``(index, slab, issue time)`` for ``first`` then ``rest``, each checked against ``first``
    and in increasing issue time, under a progress bar."""
    from tqdm.auto import tqdm

    prev = None
    bar = tqdm(
        itertools.chain([first], rest),
        total=total,
        desc="writing issue times",
        unit="issue",
        disable=not progress,
    )
    for i, slab in enumerate(bar):
        where = f"ensemble #{i}"
        if i:
            slab = _as_slab(slab, where)
            _check_slab(slab, first, lay, where)
        t = np.datetime64(slab[INIT_TIME].values, "ns")
        if prev is not None and t <= prev:
            raise ForecastError(
                f"{where}: issue time {t} is not after {prev}; pass issue times in increasing order"
            )
        prev = t
        yield i, slab, t


def _check_slab(slab: xr.Dataset, first: xr.Dataset, lay: _Layout, where: str) -> None:
    if [str(v) for v in slab.data_vars] != lay.variables:
        raise ForecastError(
            f"{where} has variables {list(slab.data_vars)}, the first had {lay.variables}"
        )
    if tuple(slab.sizes[d] for d in lay.space) != lay.space_sizes or _space_dims(slab) != lay.space:
        raise ForecastError(f"{where} has another grid or sensor set than the first ensemble")
    if not np.array_equal(slab[MEMBER].values, lay.members):
        raise ForecastError(f"{where} has other members than the first ensemble")
    leads = slab[LEAD_TIME].values.astype("timedelta64[ns]").astype(np.int64)
    if not np.array_equal(leads, lay.leads_ns):
        raise ForecastError(f"{where} has other lead times than the first ensemble")
    for d in lay.space:
        if not np.array_equal(slab[d].values, first[d].values):
            raise ForecastError(f"{where} has other {d} coordinates than the first ensemble")
    for name in _member_aux(lay, first):  # written once, over the realization dim
        if name not in slab.coords or not np.array_equal(slab[name].values, first[name].values):
            raise ForecastError(
                f"{where} has another {name!r} coordinate than the first ensemble; it is written "
                "once for all issue times, so give every issue time the same one"
            )


def to_netcdf(
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
    summary: bool = False,
    quantiles: Sequence[float] = QUANTILES,
    thresholds: Mapping[str, Sequence[float]] | Sequence[float] | None = None,
    compress: bool = True,
    complevel: int = 4,
    overwrite: bool = False,
    progress: bool = False,
    total: int | None = None,
) -> Path:
    """Write an ensemble forecast as a CF-1.8 NetCDF-4 file.

    Parameters
    ----------
    ensemble
        A standard ensemble Dataset with dims ``(init_time, member, lead_time, *space)`` or
        ``(member, lead_time, *space)`` and a scalar ``init_time``; or an iterable (list,
        generator) of one-issue-time ensembles, written one by one as they come, so memory
        holds one issue time at a time. ``space`` is ``(lat, lon)``, ``(y, x)`` or ``(node,)``.
    path
        Target file. Written to a hidden temporary file beside it and renamed when complete,
        so an interrupted export never leaves a file at ``path``.
    title, institution, references, history
        Global attributes (defaults: from the ensemble's attrs, else generic text).
    model, checkpoint_sha256
        Written into ``source`` and as attributes of their own.
    sampler, nfe, seed
        Sampling settings, written as global attributes where given.
    summary
        Also write ``v_mean``, ``v_std``, ``v_quantile`` (``quantiles``) and, when
        ``thresholds`` are given, ``v_exceedance`` for every variable ``v``.
    quantiles, thresholds
        See :func:`forecast.export.summarize`.
    compress, complevel
        zlib compression with shuffle at this level (1-9).
    overwrite
        Replace an existing file at ``path``.
    progress, total
        Show a tqdm bar over issue times; ``total`` sizes it for a generator.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ForecastError
        Bad ensemble (dims, coords, mismatching issue times), missing or read-only folder,
        existing file without ``overwrite``.

    Examples
    --------
    >>> to_netcdf(ens, "forecast.nc", institution="Met Lab", summary=True)  # doctest: +SKIP
    """
    import netCDF4

    from forecast.checkpoint import atomic_path, publish

    path = Path(path)
    check_target(path, overwrite)
    if not 1 <= int(complevel) <= 9:
        raise ForecastError(f"complevel must be 1..9, got {complevel}")
    slabs, n_issue, scalar, known = _slabs(ensemble)
    try:
        first = next(slabs)
    except StopIteration:
        raise ForecastError("no ensembles to export; pass at least one issue time") from None
    first = _as_slab(first, "the ensemble" if n_issue == 1 else "ensemble #0")
    lay = _make_layout(first, scalar, n_issue, known)
    lay.summary = bool(summary)
    if summary:
        lay.quantiles = np.asarray(quantiles, dtype=np.float64).ravel()
        lay.thresholds = normalize_thresholds(thresholds, lay.variables)
        summarize(
            first.isel({MEMBER: slice(0, 1), LEAD_TIME: slice(0, 1)})[lay.variables],
            quantiles=lay.quantiles,
            thresholds=lay.thresholds,
        )  # validates the levels
    elif thresholds is not None:
        raise ForecastError("thresholds are only written with summary=True (--summary)")
    meta = {
        "title": title,
        "institution": institution,
        "model": model,
        "checkpoint_sha256": checkpoint_sha256,
        "sampler": sampler,
        "nfe": nfe,
        "seed": seed,
        "references": references,
        "history": history,
    }
    attrs = _global_attrs(first, lay, meta)

    tmp = atomic_path(path)
    try:
        with netCDF4.Dataset(tmp, "w", format="NETCDF4") as nc:
            writer = _Writer(nc, lay, compress, int(complevel))
            writer.create(first, attrs)
            for i, slab, _ in _checked_slabs(first, slabs, lay, n_issue or total, progress):
                writer.write(i, slab)
        publish(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


#: In-memory dim names -> names inside the file / store (for ``chunks=``).
_FILE_DIMS = {INIT_TIME: FRT, MEMBER: REALIZATION, LEAD_TIME: FP, NODE: STATION}


def _file_chunks(chunks: Any, path: Path) -> Any:
    """``chunks`` in the standard dim names -> the names inside the file."""
    if chunks is None or chunks == "auto" or isinstance(chunks, int):
        return chunks
    if not isinstance(chunks, Mapping):
        raise ForecastError(
            f"chunks={chunks!r} is not understood; give {{dim: size}} (e.g. {{'init_time': 1}}), "
            "an integer, 'auto' or {} (the file's chunks)"
        )
    allowed = (INIT_TIME, MEMBER, LEAD_TIME, LAT, LON, Y, X, NODE)
    bad = [str(d) for d in chunks if d not in allowed]
    if bad:
        raise ForecastError(
            f"chunks for {path.name} name dimension '{bad[0]}'; use the ensemble's dims "
            f"({', '.join(allowed)})"
        )
    return {_FILE_DIMS.get(d, d): v for d, v in chunks.items()}


def open_ensemble(
    path: str | os.PathLike[str], *, summary: bool = False, chunks: Any = None
) -> xr.Dataset:
    """Read a file written by :func:`to_netcdf` (or a store of ``to_zarr``) as the ensemble.

    Parameters
    ----------
    path
        A CF ensemble NetCDF file, or a Zarr store written by :func:`forecast.export.to_zarr`
        (suffix ``.zarr`` or a folder with Zarr metadata).
    summary
        Also return the summary variables (``v_mean``, ``v_std``, ``v_quantile``,
        ``v_exceedance``) where the file has them.
    chunks
        Open the data as dask arrays with these chunks, in the ensemble's dim names (e.g.
        ``{"init_time": 1}``: one issue time per chunk, every member), an int, ``"auto"`` or
        ``{}`` (the file's own chunks). Default: NetCDF lazily without dask (read on first
        access), Zarr with dask in the store's chunks (one member x one issue time).

    Returns
    -------
    xarray.Dataset
        Dims ``(init_time, member, lead_time, *space)`` (or ``(member, lead_time, *space)``
        with a scalar ``init_time`` when the file holds one issue time as a scalar coordinate);
        coords ``member``, ``lead_time`` (timedelta64[ns]), ``init_time`` and ``valid_time``
        (datetime64[ns]), the grid or ``node`` coords; data in physical units, missing values as
        NaN, loaded lazily. Global attributes as in the file.
    """
    from forecast.export.zarr_store import is_zarr_path

    path = Path(path)
    file_chunks = _file_chunks(chunks, path)
    if is_zarr_path(path):
        if not path.is_dir():
            raise ForecastError(f"{path} not found; pass a Zarr store written by forecast predict")
        try:
            ds = xr.open_zarr(
                path,
                decode_times=False,
                decode_timedelta=False,
                mask_and_scale=True,
                consolidated=None,
                chunks={} if file_chunks is None else file_chunks,
            )
        except (OSError, ValueError, KeyError) as err:
            raise ForecastError(f"{path} is not a readable Zarr store ({err})") from None
    else:
        if not path.is_file():
            raise ForecastError(f"{path} not found; pass a NetCDF file written by forecast predict")
        try:
            ds = xr.open_dataset(
                path,
                engine="netcdf4",
                decode_times=False,
                decode_timedelta=False,
                mask_and_scale=True,
                chunks=file_chunks,
            )
        except (OSError, ValueError) as err:
            raise ForecastError(f"{path} is not a readable NetCDF file ({err})") from None
    if REALIZATION not in ds.dims or FP not in ds.variables or FRT not in ds.variables:
        ds.close()
        raise ForecastError(
            f"{path} is not an ensemble file (needs {REALIZATION}, {FRT} and {FP}); write it "
            "with forecast predict or forecast.export.to_netcdf"
        )
    scalar = FRT not in ds.dims
    members = [str(v) for v in ds.data_vars if REALIZATION in ds[v].dims]
    keep = list(members)
    if summary:
        keep += [str(v) for v in ds.data_vars if REALIZATION not in ds[v].dims and FP in ds[v].dims]
    frt_ns, _ = _decode_time(ds[FRT].values, ds[FRT].attrs["units"])
    fp_ns, _ = _decode_time(ds[FP].values, ds[FP].attrs["units"])
    vt_ns, _ = _decode_time(ds[VTIME].values, ds[VTIME].attrs["units"])
    rename = {REALIZATION: MEMBER, FP: LEAD_TIME}
    if not scalar:
        rename[FRT] = INIT_TIME
    sensors = STATION in ds.dims
    if sensors:
        rename[STATION] = NODE
    out = ds[keep].drop_vars(
        [c for c in ds.coords if c not in (*ds.dims, *_space_vars(ds, sensors))], errors="ignore"
    )
    out = out.drop_vars([FRT, FP, REALIZATION, VTIME], errors="ignore").rename(rename)
    init = frt_ns.astype("datetime64[ns]")
    lead = fp_ns.astype("timedelta64[ns]")
    valid = vt_ns.astype("datetime64[ns]")
    coords: dict[str, Any] = {
        MEMBER: (MEMBER, ds[REALIZATION].values.astype(np.int64)),
        LEAD_TIME: (LEAD_TIME, lead),
    }
    if scalar:
        coords[INIT_TIME] = init.reshape(())
        coords[VALID_TIME] = (LEAD_TIME, valid)
    else:
        coords[INIT_TIME] = (INIT_TIME, init)
        coords[VALID_TIME] = ((INIT_TIME, LEAD_TIME), valid)
    if sensors:
        ids = ds[STATION_ID].values
        if ids.dtype.kind == "S":
            ids = np.array([b.decode("utf-8") for b in ids.tolist()], dtype=object)
        elif ids.dtype.kind == "U":
            ids = ids.astype(object)
        elif ids.dtype.kind in "iu":
            ids = ids.astype(np.int64)
        coords[NODE] = (NODE, ids)
    out = out.assign_coords(coords)
    for name in list(out.coords):
        if out[name].dtype.kind in "iu" and name not in (MEMBER,):
            out = out.assign_coords({name: out[name].astype(np.int64)})
        if out[name].dtype.kind == "U" and name not in out.dims:
            out = out.assign_coords({name: out[name].astype(object)})
        if out[name].dtype.kind == "S":
            out = out.assign_coords(
                {
                    name: (
                        out[name].dims,
                        np.array(
                            [b.decode("utf-8") for b in out[name].values.ravel().tolist()],
                            dtype=object,
                        ).reshape(out[name].shape),
                        out[name].attrs,
                    )
                }
            )
    for name in out.data_vars:
        attrs = dict(out[name].attrs)
        if ORIGINAL_UNITS in attrs:
            attrs["units"] = attrs.pop(ORIGINAL_UNITS)
        out[name].attrs = attrs
    for name in (INIT_TIME, LEAD_TIME, VALID_TIME, MEMBER):
        out[name].attrs = {}
    space = _space_dims(out)
    issue = () if scalar else (INIT_TIME,)
    for name in out.data_vars:  # files of to_netcdf are in this order already (no-op)
        dims = out[name].dims
        extra = [d for d in dims if d not in (*issue, MEMBER, LEAD_TIME, *space)]
        order = (*issue, *extra, *[d for d in (MEMBER, LEAD_TIME) if d in dims], *space)
        if dims != order:
            out[name] = out[name].transpose(*order)
    out.attrs = dict(ds.attrs)
    return out


def _space_vars(ds: xr.Dataset, sensors: bool) -> list[str]:
    """Coordinates to keep: of the space dims (lat/lon per station, station info) and of the
    members (e.g. ``source_model``)."""
    members = [str(c) for c in ds.coords if ds[c].dims == (REALIZATION,) and c != REALIZATION]
    if not sensors:
        space = {LAT, LON, Y, X}
        return [str(c) for c in ds.coords if set(ds[c].dims) <= space and ds[c].dims] + members
    return [
        str(c) for c in ds.coords if ds[c].dims and ds[c].dims[0] == STATION and c != STATION_ID
    ] + members
