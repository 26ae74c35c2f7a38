"""``forecast model info``: checkpoint summaries from the file alone, text and JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from forecast.checkpoint import load_checkpoint
from forecast.cli import main
from forecast.dims import TIME
from forecast.models.diffusion import ConditionalDiffusion
from forecast.models.info import checkpoint_info
from forecast.models.pooled import PooledEnsemble

pytestmark = pytest.mark.usefixtures("one_thread")

SHIPPED_VAE = Path(__file__).parents[1] / "data" / "models" / "vae-synthetic-weather.safetensors"


@pytest.fixture(scope="module")
def trained(tmp_path_factory, one_thread):
    """A tiny damped-residual diffusion model trained for 6 steps, with its checkpoints."""
    from forecast.data.synthetic import synthetic_weather

    ds = synthetic_weather(seed=0, n_lat=5, n_lon=7, days=8)
    model = ConditionalDiffusion(
        **{
            **ConditionalDiffusion.tiny(6, 4).config(),
            "target": "residual",
            "first_guess": "damped",
            "train": {"max_steps": 6, "eval_every": 1, "val_issue_times": 2, "val_members": 3},
        }
    )
    out = tmp_path_factory.mktemp("run")
    model.fit(ds.isel({TIME: slice(0, 140)}), ds.isel({TIME: slice(140, 192)}), out_dir=out)
    model.save(out / "model.safetensors")
    return model, out


def test_info_matches_the_checkpoint(trained, capsys):
    model, out = trained
    path = out / "last.safetensors"
    _, meta = load_checkpoint(path)
    info = checkpoint_info(path)
    assert info["kind"] == "diffusion" and (info["context"], info["horizon"]) == (6, 4)
    assert info["data"]["shape"] == {"lat": 5, "lon": 7}
    assert info["first_guess"] == {"kind": "damped"}
    assert info["config"]["target"] == "residual" and "train" not in info["config"]
    record = meta["training"]
    assert info["training"]["step"] == record["step"] == 6
    assert info["training"]["best_step"] == record["best_step"]
    assert info["training"]["device"] == "cpu" and info["train_config"]["seed"] == 0
    assert info["parameters"] > sum(p.numel() for p in model.net.parameters())

    assert main(["model", "info", str(path)]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"{path}: diffusion checkpoint")
    assert "data: grid t2m [K], lat 5 x lon 7, step 1 h" in text
    assert "training: weights of step 6 of 6 (done)" in text and "first guess: damped" in text


def test_json_of_several_and_a_pool(trained, tmp_path, capsys):
    model, out = trained
    pool = PooledEnsemble.from_models([model, model], weights=[2, 1], labels=["a", "b"])
    pool.save(tmp_path / "pool.safetensors")
    args = ["model", "info", str(out / "model.safetensors"), str(tmp_path / "pool.safetensors")]
    assert main([*args, "--json"]) == 0
    single, pooled = json.loads(capsys.readouterr().out)
    assert single["kind"] == "diffusion" and pooled["kind"] == "pooled"
    assert [c["label"] for c in pooled["components"]] == ["a", "b"]
    assert [c["weight"] for c in pooled["components"]] == [2.0, 1.0]
    assert all(c["kind"] == "diffusion" for c in pooled["components"])
    assert pooled["components"][0]["first_guess"] == {"kind": "damped"}
    assert main(["model", "info", str(tmp_path / "pool.safetensors")]) == 0
    assert "component b (weight 1):" in capsys.readouterr().out


@pytest.mark.skipif(not SHIPPED_VAE.is_file(), reason="shipped VAE not in this checkout")
def test_shipped_vae_shows_latent_units_and_how_to_retrain(capsys):
    assert main(["model", "info", str(SHIPPED_VAE)]) == 0
    text = capsys.readouterr().out
    _, meta = load_checkpoint(SHIPPED_VAE)
    latent = meta["state"]["training"]["latent"]
    assert f"latent: {latent['active_units']} of {latent['latent_units']} units active" in text
    assert f"retrain: {meta['shipped']['command']}" in text


def test_bad_input_one_line(tmp_path, capsys):
    not_a_checkpoint = tmp_path / "x.safetensors"
    not_a_checkpoint.write_text("hello")
    for path, message in (
        (tmp_path / "missing.safetensors", "not found"),
        (not_a_checkpoint, "is not a forecast checkpoint"),
    ):
        assert main(["model", "info", str(path)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err and message in err
