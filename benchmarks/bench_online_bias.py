"""Would an online bias correction help? Offline check on a protocol run's ensembles.

A forecast centre removes a model's recent mean error: at issue time ``t``, for each lead
``L`` (and grid point), the errors ``obs(s + L) - mean_s(L)`` of its reference forecasts issued
at the hours ``s`` of the last ``--history`` hours that are verified by ``t`` (``s + L <= t``),
summed and divided by ``n + w`` (``n`` such forecasts, ``w`` pseudo-forecasts of zero error:
shrinkage), are added to every member. This is what ``forecast.models.online.OnlineSpread``
would do with a bias term beside its spread factors, checked before building it in.

Two steps:

- ``refs``: the reference-forecast means (``--members``, seeded as the online wrapper seeds
  them) of a bare model at every hour from ``--start`` to ``--stop``, into an ``.npz`` file
  (a P2 snapshot pool of 32 models: 2.6 s per hour at 1 thread);
- ``score``: the ensembles of model ``--model`` of protocol runs, bias-corrected per grid point
  (``point``) or by one number per lead over the domain (``domain``) for each shrinkage
  ``--weights``, scored (CRPS) against the uncorrected ones, with the 95 % Diebold-Mariano
  interval of the mean over leads; first the sign check: the domain-mean error the
  correction carries in (the last ``--history`` hours' reference forecasts) beside the one the
  run's forecasts then make.

Usage::

    .venv/bin/python benchmarks/bench_online_bias.py refs --checkpoint POOL.safetensors \\
        --start 2019-03-19T00 --stop 2019-03-30T23 --out runs/bias/refs.npz
    .venv/bin/python benchmarks/bench_online_bias.py score --refs runs/bias/refs.npz \\
        --model snap-s0-7 runs/cvk/eval-test runs/cvk/eval-val
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

sys.path.insert(0, str(Path(__file__).parent))

from paired_difference import ensemble_path, over_all_leads, percent

from forecast.data import context_of, open_dataset
from forecast.dims import INIT_TIME, LAT, LEAD_TIME, LON, MEMBER, TIME
from forecast.errors import ForecastError
from forecast.export import open_ensemble
from forecast.models import issue_seed, load_model
from forecast.scoring import crps_ensemble, obs_for
from forecast.scoring.significance import compare_scores


def reference_means(args: argparse.Namespace) -> None:
    """Write the hourly reference-forecast means ``(hour, lead, lat, lon)`` and their times."""
    from tqdm.auto import tqdm

    ds = open_dataset(args.data)
    model = load_model(args.checkpoint)
    times = pd.date_range(args.start, args.stop, freq="1h")
    means, start = [], time.perf_counter()
    for t in tqdm(times, desc="reference forecasts"):
        ens = model.sample(context_of(ds, t, model.context), args.members, seed=issue_seed(0, t))
        means.append(ens[args.variable].transpose(MEMBER, LEAD_TIME, LAT, LON).values.mean(0))
    np.savez(args.out, means=np.stack(means).astype(np.float32), times=times.values)
    each = (time.perf_counter() - start) / len(times)
    print(f"wrote {args.out}: {len(times)} hours, {each:.2f} s each")


def bias(
    truth: xr.DataArray, means: np.ndarray, index: dict, t: pd.Timestamp, horizon: int, history: int
) -> tuple[np.ndarray, np.ndarray]:
    """Summed errors ``(lead, lat, lon)`` of the reference forecasts verified by ``t`` and
    their number per lead."""
    total = np.zeros((horizon, *means.shape[2:]))
    count = np.zeros(horizon)
    for k in range(1, history + 1):
        s = t - pd.Timedelta(hours=k)
        if s not in index:
            raise ForecastError(f"no reference forecast at {s}; run `refs` from an earlier --start")
        for lead in range(1, min(k, horizon) + 1):  # s + lead <= t
            obs = truth.sel({TIME: s + pd.Timedelta(hours=lead)}).values
            total[lead - 1] += obs - means[index[s], lead - 1]
            count[lead - 1] += 1
    return total, count


def score(args: argparse.Namespace) -> None:
    """Print the CRPS of each bias correction against none, per run."""
    stored = np.load(args.refs)
    index = {pd.Timestamp(t): i for i, t in enumerate(stored["times"])}
    means = stored["means"]
    for folder in args.runs:
        run = Path(folder)
        meta = json.loads((run / "run.json").read_text())
        ds = open_dataset(meta["protocol"]["dataset"])
        ens = open_ensemble(ensemble_path(run, args.model, meta))[[args.variable]].load()
        horizon = ens.sizes[LEAD_TIME]
        sums = [
            bias(ds[args.variable], means, index, pd.Timestamp(t), horizon, args.history)
            for t in ens[INIT_TIME].values
        ]
        total = np.stack([s[0] for s in sums])[:, None]  # (init, 1 member, lead, lat, lon)
        count = np.stack([s[1] for s in sums])[:, None, :, None, None]
        obs = obs_for(ens, ds)
        scores = {"none": crps_ensemble(obs, ens, dim=[LAT, LON])[args.variable]}
        for kind in ("point", "domain"):
            for w in args.weights:
                b = total / (count + w)
                if kind == "domain":
                    b = b.mean(axis=(-2, -1), keepdims=True)
                moved = ens.copy()
                moved[args.variable] = (
                    ens[args.variable].transpose(INIT_TIME, MEMBER, LEAD_TIME, LAT, LON) + b
                )
                scores[f"{kind} w={w:g}"] = crps_ensemble(obs, moved, dim=[LAT, LON])[args.variable]
        print(f"{run} ({ens.sizes[INIT_TIME]} issue times), {args.model}:")
        # the sign check: the recent error the correction carries in (w = 0, domain mean)
        # against the error the run's own forecasts then make (ensemble mean, domain mean)
        carried = (total / np.maximum(count, 1)).mean(axis=(0, 1, 3, 4))
        made = (obs[args.variable] - ens[args.variable].mean(MEMBER)).mean([INIT_TIME, LAT, LON])
        for hours in (6, 12, 24):
            if hours <= horizon:
                print(
                    f"  {hours} h: mean error of the last {args.history} h's reference forecasts "
                    f"{carried[hours - 1]:+.2f}, of the run's forecasts "
                    f"{float(made.isel({LEAD_TIME: hours - 1})):+.2f} (observation minus forecast)"
                )
        base = scores["none"]
        for name, s in scores.items():
            row = f"  {name:12s} CRPS {float(s.mean()):.4f}"
            if name != "none":
                whole = percent(
                    compare_scores(over_all_leads(s), over_all_leads(base)).isel({LEAD_TIME: 0})
                )
                row += (
                    f" ({whole['relative_difference']:+.2f} %, {whole['ci_lower']:+.2f} to "
                    f"{whole['ci_upper']:+.2f} %)"
                )
            print(row)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="step", required=True)
    refs = sub.add_parser("refs", help="hourly reference-forecast means of a bare model")
    refs.add_argument("--checkpoint", required=True)
    refs.add_argument("--data", default="era5-uk-t2m")
    refs.add_argument("--start", required=True)
    refs.add_argument("--stop", required=True)
    refs.add_argument("--members", type=int, default=32)
    refs.add_argument("--out", required=True)
    run = sub.add_parser("score", help="score bias-corrected ensembles of protocol runs")
    run.add_argument("runs", nargs="+")
    run.add_argument("--refs", required=True)
    run.add_argument("--model", required=True)
    run.add_argument("--history", type=int, default=72)
    run.add_argument("--weights", type=float, nargs="+", default=[0, 24, 72, 144])
    for p in (refs, run):
        p.add_argument("--variable", default="t2m")
    args = parser.parse_args(argv)
    reference_means(args) if args.step == "refs" else score(args)


if __name__ == "__main__":
    try:
        main()
    except ForecastError as err:
        sys.exit(f"error: {err}")
