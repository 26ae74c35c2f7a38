"""Print the docs/results.md tables of a protocol run folder (written by run_protocol).

Usage::

    .venv/bin/python benchmarks/results_tables.py outputs/p2-baselines

Models that joined the run as checkpoints (``forecast evaluate --checkpoint LABEL=PATH``) are
listed with their file, kind, checksum and sampler, and appear in the tables under LABEL; a last
table counts, for each of them, the leads where its CRPS is below every baseline the run
trained itself and, where the run wrote ``significance.csv``, at how many leads it is
significantly better / not significantly different / significantly worse than the best baseline
(95 % Diebold-Mariano intervals) and whether its spread-skill interval overlaps 0.8-1.2
(docs/scoring.md).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd
import xarray as xr

from forecast.dims import LEAD_TIME, METRIC, MODEL
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
    sig = out / "significance.csv"
    table = pd.read_csv(sig) if sig.is_file() else None
    against_baselines(card, list(run["models"]), list(run.get("checkpoints", {})), table)


def against_baselines(
    card: xr.Dataset, baselines: list[str], models: list[str], table: pd.DataFrame | None = None
) -> None:
    """Per checkpoint model: leads below every baseline of the run, the range of its CRPS over
    the best baseline's, its spread-skill range (leads within 0.8-1.2) and, with ``table``
    (``significance.csv``), the leads significantly better / not different / worse."""
    if not baselines or not models or "crps" not in card[METRIC].values:
        return
    print("Checkpoints against the run's baselines (" + ", ".join(baselines) + "):\n")
    for var in card.data_vars:
        crps = card[var].sel({METRIC: "crps"})
        best = crps.sel({MODEL: baselines}).min(MODEL)
        print(f"### {var}\n")
        head = ["model", "leads below every baseline", "CRPS / best baseline"]
        head.append("spread-skill (leads in 0.8-1.2)")
        has_ssr = table is not None and "dispersion" in table.columns
        if table is not None:
            head.append("significantly better / not significant / worse")
        if has_ssr:
            head.append("spread-skill consistent / under- / over-dispersed")
        print("| " + " | ".join(head) + " |")
        print("|---|---:|" + "---|" * (len(head) - 2))
        for name in models:
            ratio = (crps.sel({MODEL: name}) / best).values
            cells = [
                f"{int((ratio < 1).sum())} of {ratio.size}",
                f"{ratio.min():.3f}-{ratio.max():.3f}",
            ]
            if "spread_skill" in card[METRIC].values:
                ssr = card[var].sel({METRIC: "spread_skill", MODEL: name}).values
                inside = int(((ssr >= 0.8) & (ssr <= 1.2)).sum())
                cells.append(f"{ssr.min():.2f}-{ssr.max():.2f} ({inside})")
            if table is not None:
                rows = table[(table["model"] == name) & (table["variable"] == var)]
                counts = rows["verdict"].value_counts()
                verdicts = ("better", "not significant", "worse")
                cells.append(" / ".join(str(counts.get(v, 0)) for v in verdicts))
            if has_ssr:
                spread = rows["dispersion"].value_counts()
                kinds = ("consistent", "under-dispersed", "over-dispersed")
                cells.append(" / ".join(str(spread.get(k, 0)) for k in kinds))
            print(f"| {name} | " + " | ".join(cells) + " |")
        print()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="the --out folder of a `forecast evaluate --protocol` run")
    main(parser.parse_args().folder)
