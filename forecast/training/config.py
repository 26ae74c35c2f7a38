"""Frozen configuration dataclasses and their TOML loader (``tomllib``; no global state).

A TOML configuration has one table per part, e.g.::

    [model]            # keywords of the model's constructor (see forecast train --help)
    base = 32
    sampler = "dpmpp-2m"
    nfe = 10

    [train]            # fields of TrainConfig
    epochs = 60
    batch_size = 32
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self, TypeVar

from forecast.errors import ForecastError

T = TypeVar("T")

#: Named values of ``TrainConfig.keep``: the training checkpoint that becomes the model (an
#: integer step is the third kind).
KEEP = ("best", "last")


def kept_tag(keep: str | int) -> str:
    """The training checkpoint that ``train.keep`` names: ``"best"`` or ``"last"``; a step
    number ends the run at that step, so its weights are the ``last`` checkpoint's."""
    return "last" if isinstance(keep, int) else keep


def check_step_reached(keep: str | int, record: Mapping[str, Any]) -> None:
    """A one-line error when ``train.keep`` is a step that a finished training (``record``: the
    loop's result, ``step`` and ``stopped``) did not end at (it stopped before)."""
    if (
        isinstance(keep, int)
        and record.get("step") != keep
        and record.get("stopped") != "interrupted"
    ):
        raise ForecastError(
            f"train.keep = {keep}, but training stopped at step {record.get('step')} "
            f"({record.get('stopped')}); raise max_steps / epochs / max_minutes, lower patience "
            "or keep an earlier step"
        )


@dataclass(frozen=True)
class TrainConfig:
    """Settings of the generic training loop (:func:`forecast.training.loop.train`).

    Attributes
    ----------
    epochs : int
        Passes over the training windows.
    max_steps : int or None
        Cap on optimizer steps (None: ``epochs * steps_per_epoch``); also fixes the length of
        the learning-rate schedule.
    batch_size : int
        Windows per step (per process under ``torchrun``: a step then sees N times as many).
    lr, weight_decay : float
        AdamW learning rate (peak) and decoupled weight decay.
    warmup_steps : int
        Linear warm-up length; then cosine decay to ``lr * min_lr_ratio``.
    min_lr_ratio : float
        Final learning rate as a fraction of ``lr``.
    ema_decay : float
        Decay of the exponential moving average of the weights (the weights used to sample).
    grad_clip : float
        Maximum global gradient norm (0 disables clipping).
    eval_every : int
        Validate every this many epochs (0: only at the end).
    eval_every_steps : int or None
        Validate every this many optimizer steps instead of by epochs (runs on training sets
        of different sizes then validate at the same steps, e.g. the folds of
        ``benchmarks/choose_training_length.py``).
    patience : int
        Stop after this many validations without improvement (0 disables early stopping).
    keep : str or int
        Which weights become the model (``forecast train``'s ``model.safetensors``):
        ``"best"`` (default), those with the lowest validation CRPS; ``"last"``, the final
        ones (the training length still follows ``max_steps`` and ``patience``); or a step
        number ``N``, the EMA weights after step ``N`` of the full schedule (the learning
        rates are those of a ``max_steps`` run, which then ends at step ``N``: its ``last``
        checkpoint), e.g. a step chosen by cross-validation over the training days
        (``benchmarks/choose_training_length.py``), so that no validation day picks them.
    val_issue_times, val_members : int
        Issue times and ensemble members used for the validation CRPS.
    seed : int
        Seed of initialization, batch order and diffusion noise.
    max_minutes : float or None
        Stop (saving a resumable ``last`` checkpoint) after this much wall time.
    progress : bool
        Show a tqdm progress bar.
    device : str or None
        Where the optimizer steps run (``"cpu"``, ``"cuda"``, ``"cuda:1"``); None: the loop's
        default, ``cuda:LOCAL_RANK`` under a ``torchrun`` NCCL job, else the CPU. The EMA
        weights, validation, checkpoints and sampling stay on the CPU.
    """

    epochs: int = 60
    max_steps: int | None = None
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 50
    min_lr_ratio: float = 0.05
    ema_decay: float = 0.995
    grad_clip: float = 1.0
    eval_every: int = 5
    eval_every_steps: int | None = None
    patience: int = 0
    keep: str | int = "best"
    val_issue_times: int = 8
    val_members: int = 16
    seed: int = 0
    max_minutes: float | None = None
    progress: bool = True
    device: str | None = None

    def __post_init__(self) -> None:
        if self.device is not None:
            import torch

            try:
                torch.device(self.device)
            except (RuntimeError, TypeError):
                raise ForecastError(
                    f"train.device {self.device!r} is not a torch device; use 'cpu' or 'cuda'"
                ) from None
        for name in ("epochs", "batch_size", "val_issue_times", "val_members"):
            if int(getattr(self, name)) < 1:
                raise ForecastError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        if self.eval_every_steps is not None and self.eval_every_steps < 1:
            raise ForecastError(f"train.eval_every_steps must be >= 1, got {self.eval_every_steps}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ForecastError(f"train.max_steps must be >= 1, got {self.max_steps}")
        if not 0 <= self.ema_decay < 1:
            raise ForecastError(f"train.ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.lr <= 0:
            raise ForecastError(f"train.lr must be positive, got {self.lr}")
        named = isinstance(self.keep, str) and self.keep in KEEP
        if isinstance(self.keep, list | tuple):
            raise ForecastError(
                f"train.keep = {list(self.keep)} makes one model per step: give the list to a "
                "pool component (forecast train --model pooled), or keep one step here"
            )
        if not named and (isinstance(self.keep, bool) or not isinstance(self.keep, int)):
            raise ForecastError(
                f"train.keep must be one of {', '.join(KEEP)} or a step number, got {self.keep!r}"
            )
        if isinstance(self.keep, int) and not 1 <= self.keep <= (self.max_steps or self.keep):
            raise ForecastError(
                f"train.keep = {self.keep} must be a step in 1..max_steps "
                f"({self.max_steps}); pick a step the schedule reaches"
            )

    @classmethod
    def from_dict(cls, mapping: Mapping[str, Any] | None, where: str = "train") -> Self:
        """Build from a mapping, refusing unknown keys (one-line error listing valid ones)."""
        return from_mapping(cls, mapping or {}, where)

    def replace(self, **changes: Any) -> Self:
        """A copy with ``changes`` applied (validated)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able fields."""
        return dataclasses.asdict(self)


def from_mapping(cls: type[T], mapping: Mapping[str, Any], where: str) -> T:
    """Instantiate dataclass ``cls`` from ``mapping``; unknown keys raise a ForecastError."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(mapping) - names)
    if unknown:
        raise ForecastError(
            f"unknown key(s) {unknown} in [{where}]; valid keys: {', '.join(sorted(names))}"
        )
    try:
        return cls(**mapping)
    except TypeError as err:
        raise ForecastError(f"bad [{where}] settings: {err}") from None


def load_toml(path: str | Path) -> dict[str, dict[str, Any]]:
    """Read a TOML configuration: ``{"model": {...}, "train": {...}}`` (missing tables empty).

    Raises a ForecastError for a missing file, invalid TOML or an unknown table.
    """
    path = Path(path)
    if not path.is_file():
        raise ForecastError(f"config file {path} not found; pass an existing .toml file")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ForecastError(f"{path} is not valid TOML ({err}); fix the file") from None
    unknown = sorted(set(data) - {"model", "train"})
    if unknown:
        raise ForecastError(f"{path}: unknown table(s) {unknown}; valid tables: model, train")
    for key in ("model", "train"):
        if not isinstance(data.get(key, {}), dict):
            raise ForecastError(f"{path}: [{key}] must be a table")
    return {"model": dict(data.get("model", {})), "train": dict(data.get("train", {}))}
