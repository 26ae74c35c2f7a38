"""Latent-space figures of any latent checkpoint (a diffusion or VAE model, or the latent models
of a pool): DDIM-inversion reconstruction error and the variance ratio along latent paths.

For each model walked (the checkpoint itself, or with ``--parts`` the first N latent models of
a pool, or the labels given) it prints, on the protocol's test issue times:

1. the reconstruction error ``mean |decode(encode(x)) - x| / mean |x - last context step|`` on
   the first ``--invert-issues`` targets (issue 5 aims below 5 %);
2. the ratio of the spatial variance of the decoded anomalies along a 9-point slerp path
   between two prior members to its mean at the two ends, and the same for a straight blend of
   the two decoded fields (:func:`forecast.sampling.paths.variance_ratio`): the smallest value
   along each path (slerp should stay near 1, a blend shrinks it).

Usage::

    .venv/bin/python benchmarks/bench_latent.py --checkpoint POOL.safetensors \
        [--data era5-uk-t2m] [--parts 2 | --labels A B] [--invert-issues 8] [--threads 2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", default="era5-uk-t2m")
    p.add_argument("--parts", type=int, default=None, help="a pool: walk its first N latent models")
    p.add_argument("--labels", nargs="*", help="a pool: walk these latent models")
    p.add_argument("--invert-issues", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    from forecast.data import open_dataset
    from forecast.data.protocols import PROTOCOLS, get_protocol
    from forecast.data.windows import context_of, target_of
    from forecast.models import load_model
    from forecast.sampling.paths import latent_explorer
    from forecast.sampling.scenarios import latent_part, latent_parts

    ds = open_dataset(args.data)
    proto = next(get_protocol(n) for n in PROTOCOLS.names() if get_protocol(n).dataset == args.data)
    model = load_model(args.checkpoint)
    parts = latent_parts(model)
    if not parts:
        raise SystemExit(f"{args.checkpoint} has no latent model (a {model.kind} checkpoint)")
    if args.labels:
        parts = list(args.labels)
    elif args.parts is not None:
        parts = parts[: args.parts]
    issues = proto.windows(ds, "test").issue_times(ds)
    var = model.variables[0]
    print(f"{args.checkpoint} ({model.kind}), data {args.data}, {len(issues)} test issue times")
    for part in parts:
        walker = latent_part(model, part)
        t0 = time.perf_counter()
        fracs = []
        for t in issues[: args.invert_issues]:
            ctx, tgt = context_of(ds, t, walker.context), target_of(ds, t, walker.horizon)
            rec = walker.decode(ctx, walker.encode(ctx, tgt))[var].values[0]
            anomaly = tgt[var].values - ctx[var].values[-1]
            fracs.append(np.abs(rec - tgt[var].values).mean() / np.abs(anomaly).mean())
        ctx = context_of(ds, issues[0], walker.context)
        z = walker.prior(ctx, 2, seed=11)
        _, _, ratio, blend_ratio = latent_explorer(walker, ctx, z[0], z[1], steps=9)
        r_slerp, r_blend = ratio[var].values, blend_ratio[var].values
        print(
            f"{part or walker.kind}: reconstruction error / anomaly {100 * np.mean(fracs):.2g} % "
            f"mean, {100 * np.max(fracs):.2g} % max over {len(fracs)} targets; variance ratio "
            "along the path: "
            f"slerp {r_slerp.min():.3f}-{r_slerp.max():.3f}, blend {r_blend.min():.3f} at its "
            f"lowest ({time.perf_counter() - t0:.1f} s)"
        )


if __name__ == "__main__":
    main()
