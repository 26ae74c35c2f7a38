"""``forecast online-spread``: wrap a trained checkpoint so that its spread follows its own
recent verified errors.

``forecast online-spread --checkpoint MODEL.safetensors --out ONLINE.safetensors`` writes an
:class:`~forecast.models.online.OnlineSpread` of the model (a copy of it, so the file stands
alone). At each issue time it re-forecasts the last ``--history`` steps with ``--members``
reference members, compares them with what was observed by the issue time, and rescales the
spread per lead by ``sqrt((n r + w) / (n + w))`` (``r``: squared error over spread squared,
``n``: verified windows, ``w``: ``--prior-weight``); with ``--persistence-blend`` it also moves
the mean towards the last observation by a weight per lead fitted on the same forecasts; with
``--diurnal-width HOURS`` the spread factor follows the time of day (windows issued near the
issue time's hour of day weigh more). It reads ``--history`` more steps of context than the
model. Use it like any checkpoint: ``forecast predict``, ``forecast evaluate --checkpoint``,
the dashboard.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from forecast.commands import add_output_options, existing_checkpoint


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``online-spread`` sub-command."""
    parser = subparsers.add_parser(
        "online-spread",
        help="rescale a model's spread by its recent verified errors",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--checkpoint", required=True, help="a trained model checkpoint")
    parser.add_argument(
        "--history",
        type=int,
        help="past issue times (steps) re-forecast at each issue time (default: 3 horizons)",
    )
    parser.add_argument(
        "--members", type=int, default=32, help="members per reference ensemble (default 32)"
    )
    parser.add_argument(
        "--prior-weight",
        type=float,
        help="weight of the factor 1, in verified windows (default: one horizon)",
    )
    parser.add_argument(
        "--persistence-blend",
        action="store_true",
        help="also move the mean towards persistence by a weight per lead fitted on the same "
        "verified forecasts",
    )
    parser.add_argument(
        "--diurnal-width",
        type=float,
        metavar="HOURS",
        help="let the spread factor follow the time of day: verified windows issued this many "
        "hours of day away from the issue time weigh half (e.g. 3; default: off)",
    )
    add_output_options(parser, "the checkpoint to write")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``forecast online-spread``; returns the exit status."""
    from forecast.export.netcdf import check_target
    from forecast.models import load_model
    from forecast.models.online import OnlineSpread

    path, out = existing_checkpoint(args.checkpoint), Path(args.out)
    check_target(out, args.overwrite)  # before loading the model: fail fast
    options = {
        "history": args.history,
        "members": args.members,
        "prior_weight": args.prior_weight,
        "persistence_blend": args.persistence_blend,
        "diurnal_width": args.diurnal_width,
    }
    model = OnlineSpread.from_model(load_model(path), **options)
    model.save(out)
    print(
        f"wrote {out}: {model!r}; it reads {model.context} steps of context "
        f"({model.base_context} for the model, {model.history} of history)"
    )
    return 0
