"""Skill of a trained diffusion checkpoint against the baselines, on a protocol's test windows.

Prints, in one run and on the same windows and members:

1. CRPS per lead of ``diffusion`` and the baselines (persistence, climatology,
   diurnal-persistence, fitted on the train split here), the spread-skill ratio per lead, the
   rank-histogram flatness (about 1 for a calibrated ensemble) and the RMSE of the ensemble
   mean (and of a residual checkpoint's first guess alone);
2. the CRPS-vs-NFE curve of ``ddim`` and ``dpmpp-2m`` (on the first ``--nfe-issues`` windows);
3. the DDIM-inversion reconstruction error ``|decode(encode(x)) - x| / |x - last context|``
   (mean absolute values) on test targets;
4. the variance ratio along a slerp latent path between two members, against a straight blend
   of the two decoded fields (and writes a figure with ``--figure``).

Usage::

    .venv/bin/python benchmarks/bench_diffusion_skill.py --data era5-uk-t2m \
        --checkpoint runs/diffusion-p2/best.safetensors [--members 50] [--threads 2]

For the full scorecard through the protocol runner use ``forecast.pipeline.run_protocol``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="era5-uk-t2m")
    p.add_argument(
        "--checkpoint",
        nargs="+",
        help="trained diffusion checkpoint(s) (required unless --ablation); with several, all are "
        "scored on the same windows (labelled by --labels) and the first one is used for the "
        "NFE, inversion and latent-path parts",
    )
    p.add_argument("--labels", nargs="*", help="names of the checkpoints in the tables")
    p.add_argument("--gp", action="store_true", help="also fit and score the GP baseline")
    p.add_argument(
        "--calibrate",
        action="store_true",
        help="also score each checkpoint after ConditionalDiffusion.calibrate_spread_on(val split)"
        " (labelled LABEL+cal)",
    )
    p.add_argument(
        "--ablation",
        type=int,
        metavar="STEPS",
        help="instead: train two small models (target change vs raw) for STEPS steps on a small "
        "synthetic-weather grid and compare their test CRPS",
    )
    p.add_argument("--members", type=int, default=50)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-issues", type=int, default=None, help="use the first N test windows")
    p.add_argument("--nfe", type=int, nargs="*", default=[5, 10, 20, 50, 100])
    p.add_argument("--nfe-issues", type=int, default=4, help=">= 2")
    p.add_argument("--nfe-members", type=int, default=20)
    p.add_argument("--invert-issues", type=int, default=8)
    p.add_argument("--figure", help="write the latent-path figure (PNG) here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.ablation:
        ablation(args.ablation, args.members)
        return
    if not args.checkpoint:
        p.error("--checkpoint is required")

    from forecast.data import open_dataset
    from forecast.data.protocols import PROTOCOLS, get_protocol
    from forecast.data.windows import context_of, target_of
    from forecast.dims import INIT_TIME, LEAD_TIME, MEMBER, PATH, TIME, space_dims
    from forecast.models import forecast_many, load_model
    from forecast.models.baselines import (
        ClimatologyEnsemble,
        DiurnalPersistenceEnsemble,
        PersistenceEnsemble,
    )
    from forecast.sampling.paths import blend_path, latent_path, variance_ratio
    from forecast.scoring import (
        crps_ensemble,
        flatness,
        obs_for,
        rank_histogram,
        spread_skill_ratio,
    )

    ds = open_dataset(args.data)
    proto = next(get_protocol(n) for n in PROTOCOLS.names() if get_protocol(n).dataset == args.data)
    if ds.sizes[TIME] != proto.n_steps:
        proto = proto.resized(ds.sizes[TIME])
    train, valid = proto.split(ds, "train"), proto.split(ds, "val")
    issues = proto.windows(ds, "test").issue_times(ds)
    if args.max_issues:
        issues = issues[: args.max_issues]
    labels = args.labels or [
        "diffusion" if len(args.checkpoint) == 1 else f"diffusion-{k}"
        for k in range(len(args.checkpoint))
    ]
    if len(labels) != len(args.checkpoint):
        p.error("--labels needs one name per checkpoint")
    taken = {"persistence", "climatology", "diurnal-persistence", "gp"} & set(labels)
    if taken:
        p.error(f"--labels {sorted(taken)} clash with baseline names; pick others")
    diffusion = {lab: load_model(c) for lab, c in zip(labels, args.checkpoint, strict=True)}
    if args.calibrate:
        for lab in list(diffusion):
            cal = load_model(args.checkpoint[labels.index(lab)])
            factors = cal.calibrate_spread_on(proto.split(ds, "val"))
            print(f"{lab}: spread factors by lead {np.round(factors[0], 2).tolist()}")
            diffusion[lab + "+cal"] = cal
    model = diffusion[labels[0]]
    var = model.variables[0]
    space = space_dims(ds)
    print(
        f"{proto.name} on {args.data}: {len(issues)} test issue times, {args.members} members, "
        f"sampler {model.sampler} NFE {model.nfe}, threads {args.threads}"
    )

    models = {
        **diffusion,
        "persistence": PersistenceEnsemble(context=proto.context, horizon=proto.horizon),
        "climatology": ClimatologyEnsemble(context=proto.context, horizon=proto.horizon),
        "diurnal-persistence": DiurnalPersistenceEnsemble(
            context=proto.context, horizon=proto.horizon
        ),
    }
    if args.gp:
        from forecast.models.gp import GaussianProcessForecaster

        models["gp"] = GaussianProcessForecaster(context=proto.context, horizon=proto.horizon)
    for name, m in models.items():
        if name not in diffusion:
            m.fit(train, valid)
    rows = {}
    for name, m in models.items():
        t = time.perf_counter()
        ens = forecast_many(m, ds, issues, args.members, seed=0)
        took = time.perf_counter() - t
        obs = obs_for(ens, ds)
        dims = [INIT_TIME, *space]
        crps = crps_ensemble(obs, ens, dim=dims)[var].values
        ssr = spread_skill_ratio(obs, ens, dim=dims)[var].values
        flat = float(flatness(rank_histogram(obs, ens, dim=[INIT_TIME, LEAD_TIME, *space]))[var])
        err = ens[var].mean(MEMBER) - obs[var]
        rmse = np.sqrt((err**2).mean(dims).values)
        rows[name] = (crps, ssr, flat, took, rmse)
    leads = (ens[LEAD_TIME].values / np.timedelta64(1, "m")).astype(int)
    pick = [i for i, lead in enumerate(leads) if lead in _report_leads(leads)]
    header = " ".join(f"{_fmt_lead(leads[i]):>8}" for i in pick)
    print(f"\nCRPS ({model.normalizer.units[var]}) by lead")
    print(f"{'model':>20} {header} {'mean':>8} {'sample s':>9}")
    for name, (crps, _, _, took, _) in rows.items():
        vals = " ".join(f"{crps[i]:8.3f}" for i in pick)
        print(f"{name:>20} {vals} {crps.mean():8.3f} {took:9.1f}")
    best = np.min([rows[n][0] for n in rows if n not in diffusion], axis=0)
    for lab in diffusion:
        vals = " ".join(f"{rows[lab][0][i] / best[i]:8.3f}" for i in pick)
        print(f"{(lab + ' / best')[-20:]:>20} {vals} {rows[lab][0].mean() / best.mean():8.3f}")
    print("\nspread-skill ratio by lead; rank-histogram flatness (about 1 when calibrated)")
    for name, (_, ssr, flat, _, _) in rows.items():
        vals = " ".join(f"{ssr[i]:8.3f}" for i in pick)
        print(f"{name:>20} {vals}   flatness {flat:.2f}")
    print(
        f"\nRMSE of the ensemble mean ({model.normalizer.units[var]}) by lead; 'fg': the "
        "checkpoint's deterministic first guess alone"
    )
    for name, (*_, rmse) in rows.items():
        vals = " ".join(f"{rmse[i]:8.3f}" for i in pick)
        print(f"{name:>20} {vals} {rmse.mean():8.3f}")
    for lab, m in diffusion.items():
        if getattr(m, "fg", None) is None or lab.endswith("+cal"):
            continue
        from forecast.data.torch import to_array

        at = np.searchsorted(ds[TIME].values, np.asarray(issues, dtype="datetime64[ns]"))
        fg = m.fg.predict(to_array(ds[m.variables]), ds[TIME].values, at)[:, :, 0]
        obs = np.stack([ds[var].values[i + 1 : i + 1 + m.horizon] for i in at])
        rmse = np.sqrt(np.nanmean((fg - obs) ** 2, axis=tuple(k for k in range(fg.ndim) if k != 1)))
        vals = " ".join(f"{rmse[i]:8.3f}" for i in pick)
        print(f"{(lab + ' fg')[-20:]:>20} {vals} {rmse.mean():8.3f}")

    if args.nfe:
        print(f"\nCRPS vs NFE ({args.nfe_issues} issue times, {args.nfe_members} members)")
        sub = issues[: max(2, args.nfe_issues)]  # obs_for drops a length-1 init_time
        for sampler in ("ddim", "dpmpp-2m"):
            out = []
            for nfe in args.nfe:
                ens = forecast_many(model.with_sampler(sampler, nfe), ds, sub, args.nfe_members, 0)
                out.append(float(crps_ensemble(obs_for(ens, ds), ens)[var]))
            ref = out[-1]
            print(
                f"{sampler:>9}: "
                + ", ".join(
                    f"NFE {n}: {c:.4f} ({100 * (c / ref - 1):+.1f}%)"
                    for n, c in zip(args.nfe, out, strict=True)
                )
            )

    fracs = []
    for t in issues[: args.invert_issues]:
        ctx, tgt = context_of(ds, t, model.context), target_of(ds, t, model.horizon)
        rec = model.decode(ctx, model.encode(ctx, tgt))[var].values[0]
        anomaly = tgt[var].values - ctx[var].values[-1]
        fracs.append(np.abs(rec - tgt[var].values).mean() / np.abs(anomaly).mean())
    if fracs:
        print(
            f"\ninversion (DDIM, {model.latent_nfe} steps, {model.invert_refine} refinements): "
            f"reconstruction error / anomaly = {np.mean(fracs):.4f} mean, {np.max(fracs):.4f} "
            f"max over {len(fracs)} test targets"
        )

    ctx = context_of(ds, issues[0], model.context)
    z = model.prior(ctx, 2, seed=11)
    path = latent_path(model, ctx, z[0], z[1], steps=9)
    last = ctx.isel({TIME: -1}, drop=True)
    r_slerp = variance_ratio(path, last)[var].values
    blend = blend_path(path.isel({PATH: 0}), path.isel({PATH: -1}), steps=9)
    r_blend = variance_ratio(blend, last)[var].values
    print("variance ratio along the path (t = 0 .. 1):")
    print("  slerp: " + " ".join(f"{v:.3f}" for v in r_slerp))
    print("  blend: " + " ".join(f"{v:.3f}" for v in r_blend))
    if args.figure:
        _figure(path, blend, r_slerp, r_blend, var, last, args.figure)
        print(f"figure written to {args.figure}")


def ablation(steps: int, members: int) -> None:
    """Target change vs raw, with and without per-lead scaling: same network, data, steps and
    seed; test CRPS by lead."""
    from forecast.data.synthetic import synthetic_weather
    from forecast.data.windows import make_windows
    from forecast.dims import INIT_TIME, TIME, space_dims
    from forecast.models import forecast_many
    from forecast.models.baselines import PersistenceEnsemble
    from forecast.models.diffusion import ConditionalDiffusion
    from forecast.scoring import crps_ensemble, obs_for

    ds = synthetic_weather(seed=0, n_lat=16, n_lon=24, days=30)
    n = ds.sizes[TIME]
    train, valid = (
        ds.isel({TIME: slice(0, int(0.7 * n))}),
        ds.isel({TIME: slice(int(0.7 * n), int(0.8 * n))}),
    )
    issues = make_windows(
        ds, 6, 12, target_range=(int(0.8 * n), n), hours=[0, 6, 12, 18]
    ).issue_times(ds)
    print(
        f"ablation on synthetic weather 16x24, {len(issues)} test issue times, {members} members, "
        f"{steps} steps each"
    )
    dims = [INIT_TIME, *space_dims(ds)]
    results = {}
    variants = {
        "change": ("change", True),
        "change-unscaled": ("change", False),
        "raw": ("raw", True),
    }
    for label, (target, scale_leads) in variants.items():
        t = time.perf_counter()
        m = ConditionalDiffusion(
            context=6,
            horizon=12,
            target=target,
            scale_leads=scale_leads,
            base=16,
            mults=(1, 2),
            train={
                "max_steps": steps,
                "batch_size": 16,
                "eval_every": 0,
                "progress": False,
                "warmup_steps": 20,
            },
        ).fit(train, valid)
        fit_s = time.perf_counter() - t
        ens = forecast_many(m, ds, issues, members, seed=0)
        results[label] = (crps_ensemble(obs_for(ens, ds), ens, dim=dims)["t2m"].values, fit_s)
    ens = forecast_many(
        PersistenceEnsemble(context=6, horizon=12).fit(train), ds, issues, members, 0
    )
    results["persistence"] = (crps_ensemble(obs_for(ens, ds), ens, dim=dims)["t2m"].values, 0.0)
    print(f"{'model':>16} " + " ".join(f"{h:>6}h" for h in (1, 3, 6, 12)) + "    mean   fit s")
    for name, (crps, fit_s) in results.items():
        vals = " ".join(f"{crps[h - 1]:7.3f}" for h in (1, 3, 6, 12))
        print(f"{name:>16} {vals} {crps.mean():7.3f} {fit_s:7.1f}")


def _report_leads(leads: np.ndarray) -> set[int]:
    """P2-style leads (1, 3, 6, 12, 24 h) when hourly, else every third lead and the last."""
    hours = {60, 180, 360, 720, 1440}
    if hours <= set(leads.tolist()):
        return hours
    return set(leads[2::3].tolist()) | {int(leads[-1])}


def _fmt_lead(minutes: int) -> str:
    return f"{minutes // 60}h" if minutes % 60 == 0 else f"{minutes}min"


def _figure(path, blend, r_slerp, r_blend, var, last, filename) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from forecast.dims import LEAD_TIME, PATH

    t = path[PATH].values
    n = len(t)
    fig, axes = plt.subplots(3, n, figsize=(1.6 * n, 5.6), constrained_layout=True)
    lead = -1
    a = (path[var].isel({LEAD_TIME: lead}) - last[var]).values
    b = (blend[var].isel({LEAD_TIME: lead}) - last[var]).values
    lim = np.abs(a).max()
    for k in range(n):
        for row, field in ((0, a[k]), (1, b[k])):
            ax = axes[row, k]
            if field.ndim == 2:
                ax.imshow(field, cmap="RdBu_r", vmin=-lim, vmax=lim)
            else:
                ax.plot(field)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0, k].set_title(f"t={t[k]:.2f}", fontsize=8)
    axes[0, 0].set_ylabel("slerp")
    axes[1, 0].set_ylabel("blend")
    gs = axes[2, 0].get_gridspec()
    for ax in axes[2]:
        ax.remove()
    ax = fig.add_subplot(gs[2, :])
    ax.plot(t, r_slerp, "o-", label="slerp of latents")
    ax.plot(t, r_blend, "s--", label="straight blend of fields")
    ax.axhline(1, color="grey", lw=0.5)
    ax.set_xlabel("fraction along the path")
    ax.set_ylabel("variance ratio")
    ax.legend()
    fig.suptitle(f"{var} anomaly at the last lead along a latent path")
    fig.savefig(filename, dpi=110)


if __name__ == "__main__":
    main()
