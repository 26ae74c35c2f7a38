"""DDP step time of the diffusion model's training loop with 1 and 2 CPU processes (gloo).

Each process trains ``ConditionalDiffusion`` on synthetic weather for ``--steps`` optimizer steps
with ``--batch`` windows per process and one torch thread (as torchrun sets it), started with
``torch.multiprocessing.spawn`` and torchrun's environment variables on a loopback port. The
step time is the loop's own wall time (``training["seconds"]``, no data preparation) over the
steps, after a warm-up run; windows/s counts the windows of all processes.

    .venv/bin/python benchmarks/bench_ddp.py --steps 30 --batch 16
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import tempfile
import time
from pathlib import Path

import torch
import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _model(args: argparse.Namespace, steps: int):
    from forecast.models.diffusion import ConditionalDiffusion

    return ConditionalDiffusion(
        context=4,
        horizon=6,
        base=args.base,
        mults=(1, 2),
        emb_dim=32,
        train={
            "epochs": 1000,
            "max_steps": steps,
            "batch_size": args.batch,
            "eval_every": 0,
            "warmup_steps": 5,
            "progress": False,
        },
    )


def _worker(rank: int, world: int, port: int, out: str, args: argparse.Namespace) -> None:
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    torch.set_num_threads(1)
    from forecast.data.synthetic import synthetic_weather
    from forecast.training import distributed

    ds = synthetic_weather(seed=0, n_lat=args.grid, n_lon=args.grid, days=30)
    try:
        _model(args, 3).fit(ds)  # warm-up (allocator, process group, first-call costs)
        timings = []
        for _ in range(args.repeats):
            model = _model(args, args.steps).fit(ds)
            timings.append(model.training["seconds"] / model.training["step"])
    finally:
        distributed.cleanup()
    if rank == 0:
        Path(out).write_text(json.dumps({"step_s": min(timings), "all": timings}))


def main() -> None:
    """Print step time and windows/s for 1 and 2 processes."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--steps", type=int, default=30, help="timed optimizer steps per run")
    p.add_argument("--batch", type=int, default=16, help="windows per process and step")
    p.add_argument("--base", type=int, default=16, help="U-Net base channels")
    p.add_argument("--grid", type=int, default=16, help="synthetic grid size (lat = lon)")
    p.add_argument("--repeats", type=int, default=2, help="timed runs (best is reported)")
    args = p.parse_args()
    print(
        f"diffusion base={args.base}, grid {args.grid}x{args.grid}, batch {args.batch}/process, "
        f"{args.steps} steps, 1 torch thread/process, {os.cpu_count()} CPUs visible"
    )
    print(f"{'processes':>9} {'step ms':>9} {'windows/s':>10} {'speed-up':>9}  runs (ms/step)")
    base = None
    with tempfile.TemporaryDirectory() as tmp:
        for world in (1, 2):
            out = str(Path(tmp) / f"w{world}.json")
            start = time.perf_counter()
            mp.spawn(_worker, args=(world, _free_port(), out, args), nprocs=world, join=True)
            wall = time.perf_counter() - start
            got = json.loads(Path(out).read_text())
            rate = world * args.batch / got["step_s"]
            base = base or rate
            runs = ", ".join(f"{1000 * t:.1f}" for t in got["all"])
            print(
                f"{world:>9} {1000 * got['step_s']:>9.1f} {rate:>10.1f} {rate / base:>9.2f}  "
                f"{runs}  (launch wall {wall:.0f} s)"
            )


if __name__ == "__main__":
    main()
