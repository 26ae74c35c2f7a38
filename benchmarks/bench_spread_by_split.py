"""Spread-skill ratio and RMSE of trained models on the training, validation and test windows.

Spread factors fitted on a few calm validation days can leave a model under-dispersed on a
stormier test week. This prints, for each checkpoint and split of a protocol, the spread-skill
ratio ``sqrt((M+1)/M) * spread / RMSE(ensemble mean)`` and the RMSE of the ensemble mean,
pooled over windows, points and the lead bands given. The windows of every split are issued at
the protocol's hours (``hours`` of the protocol); on the training split the model is in-sample.

Usage::

    .venv/bin/python benchmarks/bench_spread_by_split.py --protocol P2 \\
        --checkpoint vae=outputs/final/vae-era5-uk-t2m-cf-s0/model.safetensors [--members 16]
"""

from __future__ import annotations

import argparse
import time

import torch

from forecast.data import get_protocol, open_dataset
from forecast.dims import LEAD_TIME
from forecast.models import load_model
from forecast.models.base import forecast_many
from forecast.scoring import obs_for, rmse_ensemble_mean, spread_skill_ratio


def band_scores(ens, truth, bands: list[tuple[int, int]]) -> list[tuple[float, float]]:
    """``(spread-skill, RMSE)`` per lead band ``(first, last)`` (1-based lead steps), pooled
    over issue times, lead times and points (one forecast variable)."""
    obs = obs_for(ens, truth)
    out = []
    for lo, hi in bands:
        sel = {LEAD_TIME: slice(lo - 1, hi)}
        o, f = obs.isel(sel), ens.isel(sel)
        (name,) = list(f.data_vars)
        out.append((float(spread_skill_ratio(o, f)[name]), float(rmse_ensemble_mean(o, f)[name])))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--protocol", default="P2")
    p.add_argument("--checkpoint", action="append", required=True, metavar="NAME=PATH")
    p.add_argument("--members", type=int, default=16)
    p.add_argument("--bands", default="1-6,7-12,13-24", help="lead bands in steps, e.g. 1-6,7-12")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    proto = get_protocol(args.protocol)
    ds = open_dataset(proto.dataset)
    bands = [tuple(int(x) for x in b.split("-")) for b in args.bands.split(",")]
    print(f"protocol {proto.name}, {args.members} members, issue hours {proto.hours}")
    print("model | split | windows | " + " | ".join(f"{a}-{b}: SSR, RMSE" for a, b in bands))
    for spec in args.checkpoint:
        name, path = spec.split("=", 1)
        model = load_model(path)
        for split in ("train", "val", "test"):
            times = proto.windows(ds, split, hours=proto.hours).issue_times(ds)
            t0 = time.perf_counter()
            ens = forecast_many(model, ds, times, args.members, seed=0)
            cells = [f"{s:.2f}, {r:.2f}" for s, r in band_scores(ens, ds, bands)]
            print(
                f"{name} | {split} | {len(times)} | "
                + " | ".join(cells)
                + f"  ({time.perf_counter() - t0:.0f} s)",
                flush=True,
            )


if __name__ == "__main__":
    main()
