"""Time and peak memory of `forecast data info` on the ERA5 file (744 x 33 x 49 GRIB).

Run from the repository root:

    .venv/bin/python benchmarks/bench_data_info.py [--repeat 3] [--path FILE]

Measures, each in a fresh process so caches and imports count as a user sees them:
1. the whole command `forecast data info FILE` (wall time, peak resident memory from
   ``wait4``'s ``ru_maxrss``);
2. the import-only baseline `python -c "import forecast.data"` (same figures), so the
   difference is the cost of reading and summarizing;
3. in this process: wall time of ``open_dataset`` and ``summarize`` (untraced), then their
   tracemalloc peaks in one traced run (Python-level allocations, numpy buffers included).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_child(argv: list[str]) -> tuple[float, float]:
    """Run argv to completion; return (wall seconds, peak RSS in MiB). Fails on non-zero exit."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}): {err.strip()}")
    return wall, usage.ru_maxrss / 1024  # Linux: ru_maxrss in KiB


def summary(label: str, runs: list[tuple[float, float]]) -> str:
    walls = [w for w, _ in runs]
    rss = max(r for _, r in runs)
    return (
        f"{label:<34} wall median {statistics.median(walls):6.2f} s "
        f"(min {min(walls):.2f}, max {max(walls):.2f}, n={len(walls)}), peak RSS {rss:7.1f} MiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement")
    parser.add_argument("--path", type=Path, help="GRIB file (default: the era5-uk-t2m file)")
    args = parser.parse_args()

    from forecast.data import DATASETS, open_dataset, summarize

    path = args.path or DATASETS.get("era5-uk-t2m").paths()[0]
    if not path.is_file():
        raise SystemExit(f"{path} not found; set FORECAST_DATA_DIR or pass --path")
    script = Path(sys.executable).parent / "forecast"
    print(f"file: {path} ({path.stat().st_size / 2**20:.2f} MiB)")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs visible")

    cli = [run_child([str(script), "data", "info", str(path)]) for _ in range(args.repeat)]
    base = [run_child([sys.executable, "-c", "import forecast.data"]) for _ in range(args.repeat)]
    print(summary("forecast data info FILE", cli))
    print(summary("import forecast.data (baseline)", base))

    walls = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        ds = open_dataset(path)
        t1 = time.perf_counter()
        facts = summarize(ds)
        walls.append((t1 - t0, time.perf_counter() - t1))
    print(
        f"in process (no tracing): open_dataset median "
        f"{statistics.median(w for w, _ in walls):.2f} s, summarize median "
        f"{statistics.median(s for _, s in walls):.3f} s; data set in memory "
        f"{ds.nbytes / 2**20:.1f} MiB, dims {facts['dims']}"
    )
    del ds
    tracemalloc.start()
    ds = open_dataset(path)
    _, peak_open = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    summarize(ds)
    _, peak_summary = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(
        f"tracemalloc peak: open_dataset {peak_open / 2**20:.1f} MiB, "
        f"summarize {peak_summary / 2**20:.1f} MiB (above what was held before)"
    )


if __name__ == "__main__":
    main()
