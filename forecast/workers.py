"""Work spread over worker processes: a pool's model fits, a protocol run's fits and ensembles.

On a machine with a few cores the small models of this package train and sample fastest on one
thread each: a step is many small operations that another thread barely shortens. Fitting the
models of a pool (the seeds of a deep ensemble), or sampling the ensembles of several
checkpoints in a protocol run, side by side therefore cuts the wall time by about the number
of processes, and every result is the one the same work on the same number of threads in one
process gives (every fit and every ensemble is seeded).

Each worker is a fresh interpreter (``spawn``), so no thread pool or lock of the parent is
inherited. The parent gets back what it needs to go on: a fitted model's checkpoint content
(arrays and JSON metadata), or the path of an ensemble file written to a temporary name and
renamed. The first failure stops the work with that task's error, and the other workers are
stopped.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from tqdm.auto import tqdm

from forecast.errors import ForecastError


def check_jobs(jobs: Any) -> int:
    """``jobs`` as an int, or a one-line error unless it is an integer >= 1."""
    if isinstance(jobs, bool) or not isinstance(jobs, int | np.integer) or jobs < 1:
        raise ForecastError(f"jobs must be an integer >= 1, got {jobs!r}")
    return int(jobs)


def in_workers(
    work: Callable[[Any], Any], tasks: Sequence[Any], jobs: int, desc: str, progress: bool
) -> Iterator[Any]:
    """Yield ``work(task)`` of every task as the workers finish them (``jobs`` at a time); a bar
    counts the finished tasks; no task, no worker started."""
    if not tasks:
        return
    workers = min(jobs, len(tasks))
    bar = tqdm(total=len(tasks), desc=f"{desc} ({workers} at a time)", disable=not progress)
    # leaving the block terminates the workers, so a failure does not wait for the others
    with bar, multiprocessing.get_context("spawn").Pool(workers) as pool:
        for result in pool.imap_unordered(work, tasks):
            bar.update(1)
            yield result
        pool.close()  # let the workers exit on their own (terminate is for failures)
        pool.join()


def in_threads(
    work: Callable[[Any], Any],
    tasks: Sequence[Any],
    jobs: int,
    bar: Mapping[str, Any] | None = None,
) -> list[Any]:
    """``[work(task) for task in tasks]``, ``jobs`` tasks at a time in threads, in the tasks'
    order; ``bar``: tqdm keyword arguments of a bar over the finished tasks.

    For numpy-heavy work that releases the GIL (scoring ensembles); the results equal those of
    the plain loop, and the first failure is raised once the running tasks end.
    """
    jobs = check_jobs(jobs)
    bar = {"disable": True, **(bar or {})}
    if jobs == 1 or len(tasks) <= 1:
        return [work(task) for task in tqdm(tasks, total=len(tasks), **bar)]
    with ThreadPoolExecutor(min(jobs, len(tasks))) as pool:
        return list(tqdm(pool.map(work, tasks), total=len(tasks), **bar))


def loaded(train: xr.Dataset, valid: xr.Dataset | None) -> tuple[xr.Dataset, xr.Dataset | None]:
    """``train`` and ``valid`` in memory: workers get the values, not a handle on a file."""
    return train.load(), (valid.load() if valid is not None else None)


def worker_threads(workers: int) -> int:
    """Torch threads for each of ``workers`` processes: this process's threads shared out."""
    import torch

    return max(1, torch.get_num_threads() // workers)


# -- fitting -----------------------------------------------------------------------------------
def build(spec: Mapping[str, Any]) -> Any:
    """The unfitted model of ``spec`` (``{"kind": registry name, "config": keywords}``)."""
    from forecast.models import MODELS

    return MODELS.get(spec["kind"])(**spec["config"])


def fit_models(
    specs: Sequence[Mapping[str, Any]],
    train: xr.Dataset,
    valid: xr.Dataset | None,
    *,
    labels: Sequence[str],
    jobs: int = 1,
    progress: bool = True,
) -> list[Any]:
    """Build and fit the model of every spec on ``train`` (and ``valid``), ``jobs`` at a time.

    Specs that differ only in an integer ``train.keep`` train in one run
    (:func:`forecast.models.snapshots.snapshot_groups`); the models are those of separate fits.
    ``jobs = 1`` fits them one after the other in this process. With more, each group is fitted
    in a worker process on :func:`worker_threads` threads with its own progress bar off, and a
    bar counts the finished groups (``progress``).
    """
    from forecast.models.snapshots import fit_group, snapshot_groups

    jobs = check_jobs(jobs)
    models = [build(spec) for spec in specs]  # bad configurations fail here, before any fit
    groups = snapshot_groups(specs)
    if jobs == 1 or len(groups) == 1:
        fitted = {}
        for group in groups:
            models_of = fit_group([specs[k] for k in group], train, valid)
            fitted.update(zip(group, models_of, strict=True))
        return [fitted[k] for k in range(len(specs))]
    threads = worker_threads(min(jobs, len(groups)))
    train, valid = loaded(train, valid)
    tasks = [(g, [quiet(specs[k]) for k in g], train, valid, threads) for g in groups]
    contents = {}
    for done in in_workers(_fit_contents, tasks, jobs, "pool models", progress):
        contents.update(done)
    return [
        type(model).from_checkpoint(*contents[k], where=f"pool model {labels[k]!r}")
        for k, model in enumerate(models)
    ]


def quiet(spec: Mapping[str, Any]) -> dict[str, Any]:
    """``spec`` with the progress bar of a model that trains turned off (workers share one
    terminal)."""
    import inspect

    from forecast.models import MODELS

    config = dict(spec["config"])
    if "train" in inspect.signature(MODELS.get(spec["kind"])).parameters:
        config["train"] = {**dict(config.get("train") or {}), "progress": False}
    return {"kind": spec["kind"], "config": config}


def _fit_contents(
    task: tuple[list[int], list[Mapping[str, Any]], xr.Dataset, xr.Dataset | None, int],
) -> list[tuple[int, tuple[dict[str, np.ndarray], dict[str, Any]]]]:
    """Worker: fit the models ``ks`` of ``(ks, specs, train, valid, threads)`` (one group of
    :func:`forecast.models.snapshots.snapshot_groups`) on ``threads`` threads; ``(k, its
    checkpoint content)`` of each."""
    import torch

    from forecast.models.snapshots import fit_group

    ks, specs, train, valid, threads = task
    torch.set_num_threads(threads)
    models = fit_group(specs, train, valid)
    return [(k, model.checkpoint_content()) for k, model in zip(ks, models, strict=True)]


def fit_seeded(model: Any, train: xr.Dataset, valid: xr.Dataset | None, seed: int) -> None:
    """Fit with torch's global generator seeded (for models that draw from it), as the
    protocol runner fits the models it trains."""
    import torch

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model.fit(train, valid)


def fit_to_files(
    tasks: Mapping[str, tuple[Mapping[str, Any], Path]],
    train: xr.Dataset,
    valid: xr.Dataset | None,
    seed: int,
    *,
    jobs: int,
    progress: bool = True,
) -> dict[str, float]:
    """Fit models ``jobs`` at a time in worker processes and save each to its checkpoint file.

    ``tasks`` maps a name to ``(spec, checkpoint path)``; each worker fits the spec's model as
    the protocol runner does (torch's generator seeded with ``seed``) and saves it. Returns the
    fitting seconds per name.
    """
    jobs = check_jobs(jobs)
    for spec, _ in tasks.values():  # bad configurations fail here, before any fit
        build(spec)
    threads = worker_threads(min(jobs, len(tasks)))
    train, valid = loaded(train, valid)
    work = [
        (name, quiet(spec), str(path), train, valid, seed, threads)
        for name, (spec, path) in tasks.items()
    ]
    return dict(in_workers(_fit_to_file, work, jobs, "model fits", progress))


def _fit_to_file(task: tuple) -> tuple[str, float]:
    """Worker: one model fitted (seeded as in the protocol runner) and saved; ``(name,
    seconds)``."""
    import torch

    name, spec, path, train, valid, seed, threads = task
    torch.set_num_threads(threads)
    model = build(spec)
    start = time.perf_counter()
    fit_seeded(model, train, valid, seed)
    seconds = time.perf_counter() - start
    model.save(Path(path))
    return name, seconds


# -- sampling ----------------------------------------------------------------------------------
def sample_checkpoints(
    files: Mapping[str, tuple[Path, Path]],
    ds: xr.Dataset,
    issue_times: Sequence[Any] | np.ndarray,
    members: int,
    seed: int,
    *,
    jobs: int,
    compress: bool = False,
    progress: bool = True,
) -> dict[str, float]:
    """Write the ensembles of several checkpoints (given, or trained in a protocol run), ``jobs``
    at a time, each in a worker process.

    ``files`` maps a label to ``(checkpoint, ensemble file)``; each worker loads the
    checkpoint, samples ``members`` members for every issue time of ``ds`` with ``seed``
    (:func:`forecast.models.forecast_many`) and writes the ensemble file as the protocol
    runner does (a pool's members labelled by model). Returns the sampling seconds per label.
    """
    jobs = check_jobs(jobs)
    threads = worker_threads(min(jobs, len(files)))
    ds = ds.load()
    times = np.asarray(issue_times)
    tasks = [
        (label, str(ckpt), str(path), ds, times, members, seed, compress, threads)
        for label, (ckpt, path) in files.items()
    ]
    return dict(in_workers(_sample_to_file, tasks, jobs, "ensembles", progress))


def _sample_to_file(task: tuple) -> tuple[str, float]:
    """Worker: one checkpoint's ensembles written to their file; ``(label, seconds)``."""
    import torch

    from forecast.export import to_netcdf
    from forecast.models import forecast_many, load_model
    from forecast.models.pooled import with_member_sources

    label, ckpt, path, ds, times, members, seed, compress, threads = task
    torch.set_num_threads(threads)
    model = load_model(ckpt)
    start = time.perf_counter()
    ens = forecast_many(model, ds, times, members, seed)
    seconds = time.perf_counter() - start
    ens = with_member_sources(model, ens)
    to_netcdf(ens, Path(path), model=label, seed=seed, compress=compress, overwrite=True)
    return label, seconds
