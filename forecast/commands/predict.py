"""``forecast predict``: sample ensembles from a checkpoint into a CF-1.8 NetCDF file or Zarr.

    forecast predict --checkpoint CKPT --data SOURCE --init-time T [--init-time T2 ...]
                     --members 50 [--seed S] [--sampler NAME --nfe N]
                     [--summary [--thresholds [VAR=]VALUE ...]] [--institution TEXT]
                     [--overwrite] --out FILE.nc

or ``--init-range A B STEP`` (e.g. ``2019-03-20T00 2019-03-25T00 6h``) instead of
``--init-time``. Each issue time is the last observed step of its context window; its ensemble
is sampled with the seed derived from ``(seed, issue time)`` (as ``forecast_many`` does) and
written to the file before the next one is sampled, so memory holds one issue time. The file is
written to a temporary name and renamed at the end: an interrupted run leaves nothing at
``--out``. An ``--out`` ending in ``.zarr`` writes a Zarr store instead (same CF layout,
consolidated metadata, one chunk per member x issue time, written member by member; no
``--summary``). ``--sampler``/``--nfe`` apply to models that have a sampler (diffusion); other
models refuse them.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from forecast.commands import add_output_options
from forecast.errors import ForecastError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``predict`` sub-command."""
    parser = subparsers.add_parser(
        "predict",
        help="sample ensemble forecasts from a checkpoint into a CF NetCDF file",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--checkpoint", required=True, type=Path, help="model checkpoint")
    parser.add_argument("--data", required=True, help="named data set or path of the data")
    when = parser.add_mutually_exclusive_group(required=True)
    when.add_argument(
        "--init-time", action="append", metavar="T", help="issue time (ISO 8601; repeatable)"
    )
    when.add_argument(
        "--init-range",
        nargs=3,
        metavar=("A", "B", "STEP"),
        help="issue times from A to B inclusive every STEP (e.g. 6h, 30min)",
    )
    parser.add_argument("--members", type=int, default=50, help="ensemble size (default 50)")
    parser.add_argument("--seed", type=int, default=0, help="run seed (default 0)")
    parser.add_argument("--sampler", help="sampler of a diffusion model (e.g. ddim, heun)")
    parser.add_argument("--nfe", type=int, help="number of function evaluations of the sampler")
    parser.add_argument(
        "--summary",
        action="store_true",
        help="also write ensemble mean, std, quantiles (and exceedances)",
    )
    parser.add_argument(
        "--quantiles",
        nargs="+",
        type=float,
        metavar="Q",
        help="quantile levels of --summary (default 0.05 0.25 0.5 0.75 0.95)",
    )
    parser.add_argument(
        "--thresholds",
        nargs="+",
        metavar="[VAR=]VALUE",
        help="exceedance thresholds of --summary in the variable's units; "
        "VAR=VALUE for one variable",
    )
    parser.add_argument(
        "--reference-cache",
        type=Path,
        metavar="DIR",
        help="folder that keeps an online-spread model's reference forecasts between runs, so "
        "that the next run re-forecasts only the hours it has not seen",
    )
    parser.add_argument("--institution", help="global attribute institution")
    parser.add_argument("--title", help="global attribute title")
    add_output_options(parser, "output NetCDF file, or Zarr store (suffix .zarr)")
    parser.set_defaults(func=run)


def parse_thresholds(specs: list[str] | None) -> list[float] | dict[str, list[float]] | None:
    """``["1", "2"]`` -> ``[1.0, 2.0]`` (every variable); ``["t2m=280"]`` -> ``{"t2m": [280]}``."""
    if not specs:
        return None
    plain: list[float] = []
    named: dict[str, list[float]] = {}
    for spec in specs:
        name, sep, value = spec.rpartition("=")
        try:
            number = float(value)
        except ValueError:
            raise ForecastError(
                f"threshold {spec!r} is not a number; write VALUE or VAR=VALUE"
            ) from None
        if sep:
            named.setdefault(name, []).append(number)
        else:
            plain.append(number)
    if plain and named:
        raise ForecastError("mix of plain and VAR=VALUE thresholds; use one form")
    return named or plain


def issue_times(args: argparse.Namespace) -> Any:
    """The requested issue times as a sorted ``DatetimeIndex`` without repeats."""
    import pandas as pd

    try:
        if args.init_range:
            a, b, step = args.init_range
            times = pd.date_range(pd.Timestamp(a), pd.Timestamp(b), freq=pd.Timedelta(step))
        else:
            times = pd.DatetimeIndex([pd.Timestamp(t) for t in args.init_time])
    except (ValueError, TypeError) as err:
        raise ForecastError(
            f"bad issue time ({err}); write times as ISO 8601 (2019-03-20T06:00) and steps as "
            "6h or 30min"
        ) from None
    if times.tz is not None:
        times = times.tz_convert(None)
    if len(times) == 0:
        raise ForecastError("--init-range gives no issue time; check that A <= B")
    if times.has_duplicates:
        raise ForecastError("an issue time is given twice; give each issue time once")
    return times.sort_values()


def check_issue_times(ds: Any, times: Any, context: int) -> None:
    """Refuse issue times off the data's time axis or without ``context`` steps up to them."""
    import pandas as pd

    from forecast.data import time_step
    from forecast.data.describe import format_step
    from forecast.dims import TIME

    axis = pd.DatetimeIndex(ds[TIME].values)
    if len(axis) < context:
        raise ForecastError(
            f"the data have {len(axis)} time steps, fewer than the model's context of {context}; "
            "pass longer data"
        )
    first, last = axis[context - 1], axis[-1]
    valid = (
        f"valid issue times: {first.isoformat()} .. {last.isoformat()} every "
        f"{format_step(time_step(ds))}"
    )
    pos = axis.get_indexer(times)
    for t, i in zip(times, pos, strict=True):
        if i < 0:
            raise ForecastError(
                f"issue time {t.isoformat()} is not a time step of the data; {valid}"
            )
        if i < context - 1:
            raise ForecastError(
                f"issue time {t.isoformat()} has only {i + 1} steps up to it, the model needs a "
                f"context of {context}; {valid}"
            )


def _history(args: argparse.Namespace) -> str:
    import shlex

    parts = ["forecast", "predict", "--checkpoint", str(args.checkpoint), "--data", args.data]
    if args.init_range:
        parts += ["--init-range", *args.init_range]
    else:
        for t in args.init_time:
            parts += ["--init-time", t]
    parts += ["--members", str(args.members), "--seed", str(args.seed)]
    for flag in ("sampler", "nfe"):
        if getattr(args, flag) is not None:
            parts += [f"--{flag}", str(getattr(args, flag))]
    if args.summary:
        parts.append("--summary")
    if args.thresholds:
        parts += ["--thresholds", *args.thresholds]
    parts += ["--out", str(args.out)]
    return shlex.join(parts)


def run(args: argparse.Namespace) -> int:
    """Run ``forecast predict``; returns the exit status."""
    from forecast.export.netcdf import check_target
    from forecast.export.zarr_store import check_zarr_target, is_zarr_path

    if args.members < 1:
        raise ForecastError(f"--members must be at least 1, got {args.members}")
    if args.nfe is not None and args.nfe < 1:
        raise ForecastError(f"--nfe must be at least 1, got {args.nfe}")
    if args.thresholds and not args.summary:
        raise ForecastError("--thresholds needs --summary (exceedances are summary variables)")
    out = Path(args.out)
    zarr_out = is_zarr_path(out)
    if zarr_out:
        if args.summary:
            raise ForecastError(
                "--summary is written to NetCDF only; drop --summary or use --out FILE.nc"
            )
        check_zarr_target(out, args.overwrite)
    else:
        check_target(out, args.overwrite)
    thresholds = parse_thresholds(args.thresholds)
    times = issue_times(args)

    from forecast.checkpoint import file_sha256, load_checkpoint
    from forecast.data import check_compatible, context_of, open_dataset
    from forecast.export import QUANTILES, to_netcdf, to_zarr
    from forecast.models import issue_seed, load_model
    from forecast.models.wrapped import reference_holder

    _, meta = load_checkpoint(args.checkpoint)
    if "data" not in meta:
        raise ForecastError(
            f"checkpoint {args.checkpoint} has no data description; retrain it with forecast train"
        )
    model = load_model(args.checkpoint)
    kind = meta.get("kind", type(model).__name__)
    if args.sampler is not None or args.nfe is not None:
        if not hasattr(model, "with_sampler"):
            raise ForecastError(
                f"a {kind} model has no sampler; drop --sampler/--nfe (they apply to diffusion "
                "models)"
            )
        model = model.with_sampler(args.sampler, args.nfe)
    if args.reference_cache is not None:
        holder = reference_holder(model)
        if holder is None:
            raise ForecastError(
                f"--reference-cache keeps the reference forecasts of online-spread models, this "
                f"is a {kind} model; drop it"
            )
        holder.use_reference_cache(args.reference_cache)
    ds = open_dataset(args.data)
    check_compatible(meta["data"], ds, what=f"checkpoint {args.checkpoint.name}")
    check_issue_times(ds, times, int(model.context))

    from forecast.models.pooled import with_member_sources

    def ensembles():  # a pool's members carry the label of the model that drew them
        for t in times:
            context = context_of(ds, t, model.context)
            ens = model.sample(context, args.members, seed=issue_seed(args.seed, t))
            yield with_member_sources(model, ens)

    sampler = getattr(model, "sampler", None)
    nfe = getattr(model, "nfe", None)
    composition = getattr(model, "composition", None)  # a pool's models, a wrapper's base
    common = {
        "title": args.title,
        "institution": args.institution,
        "model": f"{kind}: {composition}" if composition else kind,
        "checkpoint_sha256": file_sha256(args.checkpoint),
        "sampler": sampler if isinstance(sampler, str) else None,
        "nfe": int(nfe) if isinstance(nfe, int) else None,
        "seed": args.seed,
        "history": _history(args),
        "overwrite": args.overwrite,
        "progress": True,
        "total": len(times),
    }
    if zarr_out:
        to_zarr(ensembles(), out, **common)
        size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 1e6
    else:
        to_netcdf(
            ensembles(),
            out,
            summary=args.summary,
            quantiles=args.quantiles if args.quantiles is not None else QUANTILES,
            thresholds=thresholds,
            **common,
        )
        size = out.stat().st_size / 1e6
    print(f"wrote {out}: {len(times)} issue times x {args.members} members ({kind}, {size:.1f} MB)")
    return 0
