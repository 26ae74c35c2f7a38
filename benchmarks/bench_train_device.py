"""Optimizer steps per second of a model's training loop on the CPU and on a CUDA device.

Builds the model of each ``--config`` (a ``forecast train`` TOML) for ``--data``, fits it for
``--steps`` steps without validation on every device of ``--devices``, and prints the loop's
seconds (``model.training["seconds"]``: the optimizer steps alone), the milliseconds per step
in the steady state (the loop seconds of a second fit of ``--steps / 5`` steps subtracted, which
removes the one-off start: CUDA context, kernel selection) and the whole fit's wall time (first
guess, windows and spread calibration included). The first guess can be swapped for a cheap
one (``--first-guess damped``): the network and its step cost stay the same, the set-up
shrinks. ``--batch-size`` overrides the config's. ``--profile N`` instead runs one fit per
config and device under the torch profiler from step N to step 2N and prints its table (self
CPU time first).

Usage::

    .venv/bin/python benchmarks/bench_train_device.py --data synthetic-weather \
        --config data/configs/diffusion-synthetic-weather-gp-points.toml \
        --config data/configs/vae-synthetic-weather.toml --devices cpu,cuda --steps 100
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="synthetic-weather")
    p.add_argument("--config", action="append", required=True, help="TOML (repeatable)")
    p.add_argument("--devices", default="cpu,cuda")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--first-guess", help="replace the config's first guess (e.g. damped)")
    p.add_argument("--batch-size", type=int, help="replace the config's batch size")
    p.add_argument("--profile", type=int, metavar="N", help="profile steps N..2N-1 instead")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from forecast.commands.train import build_model, protocol_for
    from forecast.data import open_dataset
    from forecast.training.config import load_toml

    ds = open_dataset(args.data)
    proto = protocol_for(args.data, ds, None, None)
    train, valid = proto.split(ds, "train"), proto.split(ds, "val")
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    print(
        f"data {args.data} {dict(ds.sizes)}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} CPU threads, GPU {gpu}; {args.steps} steps"
    )
    print("| config | model | device | batch | loop s | ms/step (steady) | fit wall s |")
    print("|---|---|---|---:|---:|---:|---:|")
    for config in args.config:
        cfg = load_toml(config)
        model_kw = dict(cfg["model"])
        if args.first_guess and model_kw.get("first_guess"):
            model_kw["first_guess"] = args.first_guess
        kind = "vae" if Path(config).name.startswith("vae") else "diffusion"
        for device in args.devices.split(","):
            if args.profile:
                profiled_fit(kind, proto, model_kw, cfg["train"], device, args, train, valid)
                continue
            runs = []
            for steps in (max(2, args.steps // 5), args.steps):
                train_kw = timing_train_kw(cfg["train"], steps, device, args.batch_size)
                model = build_model(kind, proto.context, proto.horizon, model_kw, train_kw)
                t = time.perf_counter()
                model.fit(train, valid)
                wall = time.perf_counter() - t
                runs.append((int(model.training["step"]), float(model.training["seconds"]), wall))
            (s0, l0, _), (s1, l1, wall) = runs
            print(
                f"| {Path(config).name} | {kind} | {device} | {train_kw['batch_size']} | "
                f"{l1:.1f} | {1000 * (l1 - l0) / (s1 - s0):.1f} | {wall:.1f} |",
                flush=True,
            )


def timing_train_kw(train_cfg: dict, steps: int, device: str, batch_size: int | None) -> dict:
    """The config's [train] settings for a timed fit: ``steps`` steps on ``device``, no
    validation, early stop, time limit or progress bar (and ``batch_size`` if given)."""
    train_kw = {
        **train_cfg,
        "max_steps": steps,
        "eval_every": 0,
        "patience": 0,
        "max_minutes": None,
        "progress": False,
        "device": device,
    }
    if batch_size:
        train_kw["batch_size"] = batch_size
    return train_kw


def profiled_fit(kind, proto, model_kw, train_cfg, device, args, train, valid) -> None:
    """One fit with the torch profiler on from optimizer step ``args.profile`` to twice that."""
    from torch.profiler import ProfilerActivity, profile

    import forecast.training.loop as loop
    from forecast.commands.train import build_model

    activities = [ProfilerActivity.CPU]
    if device.startswith("cuda"):
        activities.append(ProfilerActivity.CUDA)
    prof = profile(activities=activities)
    original, count = loop.update_ema, {"step": 0}

    def update_ema(ema, module, decay):  # called once per optimizer step
        count["step"] += 1
        if count["step"] == args.profile:
            prof.__enter__()
        original(ema, module, decay)
        if count["step"] == 2 * args.profile:
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            prof.__exit__(None, None, None)

    steps = max(args.steps, 2 * args.profile + 1)
    train_kw = timing_train_kw(train_cfg, steps, device, args.batch_size)
    loop.update_ema = update_ema
    try:
        build_model(kind, proto.context, proto.horizon, model_kw, train_kw).fit(train, valid)
    finally:
        loop.update_ema = original
    print(f"{kind} on {device}, steps {args.profile}..{2 * args.profile - 1}:")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20))


if __name__ == "__main__":
    main()
