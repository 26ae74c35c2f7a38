"""``forecast evaluate``: score ensemble files against truth, or run an evaluation protocol.

Two modes (exactly one is required):

- ``forecast evaluate --forecast ENS.nc [--forecast NAME=OTHER.nc ...] --truth SOURCE --out DIR``
  scores ensemble NetCDF files (CF files written by ``forecast predict`` / ``forecast.export``,
  or any file with the standard dims ``([init_time,] member, lead_time, *space)``) against the
  truth opened by ``forecast.data.open_dataset(SOURCE)`` and writes the scorecard (NetCDF, CSV,
  Markdown), the diagnostics and PNG plots into DIR. The model name is the file stem unless
  given as ``NAME=PATH``.
- ``forecast evaluate --protocol P --models a,b,c --out DIR [--members N] [--seed S]`` hands
  over to ``forecast.pipeline.run_protocol``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from forecast.errors import ForecastError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` sub-command."""
    parser = subparsers.add_parser(
        "evaluate",
        help="score ensemble files against truth, or run an evaluation protocol",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument(
        "--forecast",
        action="append",
        metavar="[NAME=]PATH",
        help="ensemble NetCDF file to score (repeatable); NAME defaults to the file stem",
    )
    mode.add_argument("--protocol", help="evaluation protocol to run (e.g. P1, P2)")
    parser.add_argument("--truth", help="--forecast mode: named data set or path of the truth")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--models", help="--protocol mode: comma-separated model names")
    parser.add_argument("--members", type=int, help="--protocol mode: ensemble size")
    parser.add_argument("--seed", type=int, help="seed (protocol runs; rank-histogram ties)")
    parser.add_argument(
        "--threshold",
        action="append",
        default=[],
        metavar="[VAR=]VALUE",
        help="event threshold of the Brier score and reliability diagram (default: the median "
        "of the observations); VAR=VALUE for one variable",
    )
    parser.add_argument(
        "--skipna",
        action="store_true",
        help="drop NaN members and leave out NaN points (default: NaN makes the score NaN)",
    )
    parser.set_defaults(func=run)


def _named_paths(specs: list[str]) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        p = Path(path) if sep else Path(spec)
        name = name if sep else p.stem
        if not name:
            raise ForecastError(f"empty model name in --forecast {spec!r}; write NAME=PATH")
        if name in out:
            raise ForecastError(
                f"model name {name!r} given twice; name the files with --forecast NAME=PATH"
            )
        if not p.is_file():
            raise ForecastError(f"forecast file {p} not found; pass an ensemble NetCDF file")
        out[name] = p
    return out


def _thresholds(specs: list[str]) -> float | dict[str, float] | None:
    if not specs:
        return None
    per_var: dict[str, float] = {}
    for spec in specs:
        var, sep, value = spec.rpartition("=")
        try:
            number = float(value)
        except ValueError:
            raise ForecastError(f"--threshold {spec!r} is not [VAR=]NUMBER") from None
        if not sep:
            if len(specs) > 1:
                raise ForecastError("give one plain --threshold VALUE, or VAR=VALUE per variable")
            return number
        per_var[var] = number
    return per_var


def open_forecast(path: Path) -> Any:
    """Open an ensemble file: CF layout via ``forecast.export.open_ensemble``, else as is."""
    import xarray as xr

    from forecast.dims import MEMBER

    try:
        with xr.open_dataset(path, decode_times=False, decode_timedelta=False) as raw:
            standard = MEMBER in raw.dims
    except (OSError, ValueError) as err:
        raise ForecastError(f"{path} is not a readable NetCDF file ({err})") from None
    if standard:
        ds = xr.open_dataset(path)
    else:
        try:
            from forecast.export import open_ensemble
        except ImportError:
            raise ForecastError(
                f"{path} has no '{MEMBER}' dimension and forecast.export (CF reader) is not "
                f"available; pass a file with the standard dims"
            ) from None
        ds = open_ensemble(path)
    return ds


def run(args: argparse.Namespace) -> int:
    """Dispatch to the protocol runner or score the given files."""
    if args.protocol is not None:
        if args.truth is not None or args.threshold or args.skipna:
            raise ForecastError(
                "--truth/--threshold/--skipna belong to --forecast mode, not --protocol"
            )
        if not args.models:
            raise ForecastError("--protocol needs --models a,b,c (comma-separated model names)")
        models = [m.strip() for m in args.models.split(",") if m.strip()]
        from forecast.pipeline import run_protocol

        kwargs: dict[str, Any] = {"protocol": args.protocol, "models": models, "out": args.out}
        if args.members is not None:
            kwargs["members"] = args.members
        if args.seed is not None:
            kwargs["seed"] = args.seed
        run_protocol(**kwargs)
        return 0

    if args.truth is None:
        raise ForecastError("--forecast needs --truth SOURCE (named data set or path)")
    if args.models or args.members is not None:
        raise ForecastError("--models/--members belong to --protocol mode, not --forecast")
    from forecast.data import open_dataset
    from forecast.scoring import diagnostics, scorecard, write_report

    paths = _named_paths(args.forecast)
    forecasts = {name: open_forecast(p) for name, p in paths.items()}
    variables = sorted({str(v) for ds in forecasts.values() for v in ds.data_vars})
    truth = open_dataset(args.truth, variable=variables)
    seed = 0 if args.seed is None else args.seed
    thr = _thresholds(args.threshold)
    card = scorecard(forecasts, truth, skipna=args.skipna, thresholds=thr, seed=seed)
    diag = diagnostics(forecasts, truth, thresholds=thr, seed=seed)
    written = write_report(card, diag, args.out)
    from forecast.scoring.scorecard import to_markdown

    print(to_markdown(card))
    for key, path in written.items():
        print(f"wrote {key}: {path}")
    return 0
