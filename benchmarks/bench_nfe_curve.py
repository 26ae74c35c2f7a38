"""CRPS against the number of network evaluations (NFE) of a trained diffusion checkpoint.

Samples every test issue time of the data set's protocol (or the first ``--max-issues``) with
each sampler and NFE, the same members (same seed, so the same initial noise) for every
setting, and prints per setting: the mean CRPS over issue times and space per lead, the mean
over leads, the ratio to the same sampler's largest NFE and to the reference setting
(``--reference``, default ``dpmpp-2m`` at the largest NFE), the network evaluations one run
costs and the seconds per network evaluation (wall time / (issue times x evaluations), all
members in one batch). ``--json`` also writes the figures to a file; ``--from-json A.json
B.json ...`` prints the table of several such files together (one curve split over parallel
runs with the same data, checkpoint, members and seed).

Usage::

    .venv/bin/python benchmarks/bench_nfe_curve.py --data era5-uk-t2m \
        --checkpoint outputs/final/diffusion-era5-uk-t2m/model.safetensors \
        --members 16 --threads 1 --samplers dpmpp-2m ddim --nfe 5 10 20 50 100
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="era5-uk-t2m", help="named data set (its protocol's test)")
    p.add_argument("--checkpoint", help="trained diffusion checkpoint")
    p.add_argument("--members", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--max-issues", type=int, default=None, help="use the first N test windows")
    p.add_argument("--samplers", nargs="+", default=["dpmpp-2m", "ddim"])
    p.add_argument("--nfe", type=int, nargs="+", default=[5, 10, 20, 50, 100])
    p.add_argument(
        "--heun-nfe",
        type=int,
        nargs="*",
        default=[],
        help="also run heun at these NFE budgets (2 evaluations per step)",
    )
    p.add_argument("--reference", default="dpmpp-2m", help="sampler of the reference setting")
    p.add_argument("--json", type=Path, help="write the figures here")
    p.add_argument("--from-json", type=Path, nargs="+", help="print the table of these files")
    args = p.parse_args()
    if args.from_json:
        merged(args.from_json, args.reference)
        return
    if not args.checkpoint:
        p.error("--checkpoint is required")
    torch.set_num_threads(args.threads)

    from forecast.data import open_dataset
    from forecast.data.protocols import PROTOCOLS, get_protocol
    from forecast.dims import INIT_TIME, LEAD_TIME, TIME, space_dims
    from forecast.models import forecast_many
    from forecast.pipeline import load_checked
    from forecast.sampling.samplers import get_sampler
    from forecast.scoring import crps_ensemble, obs_for, spread_skill_ratio

    ds = open_dataset(args.data)
    proto = next(get_protocol(n) for n in PROTOCOLS.names() if get_protocol(n).dataset == args.data)
    if ds.sizes[TIME] != proto.n_steps:
        proto = proto.resized(ds.sizes[TIME])
    model = load_checked("diffusion", args.checkpoint, proto, ds)
    issues = proto.windows(ds, "test").issue_times(ds)
    if args.max_issues:
        issues = issues[: args.max_issues]
    if len(issues) < 2:
        p.error("need at least 2 issue times")
    dims = [INIT_TIME, *space_dims(ds)]
    settings = [(s, n) for s in args.samplers for n in args.nfe]
    settings += [("heun", n) for n in args.heun_nfe]
    print(
        f"{proto.name} on {args.data}: {len(issues)} test issue times, {args.members} members, "
        f"seed {args.seed}, threads {args.threads}, checkpoint {args.checkpoint}"
    )
    rows = []
    leads = None
    for sampler, nfe in settings:
        evals = get_sampler(sampler, nfe).nfe_used
        t0 = time.perf_counter()
        ens = forecast_many(model.with_sampler(sampler, nfe), ds, issues, args.members, args.seed)
        took = time.perf_counter() - t0
        obs = obs_for(ens, ds)
        crps = crps_ensemble(obs, ens, dim=dims)
        ssr = spread_skill_ratio(obs, ens, dim=dims)
        per_lead = np.mean([crps[v].values for v in crps.data_vars], axis=0)
        ssr_lead = np.mean([ssr[v].values for v in ssr.data_vars], axis=0)
        leads = (ens[LEAD_TIME].values / np.timedelta64(1, "m")).astype(int)
        rows.append(
            {
                "sampler": sampler,
                "nfe": nfe,
                "evaluations": evals,
                "crps_by_lead": per_lead.tolist(),
                "crps": float(per_lead.mean()),
                "spread_skill_by_lead": ssr_lead.tolist(),
                "seconds": took,
                "s_per_evaluation": took / (len(issues) * evals),
            }
        )
        print(
            f"  {sampler:>9} NFE {nfe:3d} ({evals:3d} evaluations): mean CRPS "
            f"{per_lead.mean():.4f}, {took:7.1f} s, "
            f"{rows[-1]['s_per_evaluation'] * 1e3:.1f} ms / evaluation of {args.members} "
            f"members",
            flush=True,
        )
    assert leads is not None
    table(rows, leads, args.reference)
    if args.json:
        payload = {
            "data": args.data,
            "protocol": proto.name,
            "checkpoint": str(args.checkpoint),
            "members": args.members,
            "seed": args.seed,
            "threads": args.threads,
            "n_issue_times": len(issues),
            "leads_min": leads.tolist(),
            "rows": rows,
        }
        args.json.write_text(json.dumps(payload, indent=1) + "\n")
        print(f"wrote {args.json}")


def table(rows: list[dict], leads: np.ndarray, reference: str) -> None:
    """Print the Markdown table of ``rows`` (adds the two ratio columns to each row)."""
    pick = [i for i, lead in enumerate(leads) if lead in _report_leads(leads)]
    ref_rows = [r for r in rows if r["sampler"] == reference]
    ref = max(ref_rows or rows, key=lambda r: r["nfe"])
    print(f"\nreference: {ref['sampler']} NFE {ref['nfe']} (mean CRPS {ref['crps']:.4f})")
    head = " | ".join(_fmt_lead(leads[i]) for i in pick)
    print(f"\n| sampler | NFE | evals | {head} | mean | / own max NFE | / reference | ms/eval |")
    print("|---" * (len(pick) + 7) + "|")
    for r in rows:
        own = max((q for q in rows if q["sampler"] == r["sampler"]), key=lambda q: q["nfe"])
        r["ratio_own_max"] = r["crps"] / own["crps"]
        r["ratio_reference"] = r["crps"] / ref["crps"]
        vals = " | ".join(f"{r['crps_by_lead'][i]:.3f}" for i in pick)
        print(
            f"| {r['sampler']} | {r['nfe']} | {r['evaluations']} | {vals} | {r['crps']:.4f} | "
            f"{r['ratio_own_max']:.4f} | {r['ratio_reference']:.4f} | "
            f"{r['s_per_evaluation'] * 1e3:.1f} |"
        )


def merged(paths: list[Path], reference: str) -> None:
    """Print one table from several ``--json`` files of the same curve."""
    parts = [json.loads(Path(path).read_text()) for path in paths]
    keys = ("data", "checkpoint", "members", "seed", "n_issue_times", "leads_min")
    for part in parts[1:]:
        for key in keys:
            if part[key] != parts[0][key]:
                raise SystemExit(f"{key} differs between the files: {part[key]} vs {parts[0][key]}")
    first = parts[0]
    print(
        f"{first['protocol']} on {first['data']}: {first['n_issue_times']} test issue times, "
        f"{first['members']} members, seed {first['seed']}, checkpoint {first['checkpoint']}"
    )
    rows = sorted(
        (r for part in parts for r in part["rows"]),
        key=lambda r: (r["sampler"] != reference, r["sampler"], r["nfe"]),
    )
    table(rows, np.asarray(first["leads_min"]), reference)


def _report_leads(leads: np.ndarray) -> list[int]:
    """Leads to print: 1, 3, 6, 12, 24 h for hourly data; 15, 30, 45, 60 min for 5-minute."""
    step = int(leads[0])
    wanted = [60, 180, 360, 720, 1440] if step >= 60 else [15, 30, 45, 60]
    out = [w for w in wanted if w in leads]
    return out or [int(leads[0]), int(leads[-1])]


def _fmt_lead(minutes: int) -> str:
    return f"{minutes // 60}h" if minutes % 60 == 0 else f"{minutes}min"


if __name__ == "__main__":
    main()
