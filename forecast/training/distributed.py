"""Multi-process training with ``torchrun``: process-group setup, sharding, rank-0 helpers.

``torchrun --nproc_per_node N`` starts N copies of a program and tells each one its place
through environment variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``,
``MASTER_PORT``). :func:`setup` reads them and joins the process group (NCCL when CUDA is
available, gloo on CPUs); the training loop calls it, so every model trained by
:func:`forecast.training.loop.train` runs data-parallel unchanged, e.g.::

    torchrun --nproc_per_node 2 -m forecast.cli train --data synthetic-weather --out runs/a

Without those variables (or with ``WORLD_SIZE=1``) nothing is initialized and training runs
in one process exactly as before.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import Dataset
from torch.utils.data.distributed import DistributedSampler

from forecast.errors import ForecastError

ENV_KEYS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
CPU = torch.device("cpu")


@dataclass(frozen=True)
class DistInfo:
    """This process's place in a (possibly one-process) training job.

    Attributes
    ----------
    rank, world_size, local_rank : int
        Global rank, number of processes, rank on this machine.
    backend : str or None
        ``"nccl"`` or ``"gloo"``; None when not distributed.
    device : torch.device
        Where this process trains: ``cuda:LOCAL_RANK`` with NCCL, otherwise the CPU.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    device: torch.device = CPU

    @property
    def is_main(self) -> bool:
        """True on rank 0, the process that logs and writes files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True when more than one process trains."""
        return self.world_size > 1


def _env_int(name: str) -> int:
    value = os.environ.get(name)
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ForecastError(
            f"environment variable {name}={value!r} is not an integer; launch with torchrun"
        ) from None


def default_backend() -> str:
    """``"nccl"`` when CUDA is available, else ``"gloo"``."""
    return "nccl" if torch.cuda.is_available() else "gloo"


def current() -> DistInfo:
    """The job this process belongs to (one process when no process group is initialized)."""
    if not (dist.is_available() and dist.is_initialized()):
        return DistInfo()
    backend = str(dist.get_backend())
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local) if backend == "nccl" else torch.device("cpu")
    return DistInfo(dist.get_rank(), dist.get_world_size(), local, backend, device)


def setup(backend: str | None = None) -> DistInfo:
    """Join the process group described by torchrun's environment variables (idempotent).

    Parameters
    ----------
    backend : {"nccl", "gloo"}, optional
        Default: :func:`default_backend`.

    Returns
    -------
    DistInfo
        One process (nothing initialized) when ``WORLD_SIZE`` is unset or 1.
    """
    if dist.is_available() and dist.is_initialized():
        return current()
    if int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1:
        return DistInfo()
    if not dist.is_available():
        raise ForecastError("this torch build has no torch.distributed; run one process")
    missing = [k for k in ENV_KEYS if not os.environ.get(k)]
    if missing:
        raise ForecastError(
            f"WORLD_SIZE > 1 but {', '.join(missing)} not set; launch with "
            "`torchrun --nproc_per_node N ...`"
        )
    rank, world, local = _env_int("RANK"), _env_int("WORLD_SIZE"), _env_int("LOCAL_RANK")
    if not 0 <= rank < world:
        raise ForecastError(f"RANK={rank} outside [0, WORLD_SIZE={world}); launch with torchrun")
    backend = backend or default_backend()
    if backend not in ("nccl", "gloo"):
        raise ForecastError(f"unknown backend {backend!r}; use nccl (GPUs) or gloo (CPUs)")
    if backend == "nccl":
        if not torch.cuda.is_available() or local >= torch.cuda.device_count():
            raise ForecastError(
                f"NCCL needs a GPU for LOCAL_RANK={local}; use --nproc_per_node <= GPU count"
            )
        torch.cuda.set_device(local)
    dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world)
    return current()


def cleanup() -> None:
    """Leave the process group (no-op when none was initialized)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    """Wait until every process gets here (no-op for one process)."""
    if info.distributed:
        dist.barrier()


def shard_order(order: np.ndarray, dataset: Dataset, info: DistInfo) -> np.ndarray:
    """This rank's share of an epoch's item order, via torch's ``DistributedSampler``.

    The sampler (``shuffle=False``: the shuffling is ``order`` itself, drawn from the seed and
    epoch) pads the order by repeating its head to a multiple of the world size and gives rank
    ``r`` the positions ``r, r + W, r + 2W, ...``, so every rank holds the same number of items
    and the ranks' batches together cover the epoch. One process gets ``order`` unchanged.
    """
    if not info.distributed:
        return order
    sampler = DistributedSampler(
        dataset, num_replicas=info.world_size, rank=info.rank, shuffle=False, drop_last=False
    )
    return order[np.fromiter(iter(sampler), dtype=np.int64)]


def items_per_rank(n: int, info: DistInfo) -> int:
    """Items each rank sees per epoch (the padded share of ``n``)."""
    return -(-n // info.world_size)


def rank_seed(seed: int, info: DistInfo) -> int:
    """Seed of this rank's loss-noise generator: ``seed`` on rank 0, a derived one elsewhere."""
    if info.rank == 0:
        return int(seed)
    return int(np.random.SeedSequence([int(seed), info.rank]).generate_state(1)[0])


def broadcast_float(value: float, info: DistInfo) -> float:
    """Rank 0's ``value`` on every rank (validation scores, so all ranks stop together)."""
    if not info.distributed:
        return float(value)
    t = torch.tensor([float(value)], dtype=torch.float64, device=info.device)
    dist.broadcast(t, src=0)
    return float(t.item())


def all_reduce_mean(value: float, info: DistInfo) -> float:
    """Mean of ``value`` over the ranks (e.g. the training loss shown by rank 0)."""
    if not info.distributed:
        return float(value)
    t = torch.tensor([float(value)], dtype=torch.float64, device=info.device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return float(t.item()) / info.world_size


def any_rank(flag: bool, info: DistInfo) -> bool:
    """True on every rank when ``flag`` is true on any (e.g. one rank hit the time limit)."""
    if not info.distributed:
        return bool(flag)
    t = torch.tensor([int(bool(flag))], dtype=torch.int32, device=info.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def gather_arrays(arrays: list[np.ndarray], info: DistInfo) -> list[list[np.ndarray]]:
    """Every rank's ``arrays`` (e.g. RNG states), indexed by rank; all ranks must call it."""
    if not info.distributed:
        return [arrays]
    out: list[list[np.ndarray] | None] = [None] * info.world_size
    dist.all_gather_object(out, arrays)
    return out  # type: ignore[return-value]
