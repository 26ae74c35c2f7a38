"""benchmarks/bench_online_bias.py: the recent mean error it would remove, by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from forecast.dims import LAT, LON, TIME
from forecast.errors import ForecastError


def test_bias_sums_the_errors_verified_by_the_issue_time(load_script):
    bench = load_script("benchmarks/bench_online_bias.py")
    times = pd.date_range("2020-01-01", periods=40, freq="1h")
    rng = np.random.default_rng(0)
    truth = xr.DataArray(rng.normal(size=(40, 2, 3)), dims=(TIME, LAT, LON), coords={TIME: times})
    horizon, history = 3, 5
    # reference means issued at every hour: the truth minus (lead + issue hour / 100)
    means = np.zeros((40, horizon, 2, 3))
    for s in range(40 - horizon):
        for lead in range(1, horizon + 1):
            means[s, lead - 1] = truth.values[s + lead] - (lead + s / 100)
    index = {t: i for i, t in enumerate(times)}
    t = times[20]
    total, count = bench.bias(truth, means, index, t, horizon, history)
    # lead L: forecasts issued at 20 - k for k = L..5 (verified by hour 20)
    for lead in range(1, horizon + 1):
        issued = [20 - k for k in range(lead, history + 1)]
        assert count[lead - 1] == len(issued)
        np.testing.assert_allclose(total[lead - 1], sum(lead + s / 100 for s in issued))
    with pytest.raises(ForecastError, match="no reference forecast at"):
        bench.bias(truth, means, index, times[3], horizon, history)
