"""The main job (``forecast demo``): the shipped models on the embedded synthetic data.

For each embedded data set (``synthetic-weather``, ``synthetic-traffic``) it loads the shipped
diffusion and VAE checkpoints from ``data/models/`` (checked against the data), forecasts a few
test issue times of the data set's protocol, compares them with two baselines fitted on the fly,
and writes under ``outputs/<data set>/``:

- ``ensemble-<model>.nc``: the ensembles as CF-1.8 NetCDF (:func:`forecast.export.to_netcdf`);
- ``report/``: the scorecard (``scorecard.nc/csv/md``), diagnostics and the scoring plots
  (``crps_by_lead.png``, spread-skill, rank histograms, reliability) of
  :func:`forecast.scoring.write_report`;
- ``map_mean_spread.png``: ensemble mean and spread at one lead next to the truth;
- ``plume.png``: the members at one grid point / sensor with context and truth;
- ``latent_path.png``: fields decoded along the slerp path between two prior latents of the
  diffusion model versus the straight blend of the two end fields (with the anomaly variance
  ratio along both).

Nothing is trained here except the two cheap baselines; shipped checkpoints that are missing
are an error naming the command that makes them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from forecast.dims import (
    INIT_TIME,
    LAT,
    LEAD_TIME,
    LON,
    MEMBER,
    NODE,
    PATH,
    SCORECARD_METRICS,
    TIME,
    space_dims,
)
from forecast.errors import ForecastError

#: Repository root (the package is installed editable from it).
REPO = Path(__file__).resolve().parents[1]
#: Folder of the shipped checkpoints.
MODELS_DIR = REPO / "data" / "models"
#: Environment variable replacing the project ``data/`` folder (the dashboard reads it too):
#: the shipped checkpoints are then looked for in ``$FORECAST_SHIPPED_DIR/models``.
MODELS_ENV = "FORECAST_SHIPPED_DIR"
#: Embedded data sets of the main job.
DATASETS = ("synthetic-weather", "synthetic-traffic")
#: Shipped generative models, per data set.
SHIPPED_KINDS = ("diffusion", "vae")
#: Baselines fitted on the fly for comparison (seconds).
BASELINES = ("diurnal-persistence", "climatology")
#: Scorecard metrics of the main job: the cheap ones (energy and variogram scores are left to
#: ``forecast evaluate``; the Brier score needs an event threshold).
METRICS = tuple(m for m in SCORECARD_METRICS if m not in ("energy", "variogram", "brier"))
#: The command that (re)makes the shipped checkpoints.
MAKE_MODELS = "python scripts/train_shipped_models.py"


def shipped_dir(models_dir: str | Path | None = None) -> Path:
    """Folder of the shipped checkpoints: ``models_dir``, else ``$FORECAST_SHIPPED_DIR/models``,
    else ``data/models`` of the repository."""
    if models_dir is not None:
        return Path(models_dir)
    env = os.environ.get(MODELS_ENV)
    return Path(env) / "models" if env else MODELS_DIR


def shipped_path(kind: str, dataset: str, models_dir: str | Path | None = None) -> Path:
    """Path of the shipped checkpoint of model ``kind`` for data set ``dataset``."""
    return shipped_dir(models_dir) / f"{kind}-{dataset}.safetensors"


def load_shipped(
    kind: str, dataset: str, ds: xr.Dataset | None = None, models_dir: str | Path | None = None
) -> Any:
    """Load a shipped checkpoint; with ``ds``, check it fits those data.

    Raises
    ------
    ForecastError
        The checkpoint is missing (names the command that makes it) or does not fit ``ds``.
    """
    from forecast.data import check_compatible
    from forecast.models import load_model

    path = shipped_path(kind, dataset, models_dir)
    if not path.is_file():
        raise ForecastError(
            f"shipped checkpoint {path} not found; make it with `{MAKE_MODELS} --only "
            f"{kind}-{dataset}` (all of them: `{MAKE_MODELS}`)"
        )
    model = load_model(path)
    if ds is not None:
        try:
            check_compatible(model.description, ds)
        except ForecastError as err:
            raise ForecastError(
                f"shipped checkpoint {path.name} does not fit {dataset}: {err}"
            ) from None
    return model


def shipped_record(path: str | Path) -> dict[str, Any]:
    """The ``shipped`` metadata (training time, validation CRPS, ...) of a shipped checkpoint."""
    from forecast.checkpoint import load_checkpoint

    _, meta = load_checkpoint(path)
    if "shipped" not in meta:
        raise ForecastError(f"{path} has no `shipped` record; make it with `{MAKE_MODELS}`")
    return dict(meta["shipped"])


def demo_issue_times(ds: xr.Dataset, protocol: Any, n: int) -> pd.DatetimeIndex:
    """``n`` test issue times of ``protocol``, evenly spread over the test period."""
    if n < 1:
        raise ForecastError(f"need at least one issue time, got {n}")
    times = pd.DatetimeIndex(protocol.windows(ds, "test").issue_times(ds))
    if not len(times):
        raise ForecastError(f"{protocol.name} has no test issue time in these data")
    pick = np.unique(np.linspace(0, len(times) - 1, min(n, len(times))).round().astype(int))
    return times[pick]


@dataclass
class DatasetResult:
    """What the main job wrote for one data set, and how long each part took."""

    dataset: str
    issue_times: pd.DatetimeIndex
    files: dict[str, Path] = field(default_factory=dict)
    crps: dict[str, float] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


def _tick(timings: dict[str, float], key: str, start: float) -> float:
    now = time.perf_counter()
    timings[key] = timings.get(key, 0.0) + now - start
    return now


def run_dataset(
    dataset: str,
    out_dir: str | Path,
    *,
    issues: int = 3,
    members: int = 20,
    seed: int = 0,
    models_dir: str | Path | None = None,
    path_steps: int = 7,
    progress: bool = False,
    data: xr.Dataset | None = None,
) -> DatasetResult:
    """Forecast, export, score and plot one embedded data set (see the module docstring).

    Parameters
    ----------
    dataset : str
        ``synthetic-weather`` or ``synthetic-traffic`` (any data set with shipped models).
    out_dir : path
        Folder for this data set's outputs (created).
    issues, members, seed : int
        Test issue times forecast, ensemble size and run seed.
    models_dir : path, optional
        Folder of the shipped checkpoints (default ``data/models``).
    path_steps : int
        Points along the latent path.
    progress : bool
        Show progress bars.
    data : xr.Dataset, optional
        The data set, if already open (default: ``open_dataset(dataset)``).
    """
    from forecast.data import get_protocol, open_dataset
    from forecast.export import to_netcdf
    from forecast.models import MODELS, forecast_many
    from forecast.scoring import diagnostics, scorecard, write_report

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t = time.perf_counter()
    ds = open_dataset(dataset) if data is None else data
    protocol = get_protocol(dataset)
    if ds.sizes[TIME] != protocol.n_steps:
        protocol = protocol.resized(ds.sizes[TIME])
    t = _tick(timings, "data", t)
    shipped = {k: load_shipped(k, dataset, ds, models_dir) for k in SHIPPED_KINDS}
    t = _tick(timings, "load", t)
    times = demo_issue_times(ds, protocol, issues)
    result = DatasetResult(dataset, times, timings=timings)
    models: dict[str, Any] = dict(shipped)
    for name in BASELINES:
        models[name] = MODELS.get(name)(context=protocol.context, horizon=protocol.horizon).fit(
            protocol.split(ds, "train")
        )
    t = _tick(timings, "baselines", t)
    ensembles: dict[str, xr.Dataset] = {}
    for name, model in models.items():
        ensembles[name] = forecast_many(model, ds, times, members, seed, progress=progress)
        t = _tick(timings, f"sample {name}", t)
    for kind in SHIPPED_KINDS:
        path = out / f"ensemble-{kind}.nc"
        ckpt = shipped_path(kind, dataset, models_dir)
        to_netcdf(
            ensembles[kind],
            path,
            title=f"{kind} ensemble forecast of {dataset} (forecast demo)",
            model=kind,
            sampler=getattr(shipped[kind], "sampler", None),
            nfe=getattr(shipped[kind], "nfe", None),
            seed=seed,
            history=f"forecast demo; checkpoint {ckpt.name}",
            overwrite=True,
        )
        result.files[f"ensemble_{kind}"] = path
    t = _tick(timings, "export", t)
    card = scorecard(ensembles, ds, metrics=METRICS, seed=seed, progress=progress)
    diag = diagnostics(ensembles, ds, seed=seed)
    report = write_report(card, diag, out / "report")
    result.files.update({k: v for k, v in report.items()})
    for name in models:
        result.crps[name] = float(
            np.mean([card[v].sel(model=name, metric="crps").mean() for v in ensembles[name]])
        )
    t = _tick(timings, "scoring", t)
    result.files["map_mean_spread"] = plot_map(
        ds, {k: ensembles[k] for k in SHIPPED_KINDS}, out / "map_mean_spread.png"
    )
    result.files["plume"] = plot_plume(
        ds, {k: ensembles[k] for k in SHIPPED_KINDS}, protocol.context, out / "plume.png"
    )
    result.files["latent_path"] = plot_latent_path(
        shipped["diffusion"], ds, times[0], protocol.context, out / "latent_path.png",
        steps=path_steps, seed=seed,
    )  # fmt: skip
    _tick(timings, "figures", t)
    return result


# --------------------------------------------------------------------------------------------
# figures (matplotlib, Agg)
# --------------------------------------------------------------------------------------------
def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    """Save a figure to a temporary name and rename it (no half-written PNG at ``path``)."""
    plt = _pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=100, bbox_inches="tight")
    plt.close(fig)
    tmp.replace(path)
    return path


def _first_issue(ens: xr.Dataset) -> xr.Dataset:
    return ens.isel({INIT_TIME: 0}) if INIT_TIME in ens.dims else ens


def _field_panel(ax: Any, da: xr.DataArray, title: str, cmap: str, **kw: Any) -> Any:
    """Draw one spatial field: an image for grids, coloured sensors for networks."""
    space = space_dims(da)
    if space == (NODE,):
        art = ax.scatter(da[LON].values, da[LAT].values, c=da.values, cmap=cmap, s=18, **kw)
        ax.set_aspect("equal")
    else:
        ydim, xdim = space
        art = ax.pcolormesh(da[xdim].values, da[ydim].values, da.values, cmap=cmap,
                            shading="auto", **kw)  # fmt: skip
    ax.set_title(title, fontsize=9)
    ax.tick_params(labelsize=7)
    return art


def plot_map(ds: xr.Dataset, ensembles: dict[str, xr.Dataset], path: str | Path,
             lead_index: int | None = None) -> Path:  # fmt: skip
    """Truth, ensemble mean and ensemble spread at one lead of the first issue time.

    One row per model; ``lead_index`` defaults to the middle lead.
    """
    from forecast.data import data_variables

    plt = _pyplot()
    var = data_variables(ds)[0]
    first = {k: _first_issue(e) for k, e in ensembles.items()}
    any_ens = next(iter(first.values()))
    lead = any_ens[LEAD_TIME].size // 2 if lead_index is None else int(lead_index)
    valid = pd.Timestamp(any_ens["valid_time"].values[lead])
    truth = ds[var].sel({TIME: valid})
    means = {k: e[var].isel({LEAD_TIME: lead}).mean(MEMBER) for k, e in first.items()}
    spreads = {k: e[var].isel({LEAD_TIME: lead}).std(MEMBER) for k, e in first.items()}
    vmin = float(min(truth.min(), *(m.min() for m in means.values())))
    vmax = float(max(truth.max(), *(m.max() for m in means.values())))
    smax = float(max(s.max() for s in spreads.values()))
    units = ds[var].attrs.get("units", "")
    fig, axes = plt.subplots(len(first), 3, figsize=(11, 3.1 * len(first)), squeeze=False)
    hours = _lead_text(any_ens[LEAD_TIME].values[lead])
    for row, name in enumerate(first):
        art = _field_panel(axes[row, 0], truth, f"truth {var} at {valid:%Y-%m-%d %H:%M}",
                           "viridis", vmin=vmin, vmax=vmax)  # fmt: skip
        fig.colorbar(art, ax=axes[row, 0], label=units)
        art = _field_panel(axes[row, 1], means[name], f"{name}: mean, lead {hours}",
                           "viridis", vmin=vmin, vmax=vmax)  # fmt: skip
        fig.colorbar(art, ax=axes[row, 1], label=units)
        art = _field_panel(axes[row, 2], spreads[name], f"{name}: spread (std)", "magma",
                           vmin=0, vmax=smax)  # fmt: skip
        fig.colorbar(art, ax=axes[row, 2], label=units)
    fig.suptitle(f"{ds.attrs.get('title', var).split(':')[0]}: ensemble mean and spread")
    return _save(fig, Path(path))


def point_of(ds: xr.Dataset) -> dict[str, Any]:
    """The point of the plume: the grid centre, or the first sensor named a bottleneck."""
    space = space_dims(ds)
    if space == (NODE,):
        names = str(ds.attrs.get("bottlenecks", "")).split()
        node = names[0] if names and names[0] in ds[NODE].values else ds[NODE].values[0]
        return {NODE: node}
    return {d: ds[d].values[ds.sizes[d] // 2] for d in space}


def plot_plume(ds: xr.Dataset, ensembles: dict[str, xr.Dataset], context: int,
               path: str | Path, point: dict[str, Any] | None = None) -> Path:  # fmt: skip
    """Members, ensemble mean and truth at one point for the first issue time, per model."""
    from forecast.data import data_variables

    plt = _pyplot()
    var = data_variables(ds)[0]
    point = point_of(ds) if point is None else point
    first = {k: _first_issue(e) for k, e in ensembles.items()}
    fig, axes = plt.subplots(1, len(first), figsize=(5.5 * len(first), 3.6), squeeze=False,
                             sharey=True)  # fmt: skip
    for ax, (name, ens) in zip(axes[0], first.items(), strict=True):
        issue = pd.Timestamp(ens[INIT_TIME].values)
        at = ens[var].sel(point)
        valid = pd.DatetimeIndex(at["valid_time"].values)
        i = int(ds.indexes[TIME].get_loc(issue))
        past = ds[var].sel(point).isel({TIME: slice(max(i - 2 * context + 1, 0), i + 1)})
        future = ds[var].sel(point).sel({TIME: valid})
        for m in range(at.sizes[MEMBER]):
            ax.plot(valid, at.isel({MEMBER: m}).values, color="tab:blue", alpha=0.25, lw=0.8)
        ax.plot(valid, at.mean(MEMBER).values, color="tab:blue", lw=2, label="ensemble mean")
        ax.plot(past[TIME].values, past.values, color="k", lw=1.5, label="observed (context)")
        ax.plot(valid, future.values, color="k", lw=1.5, ls="--", label="truth")
        ax.axvline(issue, color="grey", lw=0.8)
        where = ", ".join(f"{k}={_fmt(v)}" for k, v in point.items())
        ax.set_title(f"{name}: {at.sizes[MEMBER]} members at {where}", fontsize=9)
        ax.set_ylabel(f"{var} [{ds[var].attrs.get('units', '')}]")
        ax.tick_params(axis="x", labelrotation=30, labelsize=7)
    axes[0, 0].legend(fontsize=7, loc="best")
    return _save(fig, Path(path))


def _lead_text(lead: Any) -> str:
    """``"12 h"`` for whole hours, else ``"35 min"``."""
    minutes = pd.Timedelta(lead) / pd.Timedelta("1min")
    return f"{minutes / 60:g} h" if minutes % 60 == 0 else f"{minutes:g} min"


def _fmt(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, float | np.floating) else str(value)


def latent_scenarios(
    model: Any, ds: xr.Dataset, issue_time: Any, context: int, steps: int = 7, seed: int = 0
) -> tuple[xr.Dataset, xr.Dataset, xr.Dataset, xr.Dataset]:
    """Slerp path and straight blend between two prior latents, and their variance ratios.

    Returns
    -------
    (path, blend, ratio_path, ratio_blend)
        ``path`` / ``blend`` over ``path`` (fraction), ``(lead_time, *space)``; the ratios
        from :func:`forecast.sampling.paths.variance_ratio`.
    """
    from forecast.data.windows import context_of
    from forecast.sampling.paths import blend_path, latent_path, variance_ratio

    ctx = context_of(ds, issue_time, context)
    z = model.prior(ctx, 2, seed=seed)
    path = latent_path(model, ctx, z[0], z[1], steps)
    blend = blend_path(path.isel({PATH: 0}), path.isel({PATH: -1}), steps)
    last = ctx.isel({TIME: -1}, drop=True)[list(path.data_vars)]
    return path, blend, variance_ratio(path, last), variance_ratio(blend, last)


def plot_latent_path(model: Any, ds: xr.Dataset, issue_time: Any, context: int,
                     path: str | Path, *, steps: int = 7, seed: int = 0,
                     lead_index: int | None = None) -> Path:  # fmt: skip
    """Fields decoded along the slerp path (top) versus the straight blend (middle) between two
    prior scenarios, at one lead, and the anomaly variance ratio along both (bottom)."""
    plt = _pyplot()
    lat_path, blend, r_path, r_blend = latent_scenarios(model, ds, issue_time, context, steps, seed)
    var = next(iter(lat_path.data_vars))
    lead = lat_path[LEAD_TIME].size // 2 if lead_index is None else int(lead_index)
    fields = [lat_path[var].isel({LEAD_TIME: lead}), blend[var].isel({LEAD_TIME: lead})]
    vmin = float(min(f.min() for f in fields))
    vmax = float(max(f.max() for f in fields))
    n = lat_path.sizes[PATH]
    fig = plt.figure(figsize=(2.1 * n, 7.2))
    grid = fig.add_gridspec(3, n, height_ratios=[1, 1, 0.9])
    for row, (label, f) in enumerate(zip(("slerp path", "straight blend"), fields, strict=True)):
        for k in range(n):
            ax = fig.add_subplot(grid[row, k])
            frac = float(f[PATH].values[k])
            _field_panel(ax, f.isel({PATH: k}), f"{label} t={frac:.2f}", "viridis",
                         vmin=vmin, vmax=vmax)  # fmt: skip
            ax.set_xticks([])
            ax.set_yticks([])
    ax = fig.add_subplot(grid[2, :])
    ax.plot(r_path[PATH].values, r_path[var].values, "o-", label="slerp path (decoded)")
    ax.plot(r_blend[PATH].values, r_blend[var].values, "s--", label="straight blend")
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set_xlabel("fraction along the path")
    ax.set_ylabel("anomaly variance / ends")
    ax.legend(fontsize=8)
    hours = _lead_text(lat_path[LEAD_TIME].values[lead])
    fig.suptitle(
        f"{getattr(model, 'kind', 'model')}: two prior scenarios at "
        f"{pd.Timestamp(issue_time):%Y-%m-%d %H:%M}, lead {hours}"
    )
    return _save(fig, Path(path))


# --------------------------------------------------------------------------------------------
# the whole job
# --------------------------------------------------------------------------------------------
def run(
    out_dir: str | Path = "outputs",
    *,
    datasets: Sequence[str] = DATASETS,
    issues: int = 3,
    members: int = 20,
    seed: int = 0,
    models_dir: str | Path | None = None,
    progress: bool = False,
    echo: Callable[[str], None] = print,
) -> list[DatasetResult]:
    """Run the main job on ``datasets``; prints a short summary through ``echo``.

    All shipped checkpoints are checked to exist before any work starts.
    """
    for name in datasets:
        for kind in SHIPPED_KINDS:
            path = shipped_path(kind, name, models_dir)
            if not path.is_file():
                load_shipped(kind, name, None, models_dir)  # raises the one-line error
    out = Path(out_dir)
    results = []
    for name in datasets:
        start = time.perf_counter()
        res = run_dataset(
            name, out / name, issues=issues, members=members, seed=seed,
            models_dir=models_dir, progress=progress,
        )  # fmt: skip
        results.append(res)
        echo(format_result(res, time.perf_counter() - start, members))
    return results


def format_result(res: DatasetResult, seconds: float, members: int) -> str:
    """A few lines: issue times, mean CRPS per model, the files written."""
    lines = [
        f"{res.dataset}: {len(res.issue_times)} test issue times "
        f"({res.issue_times[0]:%Y-%m-%d %H:%M} .. {res.issue_times[-1]:%Y-%m-%d %H:%M}), "
        f"{members} members, {seconds:.1f} s",
        "  mean CRPS: " + ", ".join(f"{k} {v:.3f}" for k, v in res.crps.items()),
    ]
    keys = ("ensemble_diffusion", "ensemble_vae", "scorecard_md", "crps_by_lead",
            "map_mean_spread", "plume", "latent_path")  # fmt: skip
    for key in keys:
        if key in res.files:
            lines.append(f"  {key:<18} {_rel(res.files[key])}")
    return "\n".join(lines)


def _rel(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
