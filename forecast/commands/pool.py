"""``forecast pool``: combine trained checkpoints into one multi-model ensemble checkpoint.

``forecast pool --checkpoint A.safetensors --checkpoint B.safetensors --out POOL.safetensors``
writes a :class:`~forecast.models.pooled.PooledEnsemble` holding both models (weights and
metadata copied in, so the pool file stands alone). Members are drawn from the models in the
shares given by ``--weights`` (equal by default). The models must forecast the same data with
the same context and horizon. A checkpoint that is a pool itself (e.g. a deep ensemble from
``forecast train --model pooled``) joins with its models, each keeping its share of that pool
(labels ``LABEL/model``). The pool is used like any checkpoint: ``forecast predict``,
``forecast evaluate --checkpoint``, the dashboard.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from forecast.commands import add_output_options, existing_checkpoint
from forecast.errors import ForecastError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``pool`` sub-command."""
    parser = subparsers.add_parser(
        "pool",
        help="combine trained checkpoints into one multi-model ensemble",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--checkpoint",
        action="append",
        required=True,
        metavar="[LABEL=]PATH",
        help="a trained model checkpoint (repeatable, at least two); LABEL defaults to the "
        "checkpoint's folder name (for model.safetensors) or file stem",
    )
    parser.add_argument(
        "--weights",
        help="comma-separated relative member shares, one per checkpoint (default: equal)",
    )
    add_output_options(parser, "the pooled checkpoint to write")
    parser.set_defaults(func=run)


def parse_checkpoints(values: list[str]) -> tuple[list[str] | None, list[Path]]:
    """``[LABEL=]PATH`` arguments as (labels or None when none is given, paths)."""
    labels, paths = [], []
    for value in values:
        label, sep, path = value.rpartition("=")
        if sep and (not label or not path):
            raise ForecastError(f"--checkpoint {value!r} is not [LABEL=]PATH")
        labels.append(label if sep else None)
        paths.append(Path(path if sep else value))
    if len(paths) < 2:
        raise ForecastError("give at least two --checkpoint files to pool")
    for path in paths:
        existing_checkpoint(path)
    if all(label is None for label in labels):
        return None, paths
    if any(label is None for label in labels):
        raise ForecastError("label all --checkpoint values (LABEL=PATH) or none of them")
    return labels, paths


def parse_weights(text: str | None, n: int) -> list[float] | None:
    """``--weights 2,1,1`` as floats (one per checkpoint), or None for equal shares."""
    if text is None:
        return None
    try:
        weights = [float(w) for w in text.split(",")]
    except ValueError:
        raise ForecastError(f"--weights {text!r} is not comma-separated numbers") from None
    if len(weights) != n:
        raise ForecastError(f"--weights has {len(weights)} values for {n} checkpoints")
    return weights


def run(args: argparse.Namespace) -> int:
    """Run ``forecast pool``; returns the exit status."""
    from forecast.export.netcdf import check_target
    from forecast.models.pooled import PooledEnsemble

    labels, paths = parse_checkpoints(args.checkpoint)
    weights = parse_weights(args.weights, len(paths))
    out = Path(args.out)
    check_target(out, args.overwrite)  # before loading the models: fail fast
    pool = PooledEnsemble.from_checkpoints(paths, weights, labels)
    pool.save(out)
    print(f"pooled {len(pool.models)} models ({pool.composition}) into {out}")
    return 0
