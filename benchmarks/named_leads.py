"""Models of a protocol run against the best baseline at chosen leads, with 95 % intervals.

Issue 5 names the P2 leads 1, 3, 6, 12 and 24 h. For each model and each of those leads this
prints the baseline with the lowest mean CRPS there (among the run's baselines other than the
model itself), the model's relative CRPS difference to it and the 95 % Diebold-Mariano
interval and verdict
(``forecast.scoring.significance.compare_scores``, overlap steps of that lead). It reads the
run's ensembles, so it reflects the current test (a run's ``significance.csv`` keeps the
figures of the code that wrote it).

Usage::

    .venv/bin/python benchmarks/named_leads.py runs/cvk/eval-test --model snap-s0-7 \\
        [--model k45-s0123] [--leads 1 3 6 12 24]
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))

from paired_difference import crps_of, models_parser, open_run, percent

from forecast.dims import INIT_TIME, LEAD_TIME
from forecast.errors import ForecastError
from forecast.scoring.significance import compare_scores

BASELINES = ("climatology", "persistence", "diurnal-persistence", "gp")


def main(argv: list[str] | None = None) -> None:
    args = models_parser(__doc__).parse_args(argv)
    run, meta, truth = open_run(args.run)
    baselines = {}
    for name in BASELINES:
        try:
            baselines[name] = crps_of(run, name, meta, truth)
        except ForecastError:
            continue  # a baseline this run did not score
    if not baselines:
        raise ForecastError(f"no baseline ({', '.join(BASELINES)}) in {run}; run them too")
    leads = pd.to_timedelta(args.leads, unit="h")
    first = next(iter(baselines.values()))
    missing = [f"{h:g} h" for h, t in zip(args.leads, leads, strict=True)
               if t not in first[LEAD_TIME].values]  # fmt: skip
    if missing:
        raise ForecastError(f"lead(s) {', '.join(missing)} not in the run; pick leads it scored")
    n = first.sizes[INIT_TIME]
    print(f"{run}: {n} issue times; relative CRPS difference to the best baseline at each lead")
    for label in args.model:
        score = crps_of(run, label, meta, truth)
        print(f"{label}:")
        for hours, lead in zip(args.leads, leads, strict=True):
            means = {
                k: float(v.sel({LEAD_TIME: lead}).mean())
                for k, v in baselines.items()
                if k != label
            }
            best = min(means, key=means.get)
            one = compare_scores(
                score.sel({LEAD_TIME: [lead]}), baselines[best].sel({LEAD_TIME: [lead]})
            ).isel({LEAD_TIME: 0})
            pct = percent(one)
            print(
                f"  {hours:g} h: {pct['relative_difference']:+.1f} % against {best} "
                f"({pct['ci_lower']:+.1f} to {pct['ci_upper']:+.1f} %): {one['verdict'].item()}"
            )


if __name__ == "__main__":
    try:
        main()
    except ForecastError as err:
        sys.exit(f"error: {err}")
