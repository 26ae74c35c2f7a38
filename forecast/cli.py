"""The ``forecast`` command: parses arguments and hands over to one module per sub-command.

Each module in ``forecast.commands`` exposes ``add_parser(subparsers)``, which adds its
sub-command and sets ``func(args) -> int``. Heavy imports happen inside ``func`` so that
``forecast --help`` stays fast. A :class:`~forecast.errors.ForecastError` becomes a one-line
``error: ...`` on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from collections.abc import Sequence

from forecast import __version__
from forecast.errors import ForecastError

#: Sub-command modules under forecast.commands, in the order --help lists them.
COMMANDS = (
    "data",
    "train",
    "pool",
    "online",
    "schaake",
    "model",
    "predict",
    "path",
    "evaluate",
    "app",
    "demo",
)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, with every available sub-command."""
    parser = argparse.ArgumentParser(
        prog="forecast",
        description="Probabilistic forecasting with diffusion and VAE models.",
    )
    parser.add_argument("--version", action="version", version=f"forecast {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"forecast.commands.{name}")
        except ModuleNotFoundError as err:
            if err.name == f"forecast.commands.{name}":
                continue  # sub-command not built yet
            raise
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``forecast`` console script; returns the exit status."""
    let_ctrl_c_through()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except ForecastError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`, which stopped reading
        # Point stdout at /dev/null so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def let_ctrl_c_through() -> None:
    """Unblock SIGINT in this thread (and so in the threads it starts): a process started with
    SIGINT blocked, a mask inherited from its parent, would otherwise ignore Ctrl-C and run
    to the end. SIGINT left ignored on purpose (``nohup``, a shell's background job) stays so."""
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


if __name__ == "__main__":
    sys.exit(main())
