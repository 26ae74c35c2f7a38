"""Data queries behind the dashboard: pure functions on data sets, ensembles and scorecards.

Nothing here calls Streamlit, so every query is testable on small hand-built inputs. Ensembles
follow docs/architecture.md: dims ``(member, lead_time, *space)``, scalar ``init_time``,
``valid_time = init_time + lead_time``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from forecast.dims import (
    ADJACENCY,
    INIT_TIME,
    LAT,
    LEAD_TIME,
    LON,
    MEMBER,
    METRIC,
    MODEL,
    NODE,
    NODE_J,
    QUANTILE,
    SCORECARD_METRICS,
    TIME,
    VALID_TIME,
    X,
    Y,
    space_dims,
)
from forecast.errors import ForecastError

from .paths import THREADS_ENV

#: Functions the app calls through this module, shared with ``forecast path`` and the models,
#: imported on first use (their modules import torch, which this module keeps out of the
#: dashboard's start-up).
_LAZY = {
    "with_member_sources": "forecast.models.pooled",
    "latent_explorer": "forecast.sampling.paths",
    "is_latent": "forecast.sampling.scenarios",
    "latent_part": "forecast.sampling.scenarios",
    "latent_parts": "forecast.sampling.scenarios",
    "part_members": "forecast.sampling.scenarios",
    "scenario_latents": "forecast.sampling.scenarios",
}


def __getattr__(name: str) -> Any:
    """The functions of :data:`_LAZY`, imported when first asked for."""
    import importlib

    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)


#: Statistics a map or network view can show.
STATISTICS = ("mean", "spread", "quantile", "exceedance", "member", "truth")
#: Quantiles of the fan chart: outer band, inner band, median.
FAN_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


# --------------------------------------------------------------------------------------------
# finding things
# --------------------------------------------------------------------------------------------
def list_checkpoints(folders: Iterable[str | Path]) -> list[Path]:
    """Model checkpoints (``*.safetensors``) found under ``folders``, sorted, without duplicates.

    Folders that do not exist are skipped; sub-folders are searched too.
    """
    found: list[Path] = []
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*.safetensors")):
            res = path.resolve()
            if res not in found:
                found.append(res)
    return found


def list_scorecards(folders: Iterable[str | Path]) -> list[Path]:
    """Scorecard NetCDF files (``scorecard*.nc``) written by the protocol runner under folders."""
    found: list[Path] = []
    for folder in folders:
        folder = Path(folder)
        if folder.is_dir():
            found.extend(p.resolve() for p in sorted(folder.rglob("scorecard*.nc")))
    return list(dict.fromkeys(found))


def check_ensemble(ens: xr.Dataset) -> None:
    """Raise a ForecastError unless ``ens`` has the ensemble layout the dashboard shows."""
    missing = [d for d in (MEMBER, LEAD_TIME) if d not in ens.dims]
    if missing:
        raise ForecastError(
            f"ensemble lacks dimension(s) {', '.join(missing)}; give a forecast with dims "
            f"({MEMBER}, {LEAD_TIME}, lat, lon) or ({MEMBER}, {LEAD_TIME}, node)"
        )
    if not space_dims(ens):
        raise ForecastError(
            f"ensemble has dims {tuple(ens.dims)} but no grid (lat, lon / y, x) or node "
            "dimension; give a gridded or sensor-network forecast"
        )


def variables(ens: xr.Dataset) -> list[str]:
    """Forecast variables of an ensemble: data variables over ``member`` and ``lead_time``."""
    return [v for v in ens.data_vars if MEMBER in ens[v].dims and LEAD_TIME in ens[v].dims]


def data_variables_of(ds: xr.Dataset) -> list[str]:
    """Variables of a data set that vary in time (the ones a forecast covers)."""
    return [v for v in ds.data_vars if TIME in ds[v].dims]


def lead_labels(lead_times: Any) -> list[str]:
    """Human labels for lead times: ``+1 h``, ``+30 min``, ``+1 d 6 h``."""
    out = []
    for td in pd.to_timedelta(np.asarray(lead_times)):
        minutes = int(td.total_seconds() // 60)
        if minutes % 60:
            out.append(f"+{minutes} min")
        elif minutes % (24 * 60) == 0 and minutes >= 48 * 60:
            out.append(f"+{minutes // (24 * 60)} d")
        else:
            out.append(f"+{minutes // 60} h")
    return out


def issue_times(ds: xr.Dataset, context: int, horizon: int) -> pd.DatetimeIndex:
    """Issue times of ``ds`` with a full context and a full horizon inside the data."""
    times = pd.DatetimeIndex(ds[TIME].values)
    if len(times) < context + horizon:
        raise ForecastError(
            f"data has {len(times)} time steps, fewer than context {context} + horizon "
            f"{horizon}; give a longer record"
        )
    return times[context - 1 : len(times) - horizon]


# --------------------------------------------------------------------------------------------
# ensemble statistics
# --------------------------------------------------------------------------------------------
def member_quantile(da: xr.DataArray, quantiles: Sequence[float] | float) -> xr.DataArray:
    """Quantiles over ``member`` skipping NaN, as ``numpy.nanquantile`` (linear), but fast.

    ``numpy.nanquantile`` loops over points in Python (seconds for a 50-member grid ensemble);
    this sorts once along the members (NaN sort last) and interpolates between the two order
    statistics around ``q * (n - 1)``, ``n`` being the number of valid members at each point.

    Returns
    -------
    xr.DataArray
        Dims ``(quantile, *other dims)`` for a sequence, the other dims for a scalar; all-NaN
        points give NaN.
    """
    scalar = np.ndim(quantiles) == 0
    qs = np.atleast_1d(np.asarray(quantiles, dtype=float))
    if np.any((qs < 0) | (qs > 1)):
        raise ForecastError(f"quantiles {qs.tolist()} outside [0, 1]; pick them in [0, 1]")
    other = [d for d in da.dims if d != MEMBER]
    v = np.sort(da.transpose(MEMBER, *other).values.astype(np.float64), axis=0)
    n = np.sum(~np.isnan(v), axis=0)
    out = np.empty((len(qs), *v.shape[1:]))
    for k, qk in enumerate(qs):
        pos = qk * np.maximum(n - 1, 0)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, np.maximum(n - 1, 0))
        a = np.take_along_axis(v, lo[None], axis=0)[0]
        b = np.take_along_axis(v, hi[None], axis=0)[0]
        res = a + (pos - lo) * (b - a)
        out[k] = np.where(n > 0, res, np.nan)
    coords = {c: da.coords[c] for c in da.coords if MEMBER not in da.coords[c].dims}
    res = xr.DataArray(
        out, dims=(QUANTILE, *other), coords={**coords, QUANTILE: qs}, attrs=da.attrs, name=da.name
    )
    return res.isel({QUANTILE: 0}, drop=True) if scalar else res


def _at_lead(da: xr.DataArray, lead: Any) -> xr.DataArray:
    if lead is None:
        return da
    if isinstance(lead, int | np.integer):
        return da.isel({LEAD_TIME: int(lead)})
    return da.sel({LEAD_TIME: pd.Timedelta(lead)})


def ensemble_statistic(
    ens: xr.Dataset,
    variable: str,
    statistic: str,
    *,
    lead: Any = None,
    quantile: float = 0.5,
    threshold: float | None = None,
    member: int = 0,
    truth: xr.Dataset | None = None,
) -> xr.DataArray:
    """One statistic of the ensemble for display, over space (and lead when ``lead`` is None).

    Parameters
    ----------
    ens : xr.Dataset
        Ensemble with dims ``(member, lead_time, *space)``.
    variable : str
        Variable to show.
    statistic : {"mean", "spread", "quantile", "exceedance", "member", "truth"}
        ``spread`` is the ensemble standard deviation (ddof=1); ``exceedance`` is the fraction
        of members strictly above ``threshold``; ``truth`` the observation at the valid times.
    lead : int or timedelta, optional
        Lead index (int) or lead time; None keeps all leads.
    truth : xr.Dataset, optional
        Observed data set with a ``time`` dim, needed for ``statistic="truth"``.

    Returns
    -------
    xr.DataArray
        Dims ``(*space)`` or ``(lead_time, *space)``, with the variable's units.
    """
    check_ensemble(ens)
    if variable not in ens:
        raise ForecastError(
            f"variable {variable!r} not in the ensemble; choose one of {variables(ens)}"
        )
    da = _at_lead(ens[variable], lead)
    units = ens[variable].attrs.get("units", "")
    n = da.sizes[MEMBER]
    if statistic == "mean":
        out = da.mean(MEMBER)
    elif statistic == "spread":
        if n < 2:
            raise ForecastError("spread needs at least 2 members; sample more members")
        out = da.std(MEMBER, ddof=1)
    elif statistic == "quantile":
        if not 0.0 <= quantile <= 1.0:
            raise ForecastError(f"quantile {quantile} outside [0, 1]; pick one in [0, 1]")
        out = member_quantile(da, quantile)
    elif statistic == "exceedance":
        if threshold is None:
            raise ForecastError("exceedance needs a threshold; set the threshold slider")
        out = (da > threshold).where(da.notnull()).mean(MEMBER)
        units = "1"
    elif statistic == "member":
        if not 0 <= member < n:
            raise ForecastError(f"member {member} outside 0..{n - 1}; pick one in range")
        out = da.isel({MEMBER: member}, drop=True)
    elif statistic == "truth":
        if truth is None:
            raise ForecastError("no truth is known for this issue time; pick an earlier one")
        out = truth_at(ens, truth, variable)
        out = _at_lead(out, lead)
    else:
        raise ForecastError(f"unknown statistic {statistic!r}; valid: {', '.join(STATISTICS)}")
    out = out.drop_vars([c for c in (MEMBER, QUANTILE) if c in out.coords])
    out.attrs = {"units": units, "statistic": statistic, "long_name": variable}
    out.name = variable
    return out


def truth_at(ens: xr.Dataset, truth: xr.Dataset, variable: str) -> xr.DataArray:
    """Observed ``variable`` at the ensemble's valid times, with dims ``(lead_time, *space)``.

    Raises a ForecastError when a valid time lies outside the observations.
    """
    valid = pd.DatetimeIndex(np.atleast_1d(ens[VALID_TIME].values))
    times = pd.DatetimeIndex(truth[TIME].values)
    missing = valid.difference(times)
    if len(missing):
        raise ForecastError(
            f"no observation at {missing[0]} ({len(missing)} valid time(s) missing); pick an "
            "issue time whose horizon lies inside the data"
        )
    obs = truth[variable].sel({TIME: valid})
    obs = obs.rename({TIME: LEAD_TIME}).assign_coords({LEAD_TIME: ens[LEAD_TIME].values})
    return obs.drop_vars([c for c in obs.coords if c not in obs.dims and c != LEAD_TIME])


def postage_stamps(ens: xr.Dataset, variable: str, lead: Any, n: int = 12) -> xr.DataArray:
    """The first ``n`` members of ``variable`` at one lead: dims ``(member, *space)``."""
    check_ensemble(ens)
    da = _at_lead(ens[variable], lead)
    return da.isel({MEMBER: slice(0, max(1, int(n)))})


def color_range(da: xr.DataArray, statistic: str) -> tuple[float, float]:
    """A fixed colour range for a statistic so that frames and members compare at a glance."""
    if statistic == "exceedance":
        return 0.0, 1.0
    lo, hi = float(da.min(skipna=True)), float(da.max(skipna=True))
    if not np.isfinite(lo) or not np.isfinite(hi):
        raise ForecastError("every value to show is missing (NaN); pick another variable or time")
    if hi == lo:
        hi = lo + 1.0
    return lo, hi


# --------------------------------------------------------------------------------------------
# points and sensors
# --------------------------------------------------------------------------------------------
def point_index(obj: xr.Dataset | xr.DataArray, point: dict[str, Any]) -> dict[str, Any]:
    """Indexer that picks one place: ``{"node": id}`` or nearest ``{"lat": ., "lon": .}``.

    For grids the nearest grid point is chosen and returned as exact coordinate values.
    """
    space = space_dims(obj)
    if space == (NODE,):
        if NODE not in point:
            raise ForecastError("pick a sensor: this forecast is on a sensor network")
        node = point[NODE]
        if node not in obj[NODE].values:
            raise ForecastError(f"sensor {node!r} not in the network; pick one of the listed ids")
        return {NODE: node}
    if not space:
        raise ForecastError("no grid or sensor dimension; give a gridded or network forecast")
    out = {}
    for dim in space:
        if dim not in point:
            raise ForecastError(f"pick a point: {dim} is missing")
        coord = obj[dim].values
        out[dim] = coord[int(np.abs(coord - float(point[dim])).argmin())]
    return out


def point_series(ens: xr.Dataset, variable: str, point: dict[str, Any]) -> xr.DataArray:
    """Members of ``variable`` at one place over the horizon: dims ``(member, lead_time)``."""
    check_ensemble(ens)
    return ens[variable].sel(point_index(ens, point))


def place_series(
    obj: xr.Dataset,
    variable: str,
    point: dict[str, Any] | None,
    start: Any = None,
    stop: Any = None,
) -> xr.DataArray:
    """``variable`` at one place (``point``, as :func:`point_index`) or, with ``point=None``,
    its area mean (:func:`forecast.scoring.multivariate.area_mean`: cos-latitude weighted on
    a lat/lon grid, missing points skipped); every other dim kept (an ensemble's
    ``(member, lead_time)``, a data set's ``time``). ``start`` / ``stop`` (inclusive) cut a
    data set's times."""
    da = obj[variable]
    if start is not None or stop is not None:
        cut = [None if t is None else pd.Timestamp(t) for t in (start, stop)]
        da = da.sel({TIME: slice(*cut)})
    if point is None:
        from forecast.scoring.multivariate import area_mean

        return area_mean(da)
    return da.sel(point_index(da, point))


def area_text(obj: xr.Dataset | xr.DataArray) -> str:
    """``area mean of 33 x 49 grid points (cos-latitude weighted)`` or ``mean of 207 sensors``."""
    space = space_dims(obj)
    if space == (NODE,):
        return f"mean of {obj.sizes[NODE]} sensors"
    sizes = " x ".join(str(obj.sizes[d]) for d in space)
    how = " (cos-latitude weighted)" if space == (LAT, LON) else ""
    return f"area mean of {sizes} grid points{how}"


def place_text(index: dict[str, Any]) -> str:
    """``lat 54.13, lon -3.87`` or ``node S001`` for a point indexer."""
    parts = []
    for k, v in index.items():
        parts.append(f"{k} {v:.2f}" if isinstance(v, float | np.floating) else f"{k} {v}")
    return ", ".join(parts)


def history_series(
    ds: xr.Dataset, variable: str, point: dict[str, Any], start: Any, stop: Any
) -> xr.DataArray:
    """Observed ``variable`` at one place between two times (inclusive): dim ``time``."""
    return place_series(ds, variable, point, start, stop)


def fan_quantiles(series: xr.DataArray, quantiles: Sequence[float] = FAN_QUANTILES) -> xr.DataArray:
    """Quantiles over members of a point series: dims ``(quantile, lead_time)``."""
    return member_quantile(series, list(quantiles))


def box_stats(series: xr.DataArray) -> dict[str, np.ndarray]:
    """EPSgram boxes per lead: min, 25 %, median, 75 %, max and mean over members."""
    v = series.transpose(MEMBER, LEAD_TIME).values.astype(float)
    q = np.nanquantile(v, [0.0, 0.25, 0.5, 0.75, 1.0], axis=0)
    return {
        "min": q[0],
        "q1": q[1],
        "median": q[2],
        "q3": q[3],
        "max": q[4],
        "mean": np.nanmean(v, axis=0),
    }


def default_point(ds: xr.Dataset) -> dict[str, Any]:
    """The middle of the grid, or the first sensor."""
    space = space_dims(ds)
    if space == (NODE,):
        return {NODE: ds[NODE].values[0]}
    return {d: ds[d].values[ds.sizes[d] // 2] for d in space}


# --------------------------------------------------------------------------------------------
# sensor-network layout
# --------------------------------------------------------------------------------------------
def node_positions(ds: xr.Dataset) -> tuple[np.ndarray, np.ndarray, str]:
    """Plane positions of the sensors: ``(x, y, how)`` with ``how`` ``"lat/lon"`` or ``"graph"``.

    Uses ``lon``/``lat`` coordinates on ``node`` when present and finite; otherwise a spectral
    layout from the adjacency (eigenvectors 2 and 3 of the normalized Laplacian of the
    symmetrized weights), with signs fixed so that the layout is deterministic.
    """
    if NODE not in ds.dims:
        raise ForecastError("no node dimension; the network view needs a sensor data set")
    lat = ds.coords.get(LAT)
    lon = ds.coords.get(LON)
    if (
        lat is not None
        and lon is not None
        and lat.dims == (NODE,)
        and lon.dims == (NODE,)
        and np.isfinite(lat.values).all()
        and np.isfinite(lon.values).all()
    ):
        return np.asarray(lon.values, float), np.asarray(lat.values, float), "lat/lon"
    if ADJACENCY not in ds:
        raise ForecastError(
            "sensors have no lat/lon and no adjacency; give the adjacency matrix to lay out "
            "the network"
        )
    return (*spectral_layout(ds[ADJACENCY].values), "graph")


def spectral_layout(adjacency: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic 2-D spectral layout of a weighted graph.

    Parameters
    ----------
    adjacency : (n, n) array
        Non-negative weights; symmetrized, diagonal ignored.

    Returns
    -------
    x, y : arrays of length n
        Eigenvectors 2 and 3 of ``I - D^-1/2 W D^-1/2``, each scaled to max |.| = 1 and signed
        so that its largest-magnitude entry is positive.
    """
    w = np.asarray(adjacency, dtype=float)
    if w.ndim != 2 or w.shape[0] != w.shape[1]:
        raise ForecastError(f"adjacency has shape {w.shape}; it must be square (n, n)")
    n = w.shape[0]
    if n < 3:
        return np.arange(n, dtype=float), np.zeros(n)
    w = np.nan_to_num(0.5 * (np.abs(w) + np.abs(w).T))
    np.fill_diagonal(w, 0.0)
    deg = w.sum(1)
    inv = np.where(deg > 0, 1.0 / np.sqrt(np.where(deg > 0, deg, 1.0)), 0.0)
    lap = np.eye(n) - inv[:, None] * w * inv[None, :]
    _, vec = np.linalg.eigh(lap)
    out = []
    for k in (1, 2):
        v = vec[:, k] * inv if deg.all() else vec[:, k]
        scale = np.abs(v).max() or 1.0
        v = v / scale
        if v[np.abs(v).argmax()] < 0:
            v = -v
        out.append(v)
    return out[0], out[1]


def network_edges(ds: xr.Dataset, threshold: float = 0.0) -> list[tuple[int, int]]:
    """Index pairs ``(i, j)``, ``i < j``, whose adjacency weight exceeds ``threshold``."""
    if ADJACENCY not in ds:
        return []
    w = np.asarray(ds[ADJACENCY].transpose(NODE, NODE_J).values, float)
    i, j = np.nonzero(np.triu(np.maximum(w, w.T), k=1) > threshold)
    return list(zip(i.tolist(), j.tolist(), strict=True))


# --------------------------------------------------------------------------------------------
# scores
# --------------------------------------------------------------------------------------------
def open_scorecard(path: str | Path) -> xr.Dataset:
    """Read a scorecard NetCDF written by the protocol runner (dims model, lead_time, metric)."""
    try:
        with xr.open_dataset(path) as f:
            sc = f.load()
    except (OSError, ValueError) as err:
        raise ForecastError(
            f"{path} is not a readable scorecard ({err}); write one with `forecast evaluate`"
        ) from None
    check_scorecard(sc)
    return sc


def open_significance(scorecard_path: str | Path) -> pd.DataFrame | None:
    """The significance table a protocol run wrote beside its scorecard (``significance.csv``),
    or None where there is none (a run without baselines, or an older run)."""
    from forecast.scoring.significance import COLUMNS

    path = Path(scorecard_path).with_name("significance.csv")
    if not path.is_file():
        return None
    try:
        table = pd.read_csv(path)
    except (OSError, ValueError) as err:
        raise ForecastError(
            f"{path} is not a readable significance table ({err}); write it again with "
            "`forecast evaluate --protocol ...`"
        ) from None
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing or table.empty:
        what = f"lacks the column(s) {', '.join(missing)}" if missing else "has no rows"
        raise ForecastError(
            f"{path} {what}; write it again with `forecast evaluate --protocol ...`"
        )
    return table


def significance_pivot(table: pd.DataFrame, variable: str | None = None) -> pd.DataFrame:
    """Model x lead cells such as ``-3.6% better``: the CRPS difference to the best baseline at
    that lead, relative to it, and the test's verdict (``n.s.``: not significant)."""
    names = list(dict.fromkeys(table["variable"]))
    name = variable if variable in names else names[0]
    rows = table[table["variable"] == name]
    short = {"not significant": "n.s."}

    def cell(r: Any) -> str:
        if not np.isfinite(r.relative_difference):
            return str(r.verdict)
        return f"{r.relative_difference:+.1%} {short.get(r.verdict, r.verdict)}"

    cells = rows.assign(cell=[cell(r) for r in rows.itertuples()])
    leads = list(dict.fromkeys(rows["lead_time"]))
    models = list(dict.fromkeys(rows["model"]))
    out = cells.pivot(index="model", columns="lead_time", values="cell")
    return out.loc[models, leads]


def check_scorecard(sc: xr.Dataset) -> None:
    """Raise a ForecastError unless ``sc`` has dims (model, lead_time, metric)."""
    missing = [d for d in (MODEL, LEAD_TIME, METRIC) if d not in sc.dims]
    if missing:
        raise ForecastError(
            f"scorecard lacks dims {', '.join(missing)}; write one with `forecast evaluate`"
        )


def scorecard_array(sc: xr.Dataset, variable: str | None = None) -> xr.DataArray:
    """The (model, lead_time, metric) array of a scorecard (its first variable by default)."""
    check_scorecard(sc)
    names = [v for v in sc.data_vars if {MODEL, LEAD_TIME, METRIC} <= set(sc[v].dims)]
    if not names:
        raise ForecastError("scorecard has no variable over (model, lead_time, metric)")
    name = variable or names[0]
    if name not in names:
        raise ForecastError(f"scorecard variable {name!r} absent; choose one of {names}")
    return sc[name]


def metric_by_lead(sc: xr.Dataset, metric: str, variable: str | None = None) -> xr.DataArray:
    """One metric over ``(model, lead_time)``; unknown metric -> error listing the metrics."""
    arr = scorecard_array(sc, variable)
    metrics = [str(m) for m in arr[METRIC].values]
    if metric not in metrics:
        raise ForecastError(f"metric {metric!r} not in the scorecard; choose one of {metrics}")
    return arr.sel({METRIC: metric}, drop=True).transpose(MODEL, LEAD_TIME)


def skill_score(
    sc: xr.Dataset,
    metric: str = "crps",
    reference: str = "climatology",
    variable: str | None = None,
) -> xr.DataArray:
    """Skill score ``1 - S / S_ref`` against ``reference`` (CRPSS for metric crps).

    Returns dims ``(model, lead_time)`` without the reference row.
    """
    arr = metric_by_lead(sc, metric, variable)
    models = [str(m) for m in arr[MODEL].values]
    if reference not in models:
        raise ForecastError(
            f"reference model {reference!r} not in the scorecard ({', '.join(models)}); "
            f"add it with `forecast evaluate --models {reference},...`"
        )
    ref = arr.sel({MODEL: reference}, drop=True)
    out = 1.0 - arr / ref.where(ref != 0)
    return out.sel({MODEL: [m for m in models if m != reference]})


# --------------------------------------------------------------------------------------------
# latent paths
# --------------------------------------------------------------------------------------------
def member_of(ens: xr.Dataset, member: int) -> xr.Dataset:
    """One member of an ensemble as a one-member ensemble (member coord kept)."""
    return ens.isel({MEMBER: [int(member)]})


def space_coords_text(ds: xr.Dataset) -> str:
    """A short description of the spatial layout: ``32 x 48 grid`` or ``60 sensors``."""
    space = space_dims(ds)
    if space == (NODE,):
        return f"{ds.sizes[NODE]} sensors"
    if space in ((LAT, LON), (Y, X)):
        return f"{ds.sizes[space[0]]} x {ds.sizes[space[1]]} grid"
    return "no spatial layout"


def summary(ens: xr.Dataset) -> dict[str, Any]:
    """A few facts about an ensemble for the page header."""
    check_ensemble(ens)
    return {
        "init_time": pd.Timestamp(ens[INIT_TIME].values) if INIT_TIME in ens.coords else None,
        "members": int(ens.sizes[MEMBER]),
        "leads": int(ens.sizes[LEAD_TIME]),
        "space": space_coords_text(ens),
        "variables": variables(ens),
    }


# --------------------------------------------------------------------------------------------
# data sets, models and ensembles for the app
# --------------------------------------------------------------------------------------------
#: Baselines the app can fit on the fly on any data set (fast enough for a first render).
ON_THE_FLY = ("diurnal-persistence", "persistence", "climatology")
#: The model shown first until shipped pretrained checkpoints exist.
DEFAULT_MODEL = "diurnal-persistence"


#: Relative cost of a first ensemble by model kind (higher: slower), for the default checkpoint:
#: a VAE or a baseline samples in one pass; the GP needs ``gpytorch`` imported (about 1 s) on
#: top; diffusion runs its network NFE times per member batch (seconds on a CPU).
SAMPLING_COST = {"gp": 1, "diffusion": 2, "pooled": 2}  # a pool may hold diffusion models


def quickest(kinds: Sequence[str]) -> int:
    """Index of the model kind quickest to sample (:data:`SAMPLING_COST`; first among equals).

    Raises
    ------
    ForecastError
        No kinds given.
    """
    if not kinds:
        raise ForecastError("no model to choose from; train one with `forecast train`")
    costs = [SAMPLING_COST.get(k, 0) for k in kinds]
    return costs.index(min(costs))


def scan_checkpoints(
    paths: Iterable[str | Path], ds: xr.Dataset
) -> tuple[list[tuple[Path, dict[str, Any], bool]], list[tuple[Path, str]], Path | None]:
    """Summaries of the checkpoint files ``paths`` and the default one for the data set ``ds``.

    Returns
    -------
    readable : list of (path, summary, fits)
        :func:`checkpoint_summary` of every file that could be read, in order, and whether it
        fits ``ds`` (:func:`checkpoint_fits`).
    unreadable : list of (path, message)
        The files that could not be read, with the one-line reason.
    default : Path or None
        Among the checkpoints that fit ``ds``, the one quickest to
        sample (:func:`quickest`), so that the first page comes at once; None if none fits.
    """
    readable: list[tuple[Path, dict[str, Any], bool]] = []
    unreadable: list[tuple[Path, str]] = []
    for path in map(Path, paths):
        try:
            info = checkpoint_summary(path)
        except ForecastError as err:
            unreadable.append((path, str(err)))
            continue
        readable.append((path, info, checkpoint_fits(info["data"], ds)))
    fitting = [(path, info["kind"]) for path, info, fits in readable if fits]
    default = fitting[quickest([kind for _, kind in fitting])][0] if fitting else None
    return readable, unreadable, default


def torch_threads(env: dict[str, str] | None = None) -> int:
    """Torch CPU threads for the dashboard: ``$FORECAST_APP_THREADS``, default 1.

    One thread is the fast choice on a shared CPU: with two threads on a busy 2-core machine
    the VAE's 20 members took 2.4 s instead of 0.2 s (threads spin waiting for each other).

    Raises
    ------
    ForecastError
        Not a whole number >= 1.
    """
    import os

    value = (os.environ if env is None else env).get(THREADS_ENV, "1")
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise ForecastError(f"{THREADS_ENV}={value!r} is not a thread count; set it to 1 or more")
    return n


def set_torch_threads(n: int) -> None:
    """Let torch use ``n`` CPU threads (imports torch: do it just before a model is needed)."""
    import torch

    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


def dataset_choices() -> list[str]:
    """Named data sets whose files are present (the generated synthetic ones always are)."""
    from forecast.data import DATASETS

    specs = [DATASETS.get(n) for n in DATASETS.names()]
    generated = [s.name for s in specs if s.generated]
    real = [s.name for s in specs if not s.generated and s.present()]
    return sorted(generated, key=lambda n: n != "synthetic-weather") + real


def open_named(name: str) -> xr.Dataset:
    """Open a named data set (see ``forecast data list``).

    Generated data sets (the embedded synthetic ones) come from the on-disk cache of
    :mod:`forecast.dashboard.datacache` when it holds them for this code version: identical to
    generating them, in milliseconds instead of seconds.
    """
    from forecast.data import DATASETS, open_dataset

    from .datacache import open_generated

    if name in DATASETS and DATASETS.get(name).generated:
        return open_generated(name, lambda: open_dataset(name))
    return open_dataset(name)


def open_user_file(path: str | Path, roots: Sequence[Path] | None = None) -> xr.Dataset:
    """Open the user's own NetCDF / GRIB / CSV file, confined to the data folders.

    Parameters
    ----------
    path : str or Path
        Typed by the user; resolved inside ``roots`` (see :mod:`forecast.dashboard.paths`).
    roots : sequence of Path, optional
        Allowed folders; None means :func:`forecast.dashboard.paths.data_roots`; pass the upload
        folder to open an uploaded file.

    Raises
    ------
    ForecastError
        Outside the folders, not NetCDF/GRIB/CSV, or no usable time/space layout.
    """
    from forecast.data import open_dataset

    from .paths import confine, data_roots, sniff_format

    roots = data_roots() if roots is None else list(roots)
    real = confine(path, roots)
    sniff_format(real)
    ds = open_dataset(real)  # GRIB is read without writing an index beside the file
    check_dataset(ds)
    return ds


def check_dataset(ds: xr.Dataset) -> None:
    """Refuse data the dashboard cannot forecast: no time, no grid or sensors, no variable."""
    if TIME not in ds.dims:
        raise ForecastError(
            f"data has dims {tuple(ds.dims)} and no time dimension; give a time series file"
        )
    if not space_dims(ds):
        raise ForecastError(
            f"data has dims {tuple(ds.dims)}: no grid (lat, lon / y, x) or sensors (node); "
            "give a gridded or sensor-network file"
        )
    if not data_variables_of(ds):
        raise ForecastError("data has no variable over time; give a file with a data variable")


def protocol_for(
    name: str | None, ds: xr.Dataset, context: int | None = None, horizon: int | None = None
) -> Any:
    """The evaluation protocol of a named data set, or a 70/10/20 % split for other data.

    For data without a registered protocol the geometry comes from ``context`` / ``horizon``
    (a checkpoint's) or defaults to 6 steps / 24 steps (hourly or coarser) and 12 / 12
    (finer steps, as for traffic).
    """
    from forecast.data import time_step
    from forecast.data.protocols import PROTOCOLS, chronological

    for pname in PROTOCOLS.names():
        p = PROTOCOLS.get(pname)
        if (
            name is not None
            and p.dataset == name
            and (context is None or (p.context == context and p.horizon == horizon))
        ):
            return p if p.n_steps == ds.sizes[TIME] else p.resized(ds.sizes[TIME])
    step = time_step(ds)
    if context is None or horizon is None:
        context, horizon = (6, 24) if step >= pd.Timedelta("1h") else (12, 12)
    return chronological(
        "user",
        name or "user",
        int(ds.sizes[TIME]),
        int(context),
        int(horizon),
        step=_step_text(step),
    )


def _step_text(step: pd.Timedelta) -> str:
    minutes = int(step.total_seconds() // 60)
    return f"{minutes // 60}h" if minutes % 60 == 0 else f"{minutes}min"


def test_issue_times(ds: xr.Dataset, protocol: Any) -> pd.DatetimeIndex:
    """Issue times of the protocol's test windows (truth known for every lead)."""
    w = protocol.windows(ds, "test")
    times = pd.DatetimeIndex(w.issue_times(ds))
    if not len(times):
        raise ForecastError("the data have no test issue time; give a longer record")
    return times


def fit_on_the_fly(kind: str, ds: xr.Dataset, protocol: Any) -> Any:
    """Fit a baseline named ``kind`` on the protocol's training part of ``ds``."""
    from forecast.models import MODELS

    model = MODELS.get(kind)(context=protocol.context, horizon=protocol.horizon)
    return model.fit(protocol.split(ds, "train"))


def checkpoint_summary(path: str | Path) -> dict[str, Any]:
    """Kind, window geometry and data description of a checkpoint, read from its metadata.

    Raises ForecastError for a file that is not a model checkpoint (e.g. a reference file of
    an online model's disk cache): no known model kind, or no data description.
    """
    from forecast.checkpoint import load_checkpoint
    from forecast.models import MODELS

    _, meta = load_checkpoint(path)
    kind = meta.get("kind")
    if kind not in MODELS or not isinstance(meta.get("data"), dict) or not meta["data"]:
        raise ForecastError(
            f"not a model checkpoint (kind {kind!r}, "
            f"{'with' if meta.get('data') else 'no'} data description); move it out of the "
            "checkpoint folders"
        )
    config = meta.get("config", {})
    return {
        "kind": meta.get("kind", "?"),
        "context": config.get("context"),
        "horizon": config.get("horizon"),
        "data": meta.get("data", {}),
    }


def checkpoint_fits(description: dict[str, Any], ds: xr.Dataset) -> bool:
    """Whether a checkpoint's data description (``checkpoint_summary(p)["data"]``) fits ``ds``."""
    from forecast.data import check_compatible

    try:
        check_compatible(description, ds)
    except ForecastError:
        return False
    return True


def load_for_data(path: str | Path, ds: xr.Dataset) -> Any:
    """Load a checkpoint and check that it fits ``ds`` (grid or sensors, variables, step).

    Raises
    ------
    ForecastError
        Not a checkpoint, or a checkpoint trained on data that differ from ``ds``.
    """
    from forecast.data import check_compatible
    from forecast.models import load_model

    model = load_model(path)
    description = getattr(model, "description", None)
    if description is None:
        raise ForecastError(f"{Path(path).name} holds no data description; retrain it")
    try:
        check_compatible(description, ds)
    except ForecastError as err:
        raise ForecastError(
            f"checkpoint {Path(path).name} does not fit this data set: {err}"
        ) from None
    return model


def keep_references(model: Any, folder: str | Path | None) -> str | None:
    """Let an online-calibrated model keep its reference forecasts on disk, in
    ``folder/online-references``, so that a restarted dashboard does not re-forecast the past
    hours it has seen (:meth:`forecast.models.online.OnlineSpread.use_reference_cache`; at most
    ten times ``history + 1`` files per model, the oldest deleted first).

    Other models, and ``folder`` None (the cache turned off), are left as they are. Returns a
    one-line note when the folder cannot be used (the references then stay in memory only),
    else None.
    """
    from forecast.models.wrapped import reference_holder

    holder = reference_holder(model)  # an online-spread model, or the one inside a wrapper
    if folder is None or holder is None:
        return None
    where = Path(folder) / "online-references"
    try:
        holder.use_reference_cache(where, max_files=10 * (int(holder.history) + 1))
    except (OSError, ForecastError) as err:
        why = getattr(err, "strerror", None) or str(err)
        return (
            f"Reference forecasts of the online calibration are kept in memory only: {where} "
            f"cannot be used ({why}). Set $FORECAST_CACHE_DIR to a writable folder."
        )
    return None


def sampler_settings(model: Any) -> dict[str, Any] | None:
    """``{"sampler": name, "nfe": n, "samplers": [...]}`` for models that take them, else None.

    A model takes them when it has ``sampler`` and ``nfe`` attributes (the diffusion model).
    """
    if not (hasattr(model, "sampler") and hasattr(model, "nfe")):
        return None
    from forecast.sampling import SAMPLERS

    sampler = model.sampler
    name = sampler if isinstance(sampler, str) else getattr(sampler, "name", str(sampler))
    return {"sampler": name, "nfe": int(model.nfe), "samplers": SAMPLERS.names()}


def with_sampler(model: Any, sampler: str | None, nfe: int | None) -> Any:
    """The model set to sample with ``sampler`` and ``nfe`` (its ``with_sampler`` copy; the
    cached model itself is left unchanged)."""
    if sampler is None and nfe is None:
        return model
    if sampler_settings(model) is None or not hasattr(model, "with_sampler"):
        raise ForecastError(f"{type(model).__name__} has no sampler or NFE setting")
    return model.with_sampler(sampler, nfe)


def sample_at(model: Any, ds: xr.Dataset, issue_time: Any, members: int, seed: int) -> xr.Dataset:
    """The ensemble of ``model`` for one issue time of ``ds`` (context cut from ``ds``), drawn
    with the issue time's seed (:func:`issue_seed`): the members ``forecast predict --seed``
    writes for that issue time, and those the scores tab and latent paths use. A pool's
    ensemble names the model of each member (coordinate ``source_model``)."""
    from forecast.data.windows import context_of
    from forecast.models.pooled import with_member_sources

    context = context_of(ds, pd.Timestamp(issue_time), model.context)
    ens = model.sample(context, int(members), seed=issue_seed(seed, issue_time))
    return with_member_sources(model, ens)


def issue_seed(seed: int, issue_time: Any) -> int:
    """The sampling seed of one issue time under the run ``seed`` (as ``forecast_many``)."""
    from forecast.models import issue_seed as derive

    return derive(int(seed), pd.Timestamp(issue_time))


def context_window(ds: xr.Dataset, issue_time: Any, context: int) -> xr.Dataset:
    """The context window ending at ``issue_time``."""
    from forecast.data.windows import context_of

    return context_of(ds, pd.Timestamp(issue_time), int(context))


def target_window(ds: xr.Dataset, issue_time: Any, horizon: int) -> xr.Dataset | None:
    """The observed target after ``issue_time``, or None when the data end before it."""
    from forecast.data.windows import target_of

    times = pd.DatetimeIndex(ds[TIME].values)
    pos = times.get_indexer([pd.Timestamp(issue_time)])[0]
    if pos < 0 or pos + int(horizon) >= len(times):
        return None
    return target_of(ds, pd.Timestamp(issue_time), int(horizon))


def ensemble_netcdf_bytes(ens: xr.Dataset, **attrs: Any) -> bytes:
    """The ensemble as CF NetCDF bytes (:func:`forecast.export.to_netcdf`), for a download."""
    import tempfile

    from forecast.export import to_netcdf

    with tempfile.TemporaryDirectory(prefix="forecast-export-") as tmp:
        path = Path(tmp) / "ensemble.nc"
        to_netcdf(ens, path, **attrs)
        return path.read_bytes()


def path_netcdf_bytes(
    path: xr.Dataset, blend: xr.Dataset, path_ratio: xr.Dataset, blend_ratio: xr.Dataset
) -> bytes:
    """A latent path, its straight blend and their variance ratios as one NetCDF file
    (:func:`forecast.sampling.paths.path_dataset`)."""
    import tempfile

    from forecast.sampling.paths import path_dataset

    with tempfile.TemporaryDirectory(prefix="forecast-path-") as tmp:
        file = Path(tmp) / "path.nc"
        path_dataset(path, blend, path_ratio, blend_ratio).to_netcdf(file)
        return file.read_bytes()


def forecasts_for(
    models: dict[str, Any],
    ds: xr.Dataset,
    issue_times: Sequence[Any],
    members: int,
    seed: int,
    progress: Any = None,
) -> dict[str, xr.Dataset]:
    """Ensembles of several models over many issue times (dims ``init_time, member, ...``).

    ``progress(done, total, text)`` is called after each model and issue time when given.
    """
    from forecast.models import forecast_many

    out = {}
    total = len(models) * len(issue_times)
    done = 0
    for name, model in models.items():
        parts = []
        for t in issue_times:
            parts.append(forecast_many(model, ds, [t], members, seed))
            done += 1
            if progress is not None:
                progress(done, total, f"{name}: {pd.Timestamp(t):%Y-%m-%d %H:%M}")
        out[name] = xr.concat(
            parts, dim=INIT_TIME, coords="different", compat="equals", join="exact"
        )
    return out


#: What the Scores tab computes: the per-point scores, the area mean's and the calibration's
#: (not the energy and variogram scores, slow on a large grid, nor the MAE of the median).
LIVE_METRICS = tuple(m for m in SCORECARD_METRICS if m not in ("mae_median", "energy", "variogram"))


def live_scores(
    forecasts: dict[str, xr.Dataset], truth: xr.Dataset, threshold: float | None, seed: int = 0
) -> tuple[xr.Dataset, dict[str, xr.Dataset]]:
    """Scorecard (model, lead_time, metric) and calibration diagnostics of ``forecasts``.

    Uses :func:`forecast.scoring.scorecard.scorecard` and
    :func:`forecast.scoring.scorecard.diagnostics` against ``truth`` (a data set with time).
    """
    from forecast.scoring.scorecard import diagnostics, scorecard

    card = scorecard(
        forecasts,
        truth,
        thresholds=threshold,
        seed=seed,
        progress=False,
        metrics=LIVE_METRICS,
    )
    diag = diagnostics(forecasts, truth, thresholds=threshold, seed=seed)
    return card, diag
