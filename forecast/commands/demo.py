"""``forecast demo``: the main job on the embedded default (what ``make demo`` runs).

It generates the embedded synthetic data sets and prints their summaries. Later stages of the
project extend it to forecasting with the shipped models, export, scoring and figures.
"""

from __future__ import annotations

import argparse
import time


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``demo`` sub-command."""
    parser = subparsers.add_parser(
        "demo", help="run the main job on the embedded synthetic data", description=__doc__
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic data (0)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Generate the embedded data sets and print their summaries."""
    from forecast.data import format_summary, open_dataset, summarize

    for name in ("synthetic-weather", "synthetic-traffic"):
        start = time.perf_counter()
        ds = open_dataset(name, seed=args.seed)
        took = time.perf_counter() - start
        print(format_summary(summarize(ds), title=f"{name} (seed {args.seed})"))
        print(f"generated in {took:.1f} s\n")
    print("Next: `forecast data list` shows every data set; `forecast data info SOURCE` any file.")
    return 0
