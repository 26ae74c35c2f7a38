"""``forecast path``: decode the latent path between two scenarios of one issue time to NetCDF.

    forecast path --checkpoint CKPT --data SOURCE --init-time T --from A --to B
                  [--steps 20] [--members 50] [--seed S] [--model LABEL] [--overwrite]
                  --out FILE.nc

A scenario is a member number of the ensemble that ``forecast predict --members N --seed S``
writes for T (the member's latent is the prior draw that decodes to it), or ``observed``: the
data after T, embedded in the latent space by inversion (``encode``). The checkpoint is a
diffusion model, a VAE, or a pool holding one: a pool has no latent space of its own, so the
path walks the latent space of one of its models, the one that drew member A (or B), or
``--model LABEL``. The file holds ``<var>`` decoded at ``--steps`` points along the slerp path
(dimension ``path``, the fraction from A to B), ``<var>_blend``, the straight blend of its two
ends, and the anomaly-variance ratio of both; it is written to a temporary name and renamed.
The command prints how much anomaly variance each keeps mid-way and the path's largest step.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from forecast.commands import add_output_options
from forecast.errors import ForecastError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``path`` sub-command."""
    parser = subparsers.add_parser(
        "path",
        help="decode the latent path between two scenarios of an issue time into NetCDF",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--checkpoint", required=True, type=Path, help="model checkpoint")
    parser.add_argument("--data", required=True, help="named data set or path of the data")
    parser.add_argument("--init-time", required=True, metavar="T", help="issue time (ISO 8601)")
    parser.add_argument(
        "--from", dest="scenario_a", required=True, metavar="A", help="member number or observed"
    )
    parser.add_argument(
        "--to", dest="scenario_b", required=True, metavar="B", help="member number or observed"
    )
    parser.add_argument("--steps", type=int, default=20, help="points on the path (default 20)")
    parser.add_argument(
        "--members", type=int, default=50, help="ensemble size the members belong to (default 50)"
    )
    parser.add_argument("--seed", type=int, default=0, help="run seed (default 0)")
    parser.add_argument("--model", dest="part", help="for a pool: the label of the model to walk")
    add_output_options(parser, "output NetCDF file")
    parser.set_defaults(func=run)


def parse_scenario(text: str, flag: str, members: int) -> int | str:
    """``"observed"`` or a member number in ``0 .. members - 1``; else a one-line error."""
    if text == "observed":
        return text
    try:
        member = int(text)
    except ValueError:
        raise ForecastError(
            f"{flag} {text!r} is neither a member number nor observed; write e.g. {flag} 3 "
            f"or {flag} observed"
        ) from None
    if not 0 <= member < members:
        raise ForecastError(
            f"{flag} {member} is not a member of a {members}-member ensemble; pick one in "
            f"0..{members - 1} or raise --members"
        )
    return member


def choose_part(
    model: Any, part: str | None, scenarios: tuple[Any, Any], context: Any, seed: int
) -> str:
    """The pool model a path walks: ``part``, else the model that drew the first member
    scenario; ``""`` for a model with its own latent space."""
    from forecast.models.pooled import PooledEnsemble
    from forecast.sampling.scenarios import latent_parts

    if not isinstance(model, PooledEnsemble):
        if part is not None:
            raise ForecastError("--model picks a model of a pool; drop it for this checkpoint")
        if not latent_parts(model):
            raise ForecastError(
                f"a {model.kind} model has no latent space; use a diffusion or VAE checkpoint"
            )
        return ""
    labels = latent_parts(model)
    if part is not None:
        return part  # checked against the pool's latent models by latent_part
    members = [s for s in scenarios if s != "observed"]
    if not members:
        raise ForecastError(
            "a pool has no latent space of its own; pass --model LABEL (its latent models: "
            f"{', '.join(labels) or 'none'})"
        )
    label, _ = model.member_latent(context, members[0], seed=seed)
    return label


def run(args: argparse.Namespace) -> int:
    """Run ``forecast path``; returns the exit status."""
    import pandas as pd

    from forecast.commands.predict import check_issue_times
    from forecast.export.netcdf import check_target

    if args.members < 1:
        raise ForecastError(f"--members must be at least 1, got {args.members}")
    if args.steps < 2:
        raise ForecastError(f"--steps must be at least 2 (the two ends), got {args.steps}")
    scenarios = tuple(
        parse_scenario(text, flag, args.members)
        for text, flag in ((args.scenario_a, "--from"), (args.scenario_b, "--to"))
    )
    out = Path(args.out)
    check_target(out, args.overwrite)
    try:
        issue = pd.Timestamp(args.init_time)
    except ValueError as err:
        raise ForecastError(
            f"bad issue time ({err}); write it as ISO 8601, e.g. 2019-03-20T06:00"
        ) from None
    if issue.tz is not None:
        issue = issue.tz_convert(None)

    from forecast.checkpoint import file_sha256, load_checkpoint, write_netcdf
    from forecast.data import check_compatible, context_of, open_dataset
    from forecast.dims import TIME
    from forecast.models import issue_seed, load_model
    from forecast.sampling.paths import largest_step, latent_explorer, path_dataset
    from forecast.sampling.scenarios import latent_part, scenario_latents

    _, meta = load_checkpoint(args.checkpoint)
    if "data" not in meta:
        raise ForecastError(
            f"checkpoint {args.checkpoint} has no data description; retrain it with forecast train"
        )
    model = load_model(args.checkpoint)
    ds = open_dataset(args.data)
    check_compatible(meta["data"], ds, what=f"checkpoint {args.checkpoint.name}")
    check_issue_times(ds, pd.DatetimeIndex([issue]), int(model.context))
    context = context_of(ds, issue, model.context)
    target = None
    if "observed" in scenarios:
        after = int((ds[TIME].values > issue.to_datetime64()).sum())
        if after < model.horizon:
            raise ForecastError(
                f"the observed scenario needs the {model.horizon} steps after "
                f"{issue.isoformat()}, the data hold {after}; pick an earlier --init-time"
            )
        from forecast.data.windows import target_of

        target = target_of(ds, issue, model.horizon)
    seed = issue_seed(args.seed, issue)  # as forecast predict: the same members
    part = choose_part(model, args.part, scenarios, context, seed)
    walker = latent_part(model, part)
    z_a, z_b = scenario_latents(
        model, context, *scenarios, n_members=args.members, seed=seed, target=target, part=part
    )
    path, blend, *ratios = latent_explorer(walker, context, z_a, z_b, args.steps)
    result = path_dataset(path, blend, *ratios)
    names = [f"member {s}" if s != "observed" else "observed" for s in scenarios]
    kind = meta.get("kind", type(model).__name__)
    result.attrs = {
        "title": f"Latent path from {names[0]} to {names[1]}",
        "source": f"forecast; model {kind}" + (f", pool model {part}" if part else ""),
        "init_time": issue.isoformat(),
        "scenario_a": names[0],
        "scenario_b": names[1],
        "members": args.members,
        "seed": args.seed,
        "checkpoint_sha256": file_sha256(args.checkpoint),
    }
    write_netcdf(result, out)
    print(
        f"wrote {out}: {args.steps} points from {names[0]} to {names[1]} at {issue.isoformat()} "
        f"({kind}" + (f", pool model {part!r}" if part else "") + ")"
    )
    mid = args.steps // 2
    for name in path.data_vars:
        print(
            f"{name}: anomaly variance mid-way {float(ratios[0][name][mid]):.2f} x the ends "
            f"along the latent path, {float(ratios[1][name][mid]):.2f} along the straight "
            f"blend; largest step {float(largest_step(path[[name]])[name]):.3f} of the "
            f"difference between the ends (evenly spaced: {1 / (args.steps - 1):.3f})"
        )
    return 0
