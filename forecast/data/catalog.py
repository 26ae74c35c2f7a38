"""Named data sets: the embedded synthetic defaults and the real files in the shared data folder.

Real files are looked up under :func:`data_dir`: ``$FORECAST_DATA_DIR`` if set, else
``<repo>/../shared/data`` (the folder beside the repository checkout).

=====================  ==========================================================================
name                   what
=====================  ==========================================================================
synthetic-weather      :func:`forecast.data.synthetic.synthetic_weather` (seed 0), generated
synthetic-traffic      :func:`forecast.data.synthetic.synthetic_traffic` (seed 0), generated
era5-uk-t2m            ``era5-uk-t2m/era5-2mt-2019-03-uk.grib``: ERA5 t2m (K), hourly, March 2019
los-loop               ``los-loop/los_speed.csv`` + ``los_adj.csv``: speed (mph) of 207 sensors,
                       5 min from 2012-03-01 00:00 (the file has no time column)
=====================  ==========================================================================
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import xarray as xr

import forecast
from forecast.errors import ForecastError
from forecast.registry import Registry

#: Environment variable naming the folder of the real data sets.
DATA_DIR_ENV = "FORECAST_DATA_DIR"


def default_data_dir() -> Path:
    """``<repo>/../shared/data``: the shared data folder beside the repository checkout."""
    return Path(forecast.__file__).resolve().parents[1].parent / "shared" / "data"


def data_dir() -> Path:
    """Folder of the real data sets: ``$FORECAST_DATA_DIR`` or :func:`default_data_dir`."""
    value = os.environ.get(DATA_DIR_ENV)
    return Path(value).expanduser() if value else default_data_dir()


@dataclass(frozen=True)
class NamedDataset:
    """A data set a user picks by name.

    Attributes
    ----------
    name : str
        The name on the command line.
    description : str
        One line for ``forecast data list``.
    files : tuple of str
        Files relative to :func:`data_dir` (empty for generated data sets).
    opener : callable
        ``opener(paths, variable, options) -> xr.Dataset``; ``paths`` are the resolved files.
    """

    name: str
    description: str
    files: tuple[str, ...]
    opener: Callable[[list[Path], Any, dict[str, Any]], xr.Dataset] = field(repr=False)

    @property
    def generated(self) -> bool:
        """True for data sets generated in memory rather than read from files."""
        return not self.files

    def paths(self) -> list[Path]:
        """Where the files are expected now (depends on ``$FORECAST_DATA_DIR``)."""
        root = data_dir()
        return [root / f for f in self.files]

    def present(self) -> bool:
        """Whether every file exists (always true for generated data sets)."""
        return all(p.is_file() for p in self.paths())

    def location(self) -> str:
        """Where the data set resolves, for ``forecast data list``."""
        if self.generated:
            return "generated in memory (seed 0 unless seed= is given)"
        return ", ".join(str(p) for p in self.paths())

    def open(self, variable: str | list[str] | None = None, **options: Any) -> xr.Dataset:
        """Open the data set as the standard data set; see :func:`forecast.data.open_dataset`.

        Raises
        ------
        ForecastError
            Files absent (names where it looked and the environment variable to set).
        """
        paths = self.paths()
        missing = [p for p in paths if not p.is_file()]
        if missing:
            origin = f"from ${DATA_DIR_ENV}" if os.environ.get(DATA_DIR_ENV) else "the default"
            raise ForecastError(
                f"data set '{self.name}' not found: looked for {missing[0]}; set "
                f"{DATA_DIR_ENV} to the folder that holds {self.files[0].split('/')[0]}/ "
                f"(now {data_dir()}, {origin})"
            )
        return self.opener(paths, variable, dict(options))


DATASETS: Registry[NamedDataset] = Registry("data set")


def register(spec: NamedDataset) -> NamedDataset:
    """Add a named data set to :data:`DATASETS`."""
    DATASETS.add(spec.name, spec)
    return spec


def _synthetic(function_name: str) -> Callable[[list[Path], Any, dict[str, Any]], xr.Dataset]:
    def opener(paths: list[Path], variable: Any, options: dict[str, Any]) -> xr.Dataset:
        from forecast.data import synthetic
        from forecast.data.sources import finalize, standardize

        seed = options.pop("seed", 0)
        extra = sorted(k for k, v in options.items() if v is not None)
        if extra:
            raise ForecastError(
                f"option(s) {', '.join(extra)} do not apply to a synthetic data set; only seed="
            )
        ds = getattr(synthetic, function_name)(seed=int(seed))
        name = function_name.replace("synthetic_", "synthetic-")
        return finalize(standardize(ds, variable, where=name), name)

    return opener


def _open_era5(paths: list[Path], variable: Any, options: dict[str, Any]) -> xr.Dataset:
    from forecast.data.sources import open_dataset

    return open_dataset(paths[0], variable, **options)


def _open_los_loop(paths: list[Path], variable: Any, options: dict[str, Any]) -> xr.Dataset:
    from forecast.data.sources import open_dataset

    defaults: dict[str, Any] = {
        "start": "2012-03-01 00:00",
        "step": "5min",
        "units": "mph",
        "adjacency": paths[1],
    }
    if variable not in (None, "speed"):
        raise ForecastError(f"variable '{variable}' not in los-loop; available: speed")
    ds = open_dataset(paths[0], "speed", **{**defaults, **options})
    ds["speed"].attrs["long_name"] = "traffic speed"
    ds.attrs["source"] = "los-loop (T-GCN; a subset of METR-LA)"
    return ds


register(
    NamedDataset(
        "synthetic-weather",
        "hourly temperature-like field (K) on a lat/lon grid, stochastic advection-diffusion",
        (),
        _synthetic("synthetic_weather"),
    )
)
register(
    NamedDataset(
        "synthetic-traffic",
        "5-minute speeds on a road graph of sensors with rush hours and incidents",
        (),
        _synthetic("synthetic_traffic"),
    )
)
register(
    NamedDataset(
        "era5-uk-t2m",
        "ERA5 2 m temperature (K), UK 0.25 deg grid, hourly, March 2019",
        ("era5-uk-t2m/era5-2mt-2019-03-uk.grib",),
        _open_era5,
    )
)
register(
    NamedDataset(
        "los-loop",
        "Los Angeles loop detectors: speed (mph), 207 sensors, 5 min, 2012-03-01..07",
        ("los-loop/los_speed.csv", "los-loop/los_adj.csv"),
        _open_los_loop,
    )
)
