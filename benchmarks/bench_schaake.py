"""What the Schaake shuffle does to the ensembles of a protocol run, without sampling again.

For each model named, the ensembles of a protocol run (``forecast evaluate --protocol`` or
``bench_online_diurnal.py hourly``) are reordered as ``forecast.models.schaake.SchaakeShuffle``
would reorder them (templates: observed changes of the run's training split, chosen per issue
time by ``template_starts``) and both versions are scored on the run's truth:

- the CRPS (the same: the shuffle keeps each point's member values);
- the energy score over space per issue time and lead, and with ``--variogram`` the variogram
  score of order 0.5 (slow: about 1.5 s per P2 issue time);
- the CRPS and spread-skill ratio of the **area mean** (``forecast.scoring.multivariate.
  area_means``, as the scorecard's ``area_crps`` and ``area_spread_skill``: cos(latitude)
  weighted on a lat/lon grid, a regional average temperature; a network's mean speed);
- on grids, the spread-skill ratio of the **neighbour differences** and the correlation of
  the members' departures between neighbours beside the truth's
  (``bench_spatial_structure.py``);
- the shuffled against the original ensemble, averaged over leads: the relative difference,
  at how many issue times the shuffled one scores lower, and the 95 % Diebold-Mariano interval
  (``forecast.scoring.significance.compare_scores``).

It prints the time the templates and the shuffle take per issue time (what the wrapper adds to
its base model's sampling). ``--templates`` also shuffles to two other kinds of templates: the
change from the same time a day earlier, ``x(t0 + L) - x(t0 + L - 1 day)``, and random ones (a
control that makes the members independent from point to point). ``--same
LABEL=SCHAAKE_LABEL`` also checks that the run's ensemble of a ``schaake`` checkpoint
(``forecast schaake`` of model LABEL, scored in the same run) equals this post-hoc shuffle.

Usage::

    .venv/bin/python benchmarks/bench_schaake.py runs/eval-p2 --model snap-s0-7 --model gp \\
        [--variogram] [--templates] [--same snap-s0-7=schaake-snap-s0-7]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import xarray as xr

sys.path.insert(0, str(Path(__file__).parent))

from bench_spatial_structure import structure_rows
from paired_difference import ensemble_path, over_all_leads

from forecast.data import open_dataset
from forecast.dims import INIT_TIME, LEAD_TIME, MEMBER, TIME, space_dims
from forecast.export import open_ensemble
from forecast.models.base import values_of
from forecast.models.schaake import (
    change_templates,
    complete_steps,
    schaake_shuffle,
    template_starts,
)
from forecast.scoring import (
    crps_ensemble,
    energy_score,
    obs_for,
    spread_skill_ratio,
    variogram_score,
)
from forecast.scoring.multivariate import area_means
from forecast.scoring.significance import compare_scores

#: Template kinds ``--templates`` compares: the wrapper's, the change from the same time a day
#: earlier, and random (a control: members made independent from point to point).
TEMPLATES = ("change", "day-change", "random")


def templates_for(
    kind: str,
    values: np.ndarray,
    times: np.ndarray,
    issue: np.datetime64,
    horizon: int,
    members: int,
    complete: np.ndarray,
) -> np.ndarray:
    """Templates ``(member, lead, *space)`` of the first variable of a record ``values``
    ``(time, channel, *space)`` for one issue time (``complete``: the record's steps without a
    missing value, :func:`complete_steps`)."""
    if kind == "change":
        return change_templates(values, times, issue, horizon, members, complete)[:, 0]
    if kind == "day-change":
        day = int(np.timedelta64(1, "D") / (times[1] - times[0]))
        complete = complete.copy()
        complete[:day] = False  # windows from the record's first day have no day before
        starts = template_starts(times, issue, horizon, members, complete)
        at = starts[:, None] + np.arange(1, horizon + 1)[None, :]
        return values[at, 0] - values[at - day, 0]
    if kind == "random":
        seed = int(np.datetime64(issue, "h").astype(np.int64))
        return np.random.default_rng(seed).standard_normal((members, horizon, *values.shape[2:]))
    raise ValueError(f"unknown template kind {kind!r}; valid: {', '.join(TEMPLATES)}")


def shuffled(
    ens: xr.DataArray, record: xr.Dataset, name: str, kind: str = "change"
) -> xr.DataArray:
    """``ens`` ``(init_time, member, lead_time, *space)`` of variable ``name`` reordered per
    issue time to the templates ``kind`` of ``record`` (``"change"``: as
    :class:`SchaakeShuffle` does)."""
    space = space_dims(record)
    values = values_of(record, [name]).astype(np.float32)
    times = record[TIME].values
    complete = complete_steps(values)  # once per record, as the wrapper does at fit
    ens = ens.transpose(INIT_TIME, MEMBER, LEAD_TIME, *space)
    out = ens.values.copy()
    horizon, members = ens.sizes[LEAD_TIME], ens.sizes[MEMBER]
    for i, issue in enumerate(ens[INIT_TIME].values):
        template = templates_for(kind, values, times, issue, horizon, members, complete)
        out[i] = schaake_shuffle(out[i], template.astype(out.dtype))
    return ens.copy(data=out)


def scores(obs: xr.DataArray, ens: xr.DataArray, variogram: bool) -> dict[str, xr.DataArray]:
    """Per (issue time, lead): energy score (and variogram score), area-mean CRPS."""
    space = space_dims(ens)
    out = {
        "crps": crps_ensemble(obs, ens, dim=[INIT_TIME, *space]),
        "energy": energy_score(obs, ens, dim=[]),
        "area_crps": crps_ensemble(*area_means(obs, ens), dim=[]),
    }
    if variogram:
        out["variogram"] = variogram_score(obs, ens, dim=[])
    return out


def summary(obs: xr.DataArray, ens: xr.DataArray, found: dict[str, xr.DataArray]) -> str:
    """One line of mean scores and structure figures."""
    space = space_dims(ens)
    area_ssr = spread_skill_ratio(*area_means(obs, ens), dim=[INIT_TIME])
    parts = [
        f"CRPS {float(found['crps'].mean()):.4f}",
        f"energy {float(found['energy'].mean()):.3f}",
    ]
    if "variogram" in found:
        parts.append(f"variogram {float(found['variogram'].mean()):.4g}")
    parts += [
        f"area mean: CRPS {float(found['area_crps'].mean()):.4f}, "
        f"spread-skill {float(area_ssr.mean()):.2f}",
    ]
    if len(space) == 2:
        rows = {k: np.mean(v) for k, v in structure_rows(ens, obs, space).items()}
        parts.append(
            f"neighbour differences {rows['ssr_gradient']:.2f}, correlation of departures "
            f"{rows['corr_members']:.2f} (truth {rows['corr_truth']:.2f})"
        )
    return "; ".join(parts)


def paired(a: xr.DataArray, b: xr.DataArray) -> str:
    """Relative difference of ``a`` to ``b`` over all leads, at how many issue times ``a`` is
    lower, and the 95 % Diebold-Mariano interval."""
    lower = int((a.mean(LEAD_TIME) < b.mean(LEAD_TIME)).sum())
    whole = compare_scores(over_all_leads(a), over_all_leads(b)).isel({LEAD_TIME: 0})
    return (
        f"{float(a.mean() / b.mean() - 1) * 100:+.2f} %, lower at {lower} of "
        f"{a.sizes[INIT_TIME]} issue times ({float(whole['ci_lower']) * 100:+.2f} to "
        f"{float(whole['ci_upper']) * 100:+.2f} %, p = {float(whole['p_value']):.2g})"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", help="the --out folder of a protocol run")
    parser.add_argument("--model", action="append", required=True, help="a model of the run")
    parser.add_argument("--variogram", action="store_true", help="also the variogram score")
    parser.add_argument(
        "--same", action="append", default=[], help="LABEL=SCHAAKE_LABEL: check they agree"
    )
    parser.add_argument(
        "--templates",
        action="store_true",
        help="also shuffle to the other template kinds (change from a day earlier, random)",
    )
    args = parser.parse_args(argv)
    run = Path(args.run)
    meta = json.loads((run / "run.json").read_text())
    truth = open_dataset(meta["protocol"]["dataset"])
    record = truth.isel({TIME: slice(*meta["protocol"]["train"])})
    print(
        f"{run}: {meta['n_issue_times']} issue times, {meta['members']} members; templates "
        f"from {record.sizes[TIME]} training steps"
    )
    done: dict[str, xr.DataArray] = {}
    for label in args.model:
        ds = open_ensemble(ensemble_path(run, label, meta))
        (name,) = list(ds.data_vars)
        ens = ds[name].load()
        # sensor ids come back from NetCDF as objects: score them against the truth's strings
        ids = {d: ens[d].values.astype(str) for d in space_dims(ens) if ens[d].dtype == object}
        ens = ens.assign_coords(ids)
        obs = obs_for(ens.to_dataset(), truth)[name].load()
        start = time.perf_counter()
        mixed = shuffled(ens, record, name)
        seconds = (time.perf_counter() - start) / ens.sizes[INIT_TIME]
        done[label] = mixed
        raw_scores, mixed_scores = (scores(obs, e, args.variogram) for e in (ens, mixed))
        print(f"{label} (templates and shuffle: {seconds:.3f} s per issue time):")
        print(f"  as sampled: {summary(obs, ens, raw_scores)}")
        print(f"  shuffled:   {summary(obs, mixed, mixed_scores)}")
        for key in ("energy", "area_crps", "variogram"):
            if key in raw_scores:
                text = paired(mixed_scores[key], raw_scores[key])
                print(f"  {key}, shuffled against as sampled: {text}")
        for kind in TEMPLATES[1:] if args.templates else ():
            other = shuffled(ens, record, name, kind)
            print(f"  {kind} templates: {summary(obs, other, scores(obs, other, args.variogram))}")
    for item in args.same:
        label, _, other = item.partition("=")
        ds = open_ensemble(ensemble_path(run, other, meta))
        (name,) = list(ds.data_vars)
        theirs = ds[name].load().transpose(*done[label].dims)
        same = np.array_equal(theirs.values, done[label].values)
        print(f"{other} equals the shuffle of {label}: {same}")


if __name__ == "__main__":
    main()
