"""Dashboard timings: first render and widget changes of app.py (AppTest), and in a browser.

Prints, in seconds:

- cold first render: a fresh Python process runs app.py once with AppTest (imports, embedded
  data set, default model, sampling, figures) - what the first visitor of a just-started server
  waits for on the server side. Wall time from the start of the process's code (after the
  interpreter starts) to the end of the run, and its CPU time (``time.process_time``, all
  threads; and user + sys of the whole process, start and exit included), which depend less on
  other jobs on the machine. The first run finds an empty data cache (as the first run after
  a code change does), the others a filled one; the data cache is a temporary folder of this
  benchmark, never the user's;
- the cold start broken down by step, in one fresh process;
- warm first render: a new session on a process whose caches are filled (every later visitor);
- widget changes on a warm session: lead-time slider, threshold, statistic, issue time (a new
  ensemble is sampled), members (a new ensemble), and switching to the Point tab;
- with ``--browser``: time to the first map drawn by headless chromium (playwright) for a
  fresh server: ``streamlit run app.py`` (no warm-up) and ``forecast app`` (warm-up at start),
  from the server's start and from the page load, the page loaded as soon as the server
  answers; ``forecast app`` with the page loaded once its warm-up is done; and, for scale, a
  minimal Streamlit page with one tiny plotly chart (the browser's and Streamlit's own floor).

Usage: ``.venv/bin/python benchmarks/bench_dashboard.py [--repeat N] [--data NAME] [--browser]``
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
APP = str(REPO / "app.py")
CHROMIUM = os.environ.get("FORECAST_CHROMIUM", "/usr/bin/chromium")

COLD = """
import time, sys
t0, c0 = time.perf_counter(), time.process_time()
from streamlit.testing.v1 import AppTest
at = AppTest.from_file({app!r}, default_timeout=600)
if {data!r} != "synthetic-weather":
    at.run()
    at.selectbox(key="dataset").set_value({data!r})
at.run()
assert not at.exception, at.exception
print(at.selectbox(key="model").value)
print(time.perf_counter() - t0, time.process_time() - c0)
"""

BREAKDOWN = """
import time
t = time.perf_counter()
def lap(name):
    global t
    now = time.perf_counter()
    print(f"  {{name}}: {{now - t:.2f}} s")
    t = now
import streamlit
lap("import streamlit")
import xarray as xr
xr.Variable("x", [0.0])  # xarray imports dask here when it is installed
lap("import pandas, xarray (and dask)")
from forecast.dashboard import figures as fg, paths as dp, queries as q
lap("import forecast.dashboard (plotly)")
ds = q.open_named({data!r})
lap("open {data} (data cache filled)")
import forecast.models
q.set_torch_threads(q.torch_threads())  # as app.py does: 1 thread unless told otherwise
lap("import forecast.models (torch)")
ckpts = [(p, q.checkpoint_summary(p)) for p in q.list_checkpoints(dp.checkpoint_folders())]
fitting = [(p, i["kind"]) for p, i in ckpts if q.checkpoint_fits(i["data"], ds)]
lap(f"list {{len(ckpts)}} checkpoints")
if fitting:
    path = fitting[q.quickest([k for _, k in fitting])][0]
    m = q.load_for_data(path, ds)
    p = q.protocol_for({data!r}, ds, m.context, m.horizon)
    lap("load " + path.name)
else:
    p = q.protocol_for({data!r}, ds)
    m = q.fit_on_the_fly(q.DEFAULT_MODEL, ds, p)
    lap("fit " + q.DEFAULT_MODEL)
ens = q.sample_at(m, ds, q.test_issue_times(ds, p)[0], 20, 0)
lap("sample 20 members")
var = q.variables(ens)[0]
field = q.ensemble_statistic(ens, var, "mean")
if "node" in ens.dims:
    x, y, how = q.node_positions(ds)
    fig = fg.network_figure(field, x, y, q.network_edges(ds), zrange=q.color_range(field, "mean"))
else:
    fig = fg.map_figure(field, zrange=q.color_range(field, "mean"))
fig.to_json()
lap("map figure (all leads) as JSON")
"""


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def child_cpu() -> float:
    """User + system CPU seconds of the finished child processes so far."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def load_average() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def cold_runs(repeat: int, data: str, env: dict[str, str]) -> None:
    runs = []
    for k in range(repeat + 1):
        cpu = child_cpu()
        out = subprocess.run(
            [sys.executable, "-c", COLD.format(app=APP, data=data)],
            capture_output=True,
            text=True,
            cwd=REPO,
            check=True,
            env=env,
        )
        model, times = out.stdout.strip().splitlines()[-2:]
        wall, render_cpu = (float(x) for x in times.split())
        runs.append((wall, render_cpu, child_cpu() - cpu))
        if k == 0:
            print(f"default model: {model}")
            print(f"cold first render, empty data cache: {wall:.2f} s (CPU {render_cpu:.2f} s)")
    walls, cpus, procs = ([r[i] for r in runs[1:]] for i in range(3))
    print(
        f"cold first render ({data}, fresh process, data cache filled): median "
        f"{statistics.median(walls):.2f} s  (runs: {', '.join(f'{w:.2f}' for w in walls)}); "
        f"its CPU time median {statistics.median(cpus):.2f} s "
        f"(runs: {', '.join(f'{c:.2f}' for c in cpus)}); CPU user+sys of the whole process, "
        f"interpreter start and exit included: median {statistics.median(procs):.2f} s"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def first_map(browser, url: str) -> float:
    """Seconds from page load to the first plotly map drawn (and the script run finished)."""
    page = browser.new_page()
    start = time.perf_counter()
    page.goto(url, timeout=300_000)
    page.wait_for_function(
        "document.querySelectorAll('[data-testid=\"stPlotlyChart\"] .main-svg').length >= 1",
        timeout=300_000,
    )
    took = time.perf_counter() - start
    if page.locator('[data-testid="stException"]').count():
        raise RuntimeError("the page shows an exception")
    page.close()
    return took


#: The floor of any Streamlit page with a plotly chart on this machine: a title, a caption
#: and a 2 x 2 heatmap, served like app.py.
MINIMAL = """
import plotly.graph_objects as go
import streamlit as st

st.title("minimal page")
st.caption("one tiny plotly chart")
st.plotly_chart(go.Figure(go.Heatmap(z=[[1, 2], [3, 4]])))
"""


def browser_runs(repeat: int, env: dict[str, str]) -> None:
    from playwright.sync_api import sync_playwright

    minimal = Path(tempfile.mkdtemp(prefix="bench-dashboard-")) / "minimal.py"
    minimal.write_text(MINIMAL)

    def serve(kind: str, port: int, log):
        if kind.startswith("streamlit run"):
            script = str(minimal) if "minimal" in kind else APP
            cmd = [
                sys.executable,
                "-m",
                "streamlit",
                "run",
                script,
                "--server.headless",
                "true",
                "--server.port",
                str(port),
                "--server.address",
                "127.0.0.1",
                "--browser.gatherUsageStats",
                "false",
                "--server.fileWatcherType",
                "none",
            ]
        else:
            cmd = [sys.executable, "-m", "forecast.cli", "app", "--headless", "--port", str(port)]
        return subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, text=True
        )

    def wait_health(url: str, proc) -> None:
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError("the server stopped") from None
                time.sleep(0.1)

    results: dict[str, list[tuple[float, float, float]]] = {}
    with sync_playwright() as p, tempfile.TemporaryDirectory() as tmp:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        kinds = (
            "streamlit run app.py",
            "forecast app",
            "forecast app, after its warm-up",
            "streamlit run of a minimal page with one tiny plotly chart (floor)",
        )
        for kind in kinds:
            for k in range(repeat):
                port = free_port()
                url = f"http://127.0.0.1:{port}"
                log_path = Path(tmp) / f"server-{len(results)}-{k}.log"
                with open(log_path, "w") as log:
                    t0 = time.perf_counter()
                    proc = serve(kind, port, log)
                    try:
                        wait_health(url, proc)
                        up = time.perf_counter() - t0
                        if "after its warm-up" in kind:
                            while "warm-up done" not in log_path.read_text():
                                if time.perf_counter() - t0 > 300:
                                    raise RuntimeError(log_path.read_text())
                                time.sleep(0.1)
                        t1 = time.perf_counter()
                        page = first_map(browser, url)
                        results.setdefault(kind, []).append((up, t1 - t0 + page, page))
                    finally:
                        proc.terminate()
                        proc.wait(30)
        browser.close()
    minimal.unlink()
    minimal.parent.rmdir()
    for kind, rows in results.items():
        up, total, page = zip(*rows, strict=True)
        print(
            f"browser, {kind}: server answers {statistics.median(up):.2f} s after start; "
            f"first map {statistics.median(total):.2f} s after server start, "
            f"{statistics.median(page):.2f} s after page load (medians of {len(rows)}; "
            f"page load runs: {', '.join(f'{x:.2f}' for x in page)})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--data", default="synthetic-weather")
    parser.add_argument(
        "--browser",
        action="store_true",
        help="also time the first map in headless chromium (playwright)",
    )
    args = parser.parse_args()

    print(f"load average before: {load_average()}")
    with tempfile.TemporaryDirectory(prefix="bench-dashboard-cache-") as cache:
        env = {
            **os.environ,
            "FORECAST_CACHE_DIR": cache,
            "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
        }
        env.pop("FORECAST_CHECKPOINT_DIR", None)
        cold_runs(args.repeat, args.data, env)

        print("cold start breakdown (fresh process, data cache filled):")
        out = subprocess.run(
            [sys.executable, "-c", BREAKDOWN.format(data=args.data)],
            capture_output=True,
            text=True,
            cwd=REPO,
            check=True,
            env=env,
        )
        print(out.stdout.rstrip())
        if args.browser:
            browser_runs(args.repeat, env)
        os.environ["FORECAST_CACHE_DIR"] = cache
        warm_session_runs(args)
    print(f"load average after: {load_average()}")


def warm_session_runs(args: argparse.Namespace) -> None:
    from streamlit.testing.v1 import AppTest

    def fresh():
        at = AppTest.from_file(APP, default_timeout=600)
        if args.data != "synthetic-weather":
            at.run()
            at.selectbox(key="dataset").set_value(args.data)
        at.run()
        assert not at.exception
        return at

    fresh()  # fill the caches
    warm = []
    for _ in range(args.repeat):
        warm.append(timed(fresh))
    print(f"warm first render (new session, caches filled): median {statistics.median(warm):.2f} s")

    at = fresh()
    leads = at.select_slider(key="lead").options
    issues = at.select_slider(key="issue").options
    lo, hi = at.slider(key="threshold").min, at.slider(key="threshold").max
    changes = {
        "lead-time slider": lambda i: (
            at.select_slider(key="lead").set_value(leads[(i + 1) % len(leads)]).run()
        ),
        "threshold slider (exceedance map)": lambda i: (
            at.slider(key="threshold").set_value(lo + (hi - lo) * (0.3 + 0.1 * (i % 4))).run()
        ),
        "statistic radio": lambda i: (
            at.radio(key="statistic")
            .set_value(["spread", "quantile", "member", "mean"][i % 4])
            .run()
        ),
        "issue time (new ensemble)": lambda i: (
            at.select_slider(key="issue").set_value(issues[(i + 1) * 2 % len(issues)]).run()
        ),
        "members 20 -> 30 -> 20 (new, then cached)": lambda i: (
            at.number_input(key="members").set_value(30 if i % 2 == 0 else 20).run()
        ),
    }
    at.radio(key="statistic").set_value("exceedance").run()
    for name, change in changes.items():
        times = [timed(lambda c=change, i=i: c(i)) for i in range(max(args.repeat, 4))]
        assert not at.exception, at.exception
        print(f"{name}: median {statistics.median(times):.3f} s, max {max(times):.3f} s")
    at.session_state["stamps_open"] = True
    t = timed(at.run)
    print(f"open the postage stamps: {t:.3f} s")
    at.session_state["tab"] = "Point"
    t = timed(at.run)
    print(f"switch to the Point tab: {t:.3f} s")


if __name__ == "__main__":
    main()
