"""Write a scorecard and its diagnostics to a folder: NetCDF, CSV, Markdown and PNG plots.

Shared by ``forecast evaluate --forecast ...`` and the protocol runner
(``forecast.pipeline.run_protocol``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import xarray as xr

from forecast.dims import METRIC
from forecast.scoring import plots
from forecast.scoring.scorecard import to_csv, to_netcdf, write_markdown


def write_report(
    scorecard_ds: xr.Dataset,
    diagnostics: Mapping[str, xr.Dataset] | None,
    out_dir: str | Path,
) -> dict[str, Path]:
    """Write ``scorecard.{nc,csv,md}``, ``diagnostics_<variable>.nc`` and the PNG plots.

    Parameters
    ----------
    scorecard_ds : xarray.Dataset
        Output of :func:`forecast.scoring.scorecard` (dims model, lead_time, metric).
    diagnostics : mapping of str to xarray.Dataset, optional
        Output of :func:`forecast.scoring.diagnostics`; None skips the rank-histogram and
        reliability plots.
    out_dir : str or pathlib.Path
        Folder (created if needed). Every file is written to a temporary name and renamed.

    Returns
    -------
    dict of str to pathlib.Path
        What was written: keys ``scorecard_nc``, ``scorecard_csv``, ``scorecard_md``,
        ``diagnostics_<variable>``, ``crps_by_lead``, ``spread_skill_by_lead``,
        ``rank_histograms``, ``reliability`` (plots only where their metrics are present).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = {
        "scorecard_nc": to_netcdf(scorecard_ds, out / "scorecard.nc"),
        "scorecard_csv": to_csv(scorecard_ds, out / "scorecard.csv"),
        "scorecard_md": write_markdown(scorecard_ds, out / "scorecard.md"),
    }
    metrics = set(str(m) for m in scorecard_ds[METRIC].values)
    if "crps" in metrics:
        written["crps_by_lead"] = plots.plot_metric_by_lead(
            scorecard_ds, "crps", out / "crps_by_lead.png", fair="crps_fair"
        )
    if {"rmse", "spread"} <= metrics:
        written["spread_skill_by_lead"] = plots.plot_spread_skill(
            scorecard_ds, out / "spread_skill_by_lead.png"
        )
    if diagnostics:
        for name, ds in diagnostics.items():
            written[f"diagnostics_{name}"] = to_netcdf(ds, out / f"diagnostics_{name}.nc")
        written["rank_histograms"] = plots.plot_rank_histograms(
            diagnostics, out / "rank_histograms.png"
        )
        written["reliability"] = plots.plot_reliability(diagnostics, out / "reliability.png")
    return written
