"""Scenarios of a latent path: which model's latent space a path walks, and the latents of two
scenarios (an ensemble member, or the observed target embedded by inversion).

A diffusion model or VAE walks its own latent space. A :class:`~forecast.models.PooledEnsemble`
has none of its own (its models' latents do not mix), so a path walks one of its latent models,
between members that model drew. Used by the dashboard's latent explorer and ``forecast path``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from forecast.errors import ForecastError

__all__ = ["is_latent", "latent_part", "latent_parts", "part_members", "scenario_latents"]


def is_latent(model: Any) -> bool:
    """True when ``model`` offers ``prior``, ``decode`` and ``encode`` (a LatentForecaster)."""
    from forecast.dims import LatentForecaster

    return isinstance(model, LatentForecaster)


def latent_parts(model: Any) -> list[str]:
    """The models of ``model`` whose latent space the explorer can walk: a pool's diffusion and
    VAE models by label (``[]`` if it has none), ``[""]`` for a latent model itself, else ``[]``.
    """
    from forecast.models.pooled import PooledEnsemble

    if isinstance(model, PooledEnsemble):
        return list(model.latent_models())
    return [""] if is_latent(model) else []


def latent_part(model: Any, part: str = "") -> Any:
    """The LatentForecaster that walks the path: ``model`` itself, or the pool model ``part``."""
    from forecast.models.pooled import PooledEnsemble

    if isinstance(model, PooledEnsemble):
        parts = model.latent_models()
        if part not in parts:
            have = ", ".join(map(repr, parts)) or "none"
            raise ForecastError(
                f"pool model {part!r} has no latent space here (latent models: {have}); "
                "pick one of those"
            )
        return parts[part]
    if not is_latent(model):
        raise ForecastError(
            f"{type(model).__name__} has no latent space; pick a diffusion or VAE model"
        )
    return model


def part_members(model: Any, part: str, n_members: int) -> list[int]:
    """The members ``0 .. n_members - 1`` drawn by ``part`` (all of them for a plain model)."""
    from forecast.models.pooled import PooledEnsemble, member_sources

    if not isinstance(model, PooledEnsemble):
        return list(range(n_members))
    latent_part(model, part)  # a one-line error for a label that is not a latent model
    k = model.labels.index(part)
    return [int(m) for m in np.flatnonzero(member_sources(model.weights, n_members) == k)]


def scenario_latents(
    model: Any,
    context: xr.Dataset,
    scenario_a: Any,
    scenario_b: Any,
    *,
    n_members: int,
    seed: int,
    target: xr.Dataset | None = None,
    part: str = "",
) -> tuple[Any, Any]:
    """Latents of two scenarios: a member index (from ``prior``) or ``"observed"`` (``encode``).

    Parameters
    ----------
    model : LatentForecaster or PooledEnsemble
    context : xr.Dataset
        Context window of the issue time.
    scenario_a, scenario_b : int or "observed"
        A member of the ensemble ``sample(context, n_members, seed=seed)`` (its latent: the
        prior draw that decodes to it), or the observed target embedded by inversion.
    target : xr.Dataset, optional
        The observed target window, needed for ``"observed"``.
    part : str
        For a pool: the label of the model whose latent space holds both scenarios
        (:func:`latent_parts`); its members are :func:`part_members`.

    Returns
    -------
    z_a, z_b
        One latent each, without member axis, as ``latent_path`` takes them.
    """
    from forecast.models.pooled import PooledEnsemble

    walker = latent_part(model, part)
    pooled = isinstance(model, PooledEnsemble)
    prior = None
    out = []
    for sc in (scenario_a, scenario_b):
        if sc == "observed":
            if target is None:
                raise ForecastError(
                    "the observed scenario needs the truth after the issue time; pick an "
                    "earlier issue time"
                )
            out.append(walker.encode(context, target)[0])  # encode gives (1, ...): one member
            continue
        m = int(sc)
        if not 0 <= m < n_members:
            raise ForecastError(f"member {m} outside 0..{n_members - 1}; pick one in range")
        if pooled:
            label, z = model.member_latent(context, m, seed=seed)
            if label != part:
                raise ForecastError(
                    f"member {m} comes from pool model {label!r}, not {part!r}; latents of "
                    "two models do not mix, pick two members of one model"
                )
            out.append(z)
            continue
        if prior is None:
            prior = model.prior(context, n_members, seed=seed)
        out.append(prior[m])
    return out[0], out[1]
