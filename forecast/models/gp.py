"""Gaussian-process forecaster (gpytorch): one GP per lead time, batched over the leads.

Model
-----
For every variable, a sample is one (origin time ``t``, grid point or sensor ``p``) pair. With
``c(s)`` the smoothed time-of-day climatology of the point (as in the diurnal persistence
baseline), ``a(t) = x(t) - c(slot(t))`` the anomaly and ``s_p`` the training standard deviation of
the point's anomaly, the inputs of lead ``l`` are

- ``a(t) / s_p`` (how far from the usual value the point is now),
- ``(x(t) - x(t - j)) / s_p`` for ``j = 1..lags`` (recent tendency, from the context window),
- ``(c(slot(t + l)) - c(slot(t))) / s_p`` (the expected diurnal change over the lead),
- sin/cos of the hour of day of the valid time (and of the day of week for a weekly cycle),

and the target is the increment ``(x(t + l) - x(t)) / s_p``. The GP of lead ``l`` has a linear
mean and an ARD RBF kernel (shared by all points, so it pools the whole grid), fitted on
``n_train`` random (time, point) pairs by type-II maximum likelihood (exact) or the
variational ELBO (svgp). All leads are one batched gpytorch
model. The predictive distribution per point and lead is Gaussian:
``x(t) + s_p * N(mu, sigma^2)`` (noise included); :meth:`GaussianProcessForecaster.sample`
draws members from it independently per point and lead.

Two inference methods: ``"exact"`` (exact GP on a subsample of ``n_train`` pairs) and
``"svgp"`` (sparse variational GP with learned inducing points, trained with mini-batches on a
larger subsample). The default, ``svgp`` on 8192 pairs with 64 inducing points and 120 Adam
steps, was chosen by measurement on the P2 validation windows (docs/results.md): it trained in
about 26 s and scored a Gaussian CRPS of 0.605 K, against 15 s / 0.660 K for an exact GP on 256
pairs and 199 s / 0.631 K on 512 pairs (the exact GP's cubic cost caps its training set).
"""

from __future__ import annotations

import hashlib
import threading
from typing import Any, Self

import numpy as np
import pandas as pd
import torch
import xarray as xr

from forecast.dims import INIT_TIME, LEAD_TIME, TIME, space_dims
from forecast.errors import ForecastError
from forecast.models.base import ArrayForecaster, ensemble_dataset, member_rng
from forecast.models.baselines import (
    _choose_period,
    n_slots,
    slot_means,
    slot_of,
    valid_origins,
)

_DTYPE = torch.float64


# --------------------------------------------------------------------------------------------
# batched GP regression (one independent GP per batch entry)
# --------------------------------------------------------------------------------------------
def _gpytorch():
    import gpytorch

    return gpytorch


def _svgp_model_class():
    gpytorch = _gpytorch()

    class SVGPModel(gpytorch.models.ApproximateGP):
        def __init__(self, inducing: torch.Tensor) -> None:
            batch = torch.Size([inducing.shape[0]])
            dist = gpytorch.variational.CholeskyVariationalDistribution(
                inducing.shape[1], batch_shape=batch
            )
            strategy = gpytorch.variational.VariationalStrategy(
                self, inducing, dist, learn_inducing_locations=True
            )
            super().__init__(strategy)
            dim = inducing.shape[-1]
            self.mean_module = gpytorch.means.LinearMean(dim, batch_shape=batch)
            self.covar_module = gpytorch.kernels.ScaleKernel(
                gpytorch.kernels.RBFKernel(ard_num_dims=dim, batch_shape=batch),
                batch_shape=batch,
            )

        def forward(self, x: torch.Tensor) -> Any:
            return gpytorch.distributions.MultivariateNormal(
                self.mean_module(x), self.covar_module(x)
            )

    return SVGPModel


class BatchGP:
    """``B`` independent GP regressions ``y[b] = f_b(x[b]) + noise`` fitted together.

    Every GP has a linear mean, a scaled ARD RBF kernel and Gaussian noise (gpytorch modules
    with batch shape ``(B,)``). Inputs and targets are standardized per batch entry.

    - ``"exact"``: type-II maximum likelihood by Adam on the exact log marginal likelihood.
      The gradient is formed in closed form, ``dNLL/dK = (K^-1 - alpha alpha^T) / 2`` and
      ``dNLL/dr = alpha`` from one batched Cholesky factorization, then back-propagated through
      the gpytorch kernel; on CPU this is several times faster than autograd through
      ``torch.linalg.cholesky`` (measured: 0.55 s of 0.8 s per step for 24 x 256 points went
      into the Cholesky backward). Prediction uses the same factorization (deterministic).
    - ``"svgp"``: gpytorch's sparse variational GP (learned inducing points,
      :class:`gpytorch.mlls.VariationalELBO`, mini-batches of 1024).

    Linear algebra runs single-threaded: on this shared 2-core machine a batched Cholesky was
    16 times slower with two threads than with one (thread contention).

    Parameters
    ----------
    method
        ``"exact"`` or ``"svgp"``.
    iterations
        Adam steps.
    lr
        Adam learning rate.
    n_inducing
        Inducing points per batch entry (``"svgp"`` only).
    seed
        Seeds the initialization and the mini-batch order.

    Examples
    --------
    >>> x = torch.linspace(0, 1, 50, dtype=torch.float64)[None, :, None]
    >>> gp = BatchGP(iterations=30).fit(x, torch.sin(6 * x[..., 0]))
    >>> mean, var = gp.predict(x)
    >>> mean.shape
    torch.Size([1, 50])
    """

    def __init__(
        self,
        method: str = "exact",
        *,
        iterations: int = 60,
        lr: float = 0.1,
        n_inducing: int = 128,
        seed: int = 0,
    ) -> None:
        if method not in ("exact", "svgp"):
            raise ForecastError(f"unknown GP method {method!r}; valid: exact, svgp")
        self.method = method
        self.iterations = int(iterations)
        self.lr = float(lr)
        self.n_inducing = int(n_inducing)
        self.seed = int(seed)
        self.model: Any = None
        self.likelihood: Any = None

    # -- standardization ---------------------------------------------------------------------
    def _set_scaling(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x_mean = x.mean(dim=1, keepdim=True)
        self.x_std = x.std(dim=1, keepdim=True).clamp_min(1e-6)
        self.y_mean = y.mean(dim=1, keepdim=True)
        self.y_std = y.std(dim=1, keepdim=True).clamp_min(1e-6)

    def _x(self, x: torch.Tensor) -> torch.Tensor:
        return (x.to(_DTYPE) - self.x_mean) / self.x_std

    # -- modules -----------------------------------------------------------------------------
    def _build(self, batch: int, dim: int, inducing: torch.Tensor | None = None) -> None:
        gpytorch = _gpytorch()
        shape = torch.Size([batch])
        self.likelihood = gpytorch.likelihoods.GaussianLikelihood(batch_shape=shape).to(_DTYPE)
        if self.method == "exact":
            self.mean_module = gpytorch.means.LinearMean(dim, batch_shape=shape).to(_DTYPE)
            self.covar_module = gpytorch.kernels.ScaleKernel(
                gpytorch.kernels.RBFKernel(ard_num_dims=dim, batch_shape=shape),
                batch_shape=shape,
            ).to(_DTYPE)
            self.model = torch.nn.ModuleDict({"mean": self.mean_module, "covar": self.covar_module})
        else:
            self.model = _svgp_model_class()(inducing).to(_DTYPE)

    def _train_covariance(self) -> torch.Tensor:
        n = self.train_x.shape[1]
        eye = torch.eye(n, dtype=_DTYPE)
        noise = self.likelihood.noise.reshape(-1, 1, 1)
        return self.covar_module(self.train_x).to_dense() + (noise + 1e-6) * eye

    def _factorize(self) -> None:
        """Cholesky factor and weights of the exact GP on its training data."""
        with torch.no_grad():
            self.chol_ = torch.linalg.cholesky(self._train_covariance())
            r = self.train_y - self.mean_module(self.train_x)
            self.alpha_ = torch.cholesky_solve(r[..., None], self.chol_)

    # -- fit / predict -----------------------------------------------------------------------
    def fit(self, x: torch.Tensor, y: torch.Tensor) -> Self:
        """Fit on ``x`` ``(B, N, D)`` and ``y`` ``(B, N)``."""
        x = x.to(_DTYPE)
        y = y.to(_DTYPE)
        if x.ndim != 3 or y.shape != x.shape[:2]:
            raise ForecastError(
                f"GP inputs must be (B, N, D) and (B, N), got {tuple(x.shape)}, {tuple(y.shape)}"
            )
        self._set_scaling(x, y)
        xs = self._x(x)
        ys = (y - self.y_mean) / self.y_std
        with torch.random.fork_rng(), _Settings():
            torch.manual_seed(self.seed)
            if self.method == "exact":
                self._fit_exact(xs, ys)
            else:
                self._fit_svgp(xs, ys)
        return self

    def _fit_exact(self, xs: torch.Tensor, ys: torch.Tensor) -> None:
        self._build(xs.shape[0], xs.shape[2])
        self.train_x, self.train_y = xs, ys
        params = list(self.model.parameters()) + list(self.likelihood.parameters())
        opt = torch.optim.Adam(params, lr=self.lr)
        n = xs.shape[1]
        for _ in range(self.iterations):
            opt.zero_grad()
            k = self._train_covariance()
            r = ys - self.mean_module(xs)
            with torch.no_grad():
                chol = torch.linalg.cholesky(k)
                alpha = torch.cholesky_solve(r[..., None], chol)
                k_inv = torch.cholesky_inverse(chol)
                grad_k = 0.5 * (k_inv - alpha @ alpha.transpose(-1, -2)) / n
                grad_r = alpha[..., 0] / n
            torch.autograd.backward([k, r], [grad_k, grad_r])
            opt.step()
        self._factorize()

    def _fit_svgp(self, xs: torch.Tensor, ys: torch.Tensor) -> None:
        gpytorch = _gpytorch()
        m = min(self.n_inducing, xs.shape[1])
        idx = torch.randperm(xs.shape[1])[:m]
        self._build(xs.shape[0], xs.shape[2], inducing=xs[:, idx].clone())
        self.model.train()
        self.likelihood.train()
        params = list(self.model.parameters()) + list(self.likelihood.parameters())
        opt = torch.optim.Adam(params, lr=self.lr)
        n = xs.shape[1]
        mll = gpytorch.mlls.VariationalELBO(self.likelihood, self.model, num_data=n)
        size = min(n, 1024)
        for _ in range(self.iterations):
            idx = torch.randperm(n)[:size]
            opt.zero_grad()
            loss = -mll(self.model(xs[:, idx]), ys[:, idx]).sum()
            loss.backward()
            opt.step()
        self.model.eval()
        self.likelihood.eval()

    def predict(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Predictive mean and variance (noise included) at ``x`` ``(B, M, D)``."""
        if self.model is None:
            raise ForecastError("GP is not fitted; call fit first")
        xs = self._x(x)
        with torch.no_grad(), _Settings():
            if self.method == "exact":
                k_star = self.covar_module(xs, self.train_x).to_dense()  # (B, M, N)
                mean = self.mean_module(xs) + (k_star @ self.alpha_)[..., 0]
                v = torch.linalg.solve_triangular(self.chol_, k_star.transpose(-1, -2), upper=False)
                prior = self.covar_module.outputscale.reshape(-1, 1)
                var = prior - (v**2).sum(-2) + self.likelihood.noise.reshape(-1, 1)
            else:
                pred = self.likelihood(self.model(xs))
                mean, var = pred.mean, pred.variance
            mean = mean * self.y_std + self.y_mean
            var = var.clamp_min(1e-12) * self.y_std**2
        return mean, var

    # -- checkpoint --------------------------------------------------------------------------
    def state(self) -> dict[str, torch.Tensor]:
        """Tensors that rebuild the fitted GP (``train_*`` only for the exact method)."""
        out = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        out.update({f"likelihood.{k}": v for k, v in self.likelihood.state_dict().items()})
        for name in ("x_mean", "x_std", "y_mean", "y_std"):
            out[name] = getattr(self, name)
        if self.method == "exact":
            out["train_x"] = self.train_x
            out["train_y"] = self.train_y
        return out

    def restore(self, arrays: dict[str, Any]) -> Self:
        """Inverse of :meth:`state`."""
        t = {k: torch.as_tensor(np.asarray(v)).to(_DTYPE) for k, v in arrays.items()}
        for name in ("x_mean", "x_std", "y_mean", "y_std"):
            setattr(self, name, t[name])
        if self.method == "exact":
            self._build(t["train_x"].shape[0], t["train_x"].shape[2])
            self.train_x, self.train_y = t["train_x"], t["train_y"]
        else:
            inducing = t["model.variational_strategy.inducing_points"]
            self._build(inducing.shape[0], inducing.shape[2], inducing=inducing)
        self.model.load_state_dict({k[6:]: v for k, v in t.items() if k.startswith("model.")})
        self.likelihood.load_state_dict(
            {k[11:]: v for k, v in t.items() if k.startswith("likelihood.")}
        )
        self.model.eval()
        self.likelihood.eval()
        if self.method == "exact":
            with _Settings():
                self._factorize()
        return self


#: Held by every :class:`_Settings` block: gpytorch's settings are process-wide, so two
#: threads (a pool's models drawing side by side, the dashboard's sessions) must not change
#: them under each other's computation.
GP_LOCK = threading.RLock()


class _Settings:
    """Single-threaded torch and Cholesky-based gpytorch inside the block, one thread at a
    time (:data:`GP_LOCK`)."""

    def __enter__(self) -> None:
        from contextlib import ExitStack

        gpytorch = _gpytorch()
        GP_LOCK.acquire()
        self._threads = torch.get_num_threads()
        if self._threads != 1:  # a thread already on one leaves the process default alone
            torch.set_num_threads(1)
        self._stack = ExitStack()
        try:
            self._stack.enter_context(gpytorch.settings.max_cholesky_size(100_000))
            self._stack.enter_context(gpytorch.settings.fast_computations(False, False, False))
        except BaseException:
            self.__exit__()
            raise

    def __exit__(self, *exc: object) -> None:
        try:
            self._stack.close()
            if self._threads != 1:
                torch.set_num_threads(self._threads)
        finally:
            GP_LOCK.release()


# --------------------------------------------------------------------------------------------
# the forecaster
# --------------------------------------------------------------------------------------------
def _calendar(times: np.ndarray, weekly: bool) -> np.ndarray:
    """sin/cos of hour of day (and of day of week) of ``times``: ``(..., 2 or 4)``."""
    t = pd.DatetimeIndex(np.asarray(times, dtype="datetime64[ns]").ravel())
    hour = (t.hour + t.minute / 60 + t.second / 3600).to_numpy() / 24
    cols = [np.sin(2 * np.pi * hour), np.cos(2 * np.pi * hour)]
    if weekly:
        dow = (t.day_of_week.to_numpy() + hour) / 7
        cols += [np.sin(2 * np.pi * dow), np.cos(2 * np.pi * dow)]
    return np.stack(cols, axis=-1).reshape((*np.shape(times), len(cols)))


class GaussianProcessForecaster(ArrayForecaster):
    """Per-lead GP over lagged values and calendar features (see the module docstring).

    Parameters
    ----------
    context, horizon
        Window geometry in steps.
    lags
        Number of lagged differences used (at most ``context - 1``).
    n_train
        (time, point) pairs the GPs are fitted on.
    method
        ``"exact"`` or ``"svgp"``.
    iterations
        Optimizer steps.
    n_inducing
        Inducing points (``"svgp"``).
    weekly
        Weekly instead of daily cycle; ``None`` chooses as the climatology baseline does.
    seed
        Seeds the training subsample and the optimizer.
    """

    kind = "gp"

    def __init__(
        self,
        *,
        context: int,
        horizon: int,
        lags: int = 3,
        n_train: int = 8192,
        method: str = "svgp",
        iterations: int = 120,
        n_inducing: int = 64,
        weekly: bool | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(context=context, horizon=horizon)
        if method not in ("exact", "svgp"):
            raise ForecastError(f"unknown GP method {method!r}; valid: exact, svgp")
        if lags < 0 or n_train < 10 or iterations < 1:
            raise ForecastError(
                f"need lags >= 0, n_train >= 10 and iterations >= 1; got {lags}, {n_train}, "
                f"{iterations}"
            )
        self.lags = int(lags)
        self.n_train = int(n_train)
        self.method = method
        self.iterations = int(iterations)
        self.n_inducing = int(n_inducing)
        self.weekly = weekly
        self.seed = int(seed)

    @classmethod
    def tiny(cls, context: int, horizon: int) -> Self:
        """Small configuration for tests: 256 pairs, 16 inducing points, 15 iterations."""
        return cls(context=context, horizon=horizon, n_train=256, iterations=15, n_inducing=16)

    @property
    def n_lags(self) -> int:
        """Lagged differences actually used (bounded by the context length)."""
        return min(self.lags, self.context - 1)

    # -- features ----------------------------------------------------------------------------
    def _features(
        self,
        now: np.ndarray,
        lagged: np.ndarray,
        t0: np.ndarray,
        channel: int,
        points: np.ndarray,
    ) -> np.ndarray:
        """Inputs ``(lead, K, D)`` for K samples at times ``t0`` (K,) and flat points (K,).

        ``now`` is ``x(t0)`` (K,), ``lagged`` is ``x(t0 - j)`` for ``j = 1..n_lags`` (K, n_lags).
        """
        scale = self.scale_[channel, points]
        means = self.means_[:, channel, points]  # (slot, K)
        slot0 = slot_of(t0, self.step, self.period_)
        leads = np.arange(1, self.horizon + 1)
        valid = t0[None, :] + (leads * self.step.to_timedelta64())[:, None]  # (lead, K)
        slot_v = slot_of(valid.ravel(), self.step, self.period_).reshape(valid.shape)
        k = np.arange(len(now))
        c0 = means[slot0, k]
        cv = means[slot_v, k[None, :]]
        anomaly = (now - c0) / scale
        tendency = (now[:, None] - lagged) / scale[:, None]
        change = (cv - c0[None]) / scale[None]
        cal = _calendar(valid, self.weekly_)
        base = np.concatenate([anomaly[:, None], tendency], axis=1)  # (K, 1 + lags)
        return np.concatenate(
            [np.broadcast_to(base, (self.horizon, *base.shape)), change[..., None], cal], axis=-1
        )

    def _fit_values(self, values: np.ndarray, times: np.ndarray) -> None:
        from forecast.dims import NODE

        self._memo: dict[str, Any] = {}
        times = np.asarray(times, dtype="datetime64[ns]")
        span = pd.Timestamp(times[-1]) - pd.Timestamp(times[0]) + self.step
        has_nodes = bool(self.description and NODE in self.description.get("space_dims", []))
        self.period_ = _choose_period(self.weekly, span, has_nodes)
        self.weekly_ = self.period_ == pd.Timedelta(days=7)
        n = n_slots(self.step, self.period_)
        slots = slot_of(times, self.step, self.period_)
        n_time, n_chan = values.shape[:2]
        flat = values.reshape(n_time, n_chan, -1)
        means, _ = slot_means(flat, slots, n, min_samples=20)
        self.means_ = means  # (slot, channel, point)
        anomaly = flat - means[slots]
        with np.errstate(invalid="ignore"):
            scale = np.nanstd(anomaly, axis=0)
        self.scale_ = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
        rng = np.random.default_rng(self.seed)
        self.gps_: list[BatchGP] = []
        self.fit_seconds_ = 0.0
        import time

        for c in range(n_chan):
            series = flat[:, c]
            # whole windows (lags, issue time, horizon) finite: a NaN gap must not leak
            # into the lagged features of the origins just after it
            origins = valid_origins(series, self.horizon + self.n_lags) + self.n_lags
            used = np.flatnonzero(np.isfinite(series).any(axis=0))
            if len(origins) == 0 or len(used) == 0:
                raise ForecastError(
                    "training data have no complete (lags, horizon) window; "
                    "pass a longer training period"
                )
            pairs = len(origins) * len(used)
            take = rng.choice(pairs, size=min(self.n_train, pairs), replace=False)
            o = origins[take // len(used)]
            p = used[take % len(used)]
            now = series[o, p]
            lagged = np.stack([series[o - j, p] for j in range(1, self.n_lags + 1)], axis=1)
            x = self._features(now, lagged.reshape(len(o), self.n_lags), times[o], c, p)
            leads = np.arange(1, self.horizon + 1)
            y = (series[o[None, :] + leads[:, None], p[None, :]] - now[None]) / self.scale_[c, p]
            start = time.perf_counter()
            gp = BatchGP(
                self.method,
                iterations=self.iterations,
                n_inducing=self.n_inducing,
                seed=self.seed + c,
            )
            gp.fit(torch.from_numpy(x.copy()), torch.from_numpy(y))
            self.fit_seconds_ += time.perf_counter() - start
            self.gps_.append(gp)

    # -- prediction --------------------------------------------------------------------------
    def _gaussian_values(
        self, values: np.ndarray, times: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Mean and std ``(lead, channel, *space)`` for a context array (memoized).

        The last few results are kept, keyed by the context's bytes, so that ``sample`` and
        ``predict_gaussian`` on the same context (as the protocol runner does) predict once.
        """
        key = hashlib.sha1(
            values.tobytes() + np.asarray(times, dtype="datetime64[ns]").tobytes()
        ).hexdigest()
        cache = self.__dict__.setdefault("_memo", {})
        if key not in cache:
            if len(cache) >= 32:
                cache.pop(next(iter(cache)))
            cache[key] = self._predict_values(values, times)
        mean, std = cache[key]
        return mean.copy(), std.copy()

    def _predict_values(
        self, values: np.ndarray, times: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        n_chan = values.shape[1]
        flat = values.reshape(len(values), n_chan, -1)
        n_points = flat.shape[2]
        t0 = np.full(n_points, np.asarray(times, dtype="datetime64[ns]")[-1])
        points = np.arange(n_points)
        mean = np.empty((self.horizon, n_chan, n_points))
        std = np.empty_like(mean)
        for c, gp in enumerate(self.gps_):
            now = flat[-1, c]
            lagged = np.stack([flat[-1 - j, c] for j in range(1, self.n_lags + 1)], axis=1)
            x = self._features(now, lagged.reshape(n_points, self.n_lags), t0, c, points)
            m, v = gp.predict(torch.from_numpy(np.ascontiguousarray(x)))
            scale = self.scale_[c]
            mean[:, c] = now[None] + m.numpy() * scale[None]
            std[:, c] = np.sqrt(v.numpy()) * scale[None]
        shape = (self.horizon, *values.shape[1:])
        return mean.reshape(shape), std.reshape(shape)

    def predict_gaussian(self, context: xr.Dataset) -> tuple[xr.Dataset, xr.Dataset]:
        """The Gaussian predictive distribution: ``(mean, std)`` Datasets.

        Parameters
        ----------
        context
            Exactly ``self.context`` time steps; the last one is the issue time.

        Returns
        -------
        mean, std : xarray.Dataset
            Dims ``(lead_time, *space)``, coords ``init_time``, ``lead_time``, ``valid_time``;
            physical units (``std`` includes the observation noise).
        """
        values = self._context_values(context)
        mean, std = self._gaussian_values(values, context[TIME].values)
        build = {"variables": self.variables, "step": self.step, "extra_dims": ()}
        return ensemble_dataset(mean, context, **build), ensemble_dataset(std, context, **build)

    def _sample_values(
        self, values: np.ndarray, times: np.ndarray, n_members: int, seed: int | None
    ) -> np.ndarray:
        mean, std = self._gaussian_values(values, times)
        noise = np.stack(
            [member_rng(seed, m).standard_normal(mean.shape) for m in range(n_members)]
        )
        return mean[None] + std[None] * noise

    # -- checkpoint --------------------------------------------------------------------------
    def _state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays: dict[str, Any] = {"means": self.means_, "scale": self.scale_}
        for c, gp in enumerate(self.gps_):
            arrays.update({f"gp{c}.{k}": v for k, v in gp.state().items()})
        return arrays, {
            "period": str(self.period_),
            "n_channels": len(self.gps_),
            "fit_seconds": self.fit_seconds_,
        }

    def _restore(self, arrays: dict[str, np.ndarray], state: dict[str, Any]) -> None:
        self._memo = {}
        self.means_ = arrays["means"]
        self.scale_ = arrays["scale"]
        self.period_ = pd.Timedelta(state["period"])
        self.weekly_ = self.period_ == pd.Timedelta(days=7)
        self.fit_seconds_ = float(state.get("fit_seconds", 0.0))
        self.gps_ = []
        for c in range(int(state["n_channels"])):
            prefix = f"gp{c}."
            sub = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
            gp = BatchGP(
                self.method,
                iterations=self.iterations,
                n_inducing=self.n_inducing,
                seed=self.seed + c,
            )
            self.gps_.append(gp.restore(sub))


def gaussian_many(
    model: GaussianProcessForecaster, ds: xr.Dataset, issue_times: Any
) -> tuple[xr.Dataset, xr.Dataset]:
    """:meth:`~GaussianProcessForecaster.predict_gaussian` for many issue times.

    Returns ``(mean, std)`` with dims ``(init_time, lead_time, *space)``.
    """
    from forecast.data.windows import context_of

    means, stds = [], []
    for t in pd.DatetimeIndex(np.atleast_1d(np.asarray(issue_times, dtype="datetime64[ns]"))):
        m, s = model.predict_gaussian(context_of(ds, t, model.context))
        means.append(m)
        stds.append(s)
    opts = {"dim": INIT_TIME, "coords": "different", "compat": "equals", "join": "exact"}
    mean = xr.concat(means, **opts)
    std = xr.concat(stds, **opts)
    order = (INIT_TIME, LEAD_TIME, *space_dims(mean))
    return mean.transpose(*order), std.transpose(*order)


def gp_validation_crps(model: GaussianProcessForecaster, ds: xr.Dataset, protocol: Any) -> float:
    """Mean closed-form Gaussian CRPS of ``model`` over ``protocol``'s validation windows of
    ``ds``, in the data's physical units (the figure recorded with a shipped GP)."""
    from forecast.scoring import crps_gaussian, obs_for

    windows = protocol.windows(ds, "val")
    mean, std = gaussian_many(model, ds, windows.issue_times(ds))
    scores = crps_gaussian(obs_for(mean, ds), mean, std)
    return float(np.mean([float(scores[name]) for name in scores.data_vars]))
