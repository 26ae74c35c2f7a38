"""``forecast train``: fit a model on the training split of a data set and write checkpoints.

A named data set uses its evaluation protocol's splits (``era5-uk-t2m`` -> P2, ``los-loop`` ->
P1, the synthetic ones -> their own); a path is split chronologically 70/10/20 % with
``--context`` and ``--horizon``. The model trains on the train split and validates on the val
split. Models trained by the generic loop (``diffusion``) write ``best.safetensors`` and
``last.safetensors`` to ``--out`` (``last`` resumes exactly with ``--resume``); every model also
writes ``model.safetensors``: the best weights where there is a validation score, or the last
ones with ``keep = "last"`` in ``[train]``.

Data-parallel training on N processes runs the same command under torchrun, e.g. on CPUs
(gloo) or N GPUs (NCCL; the loss in bf16/fp16 autocast):

    torchrun --standalone --nproc_per_node 2 -m forecast.cli train --data NAME --out DIR

Each process trains on its share of every batch (``batch_size`` windows per process); rank 0
alone shows progress, prints and writes the checkpoints. ``--resume`` needs the same number
of processes as the run that wrote ``last.safetensors``.
"""

from __future__ import annotations

import argparse
import inspect
from pathlib import Path
from typing import Any

from forecast.errors import ForecastError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train`` sub-command."""
    p = subparsers.add_parser("train", help="train a model on a data set", description=__doc__)
    p.add_argument("--data", required=True, metavar="NAME|PATH", help="named data set or path")
    p.add_argument("--model", default="diffusion", help="model name (default: diffusion)")
    p.add_argument("--config", metavar="FILE.toml", help="TOML with [model] and [train] tables")
    p.add_argument("--out", metavar="DIR", help="output folder (default: outputs/MODEL-DATA)")
    p.add_argument("--resume", action="store_true", help="continue from DIR/last.safetensors")
    p.add_argument("--seed", type=int, help="training seed (overrides [train] seed)")
    p.add_argument("--max-minutes", type=float, help="stop after M minutes (resumable)")
    p.add_argument("--max-steps", type=int, help="cap on optimizer steps (overrides [train])")
    p.add_argument("--context", type=int, help="context steps (path data; default 6)")
    p.add_argument("--horizon", type=int, help="horizon steps (path data; default 24)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="fit up to N models at once, each in its own process on threads / N threads: a "
        "pool's models, or a VAE's cross-fit fold models (default 1: one after the other)",
    )
    p.add_argument(
        "--device",
        help="where the optimizer steps run, e.g. cuda (overrides [train] device; default CPU, "
        "or each rank's GPU under torchrun)",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


def protocol_for(source: str, ds: Any, context: int | None, horizon: int | None) -> Any:
    """The evaluation protocol of a named data set, or a 70/10/20 split of a path's data."""
    from forecast.data import time_step
    from forecast.data.describe import format_step
    from forecast.data.protocols import PROTOCOLS, chronological, get_protocol
    from forecast.dims import TIME

    for name in PROTOCOLS.names():
        proto = get_protocol(name)
        if proto.dataset == source:
            if ds.sizes[TIME] != proto.n_steps:
                proto = proto.resized(ds.sizes[TIME])
            if context is not None or horizon is not None:
                raise ForecastError(
                    f"--context/--horizon are fixed by protocol {proto.name} for {source}; "
                    "drop them"
                )
            return proto
    return chronological(
        "custom",
        source,
        ds.sizes[TIME],
        context or 6,
        horizon or 24,
        step=format_step(time_step(ds)),
    )


def build_model(name: str, context: int, horizon: int, model_kw: dict, train_kw: dict) -> Any:
    """Instantiate registered model ``name`` with the window geometry and the config tables."""
    from forecast.models import MODELS

    cls = MODELS.get(name)
    params = inspect.signature(cls.__init__).parameters
    unknown = sorted(set(model_kw) - set(params) - {"context", "horizon"})
    if unknown:
        valid = [p for p in params if p not in ("self", "context", "horizon", "train")]
        raise ForecastError(
            f"unknown [model] key(s) {unknown} for {name}; valid keys: {', '.join(valid)}"
        )
    kw = dict(model_kw)
    if "train" in params:
        kw["train"] = train_kw
    elif set(train_kw) - {"progress"}:  # --no-progress is harmless for a quick fit
        raise ForecastError(f"model {name} takes no [train] settings; remove the table")
    return cls(context=context, horizon=horizon, **kw)


def _training_text(info: dict[str, Any]) -> str:
    """One line on a training record: steps, why it stopped, best score, kept weights."""
    text = (
        f"{info.get('step')} steps, stopped: {info.get('stopped')}, best val CRPS "
        f"(normalized): {info.get('best_score')}"
    )
    if info.get("weights_step") not in (None, info.get("step")):
        text += f"; the model holds the weights of step {info['weights_step']}"
    return text


def run(args: argparse.Namespace) -> int:
    """Run ``forecast train``; returns the exit status."""
    from forecast.training import distributed

    info = distributed.setup()  # joins torchrun's process group; one process otherwise
    done = False
    try:
        status = _run(args, info)
        done = True
        return status
    finally:
        if done:  # leaving the group is collective: a rank that tore it down while rank 0
            distributed.barrier(info)  # still saved could abort (gloo: SIGABRT at exit)
        distributed.cleanup()


def _run(args: argparse.Namespace, info: Any) -> int:
    """``forecast train`` in this process (one rank of ``info``'s job)."""
    import torch

    from forecast.data import open_dataset
    from forecast.models.wrapped import WRAPPERS
    from forecast.training.config import load_toml

    if args.threads is not None:
        if args.threads < 1:
            raise ForecastError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    if args.jobs < 1:
        raise ForecastError(f"--jobs must be >= 1, got {args.jobs}")
    if args.jobs > 1 and info.world_size > 1:
        raise ForecastError(
            "--jobs fits a pool's models in processes of their own; under torchrun drop --jobs"
        )
    cfg = load_toml(args.config) if args.config else {"model": {}, "train": {}}
    train_kw = dict(cfg["train"])
    for key, value in (
        ("seed", args.seed),
        ("max_minutes", args.max_minutes),
        ("max_steps", args.max_steps),
        ("device", args.device),
    ):
        if value is not None:
            train_kw[key] = value
    if args.no_progress:
        train_kw["progress"] = False
    ds = open_dataset(args.data)
    proto = protocol_for(args.data, ds, args.context, args.horizon)
    model = build_model(args.model, proto.context, proto.horizon, cfg["model"], train_kw)
    out = Path(args.out) if args.out else Path("outputs") / f"{args.model}-{Path(args.data).stem}"
    out.mkdir(parents=True, exist_ok=True)
    train, valid = proto.split(ds, "train"), proto.split(ds, "val")
    fit_params = inspect.signature(model.fit).parameters
    options: dict[str, Any] = {}
    if "out_dir" in fit_params:
        options.update(out_dir=out, resume=args.resume)
    elif args.resume:
        raise ForecastError(f"model {args.model} cannot resume; train without --resume")
    if "jobs" in fit_params:
        options["jobs"] = args.jobs
    elif args.jobs != 1:
        raise ForecastError(f"model {args.model} fits in one process; drop --jobs")
    model.fit(train, valid, **options)
    if not info.is_main:  # rank 0 writes the final weights and reports
        return 0
    model.save(out / "model.safetensors")  # fit ends with the train.keep weights
    info = getattr(model, "training", {}) or {}
    parts = [f"trained {args.model} on {args.data} ({proto.name} splits)"]
    if info:
        parts.append(_training_text(info))
    print("; ".join(parts))
    pool = model
    while getattr(pool, "kind", "") in WRAPPERS:  # a pool inside online-spread or schaake
        pool = pool.model
    for label, part in zip(getattr(pool, "labels", []), getattr(pool, "models", []), strict=False):
        record = getattr(part, "training", None)  # a pool's models (also inside a wrapper)
        print(f"  {label}: " + (_training_text(record) if record else "fitted"))
    latent = info.get("latent") if info else None
    if latent:  # latent-variable models report their latent usage (posterior-collapse check)
        print(
            f"active latent units: {latent['active_units']} of {latent['latent_units']} "
            f"(mean KL > {latent['threshold']} nats over {latent['windows']} windows)"
        )
    cross = info.get("cross_fit") if info else None
    if cross:  # the VAE's calibration = "cross-fit"
        print(
            f"spread factors fitted on the validation windows and {cross['windows']} held-out "
            f"training windows of {cross['folds']} fold models (trained in {cross['seconds']} s)"
        )
    print(f"checkpoints in {out}: " + ", ".join(sorted(p.name for p in out.glob("*.safetensors"))))
    return 0
