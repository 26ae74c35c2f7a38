"""Seconds for one full-horizon ensemble of any checkpoint (pools included), on its protocol's
first test issue time.

Prints the median over ``--repeat`` runs (after one warm-up) of ``model.sample(context,
members)``, members per second, the resident memory with data and model loaded and the peak
after the draws (what sampling adds at most), and for a pooled checkpoint the same times for
each of its models with the members it draws; then the peak resident memory of the process.
For an online-calibrated checkpoint (``forecast online-spread``, also under ``forecast
schaake``) the repeats reuse the warm-up's reference forecasts, so it also times, on a freshly
loaded copy, the first issue time (all ``history + 1`` reference forecasts) and the next step
after it (one new reference forecast: an hourly run).

Usage::

    .venv/bin/python benchmarks/bench_sample_speed.py --checkpoint POOL.safetensors \
        [--data era5-uk-t2m] [--members 50] [--repeat 3] [--threads 2] [--reference-batch N]
"""

from __future__ import annotations

import argparse
import resource
import time
from typing import Any

import numpy as np
import torch


def resident_mib() -> float | None:
    """The process's resident memory now (MiB; Linux ``/proc``), None where unknown."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def peak_mib() -> float:
    """The process's peak resident memory so far (MiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


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
    args = p.parse_args()
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
    issue = proto.windows(ds, "test").issue_times(ds)[0]
    ctx = context_of(ds, issue, model.context)
    print(
        f"{args.checkpoint}: {model.kind}, data {args.data} {dict(ds.sizes)}, horizon "
        f"{model.horizon}, {args.members} members, {args.threads} threads, issue {issue}"
    )
    before = resident_mib()
    s = median_seconds(model, ctx, args.members, args.repeat)
    print(f"whole ensemble: {s:.3f} s ({args.members / s:.1f} members/s)")
    if before is not None:
        print(
            f"memory: {before:.0f} MiB resident with the data and model loaded, peak "
            f"{peak_mib():.0f} MiB after the draws (sampling adds at most "
            f"{peak_mib() - before:.0f} MiB)"
        )
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
    print(f"peak resident memory of the process: {peak_mib():.0f} MiB")


if __name__ == "__main__":
    main()
