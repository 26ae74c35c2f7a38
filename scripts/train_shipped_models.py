"""Reproduce the shipped pretrained checkpoints under ``data/models/``.

Each shipped model is trained by ``forecast train`` with its configuration
``data/configs/shipped-<model>-<data>.toml`` (bounded by ``max_steps``, so the weights do not
depend on the machine's speed; ``max_minutes`` is only a safety cap), on one torch thread. The
best (lowest validation CRPS) weights are then written to ``data/models/<model>-<data>.safetensors``
with a ``shipped`` record in the metadata: training wall time, optimizer steps, why training
stopped, the validation CRPS of the shipped weights in normalized units (the model's own
validator run on the written checkpoint, so a diffusion model's calibrated spread factors count;
the training loop's best score, before calibration, is kept as ``val_crps_training``) and the
validation settings, the configuration file and the command. The shipped GPs are fitted once
instead (no training loop), and record the closed-form Gaussian CRPS of the validation windows
in physical units.

Usage::

    .venv/bin/python scripts/train_shipped_models.py            # all shipped models
    .venv/bin/python scripts/train_shipped_models.py --only vae-synthetic-weather --jobs 1

The training folders (``best`` / ``last`` checkpoints, logs) go to ``--work`` (default
``runs/shipped``, gitignored).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: (model, data set) of every shipped checkpoint.
SHIPPED = (
    ("diffusion", "synthetic-weather"),
    ("diffusion", "synthetic-traffic"),
    ("vae", "synthetic-weather"),
    ("vae", "synthetic-traffic"),
    ("gp", "synthetic-weather"),
    ("gp", "synthetic-traffic"),
)
MAX_BYTES = 5 * 1024 * 1024


def name_of(model: str, data: str) -> str:
    """File stem of a shipped checkpoint, e.g. ``diffusion-synthetic-weather``."""
    return f"{model}-{data}"


def train_gp(data: str, dest: Path) -> dict:
    """Fit the shipped GP of ``data`` (no training loop: one fit) and write its checkpoint.

    The recorded validation CRPS is the closed-form Gaussian CRPS over the protocol's validation
    windows, in physical units (``forecast.models.gp.gp_validation_crps``).
    """
    import tomllib

    import torch

    from forecast.checkpoint import load_checkpoint, save_checkpoint
    from forecast.commands.train import protocol_for
    from forecast.data import open_dataset
    from forecast.models.gp import GaussianProcessForecaster, gp_validation_crps

    name = name_of("gp", data)
    config = REPO / "data" / "configs" / f"shipped-{name}.toml"
    kwargs = tomllib.loads(config.read_text())["model"]
    torch.set_num_threads(1)
    ds = open_dataset(data)
    proto = protocol_for(data, ds, None, None)
    model = GaussianProcessForecaster(context=proto.context, horizon=proto.horizon, **kwargs)
    start = time.perf_counter()
    with torch.random.fork_rng():
        torch.manual_seed(model.seed)
        model.fit(proto.split(ds, "train"), proto.split(ds, "val"))
    seconds = time.perf_counter() - start
    target = dest / f"{name}.safetensors"
    model.save(target)
    arrays, meta = load_checkpoint(target)
    meta["shipped"] = {
        "name": name,
        "model": "gp",
        "data": data,
        "config": str(config.relative_to(REPO)),
        "command": "python scripts/train_shipped_models.py --only " + name,
        "threads": 1,
        "train_seconds": round(seconds, 1),
        "val_crps": gp_validation_crps(model, ds, proto),
        "val_crps_units": "physical units (closed-form Gaussian CRPS, validation windows)",
    }
    save_checkpoint(target, arrays, meta)
    print(
        f"{name}: fitted in {seconds:.0f} s, val CRPS {meta['shipped']['val_crps']:.4f} -> "
        f"{target.relative_to(REPO)}",
        flush=True,
    )
    return meta["shipped"]


def shipped_val_crps(path: Path, data: str) -> float:
    """Validation CRPS (normalized) of the checkpoint at ``path``: the model's own validator
    (the training loop's windows, members and member seeds) on the protocol's validation split.

    Unlike the training loop's best score this includes what is fitted after training, e.g. a
    diffusion model's spread factors.
    """
    import torch

    from forecast.commands.train import protocol_for
    from forecast.data import open_dataset
    from forecast.models import load_model

    torch.set_num_threads(1)
    ds = open_dataset(data)
    return load_model(path).validation_crps(protocol_for(data, ds, None, None).split(ds, "val"))


def train_one(model: str, data: str, work: Path, dest: Path, threads: int) -> dict:
    """Train one shipped model with ``forecast train`` and write its shipped checkpoint."""
    from forecast.checkpoint import load_checkpoint, save_checkpoint
    from forecast.errors import ForecastError

    if model == "gp":
        return train_gp(data, dest)
    name = name_of(model, data)
    config = REPO / "data" / "configs" / f"shipped-{name}.toml"
    out = work / name
    if out.exists():
        shutil.rmtree(out)  # never resume a stale run: the checkpoint must be reproducible
    out.mkdir(parents=True)
    forecast = Path(sys.executable).with_name("forecast")
    cmd = [
        str(forecast), "train", "--data", data, "--model", model,
        "--config", str(config.relative_to(REPO)), "--out", str(out),
        "--threads", str(threads), "--no-progress",
    ]  # fmt: skip
    start = time.perf_counter()
    with open(out / "train.log", "w") as log:
        proc = subprocess.run(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, check=False)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise ForecastError(f"training {name} failed (exit {proc.returncode}); see {out}/train.log")
    _, last = load_checkpoint(out / "last.safetensors")
    arrays, meta = load_checkpoint(out / "model.safetensors")
    training = last["training"]
    cfg = training["config"]
    meta["shipped"] = {
        "name": name,
        "model": model,
        "data": data,
        "config": str(config.relative_to(REPO)),
        "command": "python scripts/train_shipped_models.py --only " + name,
        "threads": threads,
        "train_seconds": round(float(training["seconds"]), 1),
        "wall_seconds": round(wall, 1),
        "steps": int(training["step"]),
        "stopped": training["stopped"],
        "best_step": training["best_step"],
        "val_crps_training": training["best_score"],
        "val_issue_times": int(cfg["val_issue_times"]),
        "val_members": int(cfg["val_members"]),
    }
    target = dest / f"{name}.safetensors"
    save_checkpoint(target, arrays, meta)
    meta["shipped"]["val_crps"] = shipped_val_crps(target, data)
    meta["shipped"]["val_crps_units"] = (
        "normalized (the training loop's validator on the shipped weights)"
    )
    save_checkpoint(target, arrays, meta)
    size = target.stat().st_size
    if size > MAX_BYTES:
        raise ForecastError(f"{target} is {size / 2**20:.1f} MiB > 5 MiB; shrink its config")
    print(
        f"{name}: {meta['shipped']['steps']} steps in {meta['shipped']['train_seconds']:.0f} s "
        f"({training['stopped']}), val CRPS {meta['shipped']['val_crps']:.4f} "
        f"(training loop {training['best_score']:.4f}), "
        f"{size / 2**20:.2f} MiB -> {target.relative_to(REPO)}",
        flush=True,
    )
    return meta["shipped"]


def main(argv: list[str] | None = None) -> int:
    """Train the shipped models (all, or those named by ``--only``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    names = [name_of(m, d) for m, d in SHIPPED]
    parser.add_argument("--only", nargs="+", choices=names, help="train only these models")
    parser.add_argument("--jobs", type=int, default=2, help="models trained at once (2)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per model (1)")
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "shipped")
    parser.add_argument("--dest", type=Path, default=REPO / "data" / "models")
    args = parser.parse_args(argv)
    todo = [(m, d) for m, d in SHIPPED if not args.only or name_of(m, d) in args.only]
    args.dest.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        jobs = [pool.submit(train_one, m, d, args.work, args.dest, args.threads) for m, d in todo]
        failed = 0
        for job in jobs:
            try:
                job.result()
            except Exception as err:  # report every model, then fail
                print(f"error: {err}", file=sys.stderr)
                failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
