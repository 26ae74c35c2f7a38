"""RMSE of a first guess on its own training windows, out of fold, and on new days.

A generative model with a first guess (``first_guess = "gp"`` etc.) learns the residual
``target - first guess`` on the training windows. This prints, per lead, the RMSE of that
residual where the first guess was fitted on the same windows (in-sample), where each window's
first guess was fitted without it (out of fold, ``fit_folded_first_guess``, what
``first_guess_folds`` trains on), and on the validation and test windows (the first guess
fitted on the whole training split). Every window of each split whose context and target lie
inside it counts.

Usage::

    .venv/bin/python benchmarks/bench_first_guess_folds.py --protocol P2 [--kind gp] [--folds 4]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from forecast.data import data_variables, get_protocol, open_dataset
from forecast.data.torch import to_array
from forecast.dims import TIME
from forecast.models.first_guess import fit_first_guess, fit_folded_first_guess


def predictions(guess, split, context: int, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """``(first guess, target)`` ``(window, lead, channel, *space)`` of every window of
    ``split`` whose context and target lie inside it."""
    values = to_array(split[list(data_variables(split))]).astype(np.float64)
    origins = np.arange(context - 1, len(values) - horizon)
    pred = guess.predict(values, split[TIME].values, origins).astype(np.float64)
    target = np.stack([values[o + 1 : o + 1 + horizon] for o in origins])
    return pred, target


def lead_rmse(guess, split, context: int, horizon: int) -> np.ndarray:
    """RMSE ``(lead,)`` of ``guess`` over every window of ``split`` (all points, variables)."""
    pred, target = predictions(guess, split, context, horizon)
    err2 = (target - pred) ** 2
    return np.sqrt(np.nanmean(err2, axis=tuple(i for i in range(err2.ndim) if i != 1)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--protocol", default="P2")
    parser.add_argument("--kind", default="gp", help="first guess (forecast.models.first_guess)")
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--leads", type=int, nargs="+", default=[1, 3, 6, 12, 24])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    proto = get_protocol(args.protocol)
    ds = open_dataset(proto.dataset)
    train, valid, test = (proto.split(ds, s) for s in ("train", "val", "test"))
    kw = dict(context=proto.context, horizon=proto.horizon, seed=args.seed, valid=valid)
    start = time.perf_counter()
    full = fit_first_guess(args.kind, train, **kw)
    full_s = time.perf_counter() - start
    start = time.perf_counter()
    folded = fit_folded_first_guess(args.kind, train, folds=args.folds, **kw)
    folded_s = time.perf_counter() - start

    geometry = (proto.context, proto.horizon)
    rows = {
        "train, in-sample": lead_rmse(full, train, *geometry),
        f"train, out of fold ({args.folds} folds)": lead_rmse(folded, train, *geometry),
        "validation": lead_rmse(full, valid, *geometry),
        "test": lead_rmse(full, test, *geometry),
    }
    leads = [h for h in args.leads if 1 <= h <= proto.horizon]
    units = ds[data_variables(ds)[0]].attrs.get("units", "")
    print(
        f"{args.protocol}, first guess {args.kind!r}, seed {args.seed}: fit {full_s:.1f} s, "
        f"{args.folds} fold fits {folded_s:.1f} s; RMSE of the residual ({units})"
    )
    label = (lambda h: f"{h} h") if proto.step == "1h" else (lambda h: f"lead {h}")
    print("| windows | " + " | ".join(label(h) for h in leads) + " | mean over leads |")
    print("|---|" + "---:|" * (len(leads) + 1))
    for name, rmse in rows.items():
        cells = " | ".join(f"{rmse[h - 1]:.3f}" for h in leads)
        print(f"| {name} | {cells} | {rmse.mean():.3f} |")


if __name__ == "__main__":
    main()
