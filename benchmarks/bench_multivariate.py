"""Time of the energy and variogram scores for one P2-sized issue time.

One issue time of a P2 ensemble: 24 leads x 50 members x 1617 grid points (33 x 49), random
values. Prints the seconds of ``forecast.scoring.kernels`` (numba) per issue time for the
energy score and for the variogram score with p = 0.5 (the default), 1, 2, 0.25 (orders
k / 4: square roots and products) and 0.7 (the generic ``pow`` path), and of
``scoringrules.vs_ensemble`` (numba backend) on the same input, with the largest relative
difference from it. The variogram score costs ``O(M D^2)`` per lead; a
protocol scorecard leaves it out by default for that reason (``forecast.pipeline.
DEFAULT_METRICS``), ``forecast evaluate --forecast`` computes it.

Usage::

    .venv/bin/python benchmarks/bench_multivariate.py [--members 50] [--points 1617]
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def timed(fn, *args, **kwargs) -> tuple[float, np.ndarray]:
    """Seconds of one call (after a warm-up on a tiny input has compiled it) and its result."""
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t0, np.asarray(out)


def main() -> None:
    import scoringrules as sr

    from forecast.scoring.kernels import energy_score_np, variogram_score_np

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--members", type=int, default=50)
    p.add_argument("--points", type=int, default=1617)
    p.add_argument("--leads", type=int, default=24)
    args = p.parse_args()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.leads, args.members, args.points))
    y = rng.standard_normal((args.leads, args.points))
    for fn in (energy_score_np, variogram_score_np):  # compile (numba caches on disk)
        fn(y[:1, :8], x[:1, :, :8])
    sr.vs_ensemble(y[:1, :8], x[:1, :, :8], p=0.5, backend="numba")
    print(f"{args.leads} leads x {args.members} members x {args.points} points, seconds:")
    sec, _ = timed(energy_score_np, y, x)
    print(f"energy score (ours): {sec:.2f}")
    for order in (0.5, 1.0, 2.0, 0.25, 0.7):
        sec, ours = timed(variogram_score_np, y, x, order)
        sec_sr, ref = timed(sr.vs_ensemble, y, x, p=order, backend="numba")
        diff = float(np.max(np.abs(ours - ref) / np.abs(ref)))
        print(
            f"variogram p={order}: ours {sec:.2f}, scoringrules (numba) {sec_sr:.2f}, "
            f"largest relative difference {diff:.1e}"
        )


if __name__ == "__main__":
    main()
