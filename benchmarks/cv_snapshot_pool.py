"""Snapshot pool against single training steps, by time-blocked cross-validation over the
training days.

``benchmarks/choose_training_length.py`` scores one model per training step. A snapshot pool
(each seed's weights at several steps, ``keep = [15, 30, 45, 60]``) is a different forecaster:
this scores it on the same held-out blocks. For each of ``--folds`` contiguous blocks of the
training windows, one pool of the config is trained with every step the block touches held out
(NaN): its component keeps ``--steps`` for each of ``--seeds`` (one run per seed,
:mod:`forecast.models.snapshots`). Then ``--members`` members are drawn for ``--issues``
evenly spaced windows of the block, for the pool of every step's models alone (a deep ensemble
of the seeds at that step) and for the whole snapshot pool, and scored with the CRPS against
the data (physical units, mean over windows, leads and points). No validation or test day is
used.

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/cv_snapshot_pool.py --data era5-uk-t2m \\
        --config data/configs/diffusion-era5-uk-t2m-gp-points-lowlr.toml --steps 15,30,45,60 \\
        --seeds 0,1,2,3 --folds 3 --issues 12 --members 50 --jobs 2 --out runs/cvsnap

Each fold's CRPS are written to ``OUT/fold<k>.json`` (reused when its settings match); the table
goes to stdout and ``OUT/table.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

SNAPSHOTS = "snapshots"


def fold_scores(
    data: str, model: str, cfg: dict[str, Any], steps: list[int], seeds: list[int], *,
    folds: int, fold: int, issues: int, members: int, jobs: int,
) -> dict[str, float]:  # fmt: skip
    """Mean CRPS on ``issues`` windows of block ``fold`` of the pool of each step's models
    (``"15"``, ...) and of the snapshot pool (``"snapshots"``), trained without the block."""
    from forecast.commands.train import protocol_for
    from forecast.data import open_dataset
    from forecast.dims import TIME
    from forecast.models import PooledEnsemble, forecast_many
    from forecast.models.folds import fold_blocks, hold_out
    from forecast.scoring import crps_ensemble
    from forecast.scoring.align import obs_for

    ds = open_dataset(data)
    proto = protocol_for(data, ds, None, None)
    train = proto.split(ds, "train")
    block = fold_blocks(train.sizes[TIME], proto.context, proto.horizon, folds, "--folds")[fold]
    train_kw = {
        **cfg["train"], "keep": steps, "patience": 0, "max_minutes": None, "progress": False,
    }  # fmt: skip
    component = {"kind": model, "config": {**cfg["model"], "train": train_kw}}
    pool = PooledEnsemble(
        context=proto.context, horizon=proto.horizon, components=[component], seeds=seeds
    )
    valid = train.isel({TIME: slice(block.lo, block.hi)})
    pool.fit(hold_out(train, block), valid, jobs=jobs)
    picked = block.issues[np.linspace(0, len(block.issues) - 1, issues).round().astype(int)]
    times = train[TIME].values[np.unique(picked)]
    candidates = {
        str(step): PooledEnsemble.from_models(pool.models[k * len(seeds) : (k + 1) * len(seeds)])
        for k, step in enumerate(steps)
    }
    candidates[SNAPSHOTS] = pool
    scores = {}
    for name, candidate in candidates.items():
        ens = forecast_many(candidate, train, times, members, seed=0)
        crps = crps_ensemble(obs_for(ens, train), ens)
        scores[name] = float(np.mean([crps[v].mean() for v in crps.data_vars]))
    return scores


def summarize(folds: list[dict[str, float]]) -> str:
    """A markdown table: mean CRPS over folds of each candidate, and its mean difference from
    the snapshot pool (per cent, with the standard error over folds)."""
    names = list(folds[0])
    table = np.array([[f[n] for n in names] for f in folds])
    snap = table[:, names.index(SNAPSHOTS)]
    lines = [
        "| pool | mean CRPS | against the snapshot pool (per cent, standard error) |",
        "|---|---:|---:|",
    ]
    for k, name in enumerate(names):
        rel = 100 * (table[:, k] / snap - 1)
        se = rel.std(ddof=1) / np.sqrt(len(rel)) if len(rel) > 1 else float("nan")
        label = "snapshot pool" if name == SNAPSHOTS else f"step {name}"
        lines.append(f"| {label} | {table[:, k].mean():.4f} | {rel.mean():+.2f} ({se:.2f}) |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="data set name or path (as forecast train)")
    p.add_argument("--config", required=True, help="a one-model TOML config with train.max_steps")
    p.add_argument("--model", default="diffusion", help="registered model name (default diffusion)")
    p.add_argument("--steps", default="15,30,45,60", help="the snapshot steps, comma-separated")
    p.add_argument("--seeds", default="0", help="comma-separated seeds, e.g. 0,1,2,3")
    p.add_argument("--folds", type=int, default=3)
    p.add_argument("--issues", type=int, default=12, help="scored windows per block")
    p.add_argument("--members", type=int, default=50)
    p.add_argument("--jobs", type=int, default=1, help="seed runs at a time (one thread each)")
    p.add_argument("--out", required=True, help="folder for the fold scores and the table")
    args = p.parse_args(argv)

    from forecast.checkpoint import write_text
    from forecast.errors import ForecastError
    from forecast.training.config import load_toml
    from forecast.workers import check_jobs

    try:
        check_jobs(args.jobs)
        cfg = load_toml(args.config)
        steps = [int(s) for s in args.steps.split(",")]
        seeds = [int(s) for s in args.seeds.split(",")]
    except (ForecastError, ValueError) as err:
        sys.exit(f"error: {err}")
    if args.folds < 2 or args.issues < 1 or args.members < 1:
        sys.exit("error: --folds must be >= 2 and --issues, --members >= 1")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    folds = []
    for fold in range(args.folds):
        settings = [args.data, args.model, cfg, steps, seeds, args.folds, args.issues, args.members]
        key = json.dumps(settings, sort_keys=True)
        path = out / f"fold{fold}.json"
        cached = json.loads(path.read_text()) if path.is_file() else {}
        if cached.get("key") != key:
            start = time.perf_counter()
            try:
                scores = fold_scores(
                    args.data, args.model, cfg, steps, seeds, folds=args.folds, fold=fold,
                    issues=args.issues, members=args.members, jobs=args.jobs,
                )  # fmt: skip
            except ForecastError as err:
                sys.exit(f"error: {err}")
            cached = {"key": key, "scores": scores}
            write_text(path, json.dumps(cached, indent=1))
            print(f"fold {fold}: {time.perf_counter() - start:.0f} s", flush=True)
        folds.append(cached["scores"])
    text = (
        f"{args.config} on {args.data}: {args.folds} folds, seeds {args.seeds}, steps "
        f"{args.steps}; {args.members} members on {args.issues} windows of each held-out block"
        f"\n\n{summarize(folds)}\n"
    )
    write_text(out / "table.md", text)
    print(text)


if __name__ == "__main__":
    main()
