"""slerp, latent paths through any LatentForecaster, and the variance-ratio diagnostic."""

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

from forecast.dims import LAT, LEAD_TIME, LON, MEMBER, PATH
from forecast.errors import ForecastError
from forecast.sampling.paths import (
    blend_path,
    largest_step,
    latent_path,
    path_dataset,
    slerp,
    variance_ratio,
)


def test_slerp_endpoints_exact_and_types():
    rng = np.random.default_rng(0)
    a, b = (
        rng.standard_normal((3, 4)).astype(np.float32),
        rng.standard_normal((3, 4)).astype(np.float32),
    )
    out = slerp(a, b, [0.0, 0.3, 1.0])
    assert out.shape == (3, 3, 4) and out.dtype == np.float32
    assert np.array_equal(out[0], a) and np.array_equal(out[-1], b)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    tout = slerp(ta, tb, [0.0, 0.3, 1.0])
    assert torch.is_tensor(tout) and torch.equal(tout[0], ta) and torch.equal(tout[2], tb)
    np.testing.assert_allclose(tout.numpy(), out)


def test_slerp_closed_form_and_norm():
    # orthogonal unit vectors: slerp is the great circle (cos, sin)
    out = slerp(np.array([1.0, 0.0]), np.array([0.0, 1.0]), [0.25])
    np.testing.assert_allclose(out[0], [np.cos(np.pi / 8), np.sin(np.pi / 8)])
    # high-dimensional Gaussians: slerp keeps the norm, the straight blend shrinks it
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal(10000), rng.standard_normal(10000)
    mid = slerp(a, b, [0.5])[0]
    assert np.linalg.norm(mid) == pytest.approx(np.linalg.norm(a), rel=0.02)
    assert np.linalg.norm((a + b) / 2) == pytest.approx(np.linalg.norm(a) / np.sqrt(2), rel=0.03)


def test_slerp_shape_mismatch():
    with pytest.raises(ForecastError, match="differ in shape"):
        slerp(np.zeros(3), np.zeros(4), [0.5])


class LinearDecoder:
    """A LatentForecaster stand-in: member = last context field + latent (deterministic)."""

    def decode(self, context, latents):
        z = np.asarray(latents)
        last = context["t"].values[-1]
        return xr.Dataset(
            {"t": ((MEMBER, LEAD_TIME, LAT, LON), last + z)},
            coords={MEMBER: np.arange(len(z)), LEAD_TIME: pd.to_timedelta([1, 2], "h")},
        )


def _context():
    rng = np.random.default_rng(2)
    return xr.Dataset(
        {"t": (("time", LAT, LON), rng.standard_normal((3, 5, 6)))},
        coords={"time": pd.date_range("2020", periods=3, freq="h")},
    )


def test_latent_path_endpoints_and_ratio():
    ctx = _context()
    rng = np.random.default_rng(3)
    za, zb = rng.standard_normal((2, 5, 6)), rng.standard_normal((2, 5, 6))
    model = LinearDecoder()
    path = latent_path(model, ctx, za, zb, steps=7)
    assert path.sizes[PATH] == 7 and path[PATH].values[0] == 0 and path[PATH].values[-1] == 1
    xr.testing.assert_equal(
        path.isel({PATH: 0}).drop_vars(PATH),
        model.decode(ctx, za[None]).isel({MEMBER: 0}).drop_vars(MEMBER),
    )
    xr.testing.assert_equal(
        path.isel({PATH: -1}).drop_vars(PATH),
        model.decode(ctx, zb[None]).isel({MEMBER: 0}).drop_vars(MEMBER),
    )
    last = ctx.isel(time=-1)
    r_slerp = variance_ratio(path, last)["t"].values
    blend = blend_path(path.isel({PATH: 0}), path.isel({PATH: -1}), steps=7)
    r_blend = variance_ratio(blend, last)["t"].values
    assert r_slerp[0] == pytest.approx(1.0) and r_slerp[-1] == pytest.approx(1.0)
    # 60 independent values: slerp keeps the variance near 1, the blend halves it mid-way
    assert 0.6 < r_slerp[3] < 1.5
    assert r_blend[3] == pytest.approx(0.5, abs=0.2)
    assert r_blend[3] < r_slerp[3]


def test_latent_path_needs_two_steps():
    with pytest.raises(ForecastError, match="steps >= 2"):
        latent_path(LinearDecoder(), _context(), np.zeros((2, 5, 6)), np.zeros((2, 5, 6)), steps=1)


def test_largest_step_of_even_and_jumping_paths():
    ctx = _context()
    rng = np.random.default_rng(4)
    za, zb = rng.standard_normal((2, 2, 5, 6))
    even = blend_path(
        *(LinearDecoder().decode(ctx, z[None]).isel({MEMBER: 0}) for z in (za, zb)), 6
    )
    assert float(largest_step(even)["t"]) == pytest.approx(1 / 5)  # the smallest possible
    jump = even.copy(deep=True)
    jump["t"][1:] = even["t"].values[-1]  # all the change in the first step
    assert float(largest_step(jump)["t"]) == pytest.approx(1.0)
    assert np.isnan(float(largest_step(even.isel({PATH: [0, 0]}))["t"]))  # equal ends


def test_path_dataset_holds_path_blend_and_ratios():
    ctx = _context()
    rng = np.random.default_rng(5)
    za, zb = rng.standard_normal((2, 2, 5, 6))
    path = latent_path(LinearDecoder(), ctx, za, zb, steps=5).astype(np.float32)
    blend = blend_path(path.isel({PATH: 0}), path.isel({PATH: -1}), steps=5)
    last = ctx.isel(time=-1)
    out = path_dataset(path, blend, variance_ratio(path, last), variance_ratio(blend, last))
    assert sorted(out.data_vars) == ["t", "t_blend", "t_blend_variance_ratio", "t_variance_ratio"]
    np.testing.assert_allclose(out["t_blend"].values, blend["t"].values, rtol=1e-6)
    assert out["t_blend"].dtype == np.float32  # stored like the path it is compared with
    np.testing.assert_allclose(out["t_variance_ratio"].values, variance_ratio(path, last)["t"])
    assert out["t_variance_ratio"].dims == (PATH,) and out[PATH].attrs["units"] == "1"
