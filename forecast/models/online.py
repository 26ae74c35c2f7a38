"""Online spread calibration: a forecaster's spread rescaled by its own recent verified errors.

The generative models fit their spread factors once, on windows before the forecast period.
When the weather changes regime (P2's test week: errors at 3-12 h 1.5 times the training
days', docs/vae.md) those factors stay wrong for as long as the regime lasts. Forecast centres
recalibrate from a sliding window of recent forecasts; :class:`OnlineSpread` does that for any
fitted forecaster (a diffusion model, a VAE, a pool).

At issue time ``t`` it re-forecasts each of the ``history`` steps ``s`` before ``t`` with
``members`` reference members (seeded from ``reference_seed`` and ``s``, not from the caller's
seed) and sums, per variable and lead ``L``, over the windows already verified at ``t``
(``s + L <= t``) and over points: the squared error of the reference mean, and the reference
variance times ``(M + 1) / M``. With ``r`` their ratio and ``n`` the number of verified windows
at that lead, the lead's factor is::

    g = sqrt((n * r + w) / (n + w))

(``w = prior_weight`` pseudo-windows at factor 1 keep it near 1 while few windows are
verified). Members become ``c + g * (x - c)``, with ``c`` the mean of the reference ensemble
at ``t``: a deterministic function of the context, so member ``m`` still depends only on
``(seed, m)``, and for a latent base model ``decode`` stays deterministic and ``encode``
inverts it.

With ``persistence_blend`` the mean moves towards persistence (the last observation) too, by
a weight per lead fitted on the same verified windows: ``a = clip(sum(d e) / sum(d d), 0, 1)``
times ``n / (n + w)``, with ``d`` the persistence forecast minus the reference mean and ``e``
the observation minus the reference mean (the least-squares weight of the two-forecast blend,
shrunk towards the model alone). Members then become ``c + g (x - c) + a (p - c)`` with ``p``
the persistence forecast, and ``g`` is computed from the errors of the blended mean.

With ``diurnal_width`` (hours) the spread factor also follows the time of day: forecast errors
at the first leads depend on the issue hour (a night-time forecast of 2 m temperature is easier
than one through the morning warming). The same sums, with each verified window weighted by a
circular kernel of the distance between its issue hour and the issue time's
(``exp(kappa (cos(2 pi d / 24 h) - 1))``, half weight at ``d = diurnal_width``), give ``r_h`` and
the effective number of windows ``n_h``; the factor is then
``g_h = sqrt((n_h r_h + w g^2) / (n_h + w))``, the hour's ratio shrunk towards the all-hours
factor ``g`` above.

The model reads ``history`` steps of context more than its base model (its ``context`` is the
base's plus ``history``), all of them observed at the issue time. Reference ensembles are cached
by issue time and context values, so forecasts for consecutive issue times (a protocol run, a
week of forecasts) re-forecast each past step once; the missing ones are drawn together (up to
24 in one batched draw of the base model, :func:`forecast.models.base.sample_many`: equal to
one at a time up to float32 rounding, and far cheaper on a CPU for a diffusion model or a
pool). :meth:`OnlineSpread.use_reference_cache`
keeps them on disk too, so that the next process (the next hour's ``forecast predict``)
re-forecasts only the hours it has not seen.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd
import xarray as xr

from forecast.checkpoint import load_checkpoint, save_checkpoint
from forecast.dims import LEAD_TIME, MEMBER, TIME, space_dims
from forecast.errors import ForecastError
from forecast.models.base import (
    check_kind,
    check_members,
    checkpoint_meta,
    issue_seed,
    sample_many,
    values_of,
)
from forecast.models.wrapped import WrapperModel, base_content, base_spec, load_base

#: A progress bar (on a terminal) from this many reference forecasts to run on.
_QUIET_BELOW = 8
#: Reference forecasts drawn together (one batched draw of the base model).
_REFERENCE_BATCH = 24


def _positive_int(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ForecastError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def online_factors(
    squared_error: np.ndarray,
    variance: np.ndarray,
    windows: np.ndarray,
    prior_weight: float,
    prior: np.ndarray | float = 1.0,
) -> np.ndarray:
    """Spread factors ``(C, H)`` from sums over verified windows and points.

    ``squared_error`` and ``variance`` are ``(C, H)`` sums of the squared error of the
    reference-ensemble mean and of its variance times ``(M + 1) / M``; ``windows`` ``(H,)`` the
    number of verified windows per lead (or their summed weights).
    ``g = sqrt((n r + w p) / (n + w))`` with ``w = prior_weight``, ``p = prior`` (the squared
    factor shrunk towards, default 1) and ``r = squared_error / variance`` (1 where the variance
    is 0); ``sqrt(p)`` where there is neither a window nor prior weight.
    """
    ratio = np.divide(squared_error, variance, out=np.ones_like(squared_error), where=variance > 0)
    n = np.broadcast_to(np.asarray(windows, dtype=np.float64), ratio.shape)
    p = np.broadcast_to(np.asarray(prior, dtype=np.float64), ratio.shape)
    total = n + prior_weight
    mixed = np.divide(n * ratio + prior_weight * p, total, out=p.copy(), where=total > 0)
    return np.sqrt(mixed)


def persistence_weights(
    cross: np.ndarray, persistence_sq: np.ndarray, windows: np.ndarray, prior_weight: float
) -> np.ndarray:
    """Blend weights ``(C, H)`` of persistence from sums over verified windows and points.

    ``cross`` is the sum of ``d * e`` and ``persistence_sq`` of ``d * d`` (``d``: persistence
    minus the reference mean, ``e``: observation minus the reference mean). The least-squares
    weight ``cross / persistence_sq``, clipped to [0, 1], times ``n / (n + w)`` (0 where
    ``persistence_sq`` is 0 or no window was verified).
    """
    raw = np.divide(cross, persistence_sq, out=np.zeros_like(cross), where=persistence_sq > 0)
    n = np.broadcast_to(np.asarray(windows, dtype=np.float64), raw.shape)
    total = n + prior_weight
    share = np.divide(n, total, out=np.zeros_like(raw), where=total > 0)
    return np.clip(raw, 0.0, 1.0) * share


def diurnal_kernel(hours: np.ndarray, width: float) -> np.ndarray:
    """Weights of windows issued ``hours`` (time-of-day distance, hours) from the issue time:
    ``exp(kappa (cos(2 pi h / 24) - 1))``, 1 at ``h = 0`` and 1/2 at ``h = width``."""
    kappa = math.log(2.0) / (1.0 - math.cos(2.0 * math.pi * width / 24.0))
    return np.exp(kappa * (np.cos(2.0 * np.pi * np.asarray(hours, dtype=np.float64) / 24.0) - 1.0))


def hour_of_day(times: np.ndarray) -> np.ndarray:
    """Time of day of ``times`` (datetime64) in hours, as floats in [0, 24)."""
    t = pd.DatetimeIndex(np.asarray(times))
    return np.asarray((t - t.normalize()) / pd.Timedelta(hours=1), dtype=np.float64)


@dataclass(frozen=True)
class Calibration:
    """What :class:`OnlineSpread` applies at one issue time: the base model's context, the
    reference mean ``centre`` ``(C, H, *space)``, the spread factors ``gain`` ``(C, H)``, the
    persistence weights ``weight`` ``(C, H)`` (zeros without the blend) and the persistence
    forecast ``persistence`` ``(C, 1, *space)``."""

    base_context: xr.Dataset
    centre: np.ndarray
    gain: np.ndarray
    weight: np.ndarray
    persistence: np.ndarray

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Members ``x`` ``(M, C, H, *space)`` moved to ``c + g (x - c) + a (p - c)``."""
        shape = (1, *self.gain.shape, *([1] * (x.ndim - 3)))
        g, a = self.gain.reshape(shape), self.weight.reshape(shape)
        c = self.centre[None]
        return c + g * (x - c) + a * (self.persistence[None] - c)

    def undo(self, x: np.ndarray) -> np.ndarray:
        """The inverse of :meth:`apply`."""
        shape = (1, *self.gain.shape, *([1] * (x.ndim - 3)))
        g, a = self.gain.reshape(shape), self.weight.reshape(shape)
        c = self.centre[None]
        return c + (x - c - a * (self.persistence[None] - c)) / g


class OnlineSpread(WrapperModel):
    """A fitted forecaster whose spread is rescaled per lead by its recent verified errors.

    Parameters
    ----------
    context, horizon
        Window geometry of the base model; this model reads ``context + history`` steps.
    model
        The base model as ``{"kind": registry name, "config": constructor keywords}``;
        :meth:`fit` builds and fits it. :meth:`from_model` wraps a fitted one.
    history
        Past issue times (steps before the issue time) re-forecast for the calibration
        (default: three horizons).
    members
        Members of each reference ensemble (>= 2).
    prior_weight
        Weight of the factor 1, in pseudo-windows (default: one horizon).
    reference_seed
        Seed of the reference ensembles (with each issue time, :func:`issue_seed`).
    persistence_blend
        Also move the mean towards persistence by a weight per lead fitted on the verified
        windows (off by default).
    diurnal_width
        Hours: let the spread factor follow the time of day, weighting verified windows by a
        kernel of their issue hour's distance from the issue time's (half weight at this
        distance, shrunk towards the all-hours factor); ``None`` (default): off.
    train
        Training settings merged over the base model's ``train`` table (``forecast train``).
    """

    kind: ClassVar[str] = "online-spread"

    def __init__(
        self,
        *,
        context: int,
        horizon: int,
        model: Mapping[str, Any] | None = None,
        history: int | None = None,
        members: int = 32,
        prior_weight: float | None = None,
        reference_seed: int = 0,
        persistence_blend: bool = False,
        diurnal_width: float | None = None,
        train: Mapping[str, Any] | None = None,
    ) -> None:
        self.base_context = _positive_int("context", context)
        self.horizon = _positive_int("horizon", horizon)
        wrap = "forecast online-spread --checkpoint MODEL --out OUT"
        self.spec = base_spec(model, train, owner=self.kind, command=wrap)
        self.history = _positive_int("history", 3 * self.horizon if history is None else history)
        self.members = _positive_int("members", members, minimum=2)
        weight = self.horizon if prior_weight is None else prior_weight
        if (
            isinstance(weight, bool)
            or not isinstance(weight, int | float | np.number)
            or not (math.isfinite(weight) and weight >= 0)
        ):
            raise ForecastError(f"prior_weight must be a finite number >= 0, got {weight!r}")
        self.prior_weight = float(weight)
        if isinstance(reference_seed, bool) or not isinstance(reference_seed, int | np.integer):
            raise ForecastError(f"reference_seed must be an integer, got {reference_seed!r}")
        self.reference_seed = int(reference_seed)
        if not isinstance(persistence_blend, bool | np.bool_):
            raise ForecastError(
                f"persistence_blend must be true or false, got {persistence_blend!r}"
            )
        self.persistence_blend = bool(persistence_blend)
        if diurnal_width is not None and (
            isinstance(diurnal_width, bool)
            or not isinstance(diurnal_width, int | float | np.number)
            or not 0 < diurnal_width < 12
        ):
            raise ForecastError(
                f"diurnal_width must be a number of hours in (0, 12), or None for off; got "
                f"{diurnal_width!r}"
            )
        self.diurnal_width = None if diurnal_width is None else float(diurnal_width)
        self.context = self.base_context + self.history
        self.model: Any = None
        self.description: dict[str, Any] | None = None
        self.variables: list[str] = []
        self.step: pd.Timedelta | None = None
        self._cache: OrderedDict[tuple[int, str], tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._disk: Path | None = None  # use_reference_cache: this model's folder

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def from_model(cls, model: Any, **options: Any) -> Self:
        """Wrap the fitted ``model`` (``options``: ``history``, ``members``, ``prior_weight``,
        ``reference_seed``, ``persistence_blend``, ``diurnal_width``)."""
        if isinstance(model, OnlineSpread):
            raise ForecastError("an online-spread model cannot wrap another; wrap its base model")
        spec = {"kind": model.kind, "config": model.config()}
        wrapper = cls(context=model.context, horizon=model.horizon, model=spec, **options)
        wrapper._adopt(model)
        return wrapper

    @classmethod
    def tiny(cls, context: int, horizon: int) -> Self:
        """Persistence (context 1) with ``context - 1`` steps of history (contract test)."""
        if context < 2:
            raise ForecastError("the tiny online-spread model needs a context of at least 2")
        return cls(
            context=1,
            horizon=horizon,
            model={"kind": "persistence", "config": {}},
            history=context - 1,
            members=4,
        )

    def config(self) -> dict[str, Any]:
        """The constructor keywords that rebuild this model (JSON-able)."""
        return {
            "context": self.base_context,
            "horizon": self.horizon,
            "model": self.spec,
            "history": self.history,
            "members": self.members,
            "prior_weight": self.prior_weight,
            "reference_seed": self.reference_seed,
            "persistence_blend": self.persistence_blend,
            "diurnal_width": self.diurnal_width,
        }

    def __repr__(self) -> str:
        return (
            f"OnlineSpread({self.spec['kind']}, history={self.history}, "
            f"members={self.members}, prior_weight={self.prior_weight:g}"
            + (", persistence_blend=True" if self.persistence_blend else "")
            + ("" if self.diurnal_width is None else f", diurnal_width={self.diurnal_width:g}")
            + ")"
        )

    def _adopt(self, model: Any) -> None:
        """Take the fitted ``model`` as the base, after checking that it fits the geometry."""
        from forecast.sampling.scenarios import is_latent

        if isinstance(model, OnlineSpread):
            raise ForecastError("an online-spread model cannot wrap another; wrap its base model")
        if getattr(model, "description", None) is None:
            raise ForecastError("the base model is not fitted; fit or load it first")
        if (model.context, model.horizon) != (self.base_context, self.horizon):
            raise ForecastError(
                f"the base model has context {model.context} and horizon {model.horizon}, the "
                f"online-spread model {self.base_context} and {self.horizon}"
            )
        self.model = model
        self.description = model.description
        self.variables = list(model.variables)
        self.step = model.step
        self._cache.clear()
        self._disk = None
        # a latent base model makes this one latent too (prior / decode / encode)
        self.__class__ = LatentOnlineSpread if is_latent(model) else OnlineSpread

    # -- protocol ----------------------------------------------------------------------------
    def _take(self, base: Any, train: xr.Dataset) -> None:
        """The base model fitted by :meth:`fit` (which needs no fitting of its own: the online
        factors come from the context at each issue time)."""
        self._adopt(base)

    def sample(self, context: xr.Dataset, n_members: int, *, seed: int | None = None) -> xr.Dataset:
        """The base model's ensemble from the last ``base_context`` steps of ``context``, moved
        by the spread factors (and persistence weights) of :meth:`factors`; member ``m``
        depends only on ``(seed, m)``."""
        n = check_members(n_members)
        cal = self._calibration(context)
        return self._moved(self.model.sample(cal.base_context, n, seed=seed), cal)

    def factors(self, context: xr.Dataset) -> xr.Dataset:
        """The spread factors and persistence weights ``(variable, lead_time)`` this model
        applies for ``context`` (``spread_factor``, ``persistence_weight``)."""
        cal = self._calibration(context)
        leads = self.step * np.arange(1, self.horizon + 1)
        dims = ("variable", LEAD_TIME)
        return xr.Dataset(
            {"spread_factor": (dims, cal.gain), "persistence_weight": (dims, cal.weight)},
            coords={"variable": self.variables, LEAD_TIME: leads},
        )

    def label_members(self, ens: xr.Dataset) -> xr.Dataset:
        """``ens`` with the base pool's ``source_model`` coordinate (unchanged for other bases)."""
        from forecast.models.pooled import with_member_sources

        return with_member_sources(self.model, ens)

    def use_reference_cache(self, folder: str | Path, max_files: int | None = None) -> Path:
        """Keep the reference ensembles on disk in ``folder`` as well as in memory, so that a
        later process re-forecasts only the past hours it has not seen (an hourly
        ``forecast predict`` then runs one new reference forecast instead of ``history``).

        The files go to a sub-folder named by a hash of this model (the base model's arrays and
        metadata, ``members``, ``reference_seed``), one per past issue time and context
        (``<time>-<context hash>.safetensors``: the ensemble's mean and summed variance, about
        ``8 * variables * horizon * points`` bytes), each written to a temporary name and
        renamed. Results are the same with and without the cache. ``max_files``: first delete
        the least recently written files of the sub-folder beyond that many (a cache that does
        not grow without bound). Returns the sub-folder.
        """
        self._require_fitted()
        folder = Path(folder)
        if folder.exists() and not folder.is_dir():
            raise ForecastError(f"reference cache {folder} is a file; pass a folder")
        arrays, meta = self.model.checkpoint_content()
        digest = hashlib.sha256()
        digest.update(
            json.dumps(
                [meta, self.base_context, self.members, self.reference_seed], sort_keys=True
            ).encode()
        )
        for name in sorted(arrays):
            digest.update(name.encode())
            digest.update(np.ascontiguousarray(arrays[name]).tobytes())
        if max_files is not None and (isinstance(max_files, bool) or max_files < 0):
            raise ForecastError(f"max_files must be an integer >= 0, got {max_files!r}")
        disk = folder / digest.hexdigest()[:16]
        disk.mkdir(parents=True, exist_ok=True)
        if max_files is not None:
            files = sorted(disk.glob("*.safetensors"), key=lambda f: f.stat().st_mtime)
            for old in files[: max(len(files) - max_files, 0)]:
                old.unlink(missing_ok=True)
        self._disk = disk
        return disk

    def _disk_path(self, key: tuple[int, str]) -> Path | None:
        """The cache file of reference ensemble ``key`` (None without a disk cache)."""
        return None if self._disk is None else self._disk / f"{key[0]}-{key[1]}.safetensors"

    def _read_disk(self, key: tuple[int, str]) -> tuple[np.ndarray, np.ndarray] | None:
        """Reference ensemble ``key`` from the disk cache (None where it has no file)."""
        path = self._disk_path(key)
        if path is None or not path.is_file():
            return None
        try:
            arrays, meta = load_checkpoint(path)
            mean, var_sum = arrays["mean"], arrays["variance"]
        except (ForecastError, KeyError) as err:
            problem = f"it is unreadable: {err}"
        else:
            shape = (len(self.variables), self.horizon)
            if meta.get("key") != [key[0], key[1]]:
                problem = "it holds the forecast of another issue time or context"
            elif var_sum.shape != shape or mean.shape[:2] != shape:
                problem = f"its arrays are {var_sum.shape[:2]}, this model's {shape}"
            else:
                return mean, var_sum
        raise ForecastError(
            f"reference cache file {path} cannot be used ({problem}); delete the folder "
            f"{path.parent} and run again"
        )

    # -- calibration -------------------------------------------------------------------------
    def _base_context(self, context: xr.Dataset) -> xr.Dataset:
        """The base model's context: the last ``base_context`` steps of ``context``, after
        checking its length and data."""
        from forecast.data import check_compatible

        self._require_fitted()
        got = context.sizes.get(TIME, 0) if TIME in context.dims else 0
        if got != self.context:
            raise ForecastError(
                f"context has {got} time steps, the online-spread model needs exactly "
                f"{self.context} ({self.base_context} for its base model and {self.history} of "
                "history for the spread calibration); pass "
                "forecast.data.context_of(ds, issue_time, model.context)"
            )
        check_compatible(self.description, context)
        return context.isel({TIME: slice(self.history, None)})

    def _calibration(self, context: xr.Dataset) -> Calibration:
        """The :class:`Calibration` of ``context``'s issue time."""
        from tqdm.auto import tqdm

        base_context = self._base_context(context)
        values = values_of(context, self.variables)
        channels, horizon = len(self.variables), self.horizon
        # per verified window, summed over points: squared error of the reference mean, its
        # variance, and the persistence cross terms; [0] over all windows, [1] weighted by the
        # time-of-day kernel (diurnal_width only)
        sums = np.zeros((2, 4, channels, horizon))
        windows = np.zeros((2, horizon))
        last = self.context - 1
        kernel = None
        if self.diurnal_width is not None:
            hours = hour_of_day(context[TIME].values)
            kernel = diurnal_kernel(hours - hours[last], self.diurnal_width)
        centre = None
        keys = {i: self._key(context, values, i) for i in range(self.base_context - 1, last + 1)}
        known = {  # in memory or on disk: no reference forecast to run
            key: key in self._cache or bool((path := self._disk_path(key)) and path.is_file())
            for key in keys.values()
        }
        todo = [(issue, key) for issue, key in keys.items() if not known[key]]
        bar = tqdm(
            total=len(todo),
            desc="online spread: reference forecasts",
            leave=False,
            disable=None if len(todo) > _QUIET_BELOW else True,  # None: only on a terminal
        )
        # drawn together (far cheaper on a CPU), in chunks of equal size up to _REFERENCE_BATCH
        chunks = math.ceil(len(todo) / _REFERENCE_BATCH)
        bounds = np.linspace(0, len(todo), chunks + 1).round().astype(int)
        for a, b in pairwise(bounds):
            self._forecast_references(context, todo[a:b])
            bar.update(b - a)
        bar.close()
        for issue, key in keys.items():
            mean, var_sum = self._reference(context, issue, key)
            verified = min(last - issue, horizon)
            if not verified:
                centre = mean
                continue
            obs = np.moveaxis(values[issue + 1 : issue + 1 + verified], 0, 1)  # (C, k, ...)
            err = (obs - mean[:, :verified]).reshape(channels, verified, -1)
            d = (values[issue][:, None] - mean[:, :verified]).reshape(channels, verified, -1)
            part = np.stack(
                [(err**2).sum(-1), var_sum[:, :verified], (d * err).sum(-1), (d**2).sum(-1)]
            )
            for j, w in enumerate((1.0,) if kernel is None else (1.0, kernel[issue])):
                sums[j, ..., :verified] += w * part
                windows[j, :verified] += w
        weight = np.zeros((channels, horizon))
        if self.persistence_blend:
            weight = persistence_weights(sums[0, 2], sums[0, 3], windows[0], self.prior_weight)

        def gain(j: int, prior: np.ndarray | float) -> np.ndarray:
            squared, variance, cross, persistence_sq = sums[j]
            # the spread follows the errors of the blended mean: sum (e - a d)^2
            squared = np.maximum(squared - 2 * weight * cross + weight**2 * persistence_sq, 0.0)
            return online_factors(squared, variance, windows[j], self.prior_weight, prior)

        factors = gain(0, 1.0)
        if kernel is not None:  # the issue hour's factor, shrunk towards the all-hours one
            factors = gain(1, factors**2)
        return Calibration(
            base_context=base_context,
            centre=centre,
            gain=factors,
            weight=weight,
            persistence=values[last][:, None],
        )

    def _key(self, context: xr.Dataset, values: np.ndarray, issue: int) -> tuple[int, str]:
        """Cache key of the reference ensemble issued at step ``issue``: its time and a hash of
        its context values."""
        window = values[issue - self.base_context + 1 : issue + 1]
        digest = hashlib.sha1(np.ascontiguousarray(window).tobytes()).hexdigest()
        return pd.Timestamp(context[TIME].values[issue]).value, digest

    def _reference(
        self, context: xr.Dataset, issue: int, key: tuple[int, str]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Mean ``(C, H, *space)`` and summed variance ``(C, H)`` of the reference ensemble
        issued at step ``issue`` of ``context`` (cached)."""
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        stored = self._read_disk(key)
        if stored is None:
            self._forecast_references(context, [(issue, key)])
            return self._cache[key]
        self._remember(key, stored)
        return stored

    def _forecast_references(
        self, context: xr.Dataset, items: Sequence[tuple[int, tuple[int, str]]]
    ) -> None:
        """Run the reference ensembles issued at the steps ``issue`` of ``context`` (with their
        cache ``key``) in one batched draw of the base model
        (:func:`forecast.models.base.sample_many`), and keep their means and summed variances
        in memory (and on disk with :meth:`use_reference_cache`)."""
        if not items:
            return
        contexts = [
            context.isel({TIME: slice(issue - self.base_context + 1, issue + 1)})
            for issue, _ in items
        ]
        seeds = [
            issue_seed(self.reference_seed, pd.Timestamp(context[TIME].values[issue]))
            for issue, _ in items
        ]
        for (_, key), ens in zip(
            items, sample_many(self.model, contexts, self.members, seeds), strict=True
        ):
            space = space_dims(ens)
            x = np.stack(
                [ens[v].transpose(MEMBER, LEAD_TIME, *space).values for v in self.variables],
                axis=1,
            ).astype(np.float64)  # (M, C, H, *space)
            m = x.shape[0]
            var_sum = x.var(axis=0, ddof=1).reshape(*x.shape[1:3], -1).sum(axis=-1) * (m + 1) / m
            stored = (x.mean(axis=0), var_sum)
            if (path := self._disk_path(key)) is not None:
                arrays = {"mean": stored[0], "variance": stored[1]}
                save_checkpoint(path, arrays, {"kind": "online-reference", "key": list(key)})
            self._remember(key, stored)

    def _remember(self, key: tuple[int, str], stored: tuple[np.ndarray, np.ndarray]) -> None:
        """Keep reference ensemble ``key`` in memory (the newest ``4 * (history + 1)``)."""
        self._cache[key] = stored
        self._cache.move_to_end(key)
        while len(self._cache) > 4 * (self.history + 1):
            self._cache.popitem(last=False)

    def _moved(self, ens: xr.Dataset, cal: Calibration) -> xr.Dataset:
        """``ens`` with every member moved by :meth:`Calibration.apply`."""
        space = space_dims(ens)
        arrays = [ens[v].transpose(MEMBER, LEAD_TIME, *space) for v in self.variables]
        moved = cal.apply(np.stack([a.values for a in arrays], axis=1))
        out = ens.copy()
        for c, (name, da) in enumerate(zip(self.variables, arrays, strict=True)):
            out[name] = da.copy(data=moved[:, c].astype(da.dtype))
        return out

    # -- checkpoints -------------------------------------------------------------------------
    def checkpoint_content(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """What :meth:`save` writes: the base model's arrays under ``base/`` and metadata."""
        self._require_fitted()
        arrays, meta = base_content(self.model)
        return arrays, checkpoint_meta(self, {"model": meta})

    @classmethod
    def from_checkpoint(
        cls, arrays: dict[str, np.ndarray], meta: dict[str, Any], where: str = "checkpoint"
    ) -> OnlineSpread:
        """Rebuild a model from :meth:`checkpoint_content` (``where`` names it in errors)."""
        check_kind(meta, cls.kind, where)
        try:
            wrapper = OnlineSpread(**meta["config"])
            sub = dict(meta["state"]["model"])
        except (KeyError, TypeError, ValueError) as err:
            raise ForecastError(
                f"{where} is not a readable online-spread checkpoint ({type(err).__name__}: "
                f"{err}); rebuild it with `forecast online-spread`"
            ) from None
        wrapper._adopt(load_base(arrays, sub, where))
        return wrapper


class LatentOnlineSpread(OnlineSpread):
    """:class:`OnlineSpread` of a latent base model: members stay deterministic images of the
    base model's latents (the factors are an affine map of each lead's field)."""

    def prior(self, context: xr.Dataset, n_members: int, *, seed: int | None = None) -> Any:
        """The base model's latents for the last ``base_context`` steps of ``context`` (no
        reference forecasts needed)."""
        return self.model.prior(self._base_context(context), n_members, seed=seed)

    def decode(self, context: xr.Dataset, latents: Any) -> xr.Dataset:
        """The base model's decoded members, moved as in :meth:`sample`."""
        cal = self._calibration(context)
        return self._moved(self.model.decode(cal.base_context, latents), cal)

    def encode(self, context: xr.Dataset, target: xr.Dataset) -> Any:
        """The base model's latent of ``target`` with the move undone (inverts
        :meth:`decode`)."""
        cal = self._calibration(context)
        space = space_dims(target)
        missing = [v for v in self.variables if v not in target.data_vars]
        if missing:
            raise ForecastError(f"target lacks the variable(s) {missing}")
        arrays = [target[v].transpose(TIME, *space) for v in self.variables]
        if arrays[0].sizes[TIME] != self.horizon:
            raise ForecastError(
                f"target has {arrays[0].sizes[TIME]} time steps, the model's horizon is "
                f"{self.horizon}; pass forecast.data.windows.target_of(ds, issue, horizon)"
            )
        back = cal.undo(np.stack([a.values for a in arrays], axis=0)[None])[0]
        unmoved = target.copy()
        for c, (name, da) in enumerate(zip(self.variables, arrays, strict=True)):
            unmoved[name] = da.copy(data=back[c].astype(da.dtype))
        return self.model.encode(cal.base_context, unmoved)
