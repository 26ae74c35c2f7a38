"""Contiguous blocks of training windows for cross-fitting.

A training split of ``T`` steps has windows issued at ``context - 1 .. T - horizon - 1`` (index
of the last context step). :func:`fold_blocks` cuts those issue indices into ``folds``
contiguous blocks; :func:`hold_out` sets every step that a block's windows touch (context and
target) to NaN, so that a model fitted on the result has not seen any value of a held-out
window. Used by the out-of-fold first guesses (:func:`forecast.models.first_guess.
fit_folded_first_guess`) and the VAE's cross-fitted spread calibration.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np
import xarray as xr

from forecast.dims import TIME
from forecast.errors import ForecastError


@dataclass(frozen=True)
class Block:
    """Issue indices ``issues`` of one block and the steps ``[lo, hi)`` its windows touch."""

    issues: np.ndarray
    lo: int
    hi: int


def fold_blocks(n_steps: int, context: int, horizon: int, folds: int, what: str) -> list[Block]:
    """The ``folds`` contiguous blocks of the training windows of ``n_steps`` steps; ``what``
    names the setting in the error (e.g. ``"first_guess_folds"``)."""
    issues = np.arange(context - 1, n_steps - horizon)
    if folds < 2 or len(issues) < folds:
        raise ForecastError(
            f"{what} = {folds} needs 2 <= folds <= {len(issues)} (the number of training "
            "windows); pick a value in that range"
        )
    return [
        Block(block, int(block[0] - context + 1), int(block[-1] + horizon + 1))
        for block in np.array_split(issues, folds)
    ]


def hold_out(train: xr.Dataset, block: Block) -> xr.Dataset:
    """``train`` with every data variable NaN at the steps ``[block.lo, block.hi)``."""
    from forecast.data import data_variables

    index = xr.DataArray(np.arange(train.sizes[TIME]), dims=TIME)
    keep = (index < block.lo) | (index >= block.hi)
    masked = train.copy()
    for name in data_variables(train):
        masked[name] = train[name].where(keep)
    return masked


def fold_cache_key(config: dict, members: int, *datasets: xr.Dataset | None) -> str:
    """SHA-256 of a fold model's configuration, ensemble size and the data it is fitted on (every
    data variable's values and the time coordinate of each data set; None counts as absent):
    a cached fold result is reused only under the same key."""
    from forecast.data import data_variables

    digest = hashlib.sha256(json.dumps([config, members], sort_keys=True, default=str).encode())
    for ds in datasets:
        if ds is None:
            digest.update(b"none")
            continue
        digest.update(np.ascontiguousarray(ds[TIME].values).tobytes())
        for name in data_variables(ds):
            digest.update(name.encode())
            digest.update(np.ascontiguousarray(ds[name].values).tobytes())
    return digest.hexdigest()
