"""benchmarks/bench_spatial_structure.py: its area mean is the scorecard's unless asked for the
plain grid mean."""

from __future__ import annotations

import numpy as np
import pytest
from test_scoring_align import make_case

from forecast.dims import INIT_TIME
from forecast.scoring import crps_ensemble, obs_for, scorecard, spread_skill_ratio

LEADS = 4


@pytest.fixture(scope="module")
def case():
    truth, fc = make_case(m=10, n_init=6, n_lead=LEADS, nlat=11, nlon=5, spread=0.8)
    # a field that is warmer to the south, so that the weights move the area mean
    truth["t2m"] = truth["t2m"] - 0.5 * (truth.lat - 55.0)
    fc["t2m"] = fc["t2m"] - 0.5 * (fc.lat - 55.0)
    return truth, fc


def test_the_area_mean_is_the_scorecards(case, load_script):
    truth, fc = case
    bench = load_script("benchmarks/bench_spatial_structure.py")
    obs = obs_for(fc, truth)
    rows = bench.structure_rows(fc["t2m"], obs["t2m"], ["lat", "lon"])
    card = scorecard({"m": fc}, obs, metrics=("area_crps", "area_spread_skill"), progress=False)[
        "t2m"
    ].sel(model="m")
    np.testing.assert_allclose(rows["crps_area"], card.sel(metric="area_crps"), rtol=1e-6)
    np.testing.assert_allclose(rows["ssr_area"], card.sel(metric="area_spread_skill"), rtol=1e-6)

    plain = bench.structure_rows(fc["t2m"], obs["t2m"], ["lat", "lon"], weighted=False)
    area_obs, area_ens = obs["t2m"].mean(["lat", "lon"]), fc["t2m"].mean(["lat", "lon"])
    expected = crps_ensemble(area_obs, area_ens, dim=[INIT_TIME])
    np.testing.assert_allclose(plain["crps_area"], expected, rtol=1e-6)
    ratio = spread_skill_ratio(area_obs, area_ens, dim=[INIT_TIME])
    np.testing.assert_allclose(plain["ssr_area"], ratio, rtol=1e-6)
    assert not np.allclose(plain["crps_area"], rows["crps_area"], rtol=1e-3)
    # the rest does not depend on the area mean
    for key in ("ssr_gradient", "corr_members", "corr_truth"):
        assert plain[key] == rows[key]


@pytest.mark.parametrize("option", [[], ["--area-mean", "plain"]])
def test_the_printed_area_mean(case, load_script, monkeypatch, capsys, option):
    import forecast.data
    import forecast.export

    truth, fc = case
    bench = load_script("benchmarks/bench_spatial_structure.py")
    monkeypatch.setattr(forecast.data, "open_dataset", lambda name: truth)
    monkeypatch.setattr(forecast.export, "open_ensemble", lambda path: fc)
    argv = ["bench", "--truth", "t", "--forecast", "a=x.nc", "--leads", "1", "4", *option]
    monkeypatch.setattr("sys.argv", argv)
    bench.main()
    text = capsys.readouterr().out
    obs = obs_for(fc, truth)
    rows = bench.structure_rows(fc["t2m"], obs["t2m"], ["lat", "lon"], weighted=not option)
    assert f"area mean ({'plain' if option else 'weighted'})" in text
    line = next(line for line in text.splitlines() if line.startswith("a: "))
    assert f"lead 4: {rows['ssr_gradient'][3]:.2f}" in line
    assert f"{rows['ssr_area'][3]:.2f}, {rows['crps_area'][3]:.3f}" in line
    assert f"area mean {np.mean(rows['ssr_area']):.2f}, {np.mean(rows['crps_area']):.3f}" in line
