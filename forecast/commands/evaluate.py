"""``forecast evaluate``: score ensemble files against truth, or run an evaluation protocol.

Two modes (exactly one is required):

- ``forecast evaluate --forecast ENS.nc [--forecast NAME=OTHER.nc ...] --truth SOURCE --out DIR``
  scores ensemble NetCDF files (CF files written by ``forecast predict`` / ``forecast.export``,
  or any file with the standard dims ``([init_time,] member, lead_time, *space)``) against the
  truth opened by ``forecast.data.open_dataset(SOURCE)`` and writes the scorecard (NetCDF, CSV,
  Markdown), the diagnostics and PNG plots into DIR. The model name is the file stem unless
  given as ``NAME=PATH``. Ensemble files (NetCDF or Zarr stores) are opened with dask, one
  issue time per chunk (``--issue-chunk``), and the scorecard stays lazy until the end, so
  files larger than memory are scored chunk by chunk. ``--workers N`` runs the computation on
  a local ``dask.distributed`` cluster of N worker processes (``--memory-limit`` each);
  ``--scheduler ADDRESS`` on an existing cluster (e.g. ``tcp://host:8786``).
- ``forecast evaluate --protocol P --models a,b,c --out DIR [--members N] [--seed S]
  [--checkpoint LABEL=PATH ...]`` hands over to ``forecast.pipeline.run_protocol``: the named
  models are trained (or loaded from the run's cache), each ``--checkpoint`` is an
  already-trained model (e.g. ``forecast train``'s ``model.safetensors``) scored under LABEL on
  the same issue times, members and seed, after a check that it fits the protocol's data.
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
    parser.add_argument(
        "--checkpoint",
        action="append",
        default=[],
        metavar="LABEL=PATH",
        help="--protocol mode: an already-trained model checkpoint to score under LABEL "
        "(repeatable)",
    )
    parser.add_argument("--seed", type=int, help="seed (protocol runs; rank-histogram ties)")
    parser.add_argument(
        "--jobs",
        type=int,
        help="--protocol mode: fit up to N of the run's models, and sample up to N ensembles, at "
        "once, each in its own process, and score up to N models at once in threads (default 1)",
    )
    parser.add_argument(
        "--threshold",
        action="append",
        default=[],
        metavar="[VAR=]VALUE",
        help="event threshold of the Brier score and reliability diagram (default: the median "
        "of the observations); VAR=VALUE for one variable",
    )
    parser.add_argument(
        "--reference",
        action="append",
        default=[],
        metavar="NAME",
        help="--forecast mode: a reference ensemble (repeatable); every other ensemble is "
        "tested against the best reference at each lead (significance.csv/.md). Protocol "
        "runs test against their baselines by themselves",
    )
    parser.add_argument(
        "--skipna",
        action="store_true",
        help="drop NaN members and leave out NaN points (default: NaN makes the score NaN)",
    )
    parser.add_argument(
        "--issue-chunk",
        type=int,
        default=1,
        metavar="N",
        help="--forecast mode: issue times per dask chunk of the ensembles (default 1)",
    )
    cluster = parser.add_mutually_exclusive_group()
    cluster.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="address of a running dask.distributed scheduler (e.g. tcp://10.0.0.5:8786)",
    )
    cluster.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="start a local dask.distributed cluster of N worker processes for the scoring",
    )
    parser.add_argument(
        "--memory-limit",
        default="auto",
        help="--workers: memory limit per worker (e.g. 2GB; default auto = RAM / N)",
    )
    parser.add_argument(
        "--threads-per-worker",
        type=int,
        default=1,
        metavar="T",
        help="--workers: threads per worker process (default 1)",
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
        if not (p.is_file() or p.is_dir()):
            raise ForecastError(
                f"forecast file {p} not found; pass an ensemble NetCDF file or Zarr store"
            )
        out[name] = p
    return out


def _checkpoint_specs(specs: list[str]) -> dict[str, Path]:
    """``LABEL=PATH`` strings -> {label: path}; one-line errors for bad syntax, repeated labels
    and missing files."""
    out: dict[str, Path] = {}
    for spec in specs:
        label, sep, path = spec.partition("=")
        label = label.strip()
        if not sep or not label or not path:
            raise ForecastError(
                f"--checkpoint {spec!r} is not LABEL=PATH; write e.g. "
                "--checkpoint diffusion=outputs/diffusion-p2/model.safetensors"
            )
        if label in out:
            raise ForecastError(f"checkpoint label {label!r} given twice; give each its own label")
        p = Path(path)
        if not p.is_file():
            raise ForecastError(
                f"checkpoint {p} (label {label!r}) not found; pass the .safetensors file that "
                "`forecast train` wrote"
            )
        out[label] = p
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


def open_forecast(path: Path, issue_chunk: int | None = None) -> Any:
    """Open an ensemble file: CF layout via ``forecast.export.open_ensemble``, else as is.

    Parameters
    ----------
    path : Path
        Ensemble NetCDF file (CF layout or standard dims) or Zarr store of ``to_zarr``.
    issue_chunk : int, optional
        Open with dask, this many issue times per chunk (every member, lead time and grid
        point in a chunk); default: lazily without dask.
    """
    import xarray as xr

    from forecast.dims import MEMBER
    from forecast.export.zarr_store import is_zarr_path

    if issue_chunk is not None and issue_chunk < 1:
        raise ForecastError(f"--issue-chunk must be at least 1, got {issue_chunk}")
    if is_zarr_path(path):
        from forecast.export import open_ensemble

        ds = open_ensemble(path, chunks={} if issue_chunk is None else _read_chunks(issue_chunk))
        return _issue_chunked(ds, issue_chunk)
    try:
        with xr.open_dataset(path, decode_times=False, decode_timedelta=False) as raw:
            standard = MEMBER in raw.dims
    except (OSError, ValueError) as err:
        raise ForecastError(f"{path} is not a readable NetCDF file ({err})") from None
    if standard:
        ds = xr.open_dataset(path, chunks=None if issue_chunk is None else {})
        ds = _issue_chunked(ds, issue_chunk)
    elif issue_chunk is not None:
        from forecast.export import open_ensemble

        ds = _issue_chunked(open_ensemble(path, chunks=_read_chunks(issue_chunk)), issue_chunk)
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


def _read_chunks(issue_chunk: int) -> dict[str, int]:
    """Chunks to open a CF ensemble with: ``issue_chunk`` issue times, every member and lead
    (one read per chunk rather than one per stored member chunk)."""
    from forecast.dims import INIT_TIME, LEAD_TIME, MEMBER

    return {INIT_TIME: issue_chunk, MEMBER: -1, LEAD_TIME: -1}


def _issue_chunked(ds: Any, issue_chunk: int | None) -> Any:
    """Rechunk an ensemble: ``issue_chunk`` issue times per chunk, everything else whole."""
    if issue_chunk is None:
        return ds
    from forecast.dims import INIT_TIME

    chunks = {d: -1 for d in ds.dims}
    if INIT_TIME in ds.dims:
        chunks[INIT_TIME] = issue_chunk
    return ds.chunk(chunks)


def dask_client(
    scheduler: str | None, workers: int | None, memory_limit: str, threads: int = 1
) -> Any:
    """A ``dask.distributed.Client`` for the scoring, or None for dask's default scheduler.

    ``scheduler`` connects to a running cluster; ``workers`` starts a ``LocalCluster`` of that
    many processes (``memory_limit`` each). Closing the client also closes a local cluster.
    """
    if scheduler is None and workers is None:
        return None
    if workers is not None and workers < 1:
        raise ForecastError(f"--workers must be at least 1, got {workers}")
    if threads < 1:
        raise ForecastError(f"--threads-per-worker must be at least 1, got {threads}")
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise ForecastError(
            "--scheduler/--workers need dask.distributed; pip install distributed"
        ) from None
    if scheduler is not None:
        try:
            return Client(scheduler, timeout="20s")
        except (OSError, TimeoutError, ValueError) as err:
            raise ForecastError(
                f"cannot connect to the dask scheduler at {scheduler} ({err}); check the "
                "address (tcp://HOST:PORT) and that `dask scheduler` runs there"
            ) from None
    try:
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=threads,
            memory_limit=memory_limit,
            dashboard_address=None,
        )
    except (ValueError, TypeError) as err:
        raise ForecastError(
            f"cannot start a local dask cluster ({err}); check --memory-limit (e.g. 2GB)"
        ) from None
    return Client(cluster)


def run(args: argparse.Namespace) -> int:
    """Dispatch to the protocol runner or score the given files."""
    if args.protocol is not None:
        if args.truth is not None or args.threshold or args.skipna:
            raise ForecastError(
                "--truth/--threshold/--skipna belong to --forecast mode, not --protocol"
            )
        checkpoints = _checkpoint_specs(args.checkpoint)
        if not args.models and not checkpoints:
            raise ForecastError(
                "--protocol needs --models a,b,c (comma-separated model names) and/or "
                "--checkpoint LABEL=PATH"
            )
        models = [m.strip() for m in (args.models or "").split(",") if m.strip()]
        from forecast.pipeline import run_protocol

        kwargs: dict[str, Any] = {"protocol": args.protocol, "models": models, "out": args.out}
        if checkpoints:
            kwargs["checkpoints"] = checkpoints
        if args.members is not None:
            kwargs["members"] = args.members
        if args.seed is not None:
            kwargs["seed"] = args.seed
        if args.jobs is not None:
            if args.jobs < 1:
                raise ForecastError(f"--jobs must be >= 1, got {args.jobs}")
            kwargs["jobs"] = args.jobs
        result = run_protocol(**kwargs)
        for line in result["significance"]:
            print(line)
        if result["significance"]:
            print(f"wrote significance_md: {result['files']['significance_md']}")
        return 0

    if args.truth is None:
        raise ForecastError("--forecast needs --truth SOURCE (named data set or path)")
    if args.models or args.members is not None or args.checkpoint or args.jobs is not None:
        raise ForecastError(
            "--models/--members/--checkpoint/--jobs belong to --protocol mode, not --forecast"
        )
    paths = _named_paths(args.forecast)
    unknown = [r for r in args.reference if r not in paths]
    if unknown:
        raise ForecastError(
            f"--reference {', '.join(unknown)} is not a --forecast name ({', '.join(paths)}); "
            "name the reference file with --forecast NAME=PATH"
        )
    if args.reference and len(set(args.reference)) == len(paths):
        raise ForecastError("every --forecast is a --reference; leave one model to compare")
    from forecast.data import open_dataset
    from forecast.scoring import diagnostics, scorecard, write_report

    if (
        args.workers is None
        and args.scheduler is None
        and (args.memory_limit != "auto" or args.threads_per_worker != 1)
    ):
        raise ForecastError("--memory-limit/--threads-per-worker need --workers N")
    forecasts = {name: open_forecast(p, args.issue_chunk) for name, p in paths.items()}
    variables = sorted({str(v) for ds in forecasts.values() for v in ds.data_vars})
    truth = open_dataset(args.truth, variable=variables)
    seed = 0 if args.seed is None else args.seed
    thr = _thresholds(args.threshold)
    client = dask_client(args.scheduler, args.workers, args.memory_limit, args.threads_per_worker)
    try:
        card = scorecard(forecasts, truth, skipna=args.skipna, thresholds=thr, seed=seed)
        diag = diagnostics(forecasts, truth, thresholds=thr, seed=seed)
        table = None
        if args.reference:
            from forecast.scoring.significance import significance_table

            table = significance_table(
                forecasts, truth, list(dict.fromkeys(args.reference)), skipna=args.skipna
            )
    finally:
        if client is not None:
            cluster = client.cluster if args.workers is not None else None
            client.close()
            if cluster is not None:
                cluster.close()
    written = write_report(card, diag, args.out)
    from forecast.scoring.scorecard import to_markdown

    print(to_markdown(card))
    if table is not None:
        from forecast.scoring.significance import summary_lines, write_significance

        written.update(write_significance(table, args.out))
        for line in summary_lines(table):
            print(line)
    for key, path in written.items():
        print(f"wrote {key}: {path}")
    return 0
