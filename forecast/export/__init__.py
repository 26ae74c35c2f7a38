"""CF-1.8 ensemble NetCDF export and reading, and ensemble summaries. Usable without torch."""

from forecast.export.netcdf import open_ensemble, to_netcdf
from forecast.export.summary import QUANTILES, summarize

__all__ = ["QUANTILES", "open_ensemble", "summarize", "to_netcdf"]
