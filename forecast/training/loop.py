"""The generic training loop: AdamW, EMA weights, gradient clipping, validation, checkpoints,
early stopping and exact resume.

The loop knows nothing about diffusion: it gets a module, a ``torch.utils.data.Dataset``, a
``loss_fn(module, batch, generator) -> scalar`` and optionally ``validate(ema_module) -> float``
(lower is better, e.g. the validation CRPS) and ``checkpoint(tag, ema_module, arrays, meta)``
that writes a checkpoint ``tag`` in {"best", "last"} holding the training state given.

Exact resume: the batch order of epoch ``e`` is a permutation drawn from ``(seed, e)``; the
loss noise comes from one ``torch.Generator`` whose state is saved (as a uint8 array) with the
raw weights, the EMA weights (saved by the caller), the AdamW moments and the step counters
(JSON). Restoring them and continuing gives bit-identical weights to an uninterrupted run.

Data-parallel (``torchrun --nproc_per_node N``, see :mod:`forecast.training.distributed`): the
loss is computed through ``DistributedDataParallel`` (gradients averaged over the ranks), each
rank takes its ``DistributedSampler`` share of the epoch's permutation in batches of
``cfg.batch_size`` (so a step sees ``N * batch_size`` windows), draws its loss noise from its
own generator (seeded from ``(seed, rank)``), and rank 0 alone shows progress, validates
(the score is broadcast, so all ranks stop together) and writes checkpoints, which hold every
rank's generator state. Same seed and world size give identical results. On CUDA the loss runs
under ``torch.autocast`` (bf16, or fp16 with a ``GradScaler``); the EMA weights, validation and
checkpoints stay on the CPU.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, default_collate

from forecast.errors import ForecastError
from forecast.training import distributed
from forecast.training.config import TrainConfig

LossFn = Callable[[nn.Module, Any, torch.Generator], torch.Tensor]
Validate = Callable[[nn.Module], float]
Checkpoint = Callable[[str, nn.Module, dict[str, np.ndarray], dict[str, Any]], None]

PREFIX = "train."


@dataclass
class TrainResult:
    """What a training run did: steps, epochs, history of validations, why it stopped."""

    step: int = 0
    epoch: int = 0
    best_score: float | None = None
    best_step: int | None = None
    evals_since_best: int = 0
    stopped: str = ""
    seconds: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able copy."""
        return {
            "step": self.step,
            "epoch": self.epoch,
            "best_score": self.best_score,
            "best_step": self.best_step,
            "evals_since_best": self.evals_since_best,
            "stopped": self.stopped,
            "seconds": self.seconds,
            "history": list(self.history),
        }


def seed_everything(seed: int) -> None:
    """Seed torch's global generator (initialization) and numpy's legacy one."""
    torch.manual_seed(int(seed))
    np.random.seed(int(seed) % 2**32)  # noqa: NPY002 - libraries may still use it


def learning_rate(step: int, total: int, cfg: TrainConfig) -> float:
    """Linear warm-up over ``warmup_steps`` then cosine decay to ``lr * min_lr_ratio``."""
    if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    span = max(total - cfg.warmup_steps, 1)
    frac = min(max(step - cfg.warmup_steps, 0) / span, 1.0)
    return cfg.lr * (
        cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * frac))
    )


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The batch order of epoch ``epoch``: a permutation of ``n`` items from ``(seed, epoch)``."""
    return np.random.default_rng([int(seed), int(epoch), 7]).permutation(n)


def update_ema(ema: nn.Module, module: nn.Module, decay: float) -> None:
    """``ema <- decay * ema + (1 - decay) * module`` for parameters; buffers copied.

    Buffers are matched by name: one tensor shared by several layers (the graph nets'
    adjacency) is one buffer on the CPU but becomes one copy per layer once ``module`` is moved
    to a GPU, so the two modules may list different numbers of distinct buffers."""
    with torch.no_grad():
        for pe, p in zip(ema.parameters(), module.parameters(), strict=True):
            pe.lerp_(p.to(pe.device), 1 - decay)
        ema_buffers = dict(ema.named_buffers(remove_duplicate=False))
        for name, b in module.named_buffers(remove_duplicate=False):
            ema_buffers[name].copy_(b)


def _optimizer_arrays(opt: torch.optim.Optimizer) -> dict[str, np.ndarray]:
    out = {}
    for idx, st in opt.state_dict()["state"].items():
        for key, value in st.items():
            out[f"{PREFIX}optim.{idx}.{key}"] = torch.as_tensor(value).detach().cpu().numpy()
    return out


def _restore_optimizer(opt: torch.optim.Optimizer, arrays: dict[str, np.ndarray]) -> None:
    sd = opt.state_dict()
    state: dict[int, dict[str, torch.Tensor]] = {}
    head = f"{PREFIX}optim."
    for name, value in arrays.items():
        if name.startswith(head):
            idx, key = name[len(head) :].split(".", 1)
            state.setdefault(int(idx), {})[key] = torch.from_numpy(np.array(value))
    sd["state"] = state
    opt.load_state_dict(sd)


class _Loss(nn.Module):
    """``loss_fn(module, batch, generator)`` as a module's forward, so that
    ``DistributedDataParallel`` sees the loss's forward and averages its gradients while
    ``loss_fn`` still gets the plain module (with its attributes)."""

    def __init__(self, module: nn.Module, loss_fn: LossFn) -> None:
        super().__init__()
        self.module = module
        self.loss_fn = loss_fn

    def forward(self, batch: Any, gen: torch.Generator) -> torch.Tensor:
        return self.loss_fn(self.module, batch, gen)


def _to_device(batch: Any, device: torch.device) -> Any:
    """``batch`` (tensors in dicts, lists, tuples) moved to ``device``."""
    if device.type == "cpu":
        return batch
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


def _rank_prefix(rank: int) -> str:
    """Prefix of a rank's RNG states in a checkpoint (rank 0 keeps the one-process names)."""
    return PREFIX if rank == 0 else f"{PREFIX}rank{rank}."


def train(
    module: nn.Module,
    dataset: Dataset,
    loss_fn: LossFn,
    cfg: TrainConfig,
    *,
    validate: Validate | None = None,
    checkpoint: Checkpoint | None = None,
    resume: tuple[dict[str, np.ndarray], dict[str, Any]] | None = None,
    ema: nn.Module | None = None,
    stop_after: int | None = None,
    snapshots: Sequence[int] = (),
    desc: str = "train",
    device: str | torch.device | None = None,
    mixed_precision: bool = True,
) -> tuple[nn.Module, TrainResult]:
    """Train ``module`` on ``dataset``; returns ``(ema_module, result)``.

    Under ``torchrun`` every process calls this with the same arguments; it joins the process
    group (:func:`forecast.training.distributed.setup`) and trains data-parallel.

    Parameters
    ----------
    module : nn.Module
        The network, already initialized (call :func:`seed_everything` before building it).
    dataset : Dataset
        Items collated with ``torch.utils.data.default_collate``.
    loss_fn : callable
        ``loss_fn(module, batch, generator) -> scalar tensor``, a mean over the batch; draw
        all randomness from ``generator``.
    cfg : TrainConfig
        Loop settings (``batch_size`` is per process under torchrun).
    validate : callable, optional
        ``validate(ema_module) -> float`` (lower is better), called every ``cfg.eval_every``
        epochs (or ``cfg.eval_every_steps`` steps) and at the end (on rank 0; the score is
        broadcast).
    checkpoint : callable, optional
        ``checkpoint(tag, ema_module, arrays, meta)``: write the ``best`` / ``last``
        checkpoint; ``arrays`` / ``meta`` hold the training state (see :func:`resume_state`).
        Called on rank 0 only.
    resume : (arrays, meta), optional
        A saved training state (the ``train.*`` arrays and ``meta["training"]`` of a ``last``
        checkpoint); ``ema`` must then hold that checkpoint's EMA weights. The world size and
        device type must be those of the run that wrote it.
    ema : nn.Module, optional
        EMA copy to continue from (with ``resume``); default: a copy of ``module``.
    stop_after : int, optional
        Stop after this global step as if interrupted (tests; ``cfg.max_minutes`` in use).
    snapshots : sequence of int
        Steps at which to write the training checkpoint ``step-<N>`` as well, before any
        validation at that step: the state of a run interrupted there, from which a resumed
        run with ``train.keep = N`` ends exactly as a run trained to step ``N`` alone.
    desc : str
        Progress-bar label.
    device : str or torch.device, optional
        Where the optimizer steps run; default ``cfg.device``, else ``cuda:LOCAL_RANK`` under
        an NCCL process group, else the CPU. The EMA weights stay where ``module`` was
        (validation and checkpoints use them).
    mixed_precision : bool
        On CUDA, compute the loss under ``torch.autocast`` (bf16 where supported, else fp16
        with a ``GradScaler``). Ignored on the CPU.
    """
    from tqdm.auto import tqdm

    info = distributed.setup()
    if device is None:
        device = info.device if cfg.device is None else cfg.device
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ForecastError(
            f"training device {device} asked for, but torch sees no CUDA device; "
            "train on the CPU (leave train.device out or pass --device cpu)"
        )
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    n = len(dataset)  # type: ignore[arg-type]
    if n == 0:
        raise ForecastError("no training windows; pass a longer training period")
    steps_per_epoch = math.ceil(distributed.items_per_rank(n, info) / cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    if cfg.max_steps is not None:
        total = min(total, cfg.max_steps)
    if ema is None:
        ema = copy.deepcopy(module)
    ema.requires_grad_(False)
    module.to(device)
    opt = torch.optim.AdamW(module.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator(device=device).manual_seed(distributed.rank_seed(cfg.seed, info))
    amp_dtype = None
    if device.type == "cuda" and mixed_precision:
        amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    result = TrainResult()
    if resume is not None:
        arrays, meta = resume
        for key, have, fix in (
            ("world_size", info.world_size, "launch with torchrun --nproc_per_node {}"),
            ("device", device.type, "train on {} again"),
        ):
            saved = meta.get(key, 1 if key == "world_size" else "cpu")
            if saved != have:
                raise ForecastError(
                    f"checkpoint was trained with {key} {saved}, this run has {have}; "
                    + fix.format(saved)
                )
        params = dict(module.named_parameters())
        with torch.no_grad():
            for name, p in params.items():
                key = f"{PREFIX}param.{name}"
                if key not in arrays:
                    raise ForecastError("checkpoint lacks the training state; cannot resume")
                p.copy_(torch.from_numpy(np.array(arrays[key])))
        _restore_optimizer(opt, arrays)
        mine = _rank_prefix(info.rank)
        gen.set_state(torch.from_numpy(np.array(arrays[f"{mine}generator"])))
        torch.set_rng_state(torch.from_numpy(np.array(arrays[f"{mine}torch_rng"])))
        if scaler is not None and f"{PREFIX}grad_scaler" in arrays:
            scale, tracker = np.array(arrays[f"{PREFIX}grad_scaler"]).tolist()
            scaler.load_state_dict(
                {**scaler.state_dict(), "scale": scale, "_growth_tracker": int(tracker)}
            )
        for key in ("step", "epoch", "best_score", "best_step", "evals_since_best", "history"):
            setattr(result, key, meta[key])
        result.seconds = float(meta.get("seconds", 0.0))
        if meta.get("stopped") in ("done", "early stop"):
            result.stopped = meta["stopped"]
            return ema, result
    if info.distributed:
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        forward: Callable[[Any, torch.Generator], torch.Tensor] = DistributedDataParallel(
            _Loss(module, loss_fn), device_ids=ids
        )
    else:

        def forward(batch: Any, g: torch.Generator) -> torch.Tensor:
            return loss_fn(module, batch, g)

    def loss_context() -> contextlib.AbstractContextManager:
        """On CUDA: tensors created by ``loss_fn`` land on the device; autocast if asked."""
        stack = contextlib.ExitStack()
        if device.type == "cuda":
            stack.enter_context(device)
            if amp_dtype is not None:
                stack.enter_context(torch.autocast("cuda", dtype=amp_dtype))
        return stack

    start = time.perf_counter()
    seconds_before = result.seconds
    deadline = None if cfg.max_minutes is None else start + 60 * cfg.max_minutes
    # train.keep = N: the schedule stays that of ``total`` steps, but the steps after N cannot
    # change the kept weights, so the run ends there
    end = min(total, cfg.keep) if isinstance(cfg.keep, int) else total
    bar = tqdm(
        total=end,
        initial=result.step,
        desc=desc,
        disable=not cfg.progress or not info.is_main,
        dynamic_ncols=True,
        leave=False,
    )
    postfix: dict[str, str] = {}

    def state() -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """The training state (every rank must call it: the RNG states are gathered)."""
        result.seconds = seconds_before + time.perf_counter() - start
        arrs = {
            f"{PREFIX}param.{k}": v.detach().cpu().clone() for k, v in module.named_parameters()
        }
        arrs = {k: v.numpy() for k, v in arrs.items()}
        arrs.update(_optimizer_arrays(opt))
        rngs = distributed.gather_arrays(
            [gen.get_state().numpy(), torch.get_rng_state().numpy()], info
        )
        for rank, (g_state, t_state) in enumerate(rngs):
            arrs[f"{_rank_prefix(rank)}generator"] = g_state
            arrs[f"{_rank_prefix(rank)}torch_rng"] = t_state
        if scaler is not None:
            sd = scaler.state_dict()
            arrs[f"{PREFIX}grad_scaler"] = np.array([sd["scale"], sd["_growth_tracker"]])
        meta = result.to_dict()
        meta["config"] = cfg.to_dict()
        meta["steps_per_epoch"] = steps_per_epoch
        meta["total_steps"] = total
        if info.distributed:
            meta["world_size"] = info.world_size
        if device.type != "cpu":
            meta["device"] = device.type
        return arrs, meta

    def save(tag: str) -> None:
        """Checkpoint ``tag`` from rank 0."""
        arrays, meta = state()
        if checkpoint is not None and info.is_main:
            checkpoint(tag, ema, arrays, meta)

    def evaluate() -> bool:
        """Validate, save best; True when early stopping triggers."""
        if validate is None:
            return False
        module.eval()
        ema.eval()
        score = distributed.broadcast_float(
            float(validate(ema)) if info.is_main else math.nan, info
        )
        module.train()
        result.history.append({"step": result.step, "epoch": result.epoch, "crps": score})
        postfix["val_crps"] = f"{score:.4g}"
        bar.set_postfix(postfix)
        if result.best_score is None or score < result.best_score:
            result.best_score, result.best_step, result.evals_since_best = score, result.step, 0
            if checkpoint is not None:
                save("best")
        else:
            result.evals_since_best += 1
        return cfg.patience > 0 and result.evals_since_best >= cfg.patience

    snapshot_steps = {int(s) for s in snapshots}
    module.train()
    stopped = ""
    try:
        while result.step < end and not stopped:
            epoch = result.step // steps_per_epoch
            result.epoch = epoch
            order = distributed.shard_order(epoch_order(cfg.seed, epoch, n), dataset, info)
            b = result.step - epoch * steps_per_epoch
            idx = order[b * cfg.batch_size : (b + 1) * cfg.batch_size]
            batch = _to_device(default_collate([dataset[int(i)] for i in idx]), device)
            lr = learning_rate(result.step, total, cfg)
            for group in opt.param_groups:
                group["lr"] = lr
            with loss_context():
                loss = forward(batch, gen)
            shown = distributed.all_reduce_mean(loss.item(), info)  # nan on every rank if any
            if not math.isfinite(shown):
                raise ForecastError(
                    f"training loss became {shown} at step {result.step}; lower train.lr"
                )
            opt.zero_grad(set_to_none=True)
            if scaler is None:
                loss.backward()
                if cfg.grad_clip > 0:
                    nn.utils.clip_grad_norm_(module.parameters(), cfg.grad_clip)
                opt.step()
            else:
                scaler.scale(loss).backward()
                if cfg.grad_clip > 0:
                    scaler.unscale_(opt)
                    nn.utils.clip_grad_norm_(module.parameters(), cfg.grad_clip)
                scaler.step(opt)
                scaler.update()
            result.step += 1
            decay = min(cfg.ema_decay, (1 + result.step) / (10 + result.step))
            update_ema(ema, module, decay)
            postfix.update(loss=f"{shown:.4f}", lr=f"{lr:.2e}")
            bar.set_postfix(postfix, refresh=False)
            bar.update(1)
            end_of_epoch = result.step % steps_per_epoch == 0
            if end_of_epoch:
                result.epoch = result.step // steps_per_epoch
            if result.step in snapshot_steps:
                save(f"step-{result.step}")
            if cfg.eval_every_steps is not None:
                due = result.step % cfg.eval_every_steps == 0
            else:
                due = end_of_epoch and cfg.eval_every > 0 and result.epoch % cfg.eval_every == 0
            if due and result.step < end and evaluate():
                stopped = "early stop"
            elif stop_after is not None and result.step >= stop_after:
                stopped = "interrupted"
            elif deadline is not None and distributed.any_rank(
                time.perf_counter() > deadline, info
            ):
                stopped = "time limit"
        if not stopped:
            stopped = "done"
            if evaluate():
                stopped = "done"
    finally:
        bar.close()
    result.stopped = stopped
    save("last")
    distributed.barrier(info)  # no rank reads the checkpoints before rank 0 has written them
    return ema, result


def untimed(record: Any) -> Any:
    """A training record (``model.training``) without its timings: keys ending in ``seconds``
    at any depth (two runs of one training agree on everything else)."""
    if isinstance(record, dict):
        return {k: untimed(v) for k, v in record.items() if not str(k).endswith("seconds")}
    return record


def resume_state(
    arrays: dict[str, np.ndarray], meta: dict[str, Any]
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Split a checkpoint into the training state ``(train.* arrays, meta["training"])``."""
    if "training" not in meta or f"{PREFIX}generator" not in arrays:
        raise ForecastError(
            "checkpoint holds no training state (it is not a `last`/`best` training checkpoint); "
            "train without --resume"
        )
    return {k: v for k, v in arrays.items() if k.startswith(PREFIX)}, meta["training"]
