"""Numpy/numba kernels on plain arrays; the xarray layer in this package wraps them.

Every kernel takes the ensemble with the member axis LAST (any strides) and accumulates in
float64 whatever the input dtype. NaN conventions shared by all kernels:

- a NaN observation gives a NaN score at that point;
- ``skipna=False``: any NaN member gives a NaN score at that point;
- ``skipna=True``: NaN members are dropped point by point (the score uses the remaining
  members, as ``properscoring`` does); a point with no finite member gives NaN.

The CRPS kernel uses the sorted-members identity (``x_(1) <= ... <= x_(M)``)::

    CRPS      = (1/M) sum_i |x_i - y|  -  1/M^2      sum_i (2i - M - 1) x_(i)
    fair CRPS = (1/M) sum_i |x_i - y|  -  1/(M(M-1)) sum_i (2i - M - 1) x_(i)

Points are processed in blocks of a few thousand: each block of members is copied into a
small contiguous buffer, sorted in place by numpy (vectorized sorting networks for float32 and
float64), then reduced by a numba kernel. No temporary of the size of the input is created.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numba
import numpy as np

#: Values per block: the buffer (about BLOCK_VALUES x 4 bytes) stays in the L2 cache.
BLOCK_VALUES = 200_000

_FASTMATH = {"reassoc", "contract", "nsz", "arcp"}  # no 'nnan': NaN checks must survive


@numba.njit(nogil=True, cache=True, fastmath=_FASTMATH)
def _crps_sorted_block(xs, y, out, skipna):  # pragma: no cover - compiled
    """CRPS terms for a block of sorted ensembles ``xs (b, M)`` and observations ``y (b,)``.

    Writes ``out[p, 0] = standard CRPS``, ``out[p, 1] = fair CRPS`` (NaN when fewer than two
    members are available).
    """
    b, m = xs.shape
    for p in range(b):
        yv = np.float64(y[p])
        n = m
        while n > 0 and math.isnan(xs[p, n - 1]):
            n -= 1
        if math.isnan(yv) or n == 0 or (n < m and not skipna):
            out[p, 0] = np.nan
            out[p, 1] = np.nan
            continue
        s_abs = 0.0
        s_spread = 0.0
        for i in range(n):
            v = np.float64(xs[p, i])
            s_abs += abs(v - yv)
            s_spread += (2 * i - n + 1) * v
        mae = s_abs / n
        out[p, 0] = mae - s_spread / (n * n)
        out[p, 1] = mae - s_spread / (n * (n - 1)) if n > 1 else np.nan


def _as_points(a: np.ndarray, tail: int) -> np.ndarray | None:
    """View of ``a`` with its leading axes merged into one, or None when that needs a copy."""
    shape = (-1, *a.shape[a.ndim - tail :]) if tail else (-1,)
    try:
        return np.reshape(a, shape, copy=False)
    except ValueError:
        return None


def _blockwise(
    fn: Callable[[np.ndarray, np.ndarray, np.ndarray], None],
    x: np.ndarray,
    y: np.ndarray,
    nout: int,
) -> np.ndarray:
    """Apply ``fn(x2d, y1d, out)`` over all points of ``x (..., M)``, ``y (...)`` block by block.

    Returns float64 ``(..., nout)``. Leading axes are merged without copying when the strides
    allow it; otherwise the function recurses over the first axis (still no full copy).
    """
    lead = x.shape[:-1]
    y = np.broadcast_to(y, lead)
    out = np.empty((*lead, nout), dtype=np.float64)
    x2 = _as_points(x, 1)
    y1 = _as_points(y, 0)
    if x2 is None or y1 is None:
        for k in range(lead[0]):
            out[k] = _blockwise(fn, x[k], y[k], nout)
        return out
    out2 = out.reshape(-1, nout)
    npts, m = x2.shape
    block = max(64, BLOCK_VALUES // max(m, 1))
    buf = np.empty((min(block, max(npts, 1)), m), dtype=x2.dtype)
    for start in range(0, npts, block):
        stop = min(start + block, npts)
        blk = buf[: stop - start]
        np.copyto(blk, x2[start:stop])
        fn(blk, y1[start:stop], out2[start:stop])
    return out


def _float_dtype(a: np.ndarray) -> np.ndarray:
    """Keep float32/float64 as they are (sorting is exact); cast anything else to float64."""
    a = np.asarray(a)
    if a.dtype in (np.float32, np.float64):
        return a
    return a.astype(np.float64)


def crps_ensemble_terms(obs: np.ndarray, fct: np.ndarray, skipna: bool = False) -> np.ndarray:
    """Standard and fair CRPS at every point; ensemble on the last axis of ``fct``.

    Parameters
    ----------
    obs : numpy.ndarray
        Observations, shape ``fct.shape[:-1]`` (or broadcastable to it).
    fct : numpy.ndarray
        Ensemble, members on the last axis; any strides (no full copy is made).
    skipna : bool
        Drop NaN members point by point instead of returning NaN.

    Returns
    -------
    numpy.ndarray
        float64, shape ``(*fct.shape[:-1], 2)``: ``[..., 0]`` standard, ``[..., 1]`` fair.
    """
    fct = _float_dtype(fct)
    obs = np.asarray(obs)

    def fn(blk: np.ndarray, yb: np.ndarray, ob: np.ndarray) -> None:
        blk.sort(axis=-1)
        _crps_sorted_block(blk, yb, ob, skipna)

    return _blockwise(fn, fct, obs, 2)


def crps_ensemble_np(
    obs: np.ndarray, fct: np.ndarray, fair: bool = False, skipna: bool = False
) -> np.ndarray:
    """CRPS (standard or fair) at every point; float64, shape ``fct.shape[:-1]``."""
    return crps_ensemble_terms(obs, fct, skipna)[..., int(fair)]


def crps_gaussian_np(obs: np.ndarray, mu: np.ndarray, sig: np.ndarray) -> np.ndarray:
    """Closed-form CRPS of a normal forecast ``N(mu, sig^2)``; float64."""
    from scipy.special import erf

    obs, mu, sig = (np.asarray(v, dtype=np.float64) for v in (obs, mu, sig))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (obs - mu) / sig
        pdf = np.exp(-0.5 * z * z) / np.sqrt(2.0 * np.pi)
        cdf = 0.5 * (1.0 + erf(z / np.sqrt(2.0)))
        crps = sig * (z * (2.0 * cdf - 1.0) + 2.0 * pdf - 1.0 / np.sqrt(np.pi))
    return np.where(sig == 0, np.abs(obs - mu), crps)


def _member_mask(fct: np.ndarray, skipna: bool) -> tuple[np.ndarray, np.ndarray]:
    """(float64 members with NaN kept, count of finite members), member axis last."""
    x = np.asarray(fct, dtype=np.float64)
    valid = ~np.isnan(x)
    return x, valid.sum(axis=-1)


def ensemble_moments_np(fct: np.ndarray, skipna: bool = False) -> np.ndarray:
    """Ensemble mean, variance (ddof=1), median and member count; float64 ``(..., 4)``."""
    x, n = _member_mask(fct, skipna)
    out = np.empty((*x.shape[:-1], 4), dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"), _quiet():
        if skipna:
            out[..., 0] = np.nanmean(x, axis=-1)
            out[..., 1] = np.nanvar(x, axis=-1, ddof=1)
            out[..., 2] = np.nanmedian(x, axis=-1)
        else:
            out[..., 0] = x.mean(axis=-1)
            out[..., 1] = x.var(axis=-1, ddof=1) if x.shape[-1] > 1 else np.nan
            out[..., 2] = np.median(x, axis=-1)
    out[..., 3] = n if skipna else np.where(n == x.shape[-1], n, 0)
    return out


class _quiet:
    """Silence numpy's 'mean of empty slice' warnings inside a block (NaN is the answer)."""

    def __enter__(self) -> None:
        import warnings

        self._cm = warnings.catch_warnings()
        self._cm.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc: object) -> None:
        self._cm.__exit__(*exc)


@numba.njit(nogil=True, cache=True)
def _ranks_kernel(x, y, u, out):  # pragma: no cover - compiled
    """Rank of ``y`` among the members ``x (P, M)`` with ties split by ``u`` in [0, 1)."""
    p_, m = x.shape
    for p in range(p_):
        yv = y[p]
        if math.isnan(yv):
            out[p] = -1
            continue
        below = 0
        ties = 0
        bad = False
        for i in range(m):
            v = x[p, i]
            if math.isnan(v):
                bad = True
                break
            if v < yv:
                below += 1
            elif v == yv:
                ties += 1
        if bad:
            out[p] = -1
            continue
        out[p] = below + int(u[p] * (ties + 1))


def ranks_np(obs: np.ndarray, fct: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Rank of the observation among the members (0..M), ties at random; -1 where NaN.

    ``u`` holds uniform [0, 1) draws, one per point, that break ties: with ``k`` members equal
    to the observation, the rank is ``#(x < y) + floor(u * (k + 1))``.
    """
    x = np.asarray(fct, dtype=np.float64)
    lead = x.shape[:-1]
    x2 = np.ascontiguousarray(x.reshape(-1, x.shape[-1]))
    y = np.ascontiguousarray(np.broadcast_to(np.asarray(obs, dtype=np.float64), lead)).ravel()
    uu = np.ascontiguousarray(np.broadcast_to(u, lead), dtype=np.float64).ravel()
    out = np.empty(y.shape, dtype=np.int64)
    _ranks_kernel(x2, y, uu, out)
    return out.reshape(lead)


@numba.njit(nogil=True, cache=True, fastmath=_FASTMATH)
def _energy_kernel(x, y, out):  # pragma: no cover - compiled
    """Energy score for ``x (P, M, D)``, ``y (P, D)``: E||X-y|| - 0.5 E||X-X'||."""
    p_, m, d = x.shape
    for p in range(p_):
        bad = False
        for k in range(d):
            if math.isnan(y[p, k]):
                bad = True
        for i in range(m):
            for k in range(d):
                if math.isnan(x[p, i, k]):
                    bad = True
        if bad:
            out[p] = np.nan
            continue
        s1 = 0.0
        for i in range(m):
            acc = 0.0
            for k in range(d):
                diff = x[p, i, k] - y[p, k]
                acc += diff * diff
            s1 += math.sqrt(acc)
        s2 = 0.0
        for i in range(m):
            for j in range(i + 1, m):
                acc = 0.0
                for k in range(d):
                    diff = x[p, i, k] - x[p, j, k]
                    acc += diff * diff
                s2 += math.sqrt(acc)
        out[p] = s1 / m - s2 / (m * m)


def energy_score_np(obs: np.ndarray, fct: np.ndarray) -> np.ndarray:
    """Energy score; ``fct (..., M, D)``, ``obs (..., D)``; NaN anywhere in a sample -> NaN."""
    x = np.asarray(fct, dtype=np.float64)
    lead = x.shape[:-2]
    x3 = np.ascontiguousarray(x.reshape(-1, *x.shape[-2:]))
    y = np.ascontiguousarray(
        np.broadcast_to(np.asarray(obs, dtype=np.float64), (*lead, x.shape[-1]))
    ).reshape(-1, x.shape[-1])
    out = np.empty(x3.shape[0], dtype=np.float64)
    _energy_kernel(x3, y, out)
    return out.reshape(lead)


@numba.njit(inline="always", fastmath={"reassoc", "contract", "arcp", "nsz"})
def _quarter_power(d, k):  # pragma: no cover - compiled
    """``d ** (k / 4)`` for ``d >= 0`` and ``k`` in 1..8 from square roots and products (they
    run in SIMD; ``pow`` does not)."""
    out = 1.0
    if k >= 8:
        out = d * d
    elif k >= 4:
        out = d
    if k % 4 != 0:
        r = math.sqrt(d)
        if k % 4 >= 2:
            out *= r
        if k % 2 == 1:
            out *= math.sqrt(r)
    return out


@numba.njit(nogil=True, cache=True, fastmath={"reassoc", "contract", "arcp", "nsz"})
def _variogram_kernel(x, y, k, p_exp, out):  # pragma: no cover - compiled
    """Variogram score of order p for ``x (P, D, M)`` (members last: the inner loop runs over
    contiguous memory), ``y (P, D)``, unit pair weights. ``k`` in 1..8: ``p = k / 4``, powers
    from square roots (:func:`_quarter_power`); ``k = 0``: ``pow`` with ``p_exp``. The sums may
    be reassociated (SIMD); NaN is checked first, so the fast-math flags leave NaN handling
    alone."""
    p_, d, m = x.shape
    for p in range(p_):
        bad = False
        for a in range(d):
            if math.isnan(y[p, a]):
                bad = True
            for i in range(m):
                if math.isnan(x[p, a, i]):
                    bad = True
        if bad:
            out[p] = np.nan
            continue
        total = 0.0
        for a in range(d):
            xa = x[p, a]
            for b in range(a + 1, d):
                xb = x[p, b]
                vf = 0.0
                if k > 0:
                    for i in range(m):
                        vf += _quarter_power(abs(xa[i] - xb[i]), k)
                    vo = _quarter_power(abs(y[p, a] - y[p, b]), k)
                else:
                    for i in range(m):
                        vf += abs(xa[i] - xb[i]) ** p_exp
                    vo = abs(y[p, a] - y[p, b]) ** p_exp
                total += (vo - vf / m) ** 2
        out[p] = 2.0 * total  # sum over ordered pairs (i, j), as Scheuerer & Hamill


def quarter_order(p: float) -> int:
    """``4 p`` when that is an integer in 1..8 (orders 0.25, 0.5, ..., 2: the variogram
    kernel's square-root path), else 0 (``pow``)."""
    k = round(4 * p)
    return k if 1 <= k <= 8 and abs(4 * p - k) < 1e-12 else 0


def variogram_score_np(obs: np.ndarray, fct: np.ndarray, p: float = 0.5) -> np.ndarray:
    """Variogram score of order ``p`` over all pairs (i, j); shapes as :func:`energy_score_np`."""
    x = np.asarray(fct, dtype=np.float64)
    lead = x.shape[:-2]
    # (P, D, M): members last and contiguous for the kernel's inner loop
    x3 = np.ascontiguousarray(np.swapaxes(x.reshape(-1, *x.shape[-2:]), 1, 2))
    y = np.ascontiguousarray(
        np.broadcast_to(np.asarray(obs, dtype=np.float64), (*lead, x.shape[-1]))
    ).reshape(-1, x.shape[-1])
    out = np.empty(x3.shape[0], dtype=np.float64)
    _variogram_kernel(x3, y, quarter_order(float(p)), float(p), out)
    return out.reshape(lead)
