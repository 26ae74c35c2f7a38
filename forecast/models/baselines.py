"""Reference forecasters: persistence, climatology and diurnal persistence ensembles.

All three bootstrap whole **trajectories** from the training period: a member picks one training
origin ``o`` and takes the ``horizon`` steps after it (as an increment or as values). A whole
``(lead, space)`` block from one origin keeps the spatial coherence of real fields *and* the
temporal coherence of errors across leads (a member's error at lead 6 h is correlated with its
error at 5 h as in reality), so members are physically plausible trajectories and multivariate
scores (energy score, variogram score) are fair to the baselines. Per lead and per point the
marginal distribution is exactly the empirical distribution of the lead-specific errors, the same
as bootstrapping each lead separately.

Time-of-day (and day-of-week) slots are the position of a time inside the period (one day, or one
week) counted in data steps.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from forecast.errors import ForecastError
from forecast.models.base import ArrayForecaster, member_rng

DAY = pd.Timedelta(days=1)
WEEK = pd.Timedelta(days=7)


# --------------------------------------------------------------------------------------------
# array helpers (pure functions)
# --------------------------------------------------------------------------------------------
def slot_of(times: np.ndarray, step: pd.Timedelta, period: pd.Timedelta) -> np.ndarray:
    """Index of each time inside the period (time of day or of week) in steps, ``0..n-1``.

    The phase is counted from 1970-01-01T00 (a Thursday for the weekly period); only equality
    and circular distance of slots are used, so the phase does not matter.
    """
    n = n_slots(step, period)
    ns = np.asarray(times, dtype="datetime64[ns]").astype(np.int64)
    return (ns // step.value) % n


def n_slots(step: pd.Timedelta, period: pd.Timedelta) -> int:
    """Number of steps in one period (1 when the step is as long as the period or longer)."""
    if step >= period:
        return 1
    if period.value % step.value:
        raise ForecastError(
            f"time step {step} does not divide the period {period}; resample the data to a "
            "step that divides one day"
        )
    return int(period.value // step.value)


def slot_distance(a: np.ndarray, b: int | np.ndarray, n: int) -> np.ndarray:
    """Circular distance between slots ``a`` and ``b`` on a circle of ``n`` slots."""
    d = np.abs(np.asarray(a) - b) % n
    return np.minimum(d, n - d)


def valid_origins(values: np.ndarray, horizon: int, first: int = 0) -> np.ndarray:
    """Origins ``o`` (>= ``first``) whose steps ``o..o+horizon`` are finite.

    ``values`` is ``(time, feature)``; features that are NaN over the whole period (e.g. a land
    mask) do not count.
    """
    finite = np.isfinite(values)
    used = finite.any(axis=0)
    ok = finite[:, used].all(axis=1) if used.any() else np.zeros(len(values), bool)
    n = len(values) - horizon
    if n <= first:
        return np.zeros(0, np.int64)
    window_ok = np.lib.stride_tricks.sliding_window_view(ok, horizon + 1)[:n]
    good = window_ok.all(axis=1)
    good[:first] = False
    return np.flatnonzero(good).astype(np.int64)


def increments(values: np.ndarray, origins: np.ndarray, horizon: int) -> np.ndarray:
    """Trajectories ``values[o + l] - values[o]`` for ``l = 1..horizon``: ``(k, horizon, ...)``."""
    leads = np.arange(1, horizon + 1)
    return values[origins[:, None] + leads] - values[origins][:, None]


def draw_origins(candidates: np.ndarray, n_members: int, seed: int | None) -> np.ndarray:
    """One candidate origin per member; member ``m`` depends only on ``(seed, m)``."""
    if len(candidates) == 0:
        raise ForecastError("no training origin to draw from; pass a longer training period")
    return np.array(
        [candidates[member_rng(seed, m).integers(len(candidates))] for m in range(n_members)],
        dtype=np.int64,
    )


def slot_means(
    values: np.ndarray, slots: np.ndarray, n: int, min_samples: int
) -> tuple[np.ndarray, int]:
    """Mean of ``values`` (time, feature) per slot, smoothed over neighbouring slots.

    Each slot mean averages the slots within ``+-half`` (circularly), with ``half`` the
    smallest width giving at least ``min_samples`` finite samples in every slot.

    Returns
    -------
    means : ndarray (n, feature)
    half : int
    """
    flat = values.reshape(len(values), -1)
    finite = np.isfinite(flat)
    sums = np.zeros((n, flat.shape[1]))
    counts = np.zeros((n, flat.shape[1]))
    np.add.at(sums, slots, np.where(finite, flat, 0.0))
    np.add.at(counts, slots, finite)
    used = finite.any(axis=0)
    half = 0
    while True:
        k = np.arange(-half, half + 1)
        idx = (np.arange(n)[:, None] + k) % n
        s = sums[idx].sum(axis=1)
        c = counts[idx].sum(axis=1)
        if (c[:, used] >= min_samples).all() or 2 * half + 1 >= n:
            break
        half += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(c > 0, s / np.maximum(c, 1), np.nan)
    return means.reshape((n, *values.shape[1:])), half


def _choose_period(weekly: bool | None, train_span: pd.Timedelta, has_nodes: bool) -> pd.Timedelta:
    """Weekly cycle for sensor networks with two weeks of history or more, else daily."""
    if weekly is None:
        weekly = has_nodes and train_span >= 2 * WEEK
    return WEEK if weekly else DAY


class _TrainingHistory(ArrayForecaster):
    """Keeps the training values (the bootstrap draws from them) and checkpoints them."""

    def _state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        return (
            {"values": self.values_.astype(np.float32), "times": self._times_ns()},
            self._extra_state(),
        )

    def _times_ns(self) -> np.ndarray:
        return np.asarray(self.times_, dtype="datetime64[ns]").astype(np.int64)

    def _restore(self, arrays: dict[str, np.ndarray], state: dict[str, Any]) -> None:
        self._fit_values(arrays["values"].astype(np.float64), arrays["times"].astype("M8[ns]"))

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def _store(self, values: np.ndarray, times: np.ndarray) -> None:
        # float32 storage, as in the checkpoint: a fitted and a reloaded model sample the same
        self.values_ = values.astype(np.float32).astype(np.float64)
        self.times_ = np.asarray(times, dtype="datetime64[ns]")
        self.flat_ = self.values_.reshape(len(values), -1)

    def _store_cyclic(self, values: np.ndarray, times: np.ndarray, weekly: bool | None) -> None:
        """:meth:`_store`, then the cycle (``period_``: day or week) and its ``n_slots_``."""
        from forecast.dims import NODE

        self._store(values, times)
        span = pd.Timestamp(self.times_[-1]) - pd.Timestamp(self.times_[0]) + self.step
        has_nodes = bool(self.description and NODE in self.description.get("space_dims", []))
        self.period_ = _choose_period(weekly, span, has_nodes)
        self.n_slots_ = n_slots(self.step, self.period_)

    def _complete_origins(self, flat: np.ndarray) -> np.ndarray:
        """Training origins with a complete (origin, horizon) trajectory in ``flat``."""
        origins = valid_origins(flat, self.horizon)
        if len(origins) == 0:
            raise ForecastError(
                "training data have no complete (origin, horizon) trajectory; "
                "pass a longer training period with fewer missing values"
            )
        return origins


# --------------------------------------------------------------------------------------------
# forecasters
# --------------------------------------------------------------------------------------------
class PersistenceEnsemble(_TrainingHistory):
    """Last observation plus persistence errors bootstrapped from the training period.

    Member ``m`` draws one training origin ``o`` and forecasts
    ``x(t0) + (x(o + l) - x(o))`` for ``l = 1..horizon``: the whole field of lead-specific
    persistence errors of one training time (spatially and temporally coherent). On a random
    walk this ensemble is calibrated by construction.

    Parameters
    ----------
    context, horizon
        Window geometry in steps.
    """

    kind = "persistence"

    def __init__(self, *, context: int, horizon: int) -> None:
        super().__init__(context=context, horizon=horizon)

    def _fit_values(self, values: np.ndarray, times: np.ndarray) -> None:
        self._store(values, times)
        self.origins_ = self._complete_origins(self.flat_)

    def _sample_values(
        self, values: np.ndarray, times: np.ndarray, n_members: int, seed: int | None
    ) -> np.ndarray:
        origins = draw_origins(self.origins_, n_members, seed)
        return values[-1][None, None] + increments(self.values_, origins, self.horizon)


class ClimatologyEnsemble(_TrainingHistory):
    """Training trajectories that start at the same time of day (and of week) as the forecast.

    Member ``m`` draws a training origin ``o`` whose slot (time of day, or of week) is within
    ``w`` slots of the issue time's slot and forecasts ``x(o + l)``: values at the same time of
    day for every lead. ``w`` starts at 0 and widens one slot at a time until there are at least
    ``min_candidates`` origins (neighbouring time slots when the history is short).

    Parameters
    ----------
    context, horizon
        Window geometry in steps.
    weekly
        Match the time of week instead of the time of day. ``None`` (default): weekly for sensor
        networks (traffic) whose training period covers two weeks or more, daily otherwise.
    min_candidates
        Smallest number of origins to draw from.
    """

    kind = "climatology"

    def __init__(
        self, *, context: int, horizon: int, weekly: bool | None = None, min_candidates: int = 20
    ) -> None:
        super().__init__(context=context, horizon=horizon)
        if min_candidates < 1:
            raise ForecastError(f"min_candidates must be >= 1, got {min_candidates}")
        self.weekly = weekly
        self.min_candidates = int(min_candidates)

    def _fit_values(self, values: np.ndarray, times: np.ndarray) -> None:
        self._store_cyclic(values, times, self.weekly)
        self.origins_ = self._complete_origins(self.flat_)
        self.slots_ = slot_of(self.times_[self.origins_], self.step, self.period_)

    def _extra_state(self) -> dict[str, Any]:
        return {"period": str(self.period_)}

    def candidates(self, issue_time: Any) -> np.ndarray:
        """Training origins whose slot is nearest the slot of ``issue_time``."""
        slot = int(slot_of(np.array([issue_time], "M8[ns]"), self.step, self.period_)[0])
        dist = slot_distance(self.slots_, slot, self.n_slots_)
        need = min(self.min_candidates, len(self.origins_))
        width = int(np.sort(dist)[need - 1])  # smallest width with enough origins
        return self.origins_[dist <= width]

    def _sample_values(
        self, values: np.ndarray, times: np.ndarray, n_members: int, seed: int | None
    ) -> np.ndarray:
        origins = draw_origins(self.candidates(times[-1]), n_members, seed)
        leads = np.arange(1, self.horizon + 1)
        return self.values_[origins[:, None] + leads]


class DiurnalPersistenceEnsemble(_TrainingHistory):
    """Persistence of the anomaly from the time-of-day climatology, plus bootstrapped errors.

    With ``c(s)`` the training mean at slot ``s`` (smoothed over neighbouring slots until each
    holds ``min_samples`` values) and ``a(t) = x(t) - c(slot(t))`` the anomaly, member ``m``
    draws a training origin ``o`` and forecasts
    ``c(slot(t0 + l)) + a(t0) + (a(o + l) - a(o))``: the diurnal cycle, the persisted anomaly
    and a lead-specific anomaly-persistence error trajectory.

    Parameters
    ----------
    context, horizon
        Window geometry in steps.
    weekly
        Climatology over the week instead of the day; ``None`` chooses as
        :class:`ClimatologyEnsemble` does.
    min_samples
        Smallest number of training values behind each slot mean.
    """

    kind = "diurnal-persistence"

    def __init__(
        self, *, context: int, horizon: int, weekly: bool | None = None, min_samples: int = 20
    ) -> None:
        super().__init__(context=context, horizon=horizon)
        if min_samples < 1:
            raise ForecastError(f"min_samples must be >= 1, got {min_samples}")
        self.weekly = weekly
        self.min_samples = int(min_samples)

    def _fit_values(self, values: np.ndarray, times: np.ndarray) -> None:
        self._store_cyclic(values, times, self.weekly)
        slots = slot_of(self.times_, self.step, self.period_)
        self.means_, self.half_width_ = slot_means(
            self.values_, slots, self.n_slots_, self.min_samples
        )
        self.anomaly_ = (self.values_ - self.means_[slots]).reshape(len(self.values_), -1)
        self.origins_ = self._complete_origins(self.anomaly_)

    def _extra_state(self) -> dict[str, Any]:
        return {"period": str(self.period_), "half_width": self.half_width_}

    def _sample_values(
        self, values: np.ndarray, times: np.ndarray, n_members: int, seed: int | None
    ) -> np.ndarray:
        t0 = np.asarray(times, dtype="datetime64[ns]")[-1]
        leads = np.arange(1, self.horizon + 1)
        valid = t0 + leads * self.step.to_timedelta64()
        slot0 = slot_of(np.array([t0]), self.step, self.period_)[0]
        clim = self.means_[slot_of(valid, self.step, self.period_)]  # (lead, channel, *space)
        anomaly0 = values[-1] - self.means_[slot0]
        origins = draw_origins(self.origins_, n_members, seed)
        errors = increments(self.anomaly_, origins, self.horizon).reshape(
            (n_members, self.horizon, *values.shape[1:])
        )
        return clim[None] + anomaly0[None, None] + errors
