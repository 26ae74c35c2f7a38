"""Forecasters: the ``MODELS`` registry, :func:`load_model` and :func:`forecast_many`.

Every model satisfies :class:`forecast.dims.Forecaster`. Registered names: ``persistence``,
``climatology``, ``diurnal-persistence`` and ``gp`` here; the generative models register
themselves as ``diffusion`` and ``vae`` when their modules are imported at the end of this file;
``pooled`` (:class:`~forecast.models.pooled.PooledEnsemble`, a multi-model ensemble) and
``online-spread`` (:class:`~forecast.models.online.OnlineSpread`, any model with its spread
rescaled by its recent verified errors) and ``schaake`` (:class:`~forecast.models.schaake.
SchaakeShuffle`, any model's members reordered to the space-time ranks of observed changes)
come last.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from forecast.checkpoint import load_checkpoint
from forecast.errors import ForecastError
from forecast.models.base import (
    ArrayForecaster,
    forecast_many,
    issue_seed,
    member_rng,
    sample_many,
)
from forecast.models.baselines import (
    ClimatologyEnsemble,
    DiurnalPersistenceEnsemble,
    PersistenceEnsemble,
)
from forecast.registry import Registry

MODELS: Registry[Any] = Registry("model")
MODELS.add(PersistenceEnsemble.kind, PersistenceEnsemble)
MODELS.add(ClimatologyEnsemble.kind, ClimatologyEnsemble)
MODELS.add(DiurnalPersistenceEnsemble.kind, DiurnalPersistenceEnsemble)


def load_model(path: str | Path) -> Any:
    """Load any forecaster from its checkpoint, dispatching on the metadata ``kind``.

    Parameters
    ----------
    path
        A ``.safetensors`` checkpoint written by a model's ``save``.

    Returns
    -------
    Forecaster
        The model, ready to ``sample``.
    """
    _, meta = load_checkpoint(path)
    kind = meta.get("kind")
    if kind is None:
        raise ForecastError(f"{path} has no model kind in its metadata; save it with model.save")
    return MODELS.get(kind).load(path)


from forecast.models.gp import GaussianProcessForecaster  # noqa: E402

MODELS.add(GaussianProcessForecaster.kind, GaussianProcessForecaster)

# The generative models register themselves on import (they need MODELS defined above).
from forecast.models import diffusion, vae  # noqa: E402, F401
from forecast.models.pooled import PooledEnsemble  # noqa: E402

MODELS.add(PooledEnsemble.kind, PooledEnsemble)
from forecast.models.online import OnlineSpread  # noqa: E402

MODELS.add(OnlineSpread.kind, OnlineSpread)
from forecast.models.schaake import SchaakeShuffle  # noqa: E402

MODELS.add(SchaakeShuffle.kind, SchaakeShuffle)

#: Kinds of the baselines every other model is judged against.
BASELINE_KINDS = (
    PersistenceEnsemble.kind,
    ClimatologyEnsemble.kind,
    DiurnalPersistenceEnsemble.kind,
    GaussianProcessForecaster.kind,
)

__all__ = [
    "BASELINE_KINDS",
    "MODELS",
    "ArrayForecaster",
    "ClimatologyEnsemble",
    "DiurnalPersistenceEnsemble",
    "GaussianProcessForecaster",
    "OnlineSpread",
    "PersistenceEnsemble",
    "PooledEnsemble",
    "SchaakeShuffle",
    "forecast_many",
    "issue_seed",
    "load_model",
    "member_rng",
    "sample_many",
]
