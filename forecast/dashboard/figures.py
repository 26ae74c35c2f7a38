"""Plotly figure builders of the dashboard: pure functions from xarray/numpy to figures.

Each builder takes the output of a :mod:`forecast.dashboard.queries` function and returns a
``plotly.graph_objects.Figure``; nothing here calls Streamlit, so the traces can be tested.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import xarray as xr
from plotly.subplots import make_subplots

from forecast.dims import (
    LEAD_TIME,
    MEMBER,
    MODEL,
    NODE,
    PATH,
    QUANTILE,
    SOURCE_MODEL,
    TIME,
    space_dims,
)
from forecast.errors import ForecastError

from .queries import box_stats, lead_labels

#: Colour scales per statistic: sequential for values, a probability scale for exceedance.
COLORSCALES = {
    "mean": "RdBu_r",
    "quantile": "RdBu_r",
    "member": "RdBu_r",
    "truth": "RdBu_r",
    "spread": "Viridis",
    "exceedance": "Blues",
}
MODEL_COLORS = (
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#9467bd",
    "#ff7f0e",
    "#8c564b",
    "#e377c2",
    "#17becf",
)


#: Colour of the ensemble mean in plumes (the members take the other MODEL_COLORS).
MEAN_COLOR = "#d62728"


def _rgba(color: str, alpha: float) -> str:
    """``#rrggbb`` -> ``rgba(r,g,b,alpha)``."""
    r, g, b = (int(color[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def _units(da: xr.DataArray) -> str:
    return str(da.attrs.get("units", ""))


def _grid_xy(field: xr.DataArray) -> tuple[str, str]:
    space = space_dims(field)
    if len(space) != 2:
        raise ForecastError(f"a map needs a 2-D grid, got dims {tuple(field.dims)}")
    return space[1], space[0]  # x = lon / x, y = lat / y


def grid_heatmap(field: xr.DataArray, lo: float, hi: float, **kw: object) -> go.Heatmap:
    """Heatmap trace of a 2-D grid field (x = lon / x, y = lat / y) on the colour range
    ``lo..hi``; ``kw`` go to ``go.Heatmap`` (colour scale ``RdBu_r`` unless given)."""
    xdim, ydim = _grid_xy(field)
    f2 = field.transpose(ydim, xdim)
    kw.setdefault("colorscale", "RdBu_r")
    return go.Heatmap(z=f2.values, x=f2[xdim].values, y=f2[ydim].values, zmin=lo, zmax=hi, **kw)


def map_figure(
    field: xr.DataArray,
    *,
    title: str = "",
    statistic: str = "mean",
    zrange: tuple[float, float] | None = None,
    start: int = 0,
) -> go.Figure:
    """Heatmap of a 2-D field (dims ``(lat, lon)`` or ``(y, x)``).

    With a ``lead_time`` dim as well, the figure gets one animation frame per lead, a play
    button and a lead slider; frame ``start`` is shown first.
    """
    xdim, ydim = _grid_xy(field)
    scale = COLORSCALES.get(statistic, "RdBu_r")
    if zrange is None:
        zrange = (float(field.min()), float(field.max()))
    colorbar = {"title": {"text": _units(field)}}

    def heat(f2: xr.DataArray) -> go.Heatmap:
        return grid_heatmap(
            f2,
            *zrange,
            colorscale=scale,
            colorbar=colorbar,
            hovertemplate=f"{xdim} %{{x}}<br>{ydim} %{{y}}<br>%{{z:.3g}} {_units(field)}"
            "<extra></extra>",
        )

    layout = {
        "title": {"text": title},
        "xaxis": {"title": {"text": xdim}},
        "yaxis": {"title": {"text": ydim}, "scaleanchor": "x"},
        "margin": {"t": 50, "b": 40},
        "height": 560,
    }
    if LEAD_TIME not in field.dims:
        return go.Figure(heat(field), layout=layout)
    labels = lead_labels(field[LEAD_TIME].values)
    frames = [
        go.Frame(data=[heat(field.isel({LEAD_TIME: i}))], name=lab) for i, lab in enumerate(labels)
    ]
    return _animated(frames, labels, start, layout)


def _animated(frames: list[go.Frame], labels: list[str], start: int, layout: dict) -> go.Figure:
    """A figure showing frame ``start`` with Play / Pause buttons and a lead slider."""
    if not 0 <= start < len(frames):
        raise ForecastError(f"lead index {start} outside 0..{len(frames) - 1}")
    fig = go.Figure(data=frames[start].data, frames=frames, layout=layout)
    fig.update_layout(
        updatemenus=[
            {
                "type": "buttons",
                "showactive": False,
                "x": 0.0,
                "y": -0.22,
                "xanchor": "left",
                "yanchor": "top",
                "direction": "right",
                "buttons": [
                    {
                        "label": "Play",
                        "method": "animate",
                        "args": [
                            None,
                            {
                                "frame": {"duration": 400, "redraw": True},
                                "fromcurrent": True,
                                "transition": {"duration": 0},
                            },
                        ],
                    },
                    {
                        "label": "Pause",
                        "method": "animate",
                        "args": [
                            [None],
                            {"frame": {"duration": 0, "redraw": False}, "mode": "immediate"},
                        ],
                    },
                ],
            }
        ],
        sliders=[
            {
                "active": int(start),
                "x": 0.25,
                "len": 0.75,
                "y": -0.16,
                "yanchor": "top",
                "currentvalue": {"prefix": "lead "},
                "steps": [
                    {
                        "label": lab,
                        "method": "animate",
                        "args": [
                            [lab],
                            {"frame": {"duration": 0, "redraw": True}, "mode": "immediate"},
                        ],
                    }
                    for lab in labels
                ],
            }
        ],
    )
    return fig


def stamps_figure(
    stamps: xr.DataArray,
    *,
    cols: int = 4,
    title: str = "",
    positions: tuple[np.ndarray, np.ndarray] | None = None,
) -> go.Figure:
    """Postage stamps: one small panel per member, all on one colour range.

    ``stamps`` has dims ``(member, *grid)``, or ``(member, node)`` with ``positions = (x, y)``
    of the sensors.
    """
    network = space_dims(stamps) == (NODE,)
    if network and positions is None:
        raise ForecastError("sensor positions are needed for network postage stamps")
    n = stamps.sizes[MEMBER]
    cols = max(1, min(cols, n))
    rows = int(np.ceil(n / cols))
    names = [f"member {int(m)}" for m in stamps[MEMBER].values]
    fig = make_subplots(
        rows=rows,
        cols=cols,
        subplot_titles=names,
        horizontal_spacing=0.02,
        vertical_spacing=0.06,
    )
    lo, hi = float(stamps.min()), float(stamps.max())
    for k in range(n):
        one = stamps.isel({MEMBER: k})
        if network:
            trace = go.Scatter(
                x=positions[0],
                y=positions[1],
                mode="markers",
                name=names[k],
                marker={
                    "color": one.values,
                    "cmin": lo,
                    "cmax": hi,
                    "colorscale": "RdBu_r",
                    "size": 5,
                    "showscale": k == 0,
                    "colorbar": {"title": {"text": _units(stamps)}},
                },
            )
        else:
            trace = grid_heatmap(
                one,
                lo,
                hi,
                showscale=k == 0,
                name=names[k],
                colorbar={"title": {"text": _units(stamps)}},
            )
        fig.add_trace(trace, row=k // cols + 1, col=k % cols + 1)
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False)
    fig.update_layout(
        title={"text": title},
        height=max(250, 180 * rows),
        showlegend=False,
        margin={"t": 60, "l": 10, "r": 10, "b": 10},
    )
    return fig


def network_figure(
    values: xr.DataArray,
    x: np.ndarray,
    y: np.ndarray,
    edges: Sequence[tuple[int, int]] = (),
    *,
    title: str = "",
    statistic: str = "mean",
    zrange: tuple[float, float] | None = None,
    layout_kind: str = "lat/lon",
    start: int = 0,
) -> go.Figure:
    """Sensors as coloured markers at ``(x, y)`` with grey links; ``values`` has dim ``node``.

    With a ``lead_time`` dim as well, one animation frame per lead (Play button and lead
    slider), frame ``start`` shown first.
    """
    space = tuple(d for d in values.dims if d != LEAD_TIME)
    if space != (NODE,):
        raise ForecastError(f"the network view needs values over (node,), got {values.dims}")
    if zrange is None:
        zrange = (float(values.min()), float(values.max()))
    ex: list[float | None] = []
    ey: list[float | None] = []
    for i, j in edges:
        ex += [float(x[i]), float(x[j]), None]
        ey += [float(y[i]), float(y[j]), None]
    links = go.Scatter(
        x=ex,
        y=ey,
        mode="lines",
        line={"color": "#bbbbbb", "width": 1},
        hoverinfo="skip",
        name="links",
        showlegend=False,
    )
    ids = [str(v) for v in values[NODE].values]

    def sensors(v: xr.DataArray) -> go.Scatter:
        return go.Scatter(
            x=np.asarray(x),
            y=np.asarray(y),
            mode="markers",
            name="sensors",
            text=ids,
            marker={
                "color": v.values,
                "colorscale": COLORSCALES.get(statistic, "RdBu_r"),
                "cmin": zrange[0],
                "cmax": zrange[1],
                "size": 11,
                "line": {"width": 0.5, "color": "#333"},
                "colorbar": {"title": {"text": _units(values)}},
            },
            hovertemplate="sensor %{text}<br>%{marker.color:.3g} "
            + _units(values)
            + "<extra></extra>",
        )

    axis = ("lon", "lat") if layout_kind == "lat/lon" else ("graph layout 1", "graph layout 2")
    layout = {
        "title": {"text": title},
        "xaxis": {"title": {"text": axis[0]}},
        "yaxis": {"title": {"text": axis[1]}},
        "margin": {"t": 50},
        "showlegend": False,
    }
    if LEAD_TIME not in values.dims:
        return go.Figure([links, sensors(values)], layout=layout)
    labels = lead_labels(values[LEAD_TIME].values)
    frames = [
        go.Frame(data=[links, sensors(values.isel({LEAD_TIME: i}))], name=lab)
        for i, lab in enumerate(labels)
    ]
    layout["height"] = 560
    return _animated(frames, labels, start, layout)


def _valid_times(series: xr.DataArray) -> np.ndarray:
    if "valid_time" in series.coords:
        return pd.DatetimeIndex(np.atleast_1d(series["valid_time"].values)).values
    return series[LEAD_TIME].values


def _history_traces(
    fig: go.Figure, history: xr.DataArray | None, truth: xr.DataArray | None
) -> None:
    if history is not None:
        fig.add_trace(
            go.Scatter(
                x=history[TIME].values,
                y=history.values,
                mode="lines",
                name="observed (context)",
                line={"color": "black", "width": 2},
            )
        )
    if truth is not None:
        fig.add_trace(
            go.Scatter(
                x=truth[TIME].values,
                y=truth.values,
                mode="lines+markers",
                name="truth",
                line={"color": "black", "width": 2, "dash": "dot"},
                marker={"size": 4},
            )
        )


def plume_figure(
    series: xr.DataArray,
    *,
    history: xr.DataArray | None = None,
    truth: xr.DataArray | None = None,
    title: str = "",
) -> go.Figure:
    """Spaghetti plot: one line per member over valid time (``series`` dims (member, lead)).

    A pool's members (coordinate ``source_model``) are coloured by the model that drew them,
    one legend entry per model.
    """
    xs = _valid_times(series)
    fig = go.Figure()
    sources = series.coords.get(SOURCE_MODEL)
    if sources is not None and sources.dims == (MEMBER,):
        groups = [str(v) for v in sources.values]
    else:
        groups = ["members"] * series.sizes[MEMBER]
    order = list(dict.fromkeys(groups))
    palette = [c for c in MODEL_COLORS if c != MEAN_COLOR]
    for k, m in enumerate(series[MEMBER].values):
        group = groups[k]
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=series.isel({MEMBER: k}).values,
                mode="lines",
                name=group if order != ["members"] else f"member {int(m)}",
                hovertext=f"member {int(m)}",
                line={"width": 1, "color": _rgba(palette[order.index(group) % len(palette)], 0.45)},
                showlegend=groups.index(group) == k,
                legendgrouptitle={"text": "members"} if k == 0 else None,
                legendgroup=group,
            )
        )
    fig.add_trace(
        go.Scatter(
            x=xs,
            y=series.mean(MEMBER).values,
            mode="lines",
            name="ensemble mean",
            line={"color": MEAN_COLOR, "width": 2.5},
        )
    )
    _history_traces(fig, history, truth)
    fig.update_layout(
        title={"text": title},
        yaxis={"title": {"text": _units(series)}},
        xaxis={"title": {"text": "valid time"}},
        margin={"t": 50},
    )
    return fig


def fan_figure(
    quantiles: xr.DataArray,
    *,
    history: xr.DataArray | None = None,
    truth: xr.DataArray | None = None,
    title: str = "",
) -> go.Figure:
    """Fan chart: 5-95 % and 25-75 % bands and the median (``quantiles`` dims (quantile, lead))."""
    q = [float(v) for v in quantiles[QUANTILE].values]
    needed = (0.05, 0.25, 0.5, 0.75, 0.95)
    missing = [v for v in needed if not np.isclose(q, v).any()]
    if missing:
        raise ForecastError(f"fan chart needs quantiles {needed}; missing {missing}")

    def at(v: float) -> np.ndarray:
        return quantiles.isel({QUANTILE: int(np.argmin(np.abs(np.asarray(q) - v)))}).values

    xs = _valid_times(quantiles)
    fig = go.Figure()
    for lo, hi, color, name in (
        (0.05, 0.95, "rgba(31,119,180,0.18)", "5-95 %"),
        (0.25, 0.75, "rgba(31,119,180,0.40)", "25-75 %"),
    ):
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=at(lo),
                mode="lines",
                line={"width": 0},
                showlegend=False,
                hoverinfo="skip",
                name=f"{name} low",
            )
        )
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=at(hi),
                mode="lines",
                line={"width": 0},
                fill="tonexty",
                fillcolor=color,
                name=name,
            )
        )
    fig.add_trace(
        go.Scatter(
            x=xs, y=at(0.5), mode="lines", name="median", line={"color": "#1f77b4", "width": 2.5}
        )
    )
    _history_traces(fig, history, truth)
    fig.update_layout(
        title={"text": title},
        yaxis={"title": {"text": _units(quantiles)}},
        xaxis={"title": {"text": "valid time"}},
        margin={"t": 50},
    )
    return fig


def epsgram_figure(series: xr.DataArray, *, title: str = "") -> go.Figure:
    """EPSgram: one box per lead (min, quartiles, median, max over members) and the mean."""
    stats = box_stats(series)
    labels = lead_labels(series[LEAD_TIME].values)
    fig = go.Figure(
        go.Box(
            x=labels,
            q1=stats["q1"],
            median=stats["median"],
            q3=stats["q3"],
            lowerfence=stats["min"],
            upperfence=stats["max"],
            mean=stats["mean"],
            name="members",
            boxpoints=False,
            marker={"color": "#1f77b4"},
        )
    )
    fig.update_layout(
        title={"text": title},
        yaxis={"title": {"text": _units(series)}},
        xaxis={"title": {"text": "lead time"}},
        margin={"t": 50},
    )
    return fig


def _lead_hours(lead: Any) -> np.ndarray:
    return pd.to_timedelta(np.asarray(lead)).total_seconds().to_numpy() / 3600.0


def by_lead_figure(
    arr: xr.DataArray, *, title: str = "", ytitle: str = "", reference_line: float | None = None
) -> go.Figure:
    """One line per model over lead time (``arr`` dims (model, lead_time)); e.g. CRPS, CRPSS."""
    arr = arr.transpose(MODEL, LEAD_TIME)
    hours = _lead_hours(arr[LEAD_TIME].values)
    fig = go.Figure()
    for k, m in enumerate(arr[MODEL].values):
        fig.add_trace(
            go.Scatter(
                x=hours,
                y=arr.isel({MODEL: k}).values,
                mode="lines+markers",
                name=str(m),
                line={"color": MODEL_COLORS[k % len(MODEL_COLORS)]},
            )
        )
    if reference_line is not None:
        fig.add_hline(y=reference_line, line={"dash": "dash", "color": "grey"})
    fig.update_layout(
        title={"text": title},
        xaxis={"title": {"text": "lead time (h)"}},
        yaxis={"title": {"text": ytitle}},
        margin={"t": 50},
    )
    return fig


def rank_histogram_figure(counts: Any, *, title: str = "Rank histogram") -> go.Figure:
    """Bars of the rank counts, as relative frequency, with the flat line ``1 / bins``."""
    c = np.asarray(counts, dtype=float)
    freq = c / c.sum() if c.sum() > 0 else c
    fig = go.Figure(
        go.Bar(
            x=np.arange(1, len(c) + 1), y=freq, name="observed rank", marker={"color": "#1f77b4"}
        )
    )
    fig.add_hline(y=1.0 / len(c), line={"dash": "dash", "color": "grey"})
    fig.update_layout(
        title={"text": title},
        xaxis={"title": {"text": "rank of observation"}},
        yaxis={"title": {"text": "relative frequency"}},
        margin={"t": 50},
    )
    return fig


def spread_skill_figure(
    spread: xr.DataArray, rmse: xr.DataArray, *, title: str = "Spread and skill"
) -> go.Figure:
    """Ensemble spread (dashed) and RMSE of the mean (solid) by lead; dims (model, lead_time)."""
    spread = spread.transpose(MODEL, LEAD_TIME)
    rmse = rmse.transpose(MODEL, LEAD_TIME)
    hours = _lead_hours(spread[LEAD_TIME].values)
    fig = go.Figure()
    for k, m in enumerate(spread[MODEL].values):
        color = MODEL_COLORS[k % len(MODEL_COLORS)]
        fig.add_trace(
            go.Scatter(
                x=hours,
                y=rmse.isel({MODEL: k}).values,
                mode="lines+markers",
                name=f"{m} RMSE",
                line={"color": color},
            )
        )
        fig.add_trace(
            go.Scatter(
                x=hours,
                y=spread.isel({MODEL: k}).values,
                mode="lines",
                name=f"{m} spread",
                line={"color": color, "dash": "dash"},
            )
        )
    fig.update_layout(
        title={"text": title}, xaxis={"title": {"text": "lead time (h)"}}, margin={"t": 50}
    )
    return fig


def reliability_figure(
    forecast_prob: Any, observed_freq: Any, counts: Any, *, title: str = "Reliability"
) -> go.Figure:
    """Observed frequency against forecast probability per bin, the diagonal, and bin counts."""
    p = np.asarray(forecast_prob, float)
    o = np.asarray(observed_freq, float)
    n = np.asarray(counts, float)
    fig = make_subplots(
        rows=2, cols=1, row_heights=[0.75, 0.25], shared_xaxes=True, vertical_spacing=0.05
    )
    fig.add_trace(
        go.Scatter(
            x=[0, 1], y=[0, 1], mode="lines", name="perfect", line={"dash": "dash", "color": "grey"}
        ),
        row=1,
        col=1,
    )
    fig.add_trace(
        go.Scatter(x=p, y=o, mode="lines+markers", name="forecast", line={"color": "#1f77b4"}),
        row=1,
        col=1,
    )
    fig.add_trace(go.Bar(x=p, y=n, name="count", marker={"color": "#999"}), row=2, col=1)
    fig.update_layout(title={"text": title}, margin={"t": 50})
    fig.update_xaxes(title={"text": "forecast probability"}, range=[0, 1], row=2, col=1)
    fig.update_yaxes(title={"text": "observed frequency"}, range=[0, 1], row=1, col=1)
    return fig


def latent_path_figure(
    path: xr.DataArray,
    blend: xr.DataArray,
    index: int,
    *,
    positions: tuple[np.ndarray, np.ndarray] | None = None,
    title: str = "",
) -> go.Figure:
    """Decoded field along the latent path beside the straight blend, at path step ``index``.

    ``path`` and ``blend`` have dims ``(path, *space)`` (one lead); for sensor networks pass
    ``positions = (x, y)`` of the nodes.
    """
    if index < 0 or index >= path.sizes[PATH]:
        raise ForecastError(f"path step {index} outside 0..{path.sizes[PATH] - 1}")
    t = float(path[PATH].values[index])
    lo = float(min(path.min(), blend.min()))
    hi = float(max(path.max(), blend.max()))
    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=(f"latent path (slerp), t = {t:.2f}", f"straight blend, t = {t:.2f}"),
    )
    for col, da in ((1, path), (2, blend)):
        f = da.isel({PATH: index})
        if space_dims(f) == (NODE,):
            if positions is None:
                raise ForecastError("sensor positions are needed to draw a network path")
            fig.add_trace(
                go.Scatter(
                    x=positions[0],
                    y=positions[1],
                    mode="markers",
                    marker={
                        "color": f.values,
                        "cmin": lo,
                        "cmax": hi,
                        "colorscale": "RdBu_r",
                        "size": 9,
                        "showscale": col == 1,
                    },
                ),
                row=1,
                col=col,
            )
        else:
            fig.add_trace(
                grid_heatmap(
                    f,
                    lo,
                    hi,
                    showscale=col == 1,
                    colorbar={"title": {"text": _units(path)}},
                ),
                row=1,
                col=col,
            )
    fig.update_layout(title={"text": title}, showlegend=False, margin={"t": 70})
    return fig


def variance_ratio_figure(
    path_ratio: Any, blend_ratio: Any, t: Any, *, current: float | None = None
) -> go.Figure:
    """Anomaly variance along the path relative to its ends: slerp path against straight blend."""
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=np.asarray(t),
            y=np.asarray(path_ratio),
            mode="lines+markers",
            name="latent path",
            line={"color": "#1f77b4"},
        )
    )
    fig.add_trace(
        go.Scatter(
            x=np.asarray(t),
            y=np.asarray(blend_ratio),
            mode="lines+markers",
            name="straight blend",
            line={"color": "#d62728"},
        )
    )
    fig.add_hline(y=1.0, line={"dash": "dash", "color": "grey"})
    if current is not None:
        fig.add_vline(x=current, line={"color": "black", "width": 1})
    fig.update_layout(
        title={"text": "Anomaly variance relative to the ends"},
        xaxis={"title": {"text": "t along the path"}},
        yaxis={"title": {"text": "variance ratio"}},
        margin={"t": 50},
    )
    return fig


def path_plume_figure(path_series: xr.DataArray, index: int, *, title: str = "") -> go.Figure:
    """Plume of the decoded path at one point: one line per path step, the chosen one bold."""
    xs = _valid_times(path_series)
    fig = go.Figure()
    n = path_series.sizes[PATH]
    for k in range(n):
        t = float(path_series[PATH].values[k])
        chosen = k == index
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=path_series.isel({PATH: k}).values,
                mode="lines",
                name=f"t = {t:.2f}",
                line={
                    "width": 3 if chosen else 1,
                    "color": "#d62728" if chosen else f"rgba(31,119,180,{0.25 + 0.5 * k / n:.2f})",
                },
                showlegend=chosen or k in (0, n - 1),
            )
        )
    fig.update_layout(
        title={"text": title},
        yaxis={"title": {"text": _units(path_series)}},
        xaxis={"title": {"text": "valid time"}},
        margin={"t": 50},
    )
    return fig
