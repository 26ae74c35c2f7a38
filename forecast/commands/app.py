"""``forecast app``: start the Streamlit dashboard (``streamlit run app.py``) on a local port.

The dashboard script is ``app.py`` at the project root, beside the ``forecast`` package. Paths
typed into it are confined to the data folders (``data/``, ``../shared/data`` or
``$FORECAST_DATA_DIR``, and ``$FORECAST_USER_DATA_DIR``); extra checkpoints are read from
``$FORECAST_CHECKPOINT_DIR``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from forecast.errors import ForecastError


def app_path() -> Path:
    """The dashboard script: ``app.py`` beside the ``forecast`` package."""
    return Path(__file__).resolve().parents[2] / "app.py"


def streamlit_command(
    port: int, address: str = "127.0.0.1", headless: bool = False, app: Path | None = None
) -> list[str]:
    """The ``python -m streamlit run app.py ...`` command line for the given port and address.

    Raises
    ------
    ForecastError
        Port outside 1..65535, or ``app.py`` absent (a non-editable install).
    """
    if not 1 <= int(port) <= 65535:
        raise ForecastError(f"port {port} outside 1..65535; pass e.g. --port 8501")
    app = app_path() if app is None else Path(app)
    if not app.is_file():
        raise ForecastError(
            f"dashboard script {app} not found; run from a clone of the project "
            "(pip install -e .) or use `streamlit run app.py` in it"
        )
    return [
        sys.executable, "-m", "streamlit", "run", str(app),
        "--server.port", str(int(port)),
        "--server.address", address,
        "--server.headless", "true" if headless else "false",
        "--browser.gatherUsageStats", "false",
    ]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``app`` sub-command."""
    parser = subparsers.add_parser("app", help="start the dashboard in the browser",
                                   description=__doc__)
    parser.add_argument("--port", type=int, default=8501, help="port (default 8501)")
    parser.add_argument("--address", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1, this machine only)")
    parser.add_argument("--headless", action="store_true",
                        help="do not open a browser window")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Replace this process by Streamlit (so Ctrl-C and SIGTERM reach the server directly)."""
    cmd = streamlit_command(args.port, args.address, args.headless)
    print(f"dashboard: http://{args.address}:{args.port}  (Ctrl-C to stop)", flush=True)
    os.chdir(app_path().parent)
    os.execv(cmd[0], cmd)
    return 0  # not reached: execv does not return
