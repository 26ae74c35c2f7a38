"""Models that differ only in their training length, trained in one run.

A snapshot ensemble pools one configuration's weights at several steps of its schedule
(``train.keep = 15``, ``30``, ... in otherwise identical pool components). Trained one by one,
each model repeats the steps of the shorter ones. Here the group trains once, to its last
step, writing the training state at the earlier steps (the loop's ``snapshots``); each earlier
model is then a run resumed from its step's state with ``train.keep`` at that step, which
ends exactly as the run trained to that step alone (exact resume: same weights, the same
validation and calibration after the last step). Only the steps after the earlier models'
are new work, and the group fits its first guess once
(:func:`forecast.models.first_guess.shared_first_guesses`).
"""

from __future__ import annotations

import inspect
import json
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import xarray as xr

from forecast.errors import ForecastError
from forecast.models.first_guess import shared_first_guesses
from forecast.workers import build


def _with_keep(spec: Mapping[str, Any], keep: Any) -> dict[str, Any]:
    config = dict(spec["config"])
    train = dict(config.get("train") or {})
    if keep is None:
        train.pop("keep", None)
    else:
        train["keep"] = keep
    config["train"] = train
    return {"kind": spec["kind"], "config": config}


def kept_step(spec: Mapping[str, Any]) -> int | None:
    """The step ``train.keep`` of ``spec`` names, when its kind's fit can write snapshots
    (the generative models); None otherwise."""
    from forecast.models import MODELS

    keep = (spec["config"].get("train") or {}).get("keep")
    if isinstance(keep, bool) or not isinstance(keep, int):
        return None
    fit = getattr(MODELS.get(spec["kind"]), "fit", None)
    if fit is None or "snapshots" not in inspect.signature(fit).parameters:
        return None
    return keep


def snapshot_groups(specs: Sequence[Mapping[str, Any]]) -> list[list[int]]:
    """The indices of ``specs`` in groups that train in one run: specs that differ only in an
    integer ``train.keep`` (each step once) share a group; every other spec is alone."""
    groups: dict[str, list[int]] = {}
    steps: dict[str, set[int]] = {}
    out: list[list[int]] = []
    for k, spec in enumerate(specs):
        step = kept_step(spec)
        if step is None:
            out.append([k])
            continue
        key = json.dumps(_with_keep(spec, None), sort_keys=True, default=repr)
        if step in steps.setdefault(key, set()):  # the same model again: a run of its own
            out.append([k])
            continue
        steps[key].add(step)
        if key not in groups:
            groups[key] = []
            out.append(groups[key])
        groups[key].append(k)
    return out


def fit_group(
    specs: Sequence[Mapping[str, Any]], train: xr.Dataset, valid: xr.Dataset | None
) -> list[Any]:
    """The fitted model of every spec of one :func:`snapshot_groups` group (one spec: a plain
    fit; more: :func:`fit_snapshots`)."""
    if len(specs) == 1:
        return [build(specs[0]).fit(train, valid)]
    return fit_snapshots(specs, train, valid)


def fit_snapshots(
    specs: Sequence[Mapping[str, Any]], train: xr.Dataset, valid: xr.Dataset | None
) -> list[Any]:
    """Fit models that differ only in an integer ``train.keep`` with one training run.

    The spec with the latest step trains, writing its state at the others' steps; each other
    model resumes from its step's state and ends there. Returns the models in the order of
    ``specs``, each the model that ``build(spec).fit(train, valid)`` gives.
    """
    steps = [kept_step(spec) for spec in specs]
    if None in steps or len(set(steps)) != len(steps):
        raise ForecastError(
            "fit_snapshots needs models of one kind that differ only in distinct integer "
            f"train.keep steps, got keep = {steps}"
        )
    order = sorted(range(len(specs)), key=lambda k: steps[k])
    last = order[-1]
    models: dict[int, Any] = {}
    folder = tempfile.TemporaryDirectory(prefix="forecast-snapshots-")
    with folder as tmp, shared_first_guesses():
        run = Path(tmp) / "run"
        models[last] = build(specs[last]).fit(
            train, valid, out_dir=run, snapshots=[steps[k] for k in order[:-1]]
        )
        for k in order[:-1]:
            state = run / f"step-{steps[k]}.safetensors"
            if not state.is_file():  # the run reached its last step, so this is a bug
                raise ForecastError(f"the training run wrote no state at step {steps[k]}")
            resumed = Path(tmp) / f"keep-{steps[k]}"
            resumed.mkdir()
            shutil.copyfile(state, resumed / "last.safetensors")
            models[k] = build(specs[k]).fit(train, valid, out_dir=resumed, resume=True)
    return [models[k] for k in range(len(specs))]
