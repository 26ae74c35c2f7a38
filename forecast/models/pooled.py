"""Multi-model ensembles: members drawn from several forecasters in fixed shares.

A :class:`PooledEnsemble` holds fitted forecasters of the same data and window geometry (e.g.
two VAEs and two diffusion models trained with different seeds) and draws each ensemble member
from one of them. Which model member ``m`` comes from follows a smooth weighted round robin of
the weights, so the first ``n`` members hold each model's share as closely as ``n`` allows
and member ``m`` depends only on ``(seed, m)``, as for every forecaster. Each model samples with
its own seed derived from the pool's, so two models never share their random draws (models
sampled with one seed start from the same noise for the same member index, which would make
pooled members correlated).

The pool is one checkpoint file: every model's arrays under a ``c<k>/`` prefix and its
metadata in the pool's. ``forecast pool`` builds one from trained checkpoints.
"""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd
import torch
import xarray as xr

from forecast.checkpoint import load_checkpoint, save_checkpoint
from forecast.dims import MEMBER, SOURCE_MODEL
from forecast.errors import ForecastError
from forecast.models.base import (
    check_kind,
    check_members,
    check_seeds,
    checkpoint_meta,
    sample_many,
)
from forecast.models.first_guess import Memo, array_key, shared_first_guesses


def member_sources(weights: Sequence[float], n_members: int) -> np.ndarray:
    """The model index of each of ``n_members`` pooled members (smooth weighted round robin).

    Prefix-stable: the first ``n`` entries are the same for every ``n_members >= n``. With equal
    weights it is ``0, 1, ..., K-1, 0, 1, ...``.
    """
    w = np.asarray(weights, dtype=float)
    current = np.zeros_like(w)
    out = np.empty(n_members, dtype=int)
    for m in range(n_members):
        current += w
        k = int(np.argmax(current))
        current[k] -= w.sum()
        out[m] = k
    return out


def member_origins(weights: Sequence[float], n_members: int) -> tuple[np.ndarray, np.ndarray]:
    """For each of ``n_members`` pooled members, its model's index (:func:`member_sources`)
    and its index among that model's members (prefix-stable as well)."""
    sources = member_sources(weights, n_members)
    index = np.empty(n_members, dtype=int)
    counts = np.zeros(len(weights), dtype=int)
    for m, k in enumerate(sources):
        index[m] = counts[k]
        counts[k] += 1
    return sources, index


def model_seed(seed: int | None, k: int) -> int:
    """The sampling seed of pooled model ``k`` under the pool's ``seed`` (distinct per model)."""
    state = np.random.SeedSequence([0 if seed is None else int(seed), 0x504F4F4C, int(k)])
    return int(state.generate_state(1, np.uint64)[0] >> np.uint64(2))


def _check_weights(weights: Sequence[float] | None, n: int) -> list[float]:
    if weights is None:
        return [1.0] * n
    weights = [float(w) for w in weights]
    if len(weights) != n:
        raise ForecastError(f"{len(weights)} weights for {n} models; give one weight per model")
    if not all(math.isfinite(w) and w > 0 for w in weights):
        raise ForecastError(f"pool weights must be positive numbers, got {weights}")
    return weights


class PooledEnsemble:
    """A multi-model ensemble of fitted forecasters sharing data and window geometry.

    Parameters
    ----------
    context, horizon
        Window geometry; every model must have the same.
    components
        The models as ``{"kind": registry name, "config": constructor keywords}``; :meth:`fit`
        builds and fits them. Use :meth:`from_models` for models that are already fitted. A
        component whose ``train.keep`` is a list of steps becomes one model per step (a
        snapshot ensemble, trained in one run: :mod:`forecast.models.snapshots`), each with
        the component's weight.
    weights
        Relative share of the members per model (default: equal).
    labels
        A name per model (default ``kind-k``), shown in messages and the checkpoint.
    seeds
        Training seeds: each component becomes one model per seed (its ``train`` table's
        ``seed`` set), a "deep ensemble" of one configuration, with labels ``kind-k-s<seed>``
        and each component's weight repeated. The stored configuration lists the expanded
        models.
    train
        Training settings for every model that trains (merged over each one's own ``train``
        table, e.g. ``forecast train --model pooled --no-progress --max-steps N``).
    """

    kind: ClassVar[str] = "pooled"

    def __init__(
        self,
        *,
        context: int,
        horizon: int,
        components: Sequence[Mapping[str, Any]] = (),
        weights: Sequence[float] | None = None,
        labels: Sequence[str] | None = None,
        seeds: Sequence[int] | None = None,
        train: Mapping[str, Any] | None = None,
    ) -> None:
        if not components:
            raise ForecastError(
                "a pooled ensemble needs at least one model; build it from trained checkpoints "
                "with `forecast pool --checkpoint A --checkpoint B --out POOL.safetensors`"
            )
        for spec in components:
            if not isinstance(spec, Mapping) or set(spec) != {"kind", "config"}:
                raise ForecastError(
                    f"pool component {spec!r} is not {{'kind': NAME, 'config': {{...}}}}"
                )
        self.context = int(context)
        self.horizon = int(horizon)
        self.components = [{"kind": s["kind"], "config": dict(s["config"])} for s in components]
        self.weights = _check_weights(weights, len(self.components))
        labels = list(labels) if labels is not None else None
        if any(isinstance(_keep(s), list | tuple) for s in self.components):
            if labels is not None:
                raise ForecastError(
                    "give pool labels or lists of train.keep steps, not both (the steps "
                    "multiply the models)"
                )
            self.components, self.weights = _per_step(self.components, self.weights)
        if train:
            if seeds is not None and "seed" in train:
                raise ForecastError("give the pool seeds or a training seed, not both")
            self.components = _with_training(self.components, dict(train))
        if seeds is not None:
            if labels is not None:
                raise ForecastError("give pool labels or seeds, not both (seeds name the models)")
            self.components, self.weights, labels = _per_seed(self.components, self.weights, seeds)
        if labels is None:
            labels = [f"{s['kind']}-{k}" for k, s in enumerate(self.components)]
        if len(labels) != len(self.components) or len(set(labels)) != len(labels):
            raise ForecastError(f"pool labels {labels} must be unique, one per model")
        self.labels = labels
        self.models: list[Any] = []
        self.description: dict[str, Any] | None = None
        self.variables: list[str] = []
        self.step: pd.Timedelta | None = None

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def from_models(
        cls,
        models: Sequence[Any],
        weights: Sequence[float] | None = None,
        labels: Sequence[str] | None = None,
    ) -> Self:
        """A pool of already-fitted models (they must share data description and geometry).

        A model that is a pool itself joins with its models: each keeps its share of that
        pool's, scaled by the pool's weight here, and is labelled ``<pool label>/<its label>``.
        """
        if not models:
            raise ForecastError("a pooled ensemble needs at least one model")
        weights = _check_weights(weights, len(models))
        if labels is not None and len(labels) != len(models):
            raise ForecastError(
                f"{len(labels)} labels for {len(models)} models; give one per model"
            )
        if any(isinstance(m, PooledEnsemble) for m in models):
            models, weights, labels = _flatten(list(models), weights, labels)
        first = models[0]
        specs = [{"kind": m.kind, "config": m.config()} for m in models]
        pool = cls(
            context=first.context,
            horizon=first.horizon,
            components=specs,
            weights=weights,
            labels=labels,
        )
        pool._adopt(list(models))
        return pool

    @classmethod
    def from_checkpoints(
        cls,
        paths: Sequence[str | Path],
        weights: Sequence[float] | None = None,
        labels: Sequence[str] | None = None,
    ) -> Self:
        """A pool of the models saved at ``paths`` (labels default to the file stems)."""
        from forecast.models import load_model

        paths = [Path(p) for p in paths]
        if labels is None:
            labels = [p.parent.name if p.stem == "model" else p.stem for p in paths]
            if len(set(labels)) != len(labels):
                labels = [f"{name}-{k}" for k, name in enumerate(labels)]
        return cls.from_models([load_model(p) for p in paths], weights, labels)

    @classmethod
    def tiny(cls, context: int, horizon: int) -> Self:
        """Persistence and climatology in equal shares (for the contract test)."""
        geometry = {"context": context, "horizon": horizon}
        return cls(
            context=context,
            horizon=horizon,
            components=[
                {"kind": "persistence", "config": geometry},
                {"kind": "climatology", "config": geometry},
            ],
        )

    def config(self) -> dict[str, Any]:
        """The constructor keywords that rebuild this pool (JSON-able)."""
        return {
            "context": self.context,
            "horizon": self.horizon,
            "components": self.components,
            "weights": self.weights,
            "labels": self.labels,
        }

    @property
    def composition(self) -> str:
        """The models and their shares, e.g. ``vae-s0 (vae) x1, diff-s0 (diffusion) x1``."""
        kinds = [s["kind"] for s in self.components]
        return ", ".join(
            f"{lab} ({kind}) x{w:g}"
            for lab, kind, w in zip(self.labels, kinds, self.weights, strict=True)
        )

    def __repr__(self) -> str:
        return f"PooledEnsemble({self.composition})"

    def _adopt(self, models: list[Any]) -> None:
        """Take fitted ``models`` as the pool's, after checking that they fit together."""
        first = models[0]
        for label, model in zip(self.labels, models, strict=True):
            if isinstance(model, PooledEnsemble):
                raise ForecastError(
                    f"pool model {label!r} is a pool itself; a pool cannot hold another pool, "
                    "pool the models themselves"
                )
            if getattr(model, "description", None) is None:
                raise ForecastError(f"pool model {label!r} is not fitted; fit or load it first")
            geometry = (model.context, model.horizon)
            if geometry != (self.context, self.horizon):
                raise ForecastError(
                    f"pool model {label!r} has context {geometry[0]} and horizon {geometry[1]}, "
                    f"the pool {self.context} and {self.horizon}; pool models of one geometry"
                )
            if list(model.variables) != list(first.variables):
                raise ForecastError(
                    f"pool model {label!r} forecasts {list(model.variables)}, "
                    f"{self.labels[0]!r} {list(first.variables)}; pool models of one data set"
                )
            if model is not first:
                _check_same_data(first.description, model.description, label)
        self.models = models
        self.description = first.description
        self.variables = list(first.variables)
        self.step = first.step
        share_first_guesses(models)

    # -- protocol ----------------------------------------------------------------------------
    def fit(self, train: xr.Dataset, valid: xr.Dataset | None = None, *, jobs: int = 1) -> Self:
        """Build and fit every model of the pool on ``train`` (and ``valid``); a component's
        config without ``context``/``horizon`` gets the pool's. ``jobs > 1`` fits that many
        models at once, each in its own process (:mod:`forecast.workers`)."""
        from forecast.workers import fit_models

        geometry = {"context": self.context, "horizon": self.horizon}
        specs = [
            {"kind": s["kind"], "config": {**geometry, **s["config"]}} for s in self.components
        ]
        progress = all(
            (s["config"].get("train") or {}).get("progress", True) for s in self.components
        )
        self._adopt(
            fit_models(specs, train, valid, labels=self.labels, jobs=jobs, progress=progress)
        )
        return self

    def sample(self, context: xr.Dataset, n_members: int, *, seed: int | None = None) -> xr.Dataset:
        """Draw ``n_members`` pooled members: member ``m`` from model ``member_sources(m)``.

        Returns the standard ensemble layout with members numbered ``0 .. n_members - 1``;
        member ``m`` depends only on ``(seed, m)``. Every model draws on one torch thread; with
        torch on N threads, N models draw at once (:func:`side_by_side`), and the members are
        the same whatever N.
        """
        n = check_members(n_members)
        self._require_models()
        sources = member_sources(self.weights, n)
        draws = [
            partial(model.sample, context, int((sources == k).sum()), seed=model_seed(seed, k))
            for k, model in enumerate(self.models)
            if (sources == k).any()
        ]
        with shared_first_guesses() as memo:  # models that share a first guess predict it once
            parts = side_by_side(draws, memo)
        return _pooled(parts, sources)

    def sample_batch(
        self, contexts: Sequence[xr.Dataset], n_members: int, seeds: Sequence[int | None]
    ) -> list[xr.Dataset]:
        """:meth:`sample` for each context and seed, each model drawing for all the contexts
        at once (:func:`forecast.models.base.sample_many`): equal to the one-by-one draws up
        to float32 rounding, and much faster where each model draws few members."""
        n = check_members(n_members)
        self._require_models()
        check_seeds(contexts, seeds)
        sources = member_sources(self.weights, n)
        draws = [
            partial(
                sample_many,
                model,
                contexts,
                int((sources == k).sum()),
                [model_seed(s, k) for s in seeds],
            )
            for k, model in enumerate(self.models)
            if (sources == k).any()
        ]
        with shared_first_guesses() as memo:
            by_model = side_by_side(draws, memo)
        return [_pooled([part[i] for part in by_model], sources) for i in range(len(contexts))]

    def _require_models(self) -> None:
        if not self.models:
            raise ForecastError("pooled model is not fitted; call fit(train) or load it first")

    def member_labels(self, n_members: int) -> list[str]:
        """The label of the model that draws each of ``n_members`` pooled members."""
        sources = member_sources(self.weights, check_members(n_members))
        return [self.labels[k] for k in sources]

    def label_members(self, ens: xr.Dataset) -> xr.Dataset:
        """``ens``, an ensemble of this pool, with the coordinate ``source_model`` over its
        members (the model that drew each one; written to NetCDF and Zarr by the exporters)."""
        labels = self.member_labels(ens.sizes[MEMBER])
        coord = xr.Variable(MEMBER, labels, {"long_name": "model of the pool that drew the member"})
        return ens.assign_coords({SOURCE_MODEL: coord})

    # -- latent spaces of the models ------------------------------------------------------------
    def latent_models(self) -> dict[str, Any]:
        """The pool's models that have a latent space (diffusion, VAE), by label.

        A pool has no latent space of its own: latents of different models do not mix, so a
        latent path walks one of these models.
        """
        from forecast.dims import LatentForecaster

        return {
            label: model
            for label, model in zip(self.labels, self.models, strict=True)
            if isinstance(model, LatentForecaster)
        }

    def member_latent(
        self, context: xr.Dataset, member: int, *, seed: int | None = None
    ) -> tuple[str, Any]:
        """The label of the model that draws pooled member ``member`` under ``seed``, and
        that member's latent: the model's own ``prior`` draw, so ``decode`` of it gives the
        member (a diffusion model decodes with its deterministic latent sampler, which may
        differ a little from the sampler of :meth:`sample`)."""
        self._require_models()
        if member < 0:
            raise ForecastError(f"member must be >= 0, got {member}")
        sources, index = member_origins(self.weights, member + 1)
        k, j = int(sources[member]), int(index[member])
        label = self.labels[k]
        model = self.latent_models().get(label)
        if model is None:
            raise ForecastError(
                f"pooled member {member} comes from {label!r} ({self.components[k]['kind']}), "
                "which has no latent space; pick a member of a diffusion or VAE model of the pool"
            )
        return label, model.prior(context, j + 1, seed=model_seed(seed, k))[j]

    # -- checkpoints -------------------------------------------------------------------------
    def checkpoint_content(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """What :meth:`save` writes: ``(arrays, metadata)``, every model's arrays under
        ``c<k>/``."""
        if not self.models:
            raise ForecastError("pooled model is not fitted; call fit(train) before save")
        arrays: dict[str, np.ndarray] = {}
        metas = []
        for k, model in enumerate(self.models):
            content, meta = model.checkpoint_content()
            arrays.update({f"c{k}/{name}": value for name, value in content.items()})
            metas.append(meta)
        return arrays, checkpoint_meta(self, {"models": metas})

    def save(self, path: str | Path) -> None:
        """Write the pool, with every model's weights and metadata, to one checkpoint file."""
        save_checkpoint(path, *self.checkpoint_content())

    @classmethod
    def load(cls, path: str | Path) -> Self:
        """Read a pool written by :meth:`save`."""
        arrays, meta = load_checkpoint(path)
        return cls.from_checkpoint(arrays, meta, where=str(path))

    @classmethod
    def from_checkpoint(
        cls, arrays: dict[str, np.ndarray], meta: dict[str, Any], where: str = "checkpoint"
    ) -> Self:
        """Rebuild a pool from :meth:`checkpoint_content` (``where`` names it in errors)."""
        from forecast.models import MODELS

        check_kind(meta, cls.kind, where)
        try:
            pool = cls(**meta["config"])
            metas = meta["state"]["models"]
        except (KeyError, TypeError) as err:
            raise ForecastError(
                f"{where} is not a readable pooled checkpoint ({type(err).__name__}: {err}); "
                "rebuild it with `forecast pool`"
            ) from None
        models = []
        for k, (label, sub) in enumerate(zip(pool.labels, metas, strict=True)):
            prefix = f"c{k}/"
            own = {n[len(prefix) :]: a for n, a in arrays.items() if n.startswith(prefix)}
            at = f"{where} (pool model {label!r})"
            models.append(MODELS.get(sub.get("kind")).from_checkpoint(own, sub, where=at))
        pool._adopt(models)
        return pool


def _pooled(parts: Sequence[xr.Dataset], sources: np.ndarray) -> xr.Dataset:
    """The pooled ensemble from the models' ensembles ``parts`` (in model order, each holding
    the members ``sources`` gives it): member ``m`` from model ``sources[m]``."""
    stacked = xr.concat(parts, dim=MEMBER, coords="minimal", compat="override", join="exact")
    # stacked holds the models' members block by block; pooled member m sits at inv[m]
    by_model = np.argsort(sources, kind="stable")
    inv = np.empty(len(sources), dtype=int)
    inv[by_model] = np.arange(len(sources))
    return stacked.isel({MEMBER: inv}).assign_coords({MEMBER: np.arange(len(sources))})


def side_by_side(draws: Sequence[Callable[[], Any]], memo: Memo) -> list[Any]:
    """``[draw() for draw in draws]``, each draw on one torch thread: with torch set to N
    threads, N draws run at once in worker threads that join the caller's
    :func:`shared_first_guesses` block ``memo``. So a pool's members are the same whatever the
    thread count, and on several cores its models draw side by side instead of one after
    the other on too small a batch for the threads to share."""
    threads = torch.get_num_threads()
    if threads == 1 or not draws:
        return [draw() for draw in draws]

    def run(draw: Callable[[], Any]) -> Any:
        with shared_first_guesses(memo):
            return draw()

    workers = ThreadPoolExecutor(min(threads, len(draws)), initializer=_one_torch_thread)
    try:
        return list(workers.map(run, draws))
    finally:
        workers.shutdown(wait=True, cancel_futures=True)
        torch.set_num_threads(threads)  # the workers' 1 is also the default of later threads


def _one_torch_thread() -> None:
    """Put this (new) thread on one torch thread for good: its lazy start-up is done first, as
    it would otherwise take the process default of that moment."""
    torch.get_num_threads()
    torch.set_num_threads(1)


def share_first_guesses(models: Sequence[Any]) -> None:
    """Give models whose first guesses are equal (the snapshots of one seed, each loaded with
    its own copy) one first-guess object, so that :func:`shared_first_guesses` computes its
    predictions once per input. Equal: the same class, settings, state and arrays (the time
    the fit took aside)."""
    from forecast.training.loop import untimed

    seen: dict[tuple[str, str, str], Any] = {}
    for model in models:
        guess = getattr(model, "fg", None)
        if not hasattr(guess, "state"):
            continue  # no first guess
        arrays, meta = guess.state()
        names = sorted(arrays)
        key = (
            type(guess).__name__,
            json.dumps(untimed(meta), sort_keys=True, default=str),
            array_key(np.array(names, dtype=object), *(arrays[name] for name in names)),
        )
        model.fg = seen.setdefault(key, guess)


def _flatten(
    models: list[Any], weights: list[float], labels: Sequence[str] | None
) -> tuple[list[Any], list[float], list[str]]:
    """``(models, weights, labels)`` with every pool among ``models`` replaced by its models."""
    names = list(labels) if labels is not None else [f"{m.kind}-{k}" for k, m in enumerate(models)]
    out, out_weights, out_labels = [], [], []
    for model, weight, name in zip(models, weights, names, strict=True):
        if isinstance(model, PooledEnsemble):
            total = sum(model.weights)
            out += model.models
            out_weights += [weight * w / total for w in model.weights]
            out_labels += [f"{name}/{sub}" for sub in model.labels]
        else:
            out.append(model)
            out_weights.append(weight)
            out_labels.append(name)
    return out, out_weights, out_labels


def with_member_sources(model: Any, ens: xr.Dataset) -> xr.Dataset:
    """``ens`` with the ``source_model`` coordinate (:meth:`PooledEnsemble.label_members`) when
    ``model`` is a pool or wraps one (``label_members``); any other model's ensemble unchanged."""
    label = getattr(model, "label_members", None)
    return label(ens) if callable(label) else ens


def _with_training(components: list[dict[str, Any]], train: dict[str, Any]) -> list[dict]:
    """``components`` with ``train`` merged into the ``train`` table of each model that has one;
    refused when none trains (apart from ``progress``, harmless for a quick fit)."""
    out, trained = [], False
    for spec in components:
        if _trains(spec["kind"]):
            config = dict(spec["config"])
            config["train"] = {**dict(config.get("train") or {}), **train}
            spec, trained = {"kind": spec["kind"], "config": config}, True
        out.append(spec)
    if not trained and set(train) - {"progress"}:
        raise ForecastError("no model of this pool trains; remove the [train] settings")
    return out


def _trains(kind: str) -> bool:
    """Whether the registered model ``kind`` has training settings (a ``train`` table)."""
    from forecast.models import MODELS

    return "train" in inspect.signature(MODELS.get(kind)).parameters


def _keep(spec: Mapping[str, Any]) -> Any:
    return (spec["config"].get("train") or {}).get("keep")


def _per_step(
    components: list[dict[str, Any]], weights: list[float]
) -> tuple[list[dict[str, Any]], list[float]]:
    """``(components, weights)`` with every component whose ``train.keep`` is a list of steps
    repeated once per step (a snapshot ensemble; such models train in one run, see
    :mod:`forecast.models.snapshots`)."""
    out, out_weights = [], []
    for spec, weight in zip(components, weights, strict=True):
        steps = _keep(spec)
        if not isinstance(steps, list | tuple):
            out.append(spec)
            out_weights.append(weight)
            continue
        if (
            not steps
            or not all(isinstance(s, int) and not isinstance(s, bool) for s in steps)
            or len(set(steps)) != len(steps)
        ):
            raise ForecastError(
                f"a list of train.keep steps must hold distinct step numbers, got {steps!r}"
            )
        for step in steps:
            config = dict(spec["config"])
            config["train"] = {**dict(config["train"]), "keep": int(step)}
            out.append({"kind": spec["kind"], "config": config})
            out_weights.append(weight)
    return out, out_weights


def _per_seed(
    components: list[dict[str, Any]], weights: list[float], seeds: Sequence[int]
) -> tuple[list[dict[str, Any]], list[float], list[str]]:
    """``(components, weights, labels)`` with every component repeated once per seed."""
    if (
        isinstance(seeds, str | bytes)
        or not seeds
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)
        or len(set(seeds)) != len(seeds)
    ):
        raise ForecastError(f"pool seeds must be distinct integers, got {seeds!r}")
    out, out_weights, labels = [], [], []
    for k, (spec, weight) in enumerate(zip(components, weights, strict=True)):
        if not _trains(spec["kind"]):
            raise ForecastError(
                f"pool component {spec['kind']!r} has no training seed; drop seeds or list "
                "such models once"
            )
        for seed in seeds:
            config = dict(spec["config"])
            config["train"] = {**dict(config.get("train") or {}), "seed": int(seed)}
            out.append({"kind": spec["kind"], "config": config})
            out_weights.append(weight)
            labels.append(f"{spec['kind']}-{k}-s{seed}")
    return out, out_weights, labels


def _check_same_data(a: Mapping[str, Any], b: Mapping[str, Any], label: str) -> None:
    """Refuse pooling models whose stored data descriptions differ (grid, sensors, units...)."""
    if a == b:
        return
    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    raise ForecastError(
        f"pool model {label!r} was trained on different data (description differs in "
        f"{', '.join(map(str, keys))}); pool models trained on the same data set"
    )
