"""Would a state-dependent spread factor calibrate the P2 test week? A check on a protocol run.

The generative models scale their spread by one factor per lead, fitted on earlier windows. A
heteroscedastic alternative multiplies each window's departures from the ensemble mean by
``g = (s / s_ref) ** alpha[lead]``, where ``s`` is the spatial standard deviation of the
anomaly from the training period's time-of-day mean at the issue time (a larger anomaly field
went with larger errors in the training days). ``alpha`` is the slope of log(anomaly
persistence error) on log(s) over the training windows' issue times, and ``s_ref`` the
geometric mean of ``s`` there, so that ``g`` averages about 1 on the training days. Nothing is
fitted on the test windows.

For each model it prints the spread-skill verdicts per lead (bootstrap interval against
0.8-1.2, as in the significance tables) and the mean CRPS, as sampled and with ``g`` applied.

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_state_spread.py outputs/final/eval-p2-cf \\
        --model vae-cf-s0 --model vae-cf-s1
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from bench_mean_shrink import lead_crps  # beside this file

from forecast.data import open_dataset
from forecast.dims import INIT_TIME, LEAD_TIME, MEMBER
from forecast.export import open_ensemble
from forecast.pipeline import _like_data
from forecast.scoring.spread_interval import spread_skill_interval


def anomaly(values: np.ndarray, hours: np.ndarray, n_train: int) -> np.ndarray:
    """``values`` (time, points) minus the training mean at each hour of day."""
    clim = np.stack([values[:n_train][hours[:n_train] == h].mean(0) for h in range(24)])
    return values - clim[hours]


def persistence_error(a: np.ndarray, origins: list[int], lead: int) -> np.ndarray:
    """RMS over points of the anomaly-persistence error at ``lead`` from each origin."""
    later = [t + lead for t in origins]
    return np.sqrt(((a[later] - a[origins]) ** 2).mean(axis=1))


def state_slopes(a: np.ndarray, origins: list[int], horizon: int) -> tuple[np.ndarray, float]:
    """Per-lead slope of log RMS anomaly-persistence error on log spatial anomaly std, and
    the geometric mean of that std over ``origins``."""
    s = np.log(a[origins].std(axis=1))
    leads = range(1, horizon + 1)
    alpha = np.array([np.polyfit(s, np.log(persistence_error(a, origins, k)), 1)[0] for k in leads])
    return alpha, float(np.exp(s.mean()))


def verdicts(ens: xr.Dataset, truth: xr.Dataset) -> str:
    """Counts of the spread-skill verdicts over leads, with the leads (hours) off the band."""
    (name,) = list(ens.data_vars)
    v = spread_skill_interval(ens, truth)[f"{name}_verdict"].values
    parts = [f"consistent {int((v == 'consistent').sum())}"]
    for kind in ("under", "over"):
        leads = np.flatnonzero(v == f"{kind}-dispersed") + 1
        parts.append(
            f"{kind} {len(leads)}" + (f" (h {','.join(map(str, leads))})" if len(leads) else "")
        )
    return " / ".join(parts)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", help="protocol run folder (P2 or synthetic-weather)")
    p.add_argument("--model", action="append", required=True, help="label of a model in the run")
    p.add_argument("--members", type=int, default=50)
    args = p.parse_args()
    run = Path(args.run)
    proto = json.loads((run / "run.json").read_text())["protocol"]
    truth = open_dataset(proto["dataset"])
    (name,) = list(truth.data_vars)
    times = truth["time"].values
    values = truth[name].values.reshape(len(times), -1).astype(np.float64)
    hours = pd.DatetimeIndex(times).hour.to_numpy()
    n_train = int(proto["train"][1])
    a = anomaly(values, hours, n_train)
    horizon = int(proto["horizon"])
    origins = [t for t in range(proto["context"], n_train - horizon) if hours[t] in proto["hours"]]
    alpha, s_ref = state_slopes(a, origins, horizon)
    print(f"alpha by lead: {np.array2string(alpha, precision=2)}; s_ref {s_ref:.3f}")
    test_origins = [
        t for t in range(int(proto["test"][0]), len(times) - horizon) if hours[t] in proto["hours"]
    ]
    for split, ts in (("training", origins), ("test", test_origins)):
        s = a[ts].std(axis=1)
        errors = [persistence_error(a, ts, k) for k in (3, 6, 12, 24)]
        corr = np.array([np.corrcoef(s, e)[0, 1] for e in errors])
        rms = np.array([np.sqrt((e**2).mean()) for e in errors])
        print(
            f"{split} issue times ({len(ts)}): s mean {s.mean():.3f}; anomaly-persistence error "
            f"at 3/6/12/24 h: RMS {np.array2string(rms, precision=2)}, "
            f"correlation with s {np.array2string(corr, precision=2)}"
        )
    for label in args.model:
        (path,) = (run / "ensembles").glob(f"{label}-{proto['name']}-*-m{args.members}.nc")
        ens = _like_data(open_ensemble(path).load(), truth)
        t0 = np.searchsorted(times, ens[INIT_TIME].values)
        g = (a[t0].std(axis=1)[:, None] / s_ref) ** alpha[None, :]
        gain = xr.DataArray(g, dims=(INIT_TIME, LEAD_TIME), coords={INIT_TIME: ens[INIT_TIME]})
        gain = gain.assign_coords({LEAD_TIME: ens[LEAD_TIME]})
        mean = ens[name].mean(MEMBER)
        scaled = ens.assign({name: mean + gain * (ens[name] - mean)})
        print(f"{label}: test-window factor by lead {np.array2string(g.mean(0), precision=2)}")
        for kind, e in (("as sampled", ens), ("state factor", scaled)):
            crps = lead_crps(e, truth)
            print(f"  {kind:12s} mean CRPS {crps.mean():.4f}; spread-skill {verdicts(e, truth)}")


if __name__ == "__main__":
    main()
