"""The notebooks run top to bottom with small settings (``FORECAST_NOTEBOOK_SMALL=1``).

They are executed with nbclient in a fresh kernel from the ``notebooks/`` folder, use the shipped
checkpoints under ``data/models/`` and are committed without outputs.
"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = ("01_quickstart.ipynb", "02_calibration.ipynb", "03_latent_space.ipynb")


def execute(name: str, **env: str) -> nbformat.NotebookNode:
    """Run notebook ``name`` with small settings (plus ``env``); returns the executed copy."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    old = {k: os.environ.get(k) for k in ("FORECAST_NOTEBOOK_SMALL", "MPLBACKEND", *env)}
    os.environ.update({"FORECAST_NOTEBOOK_SMALL": "1", **env})
    # `import streamlit` (the dashboard tests) sets MPLBACKEND=Agg for the whole process; the
    # kernel inherits the environment and would then show no figures.
    os.environ.pop("MPLBACKEND", None)
    try:
        NotebookClient(
            nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": NOTEBOOKS}}
        ).execute()
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return nb


def outputs_text(nb: nbformat.NotebookNode) -> str:
    """All stream and text/plain outputs of an executed notebook, joined."""
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", ""))
            parts.append(out.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


@pytest.mark.parametrize("name", NAMES)
def test_committed_without_outputs(name: str) -> None:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, name
    assert all(not c.outputs and c.execution_count is None for c in code), name
    # notebooks use the library; they define none of their own
    assert not any(
        line.lstrip().startswith(("def ", "class ")) for c in code for line in c.source.splitlines()
    )
    assert any("import forecast" in c.source or "from forecast" in c.source for c in code)
    assert "FORECAST_NOTEBOOK_SMALL" in code[0].source  # the parameters cell comes first


@pytest.mark.slow
def test_quickstart_runs() -> None:
    nb = execute("01_quickstart.ipynb")
    text = outputs_text(nb)
    assert "CRPS of 8 members" in text
    assert "quickstart.nc" in text
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 2  # the maps and the plume


@pytest.mark.slow
def test_calibration_runs_on_synthetic() -> None:
    nb = execute("02_calibration.ipynb", FORECAST_NOTEBOOK_DATA="synthetic-weather")
    text = outputs_text(nb)
    assert "data: synthetic-weather" in text
    for model in ("diurnal-persistence", "climatology", "diffusion-synthetic-weather"):
        assert model in text


@pytest.mark.slow
def test_latent_space_runs() -> None:
    nb = execute("03_latent_space.ipynb")
    text = outputs_text(nb)
    assert "RMS reconstruction error" in text
    assert "mid-way ratio" in text


@pytest.mark.slow
def test_calibration_runs_on_p2(era5_path) -> None:
    nb = execute("02_calibration.ipynb", FORECAST_NOTEBOOK_DATA="era5-uk-t2m")
    text = outputs_text(nb)
    assert "data: era5-uk-t2m" in text and "P2 3 issue times" in text
    assert "diffusion-synthetic-weather" not in text  # shipped synthetic models do not fit P2
