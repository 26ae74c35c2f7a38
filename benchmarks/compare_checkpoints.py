"""Do two checkpoints hold the same models? Arrays, training records and members compared.

For two ways of training one configuration (e.g. a snapshot pool as separate runs and as one
run per seed). Prints, per model (a pool's models in order; a single model is one): whether
every array is identical, whether the training records agree (timings aside), and
whether ``--members`` members sampled for one issue time with one seed are identical.

    .venv/bin/python benchmarks/compare_checkpoints.py A.safetensors B.safetensors \
        --data era5-uk-t2m --time-index 700 --members 50

Exits 1 when anything differs.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import numpy as np


def _models(model: Any) -> list[tuple[str, Any]]:
    if hasattr(model, "models") and hasattr(model, "labels"):
        return list(zip(model.labels, model.models, strict=True))
    return [(getattr(model, "kind", "model"), model)]


def _record(model: Any) -> dict[str, Any]:
    from forecast.training.loop import untimed

    return untimed(getattr(model, "training", None) or {})


def same_arrays(a: Any, b: Any) -> bool:
    """Whether two fitted models' checkpoint arrays are identical (names and values)."""
    xa, _ = a.checkpoint_content()
    xb, _ = b.checkpoint_content()
    return sorted(xa) == sorted(xb) and all(np.array_equal(xa[k], xb[k]) for k in xa)


def compare(a: Any, b: Any) -> list[tuple[str, bool, bool]]:
    """``(label, arrays identical, training records equal)`` per model of two loaded models."""
    ma, mb = _models(a), _models(b)
    if [label for label, _ in ma] != [label for label, _ in mb]:
        raise SystemExit(
            f"the checkpoints hold different models: {[x for x, _ in ma]} and {[x for x, _ in mb]}"
        )
    return [
        (label, same_arrays(x, y), _record(x) == _record(y))
        for (label, x), (_, y) in zip(ma, mb, strict=True)
    ]


def main(argv: list[str] | None = None) -> int:
    from forecast.data import open_dataset
    from forecast.data.windows import context_of
    from forecast.dims import TIME
    from forecast.errors import ForecastError
    from forecast.models import load_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a")
    parser.add_argument("b")
    parser.add_argument("--data", help="data set name or path for the members (default: none)")
    parser.add_argument("--time-index", type=int, default=-1, help="issue time (index)")
    parser.add_argument("--members", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        a, b = load_model(args.a), load_model(args.b)
        rows = compare(a, b)
        for label, arrays, record in rows:
            print(f"{label}: arrays identical {arrays}, training records equal {record}")
        same = all(arrays and record for _, arrays, record in rows)
        if args.data:
            ds = open_dataset(args.data)
            issue = ds[TIME].values[args.time_index]
            ctx = context_of(ds, issue, a.context)
            x = a.sample(ctx, args.members, seed=args.seed)
            y = b.sample(ctx, args.members, seed=args.seed)
            members = all(np.array_equal(x[v].values, y[v].values) for v in x.data_vars)
            print(f"{args.members} members at {issue}: identical {members}")
            same = same and members
    except ForecastError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print("same models" if same else "the models differ")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
