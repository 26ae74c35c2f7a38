"""Speed of diffusion ensembles on the P2 grid (33 x 49, 24 hourly leads, 6 h context).

Prints, per sampler and NFE: seconds for a 50-member full-horizon ensemble of one issue time,
members per second, seconds per network evaluation (batch of ``member_batch`` members) and
the bound NFE x one forward pass; then the peak resident memory of the process.

Usage::

    .venv/bin/python benchmarks/bench_diffusion_speed.py [--checkpoint runs/x/model.safetensors]
        [--threads 2] [--members 50] [--repeat 3] [--data era5-uk-t2m|synthetic-weather]

Without ``--checkpoint`` the network is initialized and trained for one step (the cost of a
forward pass does not depend on the weights).
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--members", type=int, default=50)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--data", default="era5-uk-t2m")
    p.add_argument("--nfe", type=int, nargs="+", default=[5, 10, 20])
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    from forecast.data import open_dataset
    from forecast.data.protocols import PROTOCOLS, get_protocol
    from forecast.data.windows import context_of
    from forecast.dims import TIME
    from forecast.models import load_model
    from forecast.models.diffusion import ConditionalDiffusion

    ds = open_dataset(args.data)
    proto = next(get_protocol(n) for n in PROTOCOLS.names() if get_protocol(n).dataset == args.data)
    if args.checkpoint:
        model = load_model(args.checkpoint)
    else:
        model = ConditionalDiffusion(
            context=proto.context,
            horizon=proto.horizon,
            train={"max_steps": 1, "batch_size": 2, "progress": False, "eval_every": 0},
        ).fit(proto.split(ds, "train"))
    issue = proto.windows(ds, "test").issue_times(ds)[0]
    ctx = context_of(ds, issue, model.context)
    print(
        f"data {args.data}: grid {dict(ds.sizes)}, horizon {model.horizon}, "
        f"members {args.members}, threads {args.threads}, "
        f"parameters {sum(p.numel() for p in model.net.parameters())}"
    )

    # one network evaluation at the member batch size
    cond = model._cond(model._context_values(ctx), ctx[TIME].values)
    b = min(args.members, model.member_batch)
    x = torch.randn(b, len(model.variables), model.horizon, *cond["context"].shape[3:])
    den = model.process.denoiser(model.net, cond)
    with torch.inference_mode():
        den(x, torch.tensor(1.0))
        times = []
        for _ in range(max(args.repeat, 3)):
            t = time.perf_counter()
            den(x, torch.tensor(1.0))
            times.append(time.perf_counter() - t)
    fwd = float(np.median(times))
    n_batches = -(-args.members // model.member_batch)
    print(
        f"one network evaluation, batch {b}: {fwd * 1e3:.1f} ms ({fwd / b * 1e3:.2f} ms per member)"
    )
    print(
        f"{'sampler':>9} {'NFE':>4} {'seconds':>8} {'members/s':>10} {'s/eval':>7} {'bound s':>8}"
    )
    for name in ("dpmpp-2m", "heun", "ddim"):
        for nfe in args.nfe:
            m = model.with_sampler(name, nfe)
            m.sample(ctx, min(2, args.members), seed=0)  # warm-up
            runs = []
            for r in range(args.repeat):
                t = time.perf_counter()
                m.sample(ctx, args.members, seed=r)
                runs.append(time.perf_counter() - t)
            s = float(np.median(runs))
            used = get_nfe(m)
            print(
                f"{name:>9} {used:>4} {s:8.2f} {args.members / s:10.1f} "
                f"{s / (used * n_batches):7.3f} {used * n_batches * fwd:8.2f}"
            )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory of the process: {peak:.0f} MiB")


def get_nfe(model) -> int:
    from forecast.sampling import get_sampler

    return get_sampler(model.sampler, model.nfe, model.schedule).nfe_used


if __name__ == "__main__":
    main()
