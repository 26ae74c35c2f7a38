"""Time the three scoring steps of a protocol run on its cached ensembles.

``forecast evaluate --protocol`` ends by computing the scorecard (the default metrics), the
diagnostics (rank histograms, reliability, spread-skill by lead) and, with baselines, the
significance table (CRPS per issue time, Diebold-Mariano tests, spread-skill intervals). This
reads the 50-member ensembles a run left in ``RUN/ensembles`` and prints the wall time of each
step, so that the cost of each is visible. With ``--jobs N`` the scorecard and the diagnostics
score N models at once in threads (as ``forecast evaluate --jobs N`` does), and are then run one
model at a time too, to print both times and whether the results are identical.

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_protocol_scoring.py \\
        outputs/final/eval-p2-cf [--per-metric vae-cf-s0] [--jobs 2]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd

from forecast.data import open_dataset
from forecast.export import open_ensemble
from forecast.models import BASELINE_KINDS
from forecast.pipeline import DEFAULT_METRICS, _like_data
from forecast.scoring.scorecard import diagnostics, scorecard
from forecast.scoring.significance import significance_table


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", help="a protocol run folder (with run.json and ensembles/)")
    p.add_argument("--members", type=int, default=50)
    p.add_argument("--per-metric", metavar="LABEL", help="also time each metric on this ensemble")
    p.add_argument("--jobs", type=int, default=1, help="models scored at once (threads)")
    args = p.parse_args()
    run = Path(args.run)
    proto = json.loads((run / "run.json").read_text())["protocol"]
    ds = open_dataset(proto["dataset"])
    forecasts = {}
    t = time.perf_counter()
    for path in sorted((run / "ensembles").glob(f"*-{proto['name']}-*-m{args.members}.nc")):
        label = path.name.split(f"-{proto['name']}-")[0]
        forecasts[label] = _like_data(open_ensemble(path).load(), ds)
    print(f"{len(forecasts)} ensembles of {proto['name']} read in {time.perf_counter() - t:.1f} s")
    if args.per_metric:
        one = {args.per_metric: forecasts[args.per_metric]}
        for metric in DEFAULT_METRICS:
            t = time.perf_counter()
            scorecard(one, ds, progress=False, metrics=[metric])
            print(f"  {metric} alone on {args.per_metric}: {time.perf_counter() - t:.2f} s")
    baselines = [b for b in BASELINE_KINDS if b in forecasts]
    steps = {
        f"scorecard ({', '.join(DEFAULT_METRICS)})": lambda j: scorecard(
            forecasts, ds, progress=False, metrics=DEFAULT_METRICS, jobs=j
        ),
        "diagnostics": lambda j: diagnostics(forecasts, ds, jobs=j),
    }
    if baselines and len(baselines) < len(forecasts):
        steps["significance"] = lambda j: significance_table(forecasts, ds, baselines)
    for name, step in steps.items():
        t = time.perf_counter()
        got = step(args.jobs)
        line = f"{name}: {time.perf_counter() - t:.1f} s"
        if args.jobs > 1 and name != "significance":  # one model at a time in any case
            t = time.perf_counter()
            alone = step(1)
            line += (
                f" with --jobs {args.jobs}, {time.perf_counter() - t:.1f} s one model at a time;"
                f" identical: {identical(got, alone)}"
            )
        print(line)


def identical(a: object, b: object) -> bool:
    """Whether two results of a step (Dataset, dict of Datasets or DataFrame) are identical."""
    if isinstance(a, pd.DataFrame):
        return a.equals(b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(a[k].identical(b[k]) for k in a)
    return a.identical(b)


if __name__ == "__main__":
    main()
