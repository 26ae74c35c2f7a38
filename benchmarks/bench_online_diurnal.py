"""Spread-skill by issue hour, and a protocol run on the validation days at every issue hour.

Forecast errors at the first leads depend on the time of day (2 m temperature through the
morning warming is harder to forecast than at night), and a model's spread may not follow.
This benchmark shows it, and checks the online calibration's ``diurnal_width`` outside the test
week:

- ``hours RUN_DIR``: the spread-skill ratio per lead of every ensemble of a protocol run
  (``forecast evaluate --protocol``), over all issue times and per issue hour of day.
- ``hourly --split val --checkpoint NAME=PATH ... --out DIR``: the protocol run of the
  baselines and the given checkpoints on the protocol's validation days instead of its test
  days, with an issue time at every step whose 24-h target lies in them (P2: 48 issue times,
  03-22 00 UTC to 03-23 23 UTC). The training split is the protocol's, so the baselines are
  fitted as in a test run; the checkpoints chose their weights on 8 of these windows (early
  stopping), their spread on none of them (the online calibration uses only the hours before
  each issue time). ``--split test``: the test days with an issue time at every step (P2: 145
  instead of the protocol's 24 at 00 / 06 / 12 / 18 UTC).

Usage::

    .venv/bin/python benchmarks/bench_online_diurnal.py hours outputs/final/eval-p2-blend
    .venv/bin/python benchmarks/bench_online_diurnal.py hourly --split val --out DIR \\
        --checkpoint deep=MODEL.safetensors --checkpoint online=ONLINE.safetensors [--jobs 2]
    .venv/bin/python benchmarks/bench_online_diurnal.py hours DIR
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import xarray as xr

from forecast.data import get_protocol, open_dataset
from forecast.dims import INIT_TIME, LEAD_TIME, MEMBER
from forecast.export import open_ensemble
from forecast.pipeline import run_protocol
from forecast.scoring import obs_for, spread_skill_ratio

LEADS = (1, 2, 3, 4, 6, 12, 24)  # lead steps shown
BASELINES = "persistence,climatology,diurnal-persistence,gp"


def ratio_line(label: str, obs: xr.Dataset, ens: xr.Dataset, pick: np.ndarray) -> str:
    """One printed line: the spread-skill ratio per lead over the issue times ``pick``."""
    sel = {INIT_TIME: np.flatnonzero(pick)}
    pooled = [d for d in ens.dims if d not in (MEMBER, LEAD_TIME)]
    (name,) = list(ens.data_vars)
    r = spread_skill_ratio(obs.isel(sel), ens.isel(sel), dim=pooled)[name].values
    return f"  {label} ({pick.sum():3d}) " + " ".join(f"{v:.2f}" for v in r)


def by_hour(run: Path) -> None:
    """Print the spread-skill ratio by issue hour of every ensemble in ``run``."""
    meta = json.loads((run / "run.json").read_text())
    ds = open_dataset(meta["protocol"]["dataset"])
    print(f"{run}: spread-skill ratio at leads {', '.join(map(str, LEADS))} (steps)")
    for path in sorted((run / "ensembles").glob("*-m[0-9]*.nc")):  # not the GP's Gaussian
        ens = open_ensemble(path)
        ens = ens.isel({LEAD_TIME: [k - 1 for k in LEADS if k <= ens.sizes[LEAD_TIME]]})
        obs = obs_for(ens, ds)
        hours = ens[INIT_TIME].dt.hour.values
        print(path.name.split("-P")[0])
        print(ratio_line("all  ", obs, ens, np.ones(len(hours), dtype=bool)))
        for h in np.unique(hours):
            print(ratio_line(f"{h:02d} h ", obs, ens, hours == h))


def hourly_run(args: argparse.Namespace) -> None:
    """Run the protocol with an issue time at every step: on its test days (``--split test``)
    or with its validation days as the test days (``--split val``)."""
    proto = get_protocol(args.protocol)
    ds = open_dataset(proto.dataset)
    if args.split == "val":
        b, end = proto.val[1], proto.train[1]
        changes = {
            "val": (end, end + 1),  # a one-step stub: the run uses the training split only
            "test": (end + 1, b),
            "n_steps": b,
        }
        ds = ds.isel(time=slice(0, b))
    else:
        changes = {}
    shifted = dataclasses.replace(
        proto, name=f"{proto.name}-{args.split}-hourly", hours=None, test_stride=1, **changes
    )
    checkpoints = dict(spec.split("=", 1) for spec in args.checkpoint)
    run_protocol(
        shifted,
        [m for m in args.models.split(",") if m],
        args.out,
        members=args.members,
        seed=0,
        data=ds,
        checkpoints=checkpoints,
        jobs=args.jobs,
    )
    by_hour(Path(args.out))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="what", required=True)
    h = sub.add_parser("hours", help="spread-skill by issue hour of a protocol run's ensembles")
    h.add_argument("run", type=Path)
    v = sub.add_parser("hourly", help="a protocol run with an issue time at every step")
    v.add_argument("--split", choices=("val", "test"), default="val")
    v.add_argument("--protocol", default="P2")
    v.add_argument("--checkpoint", action="append", default=[], metavar="NAME=PATH")
    v.add_argument("--models", default=BASELINES)
    v.add_argument("--members", type=int, default=50)
    v.add_argument("--jobs", type=int, default=1)
    v.add_argument("--out", required=True)
    args = p.parse_args()
    if args.what == "hours":
        by_hour(args.run)
    else:
        hourly_run(args)


if __name__ == "__main__":
    main()
