"""The protocol runner: train (or load) each model, forecast every test issue time, score.

``run_protocol("P2", ["persistence", "gp"], out="runs/p2")`` writes into ``out``::

    checkpoints/<model>-<protocol>-s<seed>-<key>.safetensors   trained models (cache)
    ensembles/<model>-<protocol>-s<seed>-<key>-m<members>.nc   CF ensembles (cache)
    ensembles/<model>-...-gaussian.nc                           GP mean/std (Gaussian models)
    scorecard.{nc,csv,md}, diagnostics_<var>.nc, *.png          the report
    run.json                                                     settings, versions, timings

``key`` hashes the model name, its configuration, the protocol, the seed and the data
description, so a changed configuration never reuses a stale checkpoint. Already-trained
checkpoints join the run with ``checkpoints={"diffusion": "model.safetensors"}`` (label -> path):
each is loaded with :func:`forecast.models.load_model`, checked against the protocol's data
(variables, units, grid or sensors, time step, context and horizon), sampled with the same seed,
members and issue times as the named models and scored in the same scorecard under its label;
its ensemble is cached as ``ensembles/<label>-<protocol>-s<seed>-<key>-m<members>.nc`` with
``key`` hashing the checkpoint file's bytes (a retrained file is sampled again).

A second run with the same arguments loads the checkpoints and the ensembles instead of
training and sampling again (resume). Everything is seeded: the same seed gives the same files.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from forecast.dims import LEAD_TIME, METRIC, MODEL, SCORECARD_METRICS
from forecast.errors import ForecastError

#: Metric name of the closed-form CRPS of Gaussian predictive distributions.
CRPS_GAUSSIAN = "crps_gaussian"

#: Scorecard metrics of a protocol run by default: every metric of
#: :data:`forecast.scoring.METRICS` except the variogram score, whose cost grows with the square
#: of the number of points (1617 grid points of P2: about 36 s per model, docs/scoring.md).
DEFAULT_METRICS = tuple(m for m in SCORECARD_METRICS if m != "variogram")


#: What a checkpoint label may look like: it names the model in the scorecard and in file names.
LABEL_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")


def check_label(label: str) -> str:
    """``label`` if it is a usable checkpoint label (letters, digits, ``_ . + -``).

    Raises
    ------
    ForecastError
        Any other label (it names files and scorecard rows).
    """
    if not isinstance(label, str) or not LABEL_PATTERN.fullmatch(label):
        raise ForecastError(
            f"checkpoint label {label!r} is not usable; use letters, digits, '_', '.', '+' or "
            "'-' (e.g. --checkpoint diffusion=PATH)"
        )
    return label


def load_checked(label: str, path: str | Path, protocol: Any, ds: xr.Dataset) -> Any:
    """Load the checkpoint ``path`` and check that it fits ``protocol`` and its data ``ds``.

    Parameters
    ----------
    label
        The name the model gets in the run (used in the messages).
    path
        A ``.safetensors`` checkpoint written by a model's ``save`` or ``forecast train``.
    protocol
        A :class:`forecast.data.protocols.Protocol`: its context and horizon must be the
        model's.
    ds
        The protocol's data: variables, units, grid or sensors, time step and adjacency must
        match the data description stored in the checkpoint.

    Returns
    -------
    Forecaster
        The loaded model.

    Raises
    ------
    ForecastError
        Missing or unreadable file, or a model that does not fit (one line naming the mismatch).
    """
    from forecast.data import check_compatible
    from forecast.dims import window_context
    from forecast.models import load_model

    path = Path(path)
    if not path.is_file():
        raise ForecastError(
            f"checkpoint {path} (label {label!r}) not found; pass the .safetensors file that "
            "`forecast train` wrote (e.g. OUT/model.safetensors)"
        )
    model = load_model(path)
    description = getattr(model, "description", None)
    if description is None:
        raise ForecastError(
            f"checkpoint {path} (label {label!r}) holds no data description; save a fitted model"
        )
    got = (window_context(model), getattr(model, "horizon", None))
    if got != (protocol.context, protocol.horizon):
        raise ForecastError(
            f"checkpoint {path} (label {label!r}) has context {got[0]} and horizon {got[1]} but "
            f"protocol {protocol.name} needs context {protocol.context} and horizon "
            f"{protocol.horizon}; train it with `forecast train --data {protocol.dataset}`"
        )
    check_compatible(description, ds, what=f"checkpoint {path} (label {label!r})")
    return model


def _key(payload: Mapping[str, Any]) -> str:
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _trained_key(
    name: str, cls: type, config: Mapping[str, Any], protocol: dict, seed: int, data: Any
) -> str:
    """Cache key of a model trained in the run. A class's ``fit_revision`` (bumped when its
    ``fit`` gives another model for the same configuration) is part of it, so that a cached
    checkpoint of an older ``fit`` is not reused."""
    payload = {"model": name, "config": config, "protocol": protocol, "seed": seed, "data": data}
    revision = getattr(cls, "fit_revision", None)
    if revision is not None:
        payload["fit_revision"] = revision
    return _key(payload)


def _model_config(cls: type, protocol: Any, options: Mapping[str, Any], seed: int) -> dict:
    config = {"context": protocol.context, "horizon": protocol.horizon, **options}
    params = inspect.signature(cls).parameters
    if "seed" in params and "seed" not in config:
        config["seed"] = seed
    return config


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for pkg in ("forecast", "numpy", "xarray", "pandas", "torch", "gpytorch", "netCDF4"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "absent"
    return out


def _write_json(path: Path, payload: Mapping[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def _write_netcdf(ds: xr.Dataset, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    ds.to_netcdf(tmp)
    os.replace(tmp, path)


def _like_data(ens: xr.Dataset, ds: xr.Dataset) -> xr.Dataset:
    """A cached ensemble with its string coordinates (sensor ids) in the data's dtype.

    NetCDF gives strings back as ``object`` arrays; the scores refuse to align them with the
    data's fixed-width strings, so a resumed run on sensors would fail without this.
    """
    fix = {}
    for name, coord in ens.coords.items():
        if name not in ds.coords or coord.dims != ds[name].dims:
            continue
        want = ds[name].dtype
        if coord.dtype != want and coord.dtype.kind in "OSU" and want.kind in "OSU":
            fix[name] = (coord.dims, coord.values.astype(want), coord.attrs)
    return ens.assign_coords(fix) if fix else ens


def _gaussian_rows(mean: xr.Dataset, std: xr.Dataset, truth: xr.Dataset) -> xr.Dataset:
    """Closed-form Gaussian CRPS by lead time, averaged over issue times and space."""
    from forecast.scoring import crps_gaussian, obs_for

    obs = obs_for(mean, truth)
    dims = [d for d in mean.dims if d != LEAD_TIME]
    return crps_gaussian(obs, mean, std, dim=dims)


def run_protocol(
    protocol: Any,
    models: Sequence[str],
    out: str | Path,
    members: int = 50,
    seed: int = 0,
    *,
    model_options: Mapping[str, Mapping[str, Any]] | None = None,
    data: xr.Dataset | None = None,
    progress: bool = True,
    compress: bool = False,
    metrics: Sequence[str] = DEFAULT_METRICS,
    checkpoints: Mapping[str, str | Path] | None = None,
    jobs: int = 1,
) -> dict[str, Any]:
    """Run an evaluation protocol end to end and write the scorecard, ensembles and plots.

    Parameters
    ----------
    protocol
        A protocol name (``P1``, ``P2``, ``synthetic-weather``, ``synthetic-traffic``) or a
        :class:`forecast.data.protocols.Protocol`.
    models
        Registered model names (``forecast.models.MODELS``).
    out
        Output folder (created).
    members
        Ensemble size.
    seed
        Seeds training (models with a ``seed`` keyword get it; torch's global generator
        is seeded around ``fit``) and sampling (:func:`forecast.models.forecast_many`).
    model_options
        Extra constructor keywords per model name, e.g. ``{"gp": {"n_train": 512}}``.
    data
        The data set to use instead of opening ``protocol.dataset`` (tests, custom data).
    progress
        tqdm progress bars.
    compress
        zlib-compress the ensemble NetCDF files (smaller, slower).
    metrics
        Scorecard metrics (:data:`forecast.scoring.METRICS`); ``crps_gaussian`` is added for
        models with a Gaussian predictive distribution.
    checkpoints
        Already-trained models to score beside ``models``: label -> checkpoint path (see
        :func:`load_checked`); the label is the model's name in the scorecard and must differ
        from the names in ``models``.
    jobs
        Above 1: the models of ``models`` not trained yet are fitted, and then the ensembles
        not written yet are sampled, that many at a time, each in a worker process
        (:func:`forecast.workers.fit_to_files`, :func:`forecast.workers.sample_checkpoints`;
        the same checkpoints and ensembles as one after the other on the same number of
        threads). A model fitted in a worker trains without its progress bar. The scorecard
        scores that many models at once, each in a thread (the same scores).

    Returns
    -------
    dict
        ``scorecard`` (xarray.Dataset), ``files`` (name -> path), ``trained`` and ``sampled``
        (model names trained / sampled in this call; empty on a full resume), ``timings``,
        ``significance`` (one line per non-baseline model; empty without baselines).

    Notes
    -----
    Where the run has baselines (``BASELINE_KINDS``) and other models and at least 3 issue
    times, ``significance.csv`` / ``significance.md`` test every other model against the best
    baseline at each lead (:func:`forecast.scoring.significance.significance_table`).

    Raises
    ------
    ForecastError
        Unknown protocol or model, absent data files, bad ``members``, a checkpoint that is
        missing or does not fit the protocol's data.
    """
    from tqdm.auto import tqdm

    from forecast.checkpoint import file_sha256
    from forecast.data import describe_dataset, open_dataset
    from forecast.data.protocols import Protocol, get_protocol
    from forecast.export import open_ensemble, to_netcdf
    from forecast.models import BASELINE_KINDS, MODELS, forecast_many, load_model
    from forecast.models.pooled import with_member_sources
    from forecast.scoring import diagnostics, scorecard, write_report
    from forecast.scoring.significance import (
        significance_table,
        summary_lines,
        write_significance,
    )
    from forecast.workers import check_jobs, fit_seeded, fit_to_files, sample_checkpoints

    start = time.perf_counter()
    proto = protocol if isinstance(protocol, Protocol) else get_protocol(str(protocol))
    if isinstance(members, bool) or not isinstance(members, int | np.integer) or members < 1:
        raise ForecastError(f"members must be a positive integer, got {members!r}")
    jobs = check_jobs(jobs)
    names = list(dict.fromkeys(models))
    given = {check_label(str(k)): Path(v) for k, v in dict(checkpoints or {}).items()}
    if not names and not given:
        raise ForecastError("no model given; pass --models with names from forecast.models")
    clash = [label for label in given if label in names]
    if clash:
        raise ForecastError(
            f"checkpoint label(s) {clash} are also --models names; give the checkpoints other "
            "labels (e.g. --checkpoint my-diffusion=PATH)"
        )
    classes = {name: MODELS.get(name) for name in names}
    options = dict(model_options or {})
    unknown = [n for n in options if n not in classes]
    if unknown:
        raise ForecastError(f"model_options for {unknown} but those models are not in the run")

    ds = open_dataset(proto.dataset) if data is None else data
    train = proto.split(ds, "train")
    valid = proto.split(ds, "val")
    issue_times = proto.windows(ds, "test").issue_times(ds)
    description = describe_dataset(ds)
    loaded = {label: load_checked(label, path, proto, ds) for label, path in given.items()}

    out = Path(out)
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    (out / "ensembles").mkdir(parents=True, exist_ok=True)

    def checkpoint_stem(name: str, digest: str) -> str:
        """File stem of a given checkpoint's ensemble (its hash, label, protocol, seed, data)."""
        payload = {
            "checkpoint_sha256": digest,
            "label": name,
            "protocol": proto.to_dict(),
            "seed": seed,
            "data": description,
        }
        return f"{name}-{proto.name}-s{seed}-{_key(payload)}"

    digests = {name: file_sha256(path) for name, path in given.items()}
    configs = {n: _model_config(classes[n], proto, options.get(n, {}), seed) for n in names}
    stems = {name: checkpoint_stem(name, digest) for name, digest in digests.items()}
    for name in names:
        key = _trained_key(name, classes[name], configs[name], proto.to_dict(), seed, description)
        stems[name] = f"{name}-{proto.name}-s{seed}-{key}"
    ckpts = {name: out / "checkpoints" / f"{stems[name]}.safetensors" for name in names}
    ckpts.update(given)
    ensembles = {name: out / "ensembles" / f"{stem}-m{members}.nc" for name, stem in stems.items()}
    fitted_ahead: dict[str, float] = {}  # name -> seconds of a fit in a worker
    sampled_ahead: dict[str, float] = {}  # name -> seconds of sampling in a worker
    if jobs > 1:
        to_fit = {
            name: ({"kind": name, "config": configs[name]}, ckpts[name])
            for name in names
            if not ckpts[name].is_file()
        }
        if len(to_fit) > 1:
            fitted_ahead = fit_to_files(to_fit, train, valid, seed, jobs=jobs, progress=progress)
        to_sample = {
            name: (ckpts[name], ensembles[name])
            for name in stems
            if ckpts[name].is_file() and not ensembles[name].is_file()
        }
        if len(to_sample) > 1:
            sampled_ahead = sample_checkpoints(
                to_sample,
                ds,
                issue_times,
                members,
                seed,
                jobs=jobs,
                compress=compress,
                progress=progress,
            )

    forecasts: dict[str, xr.Dataset] = {}
    gaussian: dict[str, xr.Dataset] = {}
    files: dict[str, Path] = {}
    trained: list[str] = []
    sampled: list[str] = []
    timings: dict[str, dict[str, float]] = {}
    checkpoint_runs: dict[str, dict[str, Any]] = {}
    baselines: list[str] = []
    for name in tqdm([*names, *loaded], desc=f"{proto.name} models", disable=not progress):
        timings[name] = {}
        if name in loaded:
            model = loaded[name]
            files[f"checkpoint_{name}"] = given[name]
            checkpoint_runs[name] = {
                "path": str(given[name]),
                "sha256": digests[name],
                "kind": getattr(model, "kind", type(model).__name__),
                "config": model.config() if hasattr(model, "config") else {},
            }
        else:
            ckpt = ckpts[name]
            if name in fitted_ahead:  # fitted by a worker above
                timings[name]["fit_s"] = fitted_ahead[name]
                trained.append(name)
            if ckpt.is_file():
                model = load_model(ckpt)
            else:
                model = classes[name](**configs[name])
                t0 = time.perf_counter()
                fit_seeded(model, train, valid, seed)
                timings[name]["fit_s"] = time.perf_counter() - t0
                model.save(ckpt)
                trained.append(name)
            files[f"checkpoint_{name}"] = ckpt

        path = ensembles[name]
        if name in sampled_ahead:  # sampled by a worker above
            timings[name]["sample_s"] = sampled_ahead[name]
            sampled.append(name)
        if path.is_file():
            ens = _like_data(open_ensemble(path).load(), ds)
        else:
            t0 = time.perf_counter()
            ens = forecast_many(model, ds, issue_times, members, seed, progress=progress)
            timings[name]["sample_s"] = time.perf_counter() - t0
            ens = with_member_sources(model, ens)  # a pool names each member's model
            to_netcdf(ens, path, model=name, seed=seed, compress=compress, overwrite=True)
            sampled.append(name)
        forecasts[name] = ens
        files[f"ensemble_{name}"] = path
        if getattr(model, "kind", None) in BASELINE_KINDS:
            baselines.append(name)

        if hasattr(model, "predict_gaussian"):
            gpath = out / "ensembles" / f"{stems[name]}-gaussian.nc"
            if gpath.is_file():
                with xr.open_dataset(gpath) as g:
                    g = g.load()
            else:
                from forecast.models.gp import gaussian_many

                mean, std = gaussian_many(model, ds, issue_times)
                g = xr.merge(
                    [
                        mean.rename({v: f"{v}_mean" for v in mean.data_vars}),
                        std.rename({v: f"{v}_std" for v in std.data_vars}),
                    ],
                    compat="no_conflicts",
                    join="exact",
                )
                _write_netcdf(g, gpath)
            variables = [v[: -len("_mean")] for v in g.data_vars if v.endswith("_mean")]
            mean = g[[f"{v}_mean" for v in variables]].rename({f"{v}_mean": v for v in variables})
            std = g[[f"{v}_std" for v in variables]].rename({f"{v}_std": v for v in variables})
            for v in variables:
                mean[v].attrs = dict(ds[v].attrs)
                std[v].attrs = dict(ds[v].attrs)
            gaussian[name] = _gaussian_rows(mean, std, ds)
            files[f"gaussian_{name}"] = gpath

    card = scorecard(forecasts, ds, seed=seed, progress=progress, metrics=metrics, jobs=jobs)
    if gaussian:
        card = _add_gaussian(card, gaussian)
    diag = diagnostics(forecasts, ds, seed=seed, jobs=jobs)
    files.update(write_report(card, diag, out))
    summary: list[str] = []
    if baselines and len(baselines) < len(forecasts) and len(issue_times) >= 3:
        table = significance_table(forecasts, ds, baselines)
        files.update(write_significance(table, out))
        summary = summary_lines(table)
    else:  # a table of an earlier run in this folder would no longer match the scorecard
        for stale in ("significance.csv", "significance.md"):
            (out / stale).unlink(missing_ok=True)
    wall = time.perf_counter() - start
    previous = out / "run.json"
    if previous.is_file():  # keep the timings of cached steps from the run that made them
        try:
            before = json.loads(previous.read_text()).get("timings_s", {})
        except (OSError, ValueError):
            before = {}
        for name in timings:
            for step, seconds in before.get(name, {}).items():
                timings[name].setdefault(step, seconds)
    run = {
        "protocol": proto.to_dict(),
        "models": {n: _model_config(classes[n], proto, options.get(n, {}), seed) for n in names},
        "checkpoints": checkpoint_runs,
        "members": int(members),
        "seed": int(seed),
        "n_issue_times": len(issue_times),
        "trained": trained,
        "sampled": sampled,
        "timings_s": timings,
        "wall_s": wall,
        "versions": _versions(),
    }
    _write_json(out / "run.json", run)
    files["run"] = out / "run.json"
    return {
        "scorecard": card,
        "files": files,
        "trained": trained,
        "sampled": sampled,
        "timings": timings,
        "wall_s": wall,
        "significance": summary,
    }


def _add_gaussian(card: xr.Dataset, gaussian: Mapping[str, xr.Dataset]) -> xr.Dataset:
    """Append the metric ``crps_gaussian`` (NaN for models without a Gaussian forecast)."""
    rows = []
    for model in card[MODEL].values:
        model = str(model)
        if model in gaussian:
            row = gaussian[model][list(card.data_vars)].astype(np.float64)
            row = row.drop_vars([c for c in row.coords if c != LEAD_TIME])
        else:
            row = xr.full_like(card.isel({MODEL: 0, METRIC: 0}, drop=True), np.nan)
        rows.append(row.expand_dims({MODEL: [model]}))
    extra = xr.concat(rows, dim=MODEL, join="outer").expand_dims({METRIC: [CRPS_GAUSSIAN]})
    merged = xr.concat(
        [card.drop_vars("n_members"), extra], dim=METRIC, join="left", coords="minimal"
    )
    merged = merged.assign_coords(n_members=card["n_members"]).transpose(MODEL, LEAD_TIME, METRIC)
    merged.attrs = dict(card.attrs)
    return merged


__all__ = [
    "CRPS_GAUSSIAN",
    "DEFAULT_METRICS",
    "LABEL_PATTERN",
    "check_label",
    "load_checked",
    "run_protocol",
]
