"""Plotly figure builders of the dashboard: traces and values on small inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
import xarray as xr

from forecast.dashboard import figures as f
from forecast.dashboard import queries as q
from forecast.dims import (
    INIT_TIME,
    LAT,
    LEAD_TIME,
    LON,
    MEMBER,
    MODEL,
    NODE,
    PATH,
    TIME,
    VALID_TIME,
)
from forecast.errors import ForecastError

INIT = pd.Timestamp("2020-01-02 06:00")


def ensemble(members: int = 4, leads: int = 3) -> xr.Dataset:
    rng = np.random.default_rng(0)
    lead = pd.to_timedelta(np.arange(1, leads + 1), unit="h").values
    return xr.Dataset(
        {
            "t2m": (
                (MEMBER, LEAD_TIME, LAT, LON),
                280 + rng.normal(size=(members, leads, 2, 3)),
                {"units": "K"},
            )
        },
        coords={
            MEMBER: np.arange(members),
            LEAD_TIME: lead,
            LAT: [50.0, 51.0],
            LON: [0.0, 1.0, 2.0],
            INIT_TIME: INIT.to_datetime64(),
            VALID_TIME: (LEAD_TIME, INIT.to_datetime64() + lead),
        },
    )


def test_map_single_and_animated():
    ens = ensemble()
    field = q.ensemble_statistic(ens, "t2m", "mean", lead=0)
    fig = f.map_figure(field, title="mean")
    assert len(fig.data) == 1 and isinstance(fig.data[0], go.Heatmap)
    np.testing.assert_allclose(np.asarray(fig.data[0].z), field.values)
    np.testing.assert_allclose(fig.data[0].x, [0, 1, 2])
    np.testing.assert_allclose(fig.data[0].y, [50, 51])
    allleads = q.ensemble_statistic(ens, "t2m", "spread")
    anim = f.map_figure(allleads, statistic="spread", zrange=(0.0, 3.0))
    assert [fr.name for fr in anim.frames] == ["+1 h", "+2 h", "+3 h"]
    for k, fr in enumerate(anim.frames):
        np.testing.assert_allclose(np.asarray(fr.data[0].z), allleads.isel({LEAD_TIME: k}).values)
        assert fr.data[0].zmin == 0.0 and fr.data[0].zmax == 3.0
    assert [s["label"] for s in anim.layout.sliders[0].steps] == ["+1 h", "+2 h", "+3 h"]
    assert anim.layout.updatemenus[0].buttons[0].label == "Play"
    with pytest.raises(ForecastError, match="2-D grid"):
        f.map_figure(field.isel({LAT: 0}))


def test_stamps():
    ens = ensemble(members=5)
    stamps = q.postage_stamps(ens, "t2m", 1, n=3)
    fig = f.stamps_figure(stamps, cols=2)
    assert len(fig.data) == 3
    assert [a.text for a in fig.layout.annotations] == ["member 0", "member 1", "member 2"]
    np.testing.assert_allclose(np.asarray(fig.data[2].z), ens["t2m"].values[2, 1])
    lo, hi = float(stamps.min()), float(stamps.max())
    assert all(t.zmin == lo and t.zmax == hi for t in fig.data)


def test_network_figure():
    vals = xr.DataArray(
        [1.0, 2.0, 3.0], dims=NODE, coords={NODE: ["a", "b", "c"]}, attrs={"units": "mph"}
    )
    fig = f.network_figure(
        vals, np.array([0.0, 1.0, 2.0]), np.array([0.0, 1.0, 0.0]), [(0, 1), (1, 2)]
    )
    edges, nodes = fig.data
    assert list(edges.x) == [0.0, 1.0, None, 1.0, 2.0, None]
    np.testing.assert_allclose(nodes.marker.color, [1, 2, 3])
    assert list(nodes.text) == ["a", "b", "c"]
    over_leads = xr.concat([vals, vals * 2], dim=LEAD_TIME).assign_coords(
        {LEAD_TIME: pd.to_timedelta([5, 10], unit="min").values}
    )
    anim = f.network_figure(over_leads, np.zeros(3), np.arange(3.0), [(0, 2)], start=1)
    assert [fr.name for fr in anim.frames] == ["+5 min", "+10 min"]
    np.testing.assert_allclose(anim.data[1].marker.color, [2, 4, 6])  # frame 1 shown first
    np.testing.assert_allclose(anim.frames[0].data[1].marker.color, [1, 2, 3])
    assert anim.layout.sliders[0].active == 1
    with pytest.raises(ForecastError, match="over \\(node,\\)"):
        f.network_figure(vals.expand_dims(x=1), np.zeros(3), np.zeros(3))


def _history():
    times = pd.date_range(INIT - pd.Timedelta("2h"), INIT, freq="1h")
    return xr.DataArray([1.0, 2.0, 3.0], dims=TIME, coords={TIME: times})


def test_plume_and_fan():
    ens = ensemble(members=4)
    s = q.point_series(ens, "t2m", {LAT: 50, LON: 0})
    truth = xr.DataArray([0.0, 0.0, 0.0], dims=TIME, coords={TIME: ens[VALID_TIME].values})
    plume = f.plume_figure(s, history=_history(), truth=truth)
    names = [t.name for t in plume.data]
    assert names == [
        "member 0",
        "member 1",
        "member 2",
        "member 3",
        "ensemble mean",
        "observed (context)",
        "truth",
    ]
    np.testing.assert_allclose(plume.data[2].y, s.values[2])
    np.testing.assert_allclose(plume.data[4].y, s.values.mean(0), rtol=1e-6)
    assert pd.Timestamp(plume.data[0].x[0]) == INIT + pd.Timedelta("1h")
    single_colour = {t.line.color for t in plume.data[:4]}
    assert len(single_colour) == 1  # one model: one colour, one legend entry
    assert [t.showlegend for t in plume.data[:4]] == [True, False, False, False]
    # a pool's members: coloured and listed by the model that drew them
    pooled = s.assign_coords(source_model=(MEMBER, ["vae", "diffusion", "vae", "diffusion"]))
    plume = f.plume_figure(pooled)
    assert [t.name for t in plume.data[:4]] == ["vae", "diffusion", "vae", "diffusion"]
    assert [t.showlegend for t in plume.data[:4]] == [True, True, False, False]
    colours = [t.line.color for t in plume.data[:4]]
    assert colours[0] == colours[2] != colours[1] == colours[3]
    assert f._rgba(f.MEAN_COLOR, 0.45) not in colours and plume.data[4].line.color == f.MEAN_COLOR
    fan = f.fan_figure(q.fan_quantiles(s), history=_history())
    names = [t.name for t in fan.data]
    assert names == [
        "5-95 % low",
        "5-95 %",
        "25-75 % low",
        "25-75 %",
        "median",
        "observed (context)",
    ]
    np.testing.assert_allclose(fan.data[1].y, np.quantile(s.values, 0.95, axis=0))
    np.testing.assert_allclose(fan.data[4].y, np.median(s.values, axis=0))
    assert fan.data[1].fill == "tonexty" and fan.data[3].fill == "tonexty"
    with pytest.raises(ForecastError, match="fan chart needs quantiles"):
        f.fan_figure(q.fan_quantiles(s, (0.1, 0.5, 0.9)))


def test_epsgram():
    s = q.point_series(ensemble(members=5), "t2m", {LAT: 51, LON: 2})
    fig = f.epsgram_figure(s)
    box = fig.data[0]
    assert list(box.x) == ["+1 h", "+2 h", "+3 h"]
    np.testing.assert_allclose(box.median, np.median(s.values, 0))
    np.testing.assert_allclose(box.lowerfence, s.values.min(0))
    np.testing.assert_allclose(box.upperfence, s.values.max(0))
    np.testing.assert_allclose(box.q1, np.quantile(s.values, 0.25, axis=0))


def _by_model():
    lead = pd.to_timedelta([1, 2, 3], unit="h").values
    return xr.DataArray(
        [[1.0, 2.0, 3.0], [0.5, 1.0, 1.5]],
        dims=(MODEL, LEAD_TIME),
        coords={MODEL: ["climatology", "diffusion"], LEAD_TIME: lead},
    )


def test_score_figures():
    arr = _by_model()
    fig = f.by_lead_figure(arr, ytitle="CRPS")
    assert [t.name for t in fig.data] == ["climatology", "diffusion"]
    np.testing.assert_allclose(fig.data[0].x, [1, 2, 3])
    np.testing.assert_allclose(fig.data[1].y, [0.5, 1.0, 1.5])
    ss = f.spread_skill_figure(arr * 0.9, arr)
    assert [t.name for t in ss.data] == [
        "climatology RMSE",
        "climatology spread",
        "diffusion RMSE",
        "diffusion spread",
    ]
    np.testing.assert_allclose(ss.data[1].y, [0.9, 1.8, 2.7])
    rh = f.rank_histogram_figure([2, 2, 4])
    np.testing.assert_allclose(rh.data[0].y, [0.25, 0.25, 0.5])
    np.testing.assert_allclose(rh.data[0].x, [1, 2, 3])
    assert rh.layout.shapes[0].y0 == pytest.approx(1 / 3)
    rel = f.reliability_figure([0.1, 0.5, 0.9], [0.2, 0.5, 0.8], [10, 5, 10])
    assert [t.name for t in rel.data] == ["perfect", "forecast", "count"]
    np.testing.assert_allclose(rel.data[1].y, [0.2, 0.5, 0.8])
    np.testing.assert_allclose(rel.data[2].y, [10, 5, 10])


def test_latent_path_panels():
    t = np.linspace(0, 1, 3)
    a = np.zeros((2, 3))
    b = np.ones((2, 3)) * 2
    path = xr.DataArray(
        np.stack([a, b * 0.3, b]),
        dims=(PATH, LAT, LON),
        coords={PATH: t, LAT: [50.0, 51.0], LON: [0.0, 1.0, 2.0]},
        attrs={"units": "K"},
    )
    blend = path.copy(data=np.stack([a, b * 0.5, b]))
    fig = f.latent_path_figure(path, blend, 1)
    assert len(fig.data) == 2
    np.testing.assert_allclose(np.asarray(fig.data[0].z), 0.6)
    np.testing.assert_allclose(np.asarray(fig.data[1].z), 1.0)
    assert fig.layout.annotations[0].text == "latent path (slerp), t = 0.50"
    with pytest.raises(ForecastError, match="outside"):
        f.latent_path_figure(path, blend, 3)
    vr = f.variance_ratio_figure([1, 1.1, 1], [1, 0.5, 1], t, current=0.5)
    np.testing.assert_allclose(vr.data[1].y, [1, 0.5, 1])
    series = xr.DataArray(
        np.arange(6.0).reshape(3, 2),
        dims=(PATH, LEAD_TIME),
        coords={PATH: t, LEAD_TIME: pd.to_timedelta([1, 2], unit="h").values},
    )
    pp = f.path_plume_figure(series, 2)
    assert len(pp.data) == 3 and pp.data[2].line.width == 3 and pp.data[0].line.width == 1
    np.testing.assert_allclose(pp.data[1].y, [2, 3])
