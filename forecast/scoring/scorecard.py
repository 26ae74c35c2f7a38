"""Scorecard: every score of several models by lead time, plus the calibration diagnostics."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from forecast.checkpoint import publish
from forecast.dims import LEAD_TIME, MEMBER, METRIC, MODEL, SCORECARD_METRICS, TIME, space_dims
from forecast.errors import ForecastError
from forecast.scoring._core import is_lazy
from forecast.scoring.align import check_member, obs_for, pair_variables
from forecast.scoring.calibration import (
    brier_score,
    flatness,
    pit_histogram,
    rank_histogram,
    reliability,
)
from forecast.scoring.crps import crps_pair
from forecast.scoring.ensemble import (
    ensemble_spread,
    mae_ensemble_median,
    rmse_ensemble_mean,
    spread_skill_ratio,
)
from forecast.scoring.multivariate import area_means, energy_score, variogram_score
from forecast.workers import check_jobs, in_threads

#: Metrics of the scorecard, in column order. ``crps`` and ``crps_fair`` always go together.
METRICS = SCORECARD_METRICS


def _aligned_obs(forecast: xr.Dataset, obs: xr.Dataset) -> xr.Dataset:
    """Truth laid out like ``forecast``: obs_for when obs is a time series, else as given.

    For a dask-backed forecast, in-memory observations are split into the forecast's chunks,
    so that each task (and each worker of a cluster) receives only its slice of the truth.
    """
    if TIME in obs.dims and LEAD_TIME in forecast.dims:
        obs = obs_for(forecast, obs)
    if is_lazy(forecast) and not is_lazy(obs):
        sizes = forecast.chunksizes
        obs = obs.chunk({d: sizes[d] if d in sizes else -1 for d in obs.dims})
    return obs


def _thresholds(
    obs_by_model: Mapping[str, xr.Dataset], names: Sequence, thresholds: object
) -> dict:
    """Per-variable event threshold: given (number or dict) or the median of the observations."""
    out = {}
    for n in names:
        if isinstance(thresholds, Mapping) and n in thresholds:
            out[n] = float(thresholds[n])
        elif thresholds is not None and not isinstance(thresholds, Mapping):
            out[n] = float(thresholds)  # type: ignore[arg-type]
        else:
            first = next(iter(obs_by_model.values()))[n]
            out[n] = float(first.compute().median(skipna=True).values)
    return out


def _reduce_but_lead(f: xr.DataArray | xr.Dataset, member_dim: str) -> list:
    return [d for d in f.dims if d not in (member_dim, LEAD_TIME)]


def _model_card(
    o: xr.Dataset,
    fc: xr.Dataset,
    names: list,
    metrics: Sequence[str],
    thr: Mapping[str, float],
    member_dim: str,
    skipna: bool,
    weights: xr.DataArray | None,
    seed: int,
) -> xr.Dataset:
    """One model's scorecard ``(lead_time, metric)`` against its aligned observations ``o``."""
    dims = _reduce_but_lead(fc, member_dim)
    kw = {"member_dim": member_dim, "dim": dims, "skipna": skipna}
    wkw = {**kw, "weights": weights}
    rows: dict[str, xr.Dataset] = {}
    if "crps" in metrics or "crps_fair" in metrics:
        std, fair = crps_pair(o, fc, **wkw)
        rows["crps"], rows["crps_fair"] = std, fair
    if "rmse" in metrics:
        rows["rmse"] = rmse_ensemble_mean(o, fc, **wkw)
    if "mae_median" in metrics:
        rows["mae_median"] = mae_ensemble_median(o, fc, **wkw)
    if "spread" in metrics:
        rows["spread"] = ensemble_spread(o, fc, **wkw)
    if "spread_skill" in metrics:
        rows["spread_skill"] = spread_skill_ratio(o, fc, **wkw)
    mkw = {**kw, "dim": [d for d in dims if d not in space_dims(fc)]}
    if "energy" in metrics:
        rows["energy"] = energy_score(o, fc, **mkw)
    if "variogram" in metrics:
        rows["variogram"] = variogram_score(o, fc, **mkw)
    if "area_crps" in metrics or "area_spread_skill" in metrics:
        o_area, fc_area = area_means(o, fc, member_dim=member_dim, skipna=skipna)
        if "area_crps" in metrics:
            rows["area_crps"] = crps_pair(o_area, fc_area, **mkw)[0]
        if "area_spread_skill" in metrics:
            rows["area_spread_skill"] = spread_skill_ratio(o_area, fc_area, **mkw)
    if "brier" in metrics:
        rows["brier"] = xr.Dataset({n: brier_score(o[n], fc[n], thr[n], **wkw) for n in names})
    if "rank_flatness" in metrics:
        hist = rank_histogram(o, fc, member_dim=member_dim, dim=dims, seed=seed)
        rows["rank_flatness"] = flatness(hist).astype(np.float64)
    card = xr.concat(
        [rows[m][names].astype(np.float64) for m in metrics], dim=METRIC, coords="minimal"
    ).assign_coords({METRIC: list(metrics)})
    card = card.drop_vars([c for c in card.coords if c not in (METRIC, LEAD_TIME)])
    return card.compute()


def scorecard(
    forecasts: Mapping[str, xr.Dataset],
    obs: xr.Dataset,
    *,
    member_dim: str = MEMBER,
    weights: xr.DataArray | None = None,
    skipna: bool = False,
    thresholds: float | Mapping[str, float] | None = None,
    metrics: Sequence[str] = METRICS,
    seed: int = 0,
    progress: bool = True,
    jobs: int = 1,
) -> xr.Dataset:
    """Scores of several ensembles by lead time.

    Parameters
    ----------
    forecasts : mapping of str to xarray.Dataset
        Model name -> ensemble ``([init_time,] member, lead_time, *space)``. Ensembles may have
        different member counts (compare them on ``crps_fair``) and lead times (outer join).
    obs : xarray.Dataset
        Either the truth data set (``time`` dim; each ensemble gets :func:`obs_for`) or
        observations already laid out like every ensemble.
    member_dim : str
        Member dimension.
    weights : xarray.DataArray, optional
        Weights over the reduced dims (e.g. ``cos(lat)``); not used by ``energy``,
        ``variogram``, ``area_crps`` and ``area_spread_skill`` (they already reduce space;
        the area mean weights by cos(latitude) itself) unless over non-spatial dims.
    skipna : bool
        See :func:`forecast.scoring.crps_ensemble`.
    thresholds : float or mapping, optional
        Event threshold for ``brier`` per variable; default: the median of the observations
        (recorded in the attrs ``threshold_<variable>``).
    metrics : sequence of str
        Subset of :data:`METRICS`.
    seed : int
        Seed of the random tie-breaking of the rank histogram.
    progress : bool
        Show a tqdm bar over models.
    jobs : int
        Models scored at once, each in a thread (numpy releases the GIL in the heavy parts:
        about twice as fast on 2 cores for in-memory ensembles); the same scores as one at a
        time. Lazy (dask) ensembles are better left at 1: dask already parallelises them.

    Returns
    -------
    xarray.Dataset
        One float64 variable per forecast variable over ``(model, lead_time, metric)``;
        coordinate ``n_members`` over ``model``.
    """
    jobs = check_jobs(jobs)
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ForecastError(f"unknown metric(s) {unknown}; valid: {', '.join(METRICS)}")
    if not forecasts:
        raise ForecastError("no forecast to score; give at least one ensemble")
    obs_by_model = {}
    names: list = []
    for model, fc in forecasts.items():
        check_member(fc, member_dim)
        obs_by_model[model] = _aligned_obs(fc, obs)
        names = [n for n, _, _ in pair_variables(obs_by_model[model], fc)]
    thr = _thresholds(obs_by_model, names, thresholds) if "brier" in metrics else {}

    def one(item: tuple[str, xr.Dataset]) -> xr.Dataset:
        model, fc = item
        return _model_card(
            obs_by_model[model], fc, names, metrics, thr, member_dim, skipna, weights, seed
        )

    bar = {"desc": "scoring", "disable": not progress}
    per_model = in_threads(one, list(forecasts.items()), jobs, bar)
    out = xr.concat(per_model, dim=MODEL, join="outer").assign_coords(
        {
            MODEL: list(forecasts),
            "n_members": (MODEL, [f.sizes[member_dim] for f in forecasts.values()]),
        }
    )
    out = out.transpose(MODEL, LEAD_TIME, METRIC)
    for n, t in thr.items():
        out.attrs[f"threshold_{n}"] = t
    out.attrs["skipna"] = int(skipna)
    return out


def diagnostics(
    forecasts: Mapping[str, xr.Dataset],
    obs: xr.Dataset,
    *,
    member_dim: str = MEMBER,
    thresholds: float | Mapping[str, float] | None = None,
    bins: int = 10,
    seed: int = 0,
    jobs: int = 1,
) -> dict[str, xr.Dataset]:
    """Calibration diagnostics over all lead times, per variable.

    ``jobs`` models are diagnosed at once, each in a thread, as in :func:`scorecard`; the same
    result as one at a time.

    Returns
    -------
    dict of str to xarray.Dataset
        Variable -> Dataset with ``rank_frequency`` (model, rank; relative frequency, NaN
        beyond a model's member count), ``pit`` (model, bin), ``forecast_probability``,
        ``observed_frequency`` and ``count`` (model, bin) for the event ``> threshold``
        (attr ``threshold``).
    """
    obs_by_model = {m: _aligned_obs(fc, obs) for m, fc in forecasts.items()}
    names = [
        n
        for n, _, _ in pair_variables(
            next(iter(obs_by_model.values())), next(iter(forecasts.values()))
        )
    ]
    thr = _thresholds(obs_by_model, names, thresholds)

    def one(task: tuple[Hashable, str]) -> tuple[xr.DataArray, xr.DataArray, xr.Dataset]:
        n, model = task
        o, f = obs_by_model[model][n], forecasts[model][n]
        h = rank_histogram(o, f, member_dim=member_dim, seed=seed).astype(np.float64)
        return (
            h / h.sum(),
            pit_histogram(o, f, member_dim=member_dim, bins=bins, seed=seed),
            reliability(o, f, thr[n], member_dim=member_dim, bins=bins),
        )

    tasks = [(n, model) for n in names for model in forecasts]
    done = dict(zip(tasks, in_threads(one, tasks, jobs), strict=True))
    out = {}
    for n in names:
        ranks, pits, rels = zip(*(done[(n, model)] for model in forecasts), strict=True)
        ds = xr.Dataset(
            {
                "rank_frequency": xr.concat(ranks, dim=MODEL, join="outer"),
                "pit": xr.concat(pits, dim=MODEL),
            }
        )
        rel = xr.concat(rels, dim=MODEL)
        ds = xr.merge([ds, rel], compat="override").assign_coords({MODEL: list(forecasts)})
        ds.attrs["threshold"] = thr[n]
        ds.attrs["variable"] = str(n)
        out[str(n)] = ds.compute()
    return out


def lead_label(v: object) -> str:
    """A lead time as the tables print it: ``1h``, ``30min``, ``90s`` (below a minute)."""
    seconds = pd.Timedelta(v).total_seconds()
    if seconds % 3600 == 0:
        return f"{int(seconds // 3600)}h"
    if seconds % 60 == 0:
        return f"{int(seconds // 60)}min"
    return f"{seconds:g}s"


def to_dataframe(card: xr.Dataset) -> pd.DataFrame:
    """Long table: columns ``variable, model, lead_time, metric, value`` (lead time as text)."""
    frames = []
    for n in card.data_vars:
        df = card[n].to_dataframe(name="value").reset_index()
        df.insert(0, "variable", str(n))
        frames.append(df[["variable", MODEL, LEAD_TIME, METRIC, "value"]])
    out = pd.concat(frames, ignore_index=True)
    if np.issubdtype(out[LEAD_TIME].dtype, np.timedelta64):
        out[LEAD_TIME] = [lead_label(v) for v in out[LEAD_TIME]]
    return out


def to_markdown(card: xr.Dataset, digits: int = 4) -> str:
    """Markdown tables, one per variable: rows (model, lead time), columns metrics."""
    lines = []
    metrics = [str(m) for m in card[METRIC].values]
    for n in card.data_vars:
        lines += [f"### {n}", ""]
        head = ["model", "lead_time", *metrics]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "|".join(["---"] * 2 + ["---:"] * len(metrics)) + "|")
        da = card[n]
        for model in card[MODEL].values:
            for lead in card[LEAD_TIME].values:
                vals = da.sel({MODEL: model, LEAD_TIME: lead}).values
                lab = lead_label(lead) if isinstance(lead, np.timedelta64) else str(lead)
                cells = [f"{v:.{digits}g}" if np.isfinite(v) else "nan" for v in vals]
                lines.append("| " + " | ".join([str(model), lab, *cells]) + " |")
        lines.append("")
    return "\n".join(lines)


def _atomic(path: Path, write: object) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)  # type: ignore[operator]
        publish(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def to_csv(card: xr.Dataset, path: str | Path) -> Path:
    """Write the long table of :func:`to_dataframe` (atomic rename)."""
    return _atomic(Path(path), lambda t: to_dataframe(card).to_csv(t, index=False))


def to_netcdf(ds: xr.Dataset, path: str | Path) -> Path:
    """Write a scorecard or diagnostics Dataset to NetCDF (atomic rename)."""
    return _atomic(Path(path), lambda t: ds.to_netcdf(t))


def write_markdown(card: xr.Dataset, path: str | Path) -> Path:
    """Write :func:`to_markdown` to ``path`` (atomic rename)."""
    return _atomic(Path(path), lambda t: Path(t).write_text(to_markdown(card) + "\n"))
