"""Checkpoint files: named arrays in safetensors plus JSON metadata, never pickle.

A checkpoint is one ``.safetensors`` file. Its header carries the JSON metadata under the key
``"forecast"``: ``{"format": 2, "version": ..., "kind": ..., ...}``. Loading parses JSON and
reads raw arrays only, so a checkpoint cannot execute code.

Format 2 stores equal arrays once (a pool's snapshots of one seed carry the same first guess):
the header key ``"forecast.same_as"`` maps each left-out name to the stored name holding its
values, and loading gives it its own copy. Format 1 files (no such key) read as before.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from forecast import __version__
from forecast.errors import ForecastError

FORMAT = 2
#: The checkpoint formats this version reads.
READS = (1, 2)
_KEY = "forecast"
_SAME_AS = "forecast.same_as"
#: Equal arrays of at least this many bytes are stored once; smaller ones are not worth a
#: header entry.
MIN_SHARED_BYTES = 1024


def file_sha256(path: str | Path) -> str:
    """SHA-256 hex digest of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_path(path: str | Path) -> Path:
    """A temporary path beside ``path`` (same folder, so the final rename is atomic).

    The name is unique per process and call; the file is not created here, so it gets the
    usual permissions from the umask when written.
    """
    path = Path(path)
    token = secrets.token_hex(4)
    return path.with_name(f".{path.name}.{os.getpid()}.{token}.tmp")


def umask_mode(directory: bool = False) -> int:
    """The permission bits a new file (or folder) gets under this process's umask."""
    mask = os.umask(0)
    os.umask(mask)
    return (0o777 if directory else 0o666) & ~mask


def publish(tmp: str | Path, path: str | Path) -> None:
    """Give the finished temporary file (or folder) ``tmp`` the umask's permissions and rename
    it to ``path``. Temporary files are created private (``mkstemp``, safetensors), and the
    result would otherwise stay unreadable to the group and others."""
    tmp = Path(tmp)
    os.chmod(tmp, umask_mode(tmp.is_dir()))
    os.replace(tmp, path)


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary name beside it (nothing half-written)."""
    tmp = atomic_path(path)
    tmp.write_text(text)
    publish(tmp, path)


def write_netcdf(ds: Any, path: str | Path) -> None:
    """Write the xarray Dataset ``ds`` to NetCDF at ``path`` through a temporary name beside it
    (nothing half-written, nothing left behind on failure)."""
    tmp = atomic_path(path)
    try:
        ds.to_netcdf(tmp)
        publish(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_checkpoint(
    path: str | Path, arrays: Mapping[str, Any], metadata: Mapping[str, Any]
) -> Path:
    """Write ``arrays`` (numpy arrays or torch tensors) and JSON-able ``metadata`` to ``path``.

    The file is written to a temporary name and renamed, so an interrupted save never leaves
    a truncated checkpoint.
    """
    path = Path(path)
    if not path.parent.exists():
        raise ForecastError(f"folder {path.parent} does not exist; create it first")
    plain = {}
    for name, value in arrays.items():
        if hasattr(value, "detach"):  # torch tensor, without importing torch here
            value = value.detach().cpu().numpy()
        plain[name] = np.ascontiguousarray(value)
    meta = {**metadata, "format": FORMAT, "version": __version__}
    same_as = equal_arrays(plain)
    stored = {name: value for name, value in plain.items() if name not in same_as}
    header = {_KEY: json.dumps(meta)}
    if same_as:
        header[_SAME_AS] = json.dumps(same_as)
    tmp = atomic_path(path)
    try:
        save_file(stored, str(tmp), metadata=header)
        publish(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def equal_arrays(arrays: Mapping[str, np.ndarray]) -> dict[str, str]:
    """``{name: first name}`` for every array (of at least :data:`MIN_SHARED_BYTES`) equal in
    dtype, shape and bytes to an earlier one of ``arrays``."""
    first: dict[tuple[str, tuple[int, ...], str], str] = {}
    same_as = {}
    for name, value in arrays.items():
        if value.nbytes < MIN_SHARED_BYTES:
            continue
        key = (value.dtype.str, value.shape, hashlib.sha256(value.data).hexdigest())
        kept = first.setdefault(key, name)
        if kept != name and value.tobytes() == arrays[kept].tobytes():
            same_as[name] = kept
    return same_as


def load_checkpoint(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read a checkpoint written by :func:`save_checkpoint`; returns ``(arrays, metadata)``."""
    path = Path(path)
    if not path.is_file():
        raise ForecastError(f"checkpoint {path} not found; pass the path of a .safetensors file")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as f:
            header = f.metadata() or {}
        arrays = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise ForecastError(
            f"{path} is not a forecast checkpoint ({err}); train one with `forecast train`"
        ) from None
    if _KEY not in header:
        raise ForecastError(f"{path} has no forecast metadata; train one with `forecast train`")
    meta = json.loads(header[_KEY])
    fmt = meta.get("format")
    if fmt not in READS:
        newer = isinstance(fmt, int) and fmt > max(READS)
        fix = "upgrade forecast to read it" if newer else "retrain it with this version"
        raise ForecastError(
            f"{path} has checkpoint format {fmt!r}, forecast {__version__} reads formats "
            f"{', '.join(map(str, READS))}; {fix}"
        )
    for name, kept in json.loads(header.get(_SAME_AS, "{}")).items():
        if name in arrays or kept not in arrays:
            raise ForecastError(
                f"{path} is damaged: its shared array {name!r} -> {kept!r} does not resolve; "
                "save the model again"
            )
        arrays[name] = arrays[kept].copy()
    return arrays, meta
