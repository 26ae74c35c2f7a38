"""On-disk cache of the generated data sets, so a fresh dashboard opens its default at once.

Generating ``synthetic-weather`` takes 1.5-3 s on a 2-core machine (2400 sequential model
steps); reading it back from an uncompressed ``.npz`` takes a few tens of milliseconds. The
cache holds exactly what :func:`forecast.data.open_dataset` returns (values, dtypes, coordinates,
attributes, the time index's frequency): a file is kept only after it has been read back and
found identical, and its name carries a key of everything that could change the result:

- the data set's name and seed;
- a hash of the source of every module of ``forecast.data`` (the generators, the catalog and the
  standardization) and of ``forecast.dims``, so any code change invalidates the cache;
- the numpy, pandas and xarray versions, and this file's format number.

Files are written to a temporary name in the cache folder and renamed (atomic on POSIX), so
concurrent processes never read a partial file; a damaged file is regenerated. The folder is
``$FORECAST_CACHE_DIR`` when set (``off`` turns the cache off), else
``$XDG_CACHE_HOME/forecast``, else ``~/.cache/forecast``. Only arrays and JSON are stored
(``numpy.load(..., allow_pickle=False)``): nothing executable is read back.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

#: Environment variable naming the cache folder; ``off`` (or empty) disables the cache.
CACHE_ENV = "FORECAST_CACHE_DIR"
#: Layout version of the cached files; bump it when the layout below changes.
FORMAT = 1
_META = "__meta__"
_OFF = {"", "off", "0", "no", "none", "false"}
_SCALARS = (str, int, float, bool)


def cache_dir(env: Mapping[str, str] | None = None) -> Path | None:
    """The cache folder, or None when ``$FORECAST_CACHE_DIR`` turns the cache off."""
    env = os.environ if env is None else env
    if CACHE_ENV in env:
        value = env[CACHE_ENV]
        return None if value.strip().lower() in _OFF else Path(value).expanduser()
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "forecast"


def code_version() -> str:
    """Hash of the code and library versions that determine a generated data set."""
    import forecast.data
    import forecast.dims

    h = hashlib.sha256(f"format {FORMAT}".encode())
    for lib in (np, pd, xr):
        h.update(f"{lib.__name__} {lib.__version__}\n".encode())
    data_dir = Path(forecast.data.__file__).parent
    for path in [*sorted(data_dir.rglob("*.py")), Path(forecast.dims.__file__)]:
        h.update(str(path.relative_to(data_dir.parent)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def cache_path(name: str, seed: int, folder: Path, version: str | None = None) -> Path:
    """File of the cached data set ``name`` with ``seed`` in ``folder``."""
    version = code_version() if version is None else version
    key = hashlib.sha256(f"{name}\n{int(seed)}\n{version}".encode()).hexdigest()[:20]
    return folder / f"{name}-seed{int(seed)}-{key}.npz"


def _check_attrs(attrs: Mapping[Any, Any], where: str) -> dict[str, Any]:
    """Attributes that survive JSON exactly (str keys; str, int, float, bool values)."""
    for key, value in attrs.items():
        if not isinstance(key, str) or type(value) not in _SCALARS:
            raise ValueError(
                f"{where}: attribute {key!r} of type {type(value).__name__} cannot be cached"
            )
    return dict(attrs)


def write_npz(ds: xr.Dataset, path: str | Path) -> None:
    """Write ``ds`` (in-memory numpy data, plain attributes) to ``path`` as an ``.npz``.

    Raises
    ------
    ValueError
        A variable holds objects or the attributes are not plain scalars (not cacheable).
    """
    arrays: dict[str, np.ndarray] = {}
    entries = []
    for k, (name, var) in enumerate(ds.variables.items()):
        values = np.asarray(var.values)
        if values.dtype.kind not in "biufcmMU":
            raise ValueError(f"variable {name!r} of dtype {values.dtype} cannot be cached")
        if not isinstance(name, str):
            raise ValueError(f"variable name {name!r} is not a string")
        freq = None
        if name in ds.indexes and isinstance(ds.indexes[name], pd.DatetimeIndex):
            freq = ds.indexes[name].freqstr
        arrays[f"v{k}"] = values
        entries.append(
            {
                "name": name,
                "dims": list(var.dims),
                "coord": name in ds.coords,
                "freq": freq,
                "attrs": _check_attrs(var.attrs, name),
            }
        )
    meta = {"format": FORMAT, "attrs": _check_attrs(ds.attrs, "data set"), "variables": entries}
    with open(path, "wb") as f:
        np.savez(f, **arrays, **{_META: np.array(json.dumps(meta))})


def read_npz(path: str | Path) -> xr.Dataset:
    """Read a data set written by :func:`write_npz` (no pickle: arrays and JSON only).

    Raises
    ------
    ValueError
        Not such a file, or another format version.
    """
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z[_META][()]))
        if meta.get("format") != FORMAT:
            raise ValueError(f"{path}: cache format {meta.get('format')}, expected {FORMAT}")
        coords: dict[str, Any] = {}
        data_vars: dict[str, Any] = {}
        for k, e in enumerate(meta["variables"]):
            values = z[f"v{k}"]
            if e["freq"] is not None:  # the time index keeps its frequency ("h", "5min")
                values = pd.DatetimeIndex(values, freq=e["freq"])
            (coords if e["coord"] else data_vars)[e["name"]] = (e["dims"], values, e["attrs"])
    return xr.Dataset(data_vars, coords=coords, attrs=meta["attrs"])


def same(a: xr.Dataset, b: xr.Dataset) -> bool:
    """Identical data sets, down to dtypes, attribute types and time-index frequencies."""
    if not a.identical(b):
        return False
    for name, var in a.variables.items():
        other = b.variables[name]
        if var.dtype != other.dtype or var.dims != other.dims:
            return False
        if {k: type(v) for k, v in var.attrs.items()} != {
            k: type(v) for k, v in other.attrs.items()
        }:
            return False
    for name, index in a.indexes.items():
        other = b.indexes[name]
        if index.dtype != other.dtype or getattr(index, "freqstr", None) != getattr(
            other, "freqstr", None
        ):
            return False
    return {k: type(v) for k, v in a.attrs.items()} == {k: type(v) for k, v in b.attrs.items()}


def open_generated(
    name: str,
    generate: Callable[[], xr.Dataset],
    seed: int = 0,
    folder: str | Path | None = None,
) -> xr.Dataset:
    """The generated data set ``name``: read from the cache, else ``generate()`` and cache it.

    Parameters
    ----------
    name, seed
        What ``generate`` makes (part of the cache key, with :func:`code_version`).
    generate : callable
        Makes the data set, e.g. ``lambda: open_dataset("synthetic-weather")``.
    folder : path, optional
        Cache folder; default :func:`cache_dir`. No cache when it is None and the cache is off.

    A cache that cannot be written (read-only folder, full disk) or a data set that cannot be
    stored exactly is simply not cached: the generated data set is returned either way.
    """
    folder = cache_dir() if folder is None else Path(folder)
    if folder is None:
        return generate()
    path = cache_path(name, seed, folder)
    if path.is_file():
        try:
            return read_npz(path)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
            pass  # damaged or foreign: regenerate and replace it
    ds = generate()
    try:
        _store(ds, path)
    except (OSError, ValueError):
        pass
    return ds


def _store(ds: xr.Dataset, path: Path) -> None:
    """Write ``ds`` to ``path`` atomically, only if it reads back identical; drop older keys."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write_npz(ds, tmp)
        if not same(read_npz(tmp), ds):
            raise ValueError(f"{path.name}: the data set does not read back identical")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    prefix = path.name.rsplit("-", 1)[0] + "-"
    for old in path.parent.glob(f"{prefix}*.npz"):
        if old != path:
            try:
                old.unlink()
            except OSError:
                pass
