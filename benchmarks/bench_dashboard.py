"""Dashboard timings: first render and widget changes of app.py, measured with AppTest.

Prints, in seconds:

- cold first render: a fresh Python process runs app.py once (imports, embedded data set,
  baseline fit, sampling, figures) - what the first visitor of a just-started server waits for
  on the server side;
- warm first render: a new session on a process whose caches are filled (every later visitor);
- widget changes on a warm session: lead-time slider, threshold, statistic, issue time (a new
  ensemble is sampled), members (a new ensemble), and switching to the Point tab.

Usage: ``.venv/bin/python benchmarks/bench_dashboard.py [--repeat N] [--data NAME]``
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
APP = str(REPO / "app.py")

COLD = """
import time, sys
t0 = time.perf_counter()
from streamlit.testing.v1 import AppTest
at = AppTest.from_file({app!r}, default_timeout=600)
if {data!r} != "synthetic-weather":
    at.run()
    at.selectbox(key="dataset").set_value({data!r})
at.run()
assert not at.exception, at.exception
print(time.perf_counter() - t0)
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
import forecast.models, forecast.data
lap("import forecast.models + forecast.data (torch, gpytorch)")
from forecast.dashboard import queries as q
ds = q.open_named({data!r})
lap("open (generate) {data}")
p = q.protocol_for({data!r}, ds)
m = q.fit_on_the_fly(q.DEFAULT_MODEL, ds, p)
lap("fit " + q.DEFAULT_MODEL)
ens = q.sample_at(m, ds, q.test_issue_times(ds, p)[0], 20, 0)
lap("sample 20 members")
"""


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--data", default="synthetic-weather")
    args = parser.parse_args()

    cold = []
    for _ in range(args.repeat):
        out = subprocess.run([sys.executable, "-c", COLD.format(app=APP, data=args.data)],
                             capture_output=True, text=True, cwd=REPO, check=True)
        cold.append(float(out.stdout.strip().splitlines()[-1]))
    print(f"cold first render ({args.data}, fresh process): "
          f"median {statistics.median(cold):.2f} s  (runs: {', '.join(f'{c:.2f}' for c in cold)})")

    print("cold start breakdown (fresh process):")
    out = subprocess.run([sys.executable, "-c", BREAKDOWN.format(data=args.data)],
                         capture_output=True, text=True, cwd=REPO, check=True)
    print(out.stdout.rstrip())

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
    print(f"warm first render (new session, caches filled): median "
          f"{statistics.median(warm):.2f} s")

    at = fresh()
    leads = at.select_slider(key="lead").options
    issues = at.select_slider(key="issue").options
    lo, hi = at.slider(key="threshold").min, at.slider(key="threshold").max
    changes = {
        "lead-time slider": lambda i: at.select_slider(key="lead").set_value(
            leads[(i + 1) % len(leads)]).run(),
        "threshold slider (exceedance map)": lambda i: at.slider(key="threshold").set_value(
            lo + (hi - lo) * (0.3 + 0.1 * (i % 4))).run(),
        "statistic radio": lambda i: at.radio(key="statistic").set_value(
            ["spread", "quantile", "member", "mean"][i % 4]).run(),
        "issue time (new ensemble)": lambda i: at.select_slider(key="issue").set_value(
            issues[(i + 1) * 2 % len(issues)]).run(),
        "members 20 -> 30 -> 20 (new, then cached)": lambda i: at.number_input(
            key="members").set_value(30 if i % 2 == 0 else 20).run(),
    }
    at.radio(key="statistic").set_value("exceedance").run()
    for name, change in changes.items():
        times = [timed(lambda c=change, i=i: c(i)) for i in range(max(args.repeat, 4))]
        assert not at.exception, at.exception
        print(f"{name}: median {statistics.median(times):.3f} s, max {max(times):.3f} s")
    at.session_state["tab"] = "Point"
    t = timed(at.run)
    print(f"switch to the Point tab: {t:.3f} s")


if __name__ == "__main__":
    main()
