"""Could a pool of same-architecture diffusion models evaluate its networks in one call?

A pooled checkpoint (``forecast pool``, ``forecast train --model pooled``) samples each model
in turn, each with the few members it draws (50 members over 32 snapshot models: 1-2 each),
so most of its time is per-model overhead. This times one network evaluation of every model
of the pool, on its protocol's first test issue time with ``--members`` rows per model, two
ways: a loop over the models (what sampling does now), and one call of
``torch.func.vmap`` over the models' stacked weights (``torch.func.stack_module_state``), and
prints the largest difference between the two outputs. Sampling makes ``nfe`` such
evaluations per model (plus the first guess and conditioning, not timed here).

Usage::

    .venv/bin/python benchmarks/bench_pool_vmap.py --checkpoint POOL.safetensors \\
        [--data era5-uk-t2m] [--members 2] [--repeat 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import copy
import time
from collections.abc import Callable

import numpy as np
import torch


def median_seconds(run: Callable[[], object], repeat: int) -> float:
    """Median wall seconds of ``run()`` over ``repeat`` calls, after one warm-up."""
    run()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="a pooled diffusion checkpoint")
    parser.add_argument("--data", default="era5-uk-t2m")
    parser.add_argument("--members", type=int, default=2, help="rows per model")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from torch.func import functional_call, stack_module_state, vmap

    from forecast.data import open_dataset
    from forecast.data.protocols import PROTOCOLS, get_protocol
    from forecast.data.windows import context_of
    from forecast.errors import ForecastError
    from forecast.models import PooledEnsemble, load_model

    ds = open_dataset(args.data)
    proto = next(get_protocol(n) for n in PROTOCOLS.names() if get_protocol(n).dataset == args.data)
    pool = load_model(args.checkpoint)
    if not isinstance(pool, PooledEnsemble):
        raise ForecastError(f"{args.checkpoint} is a {pool.kind} model; pass a pooled one")
    models = pool.models
    shapes = {tuple((k, tuple(v.shape)) for k, v in m.net.state_dict().items()) for m in models}
    if len(shapes) != 1 or any(m.kind != "diffusion" for m in models):
        raise ForecastError("the pool's models differ in kind or network; vmap needs one shape")
    issue = proto.windows(ds, "test").issue_times(ds)[0]
    ctx = context_of(ds, issue, pool.context)
    conds = []
    for m in models:
        cond = m._cond(m._context_values(ctx), ctx.time.values)
        conds.append({k: v for k, v in cond.items() if k != "offset"})  # what the net sees
    nets = [m.net.eval() for m in models]
    params, buffers = stack_module_state(nets)
    skeleton = copy.deepcopy(nets[0]).to("meta")
    k, b = len(models), args.members
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(k, b, len(models[0].variables), models[0].horizon, *ctx_space(conds[0]),
                    generator=gen)  # fmt: skip
    c_noise = torch.full((k, b), 0.3)
    stacked = {name: torch.stack([c[name] for c in conds]) for name in conds[0]}

    def one(p, buf, xi, ci, cond):
        return functional_call(skeleton, (p, buf), (xi, ci, cond))

    with torch.inference_mode():
        looped = [nets[i](x[i], c_noise[i], conds[i]) for i in range(k)]
        batched = vmap(one)(params, buffers, x, c_noise, stacked)
        diff = max(float((batched[i] - looped[i]).abs().max()) for i in range(k))
        scale = max(float(out.abs().max()) for out in looped)
        t_loop = median_seconds(
            lambda: [nets[i](x[i], c_noise[i], conds[i]) for i in range(k)], args.repeat
        )
        t_vmap = median_seconds(
            lambda: vmap(one)(params, buffers, x, c_noise, stacked), args.repeat
        )
    nfe = {int(m.nfe) for m in models}
    print(
        f"{args.checkpoint}: {k} models x {b} rows, {args.threads} threads; one network "
        f"evaluation of every model: loop {t_loop:.3f} s, vmap {t_vmap:.3f} s "
        f"({t_loop / t_vmap:.2f}x); largest difference {diff:.2g} (outputs up to {scale:.3g}); "
        f"sampling makes {', '.join(map(str, sorted(nfe)))} per model"
    )


def ctx_space(cond: dict[str, torch.Tensor]) -> tuple[int, ...]:
    """The spatial sizes of a conditioning's context ``(1, C, K, *space)``."""
    return tuple(cond["context"].shape[3:])


if __name__ == "__main__":
    main()
