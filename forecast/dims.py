"""Dimension and coordinate names, and the small protocols every model satisfies.

Every module takes its dimension names from here; no string literals elsewhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, Self, runtime_checkable

import xarray as xr

TIME = "time"
LAT = "lat"
LON = "lon"
Y = "y"
X = "x"
NODE = "node"
NODE_J = "node_j"  # second axis of the adjacency matrix
ADJACENCY = "adjacency"

MEMBER = "member"
LEAD_TIME = "lead_time"
INIT_TIME = "init_time"
VALID_TIME = "valid_time"
#: Coordinate over ``member`` of a pooled ensemble: the label of the model that drew the member.
SOURCE_MODEL = "source_model"

MODEL = "model"
METRIC = "metric"
QUANTILE = "quantile"
#: Values of the scorecard's ``metric`` coordinate, in column order (``crps`` and ``crps_fair``
#: always go together); :func:`forecast.scoring.scorecard` computes them.
SCORECARD_METRICS = (
    "crps",
    "crps_fair",
    "rmse",
    "mae_median",
    "spread",
    "spread_skill",
    "energy",
    "variogram",
    "area_crps",
    "area_spread_skill",
    "brier",
    "rank_flatness",
)

GRID_DIMS = ((LAT, LON), (Y, X))
#: Names normalized on input: anything on the left becomes the name on the right.
DIM_ALIASES = {
    "latitude": LAT,
    "longitude": LON,
    "valid_time": TIME,
    "sensor": NODE,
    "station": NODE,
}


def space_dims(obj: xr.Dataset | xr.DataArray) -> tuple[str, ...]:
    """Spatial dims of a data set or ensemble: ``(lat, lon)``, ``(y, x)`` or ``(node,)``."""
    for pair in GRID_DIMS:
        if all(d in obj.dims for d in pair):
            return pair
    if NODE in obj.dims:
        return (NODE,)
    return ()


@runtime_checkable
class Forecaster(Protocol):
    """Anything that fits on a history and samples ensembles given a context window."""

    def fit(self, train: xr.Dataset, valid: xr.Dataset | None = None) -> Self: ...

    def sample(
        self, context: xr.Dataset, n_members: int, *, seed: int | None = None
    ) -> xr.Dataset: ...

    def save(self, path: str | Path) -> None: ...

    @classmethod
    def load(cls, path: str | Path) -> Self: ...


@runtime_checkable
class LatentForecaster(Forecaster, Protocol):
    """A forecaster whose members are deterministic images of Gaussian latents."""

    def prior(self, context: xr.Dataset, n_members: int, *, seed: int | None = None) -> Any: ...

    def decode(self, context: xr.Dataset, latents: Any) -> xr.Dataset: ...

    def encode(self, context: xr.Dataset, target: xr.Dataset) -> Any: ...


def window_context(model: Any) -> int:
    """The context of the windows ``model`` was built for: ``base_context`` for a model that
    reads extra history before it (:class:`~forecast.models.online.OnlineSpread`), else
    ``context`` (the steps ``sample`` reads)."""
    return int(getattr(model, "base_context", model.context))


#: Points along a latent path (coordinate: fraction from 0 to 1); see forecast.sampling.paths.
PATH = "path"

# Score-diagnostic axes (scoring package).
RANK = "rank"  # rank of the observation among the members, 0..M
BIN = "bin"  # probability / PIT bins of calibration diagnostics
THRESHOLD = "threshold"  # event thresholds of the Brier score and reliability diagram
