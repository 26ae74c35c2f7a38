"""Spatial structure of gridded ensembles: are the members as smooth as the truth?

A per-point score (CRPS, spread-skill) cannot see whether a member is a plausible field or the
right marginal spread with grid-point noise on top. This benchmark reads ensemble files (as
``forecast predict`` or ``forecast evaluate --protocol`` write them) and, per lead time,
prints for each ensemble:

- the spread-skill ratio of the **neighbour differences** (the field's differences between
  adjacent grid points along latitude and longitude, i.e. its local gradients), with
  :func:`forecast.scoring.spread_skill_ratio`: near 1 when the members' small-scale structure
  is as variable as the truth's; far above 1 for members rougher than the truth;
- the correlation between neighbouring points of the members' departures from the ensemble mean
  and, beside it, of the truth's departure from it (what a calibrated ensemble's departures
  should look like);
- the spread-skill ratio and the CRPS of the **area mean** (the mean over the whole grid, e.g.
  a regional average temperature): members whose departures are independent from point to
  point average out, and the area mean's ensemble is far too narrow. By default it is the
  scorecard's area mean (``area_crps``, ``area_spread_skill``: cos(latitude) weighted);
  ``--area-mean plain`` gives the unweighted grid mean of the figures measured before
  2026-12-07.

``--figure`` draws the truth, two members and the spread of each ensemble at one issue time
and lead.

Usage::

    .venv/bin/python benchmarks/bench_spatial_structure.py --truth synthetic-weather \
        --forecast plain=runs/eval/ensembles/a.nc --forecast whitened=runs/eval/ensembles/b.nc \
        [--leads 1 3 6 12 24] [--area-mean weighted|plain] \
        [--figure docs/diffusion_whitening.png --issue 0 --lead 13]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import xarray as xr


def neighbour_corr(a: np.ndarray, axis: int) -> float:
    """Correlation of ``a`` (zero-mean departures) between neighbours along ``axis``."""
    n = a.shape[axis]
    x = np.take(a, np.arange(n - 1), axis=axis)
    y = np.take(a, np.arange(1, n), axis=axis)
    return float((x * y).sum() / np.sqrt((x * x).sum() * (y * y).sum()))


def structure_rows(
    ens: xr.DataArray, obs: xr.DataArray, space: list[str], *, weighted: bool = True
) -> dict[str, list]:
    """Per lead: neighbour-difference spread-skill ratio, neighbour correlations of the
    members' and the truth's departures from the ensemble mean (averaged over both axes), and
    the spread-skill ratio and CRPS of the area mean (the scorecard's cos(latitude) weighted
    one, or with ``weighted=False`` the plain grid mean)."""
    from forecast.dims import INIT_TIME, LEAD_TIME, MEMBER
    from forecast.scoring import crps_ensemble, spread_skill_ratio
    from forecast.scoring.multivariate import area_means

    ratios = []
    for d in space:
        de, do = ens.diff(d, label="lower"), obs.diff(d, label="lower")
        dims = [INIT_TIME, *space]
        ratios.append(spread_skill_ratio(do, de, dim=dims).values)
    mean = ens.mean(MEMBER)
    dep = (ens - mean).transpose(LEAD_TIME, ...).values
    err = (obs - mean).transpose(LEAD_TIME, ...).values
    axes_m = [ens.transpose(LEAD_TIME, ...).dims.index(d) - 1 for d in space]
    axes_o = [obs.transpose(LEAD_TIME, ...).dims.index(d) - 1 for d in space]
    if weighted:
        area_obs, area_ens = area_means(obs, ens)
    else:
        area_ens, area_obs = ens.mean(space), obs.mean(space)
    return {
        "ssr_area": spread_skill_ratio(area_obs, area_ens, dim=[INIT_TIME]).values.tolist(),
        "crps_area": crps_ensemble(area_obs, area_ens, dim=[INIT_TIME]).values.tolist(),
        "ssr_gradient": np.mean(ratios, axis=0).tolist(),
        "corr_members": [float(np.mean([neighbour_corr(x, a) for a in axes_m])) for x in dep],
        "corr_truth": [float(np.mean([neighbour_corr(x, a) for a in axes_o])) for x in err],
    }


def draw(
    ensembles: dict[str, xr.DataArray],
    observed: dict[str, xr.DataArray],
    issue: int,
    lead: int,
    out: Path,
) -> None:
    """Truth, members 0 and 1 and the spread of each ensemble (its row) at one issue time and
    lead."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from forecast.dims import INIT_TIME, LEAD_TIME, MEMBER

    fig, axes = plt.subplots(len(ensembles), 4, figsize=(14, 3.2 * len(ensembles)), squeeze=False)
    for row, (label, ens) in enumerate(ensembles.items()):
        e = ens.isel({INIT_TIME: issue, LEAD_TIME: lead - 1})
        truth = observed[label].isel({INIT_TIME: issue, LEAD_TIME: lead - 1})
        lo, hi = float(truth.min()), float(truth.max())
        panels = [
            ("truth", truth, lo, hi, "viridis"),
            ("member 0", e.isel({MEMBER: 0}), lo, hi, "viridis"),
            ("member 1", e.isel({MEMBER: 1}), lo, hi, "viridis"),
            ("spread (std)", e.std(MEMBER), 0.0, None, "magma"),
        ]
        for col, (title, field, vmin, vmax, cmap) in enumerate(panels):
            ax = axes[row, col]
            im = ax.pcolormesh(
                field[field.dims[1]], field[field.dims[0]], field.values, vmin=vmin, vmax=vmax,
                cmap=cmap, shading="auto",
            )  # fmt: skip
            fig.colorbar(im, ax=ax, shrink=0.8)
            ax.set_title(f"{label}: {title}", fontsize=9)
    when = np.datetime_as_string(truth[INIT_TIME].values, unit="h")
    fig.suptitle(f"issue time {when}, lead {lead} h")
    fig.tight_layout()
    tmp = out.with_name(out.stem + ".tmp" + out.suffix)
    fig.savefig(tmp, dpi=80)
    plt.close(fig)
    tmp.replace(out)
    print(f"wrote {out}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--truth", required=True, help="named data set or path of the truth")
    p.add_argument("--forecast", action="append", required=True, help="LABEL=ENSEMBLE.nc")
    p.add_argument("--variable", help="variable to read (default: the first)")
    p.add_argument("--leads", type=int, nargs="+", default=[1, 3, 6, 12, 24])
    p.add_argument(
        "--area-mean",
        choices=("weighted", "plain"),
        default="weighted",
        help="weighted: the scorecard's cos(latitude) weighted area mean (default); plain: "
        "the unweighted grid mean (figures measured before 2026-12-07)",
    )
    p.add_argument("--figure", type=Path, help="write a figure of maps here")
    p.add_argument("--issue", type=int, default=0, help="issue-time index of the figure")
    p.add_argument("--lead", type=int, default=13, help="lead (steps) of the figure")
    args = p.parse_args()

    from forecast.data import open_dataset
    from forecast.dims import space_dims
    from forecast.export import open_ensemble
    from forecast.scoring import obs_for

    truth = open_dataset(args.truth)
    ensembles, observed = {}, {}
    for item in args.forecast:
        label, sep, path = item.partition("=")
        if not sep:
            p.error(f"--forecast {item!r}: write LABEL=PATH")
        ds = open_ensemble(path)
        var = args.variable or next(iter(ds.data_vars))
        ens = ds[var].load()
        ensembles[label] = ens
        observed[label] = obs_for(ens, truth)
    space = list(space_dims(truth))
    if len(space) != 2:
        p.error("the truth is not a lat/lon grid; this benchmark needs one")
    print(
        "per lead: spread-skill of the neighbour differences (1: as rough as the truth) | "
        "neighbour correlation of the members' departures from the mean (truth's departure) | "
        f"area mean ({args.area_mean}): spread-skill, CRPS"
    )
    for label, ens in ensembles.items():
        rows = structure_rows(ens, observed[label], space, weighted=args.area_mean == "weighted")
        parts = [
            f"lead {h}: {rows['ssr_gradient'][h - 1]:.2f} | {rows['corr_members'][h - 1]:.2f} "
            f"({rows['corr_truth'][h - 1]:.2f}) | {rows['ssr_area'][h - 1]:.2f}, "
            f"{rows['crps_area'][h - 1]:.3f}"
            for h in args.leads
            if h <= len(rows["ssr_gradient"])
        ]
        means = (
            np.mean(rows["ssr_gradient"]),
            np.mean(rows["ssr_area"]),
            np.mean(rows["crps_area"]),
        )
        print(
            f"{label}: "
            + "; ".join(parts)
            + "; mean over leads: neighbour differences {:.2f}, area mean {:.2f}, {:.3f}".format(
                *means
            )
        )
    if args.figure:
        draw(ensembles, observed, args.issue, args.lead, args.figure)


if __name__ == "__main__":
    main()
