"""Benchmark of the conditional VAE: training time, sampling speed, latent usage, latent-path
smoothness and skill against the baselines on a protocol's test issue times.

Usage::

    .venv/bin/python benchmarks/bench_vae.py --data synthetic-weather \
        --config data/configs/vae-grid.toml --threads 2 --out runs/bench-vae-sw

Prints measured figures only (nothing is hard-coded). Skill: the VAE and the baselines
(persistence, climatology, diurnal-persistence and the GP of :mod:`forecast.models.gp`, default
settings, as the protocol runner fits it) forecast the same test issue times with the same
member count; scored with :func:`forecast.scoring.scorecard` (CRPS, spread-skill ratio,
rank-histogram flatness by lead time).

``--load CKPT --recalibrate train+valid|cross-fit`` refits the spread factors of a trained
checkpoint on other windows, ``--objective spread-skill`` by another objective
(:meth:`forecast.models.vae.ConditionalVAE.recalibrate`) before scoring;
``--save`` writes the model as scored.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch


def path_smoothness(model, context, steps: int = 20, seed: int = 0) -> dict[str, float]:
    """Largest step-to-step change of the decoded field along a slerp path between two prior
    members, relative to the difference between its ends (RMS over the field); 1/(steps-1) is
    the smallest possible value (evenly spaced changes)."""
    from forecast.sampling import latent_path
    from forecast.sampling.paths import largest_step, variance_ratio

    eps = model.prior(context, 2, seed=seed)
    path = latent_path(model, context, eps[0], eps[1], steps=steps)
    var = model.variables[0]
    ratio = variance_ratio(path[[var]], context[[var]].isel(time=-1))[var].values
    return {
        "max_step_over_end": float(largest_step(path[[var]])[var]),
        "even_spacing": 1.0 / (steps - 1),
        "min_variance_ratio": float(ratio.min()),
        "max_variance_ratio": float(ratio.max()),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="synthetic-weather")
    p.add_argument("--config", help="TOML with [model] and [train] tables")
    p.add_argument("--out", default=None, help="checkpoint folder (default runs/bench-vae-DATA)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--members", type=int, default=50)
    p.add_argument("--max-minutes", type=float, default=None)
    p.add_argument("--max-issues", type=int, default=None, help="score at most this many issues")
    p.add_argument("--load", help="skip training: load this checkpoint")
    p.add_argument("--no-scores", action="store_true", help="stop after speed and latent path")
    p.add_argument(
        "--recalibrate",
        choices=("valid", "train+valid", "cross-fit"),
        help="refit the spread factors on these windows before scoring (cross-fit trains the "
        "calibration_folds fold models of the checkpoint's configuration first)",
    )
    p.add_argument(
        "--objective",
        choices=("crps", "spread-skill"),
        help="refit the spread factors by this objective before scoring (with --recalibrate: "
        "on those windows; else on the model's)",
    )
    p.add_argument("--save", help="write the model as scored to this checkpoint path")
    p.add_argument("--all-leads", action="store_true", help="print every lead time")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    from forecast.commands.train import build_model, protocol_for
    from forecast.data import open_dataset
    from forecast.data.windows import context_of
    from forecast.models import MODELS, forecast_many, load_model
    from forecast.scoring import scorecard
    from forecast.training.config import load_toml

    ds = open_dataset(args.data)
    proto = protocol_for(args.data, ds, None, None)
    train, valid = proto.split(ds, "train"), proto.split(ds, "val")
    print(
        f"data {args.data}: sizes {dict(ds.sizes)}; protocol {proto.name} "
        f"(context {proto.context}, horizon {proto.horizon}); torch threads {args.threads}"
    )
    if args.load:
        model = load_model(args.load)
        print(f"loaded {args.load}")
    else:
        cfg = load_toml(args.config) if args.config else {"model": {}, "train": {}}
        train_kw = dict(cfg["train"])
        if args.max_minutes is not None:
            train_kw["max_minutes"] = args.max_minutes
        model = build_model("vae", proto.context, proto.horizon, cfg["model"], train_kw)
        out = Path(args.out or f"runs/bench-vae-{args.data}")
        t0 = time.perf_counter()
        model.fit(train, valid, out_dir=out)
        fit_s = time.perf_counter() - t0
        info = model.training
        print(
            f"training: {fit_s:.1f} s wall, {info['step']} steps, stopped: {info['stopped']}, "
            f"best val CRPS (normalized) {info['best_score']} at step {info['best_step']}; "
            f"setup (first guess, windows) {info.get('setup_seconds')} s; load average "
            f"{os.getloadavg()[0]:.2f}"
        )
        best = out / "best.safetensors"
        if best.is_file():
            model = load_model(best)
            print(f"using best checkpoint {best}")
    if args.recalibrate or args.objective:
        t0 = time.perf_counter()
        model.recalibrate(train, valid, args.recalibrate, args.objective)
        print(
            f"spread factors refitted on {model.calibration} windows by "
            f"{model.calibration_objective} in {time.perf_counter() - t0:.1f} s"
        )
    if args.save:
        Path(args.save).parent.mkdir(parents=True, exist_ok=True)
        model.save(args.save)
        print(f"saved {args.save}")
    print(f"config: {model.config()}")
    usage = model.training.get("latent", {})
    print(
        f"latent: shape {model.latent_shape()}, active units {usage.get('active_units')} / "
        f"{usage.get('latent_units')} (KL > {usage.get('threshold')} nats), KL per channel "
        f"{usage.get('kl_per_channel')}, total KL {usage.get('kl_total')} nats/window"
    )

    factor = getattr(model, "spread_factor", None)
    if factor is not None:
        print(
            "spread factors by lead (fitted on validation): "
            + " ".join(f"{v:.2f}" for v in np.asarray(factor)[0])
        )
    else:
        print("spread factors: none (no spread calibration)")

    test_windows = proto.windows(ds, "test")
    issues = test_windows.issue_times(ds)
    if args.max_issues:
        issues = issues[np.linspace(0, len(issues) - 1, args.max_issues).astype(int)]
    ctx = context_of(ds, issues[0], model.context)
    model.sample(ctx, args.members, seed=0)  # warm-up
    times = []
    for k in range(5):
        t0 = time.perf_counter()
        model.sample(ctx, args.members, seed=k)
        times.append(time.perf_counter() - t0)
    print(
        f"sampling {args.members} members, one issue time: median {np.median(times):.3f} s, "
        f"min {min(times):.3f} s over 5 runs ({args.members / np.median(times):.0f} members/s)"
    )
    smooth = path_smoothness(model, ctx)
    print(
        "latent path (20 points, slerp between two prior members): largest step / end "
        f"difference {smooth['max_step_over_end']:.4f} (even spacing "
        f"{smooth['even_spacing']:.4f}); anomaly variance ratio along the path "
        f"{smooth['min_variance_ratio']:.3f}..{smooth['max_variance_ratio']:.3f}"
    )
    if args.no_scores:
        return

    forecasts = {}
    t0 = time.perf_counter()
    forecasts["vae"] = forecast_many(model, ds, issues, args.members, seed=0)
    print(f"vae forecasts for {len(issues)} issue times: {time.perf_counter() - t0:.1f} s")
    for name in ("persistence", "climatology", "diurnal-persistence", "gp"):
        t0 = time.perf_counter()
        with torch.random.fork_rng():  # as forecast.pipeline.run_protocol fits it (seed 0)
            torch.manual_seed(0)
            base = MODELS.get(name)(context=proto.context, horizon=proto.horizon).fit(train, valid)
        forecasts[name] = forecast_many(base, ds, issues, args.members, seed=0)
        print(f"{name}: fit + forecasts {time.perf_counter() - t0:.1f} s")
    card = scorecard(
        forecasts, ds, metrics=("crps", "spread_skill", "rank_flatness"), progress=False
    )
    var = model.variables[0]
    table = card[var]
    leads = table["lead_time"].values
    hours = [float(v / np.timedelta64(1, "m")) for v in leads]
    pick = (
        [i for i, _ in enumerate(hours)]
        if len(hours) <= 12 or args.all_leads
        else [i for i, h in enumerate(hours) if h / 60 in (1, 3, 6, 12, 24)]
    )
    print(f"\nscores on {len(issues)} test issue times, {args.members} members ({var}):")
    for metric in ("crps", "spread_skill", "rank_flatness"):
        print(f"{metric:>14} | " + " ".join(f"{hours[i]:>7.0f}m" for i in pick) + " |    mean")
        for m in table["model"].values:
            row = table.sel(model=m, metric=metric).values
            print(
                f"{m:>14} | "
                + " ".join(f"{row[i]:8.4f}" for i in pick)
                + f" | {np.nanmean(row):7.4f}"
            )
    crps = table.sel(metric="crps")
    best_base = crps.drop_sel(model="vae").min("model")
    below = (crps.sel(model="vae") < best_base).values
    print(
        f"vae CRPS below the best baseline at {int(below.sum())} of {len(below)} leads; "
        f"mean relative to best baseline {float((crps.sel(model='vae') / best_base).mean()):.3f}"
    )
    for name in crps["model"].values:
        if name != "vae":
            n = int((crps.sel(model="vae") < crps.sel(model=name)).values.sum())
            print(f"  below {name} at {n} of {len(below)} leads")
    ss = table.sel(model="vae", metric="spread_skill").values
    ok = (ss >= 0.8) & (ss <= 1.2)
    print(
        f"vae spread-skill {np.nanmin(ss):.2f}..{np.nanmax(ss):.2f}, within 0.8-1.2 at "
        f"{int(ok.sum())} of {len(ss)} leads"
    )


if __name__ == "__main__":
    main()
