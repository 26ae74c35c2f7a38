"""Seconds for one full-horizon ensemble of any checkpoint (pools included), on its protocol's
first test issue time.

Prints the median over ``--repeat`` runs (after one warm-up) of ``model.sample(context,
members)``, members per second, the resident memory with data and model loaded and its peak
during the draws (Linux: the peak is reset before them through ``/proc/self/clear_refs``, so
the figure is what sampling adds; where that fails, the process's lifetime peak, an upper
bound, and the line says so), and for a pooled checkpoint the same times for each of its
models with the members it draws; then the peak resident memory of the process.
``--contexts K`` also draws the first K test issue times in one call of
``forecast.models.base.sample_many`` (a diffusion model or a pool: one batched draw) and one
after the other, with the seconds and peak memory of each.
For an online-calibrated checkpoint (``forecast online-spread``, also under ``forecast
schaake``) the repeats reuse the warm-up's reference forecasts, so it also times, on a freshly
loaded copy, the first issue time (all ``history + 1`` reference forecasts) and the next step
after it (one new reference forecast: an hourly run).

Usage::

    .venv/bin/python benchmarks/bench_sample_speed.py --checkpoint POOL.safetensors \
        [--data era5-uk-t2m] [--members 50] [--repeat 3] [--threads 2] [--reference-batch N] \
        [--contexts K]
"""

from __future__ import annotations

import argparse
import ctypes
import resource
import time
from typing import Any

import numpy as np
import torch


def _status_mib(key: str) -> float | None:
    """A ``/proc/self/status`` figure in MiB (``VmRSS``, ``VmHWM``), None where unknown."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def resident_mib() -> float | None:
    """The process's resident memory now (MiB; Linux ``/proc``), None where unknown."""
    return _status_mib("VmRSS")


def reset_peak() -> bool:
    """Hand freed heap memory back to the system (glibc), then reset the process's peak
    resident memory to its current one (Linux 4.0+); False where the system does not allow
    the reset (then :func:`peak_mib` is the lifetime peak)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # else memory freed by earlier draws stays
    except (OSError, AttributeError):
        pass  # not glibc: "before" may include freed memory, the peak is still exact
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        return False
    return _status_mib("VmHWM") is not None


def peak_mib() -> float:
    """The process's peak resident memory since the last :func:`reset_peak` (else so far)."""
    hwm = _status_mib("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory_line(before: float, exact: bool) -> str:
    """What a draw added to the resident memory, from ``before`` and the peak since."""
    peak = peak_mib()
    added = f"adds {peak - before:.0f} MiB" if exact else f"adds at most {peak - before:.0f} MiB"
    since = "during the draws" if exact else "of the process so far"
    return f"{before:.0f} MiB resident before, peak {peak:.0f} MiB {since} ({added})"


def time_contexts(model: Any, contexts: list, members: int) -> None:
    """Seconds and peak memory of drawing ``contexts`` in one batched call and one by one."""
    from forecast.models.base import sample_many

    seeds = list(range(len(contexts)))
    draws = {
        "in one call of sample_many": lambda: sample_many(model, contexts, members, seeds),
        "one after the other": lambda: [
            model.sample(c, members, seed=s) for c, s in zip(contexts, seeds, strict=True)
        ],
    }
    for name, draw in draws.items():
        exact = reset_peak()
        before = resident_mib()
        t = time.perf_counter()
        draw()
        seconds = time.perf_counter() - t
        print(f"{len(contexts)} issue times x {members} members {name}: {seconds:.2f} s", end="")
        print("" if before is None else f"; memory: {memory_line(before, exact)}")


def median_seconds(model: Any, ctx: Any, members: int, repeat: int) -> float:
    """Median wall seconds of ``model.sample(ctx, members)`` over ``repeat`` seeds."""
    model.sample(ctx, members, seed=0)  # warm-up
    runs = []
    for r in range(repeat):
        t = time.perf_counter()
        model.sample(ctx, members, seed=r)
        runs.append(time.perf_counter() - t)
    return float(np.median(runs))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", default="era5-uk-t2m")
    p.add_argument("--members", type=int, default=50)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--reference-batch",
        type=int,
        default=None,
        help="an online-spread model: draw its reference forecasts up to this many at a time "
        "(default: forecast.models.online._REFERENCE_BATCH; 1: one by one, as before 2026-12-08)",
    )
    p.add_argument(
        "--contexts",
        type=int,
        default=0,
        help="also draw the first K test issue times batched and one by one (time, memory)",
    )
    args = p.parse_args()
    if args.contexts < 0:
        raise SystemExit(f"--contexts must be 0 or more, got {args.contexts}")
    torch.set_num_threads(args.threads)
    if args.reference_batch is not None:
        import forecast.models.online as online

        if args.reference_batch < 1:
            raise SystemExit(f"--reference-batch must be at least 1, got {args.reference_batch}")
        online._REFERENCE_BATCH = args.reference_batch

    from forecast.data import open_dataset
    from forecast.data.protocols import PROTOCOLS, get_protocol
    from forecast.data.windows import context_of
    from forecast.models import PooledEnsemble, load_model
    from forecast.models.pooled import member_sources
    from forecast.models.wrapped import reference_holder

    ds = open_dataset(args.data)
    proto = next(get_protocol(n) for n in PROTOCOLS.names() if get_protocol(n).dataset == args.data)
    model = load_model(args.checkpoint)
    issues = proto.windows(ds, "test").issue_times(ds)
    issue = issues[0]
    ctx = context_of(ds, issue, model.context)
    print(
        f"{args.checkpoint}: {model.kind}, data {args.data} {dict(ds.sizes)}, horizon "
        f"{model.horizon}, {args.members} members, {args.threads} threads, issue {issue}"
    )
    exact = reset_peak()
    before = resident_mib()
    s = median_seconds(model, ctx, args.members, args.repeat)
    print(f"whole ensemble: {s:.3f} s ({args.members / s:.1f} members/s)")
    if before is not None:
        print(f"memory with the data and model loaded: {memory_line(before, exact)}")
    if args.contexts:
        if args.contexts > len(issues):
            raise SystemExit(f"--contexts {args.contexts}: the test split has {len(issues)}")
        contexts = [context_of(ds, t, model.context) for t in issues[: args.contexts]]
        time_contexts(model, contexts, args.members)
    holder = reference_holder(model)  # an online-spread model, or the base of a schaake one
    if holder is not None:
        fresh = load_model(args.checkpoint)
        t = time.perf_counter()
        fresh.sample(ctx, args.members, seed=0)
        cold = time.perf_counter() - t
        later = context_of(ds, issue + (ds.time.values[1] - ds.time.values[0]), model.context)
        t = time.perf_counter()
        fresh.sample(later, args.members, seed=0)
        step = time.perf_counter() - t
        print(
            f"online calibration: first issue time {cold:.2f} s ({holder.history + 1} reference "
            f"forecasts); the next step {step:.3f} s (one new reference forecast)"
        )
    if isinstance(model, PooledEnsemble):
        sources = member_sources(model.weights, args.members)
        counts = np.bincount(sources, minlength=len(model.models))
        for label, part, n in zip(model.labels, model.models, counts, strict=True):
            if n:
                t = median_seconds(part, ctx, int(n), args.repeat)
                print(f"  {label} ({part.kind}): {n} members in {t:.3f} s")
    lifetime = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(f"peak resident memory of the process: {lifetime:.0f} MiB")


if __name__ == "__main__":
    main()
