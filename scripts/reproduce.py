"""Reproduce a protocol's comparison of the generative models with the baselines, end to end.

For one evaluation protocol this trains the recommended diffusion and VAE configurations
(:data:`RECOMMENDED`, the ones docs/results.md reports as current) for each seed asked for,
then scores them in one protocol run beside the four baselines (same windows, members and
seeds; ``significance.md`` tests each model against the best baseline per lead), and prints the
tables of ``benchmarks/results_tables.py``. With ``--pool`` it also pools every trained model
into one multi-model ensemble (``forecast pool``), and each model's seeds into its deep
ensemble (``diffusion-pool``: with seeds 0-3 on P2 the same ensembles as
``data/configs/pooled-diffusion-era5-uk-t2m.toml``), and scores them in the same run. With
``--online`` every model and pool is also scored with online spread calibration
(``forecast online-spread``: ``<label>-online``, docs/vae.md "Round 12"), and with
``--online --blend`` their means are also moved towards persistence (``--persistence-blend``).

Every step is a ``forecast`` command, printed before it runs, so each can be rerun by hand. The
script can be stopped and started again: a model whose ``model.safetensors`` exists is reused,
one with only ``last.safetensors`` (interrupted) resumes, pools and online-spread wrappers are
written again from the current checkpoints (seconds; the same files for the same checkpoints),
and the protocol run reuses its cached ensembles.

Usage::

    .venv/bin/python scripts/reproduce.py P2 --seeds 0,1 --pool       # about 30 min on 2 cores
    .venv/bin/python scripts/reproduce.py P2 --seeds 0 --online       # plus online spread
    .venv/bin/python scripts/reproduce.py P1 --dry-run                # print the commands only
    .venv/bin/python scripts/reproduce.py P2 --seeds 0,1 --jobs 2     # two trainings at once

Output: ``--out`` (default ``outputs/reproduce/<protocol>``) holds ``<model>-s<seed>/``
training folders, the pools (``pool.safetensors``, ``<model>-pool.safetensors``), the
online-spread wrappers (``<label>-online.safetensors``) and the protocol run ``eval/``.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BASELINES = "persistence,climatology,diurnal-persistence,gp"
#: Protocol -> (data set, {model: recommended config}): the configurations docs/results.md
#: reports as current for each data set.
RECOMMENDED: dict[str, tuple[str, dict[str, str]]] = {
    "P2": (
        "era5-uk-t2m",
        {
            "diffusion": "data/configs/diffusion-era5-uk-t2m-gp-points-lowlr.toml",
            "vae": "data/configs/vae-era5-uk-t2m.toml",
        },
    ),
    "P1": (
        "los-loop",
        {
            "diffusion": "data/configs/diffusion-los-loop-residual.toml",
            "vae": "data/configs/vae-los-loop.toml",
        },
    ),
    "synthetic-weather": (
        "synthetic-weather",
        {
            "diffusion": "data/configs/diffusion-synthetic-weather-gp-clim.toml",
            "vae": "data/configs/vae-synthetic-weather.toml",
        },
    ),
    "synthetic-traffic": (
        "synthetic-traffic",
        {
            "diffusion": "data/configs/diffusion-synthetic-traffic-residual.toml",
            "vae": "data/configs/vae-synthetic-traffic.toml",
        },
    ),
}


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` -> ``[0, 1, 2]``; raises SystemExit with a one-line message on bad input."""
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise SystemExit(
            f"error: --seeds must be integers joined by commas, got {text!r}"
        ) from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise SystemExit(f"error: --seeds needs at least one seed and no repeats, got {text!r}")
    return seeds


def train_command(
    protocol: str, model: str, seed: int, folder: Path, threads: int, max_steps: int | None
) -> list[str] | None:
    """The ``forecast train`` command of one model and seed, with ``--resume`` when an earlier
    run was interrupted; None when ``folder/model.safetensors`` is already there."""
    if (folder / "model.safetensors").is_file():
        return None
    dataset, configs = RECOMMENDED[protocol]
    cmd = [
        *forecast_cli(),
        "train",
        "--data",
        dataset,
        "--model",
        model,
        "--config",
        str(REPO / configs[model]),
        "--seed",
        str(seed),
        "--out",
        str(folder),
        "--threads",
        str(threads),
    ]
    if max_steps is not None:
        cmd += ["--max-steps", str(max_steps)]
    if (folder / "last.safetensors").is_file():
        cmd.append("--resume")
    return cmd


def forecast_cli() -> list[str]:
    """The command line that runs ``forecast`` with this interpreter."""
    return [sys.executable, "-m", "forecast.cli"]


def is_training(cmd: list[str]) -> bool:
    """Whether ``cmd`` is one of the plan's ``forecast train`` commands."""
    return cmd[: len(forecast_cli()) + 1] == [*forecast_cli(), "train"]


def run_commands(commands: list[list[str]], jobs: int = 1) -> int:
    """Run ``commands`` in order, the trainings ``jobs`` at a time (their output printed after
    they end, in order); the exit status of the first command that fails, or 0."""
    trainings = [cmd for cmd in commands if is_training(cmd)]
    rest = [cmd for cmd in commands if not is_training(cmd)]
    if jobs > 1 and len(trainings) > 1:
        with ThreadPoolExecutor(jobs) as pool:
            for cmd in trainings:
                print("$ " + shlex.join(cmd), flush=True)
            runs = [
                pool.submit(subprocess.run, cmd, cwd=REPO, capture_output=True, text=True)
                for cmd in trainings
            ]
            failed = 0
            for cmd, future in zip(trainings, runs, strict=True):
                done = future.result()
                print(f"# {shlex.join(cmd[len(forecast_cli()) :])}:\n{done.stdout}", end="")
                sys.stderr.write(done.stderr)
                failed = failed or done.returncode
        if failed:
            return _failed(failed)
        trainings = []
    for cmd in [*trainings, *rest]:
        print("$ " + shlex.join(cmd), flush=True)
        done = subprocess.run(cmd, cwd=REPO, check=False)
        if done.returncode != 0:
            return _failed(done.returncode)
    return 0


def _failed(code: int) -> int:
    print(
        f"error: a step above failed (exit {code}); fix it and rerun, finished steps are reused",
        file=sys.stderr,
    )
    return code


def plan(args: argparse.Namespace) -> list[list[str]]:
    """Every command of the reproduction, in order (finished trainings left out)."""
    _, configs = RECOMMENDED[args.protocol]
    out = Path(args.out)
    commands: list[list[str]] = []
    checkpoints: list[tuple[str, Path]] = []
    for model in configs:
        for seed in parse_seeds(args.seeds):
            folder = out / f"{model}-s{seed}"
            cmd = train_command(args.protocol, model, seed, folder, args.threads, args.max_steps)
            if cmd is not None:
                commands.append(cmd if args.jobs == 1 else [*cmd, "--no-progress"])
            checkpoints.append((f"{model}-s{seed}", folder / "model.safetensors"))
    labelled = [f"{label}={path}" for label, path in checkpoints]
    pools = {}
    if args.pool and len(checkpoints) > 1:
        pools["pool"] = labelled
        for model in configs:  # a model's seeds alone: its deep ensemble
            seeds = [spec for spec in labelled if spec.startswith(f"{model}-s")]
            if len(seeds) > 1:
                pools[f"{model}-pool"] = seeds
    for name, members in list(pools.items()):
        path = out / f"{name}.safetensors"
        cmd = [*forecast_cli(), "pool"]
        for spec in members:
            cmd += ["--checkpoint", spec]
        commands.append([*cmd, "--out", str(path), "--overwrite"])
        labelled.append(f"{name}={path}")
    if args.online:
        for spec in list(labelled):
            label, path = spec.split("=", 1)
            online = out / f"{label}-online.safetensors"
            cmd = [*forecast_cli(), "online-spread", "--checkpoint", path]
            if args.blend:
                cmd.append("--persistence-blend")
            commands.append([*cmd, "--out", str(online), "--overwrite"])
            labelled.append(f"{label}-online={online}")
    cmd = [*forecast_cli(), "evaluate", "--protocol", args.protocol, "--models", BASELINES]
    for spec in labelled:
        cmd += ["--checkpoint", spec]
    cmd += ["--members", str(args.members), "--out", str(out / "eval")]
    if args.jobs > 1:  # the checkpoints' ensembles, that many at a time
        cmd += ["--jobs", str(args.jobs)]
    commands.append(cmd)
    commands.append(
        [sys.executable, str(REPO / "benchmarks" / "results_tables.py"), str(out / "eval")]
    )
    return commands


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("protocol", choices=sorted(RECOMMENDED), help="evaluation protocol")
    p.add_argument("--seeds", default="0", help="training seeds, e.g. 0,1 (default 0)")
    p.add_argument("--pool", action="store_true", help="also score a pool of all trained models")
    p.add_argument(
        "--online",
        action="store_true",
        help="also score every model and pool with online spread calibration",
    )
    p.add_argument(
        "--blend",
        action="store_true",
        help="with --online: also move each model's mean towards persistence",
    )
    p.add_argument("--members", type=int, default=50, help="ensemble members (default 50)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per training")
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="run up to N trainings, and sample up to N models' ensembles, at once (default 1; "
        "2 on a 2-core machine halves the time)",
    )
    p.add_argument("--max-steps", type=int, help="cap on optimizer steps (quick checks only)")
    p.add_argument("--out", help="output folder (default outputs/reproduce/<protocol>)")
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    args = p.parse_args(argv)
    args.out = str(Path(args.out or Path("outputs") / "reproduce" / args.protocol).resolve())
    if args.members < 1:
        raise SystemExit(f"error: --members must be >= 1, got {args.members}")
    if args.blend and not args.online:
        raise SystemExit("error: --blend acts on the online-spread wrappers; add --online")
    if args.jobs < 1:
        raise SystemExit(f"error: --jobs must be >= 1, got {args.jobs}")
    commands = plan(args)
    if args.dry_run:
        for cmd in commands:
            print("$ " + shlex.join(cmd), flush=True)
        return 0
    Path(args.out).mkdir(parents=True, exist_ok=True)
    return run_commands(commands, args.jobs)


if __name__ == "__main__":
    sys.exit(main())
