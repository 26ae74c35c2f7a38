"""Dashboard data queries on small hand-built ensembles (forecast.dashboard.queries)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from forecast.checkpoint import save_checkpoint
from forecast.dashboard import queries as q
from forecast.dims import (
    ADJACENCY,
    INIT_TIME,
    LAT,
    LEAD_TIME,
    LON,
    MEMBER,
    METRIC,
    MODEL,
    NODE,
    NODE_J,
    PATH,
    QUANTILE,
    TIME,
    VALID_TIME,
)
from forecast.errors import ForecastError

INIT = pd.Timestamp("2020-01-02 06:00")
STEP = pd.Timedelta("1h")


def grid_ensemble(members: int = 5, leads: int = 3) -> xr.Dataset:
    """values[m, k, i, j] = 100 m + 10 k + i + 0.1 j: every statistic has a closed form."""
    m, k, i, j = np.meshgrid(
        np.arange(members), np.arange(leads), np.arange(2), np.arange(3), indexing="ij"
    )
    values = 100.0 * m + 10.0 * k + i + 0.1 * j
    lead = pd.to_timedelta(np.arange(1, leads + 1) * STEP).values
    return xr.Dataset(
        {"t2m": ((MEMBER, LEAD_TIME, LAT, LON), values, {"units": "K"})},
        coords={
            MEMBER: np.arange(members),
            LEAD_TIME: lead,
            LAT: [50.0, 51.0],
            LON: [0.0, 1.0, 2.0],
            INIT_TIME: INIT.to_datetime64(),
            VALID_TIME: (LEAD_TIME, INIT.to_datetime64() + lead),
        },
    )


def truth_dataset() -> xr.Dataset:
    times = pd.date_range(INIT - 5 * STEP, INIT + 5 * STEP, freq=STEP)
    vals = np.arange(len(times))[:, None, None] + np.zeros((1, 2, 3))
    return xr.Dataset(
        {"t2m": ((TIME, LAT, LON), vals, {"units": "K"})},
        coords={TIME: times, LAT: [50.0, 51.0], LON: [0.0, 1.0, 2.0]},
    )


def test_mean_spread_quantile_member_exceedance_closed_forms():
    ens = grid_ensemble()
    mean = q.ensemble_statistic(ens, "t2m", "mean", lead=1)
    # mean over m of 100 m = 200; lead 1 -> +10
    np.testing.assert_allclose(mean.values, 210.0 + np.add.outer([0, 1], [0, 0.1, 0.2]))
    assert mean.dims == (LAT, LON) and mean.attrs["units"] == "K"
    spread = q.ensemble_statistic(ens, "t2m", "spread", lead=0)
    np.testing.assert_allclose(spread.values, np.std(100.0 * np.arange(5), ddof=1))
    med = q.ensemble_statistic(ens, "t2m", "quantile", lead=pd.Timedelta("3h"), quantile=0.5)
    np.testing.assert_allclose(med.values, 220.0 + np.add.outer([0, 1], [0, 0.1, 0.2]))
    assert QUANTILE not in med.coords
    mem = q.ensemble_statistic(ens, "t2m", "member", lead=0, member=3)
    np.testing.assert_allclose(mem.values, 300.0 + np.add.outer([0, 1], [0, 0.1, 0.2]))
    # threshold 250 at lead 0: members 3, 4 exceed everywhere -> 2/5
    exc = q.ensemble_statistic(ens, "t2m", "exceedance", lead=0, threshold=250.0)
    np.testing.assert_allclose(exc.values, 0.4)
    assert exc.attrs["units"] == "1"
    # all leads kept when lead is None
    assert q.ensemble_statistic(ens, "t2m", "mean").dims == (LEAD_TIME, LAT, LON)


def test_exceedance_ignores_missing_members():
    ens = grid_ensemble()
    ens["t2m"][0, 0, 0, 0] = np.nan
    exc = q.ensemble_statistic(ens, "t2m", "exceedance", lead=0, threshold=250.0)
    assert exc.values[0, 0] == pytest.approx(2 / 4)


def test_truth_at_valid_times():
    ens = grid_ensemble()
    truth = truth_dataset()
    obs = q.ensemble_statistic(ens, "t2m", "truth", truth=truth)
    # truth value = index in time; INIT is index 5, leads 1..3 -> 6, 7, 8
    np.testing.assert_allclose(obs.values[:, 0, 0], [6, 7, 8])
    assert obs.dims == (LEAD_TIME, LAT, LON)
    short = truth.isel({TIME: slice(0, 7)})
    with pytest.raises(ForecastError, match="no observation at"):
        q.truth_at(ens, short, "t2m")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"statistic": "nope"}, "unknown statistic"),
        ({"statistic": "quantile", "quantile": 1.5}, "outside"),
        ({"statistic": "exceedance"}, "threshold"),
        ({"statistic": "member", "member": 9}, "member 9 outside"),
        ({"statistic": "truth"}, "no truth"),
        ({"statistic": "mean", "variable": "u10"}, "not in the ensemble"),
    ],
)
def test_statistic_errors(kwargs, match):
    kwargs = {"variable": "t2m", **kwargs}
    with pytest.raises(ForecastError, match=match):
        q.ensemble_statistic(grid_ensemble(), kwargs.pop("variable"), **kwargs, lead=0)


def test_check_ensemble_rejects_wrong_dims():
    ens = grid_ensemble()
    with pytest.raises(ForecastError, match="lacks dimension"):
        q.check_ensemble(ens.isel({MEMBER: 0}, drop=True))
    flat = ens.isel({LAT: 0, LON: 0}, drop=True)
    with pytest.raises(ForecastError, match="no grid"):
        q.check_ensemble(flat)
    with pytest.raises(ForecastError, match="spread needs at least 2"):
        q.ensemble_statistic(ens.isel({MEMBER: [0]}), "t2m", "spread", lead=0)


def test_point_series_history_fan_and_boxes():
    ens = grid_ensemble()
    pt = q.point_index(ens, {LAT: 50.9, LON: 1.2})
    assert pt == {LAT: 51.0, LON: 1.0}
    s = q.point_series(ens, "t2m", {LAT: 50.9, LON: 1.2})
    assert s.dims == (MEMBER, LEAD_TIME)
    np.testing.assert_allclose(s.values[:, 0], 100.0 * np.arange(5) + 1.1)
    fan = q.fan_quantiles(s)
    assert fan.dims == (QUANTILE, LEAD_TIME)
    np.testing.assert_allclose(
        fan.sel({QUANTILE: 0.25}).values, 100.0 + 1.1 + np.array([0, 10, 20])
    )
    boxes = q.box_stats(s)
    np.testing.assert_allclose(boxes["min"], 1.1 + np.array([0, 10, 20]))
    np.testing.assert_allclose(boxes["max"], 401.1 + np.array([0, 10, 20]))
    np.testing.assert_allclose(boxes["mean"], 201.1 + np.array([0, 10, 20]))
    hist = q.history_series(truth_dataset(), "t2m", pt, INIT - 2 * STEP, INIT)
    np.testing.assert_allclose(hist.values, [3, 4, 5])
    with pytest.raises(ForecastError, match="pick a point"):
        q.point_index(ens, {LAT: 50.0})


def test_area_mean_weights_each_latitude_by_the_area_it_covers():
    ens = grid_ensemble()
    area = q.place_series(ens, "t2m", None)
    assert area.dims == (MEMBER, LEAD_TIME)
    # values 100 m + 10 k + i + 0.1 j: the mean over j adds 0.1, over i the weight of lat 51
    w = np.cos(np.deg2rad([50.0, 51.0]))
    expected = 100.0 * np.arange(5)[:, None] + 10.0 * np.arange(3) + 0.1 + w[1] / w.sum()
    np.testing.assert_allclose(area.values, expected)
    # a missing point is skipped, not propagated
    holed = ens.copy(deep=True)
    holed["t2m"][:, :, 1, 2] = np.nan
    cells = np.array([w[0]] * 3 + [w[1]] * 2)
    vals = np.array([0.0, 0.1, 0.2, 1.0, 1.1])
    np.testing.assert_allclose(
        q.place_series(holed, "t2m", None).values[0, 0], (cells * vals).sum() / cells.sum()
    )
    # the context and the truth: a data set's area mean over time, cut to [start, stop]
    truth = q.place_series(truth_dataset(), "t2m", None, INIT - 2 * STEP, INIT)
    assert truth.dims == (TIME,)
    np.testing.assert_allclose(truth.values, [3, 4, 5])
    assert q.area_text(ens) == "area mean of 2 x 3 grid points (cos-latitude weighted)"
    # one place: as point_series
    xr.testing.assert_equal(
        q.place_series(ens, "t2m", {LAT: 51, LON: 1}), q.point_series(ens, "t2m", {LAT: 51, LON: 1})
    )
    with pytest.raises(ForecastError, match="no grid or sensor dimension"):
        q.place_series(ens.isel({LAT: 0, LON: 0}), "t2m", None)


def test_network_mean_is_the_plain_mean_of_the_sensors():
    ds = network(True)  # lat/lon of the sensors are coordinates, not a grid: no weights
    ds["speed"][:, 0] = 7.0
    np.testing.assert_allclose(q.place_series(ds, "speed", None).values, (7.0 + 5) / 6)
    assert q.area_text(ds) == "mean of 6 sensors"


def network(with_latlon: bool) -> xr.Dataset:
    # a path graph 0-1-2-3-4-5
    n = 6
    adj = np.eye(n)
    for k in range(n - 1):
        adj[k, k + 1] = adj[k + 1, k] = 1.0
    ds = xr.Dataset(
        {
            "speed": ((TIME, NODE), np.ones((4, n)), {"units": "mph"}),
            ADJACENCY: ((NODE, NODE_J), adj),
        },
        coords={
            TIME: pd.date_range("2020", periods=4, freq="5min"),
            NODE: [f"s{k}" for k in range(n)],
            NODE_J: [f"s{k}" for k in range(n)],
        },
    )
    if with_latlon:
        ds = ds.assign_coords(
            {LAT: (NODE, np.linspace(34, 35, n)), LON: (NODE, np.linspace(-118, -117, n))}
        )
    return ds


def test_node_positions_latlon_and_spectral():
    x, y, how = q.node_positions(network(True))
    assert how == "lat/lon"
    np.testing.assert_allclose(x, np.linspace(-118, -117, 6))
    np.testing.assert_allclose(y, np.linspace(34, 35, 6))
    x, y, how = q.node_positions(network(False))
    assert how == "graph"
    # the Fiedler vector of a path graph is monotone along the path: ends at the extremes
    assert np.all(np.diff(x) > 0) or np.all(np.diff(x) < 0)
    assert max(abs(x)) == pytest.approx(1.0)
    # deterministic: same layout twice, and sign fixed (largest-magnitude entry positive)
    x2, y2, _ = q.node_positions(network(False))
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    assert x[np.abs(x).argmax()] > 0
    assert q.network_edges(network(False)) == [(k, k + 1) for k in range(5)]
    with pytest.raises(ForecastError, match="square"):
        q.spectral_layout(np.ones((2, 3)))


def test_node_point_series():
    ds = network(True)
    assert q.default_point(ds) == {NODE: "s0"}
    with pytest.raises(ForecastError, match="not in the network"):
        q.point_index(ds, {NODE: "zz"})


def scorecard() -> xr.Dataset:
    lead = pd.to_timedelta([1, 2], unit="h").values
    vals = np.array(
        [  # model x lead x metric (crps, rmse)
            [[1.0, 2.0], [2.0, 3.0]],
            [[0.5, 1.0], [1.5, 2.0]],
        ]
    )
    return xr.Dataset(
        {"t2m": ((MODEL, LEAD_TIME, METRIC), vals)},
        coords={MODEL: ["climatology", "diffusion"], LEAD_TIME: lead, METRIC: ["crps", "rmse"]},
    )


def test_scorecard_queries(tmp_path):
    sc = scorecard()
    path = tmp_path / "scorecard.nc"
    sc.to_netcdf(path)
    back = q.open_scorecard(path)
    crps = q.metric_by_lead(back, "crps")
    assert crps.dims == (MODEL, LEAD_TIME)
    np.testing.assert_allclose(crps.values, [[1.0, 2.0], [0.5, 1.5]])
    crpss = q.skill_score(back, "crps", "climatology")
    assert list(crpss[MODEL].values) == ["diffusion"]
    np.testing.assert_allclose(crpss.values, [[0.5, 0.25]])
    assert q.list_scorecards([tmp_path, tmp_path / "nope"]) == [path.resolve()]
    with pytest.raises(ForecastError, match="metric 'brier' not in"):
        q.metric_by_lead(back, "brier")
    with pytest.raises(ForecastError, match="reference model 'gp'"):
        q.skill_score(back, "crps", "gp")
    bad = tmp_path / "bad.nc"
    xr.Dataset({"a": ("x", [1.0])}).to_netcdf(bad)
    with pytest.raises(ForecastError, match="lacks dims"):
        q.open_scorecard(bad)
    junk = tmp_path / "junk.nc"
    junk.write_text("not netcdf")
    with pytest.raises(ForecastError, match="not a readable scorecard"):
        q.open_scorecard(junk)


def test_significance_beside_a_scorecard(tmp_path):
    from forecast.scoring.significance import COLUMNS, write_significance

    path = tmp_path / "scorecard.nc"
    scorecard().to_netcdf(path)
    assert q.open_significance(path) is None
    lead = [pd.Timedelta("1h"), pd.Timedelta("2h")]
    ssr = [1.0, 0.8, 1.2, "consistent"]
    rows = [
        ["diffusion", "t2m", lead[0], 0.5, "gp", 0.6, -1 / 6, -0.3, -0.05, 0.01, "better", *ssr],
        ["diffusion", "t2m", lead[1], 1.5, "gp", 1.4, 1 / 14, -0.1, 0.2, 0.4, "not significant",
         *ssr],
        ["diffusion", "u10", lead[0], 0.5, "gp", 0.5, np.nan, np.nan, np.nan, np.nan,
         "undetermined", *ssr],
    ]  # fmt: skip
    write_significance(pd.DataFrame(rows, columns=COLUMNS), tmp_path)
    table = q.open_significance(path)
    pivot = q.significance_pivot(table, "t2m")
    assert list(pivot.index) == ["diffusion"] and list(pivot.columns) == ["1h", "2h"]
    assert pivot.values.tolist() == [["-16.7% better", "+7.1% n.s."]]
    assert q.significance_pivot(table, "u10").values.tolist() == [["undetermined"]]
    assert q.significance_pivot(table).equals(pivot)  # first variable by default
    (tmp_path / "significance.csv").write_text("model,lead_time\ndiffusion,1h\n")
    with pytest.raises(ForecastError, match="lacks the column"):
        q.open_significance(path)
    (tmp_path / "significance.csv").write_text(",".join(COLUMNS) + "\n")
    with pytest.raises(ForecastError, match="has no rows"):
        q.open_significance(path)


def test_listing_checkpoints(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "m.safetensors").write_bytes(b"")
    (tmp_path / "b.safetensors").write_bytes(b"")
    (tmp_path / "c.txt").write_bytes(b"")
    found = q.list_checkpoints([tmp_path, tmp_path, tmp_path / "missing"])
    assert sorted(p.name for p in found) == ["b.safetensors", "m.safetensors"]
    assert len(found) == 2


def test_labels_and_issue_times():
    assert q.lead_labels(pd.to_timedelta(["5min", "1h", "90min", "48h"]).values) == [
        "+5 min",
        "+1 h",
        "+90 min",
        "+2 d",
    ]
    ds = truth_dataset()
    times = q.issue_times(ds, context=3, horizon=2)
    assert times[0] == ds[TIME].values[2] and times[-1] == ds[TIME].values[-3]
    with pytest.raises(ForecastError, match="fewer than context"):
        q.issue_times(ds, 10, 5)


def test_summary_and_color_range():
    ens = grid_ensemble()
    s = q.summary(ens)
    assert s["members"] == 5 and s["leads"] == 3 and s["space"] == "2 x 3 grid"
    assert s["init_time"] == INIT
    assert q.color_range(ens["t2m"], "exceedance") == (0.0, 1.0)
    assert q.color_range(ens["t2m"], "mean") == (0.0, 400.0 + 20 + 1.2)


# --------------------------------------------------------------------------------------------
# queries over the real data layer, models and export
# --------------------------------------------------------------------------------------------
def hourly_grid(n: int = 200) -> xr.Dataset:
    times = pd.date_range("2020-01-01", periods=n, freq="1h")
    vals = 280 + np.random.default_rng(1).normal(size=(n, 2, 3))
    return xr.Dataset(
        {"t2m": ((TIME, LAT, LON), vals, {"units": "K"})},
        coords={TIME: times, LAT: [50.0, 51.0], LON: [0.0, 1.0, 2.0]},
    )


def test_dataset_choices_and_protocols():
    names = q.dataset_choices()
    assert names[:2] == ["synthetic-weather", "synthetic-traffic"]
    ds = hourly_grid()
    p = q.protocol_for(None, ds)
    assert (p.context, p.horizon, p.train, p.test) == (6, 24, (0, 140), (160, 200))
    p = q.protocol_for(None, ds, 3, 4)
    assert (p.context, p.horizon) == (3, 4)
    times = q.test_issue_times(ds, p)
    assert times[0] == ds[TIME].values[159] and times[-1] == ds[TIME].values[195]
    with pytest.raises(ForecastError, match="no time dimension"):
        q.check_dataset(ds.isel({TIME: 0}, drop=True))
    with pytest.raises(ForecastError, match="no grid"):
        q.check_dataset(ds.isel({LAT: 0, LON: 0}, drop=True))


def test_baseline_sampling_and_export_round_trip(tmp_path):
    from forecast.export import open_ensemble

    ds = hourly_grid()
    p = q.protocol_for(None, ds, 3, 4)
    model = q.fit_on_the_fly("persistence", ds, p)
    assert q.sampler_settings(model) is None
    assert q.with_sampler(model, None, None) is model
    with pytest.raises(ForecastError, match="no sampler"):
        q.with_sampler(model, "ddim", 5)
    issue = q.test_issue_times(ds, p)[0]
    ens = q.sample_at(model, ds, issue, 5, 3)
    assert dict(ens.sizes) == {MEMBER: 5, LEAD_TIME: 4, LAT: 2, LON: 3}
    xr.testing.assert_identical(ens, q.sample_at(model, ds, issue, 5, 3))
    # the members forecast predict (forecast_many) writes for this issue time and seed
    from forecast.models import forecast_many

    np.testing.assert_array_equal(
        ens["t2m"].values, forecast_many(model, ds, [issue], 5, 3)["t2m"].values[0]
    )
    target = q.target_window(ds, issue, 4)
    assert target.sizes[TIME] == 4
    assert q.target_window(ds, ds[TIME].values[-2], 4) is None
    raw = q.ensemble_netcdf_bytes(ens, model="persistence", seed=3)
    assert raw[:4] == b"\x89HDF"
    (tmp_path / "e.nc").write_bytes(raw)
    back = open_ensemble(tmp_path / "e.nc")
    np.testing.assert_allclose(back["t2m"].values, ens["t2m"].values)
    many = q.forecasts_for({"persistence": model}, ds, q.test_issue_times(ds, p)[:3], 4, 0)
    assert dict(many["persistence"].sizes) == {
        INIT_TIME: 3,
        MEMBER: 4,
        LEAD_TIME: 4,
        LAT: 2,
        LON: 3,
    }
    card, diag = q.live_scores(many, ds, 280.0)
    crps = q.metric_by_lead(card, "crps", "t2m")
    assert crps.dims == (MODEL, LEAD_TIME) and bool((crps > 0).all())
    assert diag["t2m"].attrs["threshold"] == 280.0


def test_checkpoint_must_fit_the_data(tmp_path):
    ds = hourly_grid()
    p = q.protocol_for(None, ds, 3, 4)
    q.fit_on_the_fly("climatology", ds, p).save(tmp_path / "c.safetensors")
    assert q.checkpoint_summary(tmp_path / "c.safetensors")["kind"] == "climatology"
    model = q.load_for_data(tmp_path / "c.safetensors", ds)
    assert model.context == 3
    other = ds.assign_coords({LON: [5.0, 6.0, 7.0]})
    with pytest.raises(ForecastError, match="does not fit this data set"):
        q.load_for_data(tmp_path / "c.safetensors", other)
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    with pytest.raises(ForecastError, match="not a forecast checkpoint"):
        q.load_for_data(tmp_path / "junk.safetensors", ds)


def test_scan_checkpoints_reports_unreadable_files_and_picks_the_quickest_fitting(tmp_path):
    ds = hourly_grid()
    p = q.protocol_for(None, ds, 3, 4)
    q.fit_on_the_fly("climatology", ds, p).save(tmp_path / "a-clim.safetensors")
    q.fit_on_the_fly("persistence", ds, p).save(tmp_path / "b-pers.safetensors")
    other = ds.assign_coords({LON: [5.0, 6.0, 7.0]})
    q.fit_on_the_fly("persistence", other, p).save(tmp_path / "c-other.safetensors")
    (tmp_path / "d-junk.safetensors").write_bytes(b"junk")
    # a safetensors file that is no model: a reference file of an online model's disk cache
    save_checkpoint(
        tmp_path / "e-reference.safetensors",
        {"mean": np.zeros((1, 4)), "variance": np.zeros((1, 4))},
        {"kind": "online-reference", "key": [0, "abc"]},
    )
    readable, unreadable, default = q.scan_checkpoints(sorted(tmp_path.iterdir()), ds)
    assert [(path.name, info["kind"], fits) for path, info, fits in readable] == [
        ("a-clim.safetensors", "climatology", True),
        ("b-pers.safetensors", "persistence", True),
        ("c-other.safetensors", "persistence", False),
    ]
    assert [path.name for path, _ in unreadable] == [
        "d-junk.safetensors",
        "e-reference.safetensors",
    ]
    assert "not a forecast checkpoint" in unreadable[0][1]
    assert (
        "not a model checkpoint (kind 'online-reference', no data description)"
        in (unreadable[1][1])
    )
    kinds = [info["kind"] for _, info, fits in readable if fits]
    assert default == tmp_path / ["a-clim.safetensors", "b-pers.safetensors"][q.quickest(kinds)]
    assert q.scan_checkpoints([tmp_path / "c-other.safetensors"], ds)[2] is None


class _LinearLatent:
    """A tiny LatentForecaster: member = last context value + latent (exactly invertible)."""

    context, horizon = 2, 3

    def fit(self, train, valid=None):
        return self

    def save(self, path):
        raise NotImplementedError

    @classmethod
    def load(cls, path):
        raise NotImplementedError

    def prior(self, context, n_members, *, seed=None):
        return np.random.default_rng(seed).normal(size=(n_members, self.horizon, 2, 3))

    def decode(self, context, latents):
        last = context["t2m"].isel({TIME: -1}).values
        z = np.asarray(latents)
        lead = pd.to_timedelta(np.arange(1, self.horizon + 1), unit="h").values
        init = context[TIME].values[-1]
        return xr.Dataset(
            {"t2m": ((MEMBER, LEAD_TIME, LAT, LON), last + z, {"units": "K"})},
            coords={
                MEMBER: np.arange(len(z)),
                LEAD_TIME: lead,
                LAT: context[LAT].values,
                LON: context[LON].values,
                INIT_TIME: init,
                VALID_TIME: (LEAD_TIME, init + lead),
            },
        )

    def encode(self, context, target):
        last = context["t2m"].isel({TIME: -1}).values
        return (target["t2m"].values - last)[None]

    def sample(self, context, n_members, *, seed=None):
        return self.decode(context, self.prior(context, n_members, seed=seed))


def test_latent_scenarios_and_paths(tmp_path):
    ds = hourly_grid()
    model = _LinearLatent()
    assert q.is_latent(model) and not q.is_latent(object())
    issue = ds[TIME].values[10]
    ctx = q.context_window(ds, issue, 2)
    tgt = q.target_window(ds, issue, 3)
    z_a, z_b = q.scenario_latents(model, ctx, "observed", 2, n_members=4, seed=0, target=tgt)
    np.testing.assert_allclose(z_b, model.prior(ctx, 4, seed=0)[2])
    path, blend, pr, br = q.latent_explorer(model, ctx, z_a, z_b, 5)
    assert dict(path.sizes) == {PATH: 5, LEAD_TIME: 3, LAT: 2, LON: 3}
    # the first point decodes the observed scenario exactly (inversion), the last member 2
    np.testing.assert_allclose(path["t2m"].isel({PATH: 0}).values, tgt["t2m"].values)
    np.testing.assert_allclose(
        path["t2m"].isel({PATH: -1}).values, model.sample(ctx, 4, seed=0)["t2m"].values[2]
    )
    np.testing.assert_allclose(
        blend["t2m"].isel({PATH: 2}).values,
        0.5 * (path["t2m"].isel({PATH: 0}) + path["t2m"].isel({PATH: -1})),
    )
    # slerp keeps the anomaly variance of two independent-ish scenarios; the blend loses it
    assert float(br["t2m"].isel({PATH: 2})) < float(pr["t2m"].isel({PATH: 2}))
    raw = q.path_netcdf_bytes(path, blend, pr, br)
    (tmp_path / "p.nc").write_bytes(raw)
    with xr.open_dataset(tmp_path / "p.nc") as back:
        np.testing.assert_allclose(back["t2m_blend"].values, blend["t2m"].values)
        np.testing.assert_allclose(back["t2m_variance_ratio"].values, pr["t2m"].values)
        np.testing.assert_allclose(back["t2m_blend_variance_ratio"].values, br["t2m"].values)
        np.testing.assert_allclose(back[PATH].values, np.linspace(0, 1, 5))
    with pytest.raises(ForecastError, match="needs the truth"):
        q.scenario_latents(model, ctx, "observed", 1, n_members=4, seed=0)
    with pytest.raises(ForecastError, match="member 7 outside"):
        q.scenario_latents(model, ctx, 0, 7, n_members=4, seed=0)
    with pytest.raises(ForecastError, match="no latent space"):
        q.scenario_latents(object(), ctx, 0, 1, n_members=4, seed=0)


@pytest.mark.parametrize("with_nan", [False, True])
def test_member_quantile_equals_numpy(with_nan):
    rng = np.random.default_rng(3)
    vals = rng.normal(size=(7, 4, 5))
    if with_nan:
        vals[rng.random(vals.shape) < 0.3] = np.nan
        vals[:, 0, 0] = np.nan  # an all-NaN point
    da = xr.DataArray(vals, dims=(MEMBER, LAT, LON), coords={LAT: np.arange(4.0)})
    qs = [0.0, 0.05, 0.25, 0.5, 0.9, 1.0]
    got = q.member_quantile(da, qs)
    assert got.dims == (QUANTILE, LAT, LON)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slice
        ref = np.nanquantile(vals, qs, axis=0)
    np.testing.assert_allclose(got.values, ref, equal_nan=True)
    one = q.member_quantile(da, 0.5)
    assert one.dims == (LAT, LON)
    np.testing.assert_allclose(one.values, ref[3], equal_nan=True)
    with pytest.raises(ForecastError, match="outside"):
        q.member_quantile(da, [1.2])


def test_quickest_model_kind_is_the_default():
    # one-pass models first (VAE, baselines), then the GP (gpytorch import), diffusion last
    assert q.quickest(["diffusion", "gp", "vae"]) == 2
    assert q.quickest(["diffusion", "gp"]) == 1
    assert q.quickest(["diffusion", "persistence", "vae"]) == 1  # first among equals
    assert q.quickest(["diffusion"]) == 0
    with pytest.raises(ForecastError, match="forecast train"):
        q.quickest([])


def test_torch_threads_from_the_environment():
    from forecast.dashboard.paths import THREADS_ENV

    assert q.torch_threads({}) == 1  # one thread: the fast choice on a shared CPU
    assert q.torch_threads({THREADS_ENV: "3"}) == 3
    for bad in ("0", "-2", "two", ""):
        with pytest.raises(ForecastError, match=THREADS_ENV):
            q.torch_threads({THREADS_ENV: bad})


def test_importing_the_queries_keeps_torch_out_of_the_dashboard_start_up():
    """The app imports this module on its first run; torch (1-2 s) loads only with a model."""
    import subprocess
    import sys

    code = (
        "import sys, forecast.dashboard.queries as q; "
        "assert 'torch' not in sys.modules, 'torch imported'; "
        "q.is_latent(object()); assert 'torch' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
