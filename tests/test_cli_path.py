"""``forecast path``: a latent path between two scenarios of one issue time, to NetCDF."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from forecast.cli import main
from forecast.dims import PATH, TIME
from forecast.export import open_ensemble
from forecast.models import PersistenceEnsemble, PooledEnsemble
from forecast.models.vae import ConditionalVAE

pytestmark = pytest.mark.usefixtures("one_thread")
ISSUE = "2021-01-08T12:00"


@pytest.fixture(scope="module")
def files(tiny_data, tiny_protocol, tmp_path_factory) -> dict[str, Path]:
    """The tiny data as NetCDF; a tiny VAE (4 steps), persistence and a pool of both."""
    folder = tmp_path_factory.mktemp("path")
    tiny_data.to_netcdf(folder / "data.nc")
    train = tiny_protocol.split(tiny_data, "train")
    config = ConditionalVAE.tiny(tiny_protocol.context, tiny_protocol.horizon).config()
    config["train"] = {**config["train"], "max_steps": 4}
    vae = ConditionalVAE(**config).fit(train)
    persistence = PersistenceEnsemble(context=tiny_protocol.context, horizon=5).fit(train)
    vae.save(folder / "vae.safetensors")
    persistence.save(folder / "persistence.safetensors")
    pool = PooledEnsemble.from_models([vae, persistence], labels=["v", "p"])
    pool.save(folder / "pool.safetensors")
    return {
        "data": folder / "data.nc",
        "vae": folder / "vae.safetensors",
        "persistence": folder / "persistence.safetensors",
        "pool": folder / "pool.safetensors",
    }


def path_cmd(files, model: str, out: Path, *extra: str) -> int:
    return main(
        ["path", "--checkpoint", str(files[model]), "--data", str(files["data"]),
         "--init-time", ISSUE, "--members", "6", "--seed", "3", "--out", str(out), *extra]
    )  # fmt: skip


def predicted(files, model: str, out: Path) -> xr.Dataset:
    """The ensemble ``forecast predict`` writes for ISSUE with the same members and seed."""
    assert main(
        ["predict", "--checkpoint", str(files[model]), "--data", str(files["data"]),
         "--init-time", ISSUE, "--members", "6", "--seed", "3", "--out", str(out)]
    ) == 0  # fmt: skip
    return open_ensemble(out).load()


def test_path_between_a_member_and_the_observed_target(files, tiny_data, tmp_path, capsys):
    out = tmp_path / "path.nc"
    assert path_cmd(files, "vae", out, "--from", "2", "--to", "observed", "--steps", "7") == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}: 7 points from member 2 to observed" in printed
    assert "anomaly variance mid-way" in printed and "evenly spaced: 0.167" in printed
    ens = predicted(files, "vae", tmp_path / "ens.nc")
    with xr.open_dataset(out) as back:
        assert back["t2m"].dims == (PATH, "lead_time", "lat", "lon")
        np.testing.assert_allclose(back[PATH].values, np.linspace(0, 1, 7))
        # the path starts at member 2 of the forecast predict ensemble (same seed and members)
        np.testing.assert_allclose(
            back["t2m"].values[0], ens["t2m"].isel(init_time=0).values[2], rtol=0, atol=1e-4
        )
        np.testing.assert_allclose(back["t2m_blend"].values[0], back["t2m"].values[0])
        np.testing.assert_allclose(back["t2m_blend"].values[-1], back["t2m"].values[-1])
        assert back["t2m_variance_ratio"].values[0] == pytest.approx(1.0)
        assert back.attrs["scenario_b"] == "observed" and back.attrs["init_time"].startswith(
            "2021-01-08T12"
        )


def test_path_of_a_pool_walks_the_model_that_drew_the_member(files, tmp_path, capsys):
    out = tmp_path / "pool-path.nc"
    # round robin v, p, v, p, ...: members 0, 2, 4 come from the VAE
    assert path_cmd(files, "pool", out, "--from", "4", "--to", "0", "--steps", "3") == 0
    assert "(pooled, pool model 'v')" in capsys.readouterr().out
    ens = predicted(files, "pool", tmp_path / "ens.nc")
    with xr.open_dataset(out) as back:
        for point, member in ((0, 4), (-1, 0)):
            np.testing.assert_allclose(
                back["t2m"].values[point],
                ens["t2m"].isel(init_time=0).values[member],
                rtol=0,
                atol=1e-4,
            )


@pytest.mark.parametrize(
    ("model", "extra", "needles"),
    [
        ("persistence", ("--from", "0", "--to", "1"), ("persistence model has no latent space",)),
        ("vae", ("--from", "0", "--to", "1", "--steps", "1"), ("--steps must be at least 2",)),
        ("vae", ("--from", "x", "--to", "1"), ("--from 'x' is neither a member number",)),
        ("vae", ("--from", "0", "--to", "6"), ("--to 6 is not a member of a 6-member",)),
        ("vae", ("--from", "0", "--to", "1", "--model", "v"), ("--model picks a model of a pool",)),
        ("pool", ("--from", "observed", "--to", "observed"), ("pass --model LABEL", "v")),
        ("pool", ("--from", "1", "--to", "0"), ("member 1 comes from 'p'", "no latent space")),
        ("pool", ("--from", "0", "--to", "2", "--model", "p"), ("pool model 'p' has no latent",)),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(files, tmp_path, capsys, model, extra, needles):
    out = tmp_path / "bad.nc"
    assert path_cmd(files, model, out, *extra) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_observed_needs_the_data_after_the_issue_time(files, tiny_data, tmp_path, capsys):
    late = str(tiny_data[TIME].values[-3])[:16]
    out = tmp_path / "late.nc"
    code = main(
        ["path", "--checkpoint", str(files["vae"]), "--data", str(files["data"]),
         "--init-time", late, "--from", "observed", "--to", "0", "--out", str(out)]
    )  # fmt: skip
    assert code == 2
    assert "needs the 5 steps after" in capsys.readouterr().err
    out.write_bytes(b"keep")
    assert path_cmd(files, "vae", out, "--from", "0", "--to", "1") == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert out.read_bytes() == b"keep"
