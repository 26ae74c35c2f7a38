"""Schaake shuffle: an ensemble's members given the space-time structure of observed changes.

A generative model trained for a few CPU minutes gets each point's distribution right (CRPS,
spread-skill, rank histograms) long before it gets the joint one: the P2 diffusion members are
the right spread per point with departures that are nearly independent from point to point, so
a member map looks like static and the ensemble of an area mean is far too narrow.

The Schaake shuffle (Clark et al. 2004, J. Hydrometeorol. 5, 243-262) keeps every point's set
of member values and only reorders them: at each (variable, lead, point), the member values,
sorted, are handed to the members in the order of the ranks of ``M`` observed template fields
at that point. Member ``m`` then has, at every point and lead, the rank that template ``m``
has there, so the members' dependence between points and leads is that of the templates.

The templates are observed changes from the issue time, ``x(t0 + L) - x(t0)`` for lead
``L``, of past windows of the data record kept at fit time: the ``M`` windows issued nearest
the issue time's time of day (then the most recent), among those whose whole target is
observed by the issue time (never the future) and complete (windows with a missing value are
skipped). Every per-point score is unchanged to the last bit; scores of more than one point
(energy and variogram scores, area means, neighbour differences) see the new structure.

A member depends on the whole ensemble: the shuffle of ``n`` members differs from that of
``n + 1`` (:attr:`SchaakeShuffle.joint_members`); for a seed and a member count, the
ensemble is fixed. The reorder is not a map of one member's latent, so this model is a plain
``Forecaster`` (latent paths walk its base model).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd
import xarray as xr

from forecast.dims import LEAD_TIME, MEMBER, TIME, space_dims, window_context
from forecast.errors import ForecastError
from forecast.models.base import check_kind, check_members, checkpoint_meta, values_of
from forecast.models.wrapped import WrapperModel, base_content, base_spec, load_base

#: Names of the data record's arrays in a checkpoint.
RECORD_VALUES, RECORD_TIMES = "record/values", "record/times"
_DAY_NS = 86_400 * 10**9


def schaake_shuffle(members: np.ndarray, template: np.ndarray) -> np.ndarray:
    """``members`` reordered along axis 0, at every other position, to the ranks of
    ``template`` there (ties keep the template order).

    Examples
    --------
    >>> schaake_shuffle(np.array([[1.0], [3.0], [2.0]]), np.array([[20.0], [10.0], [30.0]]))
    array([[2.],
           [1.],
           [3.]])
    """
    members, template = np.asarray(members), np.asarray(template)
    if members.shape != template.shape or members.ndim < 1:
        raise ForecastError(
            f"the Schaake shuffle needs members and templates of one shape, got "
            f"{members.shape} and {template.shape}"
        )
    rank = np.argsort(np.argsort(template, axis=0, kind="stable"), axis=0, kind="stable")
    return np.take_along_axis(np.sort(members, axis=0), rank, axis=0)


def template_starts(
    times: np.ndarray,
    issue: np.datetime64,
    horizon: int,
    n: int,
    complete: np.ndarray | None = None,
) -> np.ndarray:
    """Indices into ``times`` (a regular record) of the ``n`` template windows for an ensemble
    issued at ``issue``: windows whose ``horizon`` target steps are all observed by ``issue``
    (and, with the boolean mask ``complete`` over the record, whose steps are all ``True``
    there), issued nearest its time of day, then the most recent."""
    times = np.asarray(times, dtype="datetime64[ns]")
    last = np.datetime64(issue, "ns")
    starts = np.arange(max(len(times) - horizon, 0))
    keep = times[starts + horizon] <= last
    if complete is not None:
        gaps = np.concatenate([[0], np.cumsum(~np.asarray(complete, dtype=bool))])
        keep &= gaps[starts + horizon + 1] == gaps[starts]  # no gap from t0 to t0 + horizon
    starts = starts[keep]
    if len(starts) < n:
        raise ForecastError(
            f"the Schaake shuffle of {n} members needs {n} template windows observed by "
            f"{np.datetime_as_string(last, unit='m')} without gaps, its data record has "
            f"{len(starts)}; ask for at most {len(starts)} members or wrap the model with a "
            f"longer record"
        )
    of_day = times[starts].astype(np.int64) % _DAY_NS
    gap = np.abs(of_day - last.astype(np.int64) % _DAY_NS)
    gap = np.minimum(gap, _DAY_NS - gap)
    return starts[np.lexsort((-starts, gap))[:n]]


def change_templates(
    values: np.ndarray,
    times: np.ndarray,
    issue: Any,
    horizon: int,
    n: int,
    complete: np.ndarray | None = None,
) -> np.ndarray:
    """Templates ``(n, channel, lead, *space)`` for an ensemble issued at ``issue``: the
    observed changes ``x(t0 + L) - x(t0)``, ``L = 1 .. horizon``, of the windows of the record
    (``values`` ``(time, channel, *space)`` at ``times``) that :func:`template_starts` picks."""
    starts = template_starts(times, issue, horizon, n, complete)
    leads = np.arange(1, horizon + 1)
    target = values[starts[:, None] + leads[None, :]]  # (n, lead, channel, *space)
    return np.swapaxes(target - values[starts][:, None], 1, 2)


def complete_steps(values: np.ndarray) -> np.ndarray:
    """Which steps of a record ``(time, ...)`` have no missing value."""
    return np.isfinite(values.reshape(len(values), -1)).all(axis=1)


class SchaakeShuffle(WrapperModel):
    """A fitted forecaster whose members are reordered point by point (Schaake shuffle) to the
    ranks of observed changes from the issue time.

    Parameters
    ----------
    context, horizon
        Window geometry of the base model's forecasts (a base model that reads history before
        its windows, such as an online-spread model, reads more: :attr:`context` is the steps
        this model reads once it has its base model).
    model
        The base model as ``{"kind": registry name, "config": constructor keywords}``;
        :meth:`fit` builds and fits it and keeps the training data as the template record.
        :meth:`from_model` wraps a fitted model with a given record.
    train
        Training settings merged over the base model's ``train`` table (``forecast train``).
    """

    kind: ClassVar[str] = "schaake"
    #: Member ``m`` depends on all ``n`` members (the shuffle is a joint reorder).
    joint_members: ClassVar[bool] = True

    def __init__(
        self,
        *,
        context: int,
        horizon: int,
        model: Mapping[str, Any] | None = None,
        train: Mapping[str, Any] | None = None,
    ) -> None:
        for name, value in (("context", context), ("horizon", horizon)):
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise ForecastError(f"{name} must be an integer >= 1, got {value!r}")
        self.base_context, self.horizon = int(context), int(horizon)
        self.context = self.base_context  # the base model's, once it has one
        wrap = "forecast schaake --checkpoint MODEL --data NAME --out OUT"
        self.spec = base_spec(model, train, owner=self.kind, command=wrap)
        self.model: Any = None
        self.description: dict[str, Any] | None = None
        self.variables: list[str] = []
        self.step: pd.Timedelta | None = None
        self.record_values: np.ndarray | None = None  # (time, channel, *space)
        self.record_times: np.ndarray | None = None  # datetime64[ns]
        self._complete: np.ndarray | None = None  # record steps without NaN

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def from_model(cls, model: Any, record: xr.Dataset) -> Self:
        """Wrap the fitted ``model``, with ``record`` (data like its training data, e.g. the
        training split) as the source of templates."""
        if isinstance(model, SchaakeShuffle):
            raise ForecastError("a schaake model cannot wrap another; wrap its base model")
        spec = {"kind": model.kind, "config": model.config()}
        wrapper = cls(context=window_context(model), horizon=model.horizon, model=spec)
        wrapper._adopt(model, record)
        return wrapper

    @classmethod
    def tiny(cls, context: int, horizon: int) -> Self:
        """The shuffled persistence ensemble (contract test)."""
        return cls(context=context, horizon=horizon, model={"kind": "persistence", "config": {}})

    def config(self) -> dict[str, Any]:
        """The constructor keywords that rebuild this model (JSON-able)."""
        return {"context": self.base_context, "horizon": self.horizon, "model": self.spec}

    def __repr__(self) -> str:
        steps = 0 if self.record_times is None else len(self.record_times)
        return f"SchaakeShuffle({self.spec['kind']}, record of {steps} steps)"

    def _adopt(self, model: Any, record: xr.Dataset) -> None:
        """Take the fitted ``model`` as the base and ``record`` as the template record, after
        checking that they fit this model and each other."""
        from forecast.data import check_compatible

        if isinstance(model, SchaakeShuffle):
            raise ForecastError("a schaake model cannot wrap another; wrap its base model")
        if getattr(model, "description", None) is None:
            raise ForecastError("the base model is not fitted; fit or load it first")
        if (window_context(model), model.horizon) != (self.base_context, self.horizon):
            raise ForecastError(
                f"the base model has context {window_context(model)} and horizon "
                f"{model.horizon}, the schaake model {self.base_context} and {self.horizon}"
            )
        check_compatible(model.description, record, what="the base model")
        values = values_of(record, model.variables).astype(np.float32)
        times = np.asarray(record[TIME].values, dtype="datetime64[ns]")
        self._set(model, values, times)

    def _set(self, model: Any, values: np.ndarray, times: np.ndarray) -> None:
        if len(times) > 1 and not (np.diff(times) == np.timedelta64(model.step)).all():
            raise ForecastError(
                f"the Schaake template record must be regular in time with the model's step "
                f"{model.step}; pass one contiguous stretch of data (e.g. the training split)"
            )
        self.model = model
        self.context = int(model.context)
        self.description = model.description
        self.variables = list(model.variables)
        self.step = model.step
        self.record_values, self.record_times = values, times
        self._complete = complete_steps(values)

    # -- protocol ----------------------------------------------------------------------------
    def _take(self, base: Any, train: xr.Dataset) -> None:
        """The base model fitted by :meth:`fit`, with ``train`` as the template record."""
        self._adopt(base, train)

    def templates(self, issue: Any, n_members: int) -> np.ndarray:
        """The ``n_members`` templates ``(member, channel, lead, *space)`` for an ensemble
        issued at ``issue``: observed changes ``x(t0 + L) - x(t0)`` of the record's windows
        chosen by :func:`template_starts` (windows with a missing value are skipped)."""
        self._require_fitted()
        return change_templates(
            self.record_values, self.record_times, issue, self.horizon, n_members, self._complete
        )

    def sample(self, context: xr.Dataset, n_members: int, *, seed: int | None = None) -> xr.Dataset:
        """The base model's ensemble for ``context``, each point's member values reordered to
        the ranks of :meth:`templates` (every point's set of values unchanged)."""
        n = check_members(n_members)
        self._require_fitted()
        if TIME not in context.dims or context.sizes[TIME] < 1:
            raise ForecastError("context has no time steps; pass the steps before the issue time")
        issue = context[TIME].values[-1]
        template = self.templates(issue, n)  # before sampling: fail fast
        ens = self.model.sample(context, n, seed=seed)
        space = space_dims(ens)
        out = ens.copy()
        for c, name in enumerate(self.variables):
            da = ens[name].transpose(MEMBER, LEAD_TIME, *space)
            shuffled = schaake_shuffle(da.values, template[:, c].astype(da.dtype))
            out[name] = da.copy(data=shuffled).transpose(*ens[name].dims)
        return out

    # -- checkpoints -------------------------------------------------------------------------
    def checkpoint_content(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """What :meth:`save` writes: the base model's arrays under ``base/``, the template
        record and metadata."""
        self._require_fitted()
        arrays, meta = base_content(self.model)
        arrays[RECORD_VALUES] = self.record_values
        arrays[RECORD_TIMES] = self.record_times.astype(np.int64)
        return arrays, checkpoint_meta(self, {"model": meta})

    @classmethod
    def from_checkpoint(
        cls, arrays: dict[str, np.ndarray], meta: dict[str, Any], where: str = "checkpoint"
    ) -> SchaakeShuffle:
        """Rebuild a model from :meth:`checkpoint_content` (``where`` names it in errors)."""
        check_kind(meta, cls.kind, where)
        try:
            wrapper = cls(**meta["config"])
            sub = dict(meta["state"]["model"])
            values = np.asarray(arrays[RECORD_VALUES])
            times = np.asarray(arrays[RECORD_TIMES]).astype("datetime64[ns]")
        except (KeyError, TypeError, ValueError) as err:
            raise ForecastError(
                f"{where} is not a readable schaake checkpoint ({type(err).__name__}: {err}); "
                f"rebuild it with `forecast schaake`"
            ) from None
        wrapper._set(load_base(arrays, sub, where), values, times)
        return wrapper
