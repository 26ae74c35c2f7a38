"""Scale-out figures: chunked scoring on dask LocalClusters, and Zarr vs NetCDF export.

    .venv/bin/python -u benchmarks/bench_scale.py [--size-mb 2400] [--worker-memory-mb 600]
        [--workers 1 2 4] [--metrics crps ...] [--export-mb 300] [--skip-scoring|--skip-export]

Part 1 writes a synthetic ensemble NetCDF file of about ``--size-mb`` MB (float32, no
compression), 4x the memory limit of each dask worker with the defaults, then scores it
(``forecast.scoring.scorecard``; by default the pointwise metrics crps, crps_fair, rmse,
mae_median, spread, spread_skill, brier, rank_flatness; ``--metrics`` to choose) on a
``LocalCluster`` of 1, 2 and 4 worker processes (one thread each), opened with one issue time
per chunk as ``forecast evaluate`` does. It prints the wall time, the throughput (MB of
ensemble per second), and the peak resident memory of the workers (sampled every 0.1 s) and
of the client process, and checks that every cluster size gives the same scores.

Part 2 exports an ensemble of about ``--export-mb`` MB, issue time by issue time from a
generator, with ``to_netcdf`` (zlib level 4, the default; and uncompressed) and ``to_zarr``
(Zarr defaults), and prints time and size on disk.

Everything is seeded; the files go to a temporary folder that is removed at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import xarray as xr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from forecast.dims import INIT_TIME, LAT, LEAD_TIME, LON, MEMBER, TIME, VALID_TIME
from forecast.export import to_netcdf, to_zarr

METRICS = (
    "crps",
    "crps_fair",
    "rmse",
    "mae_median",
    "spread",
    "spread_skill",
    "brier",
    "rank_flatness",
)


def geometry(size_mb: float, members: int = 50, leads: int = 24, ny: int = 32, nx: int = 48):
    """Number of issue times giving about ``size_mb`` MB of float32 ensemble."""
    per_issue = members * leads * ny * nx * 4
    n_init = max(1, round(size_mb * 1e6 / per_issue))
    return n_init, members, leads, ny, nx


def truth_and_slabs(n_init: int, members: int, leads: int, ny: int, nx: int, seed: int = 0):
    """Truth data set (hourly) and a generator of one-issue-time ensembles around it."""
    rng = np.random.default_rng(seed)
    n_time = 6 * n_init + leads + 1
    times = pd.date_range("2024-01-01", periods=n_time, freq="h")
    lat = np.linspace(50.0, 59.0, ny)
    lon = np.linspace(-8.0, 2.0, nx)
    signal = (280.0 + 3.0 * np.sin(np.arange(n_time) / 5.0))[:, None, None]
    truth = xr.Dataset(
        {
            "t2m": (
                (TIME, LAT, LON),
                (signal + rng.standard_normal((n_time, ny, nx))).astype(np.float32),
                {"units": "K"},
            )
        },
        coords={TIME: times, LAT: lat, LON: lon},
    )
    lead = pd.to_timedelta(np.arange(1, leads + 1), "h").values.astype("timedelta64[ns]")

    def slabs():
        for i in range(n_init):
            init = times[6 * i].to_datetime64()
            centre = signal[6 * i + 1 : 6 * i + 1 + leads]
            vals = centre[None] + rng.standard_normal((members, leads, ny, nx), np.float32)
            yield xr.Dataset(
                {"t2m": ((MEMBER, LEAD_TIME, LAT, LON), vals.astype(np.float32), {"units": "K"})},
                coords={
                    MEMBER: np.arange(members),
                    LEAD_TIME: lead,
                    INIT_TIME: init,
                    VALID_TIME: (LEAD_TIME, init + lead),
                    LAT: lat,
                    LON: lon,
                },
            )

    return truth, slabs


def folder_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


class PeakSampler:
    """Samples the RSS of the dask workers (via the client) and of this process."""

    def __init__(self, client, interval: float = 0.1):
        self.client, self.interval = client, interval
        self.worker_peak: dict[str, int] = {}
        self.client_peak = 0
        self._stop = threading.Event()
        self._pids = client.run(os.getpid)
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        procs = {w: psutil.Process(pid) for w, pid in self._pids.items()}
        me = psutil.Process()
        while not self._stop.is_set():
            for w, p in procs.items():
                try:
                    self.worker_peak[w] = max(self.worker_peak.get(w, 0), p.memory_info().rss)
                except psutil.Error:
                    pass
            self.client_peak = max(self.client_peak, me.memory_info().rss)
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def bench_scoring(args, folder: Path) -> None:
    from dask.distributed import Client, LocalCluster

    from forecast.commands.evaluate import open_forecast
    from forecast.scoring import scorecard

    n_init, members, leads, ny, nx = geometry(args.size_mb)
    truth, slabs = truth_and_slabs(n_init, members, leads, ny, nx)
    path = folder / "big.nc"
    t0 = time.perf_counter()
    to_netcdf(slabs(), path, compress=False, total=n_init)
    size = path.stat().st_size
    print(
        f"ensemble file: {n_init} issue times x {members} members x {leads} leads x "
        f"{ny}x{nx} grid = {size / 1e6:.0f} MB (written in {time.perf_counter() - t0:.1f} s)"
    )
    limit = args.worker_memory_mb * 1e6
    print(
        f"worker memory_limit: {args.worker_memory_mb} MB per worker "
        f"(file / limit = {size / limit:.1f}); chunk: 1 issue time = "
        f"{size / n_init / 1e6:.1f} MB"
    )
    print(f"metrics: {', '.join(args.metrics)}")
    print(f"load average before: {os.getloadavg()}, cpus: {os.cpu_count()}")
    reference = None
    print(
        "| workers | total memory limit (MB) | wall (s) | MB/s | peak worker RSS (MB) | "
        "peak client RSS (MB) |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    for n in args.workers:
        with (
            LocalCluster(
                n_workers=n,
                threads_per_worker=1,
                memory_limit=f"{limit:.0f}",
                dashboard_address=None,
            ) as cluster,
            Client(cluster) as client,
        ):
            fc = open_forecast(path, issue_chunk=1)
            with PeakSampler(client) as peak:
                t0 = time.perf_counter()
                card = scorecard({"big": fc}, truth, metrics=args.metrics, progress=False)
                wall = time.perf_counter() - t0
            fc.close()
        values = card["t2m"].values
        if reference is None:
            reference = values
        assert np.allclose(values, reference, rtol=1e-10, equal_nan=True), "scores differ"
        print(
            f"| {n} | {n * args.worker_memory_mb} | {wall:.1f} | {size / 1e6 / wall:.0f} | "
            f"{max(peak.worker_peak.values()) / 1e6:.0f} | {peak.client_peak / 1e6:.0f} |"
        )
    print(f"load average after: {os.getloadavg()}")
    print(f"crps at lead 1h: {float(card['t2m'].sel(metric='crps').values[0, 0]):.4f}")
    path.unlink()


def bench_export(args, folder: Path) -> None:
    n_init, members, leads, ny, nx = geometry(args.export_mb)
    print(
        f"export: {n_init} issue times x {members} members x {leads} leads x {ny}x{nx} "
        f"({n_init * members * leads * ny * nx * 4 / 1e6:.0f} MB float32), from a generator"
    )
    print("| format | time (s) | size on disk (MB) | files |")
    print("|---|---:|---:|---:|")
    for name, write, target in [
        ("NetCDF zlib 4", lambda s, p: to_netcdf(s, p, total=n_init), folder / "e.nc"),
        (
            "NetCDF uncompressed",
            lambda s, p: to_netcdf(s, p, compress=False, total=n_init),
            folder / "u.nc",
        ),
        ("Zarr (v2, default codec)", lambda s, p: to_zarr(s, p, total=n_init), folder / "e.zarr"),
    ]:
        _, slabs = truth_and_slabs(n_init, members, leads, ny, nx, seed=1)
        t0 = time.perf_counter()
        write(slabs(), target)
        wall = time.perf_counter() - t0
        files = sum(1 for f in target.rglob("*") if f.is_file()) if target.is_dir() else 1
        print(f"| {name} | {wall:.1f} | {folder_size(target) / 1e6:.0f} | {files} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=float, default=2400.0)
    parser.add_argument("--worker-memory-mb", type=int, default=600)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--export-mb", type=float, default=300.0)
    parser.add_argument(
        "--metrics",
        nargs="+",
        default=list(METRICS),
        help="scorecard metrics of part 1 (default: the pointwise ones)",
    )
    parser.add_argument("--skip-scoring", action="store_true")
    parser.add_argument("--skip-export", action="store_true")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench_scale_"))
    try:
        if not args.skip_scoring:
            bench_scoring(args, folder)
        if not args.skip_export:
            bench_export(args, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
