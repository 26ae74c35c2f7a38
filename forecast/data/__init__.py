"""The data layer: open files and named data sets as standard xarray data sets, describe them.

See ``docs/data.md`` for the standard data set and the readers, and ``docs/architecture.md``
for the contracts the rest of the package relies on.
"""

from forecast.data.catalog import DATASETS, NamedDataset, data_dir
from forecast.data.describe import (
    check_compatible,
    check_time_axis,
    data_variables,
    describe_dataset,
    format_summary,
    summarize,
    time_step,
)
from forecast.data.sources import (
    FORMATS,
    open_dataset,
    read_adjacency,
    read_sensor_csv,
    read_sensor_hdf,
    sensor_dataset,
)

__all__ = [
    "DATASETS",
    "FORMATS",
    "NamedDataset",
    "check_compatible",
    "check_time_axis",
    "data_dir",
    "data_variables",
    "describe_dataset",
    "format_summary",
    "open_dataset",
    "read_adjacency",
    "read_sensor_csv",
    "read_sensor_hdf",
    "sensor_dataset",
    "summarize",
    "time_step",
]

# --- synthetic data, windows, protocols, normalization (issue 2, second half) ---------------
from forecast.data.normalize import Normalizer
from forecast.data.protocols import PROTOCOLS, Protocol, chronological, get_protocol
from forecast.data.synthetic import synthetic_traffic, synthetic_weather
from forecast.data.windows import (
    Windows,
    calendar_features,
    context_of,
    make_windows,
    target_of,
)

__all__ += [
    "PROTOCOLS",
    "LazyWindowDataset",
    "Normalizer",
    "Protocol",
    "WindowDataset",
    "Windows",
    "calendar_features",
    "chronological",
    "context_of",
    "ensemble_from_array",
    "get_protocol",
    "make_windows",
    "synthetic_traffic",
    "synthetic_weather",
    "target_of",
    "to_array",
]

#: Names of forecast.data.torch, imported on first use so that ``import forecast.data`` (and the
#: scoring / export code that uses it) does not import torch.
_TORCH_NAMES = ("WindowDataset", "ensemble_from_array", "to_array", "LazyWindowDataset")


def __getattr__(name: str) -> object:
    if name in _TORCH_NAMES:
        from forecast.data import torch as _torch_boundary

        return getattr(_torch_boundary, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
