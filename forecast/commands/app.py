"""``forecast app``: start the Streamlit dashboard (``streamlit run app.py``) on a local port.

The dashboard script is ``app.py`` at the project root, beside the ``forecast`` package. Paths
typed into it are confined to the data folders (``data/``, ``../shared/data`` or
``$FORECAST_DATA_DIR``, and ``$FORECAST_USER_DATA_DIR``); extra checkpoints are read from
``$FORECAST_CHECKPOINT_DIR``.

While the server starts, a background thread does the first visitor's slow work (imports of
xarray / dask / torch, the embedded default data set from its on-disk cache, loading and
sampling the default checkpoint once), so the first page comes as fast as later ones when the
visitor arrives after it (it prints ``dashboard: warm-up done in ...``). ``--no-warm-up`` skips it.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

from forecast.dashboard.paths import THREADS_ENV
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
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(app),
        "--server.port",
        str(int(port)),
        "--server.address",
        address,
        "--server.headless",
        "true" if headless else "false",
        "--browser.gatherUsageStats",
        "false",
        # a server, not an editor: watching the project's files costs CPU (and inotify events
        # overflow while trainings write under runs/), and nothing reloads on save anyway
        "--server.fileWatcherType",
        "none",
    ]


def warm_up() -> str:
    """Do what the first page needs once, so that its modules and caches are warm.

    Opens the default data set (the first of the sidebar's list: filling the on-disk cache of
    :mod:`forecast.dashboard.datacache` on the very first run), then loads the default
    checkpoint (the fitting one quickest to sample, as the app picks it) and samples two
    members at the first test issue time. Nothing is kept: the app's own Streamlit caches are
    filled by its first run, which then finds every module imported and the data on disk.

    Returns
    -------
    str
        What was warmed, e.g. ``"synthetic-weather, vae-synthetic-weather.safetensors"``.
    """
    from forecast.dashboard import figures  # noqa: F401  (plotly)
    from forecast.dashboard import paths as dp
    from forecast.dashboard import queries as q

    name = q.dataset_choices()[0]
    ds = q.open_named(name)
    q.set_torch_threads(q.torch_threads())
    _, _, path = q.scan_checkpoints(q.list_checkpoints(dp.checkpoint_folders()), ds)
    if path is None:
        import forecast.models  # noqa: F401  (torch, for the baselines' fit)

        return name
    from forecast.dims import window_context

    model = q.load_for_data(path, ds)
    protocol = q.protocol_for(name, ds, window_context(model), model.horizon)
    q.sample_at(model, ds, q.test_issue_times(ds, protocol)[0], 2, 0)
    return f"{name}, {path.name}"


def _warm_up_in_background() -> None:
    start = time.perf_counter()
    try:
        what = warm_up()
    except Exception as err:  # an optimization: it must never stop the server
        print(f"dashboard: warm-up skipped ({type(err).__name__}: {err})", flush=True)
        return
    print(f"dashboard: warm-up done in {time.perf_counter() - start:.1f} s ({what})", flush=True)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``app`` sub-command."""
    parser = subparsers.add_parser(
        "app", help="start the dashboard in the browser", description=__doc__
    )
    parser.add_argument("--port", type=int, default=8501, help="port (default 8501)")
    parser.add_argument(
        "--address",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1, this machine only)",
    )
    parser.add_argument("--headless", action="store_true", help="do not open a browser window")
    parser.add_argument(
        "--no-warm-up",
        dest="warm_up",
        action="store_false",
        help="do not prepare the first page in the background at start-up",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads for sampling (default: $FORECAST_APP_THREADS "
        "or 1, the fastest on a shared CPU)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Serve the dashboard in this process (so Ctrl-C and SIGTERM reach the server directly).

    With the warm-up (default), Streamlit's command line runs here beside the warm-up thread;
    without it, this process is replaced by ``python -m streamlit run app.py ...``.
    """
    cmd = streamlit_command(args.port, args.address, args.headless)
    threads = getattr(args, "threads", None)
    if threads is not None:
        if threads < 1:
            raise ForecastError(f"--threads must be >= 1, got {threads}")
        os.environ[THREADS_ENV] = str(threads)  # read by app.py (in this process or exec'd)
    print(f"dashboard: http://{args.address}:{args.port}  (Ctrl-C to stop)", flush=True)
    os.chdir(app_path().parent)
    if not getattr(args, "warm_up", True):
        os.execv(cmd[0], cmd)
    from streamlit.web import cli as streamlit_cli

    threading.Thread(target=_warm_up_in_background, name="dashboard-warm-up", daemon=True).start()
    sys.argv = ["streamlit", *cmd[3:]]  # as `python -m streamlit run app.py ...` sees it
    streamlit_cli.main(prog_name="streamlit")  # serves until stopped, then exits
    return 0
