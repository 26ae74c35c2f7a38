"""PNG figures of a scorecard and its diagnostics (matplotlib, Agg backend, no display)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import xarray as xr

from forecast.dims import LEAD_TIME, METRIC, MODEL, RANK


def _figure(nplots: int, title: str) -> tuple[object, list]:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, nplots, figsize=(5 * nplots, 3.8), squeeze=False)
    fig.suptitle(title)
    return fig, list(axes[0])


def _save(fig: object, path: Path) -> Path:
    import matplotlib.pyplot as plt

    from forecast.scoring.scorecard import _atomic

    _atomic(path, lambda t: fig.savefig(t, dpi=100, format="png", bbox_inches="tight"))  # type: ignore[attr-defined]
    plt.close(fig)  # type: ignore[arg-type]
    return path


def _lead_hours(card: xr.Dataset) -> np.ndarray:
    lead = card[LEAD_TIME].values
    if np.issubdtype(lead.dtype, np.timedelta64):
        return lead / np.timedelta64(1, "h")
    return np.asarray(lead, dtype=float)


def plot_metric_by_lead(card: xr.Dataset, metric: str, path: Path, fair: str | None = None) -> Path:
    """One panel per variable: ``metric`` against lead time, one line per model.

    With ``fair`` (e.g. ``"crps_fair"``) that metric is drawn dashed in the same colour.
    """
    names = list(card.data_vars)
    fig, axes = _figure(len(names), f"{metric} by lead time")
    hours = _lead_hours(card)
    for ax, n in zip(axes, names, strict=True):
        for i, model in enumerate(card[MODEL].values):
            colour = f"C{i}"
            ax.plot(
                hours,
                card[n].sel({MODEL: model, METRIC: metric}),
                "o-",
                color=colour,
                label=str(model),
            )
            if fair is not None and fair in card[METRIC].values:
                ax.plot(
                    hours,
                    card[n].sel({MODEL: model, METRIC: fair}),
                    "--",
                    color=colour,
                    label=f"{model} ({fair})",
                )
        ax.set_xlabel("lead time (h)")
        ax.set_ylabel(f"{metric} of {n}")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_spread_skill(card: xr.Dataset, path: Path) -> Path:
    """Spread (dashed) and RMSE of the ensemble mean (solid) by lead time, per model."""
    names = list(card.data_vars)
    fig, axes = _figure(len(names), "spread (dashed) and RMSE of the mean (solid)")
    hours = _lead_hours(card)
    for ax, n in zip(axes, names, strict=True):
        for i, model in enumerate(card[MODEL].values):
            sel = card[n].sel({MODEL: model})
            ax.plot(hours, sel.sel({METRIC: "rmse"}), "o-", color=f"C{i}", label=str(model))
            ax.plot(hours, sel.sel({METRIC: "spread"}), "s--", color=f"C{i}")
        ax.set_xlabel("lead time (h)")
        ax.set_ylabel(str(n))
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_rank_histograms(diag: Mapping[str, xr.Dataset], path: Path) -> Path:
    """Rank histograms (relative frequency) per variable, models side by side."""
    fig, axes = _figure(len(diag), "rank histograms")
    for ax, (n, ds) in zip(axes, diag.items(), strict=True):
        models = list(ds[MODEL].values)
        width = 0.8 / len(models)
        for i, model in enumerate(models):
            freq = ds["rank_frequency"].sel({MODEL: model})
            ax.bar(ds[RANK].values + i * width, freq, width=width, label=str(model), color=f"C{i}")
            m = int(np.isfinite(freq.values).sum())
            ax.axhline(1.0 / m, color=f"C{i}", lw=0.8, ls=":")
        ax.set_xlabel("rank of the observation")
        ax.set_ylabel(f"frequency ({n})")
        ax.legend(fontsize=7)
    return _save(fig, path)


def plot_reliability(diag: Mapping[str, xr.Dataset], path: Path) -> Path:
    """Reliability diagram per variable: observed frequency against forecast probability."""
    fig, axes = _figure(len(diag), "reliability diagram")
    for ax, (n, ds) in zip(axes, diag.items(), strict=True):
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8)
        for i, model in enumerate(ds[MODEL].values):
            sel = ds.sel({MODEL: model})
            ok = sel["count"].values > 0
            ax.plot(
                sel["forecast_probability"].values[ok],
                sel["observed_frequency"].values[ok],
                "o-",
                color=f"C{i}",
                label=str(model),
            )
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("forecast probability")
        ax.set_ylabel(f"observed frequency ({n} > {ds.attrs.get('threshold', '?'):.4g})")
        ax.legend(fontsize=7)
        ax.set_xticks(np.linspace(0, 1, 6))
    return _save(fig, path)
