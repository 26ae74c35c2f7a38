"""Fit several models at once, each in its own process (a pool's ``jobs``).

On a machine with a few cores the small models of this package train fastest on one thread
each: the CPU time of a step is dominated by many small operations that another thread barely
shortens. Fitting the models of a pool (the seeds of a deep ensemble) side by side therefore
cuts the wall time of the whole fit by about the number of processes, and each model comes out
exactly as a fit on the same number of threads in one process gives it (every fit is seeded).

Each worker is a fresh interpreter (``spawn``), so no thread pool or lock of the parent is
inherited; it fits one model with its progress bar off and sends back the model's checkpoint
content (arrays and JSON metadata), from which the parent rebuilds it.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr
from tqdm.auto import tqdm

from forecast.errors import ForecastError


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

    ``jobs = 1`` fits them one after the other in this process. With more, each model is fitted
    in a worker process on ``max(1, torch threads // workers)`` threads, and a bar counts the
    finished models (``progress``). The first failure stops the fit with that model's error.
    """
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ForecastError(f"jobs must be an integer >= 1, got {jobs!r}")
    models = [build(spec) for spec in specs]  # bad configurations fail here, before any fit
    if jobs == 1 or len(specs) == 1:
        return [model.fit(train, valid) for model in models]
    import torch

    workers = min(jobs, len(specs))
    threads = max(1, torch.get_num_threads() // workers)
    train = train.load()  # workers get the values, not a handle on the source file
    valid = valid.load() if valid is not None else None
    tasks = [(k, _quiet(spec), train, valid, threads) for k, spec in enumerate(specs)]
    contents: dict[int, tuple[dict[str, np.ndarray], dict[str, Any]]] = {}
    bar = tqdm(total=len(specs), desc=f"pool models ({workers} at a time)", disable=not progress)
    # leaving the block terminates the workers, so a failure does not wait for the others
    with bar, multiprocessing.get_context("spawn").Pool(workers) as pool:
        for k, content in pool.imap_unordered(_fit_content, tasks):
            contents[k] = content
            bar.update(1)
    return [
        type(model).from_checkpoint(*contents[k], where=f"pool model {labels[k]!r}")
        for k, model in enumerate(models)
    ]


def _quiet(spec: Mapping[str, Any]) -> dict[str, Any]:
    """``spec`` with the progress bar of a model that trains turned off (workers share one
    terminal)."""
    import inspect

    from forecast.models import MODELS

    config = dict(spec["config"])
    if "train" in inspect.signature(MODELS.get(spec["kind"])).parameters:
        config["train"] = {**dict(config.get("train") or {}), "progress": False}
    return {"kind": spec["kind"], "config": config}


def _fit_content(
    task: tuple[int, Mapping[str, Any], xr.Dataset, xr.Dataset | None, int],
) -> tuple[int, tuple[dict[str, np.ndarray], dict[str, Any]]]:
    """Worker: fit model ``k`` of ``(k, spec, train, valid, threads)`` on ``threads`` threads;
    ``(k, its checkpoint content)``."""
    import torch

    k, spec, train, valid, threads = task
    torch.set_num_threads(threads)
    return k, build(spec).fit(train, valid).checkpoint_content()
