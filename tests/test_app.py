"""The Streamlit app through streamlit.testing.v1.AppTest: tabs, widgets and bad input.

AppTest cannot look into a chart, so the tests read the plotly figure JSON from the chart
element's proto and compare it with the same query computed here.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from forecast.dashboard import queries as q
from forecast.dashboard.paths import CHECKPOINT_ENV, SHIPPED_ENV, USER_DATA_ENV
from forecast.dims import LAT, LON, TIME

REPO = Path(__file__).resolve().parents[1]
APP = str(REPO / "app.py")
OWN_FILE = "your own file (NetCDF / GRIB / CSV)"
BASELINE = "diurnal-persistence (baseline fitted on the fly)"
PERSISTENCE = "persistence (baseline fitted on the fly)"


def new_app():
    from streamlit.testing.v1 import AppTest

    return AppTest.from_file(APP, default_timeout=600)


def no_failure(at) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def chart(at, key: str) -> dict:
    """The plotly figure (as JSON) of the chart with ``key``."""
    for el in at.get("plotly_chart"):
        if el.proto.id.endswith(f"-{key}"):
            return json.loads(el.proto.spec)
    raise AssertionError(f"no chart {key!r}")


def values(v) -> np.ndarray:
    """Decode a plotly array (plain list or base64 typed array)."""
    if isinstance(v, dict) and "bdata" in v:
        out = np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
        if "shape" in v:
            shape = v["shape"]
            shape = [int(s) for s in shape.split(",")] if isinstance(shape, str) else shape
            out = out.reshape(shape)
        return out
    return np.asarray(v, dtype=float)


def map_z(at) -> np.ndarray:
    return values(chart(at, "main_map")["data"][0]["z"])


def open_tab(at, name: str):
    at.session_state["tab"] = name
    return at.run()


@pytest.fixture(scope="module")
def weather():
    """The embedded default, its protocol and the default baseline as the app builds them."""
    ds = q.open_named("synthetic-weather")
    protocol = q.protocol_for("synthetic-weather", ds)
    model = q.fit_on_the_fly("diurnal-persistence", ds, protocol)
    return ds, protocol, model, q.test_issue_times(ds, protocol)


@pytest.fixture()
def no_checkpoints(tmp_path, monkeypatch):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    monkeypatch.setenv(CHECKPOINT_ENV, str(folder))
    shipped = tmp_path / "shipped"  # hide the shipped checkpoints under data/
    shipped.mkdir()
    monkeypatch.setenv(SHIPPED_ENV, str(shipped))
    return folder


def default_app():
    at = new_app().run()
    if at.selectbox(key="model").value != BASELINE:
        at.selectbox(key="model").set_value(BASELINE).run()
    return at


@pytest.mark.slow
def test_every_tab_renders_with_the_embedded_default(weather, no_checkpoints):
    ds, protocol, model, issues = weather
    at = default_app()
    no_failure(at)
    assert [t.label for t in at.tabs] == ["Maps", "Point", "Scores", "Export"]
    assert at.selectbox(key="dataset").value == "synthetic-weather"
    # the map is the ensemble mean at the first lead of the first test issue time
    ens = q.sample_at(model, ds, issues[0], 20, 0)
    expected = q.ensemble_statistic(ens, "t2m", "mean", lead=0).transpose(LAT, LON).values
    np.testing.assert_allclose(map_z(at), expected, rtol=1e-6)
    fig = chart(at, "main_map")
    assert len(fig["frames"]) == protocol.horizon
    assert fig["layout"]["updatemenus"][0]["buttons"][0]["label"] == "Play"

    at = open_tab(at, "Point")
    no_failure(at)
    plume = chart(at, "plume")
    assert sum(tr["name"].startswith("member") for tr in plume["data"]) == 20
    assert {"observed (context)", "truth"} <= {tr["name"] for tr in plume["data"]}
    assert {tr["name"] for tr in chart(at, "fan")["data"]} >= {"5-95 %", "25-75 %", "median"}
    assert len(values(chart(at, "epsgram")["data"][0]["median"])) == protocol.horizon

    at = open_tab(at, "Scores")
    no_failure(at)
    crps = chart(at, "crps")
    assert [tr["name"] for tr in crps["data"]] == [
        "diurnal-persistence (fitted on the fly)",
        "climatology",
        "persistence",
    ]
    assert all(np.all(values(tr["y"]) > 0) for tr in crps["data"])
    for key in ("crpss", "spread_skill", "rank_hist", "reliability"):
        assert chart(at, key)["data"]
    rank = values(chart(at, "rank_hist")["data"][0]["y"])
    assert len(rank) == 21 and rank.sum() == pytest.approx(1.0)

    at = open_tab(at, "Export")
    no_failure(at)
    assert at.get("download_button")


@pytest.mark.slow
def test_widgets_change_the_output(weather, no_checkpoints):
    ds, _, model, issues = weather
    at = default_app()
    first = map_z(at)

    at.select_slider(key="lead").set_value("+6 h").run()
    no_failure(at)
    ens = q.sample_at(model, ds, issues[0], 20, 0)
    np.testing.assert_allclose(
        map_z(at), q.ensemble_statistic(ens, "t2m", "mean", lead=5).values, rtol=1e-6
    )
    assert chart(at, "main_map")["layout"]["sliders"][0]["active"] == 5

    label = f"{issues[3]:%Y-%m-%d %H:%M}"
    at.select_slider(key="issue").set_value(label).run()
    no_failure(at)
    ens3 = q.sample_at(model, ds, issues[3], 20, 0)
    np.testing.assert_allclose(
        map_z(at), q.ensemble_statistic(ens3, "t2m", "mean", lead=5).values, rtol=1e-6
    )

    at.radio(key="statistic").set_value("exceedance").run()
    at.slider(key="threshold").set_value(280.0).run()
    no_failure(at)
    p280 = map_z(at)
    np.testing.assert_allclose(
        p280, q.ensemble_statistic(ens3, "t2m", "exceedance", lead=5, threshold=280.0).values
    )
    at.slider(key="threshold").set_value(285.0).run()
    p285 = map_z(at)
    assert np.all(p285 <= p280) and np.any(p285 < p280)

    at.radio(key="statistic").set_value("mean").run()
    before = map_z(at)
    at.selectbox(key="model").set_value(PERSISTENCE).run()
    no_failure(at)
    assert "persistence (fitted on the fly)" in at.caption[0].value
    # a new model keeps the issue time, forgets the lead (its leads may differ)
    assert at.select_slider(key="issue").value == label
    assert at.select_slider(key="lead").value == "+1 h"
    persistence = q.fit_on_the_fly("persistence", ds, q.protocol_for("synthetic-weather", ds))
    ens_p = q.sample_at(persistence, ds, issues[3], 20, 0)
    np.testing.assert_allclose(
        map_z(at), q.ensemble_statistic(ens_p, "t2m", "mean", lead=0).values, rtol=1e-6
    )
    assert not np.allclose(map_z(at), before)
    assert not np.allclose(map_z(at), first)


@pytest.mark.slow
def test_point_tab_shows_the_area_mean(weather, no_checkpoints):
    ds, protocol, model, issues = weather
    at = open_tab(default_app(), "Point")
    assert at.radio(key="where").options == ["this point", "area mean"]
    at.radio(key="where").set_value("area mean").run()
    no_failure(at)
    ens = q.sample_at(model, ds, issues[0], 20, 0)
    area = q.place_series(ens, "t2m", None)
    plume = chart(at, "plume")
    members = [tr for tr in plume["data"] if tr["name"].startswith("member")]
    assert len(members) == 20
    for k in (0, 19):
        np.testing.assert_allclose(values(members[k]["y"]), area.isel(member=k).values, rtol=1e-6)
    assert plume["layout"]["title"]["text"].startswith("Plume of the area mean of ")
    truth = next(tr for tr in plume["data"] if tr["name"] == "truth")
    target = q.target_window(ds, issues[0], protocol.horizon)
    np.testing.assert_allclose(
        values(truth["y"]), q.place_series(target, "t2m", None).values, rtol=1e-6
    )
    assert "schaake" in at.caption[-1].value


def write_grid(path: Path, with_time: bool = True) -> None:
    times = pd.date_range("2020-01-01", periods=240, freq="1h")
    rng = np.random.default_rng(0)
    if with_time:
        ds = xr.Dataset(
            {"t2m": ((TIME, LAT, LON), 280 + rng.normal(size=(240, 4, 5)), {"units": "K"})},
            coords={TIME: times, LAT: np.arange(4.0), LON: np.arange(5.0)},
        )
    else:
        ds = xr.Dataset(
            {"t2m": ((LAT, LON), rng.normal(size=(4, 5)), {"units": "K"})},
            coords={LAT: np.arange(4.0), LON: np.arange(5.0)},
        )
    ds.to_netcdf(path)


@pytest.fixture()
def user_files(tmp_path, monkeypatch, no_checkpoints):
    folder = tmp_path / "user"
    folder.mkdir()
    monkeypatch.setenv(USER_DATA_ENV, str(folder))
    (folder / "notes.txt").write_text("hello")
    (folder / "fake.nc").write_text("this is not netcdf")
    write_grid(folder / "no_time.nc", with_time=False)
    write_grid(folder / "good.nc")
    outside = tmp_path / "outside.nc"
    write_grid(outside)
    return folder, outside


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("notes.txt", "is not a NetCDF, GRIB or CSV file"),
        ("fake.nc", "is not a NetCDF file"),
        ("no_time.nc", "time"),
        ("OUTSIDE", "outside the allowed data folders"),
        ("/etc/passwd", "outside the allowed data folders"),
        ("missing.nc", "not found in the allowed data folders"),
    ],
)
def test_bad_files_show_a_message_not_a_trace(user_files, name, message):
    _, outside = user_files
    at = new_app().run()
    at.selectbox(key="dataset").set_value(OWN_FILE).run()
    path = str(outside) if name == "OUTSIDE" else name
    at.text_input(key="path").input(path).run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.error) == 1
    assert message in at.error[0].value
    assert "forecast data info" in at.error[0].value  # the command that helps
    assert "Traceback" not in at.error[0].value
    # the app keeps working: back to the embedded default
    at.selectbox(key="dataset").set_value("synthetic-weather").run()
    if at.selectbox(key="model").value != BASELINE:
        at.selectbox(key="model").set_value(BASELINE).run()
    no_failure(at)
    assert at.get("plotly_chart")


def test_own_netcdf_file_is_forecast(user_files):
    good = user_files[0] / "good.nc"
    stamp = (good.stat().st_mtime_ns, good.read_bytes())
    at = new_app().run()
    at.selectbox(key="dataset").set_value(OWN_FILE).run()
    at.text_input(key="path").input("good.nc").run()
    no_failure(at)
    z = map_z(at)
    assert z.shape == (4, 5)
    # the file is read, never written, and nothing is written beside it
    assert (good.stat().st_mtime_ns, good.read_bytes()) == stamp
    assert sorted(p.name for p in user_files[0].iterdir()) == [
        "fake.nc",
        "good.nc",
        "no_time.nc",
        "notes.txt",
    ]


def test_no_models_found_says_how_to_get_one(no_checkpoints):
    at = new_app().run()
    no_failure(at)
    text = " ".join(i.value for i in at.info)
    assert "No model checkpoints found" in text and str(no_checkpoints) in text
    assert "forecast train" in text
    assert at.selectbox(key="model").value == BASELINE


def test_checkpoint_that_does_not_fit_the_data(no_checkpoints):
    traffic = q.open_named("synthetic-traffic")
    protocol = q.protocol_for("synthetic-traffic", traffic)
    q.fit_on_the_fly("persistence", traffic, protocol).save(no_checkpoints / "traffic.safetensors")
    (no_checkpoints / "broken.safetensors").write_bytes(b"not a checkpoint")
    at = new_app().run()
    assert not at.exception
    assert any(
        "broken.safetensors" in w.value and "not a forecast checkpoint" in w.value
        for w in at.warning
    )
    at.selectbox(key="model").set_value("traffic.safetensors (persistence)").run()
    assert not at.exception
    assert len(at.error) == 1 and "does not fit this data set" in at.error[0].value
    assert "forecast train" in at.error[0].value
    # the same checkpoint works on its own data, and a baseline still works here
    at.selectbox(key="dataset").set_value("synthetic-traffic").run()
    no_failure(at)
    assert [t.label for t in at.tabs][:2] == ["Network", "Sensor"]
    assert chart(at, "main_map")["data"][1]["mode"] == "markers"
    at.selectbox(key="dataset").set_value("synthetic-weather").run()
    at.selectbox(key="model").set_value(BASELINE).run()
    no_failure(at)


@pytest.fixture(scope="module")
def diffusion_checkpoint(tmp_path_factory):
    """A deliberately under-trained micro diffusion model of the embedded default."""
    from forecast.models import MODELS

    if "diffusion" not in MODELS:
        pytest.skip("the diffusion model is not available")
    ds = q.open_named("synthetic-weather")
    p = q.protocol_for("synthetic-weather", ds)
    model = MODELS.get("diffusion")(
        context=p.context,
        horizon=p.horizon,
        base=4,
        mults=(1,),
        hidden=4,
        blocks=1,
        emb_dim=8,
        nfe=2,
        latent_nfe=2,
        invert_refine=0,
        train={
            "epochs": 1,
            "max_steps": 1,
            "batch_size": 2,
            "eval_every": 0,
            "progress": False,
            "warmup_steps": 1,
        },
    )
    model.fit(p.split(ds, "train").isel({TIME: slice(0, 40)}))
    folder = tmp_path_factory.mktemp("diffusion")
    model.save(folder / "micro.safetensors")
    return folder


@pytest.mark.slow
def test_latent_explorer_and_sampler(diffusion_checkpoint, monkeypatch):
    monkeypatch.setenv(CHECKPOINT_ENV, str(diffusion_checkpoint))
    at = new_app().run()
    at.selectbox(key="model").set_value("micro.safetensors (diffusion)").run()
    no_failure(at)
    assert [t.label for t in at.tabs] == ["Maps", "Point", "Scores", "Latent explorer", "Export"]
    # sampler and NFE are offered for this model only, and change the ensemble
    assert at.selectbox(key="sampler").value == "dpmpp-2m"
    before = map_z(at)
    at.number_input(key="nfe").set_value(3).run()
    no_failure(at)
    assert not np.allclose(map_z(at), before)

    at = open_tab(at, "Latent explorer")
    no_failure(at)
    at.number_input(key="path_steps").set_value(5).run()
    at.selectbox(key="scen_a").set_value(0).run()
    at.selectbox(key="scen_b").set_value(1).run()
    no_failure(at)
    z = {}
    for pos in (0, 2, 4):
        at.slider(key="path_pos").set_value(pos).run()
        no_failure(at)
        fig = chart(at, "latent_panels")
        z[pos] = (values(fig["data"][0]["z"]), values(fig["data"][1]["z"]))
        assert f"t = {pos / 4:.2f}" in fig["layout"]["annotations"][0]["text"]
    # the ends of the path and of the blend are the two scenarios; mid-way they differ,
    # and the blend is exactly the average of the ends
    np.testing.assert_allclose(z[0][0], z[0][1], rtol=1e-5)
    np.testing.assert_allclose(z[4][0], z[4][1], rtol=1e-5)
    np.testing.assert_allclose(z[2][1], 0.5 * (z[0][0] + z[4][0]), rtol=1e-5)
    assert not np.allclose(z[2][0], z[2][1])
    assert at.get("download_button")

    at.selectbox(key="scen_a").set_value("observed").run()
    no_failure(at)


@pytest.mark.slow
def test_latent_explorer_of_a_pool_walks_one_models_members(
    diffusion_checkpoint, tmp_path, monkeypatch
):
    from forecast.models import PooledEnsemble, load_model

    micro = load_model(diffusion_checkpoint / "micro.safetensors")
    pool = PooledEnsemble.from_models([micro, micro], labels=["first", "second"])
    pool.save(tmp_path / "pool.safetensors")
    monkeypatch.setenv(CHECKPOINT_ENV, str(tmp_path))
    at = new_app().run()
    at.selectbox(key="model").set_value("pool.safetensors (pooled)").run()
    no_failure(at)
    assert "Latent explorer" in [t.label for t in at.tabs]
    at = open_tab(at, "Latent explorer")
    no_failure(at)
    assert at.selectbox(key="latent_part").options == ["first", "second"]
    at.selectbox(key="latent_part").set_value("second").run()
    no_failure(at)
    members = [o for o in at.selectbox(key="scen_a").options if o.startswith("member")]
    assert len(members) >= 2  # the second model draws the odd members
    assert members == [f"member {m}" for m in range(1, 2 * len(members), 2)]
    at.number_input(key="path_steps").set_value(3).run()
    no_failure(at)
    assert chart(at, "latent_panels")["layout"]["annotations"][0]["text"].startswith(
        "latent path (slerp)"
    )
    at.selectbox(key="scen_a").set_value(3).run()  # then the other model: its own members
    at.selectbox(key="latent_part").set_value("first").run()
    no_failure(at)
    assert at.selectbox(key="scen_a").value in (0, "observed")


def chart_keys(at) -> list[str]:
    return [el.proto.id.rsplit("-", 1)[-1] for el in at.get("plotly_chart")]


def test_first_page_is_the_shipped_vae_ensemble(monkeypatch):
    """The embedded default opens with the shipped checkpoint quickest to sample (the VAE)."""
    path = REPO / "data" / "models" / "vae-synthetic-weather.safetensors"
    if not path.is_file():
        pytest.skip(f"{path} not shipped")
    monkeypatch.delenv(CHECKPOINT_ENV, raising=False)
    monkeypatch.delenv(SHIPPED_ENV, raising=False)
    at = new_app().run()
    no_failure(at)
    assert at.selectbox(key="model").value == "vae-synthetic-weather.safetensors (vae)"
    assert any("quickest to sample" in c.value for c in at.sidebar.caption)
    assert "vae-synthetic-weather.safetensors" in at.caption[0].value
    # "About this model" holds the `forecast model info` summary of the checkpoint
    from forecast.models.info import checkpoint_info, format_info

    about = [e for e in at.sidebar.expander if e.label == "About this model"]
    assert len(about) == 1 and about[0].code[0].value == format_info(checkpoint_info(path))
    ds = q.open_named("synthetic-weather")
    model = q.load_for_data(path, ds)
    protocol = q.protocol_for("synthetic-weather", ds, model.context, model.horizon)
    ens = q.sample_at(model, ds, q.test_issue_times(ds, protocol)[0], 20, 0)
    np.testing.assert_allclose(
        map_z(at), q.ensemble_statistic(ens, "t2m", "mean", lead=0).values, rtol=1e-5
    )
    # the postage stamps are built only once their expander is opened
    assert chart_keys(at) == ["main_map"]
    at.session_state["stamps_open"] = True
    at.run()
    no_failure(at)
    assert chart_keys(at) == ["main_map", "stamps"]
    stamp = values(chart(at, "stamps")["data"][0]["z"])
    np.testing.assert_allclose(stamp, ens["t2m"].isel(member=0, lead_time=0).values, rtol=1e-5)


def test_default_is_the_fitting_checkpoint_quickest_to_sample(
    weather, diffusion_checkpoint, no_checkpoints
):
    import shutil

    ds, protocol, _, issues = weather
    shutil.copy(diffusion_checkpoint / "micro.safetensors", no_checkpoints / "a-micro.safetensors")
    persistence = q.fit_on_the_fly("persistence", ds, protocol)
    persistence.save(no_checkpoints / "b-persistence.safetensors")
    at = new_app().run()
    no_failure(at)
    # listed first, but slower to sample: the one-pass persistence checkpoint is shown first
    assert at.selectbox(key="model").options.index("a-micro.safetensors (diffusion)") < (
        at.selectbox(key="model").options.index("b-persistence.safetensors (persistence)")
    )
    assert at.selectbox(key="model").value == "b-persistence.safetensors (persistence)"
    ens = q.sample_at(persistence, ds, issues[0], 20, 0)
    np.testing.assert_allclose(
        map_z(at), q.ensemble_statistic(ens, "t2m", "mean", lead=0).values, rtol=1e-6
    )
    at.selectbox(key="model").set_value("a-micro.safetensors (diffusion)").run()
    no_failure(at)
    assert at.selectbox(key="sampler").value == "dpmpp-2m"


def scorecard_file(weather, folder):
    """A scorecard of diurnal persistence and climatology (2 issue times) written under
    ``folder``: ``(scorecard, path)``."""
    from forecast.scoring.scorecard import to_netcdf

    ds, _, model, issues = weather
    protocol = q.protocol_for("synthetic-weather", ds)
    clim = q.fit_on_the_fly("climatology", ds, protocol)
    fc = q.forecasts_for({"diurnal-persistence": model, "climatology": clim}, ds, issues[:2], 5, 0)
    card, _ = q.live_scores(fc, ds, 280.0)
    path = folder / "scorecard.nc"
    path.parent.mkdir()
    to_netcdf(card, path)
    return card, path


def scores_tab_of(path):
    """The app on its Scores tab, reading the scorecard at ``path``."""
    at = open_tab(default_app(), "Scores")
    at.selectbox(key="score_source").set_value(str(path.resolve())).run()
    no_failure(at)
    return at


def test_scores_from_a_scorecard_file(weather, user_files):
    card, path = scorecard_file(weather, user_files[0] / "runs")
    at = scores_tab_of(path)
    crps = chart(at, "crps")
    assert [tr["name"] for tr in crps["data"]] == ["diurnal-persistence", "climatology"]
    np.testing.assert_allclose(
        values(crps["data"][1]["y"]), card["t2m"].sel(model="climatology", metric="crps").values
    )
    crpss = chart(at, "crpss")
    expected = 1 - (
        card["t2m"].sel(model="diurnal-persistence", metric="crps")
        / card["t2m"].sel(model="climatology", metric="crps")
    )
    np.testing.assert_allclose(values(crpss["data"][0]["y"]), expected.values)
    assert len(at.dataframe) == 1  # no significance.csv beside this scorecard
    for key in ("area_crps", "area_spread_skill"):
        np.testing.assert_allclose(
            values(chart(at, key)["data"][0]["y"]),
            card["t2m"].sel(model="diurnal-persistence", metric=key).values,
        )


def test_a_scorecard_without_area_scores_still_shows(weather, user_files):
    """Scorecards written before the area-mean metrics existed: no area charts, no error."""
    from forecast.scoring.scorecard import to_netcdf

    card, path = scorecard_file(weather, user_files[0] / "old-run")
    kept = [m for m in card["metric"].values if not str(m).startswith("area_")]
    to_netcdf(card.sel(metric=kept), path)
    at = scores_tab_of(path)
    assert chart(at, "crps")["data"]
    with pytest.raises(AssertionError, match="no chart"):
        chart(at, "area_crps")


def test_significance_table_beside_a_scorecard(weather, user_files):
    """A run's significance.csv shows as a model x lead table under the scores."""
    from forecast.scoring.significance import COLUMNS, write_significance

    card, path = scorecard_file(weather, user_files[0] / "sig-run")
    leads = pd.to_timedelta(card["lead_time"].values)
    rows = [
        ["diurnal-persistence", "t2m", lead, 1.0, "climatology", 1.1, -0.05 if i % 2 else 0.02,
         -0.1, 0.0, 0.04, "better" if i % 2 else "not significant", 0.9, 0.7, 1.1, "consistent"]
        for i, lead in enumerate(leads)
    ]  # fmt: skip
    write_significance(pd.DataFrame(rows, columns=COLUMNS), path.parent)
    shown = scores_tab_of(path).dataframe[-1].value
    assert list(shown.index) == ["diurnal-persistence"] and shown.shape[1] == len(leads)
    assert shown.iloc[0, 0] == "+2.0% n.s." and shown.iloc[0, 1] == "-5.0% better"


def test_uploads_are_read_from_a_private_temporary_folder(tmp_path, no_checkpoints):
    good = tmp_path / "mine.nc"
    write_grid(good)
    at = new_app().run()
    at.selectbox(key="dataset").set_value(OWN_FILE).run()
    at.file_uploader(key="upload").upload("../../mine.nc", good.read_bytes()).run()
    no_failure(at)
    assert map_z(at).shape == (4, 5)
    at.file_uploader(key="upload").upload("fake.nc", b"not netcdf").run()
    assert not at.exception
    assert len(at.error) == 1 and "is not a NetCDF file" in at.error[0].value


@pytest.mark.slow
def test_real_grib_by_name_and_by_path(era5_path, no_checkpoints, monkeypatch):
    monkeypatch.setenv("FORECAST_DATA_DIR", str(era5_path.parents[1]))
    at = new_app().run()
    assert "era5-uk-t2m" in at.selectbox(key="dataset").options
    at.selectbox(key="dataset").set_value("era5-uk-t2m").run()
    no_failure(at)
    assert map_z(at).shape == (33, 49)
    # P2 test issue times: 00, 06, 12, 18 UTC from 2019-03-25
    assert at.select_slider(key="issue").options[0] == "2019-03-25 00:00"
    at.selectbox(key="dataset").set_value(OWN_FILE).run()
    at.text_input(key="path").input(str(era5_path)).run()
    no_failure(at)
    assert map_z(at).shape == (33, 49)
    assert not list(era5_path.parent.glob("*.idx"))


@pytest.mark.slow
def test_online_spread_model_forecasts_and_walks_its_latent_space(
    diffusion_checkpoint, tmp_path, monkeypatch
):
    from forecast.models import OnlineSpread, load_model

    micro = load_model(diffusion_checkpoint / "micro.safetensors")
    OnlineSpread.from_model(micro, history=6, members=2).save(tmp_path / "online.safetensors")
    monkeypatch.setenv(CHECKPOINT_ENV, str(tmp_path))
    cache = tmp_path.parent / f"{tmp_path.name}-cache"  # outside the checkpoint folder
    monkeypatch.setenv("FORECAST_CACHE_DIR", str(cache))
    at = new_app().run()
    at.selectbox(key="model").set_value("online.safetensors (online-spread)").run()
    no_failure(at)
    assert np.isfinite(map_z(at)).all()
    # the reference forecasts went to the cache folder too, for the next server process
    (kept,) = (cache / "online-references").iterdir()
    assert len(list(kept.glob("*.safetensors"))) == 6 + 1
    assert "Latent explorer" in [t.label for t in at.tabs]
    at = open_tab(at, "Latent explorer")
    at.number_input(key="path_steps").set_value(3).run()
    at.selectbox(key="scen_a").set_value(0).run()
    at.selectbox(key="scen_b").set_value(1).run()
    no_failure(at)
    ends = []
    for pos in (0, 2):
        at.slider(key="path_pos").set_value(pos).run()
        no_failure(at)
        fig = chart(at, "latent_panels")
        ends.append((values(fig["data"][0]["z"]), values(fig["data"][1]["z"])))
    for path_end, blend_end in ends:  # path and blend meet at the scenarios
        np.testing.assert_allclose(path_end, blend_end, rtol=1e-5)
