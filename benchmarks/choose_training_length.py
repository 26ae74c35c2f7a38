"""Choose a model's training length by time-blocked cross-validation over the training days.

Early stopping picks a step on validation windows; when the same days then rank models, a
model whose step they picked looks better than it is (docs/diffusion.md "Four more seeds, and a
warning about the validation days"). This picks the step without them: the training split's
windows are cut into ``--folds`` contiguous blocks; for each block and seed a model of the
config is trained with every step the block's windows touch held out (NaN), on the config's
full learning-rate schedule (``max_steps``), and scored on the block's windows every
``--every`` steps (the training loop's validation CRPS, normalized units; ``--until N`` ends the
runs at step N of the schedule, for a finer look at the early steps). The step with the
lowest CRPS averaged over blocks and seeds is printed as ``keep = N``: put it in the config's
``[train]`` table and train on the whole training split; no validation or test day chose it.

A fold model sees a third fewer windows than the final one (with 3 folds), so the step it
overfits at comes early, if anything: the choice leans short.

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/choose_training_length.py --data era5-uk-t2m \\
        --config data/configs/diffusion-era5-uk-t2m-gp-points-lowlr.toml --folds 3 \\
        --seeds 0,1,2,3 --every 15 --jobs 2 --out runs/cvlen

Each fold run's validation history is written to ``OUT/fold<k>-seed<s>.json`` (reused when its
settings match, so an interrupted run continues); the table goes to stdout and ``OUT/table.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def _fit_fold(task: dict[str, Any]) -> dict[str, Any]:
    """Train one fold model (worker process) and return its validation history."""
    import torch

    from forecast.commands.train import build_model, protocol_for
    from forecast.data import open_dataset
    from forecast.dims import TIME
    from forecast.models.folds import fold_blocks, hold_out

    torch.set_num_threads(task["threads"])
    ds = open_dataset(task["data"])
    proto = protocol_for(task["data"], ds, None, None)
    train = proto.split(ds, "train")
    block = fold_blocks(train.sizes[TIME], proto.context, proto.horizon, task["folds"], "--folds")[
        task["fold"]
    ]
    model = build_model(
        task["model"], proto.context, proto.horizon, task["model_kw"], task["train_kw"]
    )
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        model.fit(
            hold_out(train, block), train.isel({TIME: slice(block.lo, block.hi)}), out_dir=tmp
        )
    record = model.training
    return {
        **{k: task[k] for k in ("fold", "seed", "key")},
        "windows": len(block.issues),
        "seconds": round(time.perf_counter() - start, 1),
        "history": [{"step": h["step"], "crps": h["crps"]} for h in record["history"]],
    }


def _train_kw(
    cfg_train: dict[str, Any], seed: int, every: int, issues: int, until: int | None = None
) -> dict[str, Any]:
    """The config's ``[train]`` table for a fold run: its schedule, validated every ``every``
    steps on ``issues`` windows, no early stopping, ending at step ``until`` of the schedule
    (default: its end)."""
    if cfg_train.get("max_steps") is None:
        raise SystemExit(
            "the config's [train] table needs max_steps (the schedule to cross-validate)"
        )
    if until is not None and not 1 <= until <= cfg_train["max_steps"]:
        raise SystemExit(f"--until must be in 1..max_steps ({cfg_train['max_steps']}), got {until}")
    return {
        **cfg_train,
        "seed": seed,
        "epochs": 100_000,  # max_steps sets the schedule, whatever the fold's size
        "eval_every_steps": every,
        "val_issue_times": issues,
        "patience": 0,
        "keep": "last" if until is None else until,  # an integer keep ends the run there
        "max_minutes": None,
        "progress": False,
    }


def summarize(runs: list[dict[str, Any]]) -> tuple[int, str]:
    """The chosen step (lowest mean CRPS over runs at the steps every run scored) and a markdown
    table: mean CRPS per step, its standard error over runs, how many runs have their minimum
    there."""
    steps = sorted(set.intersection(*({h["step"] for h in r["history"]} for r in runs)))
    if not steps:
        raise SystemExit("the fold runs share no validation step; use the same --every")
    table = np.array(
        [[{h["step"]: h["crps"] for h in r["history"]}[s] for s in steps] for r in runs]
    )
    mean = table.mean(axis=0)
    se = table.std(axis=0, ddof=1) / np.sqrt(len(runs)) if len(runs) > 1 else np.zeros_like(mean)
    best_of_run = [steps[int(k)] for k in table.argmin(axis=1)]
    chosen = steps[int(mean.argmin())]
    lines = [
        "| step | mean CRPS (normalized) | standard error | runs with their minimum here |",
        "|---:|---:|---:|---:|",
    ]
    for k, s in enumerate(steps):
        mark = " **(chosen)**" if s == chosen else ""
        lines.append(f"| {s}{mark} | {mean[k]:.4f} | {se[k]:.4f} | {best_of_run.count(s)} |")
    return chosen, "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="data set name or path (as forecast train)")
    p.add_argument("--config", required=True, help="a one-model TOML config with train.max_steps")
    p.add_argument("--model", default="diffusion", help="registered model name (default diffusion)")
    p.add_argument("--folds", type=int, default=3)
    p.add_argument("--seeds", default="0", help="comma-separated seeds, e.g. 0,1,2,3")
    p.add_argument("--every", type=int, default=15, help="validate every this many steps")
    p.add_argument("--issues", type=int, default=12, help="validation windows per block")
    p.add_argument(
        "--until", type=int, help="end the fold runs at this step of the schedule (a finer look)"
    )
    p.add_argument("--jobs", type=int, default=1, help="fold runs at a time (one thread each)")
    p.add_argument("--out", required=True, help="folder for the histories and the table")
    args = p.parse_args()

    from forecast.checkpoint import write_text
    from forecast.errors import ForecastError
    from forecast.training.config import load_toml
    from forecast.workers import check_jobs, in_workers

    try:
        check_jobs(args.jobs)
        cfg = load_toml(args.config)
        seeds = [int(s) for s in args.seeds.split(",")]
    except (ForecastError, ValueError) as err:
        sys.exit(f"error: {err}")
    if args.folds < 2 or args.every < 1 or args.issues < 1:
        sys.exit("error: --folds must be >= 2 and --every, --issues >= 1")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tasks, runs = [], []
    for fold in range(args.folds):
        for seed in seeds:
            train_kw = _train_kw(dict(cfg["train"]), seed, args.every, args.issues, args.until)
            key = json.dumps(
                [args.data, args.model, args.folds, cfg["model"], train_kw], sort_keys=True
            )
            path = out / f"fold{fold}-seed{seed}.json"
            cached = json.loads(path.read_text()) if path.is_file() else {}
            if cached.get("key") == key:
                runs.append(cached)
                continue
            tasks.append(
                dict(
                    data=args.data, model=args.model, model_kw=cfg["model"], train_kw=train_kw,
                    folds=args.folds, fold=fold, seed=seed, key=key, threads=1,
                )
            )  # fmt: skip
    try:
        for run in in_workers(_fit_fold, tasks, args.jobs, "fold runs", True):
            write_text(out / f"fold{run['fold']}-seed{run['seed']}.json", json.dumps(run, indent=1))
            runs.append(run)
            print(f"fold {run['fold']} seed {run['seed']}: {run['seconds']} s", flush=True)
    except ForecastError as err:
        sys.exit(f"error: {err}")
    chosen, table = summarize(runs)
    text = (
        f"{args.config} on {args.data}: {args.folds} folds x seeds {args.seeds}, validated every "
        f"{args.every} steps on {args.issues} windows of each held-out block"
        + (f", until step {args.until} of the schedule" if args.until else "")
        + f"\n\n{table}\n\nkeep = {chosen}\n"
    )
    write_text(out / "table.md", text)
    print(text)


if __name__ == "__main__":
    main()
