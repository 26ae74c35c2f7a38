"""Cost of the two grid denoisers, leads as channels and space-time, at given sizes.

Builds each network as ``forecast train`` would for a one-variable grid (untrained weights: the
cost does not depend on them) and prints its parameter count, the seconds of one forward pass
on ``--members`` members (the sampler's cost per network evaluation, so NFE times it bounds a
draw) and of one training step on ``--batch`` windows (forward, backward and an AdamW step),
each the fastest of ``--repeat`` runs after a warm-up.

Usage::

    .venv/bin/python benchmarks/bench_grid_nets.py [--grid 33 49] [--horizon 24] [--context 6] \
        [--members 50] [--batch 32] [--threads 1] [--net leads-as-channels:16 space-time:4 ...] \
        [--contiguous-weights]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch


def fastest(run: Callable[[], object], repeat: int) -> float:
    """The smallest wall seconds of ``run()`` over ``repeat`` calls, after one warm-up."""
    run()
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--grid", type=int, nargs=2, default=[33, 49], metavar=("NY", "NX"))
    p.add_argument("--horizon", type=int, default=24)
    p.add_argument("--context", type=int, default=6)
    p.add_argument("--members", type=int, default=50)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--net",
        nargs="+",
        default=["leads-as-channels:16", "space-time:4", "space-time:8"],
        help="grid_net:base pairs (mults 1, 2, 4 and the first-guess input, as the configs)",
    )
    p.add_argument(
        "--contiguous-weights",
        action="store_true",
        help="store the space-time net's 3-D convolution weights contiguous instead of "
        "channels-last (to time what the channels-last layout gains)",
    )
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from forecast.models.nets import GridDenoiser, SpaceTimeDenoiser

    ny, nx = args.grid
    h, k = args.horizon, args.context
    gen = torch.Generator().manual_seed(0)
    cond = {
        "context": torch.randn(1, 1, k, ny, nx, generator=gen),
        "calendar": torch.randn(1, 4, generator=gen),
        "first_guess": torch.randn(1, 1, h, ny, nx, generator=gen),
    }
    x = torch.randn(args.members, 1, h, ny, nx, generator=gen)
    batch = {key: v.expand(args.batch, *v.shape[1:]) for key, v in cond.items()}
    target = torch.randn(args.batch, 1, h, ny, nx, generator=gen)
    print(
        f"grid {ny} x {nx}, horizon {h}, context {k}, {args.threads} thread(s); forward on "
        f"{args.members} members, training step on {args.batch} windows"
    )
    for spec in args.net:
        name, base = spec.split(":")
        cls = {"leads-as-channels": GridDenoiser, "space-time": SpaceTimeDenoiser}[name]
        net = cls(1, h, k, base=int(base), mults=(1, 2, 4), first_guess=True)
        if args.contiguous_weights:
            for module in net.modules():
                if isinstance(module, torch.nn.Conv3d):
                    module.weight.data = module.weight.data.contiguous()
        size = sum(q.numel() for q in net.parameters())
        net.eval()
        with torch.inference_mode():
            forward = fastest(lambda net=net: net(x, torch.zeros(args.members), cond), args.repeat)
        net.train()
        opt = torch.optim.AdamW(net.parameters(), lr=1e-4)

        def step(net: torch.nn.Module = net, opt: torch.optim.Optimizer = opt) -> None:
            opt.zero_grad()
            out = net(target, torch.zeros(args.batch), batch)
            ((out - target) ** 2).mean().backward()
            opt.step()

        train = fastest(step, args.repeat)
        print(
            f"{name} base {base}: {size:,} parameters; forward {forward:.3f} s "
            f"({1000 * forward / args.members:.1f} ms per member; 10 NFE >= {10 * forward:.2f} s); "
            f"training step {train:.3f} s"
        )


if __name__ == "__main__":
    main()
