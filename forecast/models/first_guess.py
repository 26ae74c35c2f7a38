"""Deterministic first guesses (mean forecasts) for the generative models' residual target.

A first guess is fitted on the training split; a generative model (diffusion, VAE) then
generates the residual ``target - first guess`` (regression + generative residual, as CorrDiff
does). Five kinds (:data:`FIRST_GUESSES`):

- ``"diurnal"``: the diurnal-persistence mean forecast ``c(slot(t + h)) + a(t)``, with ``c`` the
  time-of-day (or -week) climatology of
  :class:`forecast.models.baselines.DiurnalPersistenceEnsemble` and ``a(t) = x(t) - c(slot(t))``
  the anomaly at the issue time;
- ``"damped"``: ``c(slot(t + h)) + rho_h a(t)``, the persisted anomaly damped per lead by the
  least-squares regression coefficient ``rho_h`` of ``a(t + h)`` on ``a(t)`` over the training
  split (pooled over space, per variable);
- ``"climatology"``: ``c(slot(t + h))`` alone (``rho_h = 0``);
- ``"gp"``: the predictive mean of :class:`forecast.models.gp.GaussianProcessForecaster`
  (default sparse variational settings), computed mean-only and batched over all
  (issue time, point) pairs;
- ``"gp-clim"``: the GP mean shrunk towards the climatology per lead,
  ``c(slot(t + h)) + w_h (gp(t, h) - c(slot(t + h)))``, with ``w_h`` in [0, 1] the least-squares
  weight on the *validation* windows (pooled over space, per variable). Where the GP's
  state-dependent part stops paying (long leads on a fast-advecting field), ``w_h`` drops
  towards 0. In-sample GP predictions on the training split would overrate the GP, hence the
  validation split.

Cross-fitting (:func:`fit_folded_first_guess`): with ``folds = K > 1`` the training windows'
first guesses come from K first guesses, each fitted with one contiguous block of the training
windows held out (every step those windows touch set to NaN) and predicting that block only.
A generative model then learns the residual of a first guess that has not seen the window: the
residuals of a first guess on its own training data are smaller than on new days (the GP on
P2: RMSE 1.31 K in-sample against 1.49 K out of fold), so a model trained on them learns too
little spread and a too optimistic correction.

All work on physical arrays ``(time, channel, *space)``; :meth:`FirstGuess.predict` returns
``(n, horizon, channel, *space)`` float32 for the issue indices ``origins``.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Callable, Hashable, Iterator
from typing import Any, ClassVar, Protocol

import numpy as np
import pandas as pd
import torch
import xarray as xr

from forecast.errors import ForecastError

FIRST_GUESSES: tuple[str, ...] = ("diurnal", "damped", "climatology", "gp", "gp-clim")
#: First guesses fitted with the validation split as well as the training split.
NEEDS_VALIDATION: tuple[str, ...] = ("gp-clim",)
#: Prefix of a first guess's arrays inside a model checkpoint.
CHECKPOINT_PREFIX = "first_guess."


class FirstGuess(Protocol):
    """A fitted deterministic mean forecast (see the module docstring)."""

    kind: str

    def predict(self, values: np.ndarray, times: np.ndarray, origins: np.ndarray) -> np.ndarray:
        """Mean forecast ``(n, horizon, channel, *space)``, physical units, float32, for the
        issue times ``values[origins]`` (``origins``: int indices into the time axis; each needs
        the preceding context steps it uses). ``values``: ``(T, channel, *space)`` physical;
        ``times``: ``(T,)`` datetime64[ns]."""
        ...

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Arrays (safetensors-able, unprefixed names) and JSON metadata."""
        ...


def _check_kind(kind: str) -> None:
    if kind not in FIRST_GUESSES:
        raise ForecastError(f"unknown first guess {kind!r}; valid: {', '.join(FIRST_GUESSES)}")


def _origins(values: np.ndarray, times: np.ndarray, origins: Any, first: int) -> np.ndarray:
    """Checked int origins: inside the time axis and with ``first`` earlier steps."""
    values = np.asarray(values)
    if values.ndim < 2:
        raise ForecastError(
            f"first-guess values must be (time, channel, *space), got shape {values.shape}"
        )
    if len(np.asarray(times)) != len(values):
        raise ForecastError(
            f"first-guess values have {len(values)} steps but times has {len(np.asarray(times))}; "
            "pass the times of the values"
        )
    o = np.atleast_1d(np.asarray(origins))
    if o.size and not np.issubdtype(o.dtype, np.integer):
        raise ForecastError(f"origins must be integer indices into the time axis, got {o.dtype}")
    o = o.astype(np.int64)
    if o.size and (o.min() < first or o.max() >= len(values)):
        raise ForecastError(
            f"origins must lie in [{first}, {len(values) - 1}] (the first guess uses {first} "
            f"earlier steps); got {o.min()}..{o.max()}"
        )
    return o


_DIURNAL_KINDS = ("diurnal", "damped", "climatology")


class DiurnalFirstGuess:
    """``c(slot(t + h)) + rho_h (x(t) - c(slot(t)))``; ``rho_h = 1`` for ``kind="diurnal"``,
    ``0`` for ``kind="climatology"``.

    Parameters
    ----------
    kind
        ``"diurnal"``, ``"damped"`` or ``"climatology"``.
    means
        Climatology ``(slot, channel, *space)`` in physical units.
    rho
        Anomaly damping ``(channel, horizon)`` (ones for ``"diurnal"``).
    period, step
        Length of the climatology's period and the data time step.
    """

    def __init__(
        self,
        kind: str,
        means: np.ndarray,
        rho: np.ndarray,
        period: pd.Timedelta,
        step: pd.Timedelta,
    ) -> None:
        if kind not in _DIURNAL_KINDS:
            raise ForecastError(
                f"DiurnalFirstGuess kind must be one of {', '.join(_DIURNAL_KINDS)}, got {kind!r}"
            )
        self.kind = kind
        self.means = np.asarray(means, dtype=np.float64)
        self.rho = np.asarray(rho, dtype=np.float64)
        self.period = pd.Timedelta(period)
        self.step = pd.Timedelta(step)
        self.horizon = int(self.rho.shape[1])

    @classmethod
    def fit(cls, kind: str, train: xr.Dataset, *, context: int, horizon: int) -> DiurnalFirstGuess:
        """Fit the climatology (and for ``"damped"`` the per-lead damping) on ``train``."""
        from forecast.models.baselines import DiurnalPersistenceEnsemble

        dp = DiurnalPersistenceEnsemble(context=context, horizon=horizon).fit(train)
        n_ch = len(dp.variables)
        rho = np.full((n_ch, horizon), 0.0 if kind == "climatology" else 1.0)
        if kind == "damped":
            a = dp.anomaly_.reshape(len(dp.anomaly_), n_ch, -1)  # (time, channel, space)
            a0 = a[dp.origins_]
            for lead in range(1, horizon + 1):
                ah = a[dp.origins_ + lead]
                ok = np.isfinite(a0) & np.isfinite(ah)
                num = np.where(ok, a0 * ah, 0.0).sum(axis=(0, 2))
                den = np.where(ok, a0 * a0, 0.0).sum(axis=(0, 2))
                rho[:, lead - 1] = np.where(den > 0, num / np.maximum(den, 1e-30), 1.0)
        return cls(kind, dp.means_, rho, dp.period_, dp.step)

    def predict(self, values: np.ndarray, times: np.ndarray, origins: np.ndarray) -> np.ndarray:
        """See :meth:`FirstGuess.predict`."""
        from forecast.models.baselines import slot_of

        o = _origins(values, times, origins, 0)
        values = np.asarray(values, dtype=np.float64)
        t0 = np.asarray(times, dtype="datetime64[ns]")[o]
        leads = np.arange(1, self.horizon + 1) * self.step.to_timedelta64()
        s0 = slot_of(t0, self.step, self.period)
        sv = slot_of((t0[:, None] + leads).ravel(), self.step, self.period).reshape(len(o), -1)
        c0 = self.means[s0]  # (n, C, *s)
        cv = self.means[sv]  # (n, H, C, *s)
        rho = self.rho.T.reshape(1, self.horizon, self.rho.shape[0], *([1] * (values.ndim - 2)))
        return (cv + rho * (values[o] - c0)[:, None]).astype(np.float32)

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """``means`` and ``rho`` arrays; period and step as metadata."""
        arrays = {"means": self.means.copy(), "rho": self.rho.copy()}  # float64: exact
        return arrays, {"period": str(self.period), "step": str(self.step)}

    @classmethod
    def restore(cls, kind: str, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> Any:
        """Inverse of :meth:`state`."""
        return cls(kind, arrays["means"], arrays["rho"], meta["period"], meta["step"])


class GPFirstGuess:
    """The predictive mean of a fitted :class:`~forecast.models.gp.GaussianProcessForecaster`.

    :meth:`predict` flattens the (origin, point) pairs into batches of about ``block`` pairs per
    channel and computes only the GP's predictive mean (no variance), ``chunk`` pairs per kernel
    evaluation. Measured on P2 (33 x 49 grid, 24 leads): the mean of all 475 training windows
    in 20-30 s on one thread, against 136 s through gpytorch's predictive call.
    """

    kind: ClassVar[str] = "gp"
    #: (origin, point) pairs whose features are built at once, and kernel rows per matmul.
    block: ClassVar[int] = 65536
    chunk: ClassVar[int] = 8192

    def __init__(self, gp: Any) -> None:
        self.gp = gp
        self._weights: dict[int, tuple[Any, ...]] = {}

    @classmethod
    def fit(cls, train: xr.Dataset, *, context: int, horizon: int, seed: int = 0) -> GPFirstGuess:
        """Fit the GP forecaster (default settings, ``seed``) on ``train``."""
        from forecast.models.gp import GaussianProcessForecaster

        return cls(
            GaussianProcessForecaster(context=context, horizon=horizon, seed=seed).fit(train)
        )

    def _mean(self, c: int, x: np.ndarray) -> np.ndarray:
        """Predictive mean ``(lead, K)`` of channel ``c``'s GP at features ``(lead, K, D)``.

        Mean only: ``mu(x) + k(x, Z) w`` with the weights ``w`` of the inducing points ``Z``
        formed once (svgp, whitened: ``w = L^-T m``, ``L L^T = K_ZZ + jitter``, ``m`` the
        variational mean; exact: ``w = alpha`` on the training inputs); gpytorch's predictive
        call would also build the ``(Z, x)`` interpolation terms of the variance.
        """
        from forecast.models.gp import _Settings

        bgp = self.gp.gps_[c]
        out = np.empty(x.shape[:2])
        with torch.no_grad(), _Settings():
            if c not in self._weights:
                self._weights[c] = self._kernel_weights(bgp)
            mean_module, ls, zl, zz, w = self._weights[c]
            for a in range(0, x.shape[1], self.chunk):
                xs = bgp._x(torch.from_numpy(np.ascontiguousarray(x[:, a : a + self.chunk])))
                xl = (xs / ls).float()
                d2 = torch.baddbmm(zz + (xl**2).sum(-1, keepdim=True), xl, zl.mT, alpha=-2)
                k = d2.clamp_min_(0).mul_(-0.5).exp_()  # (lead, chunk, M)
                mu = mean_module(xs) + (k @ w)[..., 0].double()
                out[:, a : a + self.chunk] = (mu * bgp.y_std + bgp.y_mean).numpy()
        return out

    @staticmethod
    def _kernel_weights(bgp: Any) -> tuple[Any, ...]:
        """Mean module, lengthscales, scaled inducing inputs, their squared norms and weights.

        The scaled RBF kernel ``k(x, z) = s exp(-|x / l - z / l|^2 / 2)`` is formed by
        :meth:`_mean` in three passes over ``(lead, chunk, M)`` in float32 (memory-bound; the
        mean moves by less than 1e-5 of the data scale), where gpytorch's call makes several more.
        """
        if bgp.method == "exact":
            mean_module, covar_module = bgp.mean_module, bgp.covar_module
            z, w = bgp.train_x, bgp.alpha_
        else:
            model = bgp.model
            mean_module, covar_module = model.mean_module, model.covar_module
            strategy = model.variational_strategy
            z = strategy.inducing_points
            kzz = covar_module(z).add_jitter(strategy.jitter_val).to_dense()
            chol = torch.linalg.cholesky(kzz)
            m = strategy.variational_distribution.mean[..., None]
            w = torch.linalg.solve_triangular(chol.mT, m, upper=True)
        scale = covar_module.outputscale.reshape(-1, 1, 1)
        ls = covar_module.base_kernel.lengthscale  # (lead, 1, D)
        zl = z / ls
        zz = (zl**2).sum(-1)[:, None, :]
        return mean_module, ls, zl.float(), zz.float(), (scale * w).float()

    def predict(self, values: np.ndarray, times: np.ndarray, origins: np.ndarray) -> np.ndarray:
        """See :meth:`FirstGuess.predict`."""
        gp = self.gp
        lags = gp.n_lags
        o = _origins(values, times, origins, lags)
        values = np.asarray(values, dtype=np.float64)
        n_time, n_chan = values.shape[:2]
        if n_chan != len(gp.gps_):
            raise ForecastError(
                f"first-guess values have {n_chan} channels, the GP was fitted on {len(gp.gps_)}"
            )
        flat = values.reshape(n_time, n_chan, -1)
        n_points = flat.shape[2]
        out = np.empty((len(o), gp.horizon, n_chan, n_points), dtype=np.float32)
        step = max(1, self.block // n_points)
        for b in range(0, len(o), step):
            ob = o[b : b + step]
            t0 = np.repeat(np.asarray(times, dtype="datetime64[ns]")[ob], n_points)
            points = np.tile(np.arange(n_points), len(ob))
            for c in range(n_chan):
                now = flat[ob, c].ravel()
                lagged = np.stack([flat[ob - j, c].ravel() for j in range(1, lags + 1)], axis=1)
                x = gp._features(now, lagged.reshape(len(now), lags), t0, c, points)
                mean = now[None] + self._mean(c, x) * gp.scale_[c, points][None]  # (lead, K)
                out[b : b + step, :, c] = np.moveaxis(mean.reshape(gp.horizon, len(ob), -1), 1, 0)
        return out.reshape(len(o), gp.horizon, *values.shape[1:])

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """The GP forecaster's checkpoint arrays and its config, variables, step and state."""
        arrays, state = self.gp._state()
        meta = {
            "config": self.gp.config(),
            "variables": list(self.gp.variables),
            "step": str(self.gp.step),
            "state": state,
        }
        return {k: np.asarray(v) for k, v in arrays.items()}, meta

    @classmethod
    def restore(cls, kind: str, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> Any:
        """Inverse of :meth:`state`."""
        from forecast.models.gp import GaussianProcessForecaster

        gp = GaussianProcessForecaster(**meta["config"])
        gp.variables = list(meta["variables"])
        gp.step = pd.Timedelta(meta["step"])
        gp._restore(arrays, meta["state"])
        return cls(gp)


class ShrunkGPFirstGuess:
    """``c(slot(t + h)) + w_h (gp(t, h) - c(slot(t + h)))``: the GP mean shrunk towards the
    time-of-day climatology by per-variable, per-lead weights ``w`` ``(channel, horizon)``
    fitted on validation windows (:meth:`fit`)."""

    kind: ClassVar[str] = "gp-clim"

    def __init__(
        self, gp: GPFirstGuess, climatology: DiurnalFirstGuess, weights: np.ndarray
    ) -> None:
        self.gp = gp
        self.climatology = climatology
        self.weights = np.asarray(weights, dtype=np.float64)

    @classmethod
    def fit(
        cls, train: xr.Dataset, valid: xr.Dataset, *, context: int, horizon: int, seed: int = 0
    ) -> ShrunkGPFirstGuess:
        """Fit the GP and the climatology on ``train``, then the weights on every window of
        ``valid`` (least squares pooled over space, clipped to [0, 1])."""
        from forecast.data import data_variables
        from forecast.data.torch import to_array
        from forecast.dims import TIME

        gp = GPFirstGuess.fit(train, context=context, horizon=horizon, seed=seed)
        clim = DiurnalFirstGuess.fit("climatology", train, context=context, horizon=horizon)
        values = to_array(valid[list(data_variables(valid))]).astype(np.float64)
        first = gp.gp.n_lags
        origins = np.arange(first, len(values) - horizon)
        if len(origins) == 0:
            raise ForecastError(
                f"first guess 'gp-clim' fits its weights on validation windows, but the "
                f"validation part has {len(values)} steps (needs more than {first + horizon}); "
                "use a longer validation split or another first guess"
            )
        times = valid[TIME].values
        g = gp.predict(values, times, origins).astype(np.float64)
        c = clim.predict(values, times, origins).astype(np.float64)
        target = np.stack([values[o + 1 : o + 1 + horizon] for o in origins])
        return cls(gp, clim, shrink_weights(target, g, c))

    def predict(self, values: np.ndarray, times: np.ndarray, origins: np.ndarray) -> np.ndarray:
        """See :meth:`FirstGuess.predict`."""
        g = self.gp.predict(values, times, origins)
        c = self.climatology.predict(values, times, origins)
        w = self.weights.T.reshape(1, *self.weights.T.shape, *([1] * (g.ndim - 3)))
        return (c + w * (g - c)).astype(np.float32)

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """The GP's arrays under ``gp.``, the climatology ``means`` and the ``weights``."""
        gp_arrays, gp_meta = self.gp.state()
        clim_arrays, clim_meta = self.climatology.state()
        arrays = {f"gp.{k}": v for k, v in gp_arrays.items()}
        arrays.update(means=clim_arrays["means"], weights=self.weights.copy())
        return arrays, {"gp": gp_meta, **clim_meta}

    @classmethod
    def restore(cls, kind: str, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> Any:
        """Inverse of :meth:`state`."""
        gp = GPFirstGuess.restore(
            "gp", {k[3:]: v for k, v in arrays.items() if k.startswith("gp.")}, meta["gp"]
        )
        weights = np.asarray(arrays["weights"])
        clim = DiurnalFirstGuess(
            "climatology", arrays["means"], np.zeros_like(weights), meta["period"], meta["step"]
        )
        return cls(gp, clim, weights)


class FoldedFirstGuess:
    """Out-of-fold first guesses of the training windows (see the module docstring): an issue
    time in ``[starts[k], stops[k]]`` gets ``guesses[k]``, fitted without the windows of that
    block. Used only inside ``fit``; never stored."""

    kind: ClassVar[str] = "folded"

    def __init__(self, guesses: list[Any], starts: np.ndarray, stops: np.ndarray) -> None:
        self.guesses = list(guesses)
        self.starts = np.asarray(starts, dtype="datetime64[ns]")
        self.stops = np.asarray(stops, dtype="datetime64[ns]")

    def predict(self, values: np.ndarray, times: np.ndarray, origins: np.ndarray) -> np.ndarray:
        """See :meth:`FirstGuess.predict`; every issue time must lie in a held-out block."""
        o = _origins(values, times, origins, 0)
        t0 = np.asarray(times, dtype="datetime64[ns]")[o]
        fold = np.searchsorted(self.starts, t0, side="right") - 1
        inside = (fold >= 0) & (t0 <= self.stops[np.clip(fold, 0, None)])
        if not inside.all():
            raise ForecastError(
                f"out-of-fold first guess asked for issue time {t0[~inside][0]}, outside the "
                "training windows it was cross-fitted on; use the model's first guess there"
            )
        out: np.ndarray | None = None
        for k in np.unique(fold):
            sel = np.flatnonzero(fold == k)
            pred = self.guesses[k].predict(values, times, o[sel])
            if out is None:
                out = np.empty((len(o), *pred.shape[1:]), dtype=np.float32)
            out[sel] = pred
        if out is None:  # no origins
            return self.guesses[0].predict(values, times, o)
        return out


def fit_folded_first_guess(
    kind: str,
    train: xr.Dataset,
    *,
    context: int,
    horizon: int,
    folds: int,
    seed: int = 0,
    valid: xr.Dataset | None = None,
) -> FoldedFirstGuess:
    """Cross-fit a first guess of ``kind`` over ``folds`` contiguous blocks of the training
    windows (issue times ``context - 1 .. T - horizon - 1`` of ``train``): block ``k``'s first
    guess is fitted on ``train`` with every step of its windows (context and target) set to
    NaN, so that no value of a held-out window is seen."""
    from forecast.dims import TIME
    from forecast.models.folds import fold_blocks, hold_out

    blocks = fold_blocks(int(train.sizes[TIME]), context, horizon, folds, "first_guess_folds")
    times = train[TIME].values
    guesses, starts, stops = [], [], []
    for block in blocks:
        try:
            guesses.append(
                fit_first_guess(
                    kind,
                    hold_out(train, block),
                    context=context,
                    horizon=horizon,
                    seed=seed,
                    valid=valid,
                )
            )
        except ForecastError as err:
            raise ForecastError(
                f"first-guess fold {len(guesses) + 1} of {folds} (training steps {block.lo}.."
                f"{block.hi - 1} held out) failed: {err}; use fewer first_guess_folds"
            ) from None
        starts.append(times[block.issues[0]])
        stops.append(times[block.issues[-1]])
    return FoldedFirstGuess(guesses, np.array(starts), np.array(stops))


def shrink_weights(target: np.ndarray, guess: np.ndarray, climatology: np.ndarray) -> np.ndarray:
    """Least-squares ``w`` ``(channel, lead)`` of ``target - c ~ w (guess - c)`` over windows and
    space (NaN-safe), clipped to [0, 1]; arrays ``(n, lead, channel, *space)``. A lead where
    the guess never departs from the climatology gets ``w = 1`` (the two agree there)."""
    d = guess - climatology
    y = target - climatology
    ok = np.isfinite(d) & np.isfinite(y)
    axes = (0, *range(3, d.ndim))
    num = np.where(ok, d * y, 0.0).sum(axis=axes)
    den = np.where(ok, d * d, 0.0).sum(axis=axes)
    w = np.where(den > 0, num / np.maximum(den, 1e-30), 1.0)
    return np.clip(w, 0.0, 1.0).T  # (channel, lead)


def fit_first_guess(
    kind: str,
    train: xr.Dataset,
    *,
    context: int,
    horizon: int,
    seed: int = 0,
    valid: xr.Dataset | None = None,
) -> FirstGuess:
    """Fit a first guess of ``kind`` (:data:`FIRST_GUESSES`) on the training split ``train``
    (standard data set, physical units); ``seed`` seeds the GP's subsample and optimizer.
    The kinds in :data:`NEEDS_VALIDATION` also fit on the validation split ``valid``."""
    _check_kind(kind)
    if kind in NEEDS_VALIDATION and valid is None:
        raise ForecastError(
            f"first guess {kind!r} fits its shrinkage weights on validation data; pass valid "
            "(forecast train does) or use first_guess 'gp'"
        )
    if kind == "gp-clim":
        return ShrunkGPFirstGuess.fit(train, valid, context=context, horizon=horizon, seed=seed)
    if kind == "gp":
        return GPFirstGuess.fit(train, context=context, horizon=horizon, seed=seed)
    return DiurnalFirstGuess.fit(kind, train, context=context, horizon=horizon)


def restore_first_guess(
    kind: str, arrays: dict[str, np.ndarray], meta: dict[str, Any]
) -> FirstGuess:
    """Rebuild a first guess from :meth:`FirstGuess.state`'s arrays and metadata."""
    _check_kind(kind)
    restorer = {"gp": GPFirstGuess, "gp-clim": ShrunkGPFirstGuess}.get(kind, DiurnalFirstGuess)
    try:
        return restorer.restore(kind, arrays, meta)
    except KeyError as err:
        raise ForecastError(
            f"first guess {kind!r} state lacks {err}; retrain the model that stored it"
        ) from None


def first_guess_checkpoint(guess: FirstGuess) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """A model checkpoint's share of ``guess``: its arrays under :data:`CHECKPOINT_PREFIX` and
    its metadata with ``kind`` (stored by the model as ``state["first_guess"]``)."""
    arrays, meta = guess.state()
    prefixed = {f"{CHECKPOINT_PREFIX}{k}": np.asarray(v) for k, v in arrays.items()}
    return prefixed, {"kind": guess.kind, **meta}


def first_guess_from_checkpoint(
    kind: str, arrays: dict[str, np.ndarray], meta: dict[str, Any] | None
) -> FirstGuess | None:
    """Inverse of :func:`first_guess_checkpoint` for a model built with ``first_guess=kind``:
    None when the checkpoint holds no first guess of that kind (the model then says so)."""
    meta = dict(meta or {})
    fg_arrays = {
        k[len(CHECKPOINT_PREFIX) :]: v for k, v in arrays.items() if k.startswith(CHECKPOINT_PREFIX)
    }
    if meta.pop("kind", None) != kind or not fg_arrays:
        return None
    return restore_first_guess(kind, fg_arrays, meta)


# -- fits that differ only in their training length share their first guess --------------------
_LOCAL = threading.local()  # per thread: the memos of its open shared_first_guesses() blocks


class Memo(dict):
    """The results of one :func:`shared_first_guesses` block by key, with a lock per key so
    that worker threads that join the block compute each result once."""

    def __init__(self) -> None:
        super().__init__()
        self._guard = threading.Lock()
        self._locks: dict[Hashable, threading.RLock] = {}

    def lock(self, key: Hashable) -> threading.RLock:
        """The lock of ``key``'s entry."""
        with self._guard:
            return self._locks.setdefault(key, threading.RLock())


def _shared() -> list[Memo]:
    """This thread's stack of :func:`shared_first_guesses` memos (innermost last): the
    dashboard samples in several threads at once, each with its own blocks."""
    stack = getattr(_LOCAL, "stack", None)
    if stack is None:
        stack = _LOCAL.stack = []
    return stack


@contextlib.contextmanager
def shared_first_guesses(memo: Memo | None = None) -> Iterator[Memo]:
    """Within the block, a first guess fitted on equal data with equal settings is fitted once
    (every fit gets that one object) and its predictions for equal inputs are computed once.

    For models that differ only in their training length (:mod:`forecast.models.snapshots`):
    every fit of a first guess is seeded, so each model gets the first guess it would fit
    alone, without the time (the GP first guess of P2: about 16 s to fit, 12 s to predict
    its training and validation windows). Yields the block's memo: a worker thread joins the
    block of the thread that started it with ``shared_first_guesses(memo)`` (a nested block
    shares the enclosing one's memo).
    """
    stack = _shared()
    stack.append(memo if memo is not None else stack[-1] if stack else Memo())
    try:
        yield stack[-1]
    finally:
        stack.pop()


def array_key(*arrays: Any) -> str:
    """A digest of the contents, dtypes and shapes of ``arrays``."""
    digest = hashlib.blake2b(digest_size=16)
    for a in arrays:
        a = np.ascontiguousarray(a)
        digest.update(f"{a.dtype}{a.shape}".encode())
        digest.update(repr(a.tolist()).encode() if a.dtype == object else a.tobytes())
    return digest.hexdigest()


def dataset_key(ds: xr.Dataset | None) -> str | None:
    """A digest of every variable and coordinate of ``ds`` (names and values); None for None."""
    if ds is None:
        return None
    names = sorted(map(str, ds.variables))
    return array_key(np.array(names, dtype=object), *(ds[name].values for name in names))


def once(key: Callable[[], Hashable], compute: Callable[[], Any]) -> Any:
    """``compute()``; inside :func:`shared_first_guesses`, the result of its first call with
    the key that ``key()`` makes (made only there: it may read every value of a data set)."""
    stack = _shared()
    if not stack:
        return compute()
    memo, made = stack[-1], key()
    with memo.lock(made):  # another thread of the block waits for the first one's result
        if made not in memo:
            memo[made] = compute()
        return memo[made]


def predict_first_guess(
    guess: FirstGuess, values: np.ndarray, times: np.ndarray, origins: np.ndarray
) -> np.ndarray:
    """``guess.predict(values, times, origins)``, computed once per input inside
    :func:`shared_first_guesses` (each caller gets its own copy)."""
    if not _shared():
        return guess.predict(values, times, origins)
    key = ("predict", id(guess), array_key(values, times, origins))
    # the memo holds the guess too, so that its id is not reused within the block
    _, pred = once(lambda: key, lambda: (guess, guess.predict(values, times, origins)))
    return np.array(pred, copy=True)
