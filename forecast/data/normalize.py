"""Normalization statistics fitted on the training part only, stored as JSON.

``z = (x - mean) / std`` per forecast variable, or per variable and sensor (``per_node=True``,
better for traffic, where free-flow speeds differ between sensors). Statistics ignore NaN.
:meth:`Normalizer.transform` / :meth:`Normalizer.inverse` work on data sets;
:meth:`Normalizer.transform_array` / :meth:`Normalizer.inverse_array` on numpy arrays with a
channel axis (the layout of :func:`forecast.data.torch.to_array`), for the tensor side.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr

from forecast.data.describe import data_variables
from forecast.dims import NODE, TIME
from forecast.errors import ForecastError

__all__ = ["Normalizer"]

#: ``units`` of normalized variables.
NORMALIZED_UNITS = "1"


@dataclass(frozen=True)
class Normalizer:
    """Per-variable (optionally per-sensor) mean and standard deviation.

    Parameters
    ----------
    variables : tuple of str
        Forecast variables, in channel order.
    mean, std : dict of str to numpy.ndarray
        Statistics per variable: shape ``()``, or ``(node,)`` when ``per_node``.
    units : dict of str to str
        Physical units per variable (restored by :meth:`inverse`).
    per_node : bool
        Statistics per sensor.
    nodes : tuple of str or None
        Sensor ids the per-node statistics belong to (checked on use).

    Examples
    --------
    >>> import numpy as np, pandas as pd, xarray as xr
    >>> ds = xr.Dataset({"t": (("time",), np.array([1.0, 3.0]), {"units": "K"})},
    ...                 coords={"time": pd.date_range("2020", periods=2, freq="h")})
    >>> norm = Normalizer.fit(ds)
    >>> norm.transform(ds)["t"].values.tolist()
    [-1.0, 1.0]
    >>> Normalizer.from_dict(norm.to_dict()).inverse(norm.transform(ds))["t"].values.tolist()
    [1.0, 3.0]
    """

    variables: tuple[str, ...]
    mean: dict[str, np.ndarray] = field(repr=False)
    std: dict[str, np.ndarray] = field(repr=False)
    units: dict[str, str]
    per_node: bool = False
    nodes: tuple[str, ...] | None = None

    @classmethod
    def fit(cls, ds: xr.Dataset, per_node: bool = False) -> Normalizer:
        """Fit on ``ds``; pass the training part only (e.g. ``protocol.split(ds, "train")``).

        Raises
        ------
        ForecastError
            No forecast variable, ``per_node`` without a ``node`` dim, or a variable (sensor)
            without finite values or with zero spread.
        """
        variables = data_variables(ds)
        if not variables:
            raise ForecastError("no forecast variable (none has a time dim); nothing to normalize")
        if per_node and NODE not in ds.dims:
            raise ForecastError(
                f"per_node=True needs a '{NODE}' dimension but the data has "
                f"({', '.join(map(str, ds.dims))}); use per_node=False for grids"
            )
        mean: dict[str, np.ndarray] = {}
        std: dict[str, np.ndarray] = {}
        for name in variables:
            count, m, s = _moments(ds[name], per_node)
            if np.any(count == 0):
                where = _where(ds, count == 0, per_node)
                raise ForecastError(
                    f"variable '{name}' has no finite value{where} in the fitting data; fit on a "
                    "period with data or drop it"
                )
            bad = ~(s > 1e-12 * np.maximum(1.0, np.abs(m)))
            if np.any(bad):
                raise ForecastError(
                    f"variable '{name}' is constant{_where(ds, bad, per_node)} in the fitting "
                    "data (zero spread); fit on a longer period, use per_node=False, or drop it"
                )
            mean[name], std[name] = np.asarray(m), np.asarray(s)
        nodes = tuple(str(v) for v in ds[NODE].values) if per_node else None
        units = {v: str(ds[v].attrs.get("units", "unknown")) for v in variables}
        return cls(tuple(variables), mean, std, units, per_node, nodes)

    # -- data sets --------------------------------------------------------------------------
    def _check(self, ds: xr.Dataset) -> None:
        have = data_variables(ds)
        if set(have) != set(self.variables):
            raise ForecastError(
                f"data variables [{', '.join(have)}] do not match the normalizer's "
                f"[{', '.join(self.variables)}]; normalize the data it was fitted for"
            )
        if self.per_node:
            ids = tuple(str(v) for v in ds[NODE].values) if NODE in ds.coords else ()
            if ids != self.nodes:
                raise ForecastError(
                    "the data's sensors differ from those the per-node normalizer was fitted on; "
                    "select and order the sensors as in fitting (ds.sel(node=...))"
                )

    def _stat(self, name: str, which: str) -> xr.DataArray:
        value = (self.mean if which == "mean" else self.std)[name]
        return xr.DataArray(value, dims=(NODE,) if self.per_node else ())

    def transform(self, ds: xr.Dataset) -> xr.Dataset:
        """Normalized copy of ``ds`` (units ``"1"``; other variables untouched)."""
        self._check(ds)
        out = ds.copy()
        for name in self.variables:
            da = (ds[name] - self._stat(name, "mean")) / self._stat(name, "std")
            out[name] = da.astype(ds[name].dtype).assign_attrs(
                {**ds[name].attrs, "units": NORMALIZED_UNITS}
            )
        return out

    def inverse(self, ds: xr.Dataset) -> xr.Dataset:
        """Physical-units copy of normalized ``ds`` (units restored)."""
        self._check(ds)
        out = ds.copy()
        for name in self.variables:
            da = ds[name] * self._stat(name, "std") + self._stat(name, "mean")
            out[name] = da.astype(ds[name].dtype).assign_attrs(
                {**ds[name].attrs, "units": self.units[name]}
            )
        return out

    # -- arrays -----------------------------------------------------------------------------
    def stats_array(
        self, channel_axis: int, ndim: int, variables: Sequence[str] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(mean, std)`` as float32 arrays broadcastable against an array of ``ndim`` dims
        whose ``channel_axis`` holds ``variables`` (default: the fitted order) and, with
        ``per_node``, whose last axis is ``node``."""
        variables = list(self.variables if variables is None else variables)
        missing = [v for v in variables if v not in self.variables]
        if missing:
            raise ForecastError(
                f"no statistics for {', '.join(missing)}; the normalizer knows "
                f"{', '.join(self.variables)}"
            )
        axis = channel_axis % ndim
        if self.per_node and axis == ndim - 1:
            raise ForecastError("with per-node statistics the last axis must be node, not channel")
        shape = [1] * ndim
        shape[axis] = len(variables)
        if self.per_node:
            shape[-1] = len(self.nodes or ())
        node_shape = (len(self.nodes or ()),) if self.per_node else ()
        mean = np.stack([np.broadcast_to(self.mean[v], node_shape) for v in variables])
        std = np.stack([np.broadcast_to(self.std[v], node_shape) for v in variables])
        # (channel[, node]) -> channel at `axis`, node last: ones elsewhere keep the memory order
        mean = mean.astype(np.float32).reshape(shape)
        std = std.astype(np.float32).reshape(shape)
        return mean, std

    def _array_check(
        self, values: np.ndarray, channel_axis: int, variables: Sequence[str] | None
    ) -> None:
        n = len(self.variables if variables is None else variables)
        if values.shape[channel_axis] != n:
            raise ForecastError(
                f"array has {values.shape[channel_axis]} channels on axis {channel_axis} but "
                f"{n} variables were given; pass the array's channel axis"
            )
        if self.per_node and values.shape[-1] != len(self.nodes or ()):
            raise ForecastError(
                f"array has {values.shape[-1]} sensors on its last axis but the normalizer "
                f"{len(self.nodes or ())}; pass arrays over the fitted sensors"
            )

    def transform_array(
        self,
        values: np.ndarray,
        channel_axis: int = 1,
        variables: Sequence[str] | None = None,
        *,
        copy: bool = True,
    ) -> np.ndarray:
        """Normalize a numpy array, e.g. ``(time, channel, *space)`` (``channel_axis=1``).

        With ``copy=False`` a float32 array is normalized in place (no second copy of the
        data) and returned.
        """
        values = np.asarray(values)
        self._array_check(values, channel_axis, variables)
        mean, std = self.stats_array(channel_axis, values.ndim, variables)
        if not copy:
            if values.dtype != np.float32:
                raise ForecastError(
                    f"in-place normalization needs a float32 array, got {values.dtype}; "
                    "use copy=True"
                )
            values -= mean
            values /= std
            return values
        return ((values - mean) / std).astype(np.result_type(values.dtype, np.float32))

    def inverse_array(
        self, values: np.ndarray, channel_axis: int = 1, variables: Sequence[str] | None = None
    ) -> np.ndarray:
        """Undo :meth:`transform_array`; e.g. ``(member, lead, channel, *space)`` with
        ``channel_axis=2``."""
        values = np.asarray(values)
        self._array_check(values, channel_axis, variables)
        mean, std = self.stats_array(channel_axis, values.ndim, variables)
        return (values * std + mean).astype(np.result_type(values.dtype, np.float32))

    # -- JSON -------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-able statistics (floats or lists of floats per variable)."""
        return {
            "per_node": self.per_node,
            "nodes": list(self.nodes) if self.nodes is not None else None,
            "variables": {
                v: {
                    "mean": np.asarray(self.mean[v]).tolist(),
                    "std": np.asarray(self.std[v]).tolist(),
                    "units": self.units[v],
                }
                for v in self.variables
            },
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Normalizer:
        """Rebuild from :meth:`to_dict` output; malformed input raises a ForecastError."""
        try:
            per_node = bool(d["per_node"])
            nodes = tuple(str(n) for n in d["nodes"]) if d.get("nodes") is not None else None
            variables = tuple(str(v) for v in d["variables"])
            mean = {v: np.asarray(d["variables"][v]["mean"], dtype=np.float64) for v in variables}
            std = {v: np.asarray(d["variables"][v]["std"], dtype=np.float64) for v in variables}
            units = {v: str(d["variables"][v]["units"]) for v in variables}
        except (KeyError, TypeError, ValueError) as err:
            raise ForecastError(
                f"malformed normalization statistics ({type(err).__name__}: {err}); "
                "use the output of Normalizer.to_dict()"
            ) from None
        want = (len(nodes),) if per_node and nodes is not None else ()
        for v in variables:
            if mean[v].shape != want or std[v].shape != want or np.any(~(std[v] > 0)):
                raise ForecastError(
                    f"normalization statistics of '{v}' have shape {mean[v].shape} (expected "
                    f"{want}) or a non-positive std; use the output of Normalizer.to_dict()"
                )
        if per_node and nodes is None:
            raise ForecastError("per-node normalization statistics lack their 'nodes' list")
        return cls(variables, mean, std, units, per_node, nodes)


def _moments(
    da: xr.DataArray, per_node: bool, block_elements: int = 2**20
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Count of finite values, mean and std (NaN ignored) over all dims but ``node`` if
    ``per_node``; two passes over blocks of time steps in float64, so the extra memory is one
    block (about ``block_elements`` values), not a copy of the data."""
    rest = [d for d in da.dims if d != TIME and not (per_node and d == NODE)]
    order = [TIME, *rest, *([NODE] if per_node else [])]
    da = da.transpose(*order)
    axes = tuple(range(len(order) - (1 if per_node else 0)))
    per_step = max(1, int(np.prod([da.sizes[d] for d in order[1:]], dtype=np.int64)))
    step = max(1, block_elements // per_step)
    n_time = da.sizes[TIME]

    def blocks():
        for start in range(0, n_time, step):
            block = np.asarray(da.isel({TIME: slice(start, start + step)}).values, np.float64)
            yield block, np.isfinite(block)

    count = total = 0.0
    for block, ok in blocks():
        count = count + ok.sum(axis=axes)
        total = total + np.where(ok, block, 0.0).sum(axis=axes)
    count = np.asarray(count)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.asarray(total / count)
    squares = 0.0
    for block, ok in blocks():
        squares = squares + np.where(ok, (block - mean) ** 2, 0.0).sum(axis=axes)
    with np.errstate(invalid="ignore", divide="ignore"):
        std = np.sqrt(np.asarray(squares) / count)
    return count, mean, std


def _where(ds: xr.Dataset, bad: np.ndarray, per_node: bool) -> str:
    if not per_node:
        return ""
    ids = ds[NODE].values if NODE in ds.coords else np.arange(ds.sizes[NODE])
    bad_ids = [str(i) for i in np.asarray(ids)[np.asarray(bad)]]
    more = f" and {len(bad_ids) - 3} more" if len(bad_ids) > 3 else ""
    return f" at sensor(s) {', '.join(bad_ids[:3])}{more}"
