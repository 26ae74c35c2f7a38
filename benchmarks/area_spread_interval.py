"""Is the spread of a model's area mean right? Its spread-skill ratio per lead, with intervals.

The scorecard's ``area_spread_skill`` is a point estimate. This takes the area mean of the
truth and of every member (``forecast.scoring.multivariate.area_means``: cos-latitude weighted
on a lat/lon grid, the plain mean of a network's sensors) of models of a protocol run and
gives its spread-skill ratio per lead with the 95 % block-bootstrap interval and the verdict
against 0.8-1.2 (``forecast.scoring.spread_interval.spread_skill_interval``, as the per-point
ratio gets in ``significance.csv``).

Usage::

    .venv/bin/python benchmarks/area_spread_interval.py runs/schaake/eval-test \\
        --model schaake-cfg [--model snap-s0-7] [--leads 1 3 6 12 24]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))

from paired_difference import ensemble_path, models_parser, open_run

from forecast.dims import LEAD_TIME
from forecast.errors import ForecastError
from forecast.export import open_ensemble
from forecast.scoring import obs_for
from forecast.scoring.multivariate import area_means
from forecast.scoring.spread_interval import spread_skill_interval

VERDICTS = ("consistent", "under-dispersed", "over-dispersed")


def main(argv: list[str] | None = None) -> None:
    args = models_parser(__doc__).parse_args(argv)
    run, meta, truth = open_run(args.run)
    shown = pd.to_timedelta(args.leads, unit="h")
    for label in args.model:
        ens = open_ensemble(ensemble_path(run, label, meta)).load()
        obs_area, ens_area = area_means(obs_for(ens, truth), ens)
        out = spread_skill_interval(ens_area, obs_area)
        for name in ens_area.data_vars:
            verdicts = out[f"{name}_verdict"].values
            counts = ", ".join(f"{int((verdicts == v).sum())} {v}" for v in VERDICTS)
            print(f"{label}, area mean of {name}: {counts} (of {len(verdicts)} leads)")
            for hours, lead in zip(args.leads, shown, strict=True):
                if lead not in out[LEAD_TIME].values:
                    raise ForecastError(f"lead {hours:g} h not in the run; pick leads it scored")
                row = out.sel({LEAD_TIME: lead})
                ratio, low, high = (float(row[f"{name}{k}"]) for k in ("", "_lower", "_upper"))
                print(f"  {hours:g} h: {ratio:.2f} ({low:.2f} to {high:.2f})")
            print(f"  mean over leads {float(np.mean(out[name].values)):.2f}")


if __name__ == "__main__":
    try:
        main()
    except ForecastError as err:
        sys.exit(f"error: {err}")
