"""Time and peak memory of building P2 windows and of a DataLoader pass over them.

Shows that windowing memory grows with the data (one float32 copy for the tensor side), not
with the number of windows times their size: windows are int64 issue indices and batches are
built on demand.

Each case runs in a fresh subprocess. Memory is the process's peak resident set size (Linux
``VmHWM``, reset through ``/proc/self/clear_refs`` once the data are loaded) above the resident
size at that moment, so data generation and imports are not counted.

Cases: the real ERA5 UK file with protocol P2 (when present), then synthetic weather on the
ERA5 grid (33 x 49, hourly) 1x, 4x and 16x the P2 length (744 h), windows with the P2 geometry
(context 6, horizon 24, every issue time).

Usage::

    .venv/bin/python benchmarks/bench_windows.py [--factors 1 4 16] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status (Linux only)")


def _reset_peak() -> int:
    Path("/proc/self/clear_refs").write_text("5")
    return _status("VmRSS")


def _case(kind: str, factor: int, batch_size: int) -> dict:
    from torch.utils.data import DataLoader

    from forecast.data import get_protocol, open_dataset, synthetic_weather
    from forecast.data.normalize import Normalizer
    from forecast.data.torch import WindowDataset, to_array
    from forecast.data.windows import calendar_features, make_windows

    if kind == "era5":
        ds = open_dataset("era5-uk-t2m").load()
    else:
        ds = synthetic_weather(seed=0, n_lat=33, n_lon=49, days=31 * factor, start="2019-03-01")
    data_bytes = int(ds["t2m"].nbytes)
    out: dict = {
        "case": kind,
        "factor": factor,
        "steps": int(ds.sizes["time"]),
        "data_MiB": data_bytes / 2**20,
    }

    base = _reset_peak()
    t0 = time.perf_counter()
    if kind == "era5":
        p = get_protocol("P2")
        windows = {s: p.windows(ds, s) for s in ("train", "val", "test")}
        out["p2_windows"] = {s: len(w) for s, w in windows.items()}
        train = windows["train"]
        fit_part = p.split(ds, "train")
    else:
        train = make_windows(ds, 6, 24)
        fit_part = ds
    out["windows_s"] = time.perf_counter() - t0
    out["windows_peak_MiB"] = (_status("VmHWM") - base) / 2**20
    out["n_windows"] = len(train)
    out["index_KiB"] = train.issue_index.nbytes / 2**10
    per_window = (train.context + train.horizon) * data_bytes // int(ds.sizes["time"])
    out["materialized_MiB"] = len(train) * per_window / 2**20

    base = _reset_peak()
    t0 = time.perf_counter()
    norm = Normalizer.fit(fit_part)
    out["fit_s"] = time.perf_counter() - t0
    out["fit_peak_MiB"] = (_status("VmHWM") - base) / 2**20

    base = _reset_peak()
    t0 = time.perf_counter()
    values = norm.transform_array(to_array(ds), copy=False)  # the one float32 copy
    wds = WindowDataset(values, train, calendar_features(ds["time"]))
    n, checksum = 0, 0.0
    for batch in DataLoader(wds, batch_size=batch_size, shuffle=True):
        n += batch["context"].shape[0]
        checksum += float(batch["target"][:, -1].mean())
    assert n == len(train)
    out["loader_s"] = time.perf_counter() - t0
    out["loader_peak_MiB"] = (_status("VmHWM") - base) / 2**20
    out["batch_MiB"] = batch_size * per_window / 2**20
    out["checksum"] = round(checksum, 3)
    del values, wds
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--factors", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--case", nargs=2, help=argparse.SUPPRESS)  # internal: kind factor
    args = parser.parse_args()
    if args.case:
        print(json.dumps(_case(args.case[0], int(args.case[1]), args.batch_size)))
        return

    from forecast.data.catalog import data_dir  # noqa: F401  (fails early if the package is broken)

    cases = [("era5", 1)] + [("synthetic", f) for f in args.factors]
    rows = []
    for kind, factor in cases:
        cmd = [
            sys.executable,
            __file__,
            "--case",
            kind,
            str(factor),
            "--batch-size",
            str(args.batch_size),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["?"])[-1]
            print(f"{kind} x{factor}: skipped ({last})", file=sys.stderr)
            continue
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))

    print(
        "| case | x | steps | data MiB | windows | index KiB | materialized MiB "
        "| windows s | windows peak MiB | fit s | fit peak MiB | loader s | loader peak MiB |"
    )
    print("|" + "---|" * 13)
    for r in rows:
        print(
            f"| {r['case']} | {r['factor']} | {r['steps']} | {r['data_MiB']:.1f} "
            f"| {r['n_windows']} | {r['index_KiB']:.1f} | {r['materialized_MiB']:.0f} "
            f"| {r['windows_s']:.4f} | {r['windows_peak_MiB']:.1f} "
            f"| {r['fit_s']:.2f} | {r['fit_peak_MiB']:.1f} "
            f"| {r['loader_s']:.2f} | {r['loader_peak_MiB']:.1f} |"
        )
    for r in rows:
        if "p2_windows" in r:
            print(f"P2 windows on the real ERA5 file: {r['p2_windows']}")
    print(
        f"batch size {args.batch_size}: one batch of context+target is "
        f"{rows[-1]['batch_MiB']:.1f} MiB"
        if rows
        else "no case ran"
    )


if __name__ == "__main__":
    main()
