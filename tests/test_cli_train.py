"""``forecast train``: named data and paths, checkpoints, resume, one-line errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from forecast.checkpoint import load_checkpoint
from forecast.cli import main
from forecast.data.synthetic import synthetic_weather
from forecast.data.windows import context_of
from forecast.dims import TIME
from forecast.models import load_model

TINY = """
[model]
base = 4
mults = [1, 2]
emb_dim = 8
hidden = 8
blocks = 1
nfe = 2
latent_nfe = 3

[train]
epochs = 2
max_steps = 6
batch_size = 8
eval_every = 1
val_issue_times = 2
val_members = 3
warmup_steps = 2
"""


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def nc_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "tiny.nc"
    synthetic_weather(seed=0, n_lat=6, n_lon=8, days=6).to_netcdf(path)
    return path


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    return path


def train_args(nc_path, config, out) -> list[str]:
    """``forecast train`` on the tiny file and config: context 4, horizon 3, 1 thread."""
    return [
        "train", "--data", str(nc_path), "--config", str(config), "--out", str(out),
        "--context", "4", "--horizon", "3", "--no-progress", "--threads", "1",
    ]  # fmt: skip


def test_train_on_path(nc_path, config, tmp_path, capsys):
    out = tmp_path / "run"
    args = [*train_args(nc_path, config, out), "--seed", "3"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "trained diffusion" in printed and "best.safetensors" in printed
    for name in ("best", "last", "model"):
        assert (out / f"{name}.safetensors").is_file()
    _, meta = load_checkpoint(out / "last.safetensors")
    assert meta["config"]["train"]["seed"] == 3 and meta["training"]["stopped"] == "done"
    model = load_model(out / "model.safetensors")
    import xarray as xr

    ds = xr.open_dataset(nc_path)
    ens = model.sample(context_of(ds, ds[TIME].values[-10], 4), 2, seed=0)
    assert ens["t2m"].shape == (2, 3, 6, 8)


def test_keep_last_makes_the_final_weights_the_model(nc_path, tmp_path, monkeypatch):
    """``keep = "last"``: model.safetensors samples like last.safetensors, not like best.

    The validation score is made to rise with every evaluation, so the best step is the first
    evaluation and the last weights differ from the best ones."""
    import xarray as xr

    from forecast.models.diffusion import ConditionalDiffusion

    def rising(self, valid):
        calls = iter(range(100))
        return lambda module: float(next(calls))

    monkeypatch.setattr(ConditionalDiffusion, "_validator", rising)
    toml = TINY.replace("max_steps = 6", "max_steps = 30").replace("epochs = 2", "epochs = 3")
    cfg = tmp_path / "last.toml"
    cfg.write_text(toml.replace("warmup_steps = 2", 'warmup_steps = 2\nkeep = "last"'))
    out = tmp_path / "run"
    assert main(train_args(nc_path, cfg, out)) == 0
    ds = xr.open_dataset(nc_path)
    ctx = context_of(ds, ds[TIME].values[-10], 4)

    def members(name: str) -> np.ndarray:
        return load_model(out / f"{name}.safetensors").sample(ctx, 2, seed=0)["t2m"].values

    _, meta = load_checkpoint(out / "last.safetensors")
    assert meta["config"]["train"]["keep"] == "last"
    assert meta["training"]["best_step"] < meta["training"]["step"] == 30
    np.testing.assert_array_equal(members("model"), members("last"))
    assert not np.array_equal(members("model"), members("best"))


def test_vae_cross_fit_calibration(nc_path, tmp_path, capsys):
    """``calibration = "cross-fit"`` trains the fold models inside ``forecast train`` and says
    on how many held-out windows the spread factors rest."""
    cfg = tmp_path / "vae.toml"
    cfg.write_text(
        TINY.replace("nfe = 2\nlatent_nfe = 3", "")
        .replace("[model]", "[model]\nlatent_channels = 2\nloc_channels = 2\nkl_warmup = 3")
        .replace("blocks = 1", 'blocks = 1\ncalibration = "cross-fit"\ncalibration_folds = 2')
        .replace("blocks = 1", "blocks = 1\ncalibration_windows = 2")
    )
    out = tmp_path / "vae"
    assert main([*train_args(nc_path, cfg, out), "--model", "vae"]) == 0
    printed = capsys.readouterr().out
    assert "4 held-out training windows of 2 fold models" in printed
    _, meta = load_checkpoint(out / "model.safetensors")
    assert meta["config"]["calibration"] == "cross-fit"
    assert np.asarray(meta["state"]["spread_factor"]).shape == (1, 3)
    assert sorted(p.name for p in out.iterdir()) == [  # the fold models leave nothing behind
        "best.safetensors",
        "last.safetensors",
        "model.safetensors",
    ]


def test_interrupt_and_resume(nc_path, config, tmp_path):
    out = tmp_path / "run"
    base = train_args(nc_path, config, out)
    assert main([*base, "--max-minutes", "0"]) == 0
    _, meta = load_checkpoint(out / "last.safetensors")
    assert meta["training"]["stopped"] == "time limit" and meta["training"]["step"] == 1
    assert main([*base, "--resume"]) == 0
    _, meta = load_checkpoint(out / "last.safetensors")
    assert meta["training"]["stopped"] == "done" and meta["training"]["step"] == 6


def test_named_sensor_data(config, tmp_path):
    out = tmp_path / "traffic"
    args = [
        "train",
        "--data",
        "synthetic-traffic",
        "--config",
        str(config),
        "--out",
        str(out),
        "--no-progress",
        "--threads",
        "1",
        "--max-steps",
        "2",
    ]
    assert main(args) == 0
    model = load_model(out / "model.safetensors")
    assert model.context == 12 and model.horizon == 12 and model.adjacency is not None


@pytest.mark.parametrize(
    ("extra", "toml", "message"),
    [
        (["--model", "nope"], TINY, "unknown model 'nope'; valid names:"),
        ([], TINY + "\n[other]\n", "unknown table"),
        ([], TINY.replace("base = 4", "bse = 4"), "unknown [model] key(s) ['bse']"),
        ([], TINY.replace("epochs = 2", "epoks = 2"), "unknown key(s) ['epoks'] in [train]"),
        ([], TINY.replace("nfe = 2", "nfe = 0"), "NFE must be an integer >= 1"),
        (["--resume"], TINY, "nothing to resume"),
        (["--context", "4"], TINY, "--context/--horizon are fixed by protocol"),
        (["--device", "gpu0"], TINY, "train.device 'gpu0' is not a torch device"),
        ([], TINY + 'keep = "first"\n', "train.keep must be one of best, last"),
        (["--jobs", "0"], TINY, "--jobs must be >= 1, got 0"),
        (["--jobs", "2"], TINY, "model diffusion fits in one process; drop --jobs"),
    ],
)
def test_bad_input_one_line(extra, toml, message, tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text(toml)
    data = "synthetic-traffic" if "--context" in extra else None
    args = [
        "train",
        "--data",
        data or "synthetic-traffic",
        "--config",
        str(cfg),
        "--out",
        str(tmp_path / "o"),
        "--no-progress",
        "--max-steps",
        "1",
        *extra,
    ]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    assert message in err


def test_missing_config(tmp_path, capsys):
    assert main(["train", "--data", "synthetic-traffic", "--config", str(tmp_path / "x.toml")]) == 2
    assert "not found" in capsys.readouterr().err


def test_baseline_and_pool_without_train_table(nc_path, tmp_path, capsys):
    """--no-progress is accepted for models without [train] settings; a [train] table is not."""
    base = ["train", "--data", str(nc_path), "--context", "4", "--horizon", "3", "--no-progress"]
    assert main([*base, "--model", "persistence", "--out", str(tmp_path / "p")]) == 0
    assert load_model(tmp_path / "p" / "model.safetensors").kind == "persistence"
    pool = tmp_path / "pool.toml"
    pool.write_text(
        '[model]\ncomponents = [{kind = "persistence", config = {}}, '
        '{kind = "climatology", config = {}}]\nweights = [3, 1]\n'
    )
    out = tmp_path / "pool"
    assert main([*base, "--model", "pooled", "--config", str(pool), "--out", str(out)]) == 0
    model = load_model(out / "model.safetensors")
    assert [m.kind for m in model.models] == ["persistence", "climatology"]
    assert model.weights == [3.0, 1.0] and model.horizon == 3
    capsys.readouterr()
    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\nmax_steps = 3\n")
    args = [*base, "--model", "persistence", "--config", str(bad), "--out", str(tmp_path / "b")]
    assert main(args) == 2
    assert "takes no [train] settings" in capsys.readouterr().err


def test_deep_ensemble_pool_config(nc_path, tmp_path, capsys):
    """``[model] seeds`` in a pooled config trains one model per seed in one command; with
    --no-progress the models' trainings show no progress bar either."""
    cfg = tmp_path / "deep.toml"
    cfg.write_text(
        '[model]\nseeds = [0, 1]\n\n[[model.components]]\nkind = "diffusion"\n\n'
        "[model.components.config]\nbase = 4\nmults = [1, 2]\nemb_dim = 8\nhidden = 8\n"
        "blocks = 1\nnfe = 2\nlatent_nfe = 3\n\n[model.components.config.train]\n"
        "epochs = 1\nmax_steps = 2\nbatch_size = 8\neval_every = 1\nval_issue_times = 2\n"
        "val_members = 3\nwarmup_steps = 1\n"
    )
    out = tmp_path / "deep"
    args = [*train_args(nc_path, cfg, out), "--model", "pooled"]
    assert main([a for a in args if a != "--no-progress"]) == 0
    assert "it/s" in capsys.readouterr().err  # the models' bars
    assert main(args) == 0
    printed = capsys.readouterr()
    assert "it/s" not in printed.err
    assert "  diffusion-0-s1: 2 steps, stopped: done" in printed.out  # a line per model
    # training options reach every model of the pool; a training seed clashes with seeds
    assert main([*train_args(nc_path, cfg, tmp_path / "short"), "--model", "pooled",
                 "--max-steps", "1"]) == 0  # fmt: skip
    assert "  diffusion-0-s0: 1 steps, stopped: done" in capsys.readouterr().out
    assert main([*args, "--seed", "4"]) == 2
    assert "give the pool seeds or a training seed, not both" in capsys.readouterr().err
    model = load_model(out / "model.safetensors")
    assert model.labels == ["diffusion-0-s0", "diffusion-0-s1"]
    assert [m.train_config.seed for m in model.models] == [0, 1]
    assert not any(m.train_config.progress for m in model.models)
    # --jobs 2 fits the two models side by side, each on one thread: the same models
    assert main([*train_args(nc_path, cfg, tmp_path / "side"), "--model", "pooled",
                 "--jobs", "2"]) == 0  # fmt: skip
    assert "  diffusion-0-s1: 2 steps, stopped: done" in capsys.readouterr().out
    side = load_model(tmp_path / "side" / "model.safetensors")
    ds = synthetic_weather(seed=0, n_lat=6, n_lon=8, days=6)
    window = context_of(ds, ds[TIME].values[10], 4)
    for a, b in zip(model.models, side.models, strict=True):
        np.testing.assert_array_equal(
            a.sample(window, 3, seed=2)["t2m"].values, b.sample(window, 3, seed=2)["t2m"].values
        )


def test_online_spread_config_trains_its_base_in_the_folder(nc_path, tmp_path, capsys):
    """``--model online-spread``: the base model trains (progress, checkpoints, resume) in the
    output folder, and model.safetensors holds the wrapped model."""
    model_part, train_part = TINY.split("[train]")
    cfg = tmp_path / "online.toml"
    cfg.write_text(
        '[model]\nhistory = 5\nmembers = 3\n\n[model.model]\nkind = "diffusion"\n'
        + model_part.replace("[model]", "[model.model.config]")
        + "[train]"
        + train_part
    )
    out = tmp_path / "online"
    args = [*train_args(nc_path, cfg, out), "--model", "online-spread"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "trained online-spread" in printed and "6 steps, stopped: done" in printed
    assert {"model.safetensors", "best.safetensors", "last.safetensors"} <= {
        p.name for p in out.glob("*.safetensors")
    }
    model = load_model(out / "model.safetensors")
    assert model.kind == "online-spread" and model.model.kind == "diffusion"
    assert model.context == 4 + 5 and model.model.train_config.max_steps == 6
    assert main([*args, "--resume"]) == 0  # a finished training resumes to the same end
    capsys.readouterr()
    # a pool inside: its models are listed as for `--model pooled`
    pool = tmp_path / "online-pool.toml"
    pool.write_text(
        '[model]\nhistory = 5\nmembers = 3\n\n[model.model]\nkind = "pooled"\n\n'
        '[model.model.config]\ncomponents = [{kind = "persistence", config = {}}, '
        '{kind = "climatology", config = {}}]\n'
    )
    out = tmp_path / "online-pool"
    args = [*train_args(nc_path, pool, out), "--model", "online-spread", "--jobs", "2"]
    assert main(args) == 0  # --jobs reaches the pool inside
    printed = capsys.readouterr().out
    assert "  persistence-0: fitted" in printed and "  climatology-1: fitted" in printed


def test_schaake_config_trains_its_base_and_keeps_the_training_split(nc_path, tmp_path, capsys):
    """``--model schaake``: the base (here an online-spread pool) trains, the training split
    becomes the template record, and the pool inside is listed."""
    cfg = tmp_path / "schaake.toml"
    cfg.write_text(
        '[model.model]\nkind = "online-spread"\n\n[model.model.config]\nhistory = 5\n'
        'members = 3\nmodel = {kind = "pooled", config = {components = ['
        '{kind = "persistence", config = {}}, {kind = "climatology", config = {}}]}}\n'
    )
    out = tmp_path / "schaake"
    assert main([*train_args(nc_path, cfg, out), "--model", "schaake", "--jobs", "2"]) == 0
    printed = capsys.readouterr().out
    assert "trained schaake" in printed and "  climatology-1: fitted" in printed
    model = load_model(out / "model.safetensors")
    assert (model.kind, model.model.kind, model.model.model.kind) == (
        "schaake",
        "online-spread",
        "pooled",
    )
    from forecast.commands.train import protocol_for

    ds = synthetic_weather(seed=0, n_lat=6, n_lon=8, days=6)
    train = protocol_for(str(nc_path), ds, 4, 3).split(ds, "train")
    np.testing.assert_array_equal(model.record_times, train[TIME].values)
    assert model.context == 4 + 5
