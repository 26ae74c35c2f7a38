"""The shipped checkpoints under ``data/models/``: they load, fit their data set, are small,
carry their training record, and still reach their recorded validation CRPS.

The validation CRPS is recomputed exactly as the training loop computes it: the model's own
validator on the validation split of the data set's protocol (same evenly spaced issue times,
same members, member seeds fixed by the issue-time index), in normalized units.
"""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

import pytest

from forecast.checkpoint import load_checkpoint
from forecast.data import check_compatible, open_dataset
from forecast.mainjob import MODELS_DIR, shipped_path, shipped_record

REPO = Path(__file__).resolve().parents[1]
SHIPPED = [
    ("diffusion", "synthetic-weather"),
    ("diffusion", "synthetic-traffic"),
    ("vae", "synthetic-weather"),
    ("vae", "synthetic-traffic"),
]
IDS = [f"{k}-{d}" for k, d in SHIPPED]


@pytest.fixture(scope="module")
def datasets() -> dict:
    return {}


def _data(datasets: dict, name: str):
    if name not in datasets:
        datasets[name] = open_dataset(name)
    return datasets[name]


#: Shipped GPs: fitted once (no training loop), validation CRPS in physical units.
GP_SHIPPED = ["synthetic-weather", "synthetic-traffic"]


def test_every_shipped_checkpoint_is_listed() -> None:
    found = sorted(p.name for p in MODELS_DIR.glob("*.safetensors"))
    expected = [*IDS, *(f"gp-{d}" for d in GP_SHIPPED)]
    assert found == sorted(f"{i}.safetensors" for i in expected)


@pytest.mark.slow
@pytest.mark.parametrize("name", GP_SHIPPED)
def test_shipped_gp_fits_data_and_reaches_recorded_crps(name: str, datasets) -> None:
    import torch

    from forecast.commands.train import protocol_for
    from forecast.models import load_model
    from forecast.models.gp import gp_validation_crps

    torch.set_num_threads(1)
    path = shipped_path("gp", name, MODELS_DIR)
    assert path.stat().st_size <= 5 * 1024 * 1024
    _, meta = load_checkpoint(path)
    rec = shipped_record(path)
    assert rec["name"] == f"gp-{name}" and rec["data"] == name and rec["train_seconds"] > 0
    cfg = tomllib.loads((REPO / rec["config"]).read_text())
    for key, value in cfg["model"].items():
        assert meta["config"][key] == value, key
    ds = _data(datasets, name)
    model = load_model(path)
    check_compatible(model.description, ds)
    score = gp_validation_crps(model, ds, protocol_for(name, ds, None, None))
    assert abs(score - rec["val_crps"]) <= 0.05 * rec["val_crps"], (score, rec["val_crps"])


@pytest.mark.parametrize(("kind", "name"), SHIPPED, ids=IDS)
def test_metadata_and_config(kind: str, name: str) -> None:
    path = shipped_path(kind, name, MODELS_DIR)
    assert path.stat().st_size <= 5 * 1024 * 1024
    _, meta = load_checkpoint(path)
    assert meta["kind"] == kind
    rec = shipped_record(path)
    assert rec["name"] == f"{kind}-{name}" and rec["data"] == name
    assert rec["train_seconds"] > 0 and math.isfinite(rec["val_crps"]) and rec["val_crps"] > 0
    assert rec["steps"] >= 1 and rec["stopped"] in ("done", "early stop", "time limit")
    # the committed config is the one the checkpoint was trained with
    cfg = tomllib.loads((REPO / rec["config"]).read_text())
    for key, value in cfg["model"].items():
        got = meta["config"][key]
        assert (list(got) if isinstance(got, tuple | list) else got) == value, key
    for key, value in cfg["train"].items():
        assert meta["config"]["train"][key] == value, key
    assert rec["val_issue_times"] == cfg["train"]["val_issue_times"]
    assert rec["val_members"] == cfg["train"]["val_members"]


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "name"), SHIPPED, ids=IDS)
def test_loads_fits_data_and_reaches_recorded_crps(kind: str, name: str, datasets) -> None:
    import torch

    from forecast.commands.train import protocol_for
    from forecast.models import load_model

    torch.set_num_threads(1)
    ds = _data(datasets, name)
    model = load_model(shipped_path(kind, name, MODELS_DIR))
    check_compatible(model.description, ds)
    rec = shipped_record(shipped_path(kind, name, MODELS_DIR))
    proto = protocol_for(name, ds, None, None)
    assert (model.context, model.horizon) == (proto.context, proto.horizon)
    score = model.validation_crps(proto.split(ds, "val"))
    assert abs(score - rec["val_crps"]) <= 0.05 * rec["val_crps"], (score, rec["val_crps"])
