"""Written files get the permissions of the process umask, like any file the user creates
(temporary files are private until they are renamed into place)."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest
import xarray as xr
from test_export_netcdf import grid_ensemble

from forecast.checkpoint import save_checkpoint
from forecast.export import to_netcdf, to_zarr
from forecast.scoring.scorecard import to_netcdf as card_to_netcdf


@pytest.fixture(params=[0o022, 0o002, 0o077])
def umask(request):
    before = os.umask(request.param)
    yield request.param
    os.umask(before)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_writers_follow_the_umask(umask, tmp_path):
    want = 0o666 & ~umask
    assert mode(save_checkpoint(tmp_path / "m.safetensors", {"a": np.zeros(2)}, {})) == want
    assert mode(to_netcdf(grid_ensemble(), tmp_path / "e.nc")) == want
    store = to_zarr(grid_ensemble(), tmp_path / "e.zarr")
    assert mode(store) == 0o777 & ~umask
    card = xr.Dataset({"x": ("a", np.arange(2.0))})
    assert mode(card_to_netcdf(card, tmp_path / "card.nc")) == want
    assert not list(tmp_path.glob(".*.tmp"))
