"""How much of a residual model's mean correction helps: a sensitivity check on a protocol run.

The GP-residual generative models start from the GP mean and add the net's correction. This
rebuilds each ensemble of a protocol run with its ensemble mean moved part of the way back to
the GP baseline's ensemble mean, keeping every member's departure from the mean::

    member' = gp_mean + a * (mean - gp_mean) + (member - mean)

and prints, for each ``a``, the mean CRPS, the leads below every baseline and the worst ratio to
the best baseline. ``a = 1`` is the ensemble as sampled, ``a = 0`` the GP mean with the model's
spread. The GP mean here is the baseline's (same configuration, fitted in the run), not the one
inside each checkpoint, and ``a`` is chosen by hand on the test windows: this measures the
potential of shrinking the correction, it is not a fitted model.

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_mean_shrink.py outputs/final/eval-p2-slow \\
        --model slow-s0 --model slow-s1 [--shrink 1,0.75,0.5,0.25,0]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from forecast.data import open_dataset
from forecast.dims import LEAD_TIME
from forecast.export import open_ensemble
from forecast.models import BASELINE_KINDS
from forecast.pipeline import _like_data
from forecast.scoring import crps_ensemble, obs_for
from forecast.scoring.align import check_member


def lead_crps(ens, truth) -> np.ndarray:
    """Mean CRPS per lead (one variable), over issue times and points."""
    check_member(ens)
    obs = obs_for(ens, truth)
    (name,) = list(ens.data_vars)
    dims = [d for d in ens[name].dims if d not in ("member", LEAD_TIME)]
    return np.asarray(crps_ensemble(obs, ens, dim=dims)[name].values)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", help="protocol run folder with the GP baseline and the models")
    p.add_argument("--model", action="append", required=True, help="label of a model in the run")
    p.add_argument("--shrink", default="1,0.75,0.5,0.25,0", help="values of a, comma-separated")
    p.add_argument("--members", type=int, default=50)
    args = p.parse_args()
    run = Path(args.run)
    proto = json.loads((run / "run.json").read_text())["protocol"]
    truth = open_dataset(proto["dataset"])

    def load(label: str):
        (path,) = (run / "ensembles").glob(f"{label}-{proto['name']}-*-m{args.members}.nc")
        return _like_data(open_ensemble(path).load(), truth)

    baselines = {b: load(b) for b in BASELINE_KINDS}
    best = np.min([lead_crps(e, truth) for e in baselines.values()], axis=0)
    gp_mean = baselines["gp"].mean("member")
    shrinks = [float(a) for a in args.shrink.split(",")]
    print(f"{proto['name']}: best baseline mean CRPS over leads {best.mean():.4f}")
    print("model | a | mean CRPS | leads below every baseline | worst CRPS / best baseline")
    for label in args.model:
        ens = load(label)
        mean = ens.mean("member")
        for a in shrinks:
            moved = gp_mean + a * (mean - gp_mean) + (ens - mean)
            crps = lead_crps(moved.transpose(*ens.dims), truth)
            ratio = crps / best
            print(
                f"{label} | {a:g} | {crps.mean():.4f} | {(crps < best).sum()} of {len(best)} | "
                f"{ratio.max():.3f}"
            )


if __name__ == "__main__":
    main()
