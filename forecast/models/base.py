"""Shared machinery of the forecasters: data bookkeeping, ensembles, seeds, checkpoints.

:class:`ArrayForecaster` implements the whole :class:`~forecast.dims.Forecaster` protocol
(``fit``, ``sample``, ``save``, ``load``) around three small hooks that subclasses write on plain
numpy arrays of shape ``(time, channel, *space)`` in physical units:

- ``_fit_values(values, times)`` learns from the training slice,
- ``_sample_values(values, times, n_members, seed)`` returns ``(member, lead, channel, *space)``,
- ``_state()`` / ``_restore(arrays, state)`` list what a checkpoint must hold.

:func:`forecast_many` runs a forecaster over many issue times and concatenates the ensembles
along ``init_time``; :func:`sample_many` draws for several contexts at once where a model can
batch them.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd
import xarray as xr

from forecast.checkpoint import load_checkpoint, save_checkpoint
from forecast.dims import INIT_TIME, LEAD_TIME, MEMBER, TIME, VALID_TIME, space_dims
from forecast.errors import ForecastError


def member_rng(seed: int | None, member: int) -> np.random.Generator:
    """The random generator of ensemble member ``member`` under ``seed``.

    It depends only on ``(seed, member)``, so member ``m`` is the same whatever the number of
    members drawn. ``seed=None`` means seed 0 (every forecast is reproducible).
    """
    return np.random.default_rng([0 if seed is None else int(seed), int(member)])


def issue_seed(seed: int | None, issue_time: Any) -> int:
    """A seed for one issue time derived from the run seed and the issue time itself.

    Depends only on ``(seed, issue_time)``, so a forecast for a given issue time does not change
    when other issue times are added or removed (resuming a run gives identical ensembles).
    """
    seconds = int(pd.Timestamp(issue_time).value // 1_000_000_000) % 2**62
    state = np.random.SeedSequence([0 if seed is None else int(seed), seconds]).generate_state(
        1, np.uint64
    )
    return int(state[0] >> np.uint64(2))  # < 2**62: valid for numpy and torch


def check_seeds(contexts: Sequence[Any], seeds: Sequence[Any]) -> None:
    """One seed per context for a batched draw, else a one-line error."""
    if len(contexts) != len(seeds):
        raise ForecastError(f"{len(contexts)} contexts but {len(seeds)} seeds; give one each")


def sample_many(
    model: Any, contexts: Sequence[xr.Dataset], n_members: int, seeds: Sequence[int | None]
) -> list[xr.Dataset]:
    """``model.sample(context, n_members, seed=seed)`` for each context and seed, through the
    model's ``sample_batch`` where it has one (a diffusion model, a pool: all contexts in one
    batched draw, equal up to float32 rounding), else one after the other."""
    check_seeds(contexts, seeds)
    batch = getattr(model, "sample_batch", None)
    if batch is not None:
        return batch(contexts, n_members, seeds)
    return [model.sample(c, n_members, seed=s) for c, s in zip(contexts, seeds, strict=True)]


def values_of(ds: xr.Dataset, variables: Sequence[str]) -> np.ndarray:
    """Stack ``variables`` of ``ds`` into a float64 array ``(time, channel, *space)``."""
    space = space_dims(ds)
    missing = [v for v in variables if v not in ds.data_vars]
    if missing:
        raise ForecastError(
            f"data lack the variable(s) {missing}; pass data with {list(variables)}"
        )
    return np.stack(
        [ds[v].transpose(TIME, *space).values.astype(np.float64) for v in variables], axis=1
    )


def ensemble_dataset(
    values: np.ndarray,
    context: xr.Dataset,
    variables: Sequence[str],
    step: pd.Timedelta,
    *,
    lead_steps: Sequence[int] | None = None,
    extra_dims: tuple[str, ...] = (MEMBER,),
) -> xr.Dataset:
    """Build the standard ensemble Dataset from ``(member, lead, channel, *space)`` values.

    Parameters
    ----------
    values
        Array ``(*extra, lead, channel, *space)`` in physical units (``extra`` is ``(member,)``
        for an ensemble, ``()`` for a mean or a standard deviation).
    context
        The context window; its last time is the issue time, its spatial coords are copied.
    variables
        Names of the channels, in order.
    step
        The data time step; ``valid_time = init_time + lead_steps * step``.
    lead_steps
        Lead of each lead index in steps; ``1..H`` by default.
    extra_dims
        Names of the leading dims of ``values``.

    Returns
    -------
    xarray.Dataset
        Dims ``(*extra_dims, lead_time, *space)``; coords ``init_time`` (scalar), ``lead_time``,
        ``valid_time`` and those of the space dims; ``units`` and other variable attributes
        copied from the context.
    """
    space = space_dims(context)
    n_lead = values.shape[len(extra_dims)]
    if lead_steps is None:
        lead_steps = np.arange(1, n_lead + 1)
    lead = pd.to_timedelta(np.asarray(lead_steps) * step).values
    init = np.datetime64(pd.Timestamp(context[TIME].values[-1]).to_datetime64(), "ns")
    coords: dict[str, Any] = {
        LEAD_TIME: lead,
        INIT_TIME: init,
        VALID_TIME: (LEAD_TIME, init + lead),
    }
    if MEMBER in extra_dims:
        coords[MEMBER] = np.arange(values.shape[extra_dims.index(MEMBER)])
    for d in space:
        if d in context.coords:
            coords[d] = context[d].values
    for name, coord in context.coords.items():  # 2-D lat/lon of projected grids, node ids...
        if name not in coords and name != TIME and set(coord.dims) <= set(space) and coord.dims:
            coords[name] = (coord.dims, coord.values)
    dims = (*extra_dims, LEAD_TIME, *space)
    channel_axis = len(extra_dims) + 1
    data_vars = {}
    for c, var in enumerate(variables):
        data_vars[var] = xr.Variable(
            dims,
            np.take(values, c, axis=channel_axis).astype(np.float32),
            attrs=dict(context[var].attrs),
        )
    return xr.Dataset(data_vars, coords=coords)


def _time_step(ds: xr.Dataset) -> pd.Timedelta:
    from forecast.data import time_step

    return pd.Timedelta(time_step(ds))


class ArrayForecaster:
    """Base class of the forecasters that work on numpy arrays ``(time, channel, *space)``.

    Subclasses set ``kind`` (their registry name), keep their hyper-parameters as attributes of
    the same names as the constructor keywords (so :meth:`config` can list them) and implement
    the array hooks described in the module docstring.
    """

    kind: ClassVar[str] = ""

    def __init__(self, *, context: int, horizon: int) -> None:
        for name, value in (("context", context), ("horizon", horizon)):
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise ForecastError(f"{name} must be a positive integer, got {value!r}")
        self.context = int(context)
        self.horizon = int(horizon)
        self.description: dict[str, Any] | None = None
        self.variables: list[str] = []
        self.step: pd.Timedelta | None = None

    # -- configuration -----------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """The constructor keywords that rebuild this model (JSON-able)."""
        params = inspect.signature(type(self).__init__).parameters
        return {
            name: _plain(getattr(self, name))
            for name in params
            if name != "self" and params[name].kind == inspect.Parameter.KEYWORD_ONLY
        }

    @classmethod
    def tiny(cls, context: int, horizon: int) -> Self:
        """A small, fast configuration for tests (the contract test uses it)."""
        return cls(context=context, horizon=horizon)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"

    # -- protocol ----------------------------------------------------------------------------
    def fit(self, train: xr.Dataset, valid: xr.Dataset | None = None) -> Self:
        """Learn from ``train`` (a contiguous slice in physical units); ``valid`` is unused.

        Parameters
        ----------
        train
            Standard data set (dims ``time`` and the space dims), at least
            ``context + horizon`` steps long.
        valid
            Accepted for the protocol; the baselines have nothing to tune on it.

        Returns
        -------
        Self
        """
        from forecast.data import data_variables, describe_dataset

        if TIME not in train.dims:
            raise ForecastError("training data have no time dimension; pass a standard data set")
        n = train.sizes[TIME]
        if n < self.context + self.horizon:
            raise ForecastError(
                f"training data have {n} steps, fewer than context + horizon = "
                f"{self.context + self.horizon}; pass a longer training period"
            )
        self.variables = list(data_variables(train))
        self.description = describe_dataset(train)
        self.step = _time_step(train)
        self._fit_values(values_of(train, self.variables), train[TIME].values)
        return self

    def sample(self, context: xr.Dataset, n_members: int, *, seed: int | None = None) -> xr.Dataset:
        """Draw an ensemble of ``n_members`` forecasts from the context window.

        Parameters
        ----------
        context
            Exactly ``self.context`` time steps; the last one is the issue time.
        n_members
            Ensemble size (>= 1).
        seed
            Member ``m`` depends only on ``(seed, m)``; ``None`` means 0.

        Returns
        -------
        xarray.Dataset
            Dims ``(member, lead_time, *space)`` in physical units, coords ``init_time``,
            ``lead_time``, ``valid_time``.
        """
        values = self._context_values(context)
        out = self._sample_values(values, context[TIME].values, check_members(n_members), seed)
        return ensemble_dataset(out, context, self.variables, self.step)

    def _context_values(self, context: xr.Dataset) -> np.ndarray:
        from forecast.data import check_compatible

        if self.description is None:
            raise ForecastError(f"{self.kind} model is not fitted; call fit(train) first")
        if TIME not in context.dims or context.sizes[TIME] != self.context:
            got = context.sizes.get(TIME, 0)
            raise ForecastError(
                f"context has {got} time steps, the model needs exactly {self.context}; "
                "pass forecast.data.context_of(ds, issue_time, context)"
            )
        check_compatible(self.description, context)
        return values_of(context, self.variables)

    # -- checkpoints -------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write the fitted model to one checkpoint file (safetensors + JSON metadata)."""
        self._write(Path(path))

    def _write(
        self,
        path: Path,
        extra: dict[str, np.ndarray] | None = None,
        training: dict[str, Any] | None = None,
    ) -> None:
        """Write the model's state (plus ``extra`` arrays and a ``training`` record, as the
        training loop's checkpoints carry) to ``path``."""
        arrays, meta = self.checkpoint_content(training)
        arrays.update(extra or {})
        save_checkpoint(path, arrays, meta)

    def checkpoint_content(
        self, training: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """What :meth:`save` writes: ``(arrays, metadata)`` of the fitted model."""
        if self.description is None:
            raise ForecastError(f"{self.kind} model is not fitted; call fit(train) before save")
        arrays, state = self._state()
        meta = checkpoint_meta(self, state)
        if training is not None:
            meta["training"] = training
        return dict(arrays), meta

    @classmethod
    def load(cls, path: str | Path) -> Self:
        """Read a model written by :meth:`save` (refuses a checkpoint of another kind)."""
        arrays, meta = load_checkpoint(path)
        return cls.from_checkpoint(arrays, meta, where=str(path))

    @classmethod
    def from_checkpoint(
        cls, arrays: dict[str, np.ndarray], meta: dict[str, Any], where: str = "checkpoint"
    ) -> Self:
        """Rebuild a model from :meth:`checkpoint_content` (``where`` names it in errors)."""
        check_kind(meta, cls.kind, where)
        model = cls(**meta["config"])
        model.description = meta["data"]
        model.variables = list(meta["variables"])
        model.step = pd.Timedelta(meta["time_step"])
        model._restore(arrays, meta.get("state", {}))
        return model

    # -- hooks -------------------------------------------------------------------------------
    def _fit_values(self, values: np.ndarray, times: np.ndarray) -> None:
        raise NotImplementedError

    def _sample_values(
        self, values: np.ndarray, times: np.ndarray, n_members: int, seed: int | None
    ) -> np.ndarray:
        raise NotImplementedError

    def _state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        raise NotImplementedError

    def _restore(self, arrays: dict[str, np.ndarray], state: dict[str, Any]) -> None:
        raise NotImplementedError


def check_kind(meta: dict[str, Any], kind: str, where: str) -> None:
    """Refuse checkpoint metadata ``meta`` of another model kind than ``kind`` (one line)."""
    if meta.get("kind") != kind:
        raise ForecastError(
            f"{where} holds a {meta.get('kind')!r} model, not {kind!r}; "
            "use forecast.models.load_model(path)"
        )


def checkpoint_meta(model: Any, state: dict[str, Any]) -> dict[str, Any]:
    """The metadata every model checkpoint carries: kind, constructor config, data
    description, variables, time step and the model's own ``state``."""
    return {
        "kind": model.kind,
        "config": model.config(),
        "data": model.description,
        "variables": model.variables,
        "time_step": str(model.step),
        "state": state,
    }


def _plain(value: Any) -> Any:
    """JSON-able version of a config value."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    return value


def forecast_many(
    model: Any,
    ds: xr.Dataset,
    issue_times: Sequence[Any] | np.ndarray,
    n_members: int,
    seed: int | None = 0,
    *,
    progress: bool = False,
) -> xr.Dataset:
    """Ensembles of ``model`` for many issue times, concatenated along ``init_time``.

    Parameters
    ----------
    model
        A fitted :class:`~forecast.dims.Forecaster` with a ``context`` attribute.
    ds
        The data set the context windows are cut from (physical units).
    issue_times
        Issue times (last observed step of each context), each a time of ``ds``.
    n_members
        Ensemble size.
    seed
        Run seed; each issue time gets the seed :func:`issue_seed(seed, issue_time)`, so a
        forecast does not depend on which other issue times are in the list.
    progress
        Show a tqdm progress bar.

    Returns
    -------
    xarray.Dataset
        Dims ``(init_time, member, lead_time, *space)``; ``valid_time`` over
        ``(init_time, lead_time)``.
    """
    from tqdm.auto import tqdm

    from forecast.data.windows import context_of

    times = pd.DatetimeIndex(np.atleast_1d(np.asarray(issue_times, dtype="datetime64[ns]")))
    if len(times) == 0:
        raise ForecastError("no issue times given; pass at least one issue time")
    members = []
    for t in tqdm(
        times,
        desc=f"{getattr(model, 'kind', 'model')} forecasts",
        disable=not progress,
        leave=False,
    ):
        context = context_of(ds, t, model.context)
        members.append(model.sample(context, n_members, seed=issue_seed(seed, t)))
    out = xr.concat(members, dim=INIT_TIME, coords="different", compat="equals", join="exact")
    space = space_dims(out)
    return out.transpose(INIT_TIME, MEMBER, LEAD_TIME, *space)


def check_members(n_members: Any) -> int:
    """``n_members`` as an int, or a ForecastError when it is not a positive integer."""
    if isinstance(n_members, bool) or not isinstance(n_members, int | np.integer) or n_members < 1:
        raise ForecastError(f"n_members must be a positive integer, got {n_members!r}")
    return int(n_members)


def nan_location(ds: xr.Dataset, variables: Sequence[str]) -> str | None:
    """Where the first NaN of ``variables`` in ``ds`` is (``None`` when there is none)."""
    for name in variables:
        da = ds[name]
        bad = np.isnan(da.values)
        if bad.any():
            idx = np.argwhere(bad)[0]
            parts = []
            for dim, i in zip(da.dims, idx, strict=True):
                value = ds[dim].values[i] if dim in ds.coords else i
                if dim == TIME:
                    value = pd.Timestamp(value).isoformat()
                parts.append(f"{dim}={value}")
            return f"variable '{name}' at {', '.join(parts)} ({int(bad.sum())} NaN values)"
    return None
