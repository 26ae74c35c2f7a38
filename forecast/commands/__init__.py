"""The ``forecast`` sub-commands, one module each (``forecast.cli`` lists them), and the checks
they share."""

from __future__ import annotations

from pathlib import Path

from forecast.errors import ForecastError


def existing_checkpoint(path: str | Path) -> Path:
    """``path`` as a Path, or a one-line error when no checkpoint file is there."""
    path = Path(path)
    if not path.is_file():
        raise ForecastError(f"checkpoint {path} not found; pass a .safetensors file")
    return path
