"""Is one model of a protocol run better than another? A paired test per lead and over all leads.

``results_tables.py`` compares every model with the best baseline at each lead. This compares
two models of the same run (the same issue times, the same truth): per lead, and for the CRPS
averaged over all leads, the mean relative difference of model A's CRPS to model B's with its
95 % Diebold-Mariano interval (``forecast.scoring.significance.compare_scores``; negative: A is
better). The all-leads test treats a forecast as spanning the whole horizon, so its overlap
steps are those of the longest lead.

Usage::

    .venv/bin/python benchmarks/paired_difference.py runs/eval-p2 mix-online plain-online
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import xarray as xr

from forecast.data import open_dataset
from forecast.dims import LEAD_TIME
from forecast.errors import ForecastError
from forecast.export import open_ensemble
from forecast.scoring.significance import compare_scores, crps_by_issue_time


def run_parser(doc: str) -> argparse.ArgumentParser:
    """The argument parser of a benchmark that reads a protocol run (its first argument)."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("run", help="the --out folder of a `forecast evaluate --protocol` run")
    return parser


def models_parser(doc: str) -> argparse.ArgumentParser:
    """:func:`run_parser` with ``--model`` (repeatable) and ``--leads`` (hours; by default the
    P2 leads issue 5 names)."""
    parser = run_parser(doc)
    parser.add_argument("--model", action="append", required=True, help="label (repeatable)")
    parser.add_argument(
        "--leads", type=float, nargs="+", default=[1, 3, 6, 12, 24], help="leads, in hours"
    )
    return parser


def open_run(folder: str | Path) -> tuple[Path, dict, xr.Dataset]:
    """A protocol run's folder, its run.json and the data set it was scored on."""
    run = Path(folder)
    meta = json.loads((run / "run.json").read_text())
    return run, meta, open_dataset(meta["protocol"]["dataset"])


def ensemble_path(run: Path, label: str, meta: dict) -> Path:
    """The ensemble file of model ``label`` in protocol run folder ``run`` (``meta``: its
    run.json), named ``<label>-<protocol>-s<seed>-<hash>-m<members>.nc``."""
    prefix = f"{label}-{meta['protocol']['name']}-s{meta['seed']}-"
    found = list((run / "ensembles").glob(f"{prefix}*-m{meta['members']}.nc"))
    if len(found) != 1:
        every = (run / "ensembles").glob(f"*-m{meta['members']}.nc")
        names = sorted(p.name.split(f"-{meta['protocol']['name']}-")[0] for p in every)
        raise ForecastError(
            f"{len(found)} ensembles of {label!r} in {run}/ensembles; "
            f"give the label of one model of the run: {', '.join(names)}"
        )
    return found[0]


def crps_of(run: Path, label: str, meta: dict, truth: xr.Dataset) -> xr.DataArray:
    """CRPS per (issue time, lead) of model ``label``, averaged over space (one variable)."""
    scores = crps_by_issue_time(open_ensemble(ensemble_path(run, label, meta)), truth)
    (name,) = list(scores.data_vars)
    return scores[name]


def over_all_leads(score: xr.DataArray) -> xr.DataArray:
    """The CRPS averaged over leads, as one 'lead' (the last) so that the test's overlap steps
    are those of the whole horizon."""
    last = score[LEAD_TIME].values[-1:]
    return score.mean(LEAD_TIME).expand_dims({LEAD_TIME: last})


def percent(row: xr.Dataset) -> dict[str, float]:
    """A :func:`compare_scores` row's relative difference and interval ends, in %."""
    return {k: float(row[k]) * 100 for k in ("relative_difference", "ci_lower", "ci_upper")}


def main(argv: list[str] | None = None) -> None:
    parser = run_parser(__doc__)
    parser.add_argument("a", help="label of model A")
    parser.add_argument("b", help="label of model B (the reference)")
    args = parser.parse_args(argv)
    run, meta, truth = open_run(args.run)
    a, b = crps_of(run, args.a, meta, truth), crps_of(run, args.b, meta, truth)
    per_lead = compare_scores(a, b)
    verdicts, counts = np.unique(per_lead["verdict"].values, return_counts=True)
    print(f"{args.a} against {args.b} ({run}, {a.sizes['init_time']} issue times)")
    print("  per lead, relative difference in %:")
    print("   " + " ".join(f"{v * 100:+.1f}" for v in per_lead["relative_difference"].values))
    print(
        "  verdicts per lead: "
        + ", ".join(f"{v} {c}" for v, c in zip(verdicts, counts, strict=True))
    )
    whole = compare_scores(over_all_leads(a), over_all_leads(b)).isel({LEAD_TIME: 0})
    pct = percent(whole)
    print(
        f"  all leads: mean CRPS {float(whole['score']):.4f} against "
        f"{float(whole['reference']):.4f}, {pct['relative_difference']:+.2f} % (95 % interval "
        f"{pct['ci_lower']:+.2f} to {pct['ci_upper']:+.2f} %, p = {float(whole['p_value']):.3f}): "
        f"{whole['verdict'].item()}"
    )


if __name__ == "__main__":
    try:
        main()
    except ForecastError as err:
        sys.exit(f"error: {err}")
