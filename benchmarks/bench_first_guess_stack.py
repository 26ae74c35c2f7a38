"""Would a GP / diurnal-persistence blend be a better first guess? Weights fitted out of fold.

On P2 the GP is the best baseline up to 21 h and (diurnal) persistence at 22-24 h of the test
week. This fits, per lead, the least-squares weight ``w_h`` of the blend
``dp + w_h (gp - dp)`` on the training windows' out-of-fold first guesses (each block of
windows predicted by first guesses fitted without it, ``fit_folded_first_guess``), then prints
the RMSE per lead of the GP mean, the diurnal-persistence mean and the blend (both fitted on
the whole training split) on the validation and test windows (every hourly window of each
split).

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_first_guess_stack.py --protocol P2
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from bench_first_guess_folds import predictions  # the windows of a split, beside this file

from forecast.data import get_protocol, open_dataset
from forecast.models.first_guess import fit_first_guess, fit_folded_first_guess


def _but_lead(a: np.ndarray) -> tuple[int, ...]:
    return tuple(i for i in range(a.ndim) if i != 1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--protocol", default="P2")
    p.add_argument("--folds", type=int, default=4)
    p.add_argument("--leads", type=int, nargs="+", default=[1, 3, 6, 12, 18, 21, 22, 23, 24])
    args = p.parse_args()
    torch.set_num_threads(1)
    proto = get_protocol(args.protocol)
    ds = open_dataset(proto.dataset)
    train, valid, test = (proto.split(ds, s) for s in ("train", "val", "test"))
    geometry = (proto.context, proto.horizon)
    kw = {"context": proto.context, "horizon": proto.horizon, "seed": 0, "valid": valid}
    gp_oof, target = predictions(
        fit_folded_first_guess("gp", train, folds=args.folds, **kw), train, *geometry
    )
    dp_oof, _ = predictions(
        fit_folded_first_guess("diurnal", train, folds=args.folds, **kw), train, *geometry
    )
    x, y = gp_oof - dp_oof, target - dp_oof
    w = (x * y).sum(axis=_but_lead(x)) / (x * x).sum(axis=_but_lead(x))
    print(f"{proto.name}: weight of the GP per lead (out of fold, {args.folds} folds):")
    print("  " + " ".join(f"{v:.2f}" for v in w))
    gp = fit_first_guess("gp", train, **kw)
    dp = fit_first_guess("diurnal", train, **kw)
    print("| windows | first guess | " + " | ".join(f"{h} h" for h in args.leads) + " | mean |")
    print("|---|---|" + "---:|" * (len(args.leads) + 1))
    for name, split in (("validation", valid), ("test", test)):
        g, t = predictions(gp, split, *geometry)
        d, _ = predictions(dp, split, *geometry)
        blend = d + w.reshape(1, -1, *([1] * (g.ndim - 2))) * (g - d)
        for label, pred in (("gp", g), ("diurnal persistence", d), ("blend", blend)):
            rmse = np.sqrt(((t - pred) ** 2).mean(axis=_but_lead(pred)))
            cells = " | ".join(f"{rmse[h - 1]:.3f}" for h in args.leads)
            print(f"| {name} | {label} | {cells} | {rmse.mean():.3f} |")


if __name__ == "__main__":
    main()
