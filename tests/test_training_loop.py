"""The generic training loop: exact resume, EMA, schedule, early stopping, checkpoints, config."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from forecast.checkpoint import load_checkpoint
from forecast.data.synthetic import synthetic_weather
from forecast.dims import TIME
from forecast.errors import ForecastError
from forecast.models.diffusion import ConditionalDiffusion
from forecast.training import TrainConfig, load_toml, resume_state, seed_everything, train
from forecast.training.loop import epoch_order, learning_rate, update_ema

pytestmark = pytest.mark.usefixtures("one_thread")


class Pairs(torch.utils.data.Dataset):
    def __init__(self, n=37):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 3, generator=g)
        self.y = self.x @ torch.tensor([1.0, -2.0, 0.5]) + 0.3

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"x": self.x[i], "y": self.y[i]}


def noisy_mse(module, batch, gen):
    # uses the generator, so resume must restore its state exactly
    noise = 0.1 * torch.randn(batch["y"].shape, generator=gen)
    return ((module(batch["x"]).squeeze(-1) - batch["y"] - noise) ** 2).mean()


def make(seed=0):
    seed_everything(seed)
    return nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))


CFG = TrainConfig(epochs=6, batch_size=5, lr=1e-2, warmup_steps=3, progress=False, eval_every=2)


def _run(stop_after=None, resume=None, ema=None, saved=None):
    module = make()
    saved = {} if saved is None else saved

    def checkpoint(tag, ema_module, arrays, meta):
        saved[tag] = (
            {f"ema.{k}": v.clone() for k, v in ema_module.state_dict().items()},
            {k: np.array(v) for k, v in arrays.items()},
            meta,
        )

    def validate(ema_module):
        with torch.no_grad():
            d = Pairs(20)
            return float(((ema_module(d.x).squeeze(-1) - d.y) ** 2).mean())

    ema_module, result = train(
        module,
        Pairs(),
        noisy_mse,
        CFG,
        validate=validate,
        checkpoint=checkpoint,
        stop_after=stop_after,
        resume=resume,
        ema=ema,
    )
    return module, ema_module, result, saved


def test_resume_is_exact():
    straight, ema_s, res_s, _ = _run()
    assert res_s.step == 6 * 8 and res_s.stopped == "done"
    _, _, res_a, saved = _run(stop_after=19)
    assert res_a.stopped == "interrupted" and res_a.step == 19
    ema_state, arrays, meta = saved["last"]
    ema = make()
    ema.load_state_dict({k[4:]: v for k, v in ema_state.items()})
    resumed, ema_r, res_r, _ = _run(resume=(arrays, meta), ema=ema)
    assert res_r.step == res_s.step
    for a, b in zip(straight.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)
    for a, b in zip(ema_s.parameters(), ema_r.parameters(), strict=True):
        assert torch.equal(a, b)
    assert [h["crps"] for h in res_r.history] == [h["crps"] for h in res_s.history]


def test_training_reduces_loss_and_saves_best_and_last():
    _, _, result, saved = _run()
    assert set(saved) == {"best", "last"}
    scores = [h["crps"] for h in result.history]
    assert len(scores) == 3  # epochs 2 and 4, then the end (6)
    assert scores[-1] < scores[0]
    assert result.best_score == min(scores)


def test_early_stopping():
    calls = []

    def worse(_):
        calls.append(1)
        return float(len(calls))  # every validation is worse than the first

    cfg = CFG.replace(eval_every=1, patience=2, epochs=50)
    _, result = train(make(), Pairs(), noisy_mse, cfg, validate=worse)
    assert result.stopped == "early stop"
    assert len(calls) == 3 and result.best_step == 8


def test_validation_every_n_steps():
    steps = []

    def record(_):
        steps.append(1)
        return 1.0

    _, result = train(make(), Pairs(), noisy_mse, CFG.replace(eval_every_steps=5), validate=record)
    assert [h["step"] for h in result.history] == [*range(5, 48, 5), 48]  # then the end
    with pytest.raises(ForecastError, match=r"train\.eval_every_steps must be >= 1, got 0"):
        CFG.replace(eval_every_steps=0)


def test_ema_and_schedule_closed_forms():
    a, b = nn.Linear(2, 1), nn.Linear(2, 1)
    with torch.no_grad():
        a.weight.fill_(1.0)
        b.weight.fill_(3.0)
    update_ema(a, b, 0.75)
    assert torch.allclose(a.weight, torch.full_like(a.weight, 1.5))
    cfg = TrainConfig(lr=1.0, warmup_steps=4, min_lr_ratio=0.1)
    assert learning_rate(0, 100, cfg) == pytest.approx(0.25)
    assert learning_rate(4, 100, cfg) == pytest.approx(1.0)
    assert learning_rate(52, 100, cfg) == pytest.approx(0.1 + 0.9 * 0.5)
    assert learning_rate(100, 100, cfg) == pytest.approx(0.1)
    o = epoch_order(0, 3, 10)
    assert sorted(o.tolist()) == list(range(10))
    assert np.array_equal(o, epoch_order(0, 3, 10)) and not np.array_equal(o, epoch_order(0, 4, 10))


def test_nonfinite_loss_is_an_error():
    def bad(module, batch, gen):
        return module(batch["x"]).sum() * float("nan")

    with pytest.raises(ForecastError, match=r"lower train\.lr"):
        train(make(), Pairs(), bad, CFG)


def test_config_toml(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[model]\nbase = 16\n[train]\nepochs = 3\nlr = 0.01\n")
    cfg = load_toml(path)
    assert cfg == {"model": {"base": 16}, "train": {"epochs": 3, "lr": 0.01}}
    assert TrainConfig.from_dict(cfg["train"]).epochs == 3
    path.write_text("[train]\nepoks = 3\n")
    with pytest.raises(ForecastError, match="unknown key"):
        TrainConfig.from_dict(load_toml(path)["train"])
    path.write_text("[trian]\n")
    with pytest.raises(ForecastError, match="unknown table"):
        load_toml(path)
    path.write_text("[train\n")
    with pytest.raises(ForecastError, match="not valid TOML"):
        load_toml(path)
    with pytest.raises(ForecastError, match="not found"):
        load_toml(tmp_path / "missing.toml")
    with pytest.raises(ForecastError, match="batch_size"):
        TrainConfig(batch_size=0)


def test_diffusion_resume_is_exact(tmp_path):
    ds = synthetic_weather(seed=2, n_lat=6, n_lon=8, days=5)
    train_ds, valid = ds.isel({TIME: slice(0, 80)}), ds.isel({TIME: slice(80, 120)})

    def model():
        return ConditionalDiffusion(
            context=4,
            horizon=3,
            base=4,
            mults=(1, 2),
            emb_dim=8,
            nfe=2,
            train={
                "epochs": 4,
                "batch_size": 16,
                "eval_every": 2,
                "progress": False,
                "val_issue_times": 2,
                "val_members": 3,
                "warmup_steps": 2,
            },
        )

    straight = model().fit(train_ds, valid, out_dir=tmp_path / "a")
    model().fit(train_ds, valid, out_dir=tmp_path / "b", stop_after=7)
    _, meta = load_checkpoint(tmp_path / "b" / "last.safetensors")
    assert meta["training"]["stopped"] == "interrupted" and meta["training"]["step"] == 7
    resumed = model().fit(train_ds, valid, out_dir=tmp_path / "b", resume=True)
    a, _ = load_checkpoint(tmp_path / "a" / "last.safetensors")
    b, _ = load_checkpoint(tmp_path / "b" / "last.safetensors")
    assert set(a) == set(b)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert straight.training["step"] == resumed.training["step"]
    # a finished run resumes to itself; a checkpoint without training state refuses
    model().fit(train_ds, valid, out_dir=tmp_path / "b", resume=True)
    _, meta = load_checkpoint(tmp_path / "a" / "best.safetensors")
    with pytest.raises(ForecastError, match="no training state"):
        resume_state({}, meta)
    with pytest.raises(ForecastError, match="nothing to resume"):
        model().fit(train_ds, valid, out_dir=tmp_path / "c", resume=True)
    with pytest.raises(ForecastError, match="another configuration"):
        other = ConditionalDiffusion(context=4, horizon=3, base=8, mults=(1, 2), emb_dim=8)
        other.fit(train_ds, valid, out_dir=tmp_path / "b", resume=True)


def test_keep_a_step_ends_with_the_ema_weights_of_that_step():
    """``keep = N``: the run ends after step N and its ``last`` checkpoint holds the EMA weights
    of step N of the full schedule: those of a full run interrupted at N (the same learning
    rates), not those of a run whose schedule is N steps long."""
    saved: dict = {}

    def checkpoint(tag, ema_module, arrays, meta):
        saved[tag] = ({k: v.clone() for k, v in ema_module.state_dict().items()}, meta)

    _, result = train(make(), Pairs(), noisy_mse, CFG.replace(keep=11), checkpoint=checkpoint)
    assert result.step == 11 and result.stopped == "done" and saved["last"][1]["step"] == 11
    assert set(saved) == {"last"}  # no validation, no best
    kept = saved["last"][0]
    _, short = train(make(), Pairs(), noisy_mse, CFG, checkpoint=checkpoint, stop_after=11)
    assert short.step == 11 and short.stopped == "interrupted"
    for key, value in saved["last"][0].items():
        assert torch.equal(kept[key], value), key
    train(make(), Pairs(), noisy_mse, CFG.replace(max_steps=11), checkpoint=checkpoint)
    assert not torch.equal(kept["0.weight"], saved["last"][0]["0.weight"])  # shorter schedule


@pytest.mark.parametrize(
    ("keep", "message"),
    [
        (0, r"train.keep = 0 must be a step in 1..max_steps"),
        (31, r"train.keep = 31 must be a step in 1..max_steps \(30\)"),
        (True, "train.keep must be one of best, last or a step number, got True"),
        ("first", "train.keep must be one of best, last or a step number, got 'first'"),
    ],
)
def test_bad_keep(keep, message):
    with pytest.raises(ForecastError, match=message):
        TrainConfig(max_steps=30, keep=keep)


def test_diffusion_keeps_a_step_and_refuses_one_never_reached(tmp_path):
    ds = synthetic_weather(seed=2, n_lat=6, n_lon=8, days=5)
    train_ds = ds.isel({TIME: slice(0, 80)})
    train_kw = {"epochs": 2, "batch_size": 16, "progress": False, "warmup_steps": 2}

    def model(**kw):
        return ConditionalDiffusion(
            context=4, horizon=3, base=4, mults=(1, 2), emb_dim=8, nfe=2, train=train_kw | kw
        )

    kept = model(keep=3).fit(train_ds, out_dir=tmp_path / "a")  # no validation data needed
    assert kept.training["weights_step"] == kept.training["step"] == 3
    short = model().fit(train_ds, out_dir=tmp_path / "b", stop_after=3)
    ctx = ds.isel({TIME: slice(90, 94)})
    np.testing.assert_array_equal(
        kept.sample(ctx, 2, seed=0)["t2m"].values, short.sample(ctx, 2, seed=0)["t2m"].values
    )
    with pytest.raises(ForecastError, match=r"train.keep = 12, but training stopped at step 10"):
        model(keep=12).fit(train_ds, out_dir=tmp_path / "c")


def _optimizer_grad_norms(cfg, loss_fn):
    """Train with ``cfg``; the global gradient norm the optimizer saw at each step."""
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    norms = []

    def hook(opt, args, kwargs):
        grads = [p.grad for g in opt.param_groups for p in g["params"] if p.grad is not None]
        norms.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))

    handle = register_optimizer_step_pre_hook(hook)
    try:
        train(make(), Pairs(), loss_fn, cfg)
    finally:
        handle.remove()
    return norms


def test_gradient_clipping_bounds_the_norm_the_optimizer_sees():
    def steep(module, batch, gen):  # gradients far above the clip norm
        return 1e3 * noisy_mse(module, batch, gen)

    cfg = CFG.replace(epochs=1)  # 8 steps
    off = _optimizer_grad_norms(cfg.replace(grad_clip=0.0), steep)  # 0 disables clipping
    assert len(off) == 8 and min(off) > 100 * 0.5
    clipped = _optimizer_grad_norms(cfg.replace(grad_clip=0.5), steep)
    assert len(clipped) == 8
    np.testing.assert_allclose(clipped, 0.5, rtol=1e-4)  # scaled down to exactly max_norm
    # a gradient already below the clip norm is left alone
    small = _optimizer_grad_norms(cfg.replace(grad_clip=0.0), noisy_mse)
    assert max(small) < 100
    np.testing.assert_allclose(
        _optimizer_grad_norms(cfg.replace(grad_clip=100.0), noisy_mse), small, rtol=1e-6
    )


def test_progress_bar_shows_loss_lr_and_validation_crps(capsys):
    import re

    scores = [0.1234567, 0.2469134, 0.3703701]
    calls: list = []

    def record(_):
        calls.append(1)
        return scores[len(calls) - 1]

    cfg = CFG.replace(progress=True)  # validations after epochs 2 and 4, then at the end (6)
    _, result = train(make(), Pairs(), noisy_mse, cfg, validate=record, desc="fit")
    assert [h["crps"] for h in result.history] == scores
    err = capsys.readouterr().err
    shown = [seg for seg in re.split(r"[\r\n]", err) if "val_crps=" in seg]
    assert shown, f"no val_crps in the progress output: {err!r}"
    number = r"([-+0-9.eE]+|nan|inf)"
    values = []
    for seg in shown:
        assert seg.lstrip().startswith("fit")
        got = {k: re.search(rf"\b{k}={number}", seg) for k in ("loss", "lr", "val_crps")}
        assert all(got.values()), seg
        values.append({k: float(m.group(1)) for k, m in got.items()})
    assert all(np.isfinite(list(v.values())).all() for v in values)
    # each validation's score is shown as it comes (rounded to 4 digits)
    crps = [v["val_crps"] for v in values]
    crps = [c for i, c in enumerate(crps) if i == 0 or c != crps[i - 1]]
    assert crps == [float(f"{s:.4g}") for s in scores]
    # beside the first one, the loss and the learning rate of step 16, the end of epoch 2
    assert values[0]["lr"] == float(f"{learning_rate(15, 48, CFG):.2e}")
    assert values[0]["loss"] > 0
