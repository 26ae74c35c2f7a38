"""CRPS against properscoring / scoringrules / closed forms; properties; laziness; bad input."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import properscoring as ps
import pytest
import scoringrules as sr
import xarray as xr

from forecast.dims import INIT_TIME, LAT, LEAD_TIME, LON, MEMBER
from forecast.errors import ForecastError
from forecast.scoring import crps_ensemble, crps_fair, crps_gaussian, crps_pair, crpss
from forecast.scoring.kernels import crps_ensemble_np


def _pair(shape, m, seed=0, nan_frac=0.0, dtype=np.float64):
    """Random obs over dims (lead_time, lat, lon)[:len(shape)] and an ensemble with member first."""
    rng = np.random.default_rng(seed)
    dims = (LEAD_TIME, LAT, LON)[: len(shape)]
    fc = rng.standard_normal((m, *shape)).astype(dtype) * 2 + 1
    ob = rng.standard_normal(shape).astype(dtype) * 2 + 1
    if nan_frac:
        fc[rng.random(fc.shape) < nan_frac] = np.nan
        ob[rng.random(ob.shape) < nan_frac] = np.nan
    coords = {d: np.arange(n) * 1.0 for d, n in zip(dims, shape, strict=True)}
    obs = xr.DataArray(ob, dims=dims, coords=coords, name="v")
    fct = xr.DataArray(fc, dims=(MEMBER, *dims), coords=coords, name="v")
    return obs, fct


@pytest.mark.parametrize(
    ("shape", "m"), [((7,), 1), ((7,), 2), ((3, 5), 11), ((2, 3, 4), 50), ((1, 1, 1), 3)]
)
def test_pointwise_equals_properscoring(shape, m):
    obs, fct = _pair(shape, m, seed=m)
    ours = crps_ensemble(obs, fct, dim=[])
    ref = ps.crps_ensemble(obs.values, fct.values, axis=0)
    np.testing.assert_allclose(ours.values, ref, rtol=1e-6, atol=0)
    assert ours.dtype == np.float64 and ours.dims == obs.dims


@pytest.mark.parametrize("m", [3, 20, 64])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_members_skipped_like_properscoring(m, dtype):
    obs, fct = _pair((6, 8), m, seed=1, nan_frac=0.15, dtype=dtype)
    ours = crps_ensemble(obs, fct, dim=[], skipna=True)
    ref = ps.crps_ensemble(obs.values.astype(np.float64), fct.values.astype(np.float64), axis=0)
    allnan = np.isnan(fct.values).all(axis=0)
    ref = np.where(allnan, np.nan, ref)  # properscoring gives 0*nan quirks when all members NaN
    np.testing.assert_allclose(ours.values, ref, rtol=1e-6, atol=0, equal_nan=True)
    assert np.isnan(ours.values[np.isnan(obs.values)]).all()


def test_nan_without_skipna_propagates():
    obs, fct = _pair((6, 8), 5, seed=2)
    fct[2, 1, 3] = np.nan
    pt = crps_ensemble(obs, fct, dim=[])
    assert np.isnan(pt.values[1, 3])
    assert np.isfinite(np.delete(pt.values.ravel(), 1 * 8 + 3)).all()
    assert np.isnan(crps_ensemble(obs, fct).values)


def test_weighted_mean_with_nans_equals_brute_force():
    obs, fct = _pair((4, 6, 5), 9, seed=3, nan_frac=0.05)
    w = xr.DataArray(np.cos(np.deg2rad(np.linspace(40, 60, 6))), dims=LAT, coords={LAT: obs[LAT]})
    ours = crps_ensemble(obs, fct, dim=[LAT, LON], weights=w, skipna=True)
    ref = ps.crps_ensemble(obs.values, fct.values, axis=0)
    ref = np.where(np.isnan(fct.values).all(axis=0) | np.isnan(obs.values), np.nan, ref)
    wb = np.broadcast_to(w.values[None, :, None], ref.shape)
    ok = np.isfinite(ref)
    expect = [
        np.sum(np.where(ok[i], ref[i] * wb[i], 0)) / np.sum(np.where(ok[i], wb[i], 0))
        for i in range(ref.shape[0])
    ]
    np.testing.assert_allclose(ours.values, expect, rtol=1e-6)
    assert ours.dims == (LEAD_TIME,)


def test_fair_equals_scoringrules_and_closed_form():
    obs, fct = _pair((5, 7), 6, seed=4)
    ours = crps_fair(obs, fct, dim=[])
    ref = sr.crps_ensemble(obs.values, fct.values, m_axis=0, estimator="fair", backend="numpy")
    np.testing.assert_allclose(ours.values, ref, rtol=1e-6)
    x, y = fct.values, obs.values
    m = x.shape[0]
    closed = np.abs(x - y).mean(0) - np.abs(x[:, None] - x[None]).sum((0, 1)) / (2 * m * (m - 1))
    np.testing.assert_allclose(ours.values, closed, rtol=1e-9)
    std, fair = crps_pair(obs, fct, dim=[])
    np.testing.assert_allclose(fair.values, ours.values, rtol=1e-12)
    np.testing.assert_allclose(std.values, crps_ensemble(obs, fct, dim=[]).values, rtol=1e-12)


def test_one_member_is_mae_and_crps_nonnegative():
    obs, fct = _pair((9, 4), 1, seed=5)
    np.testing.assert_allclose(
        crps_ensemble(obs, fct, dim=[]).values, np.abs(fct.values[0] - obs.values), rtol=1e-12
    )
    obs, fct = _pair((30, 30), 4, seed=6)
    assert (crps_ensemble(obs, fct, dim=[]).values >= 0).all()
    # obs equal to all members: zero
    same = xr.concat([obs] * 3, dim=MEMBER)
    np.testing.assert_allclose(crps_ensemble(obs, same, dim=[]).values, 0.0, atol=1e-12)


def test_float32_accumulates_in_float64():
    rng = np.random.default_rng(7)
    base = 1.0e4
    x = (base + rng.standard_normal((50, 2000)) * 1e-2).astype(np.float32)
    y = (base + rng.standard_normal(2000) * 1e-2).astype(np.float32)
    ours = crps_ensemble_np(y, x.T)
    ref = ps.crps_ensemble(y.astype(np.float64), x.T.astype(np.float64))
    assert ours.dtype == np.float64
    assert (ours >= 0).all()
    np.testing.assert_allclose(ours, ref, rtol=1e-6)


def test_invariant_to_transposition_and_extra_dims():
    obs, fct = _pair((3, 4, 5), 7, seed=8)
    base = crps_ensemble(obs, fct, dim=[])
    t = crps_ensemble(
        obs.transpose(LON, LEAD_TIME, LAT), fct.transpose(LAT, LON, MEMBER, LEAD_TIME), dim=[]
    )
    xr.testing.assert_allclose(base, t.transpose(*base.dims))
    # an extra dim of size 2 holding the same data twice gives the same scores
    obs2 = xr.concat([obs, obs], dim=INIT_TIME)
    fct2 = xr.concat([fct, fct], dim=INIT_TIME)
    pt2 = crps_ensemble(obs2, fct2, dim=[])
    np.testing.assert_allclose(pt2.isel({INIT_TIME: 1}).values, base.values, rtol=1e-12)
    np.testing.assert_allclose(
        crps_ensemble(obs2, fct2, dim=[INIT_TIME, LAT, LON]).values,
        crps_ensemble(obs, fct, dim=[LAT, LON]).values,
        rtol=1e-12,
    )


def test_non_contiguous_layout_without_copy_path():
    # member axis in the middle in memory: exercises the strided fallback of the kernel
    rng = np.random.default_rng(9)
    raw = rng.standard_normal((4, 13, 6))
    x = raw.transpose(0, 2, 1)[:, ::2]  # (4, 3, 13) view, member axis last with stride
    y = rng.standard_normal((4, 3))
    np.testing.assert_allclose(crps_ensemble_np(y, x), ps.crps_ensemble(y, np.array(x)), rtol=1e-9)


def test_dataset_and_dask_equal_in_memory():
    obs, fct = _pair((4, 6, 8), 10, seed=10, nan_frac=0.02)
    ds_o, ds_f = obs.to_dataset(), fct.to_dataset()
    eager = crps_ensemble(ds_o, ds_f, dim=[LAT, LON], skipna=True)
    lazy = crps_ensemble(
        ds_o.chunk({LAT: 2, LON: 3}),
        ds_f.chunk({LAT: 2, LON: 3, MEMBER: 5}),
        dim=[LAT, LON],
        skipna=True,
    )
    assert lazy["v"].chunks is not None  # still lazy
    xr.testing.assert_allclose(eager, lazy.compute())


def test_crps_gaussian_equals_properscoring():
    rng = np.random.default_rng(11)
    dims = (LEAD_TIME, LAT)
    o = xr.DataArray(rng.standard_normal((5, 6)), dims=dims)
    mu = xr.DataArray(rng.standard_normal((5, 6)), dims=dims)
    sig = xr.DataArray(rng.uniform(0.1, 2, (5, 6)), dims=dims)
    ours = crps_gaussian(o, mu, sig, dim=[])
    np.testing.assert_allclose(
        ours.values, ps.crps_gaussian(o.values, mu.values, sig.values), rtol=1e-9
    )
    np.testing.assert_allclose(crps_gaussian(o, mu, sig * 0, dim=[]).values, np.abs(o - mu).values)
    with pytest.raises(ForecastError, match="negative"):
        crps_gaussian(o, mu, -sig)


def test_crps_of_large_gaussian_ensemble_approaches_closed_form():
    from scipy.stats import norm

    m = 2000  # members at the normal quantiles (i - 1/2) / M: a deterministic ensemble
    q = norm.ppf((np.arange(m) + 0.5) / m)
    fc = xr.DataArray(np.repeat(q[:, None], 20, axis=1), dims=(MEMBER, LAT))
    ob = xr.DataArray(np.linspace(-2, 2, 20), dims=LAT)
    g = crps_gaussian(ob, ob * 0, ob * 0 + 1, dim=[])
    np.testing.assert_allclose(crps_ensemble(ob, fc, dim=[]).values, g.values, atol=2e-3)


def test_crpss():
    obs, fct = _pair((10, 6), 8, seed=13)
    _, ref = _pair((10, 6), 8, seed=14)
    s = crpss(obs, fct, ref, dim=[LAT])
    expect = 1 - crps_ensemble(obs, fct, dim=[LAT]) / crps_ensemble(obs, ref, dim=[LAT])
    xr.testing.assert_allclose(s, expect)
    np.testing.assert_allclose(crpss(obs, fct, fct).values, 0.0, atol=1e-12)


# ---------------------------------------------------------------- bad input


def _one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    return msg


def test_missing_member_dim():
    obs, fct = _pair((3, 4), 5)
    with pytest.raises(ForecastError, match="no 'member' dimension") as err:
        crps_ensemble(obs, fct.rename({MEMBER: "ens"}))
    _one_line(err)
    crps_ensemble(obs, fct.rename({MEMBER: "ens"}), member_dim="ens")  # works when named


def test_misaligned_coordinates_never_broadcast():
    obs, fct = _pair((3, 4), 5)
    with pytest.raises(ForecastError, match="coordinate 'lat' does not align") as err:
        crps_ensemble(obs.assign_coords({LAT: obs[LAT] + 0.5}), fct)
    assert "index 0" in _one_line(err)
    with pytest.raises(ForecastError, match="'lat' does not align: obs has 3 values"):
        crps_ensemble(obs.isel({LAT: slice(0, 3)}), fct)
    with pytest.raises(ForecastError, match="lacks forecast dimension"):
        crps_ensemble(obs.isel({LEAD_TIME: 0}, drop=True), fct)
    with pytest.raises(ForecastError, match="that the forecast lacks"):
        crps_ensemble(obs.expand_dims(extra=2), fct)


def test_units_differ():
    obs, fct = _pair((3, 4), 5)
    with pytest.raises(ForecastError, match="units of 'v' differ: obs in 'K', forecast in 'degC'"):
        crps_ensemble(obs.assign_attrs(units="K"), fct.assign_attrs(units="degC"))


def test_fair_with_one_member():
    obs, fct = _pair((3, 4), 1)
    with pytest.raises(ForecastError, match="at least 2 members"):
        crps_fair(obs, fct)


def test_weights_wrong_shape():
    obs, fct = _pair((3, 4, 5), 5)
    with pytest.raises(ForecastError, match="weights have wrong shape: 'lat' has 3"):
        crps_ensemble(obs, fct, weights=xr.DataArray(np.ones(3), dims=LAT))
    with pytest.raises(ForecastError, match="not reduced"):
        crps_ensemble(obs, fct, dim=LAT, weights=xr.DataArray(np.ones(5), dims=LON))
    with pytest.raises(ForecastError, match="finite"):
        crps_ensemble(obs, fct, weights=xr.DataArray(np.full(4, -1.0), dims=LAT))


def test_empty_selection_after_skipping_nans():
    obs, fct = _pair((3, 4), 5)
    obs[1] = np.nan
    with pytest.raises(ForecastError, match=r"empty selection of 'v' at lead_time=1\.0") as err:
        crps_ensemble(obs, fct, dim=LAT, skipna=True)
    _one_line(err)
    assert np.isnan(crps_ensemble(obs, fct, dim=LAT).values[1])  # no skip: NaN, no error


def test_scoring_never_imports_torch():
    code = "import sys, forecast.scoring, forecast.commands.evaluate; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
