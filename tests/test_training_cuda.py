"""Training on a CUDA device (``[train] device`` / ``forecast train --device``).

The GPU tests are skipped where torch sees no CUDA device (CI); the refusals run everywhere.
On a GPU machine: ``python -m pytest tests/test_training_cuda.py``.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import xarray as xr
from torch import nn

from forecast.checkpoint import load_checkpoint
from forecast.cli import main
from forecast.data.synthetic import synthetic_traffic, synthetic_weather
from forecast.data.windows import context_of
from forecast.dims import TIME
from forecast.errors import ForecastError
from forecast.models import load_model
from forecast.models.diffusion import ConditionalDiffusion
from forecast.models.vae import ConditionalVAE
from forecast.training import TrainConfig, train

pytestmark = pytest.mark.usefixtures("one_thread")

HAS_CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
K, H = 6, 4


def _tiny(cls, context: int = K, horizon: int = H, **kw):
    return cls(**{**cls.tiny(context, horizon).config(), **kw})


@pytest.fixture(scope="module")
def weather():
    return synthetic_weather(seed=0, n_lat=8, n_lon=12, days=10)


@pytest.fixture(scope="module")
def traffic():
    return synthetic_traffic(seed=0, n_sensors=10, days=1.5, n_corridors=2)


def test_bad_device_name():
    with pytest.raises(ForecastError, match=r"train\.device 'gpu0' is not a torch device"):
        TrainConfig(device="gpu0")


@pytest.mark.skipif(HAS_CUDA, reason="checks the refusal on a machine without CUDA")
def test_cuda_refused_without_a_gpu(weather, tmp_path, capsys):
    m = _tiny(ConditionalDiffusion, train={"max_steps": 2, "device": "cuda"})
    with pytest.raises(ForecastError, match="torch sees no CUDA device"):
        m.fit(weather.isel({TIME: slice(0, 170)}))
    path = tmp_path / "w.nc"
    weather.to_netcdf(path)
    args = ["train", "--data", str(path), "--out", str(tmp_path / "o"), "--device", "cuda"]
    args += ["--context", "4", "--horizon", "3", "--max-steps", "1", "--no-progress"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "no CUDA device" in err


class Line(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x)


class Pairs(torch.utils.data.Dataset):
    def __init__(self, n: int = 40) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 3, generator=g)
        self.y = self.x @ torch.tensor([1.0, -2.0, 0.5]) + 0.3

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[i], "y": self.y[i]}


def _mse(module, batch, gen):
    return ((module(batch["x"]).squeeze(-1) - batch["y"]) ** 2).mean()


@needs_cuda
def test_loop_on_cuda_matches_the_cpu_in_fp32():
    # a deterministic loss: the same batches, so the same trajectory up to float rounding
    cfg = TrainConfig(epochs=5, batch_size=8, warmup_steps=2, eval_every=0, progress=False)
    cpu_ema, cpu = train(Line(), Pairs(), _mse, cfg)
    gpu_module = Line()
    gpu_ema, gpu = train(gpu_module, Pairs(), _mse, cfg, device="cuda", mixed_precision=False)
    assert gpu.step == cpu.step == 25
    assert next(gpu_module.parameters()).device.type == "cuda"
    assert next(gpu_ema.parameters()).device.type == "cpu"  # EMA stays on the CPU
    for a, b in zip(gpu_ema.parameters(), cpu_ema.parameters(), strict=True):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), atol=1e-4)


@needs_cuda
def test_loop_on_cuda_mixed_precision_learns():
    # bf16 autocast reaches about the fp32 CPU fit of the same problem
    cfg = TrainConfig(
        epochs=40, batch_size=8, lr=0.05, warmup_steps=5, eval_every=0, progress=False
    )
    x, y = Pairs().x, Pairs().y
    errors = []
    for device in ("cpu", "cuda"):
        ema, result = train(Line(), Pairs(), _mse, cfg, device=device)
        assert result.stopped == "done"
        with torch.no_grad():
            errors.append(float(((ema(x).squeeze(-1) - y) ** 2).mean()))
    assert errors[0] < 0.01 * float(y.var())
    assert errors[1] < 0.02 * float(y.var())


def test_ema_matches_buffers_by_name():
    # a buffer shared by two layers is one tensor on the CPU, two after a move to a device
    from forecast.training.loop import update_ema

    shared = torch.zeros(3)
    module = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3))
    for layer in module:
        layer.register_buffer("adj", shared, persistent=False)
    ema = copy.deepcopy(module)
    for layer in module:  # what .to(device) does to a shared buffer: one copy per layer
        layer.adj = layer.adj.clone() + 1
    assert len(list(module.buffers())) == 2 and len(list(ema.buffers())) == 1
    update_ema(ema, module, 0.5)
    assert torch.equal(ema[0].adj, torch.ones(3))


def _fit(model, data, n_train: int, n_valid: int, **kw):
    train_part = data.isel({TIME: slice(0, n_train)})
    valid_part = data.isel({TIME: slice(n_train, n_train + n_valid)})
    return model.fit(train_part, valid_part, **kw)


CASES = {
    "diffusion-grid": (ConditionalDiffusion, {}),
    "diffusion-grid-residual": (
        ConditionalDiffusion,
        {"target": "residual", "first_guess": "damped", "condition_on_first_guess": True},
    ),
    "vae-grid": (ConditionalVAE, {}),
    "vae-grid-first-guess": (ConditionalVAE, {"first_guess": "damped"}),
}


@needs_cuda
@pytest.mark.parametrize("case", sorted(CASES))
def test_grid_models_train_on_cuda(case, weather, tmp_path):
    cls, kw = CASES[case]
    train_kw = {"max_steps": 30, "eval_every": 1, "val_issue_times": 2, "val_members": 3}
    model = _tiny(cls, train={**train_kw, "device": "cuda"}, **kw)
    _fit(model, weather, 170, 60, out_dir=tmp_path)
    _, meta = load_checkpoint(tmp_path / "last.safetensors")
    assert meta["training"]["device"] == "cuda" and meta["training"]["step"] == 30
    assert all(p.device.type == "cpu" for p in model.net.parameters())  # sampling on the CPU
    ctx = context_of(weather, weather[TIME].values[225], K)
    ens = model.sample(ctx, 3, seed=1)
    assert ens["t2m"].shape == (3, H, 8, 12) and np.isfinite(ens["t2m"].values).all()
    model.save(tmp_path / "m.safetensors")
    xr.testing.assert_identical(load_model(tmp_path / "m.safetensors").sample(ctx, 3, seed=1), ens)


@needs_cuda
@pytest.mark.parametrize("cls", [ConditionalDiffusion, ConditionalVAE])
def test_graph_models_train_on_cuda(cls, traffic):
    model = _tiny(cls, 6, 4, train={"max_steps": 20, "device": "cuda", "eval_every": 0})
    _fit(model, traffic, 300, 60)
    ctx = context_of(traffic, traffic[TIME].values[380], 6)
    ens = model.sample(ctx, 3, seed=0)
    assert ens["speed"].shape == (3, 4, 10) and np.isfinite(ens["speed"].values).all()


@needs_cuda
def test_resume_on_cuda_and_refused_on_the_cpu(weather, tmp_path):
    train_kw = {"max_steps": 20, "eval_every": 0, "device": "cuda"}
    model = _tiny(ConditionalDiffusion, train=train_kw)
    _fit(model, weather, 170, 60, out_dir=tmp_path, stop_after=8)
    _, meta = load_checkpoint(tmp_path / "last.safetensors")
    assert meta["training"]["stopped"] == "interrupted" and meta["training"]["step"] == 8
    on_cpu = _tiny(ConditionalDiffusion, train={**train_kw, "device": "cpu"})
    with pytest.raises(ForecastError, match="trained with device cuda, this run has cpu"):
        _fit(on_cpu, weather, 170, 60, out_dir=tmp_path, resume=True)
    again = _tiny(ConditionalDiffusion, train=train_kw)
    _fit(again, weather, 170, 60, out_dir=tmp_path, resume=True)
    _, meta = load_checkpoint(tmp_path / "last.safetensors")
    assert meta["training"]["stopped"] == "done" and meta["training"]["step"] == 20
