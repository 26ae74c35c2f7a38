"""Benchmark of the CF ensemble NetCDF export: time, peak memory, file size, read time.

Ensembles are real-data persistence ensembles on the P2 grid (ERA5 UK 2 m temperature,
33 x 49, float32): a persistence baseline is fitted on the P2 training period and sampled for
the first ``--issues`` test issue times of P2. Measured, in this order, in one process:

1. streaming export: a generator samples one issue time at a time and ``to_netcdf`` writes it
   (zlib level 4 + shuffle), for a quarter of the issue times and for all of them: wall time
   (sampling included) and Python/numpy peak memory (tracemalloc), which must not grow with
   the number of issue times; growth of the process's maximum resident set;
2. export only, from ensembles already in memory: zlib level 4 (the default), level 1 and no
   compression: wall time, file size and the writer's own peak memory (tracemalloc);
3. read time of one member (all issue times and leads) with ``open_ensemble`` and with plain
   ``netCDF4``; median of ``--repeat`` fresh opens (the file is in the OS cache).

Wall times depend on the load of the machine; CPU times (``time.process_time``: this process,
all threads) are printed beside them.

Usage::

    .venv/bin/python benchmarks/bench_export.py [--members 100] [--issues 24] [--data era5-uk-t2m]
"""

from __future__ import annotations

import argparse
import gc
import resource
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=100)
    parser.add_argument("--issues", type=int, default=24)
    parser.add_argument("--data", default="era5-uk-t2m", help="data set with the P2 geometry")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--folder", type=Path, default=None, help="where to write the files")
    args = parser.parse_args(argv)

    import netCDF4

    from forecast.data import context_of, get_protocol, open_dataset
    from forecast.dims import MEMBER, TIME
    from forecast.export import open_ensemble, to_netcdf
    from forecast.models import PersistenceEnsemble, issue_seed

    proto = get_protocol("P2")
    ds = open_dataset(args.data)
    model = PersistenceEnsemble(context=proto.context, horizon=proto.horizon)
    model.fit(ds.isel({TIME: slice(*proto.train)}))
    times = proto.windows(ds, "test").issue_times(ds)[: args.issues]
    if len(times) < args.issues:
        raise SystemExit(f"only {len(times)} P2 test issue times; pass --issues {len(times)}")
    shape = (args.members, proto.horizon, *(ds.sizes[d] for d in ("lat", "lon")))
    n_bytes = len(times) * int(np.prod(shape)) * 4
    print(
        f"data {args.data}: {len(times)} issue times x {args.members} members x "
        f"{proto.horizon} leads x {shape[2]} x {shape[3]} float32 = {n_bytes / 1e6:.0f} MB raw"
    )

    def slab(t):
        return model.sample(context_of(ds, t, model.context), args.members, seed=issue_seed(0, t))

    with tempfile.TemporaryDirectory(dir=args.folder) as tmp:
        folder = Path(tmp)
        # 1. streaming export, memory bounded by one issue time: the peak must not grow with
        #    the number of issue times
        gc.collect()
        rss0 = _rss_mb()
        for n in sorted({max(1, len(times) // 4), len(times)}):
            tracemalloc.start()
            t0, c0 = time.perf_counter(), time.process_time()
            to_netcdf((slab(t) for t in times[:n]), folder / f"stream{n}.nc")
            stream_s, stream_cpu = time.perf_counter() - t0, time.process_time() - c0
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            print(
                f"streaming export of {n} issue times (sampling + writing, zlib 4 + shuffle): "
                f"{stream_s:.2f} s wall, {stream_cpu:.2f} s CPU; tracemalloc peak "
                f"{peak / 1e6:.0f} MB"
            )
        print(
            f"max RSS growth over both streaming runs {_rss_mb() - rss0:.0f} MB "
            f"(one issue time is {n_bytes / len(times) / 1e6:.1f} MB)"
        )
        t0, c0 = time.perf_counter(), time.process_time()
        for t in times:
            slab(t)
        print(
            f"sampling alone ({len(times)} issue times): {time.perf_counter() - t0:.2f} s "
            f"wall, {time.process_time() - c0:.2f} s CPU"
        )

        # 2. export only, ensembles already in memory
        slabs = [slab(t) for t in times]
        sizes = {}
        for label, compress, level in (("zlib", True, 4), ("zlib-1", True, 1), ("none", False, 4)):
            path = folder / f"{label}.nc"
            tracemalloc.start()
            t0, c0 = time.perf_counter(), time.process_time()
            to_netcdf(slabs, path, compress=compress, complevel=level)
            sec, cpu = time.perf_counter() - t0, time.process_time() - c0
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            sizes[label] = path.stat().st_size
            print(
                f"export only, compression {label} (level {level if compress else '-'}): "
                f"{sec:.2f} s wall, {cpu:.2f} s CPU ({n_bytes / 1e6 / cpu:.0f} MB/s raw per "
                f"CPU second), file {sizes[label] / 1e6:.1f} MB; writer's "
                f"own tracemalloc peak {peak / 1e6:.0f} MB"
            )
        print(f"compression ratio {sizes['none'] / sizes['zlib']:.2f}")
        del slabs

        # 3. read one member
        for label in ("zlib", "none"):
            path = folder / f"{label}.nc"
            xr_s, nc_s = [], []
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                with open_ensemble(path) as ens:
                    one = ens.t2m.isel({MEMBER: 7}).values
                xr_s.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                with netCDF4.Dataset(path) as nc:
                    raw = nc["t2m"][:, 7]  # (issue, member, lead, lat, lon)
                nc_s.append(time.perf_counter() - t0)
            assert one.shape == raw.shape
            np.testing.assert_array_equal(one, np.ma.filled(raw, np.nan))
            print(
                f"read one member ({one.nbytes / 1e6:.1f} MB) from the {label} file: "
                f"open_ensemble {statistics.median(xr_s) * 1e3:.0f} ms, "
                f"netCDF4 {statistics.median(nc_s) * 1e3:.0f} ms (median of {args.repeat})"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
