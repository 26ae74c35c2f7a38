"""``forecast model info CHECKPOINT...``: what a checkpoint holds, from the file alone.

Prints the model kind, the data it was trained on (grid or sensors, variables, units, time
step), the window geometry, the main settings, the training record (steps, best validation
CRPS, time, device, seed, active latent units), the first guess and its weights, the spread
factors, a pool's components and, for the shipped models, how to retrain them. No network is
built, so it is quick on any checkpoint. ``--json`` prints the same as JSON.
"""

from __future__ import annotations

import argparse
import json

from forecast.errors import ForecastError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``model`` sub-command with its ``info`` action."""
    parser = subparsers.add_parser(
        "model", help="describe trained checkpoints", description=__doc__
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    info = actions.add_parser(
        "info",
        help="what a checkpoint holds: model, data, training record, first guess",
        description=__doc__,
    )
    info.add_argument("checkpoint", nargs="+", metavar="CHECKPOINT", help=".safetensors file")
    info.add_argument("--json", action="store_true", help="print the summaries as JSON")
    info.set_defaults(func=run_info)


def run_info(args: argparse.Namespace) -> int:
    """Print the summary of every checkpoint (all are read before anything is printed)."""
    from forecast.models.info import checkpoint_info, format_info

    infos = []
    for path in args.checkpoint:
        try:
            infos.append(checkpoint_info(path))
        except ForecastError:
            raise
        except (KeyError, TypeError, ValueError) as err:
            raise ForecastError(
                f"{path}: unexpected checkpoint metadata ({type(err).__name__}: {err}); "
                "retrain it with `forecast train`"
            ) from None
    if args.json:
        print(json.dumps(infos if len(infos) > 1 else infos[0], indent=2))
    else:
        print("\n".join(format_info(info) for info in infos))
    return 0
