"""Print the docs/results.md tables of a protocol run folder (written by run_protocol).

Usage::

    .venv/bin/python benchmarks/results_tables.py outputs/p2-baselines

Models that joined the run as checkpoints (``forecast evaluate --checkpoint LABEL=PATH``) are
listed with their file, kind, checksum and sampler, and appear in the tables under LABEL.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import xarray as xr

from forecast.dims import LEAD_TIME, METRIC
from forecast.scoring.scorecard import to_markdown

COLUMNS = [
    "crps",
    "crps_fair",
    "rmse",
    "mae_median",
    "spread_skill",
    "rank_flatness",
    "crps_gaussian",
]


def main(folder: str) -> None:
    out = Path(folder)
    if not (out / "scorecard.nc").is_file() or not (out / "run.json").is_file():
        raise SystemExit(
            f"{folder} holds no protocol run (scorecard.nc and run.json); pass the --out folder "
            "of `forecast evaluate --protocol ...`"
        )
    card = xr.open_dataset(out / "scorecard.nc").load()
    run = json.loads((out / "run.json").read_text())
    cols = [c for c in COLUMNS if c in card[METRIC].values]
    card = card.sel({METRIC: cols})
    print(
        f"protocol {run['protocol']['name']}, {run['members']} members, seed {run['seed']}, "
        f"{run['n_issue_times']} issue times, wall {run['wall_s']:.1f} s"
    )
    for name, t in run["timings_s"].items():
        print(f"- {name}: " + ", ".join(f"{k} {v:.2f} s" for k, v in t.items()))
    for label, ckpt in run.get("checkpoints", {}).items():
        config = ckpt.get("config", {})
        picked = {k: config[k] for k in ("target", "damp_anomaly", "sampler", "nfe") if k in config}
        print(
            f"- {label}: checkpoint {ckpt['path']} ({ckpt['kind']}, sha256 {ckpt['sha256'][:12]}"
            + "".join(f", {k} {v}" for k, v in picked.items())
            + ")"
        )
    print("\nMean over lead times:\n")
    mean = card.mean(LEAD_TIME).expand_dims({LEAD_TIME: ["all"]})
    print(to_markdown(mean.transpose(*card.dims), digits=4))
    print("Per lead time:\n")
    print(to_markdown(card, digits=4))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="the --out folder of a `forecast evaluate --protocol` run")
    main(parser.parse_args().folder)
