"""The shipped configuration files (``data/configs``) and ``scripts/reproduce.py``."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import pytest

from forecast.commands.train import build_model
from forecast.data import get_protocol
from forecast.training.config import load_toml

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "data" / "configs").glob("*.toml"))


def _model_of(path: Path) -> str:
    """``diffusion-era5-uk-t2m.toml`` -> ``diffusion``; ``shipped-vae-...`` -> ``vae``;
    ``vae-grid.toml`` -> ``vae``; ``online-spread-vae-...`` -> ``online-spread``."""
    stem = path.stem.removeprefix("shipped-")
    return "online-spread" if stem.startswith("online-spread-") else stem.split("-")[0]


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_config_builds_its_model(path):
    """A typo in a shipped config (an unknown key, a bad value) fails here, not in a user's
    twenty-minute training."""
    cfg = load_toml(path)
    model = build_model(_model_of(path), 6, 24, cfg["model"], cfg["train"])
    assert model.kind == _model_of(path)


def test_online_spread_config_repeats_the_vae_config():
    """The online-spread VAE of P2 is the P2 VAE config, wrapped: same model and training."""
    online = load_toml(REPO / "data" / "configs" / "online-spread-vae-era5-uk-t2m.toml")
    vae = load_toml(REPO / "data" / "configs" / "vae-era5-uk-t2m.toml")
    assert online["model"]["model"] == {"kind": "vae", "config": vae["model"]}
    assert online["train"] == vae["train"]
    model = build_model("online-spread", 6, 24, online["model"], online["train"])
    assert model.context == 6 + 72 and model.spec["config"]["train"] == vae["train"]


@pytest.mark.parametrize(
    ("name", "blend", "diurnal", "prior_weight"),
    [
        ("online-spread-pooled-diffusion-era5-uk-t2m.toml", True, None, 24.0),
        # prior weight chosen on the validation days (docs/diffusion.md "Less shrinkage")
        ("online-spread-diurnal-pooled-diffusion-era5-uk-t2m.toml", False, 3.0, 6.0),
    ],
)
def test_online_spread_deep_ensemble_configs_repeat_the_pool_config(
    name, blend, diurnal, prior_weight
):
    """The online P2 deep ensembles are the deep-ensemble config, wrapped with the blend or
    with spread factors by time of day."""
    online = load_toml(REPO / "data" / "configs" / name)
    deep = load_toml(REPO / "data" / "configs" / "pooled-diffusion-era5-uk-t2m.toml")
    assert online["model"]["model"] == {"kind": "pooled", "config": deep["model"]}
    assert online["train"] == deep["train"] == {}
    model = build_model("online-spread", 6, 24, online["model"], online["train"])
    assert (model.persistence_blend, model.diurnal_width) == (blend, diurnal)
    assert model.prior_weight == prior_weight and model.context == 6 + 72


def test_snapshot_config_repeats_the_deep_ensemble_at_four_steps():
    """The P2 snapshot pool is the deep-ensemble config's component kept at steps 15-60: 16
    models, seeds 0-3 of each step."""
    snaps = load_toml(REPO / "data" / "configs" / "pooled-diffusion-era5-uk-t2m-snapshots.toml")
    deep = load_toml(REPO / "data" / "configs" / "pooled-diffusion-era5-uk-t2m.toml")
    (component,) = deep["model"]["components"]
    (spec,) = snaps["model"]["components"]
    assert snaps["model"]["seeds"] == deep["model"]["seeds"]
    train = dict(spec["config"]["train"])
    assert train.pop("keep") == [15, 30, 45, 60]
    assert {**spec, "config": {**spec["config"], "train": train}} == component
    model = build_model("pooled", 6, 24, snaps["model"], snaps["train"])
    steps = [(c["config"]["train"]["keep"], c["config"]["train"]["seed"]) for c in model.components]
    assert steps == [(k, s) for k in (15, 30, 45, 60) for s in range(4)]


def test_schaake_config_wraps_the_online_snapshot_pool_of_eight_seeds():
    """The P2 ensemble for maps: the snapshot config with seeds 0-7, wrapped by the online
    spread settings of the diurnal config, then by the Schaake shuffle."""
    path = REPO / "data" / "configs" / "schaake-online-spread-snapshots-era5-uk-t2m.toml"
    cfg = load_toml(path)
    online = load_toml(
        REPO / "data" / "configs" / "online-spread-diurnal-pooled-diffusion-era5-uk-t2m.toml"
    )
    snaps = load_toml(REPO / "data" / "configs" / "pooled-diffusion-era5-uk-t2m-snapshots.toml")
    wrapper = cfg["model"]["model"]
    assert set(cfg["model"]) == {"model"} and cfg["train"] == {}
    assert wrapper["kind"] == "online-spread"
    settings = {k: v for k, v in wrapper["config"].items() if k != "model"}
    assert settings == {k: v for k, v in online["model"].items() if k != "model"}
    pool = wrapper["config"]["model"]
    assert pool["kind"] == "pooled" and pool["config"]["seeds"] == list(range(8))
    assert {**pool["config"], "seeds": snaps["model"]["seeds"]} == snaps["model"]
    model = build_model("schaake", 6, 24, cfg["model"], cfg["train"])
    assert model.spec["kind"] == "online-spread"


def test_online_spread_vae_deep_ensemble_config_repeats_the_vae_config():
    """The online P2 VAE deep ensemble pools seeds of the P2 VAE config (its seed aside)."""
    online = load_toml(REPO / "data" / "configs" / "online-spread-pooled-vae-era5-uk-t2m.toml")
    vae = load_toml(REPO / "data" / "configs" / "vae-era5-uk-t2m.toml")
    pool = online["model"]["model"]
    assert pool["kind"] == "pooled" and pool["config"]["seeds"] == [0, 1]
    train = {k: v for k, v in vae["train"].items() if k != "seed"}
    assert pool["config"]["components"] == [
        {"kind": "vae", "config": {**vae["model"], "train": train}}
    ]
    model = build_model("online-spread", 6, 24, online["model"], online["train"])
    assert model.persistence_blend and model.context == 6 + 72


def test_vae_correction_configs_repeat_the_vae_config():
    """The P2 VAE pool with calibrate_correction pools seeds 0 and 1 of the P2 VAE config with
    that one key added; the online config wraps that pool, by time of day, without the
    persistence blend."""
    configs = REPO / "data" / "configs"
    vae = load_toml(configs / "vae-era5-uk-t2m.toml")
    train = {k: v for k, v in vae["train"].items() if k != "seed"}
    components = [
        {"kind": "vae", "config": {**vae["model"], "calibrate_correction": True, "train": train}}
    ]
    pool = load_toml(configs / "pooled-vae-correction-era5-uk-t2m.toml")["model"]
    assert pool == {"seeds": [0, 1], "components": components}
    online = load_toml(configs / "online-spread-pooled-vae-correction-era5-uk-t2m.toml")
    assert online["model"]["model"] == {"kind": "pooled", "config": pool}
    model = build_model("online-spread", 6, 24, online["model"], online["train"])
    assert not model.persistence_blend and model.diurnal_width == 3.0
    assert model.prior_weight == 6.0  # chosen on the validation days (docs/vae.md "Round 16")


@pytest.fixture(scope="module")
def reproduce(load_script):
    return load_script("scripts/reproduce.py")


def test_recommended_configs_exist_and_match_their_protocol(reproduce):
    rep = reproduce
    for protocol, (dataset, configs) in rep.RECOMMENDED.items():
        assert get_protocol(protocol).dataset == dataset
        assert sorted(configs) == ["diffusion", "vae"]
        for model, config in configs.items():
            assert (REPO / config).is_file()
            assert _model_of(REPO / config) == model


def _plan(rep, tmp_path, *argv):
    ns = rep.argparse.Namespace(
        protocol="P2",
        seeds="0,1",
        pool=False,
        online=False,
        blend=False,
        jobs=1,
        members=50,
        threads=1,
        max_steps=None,
    )
    ns.out = str(tmp_path)
    for key, value in zip(argv[::2], argv[1::2], strict=True):
        setattr(ns, key, value)
    return [shlex.join(c) for c in rep.plan(ns)]


def test_reproduce_plan_trains_resumes_and_reuses(tmp_path, reproduce):
    rep = reproduce
    lines = _plan(rep, tmp_path)
    assert len(lines) == 6  # 2 models x 2 seeds, the protocol run, the tables
    assert "--model diffusion" in lines[0] and "--seed 0" in lines[0] and "--seed 1" in lines[1]
    assert "diffusion-era5-uk-t2m-gp-points-lowlr.toml" in lines[0]
    assert f"--out {tmp_path / 'vae-s1'}" in lines[3]
    assert "--resume" not in " ".join(lines)
    assert f"evaluate --protocol P2 --models {rep.BASELINES}" in lines[4]
    assert f"--checkpoint vae-s1={tmp_path / 'vae-s1' / 'model.safetensors'}" in lines[4]
    assert lines[5].endswith(f"results_tables.py {tmp_path / 'eval'}")
    # a finished training is reused, an interrupted one resumes
    (tmp_path / "diffusion-s0").mkdir()
    (tmp_path / "diffusion-s0" / "model.safetensors").touch()
    (tmp_path / "vae-s1").mkdir()
    (tmp_path / "vae-s1" / "last.safetensors").touch()
    lines = _plan(rep, tmp_path, "pool", True, "max_steps", 3)
    trains = [line for line in lines if " train " in line]
    assert [("--seed 1" in t, "--model vae" in t) for t in trains] == [
        (True, False),
        (False, True),
        (True, True),
    ]
    assert trains[-1].endswith("--resume") and "--max-steps 3" in trains[-1]
    pools = [line for line in lines if " pool " in line]
    assert [p.rsplit("--out ", 1)[1] for p in pools] == [
        f"{tmp_path / f'{name}.safetensors'} --overwrite"
        for name in ("pool", "diffusion-pool", "vae-pool")
    ]  # a rerun writes them again
    assert pools[0].count("--checkpoint") == 4
    assert pools[1].count("--checkpoint diffusion-s") == 2 and "vae-s" not in pools[1]
    for name in ("pool", "diffusion-pool", "vae-pool"):
        assert f"--checkpoint {name}={tmp_path / f'{name}.safetensors'}" in lines[-2]


def test_reproduce_online_wraps_every_model_and_pool(tmp_path, reproduce):
    rep = reproduce
    lines = _plan(rep, tmp_path, "seeds", "0", "pool", True, "online", True)
    online = [line for line in lines if " online-spread " in line]
    labels = ["diffusion-s0", "vae-s0", "pool"]  # one seed: no per-model pools
    assert len(online) == 3
    for label, line in zip(labels, online, strict=True):
        wrapper = tmp_path / f"{label}-online.safetensors"
        assert f"--out {wrapper} --overwrite" in line
        assert f"--checkpoint {label}-online={wrapper}" in lines[-2]
    # wrapped after the pools are built, scored in the same protocol run
    assert lines.index(online[0]) > max(i for i, x in enumerate(lines) if " pool " in x)
    assert not any("--persistence-blend" in line for line in online)
    lines = _plan(rep, tmp_path, "seeds", "0", "online", True, "blend", True)
    online = [line for line in lines if " online-spread " in line]
    assert len(online) == 2 and all("--persistence-blend" in line for line in online)


def test_reproduce_runs_trainings_side_by_side(tmp_path, monkeypatch, capsys, reproduce):
    """``--jobs 2``: the trainings (without progress bars) run two at a time, then the other
    steps in order; a failed training stops the run before them with its exit status."""
    rep = reproduce
    lines = _plan(rep, tmp_path, "jobs", 2)
    assert all("--no-progress" in line for line in lines[:4]) and "--jobs 2" in lines[-2]
    lines = _plan(rep, tmp_path)
    assert not any("--no-progress" in line for line in lines[:4]) and "--jobs" not in lines[-2]
    script = "import sys; print('trained', sys.argv[2]); sys.exit(int(sys.argv[2]))"
    monkeypatch.setattr(rep, "forecast_cli", lambda: [sys.executable, "-c", script])
    after = [sys.executable, "-c", f"open({str(tmp_path / 'after')!r}, 'w')"]
    trainings = [[*rep.forecast_cli(), "train", "0"], [*rep.forecast_cli(), "train", "0"]]
    assert rep.run_commands([*trainings, after], jobs=2) == 0
    assert capsys.readouterr().out.count("trained 0") == 2 and (tmp_path / "after").exists()
    (tmp_path / "after").unlink()
    trainings[1][-1] = "3"
    assert rep.run_commands([*trainings, after], jobs=2) == 3
    assert "error: a step above failed (exit 3)" in capsys.readouterr().err
    assert not (tmp_path / "after").exists()


def test_reproduce_bad_input(capsys, reproduce):
    rep = reproduce
    for seeds in ("0,x", "1,1", ","):
        with pytest.raises(SystemExit, match=r"^error: --seeds"):
            rep.main(["P2", "--seeds", seeds, "--dry-run"])
    with pytest.raises(SystemExit, match=r"^error: --members must be >= 1"):
        rep.main(["P2", "--members", "0", "--dry-run"])
    with pytest.raises(SystemExit, match=r"^error: --blend acts on the online-spread wrappers"):
        rep.main(["P2", "--blend", "--dry-run"])
    with pytest.raises(SystemExit, match=r"^error: --jobs must be >= 1, got 0"):
        rep.main(["P2", "--jobs", "0", "--dry-run"])
    with pytest.raises(SystemExit):  # argparse: not a protocol
        rep.main(["P3", "--dry-run"])
    assert "invalid choice: 'P3'" in capsys.readouterr().err


def test_reproduce_dry_run_prints_runnable_commands(tmp_path, capsys, reproduce):
    rep = reproduce
    assert rep.main(["synthetic-traffic", "--dry-run", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 4 and all(line.startswith("$ ") for line in printed)
    assert printed[0].startswith(f"$ {shlex.quote(sys.executable)} -m forecast.cli train")
    assert not any(tmp_path.iterdir())  # a dry run writes nothing
