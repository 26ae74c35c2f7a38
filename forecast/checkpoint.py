"""Checkpoint files: named arrays in safetensors plus JSON metadata, never pickle.

A checkpoint is one ``.safetensors`` file. Its header carries the JSON metadata under the key
``"forecast"``: ``{"format": 1, "version": ..., "kind": ..., ...}``. Loading parses JSON and
reads raw arrays only, so a checkpoint cannot execute code.
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

FORMAT = 1
_KEY = "forecast"


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
    meta = {"format": FORMAT, "version": __version__, **metadata}
    tmp = atomic_path(path)
    try:
        save_file(plain, str(tmp), metadata={_KEY: json.dumps(meta)})
        publish(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


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
    if meta.get("format") != FORMAT:
        raise ForecastError(
            f"{path} has checkpoint format {meta.get('format')!r}, this version reads format "
            f"{FORMAT}; retrain it with forecast {__version__}"
        )
    return arrays, meta
