"""Forecast dashboard: ensemble maps, point plumes, scores, latent explorer and export.

Run with ``forecast app`` or ``streamlit run app.py``. This file holds only widgets and layout;
data queries and figures live in :mod:`forecast.dashboard` (pure functions, tested without
Streamlit). Models are cached with ``st.cache_resource``, data and ensembles with
``st.cache_data``, so moving a slider re-draws from cached ensembles.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import pandas as pd
import streamlit as st

from forecast.dashboard import figures as fg
from forecast.dashboard import paths as dp
from forecast.dashboard import queries as q
from forecast.dims import LEAD_TIME, MEMBER, METRIC, NODE, PATH, space_dims, window_context
from forecast.errors import ForecastError

OWN_FILE = "your own file (NetCDF / GRIB / CSV)"
FIX_DATA = "Fix: pick an embedded data set, or check the file with `forecast data info PATH`."


# ------------------------------------------------------------------------------------------
# cached loaders (thin wrappers over forecast.dashboard.queries)
# ------------------------------------------------------------------------------------------
@st.cache_data(show_spinner="Opening the data set…", max_entries=4)
def load_named(name: str):
    return q.open_named(name)


@st.cache_data(show_spinner="Reading your file…", max_entries=4)
def load_path(path: str, mtime: float):
    return q.open_user_file(path)


@st.cache_data(show_spinner="Reading the uploaded file…", max_entries=2)
def load_upload(name: str, digest: str, _data: bytes):
    with tempfile.TemporaryDirectory(prefix="forecast-upload-") as tmp:
        stored = dp.store_upload(name, _data, tmp)
        return q.open_user_file(stored.name, [Path(tmp).resolve()])


@st.cache_resource(show_spinner="Fitting the baseline on the training part…", max_entries=8)
def fitted_model(kind: str, data_key: str, _ds, _protocol):
    return q.fit_on_the_fly(kind, _ds, _protocol)


@st.cache_resource(show_spinner="Loading the checkpoint…", max_entries=8)
def loaded_model(path: str, data_key: str, _ds):
    """The checkpoint's model, and a note when its online references cannot go to disk."""
    from forecast.dashboard.datacache import cache_dir

    model = q.load_for_data(path, _ds)
    return model, q.keep_references(model, cache_dir())


@st.cache_data(show_spinner=False, max_entries=16)
def model_info_text(path: str, mtime: float) -> str:
    from forecast.models.info import checkpoint_info, format_info

    return format_info(checkpoint_info(path))


@st.cache_data(show_spinner=False, max_entries=64)
def ensemble(model_key: str, data_key: str, issue: str, members: int, seed: int, _model, _ds):
    return q.sample_at(_model, _ds, issue, members, seed)


@st.cache_data(show_spinner=False, max_entries=16)
def export_bytes(
    model_key: str,
    data_key: str,
    issue: str,
    members: int,
    seed: int,
    _ens,
    model_name: str,
    sampler: str | None,
    nfe: int | None,
) -> bytes:
    return q.ensemble_netcdf_bytes(
        _ens,  # a pool's ensemble names each member's model (source_model)
        model=model_name,
        seed=seed,
        sampler=sampler,
        nfe=nfe,
        title="forecast dashboard ensemble",
    )


@st.cache_data(show_spinner=False, max_entries=8)
def scores(
    keys: tuple,
    data_key: str,
    issues: tuple,
    members: int,
    seed: int,
    threshold: float | None,
    _models,
    _ds,
):
    bar = st.progress(0.0, text="Sampling ensembles for the scores…")

    def tick(done: int, total: int, text: str) -> None:
        bar.progress(done / total, text=f"Sampling ensembles: {text} ({done}/{total})")

    fc = q.forecasts_for(_models, _ds, list(issues), members, seed, progress=tick)
    bar.progress(1.0, text="Scoring…")
    out = q.live_scores(fc, _ds, threshold, seed)
    bar.empty()
    return out


@st.cache_data(show_spinner="Decoding the latent path…", max_entries=16)
def latent_path(
    model_key: str,
    data_key: str,
    issue: str,
    members: int,
    seed: int,
    a,
    b,
    steps: int,
    part: str,
    _model,
    _ds,
):
    context = q.context_window(_ds, issue, _model.context)
    target = q.target_window(_ds, issue, _model.horizon)
    z_a, z_b = q.scenario_latents(
        _model,
        context,
        a,
        b,
        n_members=members,
        seed=q.issue_seed(seed, issue),
        target=target,
        part=part,
    )
    return q.latent_explorer(q.latent_part(_model, part), context, z_a, z_b, steps)


#: Widgets whose values belong to one model's ensemble (leads, latent scenarios).
MODEL_KEYS = ("lead", "path_lead", "latent_part", "scen_a", "scen_b", "path_pos")
#: ... and to one data set (times, places, variables, value ranges).
DATA_KEYS = (
    *MODEL_KEYS,
    "issue",
    "threshold",
    "sensor",
    "point_lat",
    "point_lon",
    "point_y",
    "point_x",
    "variable",
    "statistic",
)


def reset_view(keys: tuple[str, ...]) -> None:
    """Forget widget values that may not exist for the newly chosen data set or model."""
    for key in keys:
        st.session_state.pop(key, None)


def fail(err: Exception, fix: str = "") -> None:
    """Show a one-line problem and its fix, then stop this run (the page stays usable)."""
    st.error(f"{err}" + (f"\n\n{fix}" if fix else ""), icon="⚠️")
    st.stop()


# ------------------------------------------------------------------------------------------
# sidebar: data set and model
# ------------------------------------------------------------------------------------------
st.set_page_config(page_title="forecast dashboard", layout="wide")
st.title("Probabilistic forecast dashboard")
side = st.sidebar
side.header("Data")
choices = q.dataset_choices()
source = side.selectbox(
    "Data set", [*choices, OWN_FILE], key="dataset", on_change=reset_view, args=(DATA_KEYS,)
)
data_name: str | None = source
try:
    if source == OWN_FILE:
        data_name = None
        roots = dp.data_roots()
        side.caption("Allowed folders: " + ", ".join(f"`{r}`" for r in roots))
        typed = side.text_input("Path of your file (inside an allowed folder)", key="path")
        upload = side.file_uploader(
            "…or upload a file", type=["nc", "nc4", "grib", "grb", "grib2", "csv"], key="upload"
        )
        if upload is not None:
            raw = upload.getvalue()
            digest = hashlib.sha256(raw).hexdigest()
            ds = load_upload(upload.name, digest, raw)
            data_key = f"upload:{upload.name}:{digest}"
        elif typed.strip():
            real = dp.confine(typed, roots)
            ds = load_path(str(real), real.stat().st_mtime)
            data_key = f"path:{real}:{real.stat().st_mtime}"
        else:
            st.info("Type the path of a NetCDF, GRIB or CSV file in the sidebar, or upload one.")
            st.stop()
    else:
        ds = load_named(source)
        data_key = f"named:{source}"
except ForecastError as err:
    fail(err, FIX_DATA)

variables = q.data_variables_of(ds)
network = space_dims(ds) == (NODE,)

side.header("Model")
ckpt_folders = dp.checkpoint_folders()
env_ckpt = dp.CHECKPOINT_ENV
checkpoints = q.list_checkpoints(ckpt_folders)
labels = {f"{k} (baseline fitted on the fly)": ("fit", k) for k in q.ON_THE_FLY}
# the default is the fitting checkpoint quickest to sample, so the first page comes at once
readable, unreadable, first_path = q.scan_checkpoints(checkpoints, ds)
for path, message in unreadable:
    side.warning(f"{path.name}: {message}")
first = None
for path, info, _ in readable:
    label = f"{path.name} ({info['kind']})"
    labels[label] = ("ckpt", str(path))
    first = label if path == first_path else first
fitting = [path for path, _, fits in readable if fits]
options = list(labels)
default = options.index(first) if first else 0
if st.session_state.get("model_data_key") != data_key:  # new data: default to a model that fits
    st.session_state.pop("model", None)
    st.session_state["model_data_key"] = data_key
model_label = side.selectbox(
    "Model", options, index=default, key="model", on_change=reset_view, args=(MODEL_KEYS,)
)
how, what = labels[model_label]
if len(fitting) > 1:
    side.caption(
        f"Shown first: **{first}**, the quickest to sample of the {len(fitting)} "
        "checkpoints for this data set; pick another above."
    )
if checkpoints and not fitting:
    side.info(
        "None of the checkpoints found fits this data set (grid, sensors, variables or time "
        f"step differ). The default model is the **{q.DEFAULT_MODEL}** baseline, fitted on the "
        "fly on this data set's training part. Train one for it with "
        "`forecast train --data PATH --model diffusion`."
    )
if not checkpoints:
    side.info(
        "No model checkpoints found in "
        + ", ".join(f"`{f}`" for f in ckpt_folders)
        + ": no shipped pretrained model yet. The default model is the "
        f"**{q.DEFAULT_MODEL}** baseline, fitted on the fly on this data set's training part. "
        "Train a model with `forecast train --data synthetic-weather --model diffusion` "
        f"and put the checkpoint in `data/` or in `${env_ckpt}`."
    )

try:
    q.set_torch_threads(q.torch_threads())
    if how == "fit":
        protocol = q.protocol_for(data_name, ds)
        model = fitted_model(what, data_key, ds, protocol)
        model_name = f"{what} (fitted on the fly)"
    else:
        model, note = loaded_model(what, data_key, ds)
        if note:
            side.caption(note)
        protocol = q.protocol_for(data_name, ds, window_context(model), model.horizon)
        model_name = Path(what).name
        # the same summary as `forecast model info`: training record, first guess, pool parts
        side.expander("About this model").code(
            model_info_text(what, Path(what).stat().st_mtime), language=None
        )
    issues = q.test_issue_times(ds, protocol)
except ForecastError as err:
    fail(err, "Fix: pick another model, or train one on this data with `forecast train`.")

side.header("Forecast")
issue_labels = [f"{t:%Y-%m-%d %H:%M}" for t in issues]
issue_label = side.select_slider(
    "Issue time (test period)", issue_labels, value=issue_labels[0], key="issue"
)
issue = str(issues[issue_labels.index(issue_label)])
members = int(side.number_input("Members", 2, 200, 20, key="members"))
seed = int(side.number_input("Seed", 0, 2**31 - 1, 0, key="seed"))
settings = q.sampler_settings(model)
sampler = nfe = None
if settings is not None:
    sampler = side.selectbox(
        "Sampler",
        settings["samplers"],
        index=settings["samplers"].index(settings["sampler"]),
        key="sampler",
    )
    nfe = int(side.number_input("NFE (network evaluations)", 1, 200, settings["nfe"], key="nfe"))
    model = q.with_sampler(model, sampler, nfe)
model_key = f"{how}:{what}:{sampler}:{nfe}"

try:
    with st.spinner(f"Sampling {members} members with {model_name}…"):
        ens = ensemble(model_key, data_key, issue, members, seed, model, ds)
    target = q.target_window(ds, issue, protocol.horizon)
except ForecastError as err:
    fail(err, "Fix: pick another issue time or fewer members.")

facts = q.summary(ens)
st.caption(
    f"**{source}** ({facts['space']}) · model **{model_name}** · issued "
    f"{facts['init_time']:%Y-%m-%d %H:%M} · {facts['members']} members × "
    f"{facts['leads']} leads · seed {seed}" + (f" · {sampler}, NFE {nfe}" if sampler else "")
)
variable = side.selectbox("Variable", variables, key="variable")
units = ds[variable].attrs.get("units", "")
vmin, vmax = float(ens[variable].min()), float(ens[variable].max())
threshold = side.slider(
    f"Event threshold ({units})",
    vmin,
    vmax,
    float(round((vmin + vmax) / 2, 1)),
    key="threshold",
    help="Exceedance maps, reliability diagram and Brier score use it.",
)
side.header("Place")
if network:
    ids = [str(v) for v in ds[NODE].values]
    pick = side.selectbox("Sensor", ids, key="sensor")
    point = {NODE: ds[NODE].values[ids.index(pick)]}
else:
    point_default = q.default_point(ds)
    point = {}
    for dim in space_dims(ds):
        values = [float(v) for v in ds[dim].values]
        point[dim] = side.select_slider(
            dim,
            values,
            value=float(point_default[dim]),
            key=f"point_{dim}",
            format_func=lambda v: f"{v:.2f}",
        )
where = q.place_text(q.point_index(ens, point))

leads = ens[LEAD_TIME].values
lead_names = q.lead_labels(leads)
positions = q.node_positions(ds)[:2] if network else None
latent_parts = q.latent_parts(model)  # a pool walks the latent space of one of its models
latent = bool(latent_parts)
tab_names = ["Network" if network else "Maps", "Sensor" if network else "Point", "Scores"]
if latent:
    tab_names.append("Latent explorer")
tab_names.append("Export")
# Lazy tabs: only the open tab runs, so scores and latent paths cost nothing until asked for.
tabs = dict(zip(tab_names, st.tabs(tab_names, key="tab", on_change="rerun"), strict=True))


# ------------------------------------------------------------------------------------------
# maps / network
# ------------------------------------------------------------------------------------------
def maps_tab() -> None:
    c1, c2 = st.columns([3, 1])
    stats = ["mean", "spread", "quantile", "exceedance", "member"]
    if target is not None:
        stats.append("truth")
    statistic = c2.radio("Show", stats, key="statistic")
    lead = lead_names.index(c2.select_slider("Lead time", lead_names, key="lead"))
    quant = c2.slider(
        "Quantile", 0.01, 0.99, 0.9, 0.01, key="quantile", disabled=statistic != "quantile"
    )
    member = int(
        c2.number_input("Member", 0, members - 1, 0, key="member", disabled=statistic != "member")
    )
    c2.caption("Press Play under the map to animate the lead times.")
    try:
        field = q.ensemble_statistic(
            ens, variable, statistic, quantile=quant, threshold=threshold, member=member, truth=ds
        )
        zr = q.color_range(field, statistic)
    except ForecastError as err:
        c1.error(str(err))
        return
    what_units = f"P(> {threshold:.3g} {units})" if statistic == "exceedance" else units
    title = f"{statistic} of {variable} ({what_units})"
    if network:
        x, y, how_laid = q.node_positions(ds)
        fig = fg.network_figure(
            field,
            x,
            y,
            q.network_edges(ds),
            title=title,
            statistic=statistic,
            zrange=zr,
            layout_kind=how_laid,
            start=lead,
        )
    else:
        fig = fg.map_figure(field, title=title, statistic=statistic, zrange=zr, start=lead)
    c1.plotly_chart(fig, key="main_map")
    # lazy like the tabs: the stamps are built only while the expander is open
    stamps_box = st.expander(
        "Postage stamps (first 12 members at this lead)",
        expanded=False,
        key="stamps_open",
        on_change="rerun",
    )
    if stamps_box.open:
        with stamps_box:
            stamps = q.postage_stamps(ens, variable, lead, 12)
            st.plotly_chart(
                fg.stamps_figure(
                    stamps, positions=positions, title=f"{variable}, lead {lead_names[lead]}"
                ),
                key="stamps",
            )


# ------------------------------------------------------------------------------------------
# point / sensor
# ------------------------------------------------------------------------------------------
def point_tab() -> None:
    one, whole = ("this sensor", "network mean") if network else ("this point", "area mean")
    on_area = st.radio("Where", [one, whole], key="where", horizontal=True) == whole
    place = None if on_area else point  # None: the area mean
    at = f"of the {q.area_text(ens)}" if on_area else f"at {where}"
    series = q.place_series(ens, variable, place)
    ctx = q.context_window(ds, issue, protocol.context)
    history = q.place_series(ctx, variable, place)
    truth = None if target is None else q.place_series(target, variable, place)
    if on_area:
        st.caption(
            f"The {q.area_text(ens)}. Its spread is only as good as the members' spatial "
            "structure: members that vary independently from point to point (the GP, most pools) "
            "make it far too narrow; `forecast schaake` reorders a model's members into "
            "observed patterns (docs/diffusion.md)."
        )
    else:
        st.caption(f"At {where} (change the place in the sidebar).")
    c1, c2 = st.columns(2)
    c1.plotly_chart(
        fg.plume_figure(series, history=history, truth=truth, title=f"Plume {at}"),
        key="plume",
    )
    c2.plotly_chart(
        fg.fan_figure(
            q.fan_quantiles(series), history=history, truth=truth, title=f"Fan chart {at}"
        ),
        key="fan",
    )
    st.plotly_chart(fg.epsgram_figure(series, title=f"EPSgram {at}"), key="epsgram")


# ------------------------------------------------------------------------------------------
# scores
# ------------------------------------------------------------------------------------------
def scores_tab() -> None:
    found = q.list_scorecards(dp.data_roots())
    kinds = ["computed here on test issue times", *(str(p) for p in found)]
    src = st.selectbox("Scores from", kinds, key="score_source")
    diag = None
    if src == kinds[0]:
        n_issues = st.slider(
            "Test issue times", 2, min(24, len(issues)), min(6, len(issues)), key="n_issues"
        )
        step = max(1, len(issues) // n_issues)
        picked = tuple(str(t) for t in issues[::step][:n_issues])
        refs = {
            k: fitted_model(k, data_key, ds, protocol)
            for k in ("climatology", "persistence")
            if not (how == "fit" and what == k)
        }
        try:
            card, diag = scores(
                (model_key, *refs),
                data_key,
                picked,
                members,
                seed,
                float(threshold),
                {model_name: model, **refs},
                ds,
            )
        except ForecastError as err:
            fail(err, "Fix: pick fewer issue times or another model.")
        st.caption(
            f"{len(picked)} test issue times × {members} members; event threshold "
            f"{threshold:.3g} {units}; climatology and persistence fitted on the fly."
        )
        name = variable
    else:
        try:
            card = q.open_scorecard(src)
        except ForecastError as err:
            fail(err, "Fix: write a scorecard with `forecast evaluate --protocol ... --out DIR`.")
        name = variable if variable in card else None
    c1, c2 = st.columns(2)
    crps = q.metric_by_lead(card, "crps", name)
    c1.plotly_chart(
        fg.by_lead_figure(crps, title="CRPS by lead time", ytitle=f"CRPS ({units})"), key="crps"
    )
    try:
        crpss = q.skill_score(card, "crps", "climatology", name)
        c2.plotly_chart(
            fg.by_lead_figure(
                crpss, title="CRPSS vs climatology", ytitle="CRPSS", reference_line=0.0
            ),
            key="crpss",
        )
    except ForecastError as err:
        c2.info(str(err))
    c3, c4 = st.columns(2)
    c3.plotly_chart(
        fg.spread_skill_figure(
            q.metric_by_lead(card, "spread", name), q.metric_by_lead(card, "rmse", name)
        ),
        key="spread_skill",
    )
    if diag is not None:
        d = diag[variable].sel(model=model_name)
        c4.plotly_chart(
            fg.rank_histogram_figure(
                d["rank_frequency"].dropna("rank").values, title=f"Rank histogram, {model_name}"
            ),
            key="rank_hist",
        )
        st.plotly_chart(
            fg.reliability_figure(
                d["forecast_probability"].values,
                d["observed_frequency"].values,
                d["count"].values,
                title=f"Reliability of P({variable} > {diag[variable].attrs['threshold']:.3g} "
                f"{units}), {model_name}",
            ),
            key="reliability",
        )
    if "area_crps" in card[METRIC].values:  # scorecards from before 2026-12-07 lack it
        c5, c6 = st.columns(2)
        area = "network mean" if network else "area mean"
        c5.plotly_chart(
            fg.by_lead_figure(
                q.metric_by_lead(card, "area_crps", name),
                title=f"CRPS of the {area}",
                ytitle=f"CRPS ({units})",
            ),
            key="area_crps",
        )
        c6.plotly_chart(
            fg.by_lead_figure(
                q.metric_by_lead(card, "area_spread_skill", name),
                title=f"Spread-skill ratio of the {area}",
                ytitle="spread / RMSE (1: calibrated)",
                reference_line=1.0,
            ),
            key="area_spread_skill",
        )
        c5.caption(
            f"The {area} of each member against that of the truth (cos-latitude weighted on a "
            "lat/lon grid): members without the truth's spatial structure score badly here "
            "even with good per-point scores."
        )
    table = crps.to_pandas().T
    table.index = q.lead_labels(table.index.values)
    st.dataframe(table)
    if src != kinds[0]:
        try:
            sig = q.open_significance(src)
        except ForecastError as err:
            st.warning(str(err))
            sig = None
        if sig is not None:
            st.subheader("Against the best baseline at each lead")
            st.caption(
                "CRPS difference to the best baseline at that lead, relative to it; better / "
                "worse: the 95 % interval of a modified Diebold-Mariano test lies below / "
                "above 0 (n.s.: it does not). From the run's significance.csv."
            )
            st.dataframe(q.significance_pivot(sig, name), key="significance")


# ------------------------------------------------------------------------------------------
# latent explorer
# ------------------------------------------------------------------------------------------
def scenario_name(s: object) -> str:
    return "observed (inversion)" if s == "observed" else f"member {s}"


def latent_tab() -> None:
    st.caption(
        "Generation maps a Gaussian latent to a forecast. Walk the great-circle (slerp) "
        "path between two scenarios' latents and compare each decoded field with the "
        "straight blend of the two end fields: the blend loses variance mid-way, the "
        "latent path stays realistic."
    )
    part = ""
    if latent_parts != [""]:
        part = st.selectbox(
            "Pool model",
            latent_parts,
            key="latent_part",
            on_change=reset_view,
            args=(("scen_a", "scen_b", "path_pos"),),
            help="A pool has no latent space of its own: the path walks one model's latent "
            "space, between two of the members that model drew (or the observed scenario).",
        )
    scen: list[object] = q.part_members(model, part, members)[:20]
    if target is not None:
        scen = ["observed", *scen]
    if len(scen) < 2:
        st.info("A path needs two scenarios: raise the number of members.")
        return
    c1, c2, c3 = st.columns(3)
    a = c1.selectbox("Scenario A", scen, index=0, key="scen_a", format_func=scenario_name)
    b = c2.selectbox("Scenario B", scen, index=1, key="scen_b", format_func=scenario_name)
    steps = int(c3.number_input("Points on the path", 3, 21, 9, key="path_steps"))
    try:
        path, blend, pr, br = latent_path(
            model_key, data_key, issue, members, seed, a, b, steps, part, model, ds
        )
    except ForecastError as err:
        fail(err, "Fix: pick other scenarios or another issue time.")
    c1, c2 = st.columns(2)
    pos = c1.slider("Position along the path", 0, steps - 1, steps // 2, key="path_pos")
    plead = lead_names.index(c2.select_slider("Lead time", lead_names, key="path_lead"))
    st.plotly_chart(
        fg.latent_path_figure(
            path[variable].isel({LEAD_TIME: plead}),
            blend[variable].isel({LEAD_TIME: plead}),
            pos,
            positions=positions,
            title=f"{variable}, lead {lead_names[plead]}",
        ),
        key="latent_panels",
    )
    t = path[PATH].values
    c1, c2 = st.columns(2)
    c1.plotly_chart(
        fg.variance_ratio_figure(
            pr[variable].values, br[variable].values, t, current=float(t[pos])
        ),
        key="latent_ratio",
    )
    c2.plotly_chart(
        fg.path_plume_figure(
            path[variable].sel(q.point_index(path, point)), pos, title=f"Path plume at {where}"
        ),
        key="latent_plume",
    )
    st.download_button(
        "Download the path as NetCDF",
        q.path_netcdf_bytes(path, blend, pr, br),
        file_name="latent_path.nc",
        mime="application/x-netcdf",
        key="path_download",
    )


# ------------------------------------------------------------------------------------------
# export
# ------------------------------------------------------------------------------------------
def export_tab() -> None:
    st.write(
        f"The ensemble shown: {facts['members']} members × {facts['leads']} leads, "
        f"{facts['space']}, issued {facts['init_time']:%Y-%m-%d %H:%M}, as CF-1.8 "
        "NetCDF (`forecast.export.to_netcdf`; read it back with "
        "`forecast.export.open_ensemble`)."
    )
    try:
        data = export_bytes(
            model_key, data_key, issue, members, seed, ens, model_name, sampler, nfe
        )
    except ForecastError as err:
        st.error(str(err))
        return
    st.download_button(
        "Download ensemble NetCDF",
        data,
        file_name=f"ensemble_{pd.Timestamp(issue):%Y%m%dT%H%M}.nc",
        mime="application/x-netcdf",
        key="download",
    )
    st.caption(f"{len(data) / 1e6:.2f} MB; `{MEMBER}` is written as CF `realization`.")


BODIES = {
    tab_names[0]: maps_tab,
    tab_names[1]: point_tab,
    "Scores": scores_tab,
    "Latent explorer": latent_tab,
    "Export": export_tab,
}
for name, tab in tabs.items():
    if tab.open:
        with tab:
            BODIES[name]()
