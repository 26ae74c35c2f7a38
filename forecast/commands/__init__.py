"""The ``forecast`` sub-commands, one module each (``forecast.cli`` lists them), and the checks
they share."""

from __future__ import annotations

import argparse
from pathlib import Path

from forecast.errors import ForecastError


def existing_checkpoint(path: str | Path) -> Path:
    """``path`` as a Path, or a one-line error when no checkpoint file is there."""
    path = Path(path)
    if not path.is_file():
        raise ForecastError(f"checkpoint {path} not found; pass a .safetensors file")
    return path


def add_output_options(parser: argparse.ArgumentParser, what: str) -> None:
    """``--out`` (required, described by ``what``) and ``--overwrite`` (replace an existing
    ``--out``): the output options of the commands that write one file."""
    parser.add_argument("--out", required=True, type=Path, help=what)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
