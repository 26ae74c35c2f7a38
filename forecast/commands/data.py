"""``forecast data``: list the named data sets, or summarize any data source.

``forecast data list`` shows every named data set, where it resolves and whether it is there.
``forecast data info SOURCE...`` opens a named data set, a file, a glob or several files (joined
in time) and prints dims, variables with units, time range and step, grid or sensor count and
the missing fraction. ``forecast data convert SOURCE... --out FILE.nc`` writes what it opens
(with the same reader options: a sensor CSV's adjacency, units, start and step) to one NetCDF
file that every other command reads as it is: ``forecast train --data FILE.nc``.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from forecast.commands import add_output_options
from forecast.errors import ForecastError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``data`` sub-command with its ``list``, ``info`` and ``convert`` actions."""
    parser = subparsers.add_parser(
        "data",
        help="list named data sets, summarize a data source, convert it to NetCDF",
        description=__doc__,
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True

    listing = actions.add_parser("list", help="named data sets and where they resolve")
    listing.set_defaults(func=run_list)

    info = actions.add_parser(
        "info",
        help="summarize a data set: dims, variables, units, time, space, missing values",
        description="Open SOURCE (a named data set, a path, a glob, or several files joined in "
        "time) as the standard data set and print a summary.",
    )
    add_reader_options(info)
    info.add_argument("--json", action="store_true", help="print the summary as JSON")
    info.set_defaults(func=run_info)

    convert = actions.add_parser(
        "convert",
        help="write a data source, read with these options, to one NetCDF file",
        description="Open SOURCE as `forecast data info` does (a sensor CSV with its --adjacency, "
        "--units, --start/--step, ...) and write the standard data set to one NetCDF file, "
        "which every command then reads without options: forecast train --data FILE.nc.",
    )
    add_reader_options(convert)
    add_output_options(convert, "NetCDF file to write (.nc)")
    convert.set_defaults(func=run_convert)


def add_reader_options(parser: argparse.ArgumentParser) -> None:
    """SOURCE and the reader options of ``forecast.data.open_dataset``."""
    parser.add_argument("source", nargs="+", metavar="SOURCE", help="named data set or path(s)")
    parser.add_argument(
        "--variable",
        "-v",
        action="append",
        help="variable to keep (repeatable); for sensor files the name of the quantity",
    )
    parser.add_argument("--format", help="file format, overriding the suffix")
    parser.add_argument("--units", help="units of the variable (sensor files: e.g. mph)")
    parser.add_argument(
        "--select",
        action="append",
        default=[],
        metavar="DIM=VALUE",
        help="select one value of an extra dim, e.g. --select isobaricInhPa=850",
    )
    parser.add_argument("--time-column", help="sensor CSV: name of the timestamp column")
    parser.add_argument("--start", help="sensor files without times: time of the first row")
    parser.add_argument("--step", help="sensor files without times: time step, e.g. 5min")
    parser.add_argument("--adjacency", help="sensor files: adjacency matrix (.csv or .npy)")
    parser.add_argument("--key", help="pandas HDF5: key of the frame")
    parser.add_argument(
        "--zeros-missing", action="store_true", help="treat exact zeros as missing values"
    )
    parser.add_argument("--seed", type=int, help="synthetic data sets: seed (default 0)")


def _parse_select(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ForecastError(f"--select {item!r} is not DIM=VALUE; write e.g. --select step=0")
        value: Any = text
        for cast in (int, float):
            try:
                value = cast(text)
                break
            except ValueError:
                continue
        out[key] = value
    return out


def run_list(args: argparse.Namespace) -> int:
    """Print the named data sets: name, status, description and location."""
    from forecast.data.catalog import DATA_DIR_ENV, DATASETS, data_dir

    rows = []
    for name in DATASETS:
        spec = DATASETS.get(name)
        status = "generated" if spec.generated else "present" if spec.present() else "ABSENT"
        rows.append((name, status, spec.description, spec.location()))
    width = max(len(r[0]) for r in rows)
    for name, status, description, location in rows:
        print(f"{name:<{width}}  {status:<9}  {description}")
        print(f"{'':<{width}}  {'':<9}  -> {location}")
    print(f"data folder: {data_dir()} (set {DATA_DIR_ENV} to change it)")
    return 0


def open_source(args: argparse.Namespace) -> Any:
    """The data set that SOURCE and the reader options of :func:`add_reader_options` open."""
    from forecast.data import open_dataset

    source: Any = args.source[0] if len(args.source) == 1 else list(args.source)
    variable: Any = None
    if args.variable:
        variable = args.variable[0] if len(args.variable) == 1 else list(args.variable)
    options = {
        "format": args.format,
        "units": args.units,
        "select": _parse_select(args.select) or None,
        "time_column": args.time_column,
        "start": args.start,
        "step": args.step,
        "adjacency": args.adjacency,
        "key": args.key,
        "zeros_as_missing": args.zeros_missing or None,
        "seed": args.seed,
    }
    options = {k: v for k, v in options.items() if v is not None}
    return open_dataset(source, variable, **options)


def run_info(args: argparse.Namespace) -> int:
    """Open the source and print its summary (text or JSON)."""
    from forecast.data import format_summary, summarize

    summary = summarize(open_source(args))
    title = " ".join(args.source)
    if args.json:
        print(json.dumps({"source": title, **summary}, indent=2))
    else:
        print(format_summary(summary, title))
    return 0


def run_convert(args: argparse.Namespace) -> int:
    """Open the source and write it to ``--out`` (a temporary name, renamed when complete)."""
    from pathlib import Path

    from forecast.checkpoint import write_netcdf
    from forecast.data import format_summary, summarize
    from forecast.export.netcdf import check_target

    out = Path(args.out)
    if out.suffix != ".nc":
        raise ForecastError(f"--out {out} is not a .nc file; name the NetCDF file e.g. data.nc")
    check_target(out, args.overwrite)  # before reading: fail fast
    ds = open_source(args)
    write_netcdf(ds, out)
    print(format_summary(summarize(ds), " ".join(args.source)))
    print(f"wrote {out}: read it with --data {out}")
    return 0
