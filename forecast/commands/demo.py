"""``forecast demo``: the main job on the embedded default (what ``make demo`` runs).

Loads the shipped diffusion and VAE checkpoints (``data/models/``), forecasts a few test issue
times of ``synthetic-weather`` and ``synthetic-traffic``, and writes the ensemble NetCDF, the
scorecard and PNG figures (map of mean/spread, plume at a point, CRPS by lead, latent path) to
``outputs/``. Missing checkpoints are an error naming the command that makes them
(``python scripts/train_shipped_models.py``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``demo`` sub-command."""
    parser = subparsers.add_parser(
        "demo", help="run the main job on the embedded synthetic data", description=__doc__
    )
    parser.add_argument("--out", default="outputs", metavar="DIR", help="output folder (outputs)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (0)")
    parser.add_argument("--issues", type=int, default=3, help="test issue times per data set (3)")
    parser.add_argument("--members", type=int, default=20, help="ensemble members (20)")
    parser.add_argument(
        "--data",
        nargs="+",
        metavar="NAME",
        help="embedded data sets (default: synthetic-weather synthetic-traffic)",
    )
    parser.add_argument(
        "--models-dir", metavar="DIR", help="folder of the shipped checkpoints (data/models)"
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (1: fastest on a shared CPU)"
    )
    parser.add_argument("--progress", action="store_true", help="show progress bars")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the main job and print where everything went."""
    from forecast.errors import ForecastError

    start = time.perf_counter()
    cpu = time.process_time()
    if args.issues < 1 or args.members < 2:
        raise ForecastError(
            f"need --issues >= 1 and --members >= 2, got {args.issues} and {args.members}"
        )
    from forecast import mainjob

    datasets = tuple(args.data) if args.data else mainjob.DATASETS
    unknown = [d for d in datasets if d not in mainjob.DATASETS]
    if unknown:
        raise ForecastError(
            f"no shipped models for {unknown}; pick from {', '.join(mainjob.DATASETS)}"
        )
    if args.threads < 1:
        raise ForecastError(f"--threads must be >= 1, got {args.threads}")
    import torch

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    print(f"forecast demo: shipped models on {', '.join(datasets)} -> {out}/", flush=True)
    mainjob.run(
        out,
        datasets=datasets,
        issues=args.issues,
        members=args.members,
        seed=args.seed,
        models_dir=args.models_dir,
        progress=args.progress,
        echo=lambda text: print(text, flush=True),
    )
    print(
        f"done in {time.perf_counter() - start:.1f} s (CPU {time.process_time() - cpu:.1f} s). "
        "Open the dashboard: `forecast app` (or `streamlit run app.py`); the shipped models "
        "are listed there."
    )
    return 0
