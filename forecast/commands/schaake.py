"""``forecast schaake``: wrap a trained checkpoint so that its members have the space-time
structure of observed changes (Schaake shuffle).

``forecast schaake --checkpoint MODEL.safetensors --data NAME|PATH --out SHUFFLED.safetensors``
writes a :class:`~forecast.models.schaake.SchaakeShuffle` of the model (a copy of it, so the
file stands alone) with the training split of the data (a named data set's protocol split, or
the first 70 % of a file's data) as its template record. At each issue time it reorders every
point's member values to the ranks of observed changes from the issue time of the record's
windows issued nearest the issue time's time of day: each point's values (and so every
per-point score) stay as they were; members become fields whose differences between points and
leads vary as the observed ones do. Use it like any checkpoint: ``forecast predict``,
``forecast evaluate --checkpoint``, the dashboard.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from forecast.commands import add_output_options, existing_checkpoint


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``schaake`` sub-command."""
    parser = subparsers.add_parser(
        "schaake",
        help="give a model's members the space-time structure of observed changes",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--checkpoint", required=True, help="a trained model checkpoint")
    parser.add_argument(
        "--data",
        required=True,
        help="named data set or NetCDF/GRIB path whose training split is the template record",
    )
    add_output_options(parser, "the checkpoint to write")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``forecast schaake``; returns the exit status."""
    from forecast.commands.train import protocol_for
    from forecast.data import open_dataset
    from forecast.export.netcdf import check_target
    from forecast.models import load_model
    from forecast.models.schaake import SchaakeShuffle

    path, out = existing_checkpoint(args.checkpoint), Path(args.out)
    check_target(out, args.overwrite)  # before loading anything: fail fast
    ds = open_dataset(args.data)
    record = protocol_for(args.data, ds, None, None).split(ds, "train")
    model = SchaakeShuffle.from_model(load_model(path), record)
    model.save(out)
    print(f"wrote {out}: {model!r} from the training split of {args.data}")
    return 0
