"""Time the three scoring steps of a protocol run on its cached ensembles.

``forecast evaluate --protocol`` ends by computing the scorecard (the default metrics), the
diagnostics (rank histograms, reliability, spread-skill by lead) and, with baselines, the
significance table (CRPS per issue time, Diebold-Mariano tests, spread-skill intervals). This
reads the 50-member ensembles a run left in ``RUN/ensembles`` and prints the wall time of each
step, so that the cost of each is visible.

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_protocol_scoring.py \\
        outputs/final/eval-p2-cf [--per-metric vae-cf-s0]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

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
    args = p.parse_args()
    run = Path(args.run)
    proto = json.loads((run / "run.json").read_text())["protocol"]
    ds = open_dataset(proto["dataset"])
    forecasts = {}
    t = time.perf_counter()
    for path in sorted((run / "ensembles").glob(f"*-m{args.members}.nc")):
        label = path.name.split(f"-{proto['name']}-")[0]
        forecasts[label] = _like_data(open_ensemble(path).load(), ds)
    print(f"{len(forecasts)} ensembles of {proto['name']} read in {time.perf_counter() - t:.1f} s")
    if args.per_metric:
        one = {args.per_metric: forecasts[args.per_metric]}
        for metric in DEFAULT_METRICS:
            t = time.perf_counter()
            scorecard(one, ds, progress=False, metrics=[metric])
            print(f"  {metric} alone on {args.per_metric}: {time.perf_counter() - t:.2f} s")
    t = time.perf_counter()
    scorecard(forecasts, ds, progress=False, metrics=DEFAULT_METRICS)
    print(f"scorecard ({', '.join(DEFAULT_METRICS)}): {time.perf_counter() - t:.1f} s")
    t = time.perf_counter()
    diagnostics(forecasts, ds)
    print(f"diagnostics: {time.perf_counter() - t:.1f} s")
    baselines = [b for b in BASELINE_KINDS if b in forecasts]
    if baselines and len(baselines) < len(forecasts):
        t = time.perf_counter()
        significance_table(forecasts, ds, baselines)
        print(f"significance: {time.perf_counter() - t:.1f} s")


if __name__ == "__main__":
    main()
