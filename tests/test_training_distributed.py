"""Data-parallel training: 2-process gloo DDP on CPU against the single-process full batch.

Two processes are started with ``torch.multiprocessing.spawn`` and join the process group from
torchrun's environment variables (loopback address, a free port). Checked: every step's
averaged gradient equals the gradient of the mean loss over the concatenated batch of both
ranks (closed form of DDP's average for equal shards), the AdamW trajectory equals a
single-process one on those batches, both ranks end with the same weights, only rank 0
validates and writes checkpoints, the same seed and world size give identical results in a
fresh launch, and an interrupted 2-process run resumes exactly. A last test runs
``forecast train`` under ``torchrun`` end to end.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from forecast.checkpoint import load_checkpoint, save_checkpoint
from forecast.errors import ForecastError
from forecast.training import TrainConfig, distributed, resume_state, seed_everything, train
from forecast.training.loop import epoch_order, learning_rate

WORLD = 2
N_ITEMS = 21  # odd: the sampler pads one item so both ranks hold 11
BATCH = 4  # per rank: steps see 8 windows, the last of an epoch 6 (3 per rank)
CFG = TrainConfig(
    epochs=2, batch_size=BATCH, lr=1e-2, warmup_steps=2, grad_clip=0.0, progress=False,
    eval_every=1,
)  # fmt: skip
GRAD_STEPS = 5


class Items(torch.utils.data.Dataset):
    def __init__(self, n=N_ITEMS):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 3, generator=g)
        self.y = self.x @ torch.tensor([1.0, -2.0, 0.5]) + 0.3

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"x": self.x[i], "y": self.y[i], "i": i}


def make():
    seed_everything(0)
    return nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))


def mse(module, batch):
    return ((module(batch["x"]).squeeze(-1) - batch["y"]) ** 2).mean()


def noisy_mse(module, batch, gen):
    noise = 0.1 * torch.randn(batch["y"].shape, generator=gen)
    return ((module(batch["x"]).squeeze(-1) - batch["y"] - noise) ** 2).mean()


def validate(ema_module):
    d = Items(9)
    with torch.no_grad():
        return float(((ema_module(d.x).squeeze(-1) - d.y) ** 2).mean())


def params(module):
    return [p.detach().clone() for p in module.parameters()]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, out, plan):
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    torch.set_num_threads(1)
    out = Path(out)
    got = {}

    def writer(run):
        def checkpoint(tag, ema_module, arrays, meta):
            (out / f"{run}-{tag}-rank{rank}").touch()
            if tag == "last":
                ema = {f"ema.{k}": v for k, v in ema_module.state_dict().items()}
                save_checkpoint(out / f"{run}-last.safetensors", {**ema, **arrays}, meta)

        return checkpoint

    def counted(run):
        def val(ema_module):
            (out / f"{run}-validate-rank{rank}").touch()
            return validate(ema_module)

        return val

    try:
        if "grad" in plan:  # record, at each step, the params and the previous step's gradient
            seen = {"params": [], "grads": [], "items": []}

            def recording(module, batch, gen):
                # the loop zeroes gradients after the loss call, so p.grad still holds the
                # DDP-averaged gradient of the previous step here
                if seen["params"]:
                    seen["grads"].append([p.grad.clone() for p in module.parameters()])
                seen["params"].append(params(module))
                seen["items"].append(batch["i"].tolist())
                return mse(module, batch)

            module = make()
            train(
                module,
                Items(),
                recording,
                CFG.replace(max_steps=GRAD_STEPS),
                checkpoint=writer("g"),
            )
            got["grad"] = {**seen, "final": params(module)}
        if "straight" in plan:
            module = make()
            ema, res = train(
                module, Items(), noisy_mse, CFG, validate=counted("s"), checkpoint=writer("s")
            )
            got["straight"] = {"final": params(module), "ema": params(ema), "history": res.history}
        if "resume" in plan:
            train(
                make(),
                Items(),
                noisy_mse,
                CFG,
                validate=validate,
                checkpoint=writer("r"),
                stop_after=4,
            )
            arrays, meta = load_checkpoint(out / "r-last.safetensors")  # written by rank 0
            ema = make()
            ema.load_state_dict(
                {k[4:]: torch.from_numpy(v) for k, v in arrays.items() if k.startswith("ema.")}
            )
            module = make()
            ema, res = train(
                module,
                Items(),
                noisy_mse,
                CFG,
                validate=validate,
                checkpoint=writer("r"),
                resume=resume_state(arrays, {"training": meta}),
                ema=ema,
            )
            got["resume"] = {"final": params(module), "ema": params(ema), "history": res.history}
    finally:
        distributed.cleanup()
    torch.save(got, out / f"rank{rank}.pt")


def launch(out, plan):
    out.mkdir(parents=True, exist_ok=True)
    mp.spawn(_worker, args=(WORLD, _free_port(), str(out), plan), nprocs=WORLD, join=True)
    return [torch.load(out / f"rank{r}.pt") for r in range(WORLD)]


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp_a")
    return out, launch(out, ("grad", "straight", "resume"))


def global_batches(steps):
    """Item indices of each step's global batch: rank r takes the padded order's r::W."""
    per_rank = -(-N_ITEMS // WORLD)
    spe = -(-per_rank // BATCH)
    out = []
    for step in range(steps):
        order = epoch_order(CFG.seed, step // spe, N_ITEMS)
        padded = np.concatenate([order, order[: per_rank * WORLD - N_ITEMS]])
        b = step % spe
        out.append([padded[r::WORLD][b * BATCH : (b + 1) * BATCH] for r in range(WORLD)])
    return out, spe


def full_batch_grad(module, items):
    data = Items()
    batch = {"x": data.x[items], "y": data.y[items]}
    module.zero_grad()
    mse(module, batch).backward()
    return [p.grad.clone() for p in module.parameters()]


@pytest.mark.slow
def test_ddp_gradient_is_the_full_batch_gradient(first):
    _, ranks = first
    batches, _ = global_batches(GRAD_STEPS)
    for r, got in enumerate(ranks):  # each rank saw its shard of every step
        assert got["grad"]["items"] == [b[r].tolist() for b in batches]
    ref = make()
    for step, grads in enumerate(ranks[0]["grad"]["grads"]):
        with torch.no_grad():
            for p, q in zip(ref.parameters(), ranks[0]["grad"]["params"][step], strict=True):
                p.copy_(q)
        want = full_batch_grad(ref, np.concatenate(batches[step]))
        for g, w in zip(grads, want, strict=True):
            torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-7)
        for g, h in zip(grads, ranks[1]["grad"]["grads"][step], strict=True):
            assert torch.equal(g, h)
    # the whole AdamW trajectory equals one process stepping on the concatenated batches
    ref = make()
    opt = torch.optim.AdamW(ref.parameters(), lr=CFG.lr, weight_decay=CFG.weight_decay)
    _, spe = global_batches(1)
    for step, b in enumerate(batches):
        for group in opt.param_groups:
            group["lr"] = learning_rate(step, min(CFG.epochs * spe, GRAD_STEPS), CFG)
        full_batch_grad(ref, np.concatenate(b))
        opt.step()
    for a, b, c in zip(ref.parameters(), *(rk["grad"]["final"] for rk in ranks), strict=True):
        torch.testing.assert_close(b, a.detach(), rtol=1e-5, atol=1e-6)
        assert torch.equal(b, c)


@pytest.mark.slow
def test_rank0_validates_and_writes_checkpoints(first):
    out, ranks = first
    names = sorted(p.name for p in out.iterdir() if "rank" in p.name and p.suffix != ".pt")
    assert names == [
        "g-last-rank0", "r-best-rank0", "r-last-rank0", "s-best-rank0", "s-last-rank0",
        "s-validate-rank0",
    ]  # fmt: skip
    arrays, meta = load_checkpoint(out / "s-last.safetensors")
    assert meta["world_size"] == WORLD and meta["steps_per_epoch"] == 3
    # both ranks' noise generators are saved, and they differ
    assert not np.array_equal(arrays["train.generator"], arrays["train.rank1.generator"])
    # the broadcast validation score is the same on both ranks
    assert ranks[0]["straight"]["history"] == ranks[1]["straight"]["history"]
    assert len(ranks[0]["straight"]["history"]) == CFG.epochs


@pytest.mark.slow
def test_ddp_resume_is_exact_and_runs_repeat(first, tmp_path):
    _, ranks = first
    for got in ranks:
        for key in ("final", "ema"):
            for a, b in zip(got["straight"][key], got["resume"][key], strict=True):
                assert torch.equal(a, b)
        assert got["resume"]["history"] == got["straight"]["history"]
    again = launch(tmp_path, ("straight",))  # a fresh launch, same seed and world size
    for old, new in zip(ranks, again, strict=True):
        for a, b in zip(old["straight"]["final"], new["straight"]["final"], strict=True):
            assert torch.equal(a, b)
        assert old["straight"]["history"] == new["straight"]["history"]


def test_one_process_resume_refuses_a_two_process_checkpoint():
    with pytest.raises(ForecastError, match="nproc_per_node 2"):
        train(make(), Items(), noisy_mse, CFG, resume=({}, {"world_size": 2, "step": 1}))


def test_setup_without_torchrun_is_one_process(monkeypatch):
    for key in distributed.ENV_KEYS:
        monkeypatch.delenv(key, raising=False)
    info = distributed.setup()
    assert (info.rank, info.world_size, info.is_main, info.distributed) == (0, 1, True, False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ForecastError, match="torchrun"):
        distributed.setup()
    order = np.arange(7)
    two = [distributed.DistInfo(rank=r, world_size=2) for r in range(2)]
    shards = [distributed.shard_order(order, Items(7), i) for i in two]
    assert [s.tolist() for s in shards] == [[0, 2, 4, 6], [1, 3, 5, 0]]
    assert distributed.rank_seed(5, two[0]) == 5 and distributed.rank_seed(5, two[1]) != 5


TINY = """
[model]
base = 4
mults = [1, 2]
emb_dim = 8
hidden = 8
blocks = 1
nfe = 2

[train]
epochs = 2
max_steps = 4
batch_size = 8
eval_every = 1
val_issue_times = 2
val_members = 3
warmup_steps = 2
"""


@pytest.mark.slow
def test_forecast_train_under_torchrun(tmp_path):
    from forecast.data.synthetic import synthetic_weather

    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    if torchrun is None:
        pytest.skip("torchrun not installed beside the interpreter")
    data = tmp_path / "tiny.nc"
    synthetic_weather(seed=0, n_lat=6, n_lon=8, days=6).to_netcdf(data)
    (tmp_path / "tiny.toml").write_text(TINY)
    cmd = [
        torchrun, "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port",
        str(_free_port()), "-m", "forecast.cli", "train", "--data", str(data), "--config",
        str(tmp_path / "tiny.toml"), "--out", str(tmp_path / "run"), "--context", "4",
        "--horizon", "3", "--no-progress",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("trained diffusion") == 1  # rank 0 alone reports
    names = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert names == ["best.safetensors", "last.safetensors", "model.safetensors"]
    _, meta = load_checkpoint(tmp_path / "run" / "last.safetensors")
    assert meta["training"]["world_size"] == 2 and meta["training"]["step"] == 4
