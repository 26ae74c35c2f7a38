"""Path confinement for the dashboard: files typed into the app are read only inside data folders.

A dashboard may be served to colleagues, so a path typed into it must not reach the server's
other files. Paths are resolved (symlinks followed) and accepted only when they lie inside one of
the configured roots: the project's ``data/``, ``../shared/data`` (or ``$FORECAST_DATA_DIR``) and
a user data folder named by ``$FORECAST_USER_DATA_DIR``. Files named here are read, never written;
uploads are kept in a private temporary folder.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from forecast.errors import ForecastError

#: Environment variable naming an extra folder whose files the dashboard may read.
USER_DATA_ENV = "FORECAST_USER_DATA_DIR"
#: Environment variable naming the real data sets' folder (as in tests/conftest.py).
SHARED_DATA_ENV = "FORECAST_DATA_DIR"
#: Environment variable naming a folder of extra model checkpoints.
CHECKPOINT_ENV = "FORECAST_CHECKPOINT_DIR"
#: Environment variable replacing the folder of shipped checkpoints (default: project ``data/``).
SHIPPED_ENV = "FORECAST_SHIPPED_DIR"
#: Environment variable with the number of torch CPU threads the dashboard samples with.
THREADS_ENV = "FORECAST_APP_THREADS"

#: Formats a user may open in the app, by file name ending.
SUFFIXES = {
    ".nc": "netcdf",
    ".nc4": "netcdf",
    ".netcdf": "netcdf",
    ".cdf": "netcdf",
    ".grib": "grib",
    ".grb": "grib",
    ".grib2": "grib",
    ".grb2": "grib",
    ".csv": "csv",
}

REPO = Path(__file__).resolve().parents[2]


def checkpoint_folders(env: Mapping[str, str] | None = None) -> list[Path]:
    """Folders scanned for model checkpoints: the shipped ones (project ``data/``, or
    ``$FORECAST_SHIPPED_DIR``), then ``$FORECAST_CHECKPOINT_DIR`` when set."""
    env = os.environ if env is None else env
    folders = [Path(env[SHIPPED_ENV]) if env.get(SHIPPED_ENV) else REPO / "data"]
    if env.get(CHECKPOINT_ENV):
        folders.append(Path(env[CHECKPOINT_ENV]))
    return folders


def data_roots(repo: str | Path | None = None, env: Mapping[str, str] | None = None) -> list[Path]:
    """The folders whose files the dashboard may read, resolved, existing ones only.

    Parameters
    ----------
    repo : path, optional
        Project root; defaults to the folder holding the ``forecast`` package.
    env : mapping, optional
        Environment to read ``FORECAST_DATA_DIR`` / ``FORECAST_USER_DATA_DIR`` /
        ``FORECAST_CHECKPOINT_DIR`` from; defaults to ``os.environ``.

    Returns
    -------
    list of Path
        Distinct resolved folders, in the order: project ``data/``, shared data, user data,
        checkpoint folder.
    """
    repo = Path(repo) if repo is not None else REPO
    env = os.environ if env is None else env
    candidates = [repo / "data", Path(env.get(SHARED_DATA_ENV, repo.parent / "shared" / "data"))]
    for name in (USER_DATA_ENV, CHECKPOINT_ENV):
        if env.get(name):
            candidates.append(Path(env[name]))
    roots: list[Path] = []
    for cand in candidates:
        cand = cand.expanduser()
        if cand.is_dir():
            res = cand.resolve()
            if res not in roots:
                roots.append(res)
    return roots


def confine(path: str | Path, roots: Sequence[Path]) -> Path:
    """Resolve ``path`` and return it if it is an existing file inside one of ``roots``.

    Relative paths are taken relative to each root in turn (the first that holds the file wins).

    Raises
    ------
    ForecastError
        When the path is empty, lies outside every root (symlinks are followed first) or is
        not an existing file.
    """
    text = str(path).strip()
    if not text:
        raise ForecastError("no path given; type the path of a NetCDF, GRIB or CSV file")
    if not roots:
        raise ForecastError(
            f"no data folder is configured; set {USER_DATA_ENV} to the folder of your files"
        )
    roots = [Path(r).resolve() for r in roots]
    given = Path(text).expanduser()
    tries = [given] if given.is_absolute() else [root / given for root in roots]
    allowed = ", ".join(str(r) for r in roots)
    for cand in tries:
        res = cand.resolve()
        if not any(res.is_relative_to(root) for root in roots):
            raise ForecastError(
                f"path {text} is outside the allowed data folders ({allowed}); copy the file "
                f"into one of them or point {USER_DATA_ENV} at its folder"
            )
        if res.is_file():
            return res
    raise ForecastError(f"file {text} not found in the allowed data folders ({allowed})")


def sniff_format(path: str | Path) -> str:
    """Return ``"netcdf"``, ``"grib"`` or ``"csv"`` for a readable file, checking its content.

    The name's ending picks the expected format and the first bytes must agree, so a text file
    renamed ``.nc`` is refused before any reader sees it.

    Raises
    ------
    ForecastError
        For any other ending, or content that does not match the ending.
    """
    path = Path(path)
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        valid = ", ".join(sorted(SUFFIXES))
        raise ForecastError(
            f"{path.name} is not a NetCDF, GRIB or CSV file (ending {path.suffix or 'none'}); "
            f"give a file ending in one of {valid}"
        )
    with open(path, "rb") as f:
        head = f.read(4096)
    if kind == "netcdf" and not (head.startswith(b"CDF") or head.startswith(b"\x89HDF")):
        raise ForecastError(
            f"{path.name} is not a NetCDF file (no NetCDF signature); export it with "
            "xarray's to_netcdf or give a GRIB or CSV file"
        )
    if kind == "grib" and b"GRIB" not in head[:1024]:
        raise ForecastError(f"{path.name} is not a GRIB file (no GRIB signature)")
    if kind == "csv":
        try:
            text = head.decode("utf-8")
        except UnicodeDecodeError:
            raise ForecastError(f"{path.name} is not a text CSV file (binary content)") from None
        first = text.splitlines()[0] if text.strip() else ""
        if "," not in first:
            raise ForecastError(
                f"{path.name} is not a CSV file (no comma-separated header); write one column "
                "per sensor with a header row"
            )
    return kind


def store_upload(name: str, data: bytes, folder: str | Path | None = None) -> Path:
    """Keep an uploaded file in a private temporary folder and return its path.

    Only the base name of ``name`` is used, so an upload cannot choose where it is written.
    The folder is created with ``tempfile.mkdtemp`` (mode 0700) unless given.
    """
    base = Path(name).name
    if not base or base in {".", ".."}:
        raise ForecastError("the uploaded file has no name; upload a .nc, .grib or .csv file")
    if Path(base).suffix.lower() not in SUFFIXES:
        valid = ", ".join(sorted(SUFFIXES))
        raise ForecastError(f"{base} is not a NetCDF, GRIB or CSV file; upload one of {valid}")
    folder = Path(folder) if folder is not None else Path(tempfile.mkdtemp(prefix="forecast-up-"))
    target = folder / base
    tmp = folder / f".{base}.part"
    tmp.write_bytes(data)
    os.replace(tmp, target)
    return target
