"""The contract every registered Forecaster satisfies (DESIGN.md).

fit -> sample -> save -> load -> sample gives the same ensemble for the same seed, in the
standard layout, for every name in ``forecast.models.MODELS``, on a small grid and a small sensor
network. Each model class provides ``tiny(context, horizon)``: a small, fast configuration for
this test (see docs/architecture.md). New models join automatically when they register.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from forecast.data.synthetic import synthetic_traffic, synthetic_weather
from forecast.data.windows import context_of
from forecast.dims import (
    INIT_TIME,
    LEAD_TIME,
    MEMBER,
    TIME,
    VALID_TIME,
    Forecaster,
    space_dims,
)
from forecast.errors import ForecastError
from forecast.models import MODELS, load_model

CONTEXT, HORIZON = 4, 3


@pytest.fixture(scope="module")
def datasets() -> dict[str, xr.Dataset]:
    return {
        "grid": synthetic_weather(seed=4, n_lat=4, n_lon=6, days=8),
        "sensors": synthetic_traffic(seed=4, n_sensors=16, days=2),
    }


@pytest.mark.parametrize("kind", ["grid", "sensors"])
@pytest.mark.parametrize("name", MODELS.names())
def test_forecaster_contract(name, kind, datasets, tmp_path):
    ds = datasets[kind]
    cls = MODELS.get(name)
    assert hasattr(cls, "tiny"), f"{name}: add a classmethod tiny(context, horizon) for tests"
    model = cls.tiny(CONTEXT, HORIZON)
    assert isinstance(model, Forecaster)
    n = ds.sizes[TIME]
    train = ds.isel({TIME: slice(0, int(n * 0.7))})
    valid = ds.isel({TIME: slice(int(n * 0.7), int(n * 0.8))})
    assert model.fit(train, valid) is model

    issue = ds[TIME].values[int(n * 0.9)]
    ctx = context_of(ds, issue, CONTEXT)
    ens = model.sample(ctx, 4, seed=11)
    variables = [v for v in ds.data_vars if TIME in ds[v].dims]
    space = space_dims(ds)
    for v in variables:
        assert ens[v].dims == (MEMBER, LEAD_TIME, *space)
        assert ens[v].shape[:2] == (4, HORIZON)
        assert ens[v].attrs.get("units") == ds[v].attrs.get("units")
        assert np.isfinite(ens[v].values).all()
    np.testing.assert_array_equal(ens[MEMBER].values, np.arange(4))
    assert ens[INIT_TIME].values == issue
    np.testing.assert_array_equal(ens[VALID_TIME].values, issue + ens[LEAD_TIME].values)
    assert ens[LEAD_TIME].values[0] == ds[TIME].values[1] - ds[TIME].values[0]
    xr.testing.assert_identical(model.sample(ctx, 4, seed=11), ens)  # seeded
    fewer = model.sample(ctx, 2, seed=11)[variables[0]].values
    if getattr(cls, "joint_members", False):  # a joint reorder: n members fix the ensemble
        assert fewer.shape == ens[variables[0]].values[:2].shape
    else:  # member m depends only on (seed, m)
        np.testing.assert_allclose(fewer, ens[variables[0]].values[:2], rtol=1e-6, atol=1e-6)

    path = tmp_path / f"{name}.safetensors"
    model.save(path)
    loaded = load_model(path)
    assert type(loaded) is cls
    again = loaded.sample(ctx, 4, seed=11)
    xr.testing.assert_allclose(again, ens, rtol=1e-6, atol=1e-5)
    assert again.coords.keys() == ens.coords.keys()

    # a checkpoint refuses data it was not trained on
    other = ctx.isel({space[0]: slice(0, 2)})
    with pytest.raises(ForecastError):
        loaded.sample(other, 2, seed=0)


def test_load_model_refuses_unknown_kind(tmp_path):
    from forecast.checkpoint import save_checkpoint

    path = tmp_path / "x.safetensors"
    save_checkpoint(path, {"a": np.zeros(1)}, {"kind": "no-such-model"})
    with pytest.raises(ForecastError, match="valid names"):
        load_model(path)


def test_registry_lists_the_baselines():
    assert {"persistence", "climatology", "diurnal-persistence", "gp"} <= set(MODELS.names())
