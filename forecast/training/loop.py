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
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, default_collate

from forecast.errors import ForecastError
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
    """``ema <- decay * ema + (1 - decay) * module`` for parameters; buffers copied."""
    with torch.no_grad():
        for pe, p in zip(ema.parameters(), module.parameters(), strict=True):
            pe.lerp_(p, 1 - decay)
        for be, b in zip(ema.buffers(), module.buffers(), strict=True):
            be.copy_(b)


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
    desc: str = "train",
) -> tuple[nn.Module, TrainResult]:
    """Train ``module`` on ``dataset``; returns ``(ema_module, result)``.

    Parameters
    ----------
    module : nn.Module
        The network, already initialized (call :func:`seed_everything` before building it).
    dataset : Dataset
        Items collated with ``torch.utils.data.default_collate``.
    loss_fn : callable
        ``loss_fn(module, batch, generator) -> scalar tensor``; draw all randomness from
        ``generator``.
    cfg : TrainConfig
        Loop settings.
    validate : callable, optional
        ``validate(ema_module) -> float`` (lower is better), called every ``cfg.eval_every``
        epochs and at the end.
    checkpoint : callable, optional
        ``checkpoint(tag, ema_module, arrays, meta)``: write the ``best`` / ``last``
        checkpoint; ``arrays`` / ``meta`` hold the training state (see :func:`resume_state`).
    resume : (arrays, meta), optional
        A saved training state (the ``train.*`` arrays and ``meta["training"]`` of a ``last``
        checkpoint); ``ema`` must then hold that checkpoint's EMA weights.
    ema : nn.Module, optional
        EMA copy to continue from (with ``resume``); default: a copy of ``module``.
    stop_after : int, optional
        Stop after this global step as if interrupted (tests; ``cfg.max_minutes`` in use).
    desc : str
        Progress-bar label.
    """
    from tqdm.auto import tqdm

    n = len(dataset)  # type: ignore[arg-type]
    if n == 0:
        raise ForecastError("no training windows; pass a longer training period")
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    if cfg.max_steps is not None:
        total = min(total, cfg.max_steps)
    opt = torch.optim.AdamW(module.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(int(cfg.seed))
    result = TrainResult()
    if ema is None:
        ema = copy.deepcopy(module)
    ema.requires_grad_(False)
    if resume is not None:
        arrays, meta = resume
        params = dict(module.named_parameters())
        with torch.no_grad():
            for name, p in params.items():
                key = f"{PREFIX}param.{name}"
                if key not in arrays:
                    raise ForecastError("checkpoint lacks the training state; cannot resume")
                p.copy_(torch.from_numpy(np.array(arrays[key])))
        _restore_optimizer(opt, arrays)
        gen.set_state(torch.from_numpy(np.array(arrays[f"{PREFIX}generator"])))
        torch.set_rng_state(torch.from_numpy(np.array(arrays[f"{PREFIX}torch_rng"])))
        for key in ("step", "epoch", "best_score", "best_step", "evals_since_best", "history"):
            setattr(result, key, meta[key])
        result.seconds = float(meta.get("seconds", 0.0))
        if meta.get("stopped") in ("done", "early stop"):
            result.stopped = meta["stopped"]
            return ema, result
    start = time.perf_counter()
    seconds_before = result.seconds
    deadline = None if cfg.max_minutes is None else start + 60 * cfg.max_minutes
    bar = tqdm(
        total=total,
        initial=result.step,
        desc=desc,
        disable=not cfg.progress,
        dynamic_ncols=True,
        leave=False,
    )
    postfix: dict[str, str] = {}

    def state() -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        result.seconds = seconds_before + time.perf_counter() - start
        arrs = {f"{PREFIX}param.{k}": v.detach().clone() for k, v in module.named_parameters()}
        arrs = {k: v.numpy() for k, v in arrs.items()}
        arrs.update(_optimizer_arrays(opt))
        arrs[f"{PREFIX}generator"] = gen.get_state().numpy()
        arrs[f"{PREFIX}torch_rng"] = torch.get_rng_state().numpy()
        meta = result.to_dict()
        meta["config"] = cfg.to_dict()
        meta["steps_per_epoch"] = steps_per_epoch
        meta["total_steps"] = total
        return arrs, meta

    def evaluate() -> bool:
        """Validate, save best; True when early stopping triggers."""
        if validate is None:
            return False
        module.eval()
        ema.eval()
        score = float(validate(ema))
        module.train()
        result.history.append({"step": result.step, "epoch": result.epoch, "crps": score})
        postfix["val_crps"] = f"{score:.4g}"
        bar.set_postfix(postfix)
        if result.best_score is None or score < result.best_score:
            result.best_score, result.best_step, result.evals_since_best = score, result.step, 0
            if checkpoint is not None:
                checkpoint("best", ema, *state())
        else:
            result.evals_since_best += 1
        return cfg.patience > 0 and result.evals_since_best >= cfg.patience

    module.train()
    stopped = ""
    try:
        while result.step < total and not stopped:
            epoch = result.step // steps_per_epoch
            result.epoch = epoch
            order = epoch_order(cfg.seed, epoch, n)
            b = result.step - epoch * steps_per_epoch
            idx = order[b * cfg.batch_size : (b + 1) * cfg.batch_size]
            batch = default_collate([dataset[int(i)] for i in idx])
            lr = learning_rate(result.step, total, cfg)
            for group in opt.param_groups:
                group["lr"] = lr
            loss = loss_fn(module, batch, gen)
            if not torch.isfinite(loss):
                raise ForecastError(
                    f"training loss became {loss.item()} at step {result.step}; lower train.lr"
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                nn.utils.clip_grad_norm_(module.parameters(), cfg.grad_clip)
            opt.step()
            result.step += 1
            decay = min(cfg.ema_decay, (1 + result.step) / (10 + result.step))
            update_ema(ema, module, decay)
            postfix.update(loss=f"{loss.item():.4f}", lr=f"{lr:.2e}")
            bar.set_postfix(postfix, refresh=False)
            bar.update(1)
            end_of_epoch = result.step % steps_per_epoch == 0
            if end_of_epoch:
                result.epoch = result.step // steps_per_epoch
            if (
                end_of_epoch
                and cfg.eval_every > 0
                and result.epoch % cfg.eval_every == 0
                and result.step < total
                and evaluate()
            ):
                stopped = "early stop"
            elif stop_after is not None and result.step >= stop_after:
                stopped = "interrupted"
            elif deadline is not None and time.perf_counter() > deadline:
                stopped = "time limit"
        if not stopped:
            stopped = "done"
            if evaluate():
                stopped = "done"
    finally:
        bar.close()
    result.stopped = stopped
    if checkpoint is not None:
        checkpoint("last", ema, *state())
    else:
        state()
    return ema, result


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
