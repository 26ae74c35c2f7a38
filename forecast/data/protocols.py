"""Evaluation protocols: chronological train/val/test splits and the test issue times.

Every later result uses these, so they are implemented exactly as the project specifies:

- ``P1`` (Los-loop, data set ``los-loop``): 2016 steps of 5 min from 2012-03-01 00:00;
  train = steps [0, 1411), val = [1411, 1613), test = [1613, 2016). Context = the 12 steps up
  to and including the issue time, horizon = the 12 steps after it (5..60 min). Test issue
  times: every one whose whole horizon lies in the test part (the context may reach into val),
  stride 1: 392 windows.
- ``P2`` (ERA5 UK t2m, data set ``era5-uk-t2m``): 744 hourly steps from 2019-03-01T00;
  train = 03-01..03-21 (steps [0, 504)), val = 03-22..03-24 ([504, 576)),
  test = 03-25..03-31 ([576, 744)). Context 6 h up to and including the issue time, leads
  1..24 h. Test issue times at 00, 06, 12, 18 UTC with the whole horizon in the test part:
  24 windows.
- ``synthetic-weather``: the P2 geometry on the default :func:`synthetic_weather` (90 days,
  hourly), splits 70/10/20 %, test issue times at 00, 06, 12, 18 UTC.
- ``synthetic-traffic``: the P1 geometry on the default :func:`synthetic_traffic` (28 days,
  5 min), splits 70/10/20 %, test issue times every hour (stride 12 steps).

Leakage rules: train and val windows have context *and* target inside their split; test
windows have their target inside the test part and may take their context from before it
(observed history). Val windows use the same issue-time selection (hours, stride) as test.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from forecast.data.describe import format_step, time_step
from forecast.data.windows import Windows, make_windows
from forecast.dims import TIME
from forecast.errors import ForecastError
from forecast.registry import Registry

__all__ = ["PROTOCOLS", "SPLITS", "Protocol", "chronological", "get_protocol"]

SPLITS = ("train", "val", "test")
_DEFAULT: Any = object()


@dataclass(frozen=True)
class Protocol:
    """A named evaluation protocol: window geometry, splits and test issue times.

    Parameters
    ----------
    name : str
        Registry name (``P1``, ``P2``, ``synthetic-weather``, ``synthetic-traffic``).
    dataset : str
        Named data set it applies to (see :func:`forecast.data.open_dataset`).
    context, horizon : int
        Window geometry in steps (see :class:`forecast.data.windows.Windows`).
    train, val, test : tuple of int
        ``(start, stop)`` time-index ranges of the splits, contiguous and ordered.
    hours : tuple of int or None
        Hours of day of the val/test issue times (``None``: any step).
    test_stride : int
        Stride of the val/test issue times (after the ``hours`` filter).
    n_steps : int
        Time length of the data set the ranges refer to (checked).
    step : str
        Time step of that data set, e.g. ``"5min"``, ``"1h"`` (checked).
    start : str or None
        First time of that data set, ISO 8601 (checked when given).
    fractions : tuple of float or None
        For chronological protocols: the split fractions, used by :meth:`resized`.
    """

    name: str
    dataset: str
    context: int
    horizon: int
    train: tuple[int, int]
    val: tuple[int, int]
    test: tuple[int, int]
    hours: tuple[int, ...] | None = None
    test_stride: int = 1
    n_steps: int = 0
    step: str = "1h"
    start: str | None = None
    fractions: tuple[float, float, float] | None = None

    def __post_init__(self) -> None:
        if not (
            0
            == self.train[0]
            < self.train[1]
            == self.val[0]
            < self.val[1]
            == self.test[0]
            < self.test[1]
            == self.n_steps
        ):
            raise ForecastError(
                f"protocol {self.name!r}: splits {self.train}, {self.val}, {self.test} must be "
                f"contiguous, non-empty and cover [0, {self.n_steps})"
            )

    def range(self, split: str) -> tuple[int, int]:
        """``(start, stop)`` time indices of ``split`` (``train``, ``val`` or ``test``)."""
        if split not in SPLITS:
            raise ForecastError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
        return getattr(self, split)

    def check(self, ds: xr.Dataset | xr.DataArray) -> None:
        """Refuse data whose time axis is not the one the protocol is defined on."""
        if TIME not in ds.dims:
            raise ForecastError(f"protocol {self.name}: data has no '{TIME}' dimension")
        n = int(ds.sizes[TIME])
        if n != self.n_steps:
            hint = (
                f"use get_protocol({self.name!r}).resized({n})"
                if self.fractions is not None
                else f"open the full {self.dataset!r} data set"
            )
            raise ForecastError(
                f"protocol {self.name} needs {self.n_steps} time steps but the data has {n}; {hint}"
            )
        step = time_step(ds)
        if step != pd.Timedelta(self.step):
            raise ForecastError(
                f"protocol {self.name} needs a {self.step} time step but the data has "
                f"{format_step(step)}; open the {self.dataset!r} data set"
            )
        if self.start is not None:
            first = pd.Timestamp(ds[TIME].values[0])
            if first != pd.Timestamp(self.start):
                raise ForecastError(
                    f"protocol {self.name} starts at {self.start} but the data starts at "
                    f"{first.isoformat()}; open the {self.dataset!r} data set"
                )

    def split(self, ds: xr.Dataset, split: str) -> xr.Dataset:
        """The time slice of ``ds`` for ``split`` (variables without time kept as they are)."""
        a, b = self.range(split)
        self.check(ds)
        return ds.isel({TIME: slice(a, b)})

    def windows(
        self,
        ds: xr.Dataset | xr.DataArray,
        split: str,
        *,
        stride: int | None = None,
        hours: Any = _DEFAULT,
    ) -> Windows:
        """Windows of ``split`` as indices into the full time axis of ``ds``.

        Parameters
        ----------
        ds : xarray.Dataset or xarray.DataArray
            The whole data set (checked against the protocol).
        split : str
            ``train`` (context and target in train, every step), ``val`` (context and target in
            val, the test issue-time selection) or ``test`` (target in test, context anywhere
            before).
        stride, hours : optional
            Override the issue-time selection (``hours=None``: every hour).
        """
        a, b = self.range(split)
        self.check(ds)
        if split == "train":
            sel_stride, sel_hours = 1, None
        else:
            sel_stride, sel_hours = self.test_stride, self.hours
        if stride is not None:
            sel_stride = stride
        if hours is not _DEFAULT:
            sel_hours = hours
        lo = a if split == "test" else a + self.context  # no context before a train/val split
        return make_windows(
            ds,
            self.context,
            self.horizon,
            target_range=(lo, b),
            stride=sel_stride,
            hours=sel_hours,
        )

    def resized(self, n_steps: int) -> Protocol:
        """The same chronological protocol on a data set of ``n_steps`` steps."""
        if self.fractions is None:
            raise ForecastError(
                f"protocol {self.name} has fixed splits; it applies to the {self.n_steps} steps "
                f"of {self.dataset!r} only"
            )
        train, val, test = _fraction_ranges(n_steps, self.fractions)
        return replace(self, train=train, val=val, test=test, n_steps=int(n_steps))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able description (stored with evaluation results)."""
        return {
            "name": self.name,
            "dataset": self.dataset,
            "context": self.context,
            "horizon": self.horizon,
            "train": list(self.train),
            "val": list(self.val),
            "test": list(self.test),
            "hours": list(self.hours) if self.hours is not None else None,
            "test_stride": self.test_stride,
            "n_steps": self.n_steps,
            "step": self.step,
            "start": self.start,
        }


def _fraction_ranges(
    n_steps: int, fractions: tuple[float, float, float]
) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    f = np.asarray(fractions, dtype=float)
    if f.shape != (3,) or np.any(f <= 0) or not np.isclose(f.sum(), 1.0):
        raise ForecastError(f"split fractions {fractions} must be 3 positive numbers summing to 1")
    cut1 = round(n_steps * f[0])
    cut2 = round(n_steps * (f[0] + f[1]))
    if not 0 < cut1 < cut2 < n_steps:
        raise ForecastError(f"{n_steps} steps are too few to split by {fractions}; use more data")
    return (0, cut1), (cut1, cut2), (cut2, int(n_steps))


def chronological(
    name: str,
    dataset: str,
    n_steps: int,
    context: int,
    horizon: int,
    *,
    step: str,
    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2),
    hours: tuple[int, ...] | None = None,
    test_stride: int = 1,
    start: str | None = None,
) -> Protocol:
    """A protocol with chronological splits by fractions of ``n_steps`` (rounded to steps).

    Examples
    --------
    >>> p = chronological("demo", "synthetic-weather", 100, 6, 24, step="1h")
    >>> p.train, p.val, p.test
    ((0, 70), (70, 80), (80, 100))
    """
    train, val, test = _fraction_ranges(n_steps, fractions)
    return Protocol(
        name=name,
        dataset=dataset,
        context=context,
        horizon=horizon,
        train=train,
        val=val,
        test=test,
        hours=hours,
        test_stride=test_stride,
        n_steps=int(n_steps),
        step=step,
        start=start,
        fractions=tuple(float(x) for x in fractions),
    )


PROTOCOLS: Registry[Protocol] = Registry("protocol")
PROTOCOLS.add(
    "P1",
    Protocol(
        name="P1",
        dataset="los-loop",
        context=12,
        horizon=12,
        train=(0, 1411),
        val=(1411, 1613),
        test=(1613, 2016),
        hours=None,
        test_stride=1,
        n_steps=2016,
        step="5min",
        start="2012-03-01T00:00:00",
    ),
)
PROTOCOLS.add(
    "P2",
    Protocol(
        name="P2",
        dataset="era5-uk-t2m",
        context=6,
        horizon=24,
        train=(0, 21 * 24),
        val=(21 * 24, 24 * 24),
        test=(24 * 24, 31 * 24),
        hours=(0, 6, 12, 18),
        test_stride=1,
        n_steps=744,
        step="1h",
        start="2019-03-01T00:00:00",
    ),
)
PROTOCOLS.add(
    "synthetic-weather",
    chronological(
        "synthetic-weather",
        "synthetic-weather",
        90 * 24,
        6,
        24,
        step="1h",
        hours=(0, 6, 12, 18),
    ),
)
PROTOCOLS.add(
    "synthetic-traffic",
    chronological(
        "synthetic-traffic",
        "synthetic-traffic",
        28 * 288,
        12,
        12,
        step="5min",
        test_stride=12,
    ),
)


def get_protocol(name: str) -> Protocol:
    """The registered protocol ``name`` (``P1``, ``P2``, ``synthetic-weather``,
    ``synthetic-traffic``); an unknown name raises a ForecastError listing the valid ones."""
    return PROTOCOLS.get(name)
