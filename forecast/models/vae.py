"""Conditional VAE forecaster with a learned conditional prior; a
:class:`~forecast.dims.LatentForecaster`.

What is modelled: the change from the last observed step in normalized units,
``x = z(t + 1..t + H) - z(t)`` of shape ``(channel, lead, *space)``, given the normalized context
window and the calendar features of the issue time. With ``first_guess`` (a deterministic mean
forecast of :mod:`forecast.models.first_guess`, fitted on the training split) the anchor
``z(t)`` is replaced by the normalized first guess ``f(t + 1..t + H)``: the VAE generates the
residual ``x = z - f`` (regression + generative residual); ``first_guess_condition`` also feeds
``f`` to the networks as extra context frames.

- Posterior encoder ``q(z | context, target)`` and learned conditional prior
  ``p(z | context) = N(mu(c), sigma(c)^2)``, both diagonal Gaussians over a small latent map
  (coarse grid cells x ``latent_channels`` on grids, sensors x ``latent_channels`` on networks);
  decoder ``x = g(z, context)`` deterministic (:mod:`forecast.models.nets.vae_nets`).
- Loss per target element (``N`` = elements of one target window)::

      L = NLL_Gauss(x | g(z_q), s) + beta(step) * sum_u max(KL_u, free_bits) / N
          + crps_weight * fairCRPS({g(z_p^k)}_k=1..crps_members, x)

  with ``z_q ~ q`` (reparameterized), ``s`` a learned scale per (channel, lead), ``KL_u`` the
  batch-mean KL of latent unit ``u``, ``beta`` annealed linearly from 0 to ``beta`` over
  ``kl_warmup`` steps, and ``z_p^k ~ p(z | context)``. The first two terms are the ELBO (with
  free bits against posterior collapse); the fair-CRPS term trains the ensemble that
  :meth:`sample` draws (prior -> decoder) to be calibrated, since a deterministic decoder of
  prior samples otherwise lacks the spread of the unexplained noise ``s``.
- Latent coordinates: the latents that :meth:`prior` returns, :meth:`decode` takes and
  :meth:`encode` returns are the prior's *whitened* coordinates ``eps`` with
  ``z = mu(c) + sigma(c) * eps``; ``eps ~ N(0, I)`` under the prior, so the shared
  :func:`forecast.sampling.latent_path` (slerp) applies unchanged. ``sample`` equals
  ``decode(prior(...))``: members are deterministic images of their latents.

Member ``m`` of seed ``s`` draws ``eps`` from :func:`forecast.models.base.member_rng(s, m)`,
so it does not depend on the ensemble size or on the member batch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import torch
import xarray as xr

from forecast.checkpoint import load_checkpoint, save_checkpoint
from forecast.dims import TIME, space_dims
from forecast.errors import ForecastError
from forecast.models import MODELS
from forecast.models.base import check_members, ensemble_dataset, member_rng
from forecast.models.first_guess import predict_first_guess
from forecast.models.generative import (
    SCALE_WINDOWS,
    TINY_TRAIN,
    GenerativeForecaster,
    add_shared_arrays,
    as_latents,
    broadcast_scale,
    channel_first,
    check_folds,
    check_format,
    check_member_batch,
    check_training_length,
    in_training_folder,
    layout_name,
    stored_first_guess,
    training_state,
    window_dataset,
    window_std,
)
from forecast.models.nets import load_net_weights
from forecast.models.spread import check_objective
from forecast.training.config import check_step_reached, kept_tag
from forecast.training.loop import seed_everything
from forecast.training.loop import train as train_loop

#: Version of this model's checkpoint layout; a checkpoint with another one is refused.
FORMAT = 1
_LOG_SIGMA_MIN, _LOG_SIGMA_MAX = -7.0, 3.0
_CALIBRATIONS = ("valid", "train+valid", "cross-fit")
#: Cross-fit fold samples kept in the training folder for a resume: ``<prefix><k>.safetensors``.
_FOLD_CACHE = "cross-fit-fold"
_FOLD_ARRAYS = ("truth", "centre", "deviation")
#: The reference mean of ``calibrate_correction``: the mean decode of this many fixed latents,
#: half drawn with this seed and half their negatives.
REFERENCE_DRAWS, REFERENCE_SEED = 16, 99_991


def gaussian_kl(
    mu_q: torch.Tensor, ls_q: torch.Tensor, mu_p: torch.Tensor, ls_p: torch.Tensor
) -> torch.Tensor:
    """Elementwise ``KL(N(mu_q, e^{2 ls_q}) || N(mu_p, e^{2 ls_p}))`` in nats.

    Examples
    --------
    >>> z = torch.zeros(1)
    >>> float(gaussian_kl(z, z, z, z))
    0.0
    >>> round(float(gaussian_kl(torch.ones(1), z, z, z)), 6)
    0.5
    """
    ratio = (torch.exp(2 * ls_q) + (mu_q - mu_p) ** 2) / (2 * torch.exp(2 * ls_p))
    return ls_p - ls_q + ratio - 0.5


def fair_crps(samples: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
    """Fair (unbiased) ensemble CRPS per point; ``samples`` ``(B, M, ...)``, ``obs`` ``(B, ...)``.

    ``mean_i |X_i - y| - sum_{i,j} |X_i - X_j| / (2 M (M - 1))``; needs ``M >= 2``.

    Examples
    --------
    >>> s = torch.tensor([[0.0, 2.0]])
    >>> float(fair_crps(s, torch.tensor([1.0])))
    0.0
    """
    m = samples.shape[1]
    if m < 2:
        raise ForecastError(f"the fair CRPS needs at least 2 members, got {m}")
    skill = (samples - obs.unsqueeze(1)).abs().mean(1)
    spread = (samples.unsqueeze(1) - samples.unsqueeze(2)).abs().sum((1, 2)) / (2 * m * (m - 1))
    return skill - spread


@MODELS.register("vae")
class ConditionalVAE(GenerativeForecaster):
    """Conditional VAE ensemble forecaster for grids and sensor networks.

    Parameters
    ----------
    context, horizon : int
        Window geometry in time steps.
    base, mults : int, tuple of int
        Grid network width and channel multipliers per level (the latent lives on the
        coarsest level: ``2 ** (len(mults) - 1)`` times coarser than the grid).
    hidden, blocks : int
        Sensor-network width and number of graph/temporal residual blocks.
    latent_channels : int
        Latent size per coarse grid cell or per sensor.
    emb_dim, loc_channels : int
        Calendar embedding size; learned location channels (grids).
    beta : float
        Final KL weight.
    kl_warmup : int
        Optimizer steps of the linear KL annealing from 0 to ``beta``.
    free_bits : float
        Nats per latent unit below which the KL is not penalized.
    crps_weight : float
        Weight of the fair-CRPS term on decoded prior samples (0 gives the plain ELBO).
    crps_members : int
        Prior samples per training window for that term (>= 2).
    active_threshold : float
        Mean KL (nats) above which a latent unit counts as active.
    spread_calibration : bool
        After training, fit one spread factor per (channel, lead) on held-out windows
        (see :meth:`calibrate_spread`); without them no factor is fitted.
    calibration : str
        Windows of that fit: ``"valid"`` (up to ``calibration_windows`` evenly spaced
        validation windows), ``"train+valid"`` (as many again from the training split, where
        the model is in-sample) or ``"cross-fit"`` (the validation windows plus up to
        ``calibration_windows`` held-out training windows per fold, each ensemble drawn by a
        fold model trained without that fold; :meth:`cross_fit_samples`).
    calibration_windows : int
        Windows taken from each split (each fold) for the spread calibration.
    calibration_folds : int
        Folds of ``"cross-fit"`` (>= 2): that many more trainings of this configuration.
    calibration_objective : str
        What the spread factors optimize on those windows: ``"spread-skill"`` (spread-skill
        ratio closest to 1) or ``"crps"`` (lowest CRPS); :mod:`forecast.models.spread`. The
        spread-skill objective gave calibrated spread and an equal or lower test CRPS on all
        four data sets (docs/vae.md); checkpoints written before it existed used ``"crps"``.
    calibrate_correction : bool
        Also fit, on the same held-out windows and before the spread factors, how much of the
        model's mean correction of the anchor (first guess, or last step) to keep: one weight
        ``w`` in [0, 1] per (channel, lead), by least squares
        (:func:`forecast.models.spread.fit_correction_weights`); members become
        ``w * c + a * (g(z) - c)`` with ``c`` the reference mean (:meth:`_reference_eps`)
        instead of ``g(mu)``. Needs ``spread_calibration``.
    first_guess : str, optional
        Generate the residual from this first guess (:data:`forecast.models.first_guess.
        FIRST_GUESSES`: ``"diurnal"``, ``"damped"``, ``"climatology"``, ``"gp"``,
        ``"gp-clim"``; the last fits on the validation split too, so ``fit`` needs ``valid``)
        instead of the change from the last step (None).
    first_guess_condition : bool
        Also give the normalized first guess to the networks as conditioning (needs
        ``first_guess``).
    first_guess_folds : int
        Above 1: the training windows get out-of-fold first guesses, cross-fitted over this
        many contiguous blocks (:func:`forecast.models.first_guess.fit_folded_first_guess`);
        validation, calibration on validation and sampling use the first guess fitted on the
        whole training split. 1: off.
    member_batch : int
        Members decoded together.
    scale_points : bool
        Divide the generated quantity ``x`` (change from the last step, or first-guess
        residual) by its training standard deviation per variable, lead *and grid point /
        sensor* (fitted on evenly spaced training windows, stored in the checkpoint as the
        array ``point_scale``): the networks learn and generate ``x / scale`` and every output
        is multiplied back, so that the ensemble spread is allocated per point like the
        training variability (as the diffusion's ``scale_points``).
    train : dict, optional
        Fields of :class:`forecast.training.TrainConfig`.
    """

    kind: ClassVar[str] = "vae"

    def __init__(
        self,
        *,
        context: int,
        horizon: int,
        base: int = 16,
        mults: tuple[int, ...] | list[int] = (1, 2, 4),
        hidden: int = 32,
        blocks: int = 2,
        latent_channels: int = 4,
        emb_dim: int = 64,
        loc_channels: int = 8,
        beta: float = 1.0,
        kl_warmup: int = 300,
        free_bits: float = 0.02,
        crps_weight: float = 1.0,
        crps_members: int = 4,
        active_threshold: float = 0.01,
        spread_calibration: bool = True,
        calibration: str = "valid",
        calibration_windows: int = 32,
        calibration_folds: int = 3,
        calibration_objective: str = "spread-skill",
        calibrate_correction: bool = False,
        first_guess: str | None = None,
        first_guess_condition: bool = False,
        first_guess_folds: int = 1,
        member_batch: int = 64,
        scale_points: bool = False,
        train: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(context=context, horizon=horizon)
        self.base, self.mults = int(base), tuple(int(m) for m in mults)
        if not self.mults or min(self.mults) < 1 or self.base < 1:
            raise ForecastError(f"base and mults must be positive, got {base}, {list(mults)}")
        self.hidden, self.blocks = int(hidden), int(blocks)
        self.latent_channels, self.emb_dim = int(latent_channels), int(emb_dim)
        self.loc_channels = int(loc_channels)
        if self.latent_channels < 1 or self.hidden < 1 or self.blocks < 1:
            raise ForecastError("latent_channels, hidden and blocks must be >= 1")
        self.beta, self.kl_warmup = float(beta), int(kl_warmup)
        self.free_bits = float(free_bits)
        if self.beta < 0 or self.free_bits < 0 or self.kl_warmup < 0:
            raise ForecastError("beta, free_bits and kl_warmup must be >= 0")
        self.crps_weight = float(crps_weight)
        self.crps_members = int(crps_members)
        if self.crps_weight < 0 or (self.crps_weight > 0 and self.crps_members < 2):
            raise ForecastError(
                f"crps_weight must be >= 0 and crps_members >= 2, got {crps_weight}, {crps_members}"
            )
        self.active_threshold = float(active_threshold)
        self.spread_calibration = bool(spread_calibration)
        self.spread_factor: np.ndarray | None = None
        if calibration not in _CALIBRATIONS:
            raise ForecastError(
                f"calibration must be one of {list(_CALIBRATIONS)}, got {calibration!r}"
            )
        self.calibration, self.calibration_windows = str(calibration), int(calibration_windows)
        if self.calibration_windows < 1:
            raise ForecastError(f"calibration_windows must be >= 1, got {calibration_windows}")
        self.calibration_folds = int(calibration_folds)
        if self.calibration_folds < 2:
            raise ForecastError(
                f"calibration_folds must be >= 2 (one model per held-out fold), got "
                f"{calibration_folds}"
            )
        self.calibration_objective = check_objective(str(calibration_objective))
        self.calibrate_correction = bool(calibrate_correction)
        if self.calibrate_correction and not self.spread_calibration:
            raise ForecastError(
                "calibrate_correction fits on the spread calibration's windows; set "
                "spread_calibration = true or drop calibrate_correction"
            )
        #: Kept share of the decoded correction per (channel, lead) (calibrate_correction).
        self.correction_weight: np.ndarray | None = None
        if first_guess is not None:
            from forecast.models.first_guess import FIRST_GUESSES

            if first_guess not in FIRST_GUESSES:
                raise ForecastError(
                    f"unknown first_guess {first_guess!r}; use one of {list(FIRST_GUESSES)} or None"
                )
        if first_guess_condition and first_guess is None:
            raise ForecastError("first_guess_condition needs a first_guess; set first_guess")
        self.first_guess = None if first_guess is None else str(first_guess)
        self.first_guess_condition = bool(first_guess_condition)
        self.first_guess_folds = check_folds(first_guess_folds, self.first_guess)
        self.fg: Any = None
        self.member_batch = check_member_batch(member_batch)
        self.scale_points = bool(scale_points)
        #: Training std of ``x`` per (channel, lead, *space) with ``scale_points``, else None.
        self.point_scale: np.ndarray | None = None
        self._init_training(train)
        self._progress_desc = "vae"
        self.log_scale: torch.Tensor | None = None
        self.grid_shape: tuple[int, int] | None = None

    @classmethod
    def tiny(cls, context: int, horizon: int) -> Self:
        """A few-second configuration for tests (contract test hook)."""
        return cls(
            context=context,
            horizon=horizon,
            base=8,
            mults=(1, 2),
            hidden=8,
            blocks=1,
            latent_channels=2,
            emb_dim=16,
            loc_channels=2,
            kl_warmup=10,
            train=dict(TINY_TRAIN),
        )

    # -- networks -----------------------------------------------------------------------------
    def _build_net(self, layout: str, channels: int) -> torch.nn.Module:
        from forecast.models.nets.vae_nets import GraphVAENet, GridVAENet

        if layout == "grid":
            if self.grid_shape is None:
                raise ForecastError("grid size unknown; fit the model on a data set first")
            return GridVAENet(
                channels,
                self.horizon,
                self._net_context(),
                self.grid_shape,
                base=self.base,
                mults=self.mults,
                latent_channels=self.latent_channels,
                emb_dim=self.emb_dim,
                loc_channels=self.loc_channels,
            )
        if self.adjacency is None:
            raise ForecastError("sensor data without an adjacency matrix; open a network data set")
        return GraphVAENet(
            channels,
            self.horizon,
            self._net_context(),
            self.adjacency,
            hidden=self.hidden,
            blocks=self.blocks,
            latent_channels=self.latent_channels,
            emb_dim=self.emb_dim,
        )

    def _net_context(self) -> int:
        """Frames the networks see: the context, plus the first guess when conditioned on it."""
        return self.context + (self.horizon if self.first_guess_condition else 0)

    def _inputs(
        self, context: torch.Tensor, first_guess: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Network context and anchor of a normalized batch ``(B, C, K, *s)``.

        The anchor is what the VAE generates the departure from: the last context step, or the
        normalized first guess ``(B, C, H, *s)``; with ``first_guess_condition`` the first guess
        is appended to the context frames the networks see.
        """
        if self.first_guess is None:
            return context, context[:, :, -1:]
        if first_guess is None:
            raise ForecastError("this vae needs the first guess of every window; refit it")
        if self.first_guess_condition:
            return torch.cat([context, first_guess], dim=2), first_guess
        return context, first_guess

    def _scaled(self, x: torch.Tensor) -> torch.Tensor:
        """What the networks model: ``x`` ``(B, C, H, *s)`` divided by ``point_scale``
        (``x`` itself without ``scale_points``)."""
        return x if self.point_scale is None else x / broadcast_scale(self.point_scale, x)

    def _unscaled(self, x: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`_scaled`: the normalized change (or residual) of a network output."""
        return x if self.point_scale is None else x * broadcast_scale(self.point_scale, x)

    def latent_shape(self) -> tuple[int, ...]:
        """Shape of one member's latent (without the member axis)."""
        self._require_fitted()
        return tuple(self.net.latent_shape())  # type: ignore[union-attr]

    # -- loss ---------------------------------------------------------------------------------
    def beta_at(self, step: int) -> float:
        """KL weight at optimizer step ``step`` (linear warm-up from 0 to ``beta``)."""
        if self.kl_warmup <= 0:
            return self.beta
        return self.beta * min(1.0, step / self.kl_warmup)

    def loss_terms(
        self,
        net: torch.nn.Module,
        log_scale: torch.Tensor,
        context: torch.Tensor,
        target: torch.Tensor,
        calendar: torch.Tensor,
        gen: torch.Generator,
        first_guess: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """The loss terms on a batch of normalized windows ``(B, C, K|H, *space)`` (and the
        normalized first guess ``(B, C, H, *space)`` of each window with ``first_guess``).

        Returns a dict with ``nll`` (Gaussian NLL per element), ``kl_units`` (batch-mean KL of
        each latent unit, nats), ``crps`` (fair CRPS per element of the prior ensemble; zero
        when ``crps_weight`` is 0) and ``n`` (target elements per window).
        """
        context, anchor = self._inputs(context, first_guess)
        x = self._scaled(target - anchor)
        feats, emb = net.features(context, calendar)
        mu_p, ls_p = net.prior(feats)
        ls_p = ls_p.clamp(_LOG_SIGMA_MIN, _LOG_SIGMA_MAX)
        mu_q, ls_q = net.posterior(x, feats, emb)
        ls_q = ls_q.clamp(_LOG_SIGMA_MIN, _LOG_SIGMA_MAX)
        eps = torch.randn(mu_q.shape, generator=gen)
        xhat = net.decode(mu_q + torch.exp(ls_q) * eps, feats, emb)
        scale = log_scale.reshape(1, *log_scale.shape, *([1] * (x.ndim - 3)))
        nll = (0.5 * ((x - xhat) * torch.exp(-scale)) ** 2 + scale).mean() + 0.5 * math.log(
            2 * math.pi
        )
        kl_units = gaussian_kl(mu_q, ls_q, mu_p, ls_p).mean(0)
        crps = torch.zeros(())
        if self.crps_weight > 0:
            b, m = x.shape[0], self.crps_members
            eps_p = torch.randn((b, m, *mu_p.shape[1:]), generator=gen)
            z_p = (mu_p.unsqueeze(1) + torch.exp(ls_p).unsqueeze(1) * eps_p).flatten(0, 1)
            rep = lambda t: t.repeat_interleave(m, dim=0)  # noqa: E731
            feats_m = [rep(f) for f in feats] if isinstance(feats, list) else rep(feats)
            samples = net.decode(z_p, feats_m, rep(emb)).reshape(b, m, *x.shape[1:])
            crps = fair_crps(samples, x).mean()
        return {"nll": nll, "kl_units": kl_units, "crps": crps, "n": x[0].numel()}

    def total_loss(self, terms: dict[str, torch.Tensor], step: int) -> torch.Tensor:
        """Combine :meth:`loss_terms` at optimizer step ``step`` (free bits per latent unit)."""
        kl = torch.clamp(terms["kl_units"], min=self.free_bits).sum() / terms["n"]
        return terms["nll"] + self.beta_at(step) * kl + self.crps_weight * terms["crps"]

    # -- training ------------------------------------------------------------------------------
    def _normalized(self, ds: xr.Dataset) -> np.ndarray:
        from forecast.data.torch import to_array

        return self.normalizer.transform_array(to_array(ds[self.variables]), channel_axis=1)

    def _first_guess_norm(
        self, values: np.ndarray, times: np.ndarray, origins: np.ndarray, fg: Any = None
    ) -> np.ndarray:
        """Normalized first guess ``(n, H, C, *s)`` float32 of the issue indices ``origins`` of
        the physical ``values`` ``(T, C, *s)``; ``fg``: another first guess than the model's
        (the out-of-fold one of the training windows)."""
        origins = np.asarray(origins, dtype=np.int64)
        guess = self.fg if fg is None else fg
        pred = np.asarray(predict_first_guess(guess, values, times, origins))
        want = (len(origins), self.horizon, *values.shape[1:])
        if pred.shape != want:
            raise ForecastError(
                f"first guess {self.first_guess!r} returned shape {pred.shape}, expected {want}"
            )
        norm = self.normalizer.transform_array(pred.astype(np.float32), channel_axis=2)
        return np.ascontiguousarray(norm, dtype=np.float32)

    def _window_dataset(self, ds: xr.Dataset, fg: Any = None) -> Any:
        """Windows of ``ds`` (normalized) without NaN in context or target; with a first guess
        (``fg``, default the model's), each item also holds ``first_guess``
        ``(horizon, channel, *space)`` (normalized), computed once here."""
        from forecast.data.torch import to_array

        data = window_dataset(self._normalized(ds), ds, self.context, self.horizon)
        if self.first_guess is None:
            return data
        physical = to_array(ds[self.variables])
        guess = self._first_guess_norm(physical, ds[TIME].values, data.windows.issue_index, fg)
        return _WithFirstGuess(data, torch.from_numpy(guess))

    @in_training_folder
    def fit(
        self,
        train: xr.Dataset,
        valid: xr.Dataset | None = None,
        *,
        out_dir: str | Path | None = None,
        resume: bool = False,
        stop_after: int | None = None,
        snapshots: Sequence[int] = (),
        jobs: int = 1,
    ) -> Self:
        """Train on ``train`` (physical units); validation CRPS on ``valid`` if given.

        Parameters
        ----------
        train, valid : xr.Dataset
            Contiguous slices of a standard data set.
        out_dir : path, optional
            Folder for ``best.safetensors`` / ``last.safetensors`` training checkpoints (and,
            with ``calibration = "cross-fit"``, the folds' samples until the fit ends; default:
            a temporary one); the model ends with the ``train.keep`` weights and their spread
            factors.
        resume : bool
            Continue exactly from ``out_dir/last.safetensors`` (finished cross-fit folds are
            read, not trained again).
        stop_after : int, optional
            Stop after this optimizer step as if interrupted (tests).
        snapshots : sequence of int
            Also write the training state at these steps (``out/step-<N>.safetensors``; see
            :func:`forecast.models.snapshots.fit_snapshots`).
        jobs : int
            Above 1 (``calibration = "cross-fit"`` only): the fold models are fitted that many
            at a time, each in a worker process (the same factors as one after the other).

        Returns
        -------
        Self
            Fitted; ``self.training`` holds the loop's record and the latent usage
            (``active_units`` etc., see :meth:`latent_usage`).
        """
        from forecast.workers import check_jobs

        check_training_length(train, self.context, self.horizon)
        t_folds = time.perf_counter()
        held_out = None  # the cross-fit folds train first: this fit then seeds as without them
        cross_fit = self.spread_calibration and self.calibration == "cross-fit"
        if check_jobs(jobs) > 1 and not cross_fit:
            raise ForecastError(
                "jobs > 1 fits a VAE's cross-fit fold models side by side; this VAE has no "
                'calibration = "cross-fit", drop --jobs'
            )
        if cross_fit:
            if out_dir is not None:  # each fold's samples are kept there until the fit ends
                Path(out_dir).mkdir(parents=True, exist_ok=True)
            held_out = self.cross_fit_samples(train, valid, cache=out_dir, reuse=resume, jobs=jobs)
        folds_s = round(time.perf_counter() - t_folds, 1)
        layout, out = self._start_fit(train, out_dir)
        cfg = self.train_config
        if layout == "grid":
            space = space_dims(train)
            self.grid_shape = (int(train.sizes[space[0]]), int(train.sizes[space[1]]))
        t_setup = time.perf_counter()
        train_fg = self._fit_first_guess(train, valid)  # out of fold with first_guess_folds
        data = self._window_dataset(train, train_fg)
        self.point_scale = None
        if self.scale_points:
            _, anchor, tgt, _ = self._batch(self._pick(data, SCALE_WINDOWS))
            self.point_scale = window_std(tgt - anchor)
        seed_everything(cfg.seed)
        module = _VAEModule(
            self._build_net(layout, len(self.variables)), len(self.variables), self.horizon
        )
        ema = resume_arrays = None
        first_step = 0
        if resume:
            resume_arrays, ema = self._resume(out, module)
            first_step = int(resume_arrays[1]["step"])
        valid_data = self._windows_or_none(valid)  # first guess computed once
        setup_s = round(time.perf_counter() - t_setup, 1)
        validate = self._validator(valid_data) if valid_data is not None else None
        counter = {"step": first_step}

        def loss_fn(mod: torch.nn.Module, batch: dict[str, Any], gen: torch.Generator):
            terms = self.loss_terms(
                mod.net,
                mod.log_scale,
                batch["context"].transpose(1, 2),
                batch["target"].transpose(1, 2),
                batch["calendar"],
                gen,
                _fg_of(batch),
            )
            loss = self.total_loss(terms, counter["step"])
            counter["step"] += 1
            return loss

        usage_data = valid_data if validate is not None else data
        calib = self._calibration_set(data, valid_data) if self.spread_calibration else []

        def calibrate() -> None:
            self._calibrate_on(calib, held_out)

        final: dict[str, Any] = {}

        def checkpoint(tag: str, ema_module: torch.nn.Module, arrays: dict, meta: dict) -> None:
            if out is None:
                return
            self._set_module(ema_module)
            calibrate()
            meta = {**meta, "latent": self.latent_usage(usage_data)}
            self._write_training(out, tag, arrays, meta)
            if tag == "last":  # the final weights: fit reuses this work below
                final.update(
                    factor=self.spread_factor, weight=self.correction_weight, latent=meta["latent"]
                )

        ema, result = train_loop(
            module,
            data,
            loss_fn,
            cfg,
            validate=validate,
            checkpoint=checkpoint,
            resume=resume_arrays,
            ema=ema,
            stop_after=stop_after,
            snapshots=snapshots,
            desc=self._progress_desc,
        )
        self._set_module(ema.eval())
        if final:
            self.spread_factor, self.correction_weight = final["factor"], final["weight"]
        else:
            calibrate()
        check_step_reached(cfg.keep, result.to_dict())
        if kept_tag(cfg.keep) != "last" and out is not None:
            final.update(self._take_kept(out / f"{cfg.keep}.safetensors"))
        self.training = dict(result.to_dict())
        self.training["setup_seconds"] = setup_s  # first guess fit, windows
        if held_out is not None:
            self.training["cross_fit"] = {
                "folds": self.calibration_folds,
                "windows": int(held_out[0].shape[0]),
                "seconds": folds_s,
            }
        self.training["latent"] = final.get("latent") or self.latent_usage(usage_data)
        if "weights_step" in final:  # the train.keep weights, not the last step's
            self.training["weights_step"] = final["weights_step"]
        if cross_fit and out is not None and result.stopped != "interrupted":
            # the folds' samples were kept for a resume of this fit only
            for path in out.glob(f"{_FOLD_CACHE}*.safetensors"):
                path.unlink(missing_ok=True)
        return self

    def _take_kept(self, path: Path) -> dict[str, Any]:
        """Take the weights and spread factors of the training checkpoint ``path`` (the
        ``train.keep`` one; nothing when it was not written); returns the step of those
        weights and their latent usage record (``{"weights_step": ..., "latent": ...}``)."""
        if not path.is_file():
            return {}
        arrays, meta = load_checkpoint(path)
        self._restore(arrays, meta["state"])  # as load() would; fit sets the record after
        record = meta.get("training") or {}
        kept = {"weights_step": record.get("step")}
        return {**kept, "latent": record["latent"]} if record.get("latent") else kept

    def _set_module(self, module: torch.nn.Module) -> None:
        self.net = module.net
        self.log_scale = module.log_scale.detach().clone()

    def _windows_or_none(self, ds: xr.Dataset | Any) -> Any:
        """The window dataset of ``ds`` (passed through if it is one already); None for no data
        or no complete window."""
        if ds is None or not isinstance(ds, xr.Dataset):
            return ds
        try:
            return self._window_dataset(ds)
        except ForecastError:
            return None

    def _validator(self, valid: xr.Dataset | Any):
        """Validation CRPS (normalized units) on a few evenly spaced windows of ``valid`` (a
        data set or its window dataset)."""
        cfg = self.train_config
        data = self._windows_or_none(valid)
        if data is None:
            return None
        pick = np.unique(np.linspace(0, len(data) - 1, min(cfg.val_issue_times, len(data))))
        items = [data[int(k)] for k in pick.astype(int)]

        def validate(module: torch.nn.Module) -> float:
            from forecast.scoring.kernels import crps_ensemble_np

            scores = []
            for k, item in enumerate(items):
                ctx, anchor, tgt, cal = self._batch([item])
                eps = self._prior_eps(module.net.latent_shape(), cfg.val_members, seed=k)
                x = self._decode_eps(module.net, ctx, cal, eps)
                fct = (x + anchor).numpy()
                obs = tgt[0].numpy()
                scores.append(crps_ensemble_np(obs, np.moveaxis(fct, 0, -1)).mean())
            return float(np.mean(scores))

        return validate

    def _validated_module(self) -> Any:
        from types import SimpleNamespace

        return SimpleNamespace(net=self.net)  # the validator reads only ``module.net``

    def latent_usage(self, ds: xr.Dataset | Any, max_windows: int = 256) -> dict[str, Any]:
        """KL of each latent unit, averaged over (up to ``max_windows``) windows of ``ds`` (a
        data set or the windows :meth:`_window_dataset` made of one).

        Returns
        -------
        dict
            ``active_units`` (units whose mean KL exceeds ``active_threshold`` nats),
            ``latent_units`` (all units), ``active_fraction``, ``kl_per_channel`` (mean KL per
            unit of each latent channel), ``kl_total`` (nats per window), ``windows``.
        """
        self._require_fitted()
        data = self._window_dataset(ds) if isinstance(ds, xr.Dataset) else ds
        pick = np.unique(np.linspace(0, len(data) - 1, min(max_windows, len(data))).astype(int))
        total = None
        with torch.inference_mode():
            for a in range(0, len(pick), 32):
                ctx, anchor, tgt, cal = self._batch([data[int(k)] for k in pick[a : a + 32]])
                feats, emb = self.net.features(ctx, cal)
                mu_p, ls_p = self.net.prior(feats)
                mu_q, ls_q = self.net.posterior(self._scaled(tgt - anchor), feats, emb)
                kl = gaussian_kl(
                    mu_q,
                    ls_q.clamp(_LOG_SIGMA_MIN, _LOG_SIGMA_MAX),
                    mu_p,
                    ls_p.clamp(_LOG_SIGMA_MIN, _LOG_SIGMA_MAX),
                ).sum(0)
                total = kl if total is None else total + kl
        mean = (total / len(pick)).numpy()
        active = int((mean > self.active_threshold).sum())
        return {
            "active_units": active,
            "latent_units": int(mean.size),
            "active_fraction": active / mean.size,
            "kl_per_channel": mean.reshape(mean.shape[0], -1).mean(1).round(5).tolist(),
            "kl_total": float(mean.sum()),
            "threshold": self.active_threshold,
            "windows": len(pick),
        }

    # -- spread calibration -------------------------------------------------------------------
    @staticmethod
    def _pick(data: Any, max_windows: int) -> list[dict[str, Any]]:
        """Up to ``max_windows`` evenly spaced items of the window dataset ``data``."""
        pick = np.unique(np.linspace(0, len(data) - 1, min(max_windows, len(data))).astype(int))
        return [data[int(k)] for k in pick]

    def _calibration_set(self, train_windows: Any, valid: xr.Dataset | Any) -> list:
        """The windows of the spread calibration (``calibration``): validation windows, plus
        as many evenly spaced training windows (``train_windows``) for ``"train+valid"``."""
        items = self._calibration_items(valid, self.calibration_windows) or []
        if self.calibration == "train+valid":
            items = self._pick(train_windows, self.calibration_windows) + items
        return items

    def recalibrate(
        self,
        train: xr.Dataset,
        valid: xr.Dataset | None = None,
        calibration: str | None = None,
        objective: str | None = None,
    ) -> np.ndarray | None:
        """Refit the spread factors (and, with ``calibrate_correction``, the correction
        weights) of a fitted model (e.g. a loaded checkpoint) on the windows that
        ``calibration`` names, by ``objective`` (defaults: the model's ``calibration`` and
        ``calibration_objective``); returns the new factors."""
        self._require_fitted()
        if objective is not None:
            self.calibration_objective = check_objective(objective)
        if calibration is not None:
            if calibration not in _CALIBRATIONS:
                raise ForecastError(
                    f"calibration must be one of {list(_CALIBRATIONS)}, got {calibration!r}"
                )
            self.calibration = calibration
        data = self._window_dataset(train) if self.calibration == "train+valid" else None
        items = self._calibration_set(data, valid)
        held_out = None
        if self.calibration == "cross-fit":
            held_out = self.cross_fit_samples(train, valid)
        self._calibrate_on(items, held_out)
        return self.spread_factor

    def _calibrate_on(self, items: list, held_out: Any) -> None:
        """Set the spread factors and correction weights by :meth:`calibrate` on ``items``
        and ``held_out``; both None when neither has windows."""
        self.spread_factor = self.correction_weight = None
        if items or held_out is not None:
            self.spread_factor, self.correction_weight = self.calibrate(items, held_out=held_out)

    def _calibration_items(self, valid: xr.Dataset | Any, max_windows: int = 32) -> list | None:
        """Up to ``max_windows`` evenly spaced validation windows (None without any); ``valid``
        is a data set or its window dataset."""
        data = self._windows_or_none(valid)
        return None if data is None else self._pick(data, max_windows)

    def _batch(
        self, items: list[dict[str, Any]]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Network context, anchor, target ``(B, C, K|H, *s)`` and calendar of window items."""
        ctx = torch.stack([i["context"] for i in items]).transpose(1, 2)
        tgt = torch.stack([i["target"] for i in items]).transpose(1, 2)
        cal = torch.stack([i["calendar"] for i in items])
        fg = None
        if "first_guess" in items[0]:
            fg = torch.stack([i["first_guess"] for i in items]).transpose(1, 2)
        net_ctx, anchor = self._inputs(ctx, fg)
        return net_ctx, anchor, tgt, cal

    def spread_samples(
        self,
        items: list[dict[str, Any]],
        members: int = 16,
        seed: int = 10_000,
        *,
        reference: bool | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(truth, centre, deviation)`` of ``members``-member ensembles on window items, in
        the generated (normalized, scaled) units: the target ``x`` ``(W, C, H, *s)``, the
        centre ``c`` ``(W, C, H, *s)`` and the members' departures ``g(z) - c``
        ``(W, C, H, *s, M)``, float32; window ``k`` draws its latents with seed ``seed + k``.
        The centre is the decoded prior mean ``g(mu)``, or with ``reference`` (default:
        ``calibrate_correction``) the reference mean (:meth:`_reference_eps`)."""
        self._require_fitted()
        reference = self.calibrate_correction if reference is None else bool(reference)
        centres, devs, obs = [], [], []
        for k, item in enumerate(items):
            ctx, anchor, tgt, cal = self._batch([item])
            eps = self._prior_eps(self.latent_shape(), members, seed=seed + k)
            x = self._decode_eps(self.net, ctx, cal, eps).numpy()
            if reference:
                ref = self._decode_eps(self.net, ctx, cal, self._reference_eps()).numpy()
                centre = ref.mean(axis=0, keepdims=True)
            else:  # the decoded prior mean g(mu): eps = 0
                centre = self._decode_eps(self.net, ctx, cal, torch.zeros_like(eps[:1])).numpy()
            centres.append(centre[0])
            devs.append(np.moveaxis(x - centre, 0, -1))
            obs.append((tgt - anchor)[0].numpy())
        return np.stack(obs), np.stack(centres), np.stack(devs)

    def cross_fit_samples(
        self,
        train: xr.Dataset,
        valid: xr.Dataset | None = None,
        members: int = 16,
        *,
        cache: str | Path | None = None,
        reuse: bool = False,
        jobs: int = 1,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`spread_samples` of held-out training windows (``calibration = "cross-fit"``).

        The training windows are cut into ``calibration_folds`` contiguous blocks
        (:mod:`forecast.models.folds`). For each block a model of this configuration (same
        seed, no spread calibration, the ``train.keep`` weights) is trained on ``train`` with
        every step of the block's windows set to NaN, so that neither it nor its first guess
        has seen them, and draws the ensembles of up to ``calibration_windows`` evenly spaced
        windows of the block. The spread factors then rest on errors of models that had not
        seen the windows, over the whole training period, not only on the validation days.
        Costs ``calibration_folds`` trainings; the fold models are dropped.

        With a ``cache`` folder each fold's samples are written there
        (``cross-fit-fold<k>.safetensors``) as soon as the fold is done; with ``reuse`` too, a
        fold whose file was written for the same configuration, data and members is read
        instead of trained again (what ``fit(..., resume=True)`` does). With ``jobs > 1`` the
        folds still to train are fitted that many at a time in worker processes
        (:func:`forecast.workers.in_workers`), with the same samples.
        """
        from forecast.models.folds import fold_blocks, fold_cache_key
        from forecast.workers import check_jobs, in_workers, loaded, quiet, worker_threads

        blocks = fold_blocks(
            int(train.sizes[TIME]),
            self.context,
            self.horizon,
            self.calibration_folds,
            "calibration_folds",
        )
        # the fold models are not calibrated; their samples are centred as this model's are
        reference = self.calibrate_correction
        config = {**self.config(), "spread_calibration": False, "calibrate_correction": False}
        key = fold_cache_key({**config, "reference_centre": reference}, members, train, valid)
        parts: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        tasks = []
        for k, block in enumerate(blocks):
            path = Path(cache) / f"{_FOLD_CACHE}{k}.safetensors" if cache is not None else None
            if reuse and path is not None and (cached := _read_fold(path, key, k)) is not None:
                parts[k] = cached
            else:
                tasks.append((k, config, train, valid, block, len(blocks), members, reference))
        if check_jobs(jobs) > 1 and len(tasks) > 1:
            silent = quiet({"kind": self.kind, "config": config})["config"]
            threads = worker_threads(min(jobs, len(tasks)))
            train, valid = loaded(train, valid)
            work = [(k, silent, train, valid, *rest, threads) for k, _, _, _, *rest in tasks]
            progress = self.train_config.progress
            done = in_workers(_fold_in_worker, work, jobs, "cross-fit folds", progress)
        else:
            done = (_fold_samples(*task) for task in tasks)
        for k, samples in done:
            parts[k] = samples
            if cache is not None:
                arrays = dict(zip(_FOLD_ARRAYS, samples, strict=True))
                path = Path(cache) / f"{_FOLD_CACHE}{k}.safetensors"
                save_checkpoint(path, arrays, {"kind": "cross-fit-fold", "fold": k, "key": key})
        ordered = [parts[k] for k in range(len(blocks))]
        truth, centre, dev = (np.concatenate(a) for a in zip(*ordered, strict=True))
        return truth, centre, dev

    def calibrate_spread(
        self,
        items: list[dict[str, Any]],
        members: int = 16,
        grid: np.ndarray | None = None,
        held_out: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    ) -> np.ndarray:
        """Spread factors ``(channel, lead)`` fitted on held-out windows: the first part of
        :meth:`calibrate` (with ``calibrate_correction``, about the weighted centre)."""
        return self.calibrate(items, members, grid, held_out)[0]

    def calibrate(
        self,
        items: list[dict[str, Any]],
        members: int = 16,
        grid: np.ndarray | None = None,
        held_out: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Spread factors and correction weights ``(channel, lead)`` fitted on held-out windows.

        Members become ``w * c + a * (g(z) - c)`` (in the generated units: change from the
        anchor), with the centre ``c`` the decoded prior mean ``g(mu)``, or with
        ``calibrate_correction`` the reference mean (:meth:`spread_samples`). ``w`` (only with
        ``calibrate_correction``, else None: ``w = 1``) is the least-squares share of ``c``
        the windows support (:func:`forecast.models.spread.fit_correction_weights`); then for
        each (channel, lead) ``a`` is the value of ``grid`` (default 0.5..4, geometric) with
        the best ``calibration_objective`` (lowest CRPS, or spread-skill closest to 1;
        :mod:`forecast.models.spread`) of ``members``-member ensembles about ``w * c``.
        The windows: ``items`` (held-out windows, see ``calibration``) and the samples
        ``held_out`` (e.g. :meth:`cross_fit_samples`). Members still depend only on their own
        latent.
        """
        from forecast.models.spread import fit_correction_weights, fit_spread_factors

        self._require_fitted()
        grid = np.geomspace(0.5, 4.0, 25) if grid is None else np.asarray(grid, dtype=float)
        parts = [self.spread_samples(items, members)] if items else []
        if held_out is not None:
            parts.append(held_out)
        if not parts:
            raise ForecastError("no windows to calibrate the spread on; pass validation data")
        truth, centre, dev = (np.concatenate(a) for a in zip(*parts, strict=True))
        weight = None
        if self.calibrate_correction:
            weight = fit_correction_weights(truth, centre).astype(np.float32)
            centre = centre * weight.reshape(1, *weight.shape, *([1] * (centre.ndim - 3)))
        factors = fit_spread_factors(truth, centre, dev, grid, self.calibration_objective)
        return factors.astype(np.float32), weight

    def _calibration(self) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The spread factors and correction weights as float32 tensors (None where unset)."""

        def tensor(array: np.ndarray | None) -> torch.Tensor | None:
            return None if array is None else torch.from_numpy(np.asarray(array, np.float32))

        return tensor(self.spread_factor), tensor(self.correction_weight)

    def _reference_eps(self) -> torch.Tensor:
        """The fixed whitened latents ``(REFERENCE_DRAWS, *latent_shape)`` whose mean decode,
        the *reference mean*, estimates the ensemble mean ``E_z g(z)`` of a context: the centre
        that ``calibrate_correction`` shrinks (``g(mu)`` is not: on P2 the members' mean lies
        well away from it). Half are drawn with ``REFERENCE_SEED``, half are their negatives."""
        half = self._prior_eps(self.latent_shape(), REFERENCE_DRAWS // 2, REFERENCE_SEED)
        return torch.cat([half, -half])

    # -- sampling core ------------------------------------------------------------------------
    @staticmethod
    def _prior_eps(shape: tuple[int, ...], n_members: int, seed: int | None) -> torch.Tensor:
        """Whitened latents ``(M, *shape)``; member ``m`` from ``member_rng(seed, m)`` only."""
        return torch.from_numpy(
            np.stack([member_rng(seed, m).standard_normal(shape) for m in range(n_members)]).astype(
                np.float32
            )
        )

    def _decode_eps(
        self,
        net: torch.nn.Module,
        ctx: torch.Tensor,
        cal: torch.Tensor,
        eps: torch.Tensor,
        factor: torch.Tensor | None = None,
        weight: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Normalized change ``(M, C, H, *s)`` from whitened latents under the prior of
        the (batch-1) context; with ``factor`` and/or ``weight`` ``(C, H)`` (1 where None),
        members are ``weight * c + factor * (g(z) - c)`` with ``c`` the decoded prior mean
        ``g(mu)``, or the reference mean with ``calibrate_correction`` (still a deterministic
        function of ``eps``); with ``scale_points`` multiplied by ``point_scale`` (which
        commutes with both)."""
        with torch.inference_mode():
            feats, emb = net.features(ctx, cal)
            mu, ls = net.prior(feats)
            sigma = torch.exp(ls.clamp(_LOG_SIGMA_MIN, _LOG_SIGMA_MAX))

            def decoded(latents: torch.Tensor) -> torch.Tensor:  # member_batch at a time
                return torch.cat(
                    [
                        net.decode(mu + sigma * latents[a : a + self.member_batch], feats, emb)
                        for a in range(0, latents.shape[0], self.member_batch)
                    ]
                )

            out = decoded(eps.to(torch.float32))
            if factor is not None or weight is not None:  # about the centre
                if self.calibrate_correction:  # the reference mean
                    centre = decoded(self._reference_eps()).mean(dim=0, keepdim=True)
                else:  # the decoded prior mean
                    centre = net.decode(mu, feats, emb)
                shape = (1, out.shape[1], out.shape[2], *([1] * (out.ndim - 3)))
                deviation = out - centre
                if factor is not None:
                    deviation = factor.reshape(shape) * deviation
                if weight is not None:
                    centre = weight.reshape(shape) * centre
                out = centre + deviation
            out = self._unscaled(out)
        return out

    def _cond(
        self, values: np.ndarray, times: np.ndarray
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Network context ``(1, C, K[+H], *s)``, anchor and calendar of one physical context
        window ``(K, C, *s)``."""
        from forecast.data.windows import calendar_features

        norm = self.normalizer.transform_array(values.astype(np.float32), channel_axis=1)
        ctx = channel_first(norm)
        fg = None
        if self.first_guess is not None:
            pred = self._first_guess_norm(values, times, np.array([len(values) - 1]))
            fg = torch.from_numpy(np.ascontiguousarray(np.swapaxes(pred, 1, 2)))
        net_ctx, anchor = self._inputs(ctx, fg)
        return net_ctx, anchor, torch.from_numpy(calendar_features(times[-1:]))

    def _physical(self, anchor: torch.Tensor, x: torch.Tensor) -> np.ndarray:
        return self._physical_members(x + anchor)

    def _sample_values(
        self, values: np.ndarray, times: np.ndarray, n_members: int, seed: int | None
    ) -> np.ndarray:
        ctx, anchor, cal = self._cond(values, times)
        eps = self._prior_eps(self.latent_shape(), n_members, seed)
        return self._physical(
            anchor, self._decode_eps(self.net, ctx, cal, eps, *self._calibration())
        )

    # -- latent forecaster ---------------------------------------------------------------------
    def prior(
        self, context: xr.Dataset, n_members: int, *, seed: int | None = None
    ) -> torch.Tensor:
        """Whitened prior latents ``eps`` ``(M, *latent_shape)``, ``z = mu + sigma * eps``.

        ``eps ~ N(0, I)``; member ``m`` depends only on ``(seed, m)``. ``sample(context, M,
        seed=s)`` equals ``decode(context, prior(context, M, seed=s))``.
        """
        self._context_values(context)
        return self._prior_eps(self.latent_shape(), check_members(n_members), seed)

    def decode(self, context: xr.Dataset, latents: Any) -> xr.Dataset:
        """Deterministic members (physical units) from whitened latents ``(M, *latent_shape)``
        (or one latent without the member axis)."""
        values = self._context_values(context)
        eps = as_latents(latents, self.latent_shape())
        if not torch.isfinite(eps).all():
            raise ForecastError("latents contain NaN or inf; pass finite latents")
        ctx, anchor, cal = self._cond(values, context[TIME].values)
        x = self._decode_eps(self.net, ctx, cal, eps, *self._calibration())
        return ensemble_dataset(self._physical(anchor, x), context, self.variables, self.step)

    def encode(self, context: xr.Dataset, target: xr.Dataset) -> torch.Tensor:
        """Posterior mean of an observed ``target`` in the prior's whitened coordinates,
        ``(1, *latent_shape)``: ``(mu_q - mu_p) / sigma_p``.

        ``target`` holds the ``horizon`` steps after the issue time (e.g.
        ``forecast.data.windows.target_of``), in physical units.
        """
        values = self._context_values(context)
        tgt = self._normalized_target(target)
        ctx, anchor, cal = self._cond(values, context[TIME].values)
        with torch.inference_mode():
            feats, emb = self.net.features(ctx, cal)
            mu_p, ls_p = self.net.prior(feats)
            mu_q, _ = self.net.posterior(self._scaled(tgt - anchor), feats, emb)
            eps = (mu_q - mu_p) / torch.exp(ls_p.clamp(_LOG_SIGMA_MIN, _LOG_SIGMA_MAX))
        return eps.clone()

    # -- checkpoints ---------------------------------------------------------------------------
    def _state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        self._require_fitted()
        arrays = {f"net.net.{k}": v.detach().numpy() for k, v in self.net.state_dict().items()}
        arrays["net.log_scale"] = self.log_scale.numpy()
        if self.point_scale is not None:
            arrays["point_scale"] = np.asarray(self.point_scale, dtype=np.float64)
        fg_state = add_shared_arrays(arrays, self.adjacency, self.fg)
        state = {
            "format": FORMAT,
            "normalizer": self.normalizer.to_dict(),
            "layout": layout_name(self.adjacency),
            "grid_shape": list(self.grid_shape) if self.grid_shape else None,
            "spread_factor": None
            if self.spread_factor is None
            else np.asarray(self.spread_factor).tolist(),
            "calibration_objective": self.calibration_objective,
            **training_state(self.training),
        }
        if self.correction_weight is not None:
            state["correction_weight"] = np.asarray(self.correction_weight).tolist()
        if fg_state is not None:
            state["first_guess"] = fg_state
        return arrays, state

    def _restore(self, arrays: dict[str, np.ndarray], state: dict[str, Any]) -> None:
        check_format("vae", state, FORMAT)
        self._restore_shared(arrays, state)
        grid = state.get("grid_shape")
        self.grid_shape = (int(grid[0]), int(grid[1])) if grid else None
        factor = state.get("spread_factor")
        self.spread_factor = None if factor is None else np.asarray(factor, dtype=np.float32)
        weight = state.get("correction_weight")
        if self.calibrate_correction and weight is None and factor is not None:
            raise ForecastError(
                "vae checkpoint with calibrate_correction=True lacks its correction weights; "
                "retrain it"
            )
        self.correction_weight = None if weight is None else np.asarray(weight, dtype=np.float32)
        # what the stored factors were fitted by: checkpoints older than the option used CRPS
        self.calibration_objective = check_objective(state.get("calibration_objective", "crps"))
        self.point_scale = None
        if self.scale_points:
            if "point_scale" not in arrays:
                raise ForecastError(
                    "vae checkpoint with scale_points=True lacks its point_scale array; retrain it"
                )
            self.point_scale = np.asarray(arrays["point_scale"], dtype=np.float64)
        self.fg = None
        if self.first_guess is not None:
            self.fg = stored_first_guess(
                self.first_guess,
                arrays,
                state.get("first_guess"),
                f"vae checkpoint lacks its {self.first_guess!r} first guess; retrain it",
            )
        module = _VAEModule(
            self._build_net(state["layout"], len(self.variables)), len(self.variables), self.horizon
        )
        load_net_weights(module, arrays)
        self._set_module(module.eval())


class _VAEModule(torch.nn.Module):
    """What the training loop optimizes: the network plus the learned log scale of the
    Gaussian likelihood per (channel, lead)."""

    def __init__(self, net: torch.nn.Module, channels: int, horizon: int) -> None:
        super().__init__()
        self.net = net
        self.log_scale = torch.nn.Parameter(torch.zeros(channels, horizon))


class _WithFirstGuess(torch.utils.data.Dataset):
    """A window dataset whose items also hold the precomputed normalized first guess
    ``first_guess`` ``(horizon, channel, *space)`` of their window."""

    def __init__(self, data: Any, first_guess: torch.Tensor) -> None:
        self.data, self.first_guess = data, first_guess
        self.windows = data.windows

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, k: int) -> dict[str, Any]:
        return {**self.data[k], "first_guess": self.first_guess[k]}


def _fold_samples(
    k: int,
    config: dict[str, Any],
    train: xr.Dataset,
    valid: xr.Dataset | None,
    block: Any,
    n_blocks: int,
    members: int,
    reference: bool = False,
) -> tuple[int, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Cross-fit fold ``k``: a VAE of ``config`` trained on ``train`` without ``block``'s
    steps, and its :meth:`ConditionalVAE.spread_samples` (about the reference mean with
    ``reference``) of the block's windows; ``(k, samples)``."""
    from forecast.models.folds import hold_out

    fold = ConditionalVAE(**config)
    fold._progress_desc = f"vae fold {k + 1}/{n_blocks}"
    try:  # in a temporary folder: the fold model is the train.keep weights
        fold.fit(hold_out(train, block), valid)
    except ForecastError as err:
        raise ForecastError(
            f"cross-fit fold {k + 1} of {n_blocks} (training steps {block.lo}.."
            f"{block.hi - 1} held out) failed: {err}; use fewer calibration_folds"
        ) from None
    # the block's steps hold exactly its windows
    data = fold._window_dataset(train.isel({TIME: slice(block.lo, block.hi)}))
    items = fold._pick(data, fold.calibration_windows)
    return k, fold.spread_samples(items, members, seed=20_000 + 1_000 * k, reference=reference)


def _fold_in_worker(task: tuple) -> tuple[int, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Worker: :func:`_fold_samples` of ``(*its arguments, threads)`` on ``threads`` threads."""
    *args, threads = task
    torch.set_num_threads(threads)
    return _fold_samples(*args)


def _read_fold(path: Path, key: str, fold: int) -> tuple[np.ndarray, ...] | None:
    """The samples of a cached cross-fit fold (:meth:`ConditionalVAE.cross_fit_samples`), or
    None when ``path`` is missing or was written for another fold, configuration or data."""
    if not path.is_file():
        return None
    arrays, meta = load_checkpoint(path)
    if meta.get("key") != key or meta.get("fold") != fold:
        return None
    return tuple(arrays[name] for name in _FOLD_ARRAYS)


def _fg_of(batch: dict[str, Any]) -> torch.Tensor | None:
    """The batch's first guess ``(B, C, H, *s)``, or None."""
    fg = batch.get("first_guess")
    return None if fg is None else fg.transpose(1, 2)
