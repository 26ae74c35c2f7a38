"""CF-1.8 ensemble NetCDF and Zarr export and reading, ensemble summaries. No torch."""

from forecast.export.netcdf import open_ensemble, to_netcdf
from forecast.export.summary import QUANTILES, summarize
from forecast.export.zarr_store import is_zarr_path, to_zarr

__all__ = ["QUANTILES", "is_zarr_path", "open_ensemble", "summarize", "to_netcdf", "to_zarr"]
