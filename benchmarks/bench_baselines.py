"""Time the baselines on a protocol and compare GP inference methods by validation skill.

Usage::

    .venv/bin/python benchmarks/bench_baselines.py [--protocol P2] [--members 50]
        [--gp exact:256,exact:512:60,svgp:4096:200:128]

Prints, per baseline, the fit time and the time to sample every test issue time; then for each
GP variant (``method:n_train[:iterations[:n_inducing]]``, 60 iterations and 128
inducing points by default) its training time and the closed-form Gaussian CRPS and RMSE of
its mean on the validation windows of the protocol (the measurement behind the GP's default).
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    from forecast.data import open_dataset
    from forecast.data.protocols import get_protocol
    from forecast.models import MODELS, forecast_many
    from forecast.models.gp import GaussianProcessForecaster, gaussian_many
    from forecast.scoring import crps_gaussian, obs_for

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--protocol", default="P2")
    parser.add_argument("--members", type=int, default=50)
    parser.add_argument("--gp", default="exact:256,exact:512,svgp:4096:200")
    parser.add_argument("--skip-baselines", action="store_true")
    args = parser.parse_args()

    proto = get_protocol(args.protocol)
    ds = open_dataset(proto.dataset)
    train = proto.split(ds, "train")
    test_times = proto.windows(ds, "test").issue_times(ds)
    val_times = proto.windows(ds, "val").issue_times(ds)
    print(
        f"{proto.name}: {dict(ds.sizes)}, train {train.sizes['time']} steps, "
        f"{len(test_times)} test and {len(val_times)} val issue times, {args.members} members"
    )

    if not args.skip_baselines:
        for name in ("persistence", "climatology", "diurnal-persistence", "gp"):
            model = MODELS.get(name)(context=proto.context, horizon=proto.horizon)
            t0 = time.perf_counter()
            model.fit(train)
            t1 = time.perf_counter()
            forecast_many(model, ds, test_times, args.members, seed=0)
            t2 = time.perf_counter()
            print(f"{name:20s} fit {t1 - t0:7.2f} s   sample {t2 - t1:7.2f} s")

    print("GP variants, validation windows (Gaussian CRPS, RMSE of the mean, mean over leads):")
    for spec in args.gp.split(","):
        method, n_train, *rest = spec.split(":")
        iterations = int(rest[0]) if rest else 60
        n_inducing = int(rest[1]) if len(rest) > 1 else 128
        model = GaussianProcessForecaster(
            context=proto.context,
            horizon=proto.horizon,
            method=method,
            n_train=int(n_train),
            iterations=iterations,
            n_inducing=n_inducing,
        )
        t0 = time.perf_counter()
        model.fit(train)
        fit_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        mean, std = gaussian_many(model, ds, val_times)
        pred_s = time.perf_counter() - t0
        obs = obs_for(mean, ds)
        var = next(iter(mean.data_vars))
        crps = float(crps_gaussian(obs, mean, std)[var])
        rmse = float(np.sqrt(((obs[var] - mean[var]) ** 2).mean()))
        print(
            f"gp {spec:12s} fit {fit_s:7.2f} s  predict {pred_s:6.2f} s  "
            f"CRPS {crps:.4f}  RMSE {rmse:.4f}"
        )


if __name__ == "__main__":
    main()
