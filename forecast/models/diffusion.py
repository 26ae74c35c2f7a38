"""Conditional diffusion forecaster: a denoiser conditioned on the context window, sampled with
a separate diffusion process and sampler; a :class:`~forecast.dims.LatentForecaster`.

What is modelled: the normalized target window ``(channel, lead, *space)`` given the normalized
context ``(channel, context, *space)`` and the calendar features of the issue time. With
``target="change"`` (default) the model generates the change from the last observed step,
``x0 = z(t + h) - z(t)``, which removes the persistent part of the field and leaves the model the
smaller, better-scaled increment; ``target="raw"`` generates ``z(t + h)`` itself;
``target="residual"`` generates the departure from a deterministic first guess ``g(t + h)``
fitted on the training part (:mod:`forecast.models.first_guess`: ``first_guess="diurnal"``,
the diurnal-persistence mean; ``"damped"``, its damped-anomaly version; ``"gp"``, the mean of
the Gaussian-process forecaster): ``x0 = z(t + h) - g(t + h)`` (regression + generative
residual, as CorrDiff does). With ``condition_on_first_guess`` the network also sees the
normalized first guess as input channels.

Three separate objects:

- the network (:mod:`forecast.models.nets`): :class:`GridDenoiser` for grids (or
  :class:`SpaceTimeDenoiser`, ``grid_net="space-time"``), :class:`GraphDenoiser` for sensor
  networks;
- the process (:class:`forecast.sampling.EDMProcess`): preconditioning and training loss;
- the sampler (:mod:`forecast.sampling.samplers`): ``dpmpp-2m`` (default), ``heun``, ``ddim``,
  ``ddpm``; switching is a configuration change (``sampler=``, ``nfe=``).

Latent space: member ``m`` of seed ``s`` starts from ``z ~ N(0, I)`` drawn by a
``torch.Generator`` seeded from ``(s, m)``; :meth:`decode` runs the deterministic DDIM sampler
(``latent_nfe`` steps) from ``sigma_max * z``; :meth:`encode` inverts it (DDIM inversion with
fixed-point refinement, :func:`forecast.sampling.invert`).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd
import torch
import xarray as xr

from forecast.checkpoint import load_checkpoint, save_checkpoint
from forecast.dims import TIME, space_dims
from forecast.errors import ForecastError
from forecast.models import MODELS
from forecast.models.base import check_members, check_seeds, ensemble_dataset
from forecast.models.first_guess import FIRST_GUESSES, FirstGuess, predict_first_guess
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
from forecast.models.whitening import SpectralWhitener
from forecast.sampling import EDMProcess, get_sampler, invert
from forecast.sampling.samplers import check_nfe
from forecast.training.config import check_step_reached, kept_tag
from forecast.training.loop import seed_everything
from forecast.training.loop import train as train_loop

#: Version of this model's checkpoint layout; a checkpoint with another one is refused.
FORMAT = 1
TARGETS = ("change", "raw", "residual")
#: Coordinates of a whitened model's loss (``whiten_loss``) and network (``whiten_net``).
WHITEN_FRAMES = ("whitened", "field")
#: Denoisers for grids (``grid_net``).
GRID_NETS = ("leads-as-channels", "space-time")


def member_generator(seed: int | None, member: int) -> torch.Generator:
    """The torch generator of member ``member`` under ``seed`` (depends on nothing else)."""
    state = np.random.SeedSequence([0 if seed is None else int(seed), int(member)])
    return torch.Generator().manual_seed(int(state.generate_state(1, np.uint64)[0] >> 2))


@MODELS.register("diffusion")
class ConditionalDiffusion(GenerativeForecaster):
    """Conditional diffusion ensemble forecaster for grids and sensor networks.

    Parameters
    ----------
    context, horizon : int
        Window geometry in time steps.
    target : {"change", "raw", "residual"}
        Generate the change from the last observed step, the field itself, or the residual from
        a first guess (deterministic mean forecast fitted on the training part).
    first_guess : {"diurnal", "damped", "climatology", "gp", "gp-clim"}, optional
        ``target="residual"`` only (default there: ``"diurnal"``): the first guess
        (:data:`forecast.models.first_guess.FIRST_GUESSES`). ``"diurnal"``: the
        diurnal-persistence mean ``c(slot(t + h)) + a(t)``; ``"damped"``:
        ``c(slot(t + h)) + rho_h a(t)``; ``"climatology"``: ``c(slot(t + h))``; ``"gp"``: the
        predictive mean of :class:`forecast.models.gp.GaussianProcessForecaster` (default
        settings, seeded by the training seed); ``"gp-clim"``: that mean shrunk towards
        ``c(slot(t + h))`` by per-lead weights fitted on the validation split (``fit`` then
        needs ``valid``). The first guesses of all training and validation windows are computed
        once before training; the fitted first guess is stored in the checkpoint.
    condition_on_first_guess : bool
        Feed the normalized first guess ``(channel, lead, *space)`` to the denoiser as extra
        input channels (needs a first guess).
    first_guess_folds : int
        Above 1: the training windows get out-of-fold first guesses, cross-fitted over this
        many contiguous blocks (:func:`forecast.models.first_guess.fit_folded_first_guess`);
        the first guess used everywhere else is fitted on the whole training split. 1: off.
    base, mults : int, tuple of int
        Grid U-Net width and channel multipliers per level.
    grid_net : {"leads-as-channels", "space-time"}
        Grids only: the denoiser. ``"leads-as-channels"`` (default): a 2-D U-Net with every
        variable and lead as a channel (:class:`GridDenoiser`); ``"space-time"``: a U-Net with
        features per lead and point and (2+1)-D convolutions (:class:`SpaceTimeDenoiser`;
        ``base`` then counts features per lead). docs/diffusion.md "Leads as channels or a
        space-time network" compares them.
    hidden, blocks : int
        Graph denoiser width and number of residual blocks.
    emb_dim : int
        Size of the noise-level / calendar embedding.
    sampler : str
        Sampler used by :meth:`sample` (``dpmpp-2m``, ``heun``, ``ddim``, ``ddpm``).
    nfe : int
        Network evaluations per sample (>= 1).
    schedule : str
        Noise schedule of the samplers (``karras``, ``loglinear``, ``cosine``).
    latent_nfe : int
        DDIM steps used by :meth:`decode` and :meth:`encode`.
    invert_refine : int
        Fixed-point refinements per step in :meth:`encode`.
    sigma_min, sigma_max : float
        Noise range of sampling; the latent prior is ``N(0, I)`` scaled by ``sigma_max``.
    member_batch : int
        Members denoised together.
    scale_leads : bool
        Divide the generated quantity by its training standard deviation per variable and lead,
        so that every lead enters the diffusion at unit scale (the change at lead 1 is much
        smaller than at lead 24).
    damp_anomaly : bool
        Older spelling of ``first_guess="damped"`` (``target="residual"`` only).
    calibrate_spread : bool
        After training, fit one factor per variable and lead that multiplies the generated
        quantity (the member's departure from the last step / first guess), chosen on the
        validation windows by ``calibration_objective`` (:meth:`calibrate_spread_on`); needs
        ``valid``.
    calibration_objective : str
        What those factors optimize: ``"crps"`` (lowest CRPS) or ``"spread-skill"``
        (spread-skill ratio closest to 1); :mod:`forecast.models.spread`.
    scale_points : bool
        With ``scale_leads``: divide by the training standard deviation per variable, lead
        *and grid point / sensor* instead of pooling over space, so that the generated noise
        follows the local spread (e.g. coast vs inland).
    whiten_space : bool
        Grids only: diffuse the generated quantity in spatially whitened coordinates (its 2-D
        DCT modes divided by the square root of their training power, per variable and lead;
        :mod:`forecast.models.whitening`). Noise the network does not remove then comes out
        with the training fields' spatial correlation instead of as grid-point white noise.
    whiten_loss : str
        With ``whiten_space``: where the training loss measures the denoising error.
        ``"whitened"``: in the whitened coordinates, so every DCT mode counts alike (small
        scales weigh as much as the large ones that carry most of the variance);
        ``"field"``: coloured back to the (scaled) field first, so the modes count by their
        training power as in an unwhitened model, while leftover noise stays coloured.
    whiten_net : str
        With ``whiten_space``: ``"whitened"``: the network works in whitened coordinates;
        ``"field"``: it sees the noisy field and returns a field (input coloured, output
        whitened), so in field coordinates the model is a plain denoiser under spatially
        coloured noise. docs/diffusion.md "Whitened diffusion with the loss on the field"
        compares the settings.
    train : dict, optional
        Fields of :class:`forecast.training.TrainConfig`.
    """

    kind: ClassVar[str] = "diffusion"

    def __init__(
        self,
        *,
        context: int,
        horizon: int,
        target: str = "change",
        first_guess: str | None = None,
        condition_on_first_guess: bool = False,
        first_guess_folds: int = 1,
        base: int = 16,
        mults: tuple[int, ...] | list[int] = (1, 2, 4),
        grid_net: str = "leads-as-channels",
        hidden: int = 32,
        blocks: int = 3,
        emb_dim: int = 64,
        sampler: str = "dpmpp-2m",
        nfe: int = 10,
        schedule: str = "karras",
        latent_nfe: int = 20,
        invert_refine: int = 3,
        sigma_min: float = 0.002,
        sigma_max: float = 40.0,
        member_batch: int = 50,
        scale_leads: bool = True,
        damp_anomaly: bool = False,
        calibrate_spread: bool = False,
        calibration_objective: str = "crps",
        scale_points: bool = False,
        whiten_space: bool = False,
        whiten_loss: str = "whitened",
        whiten_net: str = "whitened",
        train: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(context=context, horizon=horizon)
        if target not in TARGETS:
            raise ForecastError(f"target must be one of {TARGETS}, got {target!r}")
        self.target = target
        self.base, self.mults = int(base), tuple(int(m) for m in mults)
        if grid_net not in GRID_NETS:
            raise ForecastError(f"grid_net must be one of {', '.join(GRID_NETS)}, got {grid_net!r}")
        self.grid_net = grid_net
        self.hidden, self.blocks, self.emb_dim = int(hidden), int(blocks), int(emb_dim)
        self.sampler = sampler
        self.nfe = check_nfe(nfe)
        self.schedule = schedule
        get_sampler(sampler, self.nfe, schedule)  # validate names now
        self.latent_nfe = check_nfe(latent_nfe)
        self.invert_refine = int(invert_refine)
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)
        self.member_batch = check_member_batch(member_batch)
        self.scale_leads = bool(scale_leads)
        self.damp_anomaly = bool(damp_anomaly)
        self.calibrate_spread = bool(calibrate_spread)
        self.calibration_objective = check_objective(str(calibration_objective))
        self.scale_points = bool(scale_points)
        self.whiten_space = bool(whiten_space)
        for name, value in (("whiten_loss", whiten_loss), ("whiten_net", whiten_net)):
            if value not in WHITEN_FRAMES:
                raise ForecastError(
                    f"{name} must be one of {', '.join(WHITEN_FRAMES)}, got {value!r}"
                )
            if value != "whitened" and not self.whiten_space:
                raise ForecastError(
                    f"{name}={value!r} needs whiten_space=True; set it or drop {name}"
                )
        self.whiten_loss, self.whiten_net = whiten_loss, whiten_net
        #: Spatial whitening of the generated quantity (``whiten_space``; set by ``fit``).
        self.whitener: SpectralWhitener | None = None
        #: Spread factor per (channel, lead) from :meth:`calibrate_spread_on` (ones: none).
        self.spread_scale: np.ndarray | None = None
        if self.damp_anomaly and target != "residual":
            raise ForecastError(
                f"damp_anomaly=True needs target='residual', got target={target!r}; set both"
            )
        if self.damp_anomaly and first_guess not in (None, "damped"):
            raise ForecastError(
                f"damp_anomaly=True means first_guess='damped', got first_guess={first_guess!r}; "
                "drop damp_anomaly"
            )
        if first_guess is not None and target != "residual":
            raise ForecastError(
                f"first_guess={first_guess!r} needs target='residual', got target={target!r}; "
                "set both"
            )
        if target == "residual" and first_guess is None:
            first_guess = "damped" if self.damp_anomaly else "diurnal"
        if first_guess is not None and first_guess not in FIRST_GUESSES:
            raise ForecastError(
                f"unknown first_guess {first_guess!r}; valid: {', '.join(FIRST_GUESSES)}"
            )
        self.first_guess = first_guess
        self.condition_on_first_guess = bool(condition_on_first_guess)
        self.first_guess_folds = check_folds(first_guess_folds, first_guess)
        if self.condition_on_first_guess and first_guess is None:
            raise ForecastError(
                "condition_on_first_guess=True needs a first guess; set target='residual' "
                "(and first_guess)"
            )
        self.lead_scale = np.ones((1, self.horizon))
        #: The fitted first guess (``target="residual"``), physical units.
        self.fg: FirstGuess | None = None
        self._init_training(train)
        self.sigma_data = 1.0

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
            emb_dim=16,
            nfe=4,
            latent_nfe=6,
            train=dict(TINY_TRAIN),
        )

    # -- objects -------------------------------------------------------------------------------
    @property
    def process(self) -> EDMProcess:
        """The diffusion process (EDM preconditioning) of this model."""
        return EDMProcess(self.sigma_data, self.sigma_min, self.sigma_max)

    def with_sampler(self, sampler: str | None = None, nfe: int | None = None) -> Self:
        """A copy sharing the network that samples with another sampler and/or NFE."""
        other = copy.copy(self)
        other.sampler = sampler or self.sampler
        other.nfe = check_nfe(self.nfe if nfe is None else nfe)
        get_sampler(other.sampler, other.nfe, self.schedule)
        return other

    def _build_net(self, layout: str, channels: int) -> torch.nn.Module:
        from forecast.models.nets import GraphDenoiser, GridDenoiser, SpaceTimeDenoiser

        if layout == "grid":
            grid_net = SpaceTimeDenoiser if self.grid_net == "space-time" else GridDenoiser
            return grid_net(
                channels,
                self.horizon,
                self.context,
                base=self.base,
                mults=self.mults,
                emb_dim=self.emb_dim,
                first_guess=self.condition_on_first_guess,
            )
        if self.adjacency is None:
            raise ForecastError("sensor data without an adjacency matrix; open a network data set")
        if self.grid_net != "leads-as-channels":
            raise ForecastError(
                f"grid_net={self.grid_net!r} is for grids; drop it for sensor-network data"
            )
        return GraphDenoiser(
            channels,
            self.horizon,
            self.context,
            self.adjacency,
            hidden=self.hidden,
            blocks=self.blocks,
            emb_dim=self.emb_dim,
            first_guess=self.condition_on_first_guess,
        )

    # -- training ------------------------------------------------------------------------------
    def _normalized(self, ds: xr.Dataset) -> np.ndarray:
        from forecast.data.torch import to_array

        return self.normalizer.transform_array(to_array(ds), channel_axis=1)

    def _window_dataset(self, ds: xr.Dataset, stride: int = 1) -> Any:
        return window_dataset(self._normalized(ds), ds, self.context, self.horizon, stride)

    def _unscaled(
        self, context: torch.Tensor, target: torch.Tensor, offset: torch.Tensor | None = None
    ) -> torch.Tensor:
        if self.target == "raw":
            return target
        x = target - context[:, :, -1:]
        return x - self._need_offset(offset) if self.target == "residual" else x

    def _need_offset(self, offset: torch.Tensor | None) -> torch.Tensor:
        if offset is None:
            raise ForecastError(
                "target='residual' needs the first-guess offset of the issue time; pass "
                "first_guess_offset(first_guess_of(...), last)"
            )
        return offset

    def first_guess_of(
        self, values: np.ndarray, times: np.ndarray, origins: np.ndarray, fg: Any = None
    ) -> torch.Tensor | None:
        """Normalized first guess ``(n, channel, lead, *space)`` float32 for the issue times
        ``values[origins]`` (``values``: physical ``(time, channel, *space)``), NaN set to 0;
        ``None`` without a first guess (targets other than ``"residual"``). ``fg``: another
        first guess than the model's (the out-of-fold one of the training windows)."""
        if self.first_guess is None:
            return None
        if self.fg is None:
            raise ForecastError(
                "target='residual' model has no first guess; fit it or load a checkpoint "
                "written with target='residual'"
            )
        guess = self.fg if fg is None else fg
        pred = predict_first_guess(guess, values, times, origins)  # (n, H, C, *s)
        norm = self.normalizer.transform_array(pred, channel_axis=2)
        norm = np.nan_to_num(np.swapaxes(norm, 1, 2)).astype(np.float32)
        return torch.from_numpy(np.ascontiguousarray(norm))

    @staticmethod
    def first_guess_offset(
        guess: torch.Tensor | None, last: torch.Tensor | None
    ) -> torch.Tensor | None:
        """Normalized first guess minus the last observed step ``z(t)`` ``(B, C, 1, *s)``:
        the quantity added to ``z(t)`` before the generated residual; ``None`` without one."""
        if guess is None:
            return None
        return torch.nan_to_num(guess - last.to(guess.dtype))

    def _guess_table(self, ds: xr.Dataset, issue_index: Any, fg: Any = None) -> Any:
        """Normalized first guesses (of ``fg``, default the model's) of the windows of ``ds``
        issued at ``issue_index``, computed once; ``None`` without a first guess. Returns a
        function of issue indices."""
        if self.first_guess is None:
            return None
        from forecast.data.torch import to_array

        issues = np.unique(np.asarray(issue_index, dtype=np.int64))
        rows = self.first_guess_of(to_array(ds), ds[TIME].values, issues, fg)
        where = np.full(ds.sizes[TIME], -1, dtype=np.int64)
        where[issues] = np.arange(len(issues))

        def lookup(index: Any) -> torch.Tensor:
            if torch.is_tensor(index):
                index = index.cpu().numpy()
            pos = where[np.asarray(index, dtype=np.int64)]
            if (pos < 0).any():
                raise ForecastError("first guess of a window outside its precomputed table")
            return rows[torch.from_numpy(pos)]

        return lookup

    def _conditioning(
        self, context: torch.Tensor, calendar: torch.Tensor, guess: torch.Tensor | None
    ) -> dict[str, torch.Tensor]:
        """Network conditioning (with the first guess when ``condition_on_first_guess``) plus
        the first-guess ``offset`` (not seen by the network)."""
        cond = {"context": context, "calendar": calendar}
        if guess is not None:
            cond["offset"] = self.first_guess_offset(guess, context[:, :, -1:])
            if self.condition_on_first_guess:
                cond["first_guess"] = guess
        return cond

    def _scale_view(self, x: torch.Tensor) -> torch.Tensor:
        scale = np.asarray(self.lead_scale)
        if self.spread_scale is not None:
            spread = np.asarray(self.spread_scale)
            scale = scale * spread.reshape(*spread.shape, *([1] * (scale.ndim - spread.ndim)))
        return broadcast_scale(scale, x)

    def _x0(
        self, context: torch.Tensor, target: torch.Tensor, offset: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Generated quantity from ``(B, C, K, *s)`` context and ``(B, C, H, *s)`` target:
        the change (or field, or first-guess residual), divided by its training std per
        variable and lead. ``offset``: :meth:`first_guess_offset` (``target="residual"``)."""
        x = self._unscaled(context, target, offset)
        x = x / self._scale_view(x)
        return self._need_whitener().whiten(x) if self.whiten_space else x

    def _framed(self, net: Any) -> Any:
        """The network as the process calls it: with ``whiten_net = "field"`` it sees and
        returns fields (its whitened input coloured, its output whitened), so in field
        coordinates the model is a plain denoiser under spatially coloured noise."""
        if not (self.whiten_space and self.whiten_net == "field"):
            return net
        whitener = self._need_whitener()

        def framed(x: torch.Tensor, c_noise: torch.Tensor, cond: Any) -> torch.Tensor:
            return whitener.whiten(net(whitener.colour(x), c_noise, cond))

        return framed

    def _need_whitener(self) -> SpectralWhitener:
        if self.whitener is None:
            raise ForecastError(
                "whiten_space=True model has no whitening spectrum; fit it or load a checkpoint "
                "written with whiten_space=True"
            )
        return self.whitener

    def _field(
        self, context: torch.Tensor, x0: torch.Tensor, offset: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Normalized target field from the generated quantity (inverse of :meth:`_x0`)."""
        if self.whiten_space:
            x0 = self._need_whitener().colour(x0)
        x = x0 * self._scale_view(x0)
        if self.target == "raw":
            return x
        x = x + context[:, :, -1:]
        return x + self._need_offset(offset) if self.target == "residual" else x

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
    ) -> Self:
        """Train on ``train`` (physical units); validation CRPS on ``valid`` if given.

        Parameters
        ----------
        train, valid : xr.Dataset
            Contiguous slices of a standard data set.
        out_dir : path, optional
            Folder for ``best.safetensors`` / ``last.safetensors`` training checkpoints
            (default: a temporary one); the model ends with the ``train.keep`` weights.
        resume : bool
            Continue exactly from ``out_dir/last.safetensors``.
        stop_after : int, optional
            Stop after this optimizer step as if interrupted (tests).
        snapshots : sequence of int
            Also write the training state at these steps (``out/step-<N>.safetensors``; see
            :func:`forecast.models.snapshots.fit_snapshots`).
        """
        check_training_length(train, self.context, self.horizon)
        if self.calibrate_spread and valid is None:
            raise ForecastError(
                "calibrate_spread=True needs validation data; pass valid (forecast train does) "
                "or set calibrate_spread = false"
            )
        layout, out = self._start_fit(train, out_dir)
        if self.whiten_space and layout != "grid":
            raise ForecastError(
                "whiten_space=True needs gridded (lat/lon) data; set whiten_space = false for a "
                "sensor network"
            )
        cfg = self.train_config
        self.spread_scale = None  # training sees the uncalibrated quantity
        train_fg = self._fit_first_guess(train, valid)  # out of fold with first_guess_folds
        data = self._window_dataset(train)
        guesses = self._guess_table(train, data.windows.issue_index, train_fg)  # once
        pick = np.linspace(0, len(data) - 1, min(len(data), SCALE_WINDOWS)).astype(int)
        sub = [data[int(k)] for k in pick]
        ctx = torch.stack([s["context"] for s in sub]).transpose(1, 2)
        tgt = torch.stack([s["target"] for s in sub]).transpose(1, 2)
        sub_off = self.first_guess_offset(
            None if guesses is None else guesses([s["issue_index"] for s in sub]), ctx[:, :, -1:]
        )
        unscaled = self._unscaled(ctx, tgt, sub_off)
        if self.scale_leads:
            self.lead_scale = window_std(unscaled, per_point=self.scale_points)
        else:
            self.lead_scale = np.ones(unscaled.shape[1:3])
        self.whitener = None
        if self.whiten_space:
            self.whitener = SpectralWhitener.fit(unscaled / self._scale_view(unscaled))
        self.sigma_data = float(self._x0(ctx, tgt, sub_off).std())
        seed_everything(cfg.seed)
        net = self._build_net(layout, len(self.variables))
        ema = resume_arrays = None
        if resume:
            resume_arrays, ema = self._resume(out, net)
        validate = self._validator(valid) if valid is not None else None

        error_map = self.whitener.colour if self.whiten_loss == "field" else None

        def loss_fn(module, batch, gen):
            c = batch["context"].transpose(1, 2)
            guess = None if guesses is None else guesses(batch["issue_index"]).to(c.device)
            cond = self._conditioning(c, batch["calendar"], guess)
            x0 = self._x0(c, batch["target"].transpose(1, 2), cond.get("offset"))
            return self.process.loss(self._framed(module), x0, cond, gen, error_map=error_map)

        def checkpoint(tag, ema_module, arrays, meta):
            if out is None:
                return
            self.net = ema_module
            self._write_training(out, tag, arrays, meta)

        ema, result = train_loop(
            net,
            data,
            loss_fn,
            cfg,
            validate=validate,
            checkpoint=checkpoint,
            resume=resume_arrays,
            ema=ema,
            stop_after=stop_after,
            snapshots=snapshots,
            desc="diffusion",
        )
        self.net = ema.eval()
        self.training = {k: v for k, v in result.to_dict().items()}
        self._take_kept(valid, layout, out)
        return self

    def _take_kept(self, valid: xr.Dataset, layout: str, out: Path | None) -> None:
        """Take the kept weights (``out/<train.keep>.safetensors`` when written, else the
        final EMA weights) and, with ``calibrate_spread``, calibrate their spread; that
        checkpoint gets the factors."""
        keep = self.train_config.keep
        check_step_reached(keep, self.training)
        kept = out / f"{kept_tag(keep)}.safetensors" if out is not None else None
        if kept is None or not kept.is_file():
            if self.calibrate_spread:
                self.calibrate_spread_on(valid)
            return
        arrays, meta = load_checkpoint(kept)
        net = self._build_net(layout, len(self.variables))
        load_net_weights(net, arrays)
        self.net = net.eval()
        self.training["weights_step"] = (meta.get("training") or {}).get("step")
        if not self.calibrate_spread:
            return
        self.calibrate_spread_on(valid)
        meta["state"]["spread_scale"] = np.asarray(self.spread_scale).tolist()
        save_checkpoint(
            kept, arrays, {k: v for k, v in meta.items() if k not in ("format", "version")}
        )

    def calibrate_spread_on(
        self,
        valid: xr.Dataset,
        *,
        n_issues: int = 16,
        n_members: int = 16,
        factors: np.ndarray | None = None,
        seed: int = 0,
    ) -> np.ndarray:
        """Fit the spread factor per variable and lead on ``valid``.

        Members are ``base + f * x`` with ``base`` the field for a zero generated quantity (the
        last step, or the first guess) and ``x`` the member's generated departure; ``f`` is
        chosen from ``factors`` (default 0.40, 0.45, ..., 1.50) per variable and lead on
        ``n_issues`` evenly spaced validation windows, by ``calibration_objective`` (lowest
        CRPS or spread-skill closest to 1, :mod:`forecast.models.spread`). Stored in the
        checkpoint.

        Returns
        -------
        numpy.ndarray
            ``(channel, lead)`` factors (also set as ``self.spread_scale``).
        """
        from forecast.models.spread import fit_spread_factors

        if self.net is None:
            raise ForecastError("diffusion model is not fitted; call fit(train) first")
        grid = np.round(np.arange(0.40, 1.501, 0.05), 2) if factors is None else factors
        grid = np.asarray(grid, dtype=np.float64)
        data = self._window_dataset(valid)
        pick = np.unique(np.linspace(0, len(data) - 1, min(n_issues, len(data))).astype(int))
        guesses = self._guess_table(valid, [data[int(k)]["issue_index"] for k in pick])
        self.spread_scale = None
        bases, devs, obs = [], [], []
        for k in pick:
            item = data[int(k)]
            c = item["context"].transpose(0, 1).unsqueeze(0)
            guess = None if guesses is None else guesses([item["issue_index"]])
            cond = self._conditioning(c, item["calendar"].unsqueeze(0), guess)
            off = cond.get("offset")
            x0 = self._generate(self.net, cond, n_members, seed=seed + int(k))
            base = self._field(c, torch.zeros_like(x0[:1]), off).numpy()
            bases.append(base[0])
            devs.append(np.moveaxis(self._field(c, x0, off).numpy() - base, 0, -1))
            obs.append(item["target"].transpose(0, 1).numpy())  # (C, H, *s)
        self.spread_scale = fit_spread_factors(
            np.stack(obs), np.stack(bases), np.stack(devs), grid, self.calibration_objective
        )
        return self.spread_scale

    def _validator(self, valid: xr.Dataset):
        """Validation CRPS (normalized units) on a few evenly spaced windows of ``valid``."""
        cfg = self.train_config
        try:
            data = self._window_dataset(valid)
        except ForecastError:
            return None
        pick = np.unique(np.linspace(0, len(data) - 1, min(cfg.val_issue_times, len(data))))
        items = [data[int(k)] for k in pick.astype(int)]
        guesses = self._guess_table(valid, [item["issue_index"] for item in items])  # once
        conds = [
            self._conditioning(
                item["context"].transpose(0, 1).unsqueeze(0),
                item["calendar"].unsqueeze(0),
                None if guesses is None else guesses([item["issue_index"]]),
            )
            for item in items
        ]

        def validate(net: torch.nn.Module) -> float:
            from forecast.scoring.kernels import crps_ensemble_np

            scores = []
            for k, (item, cond) in enumerate(zip(items, conds, strict=True)):
                c = cond["context"]
                x0 = self._generate(net, cond, cfg.val_members, seed=k, sampler=None)
                fct = self._field(c, x0, cond.get("offset")).numpy()
                obs = item["target"].transpose(0, 1).numpy()
                scores.append(crps_ensemble_np(obs, np.moveaxis(fct, 0, -1)).mean())
            return float(np.mean(scores))

        return validate

    # -- sampling core ------------------------------------------------------------------------
    def _generate(
        self,
        net: torch.nn.Module,
        cond: dict[str, torch.Tensor],
        n_members: int,
        *,
        seed: int | None = None,
        latents: torch.Tensor | None = None,
        sampler: Any = None,
        seeds: Sequence[int | None] | None = None,
    ) -> torch.Tensor:
        """Generated quantity ``(M, C, H, *s)`` (normalized) from seeds or given latents.

        ``seeds``: draw ``n_members`` members under each of these seeds, block after block
        (``M = len(seeds) * n_members``); ``cond`` then holds one item per seed (or one for
        all), gathered for the members of each batch of ``member_batch``, so the conditioning
        is never repeated for every member at once. Drawn latents are drawn batch by batch
        (each member's generator gives its latent first, then any sampler noise), and the
        batches are written into one preallocated output."""
        sampler = sampler or get_sampler(self.sampler, self.nfe, self.schedule)
        sigmas = sampler.sigmas(self.sigma_min, self.sigma_max)
        shape = (len(self.variables), self.horizon, *cond["context"].shape[3:])
        gens = None
        if latents is None:
            blocks = [seed] if seeds is None else list(seeds)
            gens = [member_generator(s, m) for s in blocks for m in range(n_members)]
        total = len(gens) if latents is None else latents.shape[0]
        out = torch.empty((total, *shape))
        framed = self._framed(net)
        with torch.inference_mode():
            for a in range(0, total, self.member_batch):
                if latents is None:
                    z = torch.stack(
                        [torch.randn(shape, generator=g) for g in gens[a : a + self.member_batch]]
                    )
                else:
                    z = latents[a : a + self.member_batch].to(torch.float32)
                rows = torch.arange(a, a + z.shape[0])
                if seeds is not None:
                    rows = rows // n_members  # the seed (context) of each member
                part = {k: v if v.shape[0] == 1 else v[rows] for k, v in cond.items()}
                noise = None
                if not sampler.deterministic:
                    if gens is None:
                        raise ForecastError(
                            f"sampler {sampler.name} is stochastic; decode needs a deterministic "
                            "one (ddim, dpmpp-2m, heun)"
                        )
                    g_batch = gens[a : a + self.member_batch]

                    def noise(i, g_batch=g_batch):
                        return torch.stack([torch.randn(shape, generator=g) for g in g_batch])

                denoise = self.process.denoiser(framed, part)
                out[a : a + z.shape[0]] = sampler(denoise, z * float(sigmas[0]), sigmas, noise)
        return out

    def _cond(self, values: np.ndarray, times: np.ndarray) -> dict[str, torch.Tensor]:
        from forecast.data.windows import calendar_features

        norm = self.normalizer.transform_array(values.astype(np.float32), channel_axis=1)
        ctx = channel_first(norm)
        cal = torch.from_numpy(calendar_features(times[-1:]))
        guess = self.first_guess_of(values, times, np.array([len(values) - 1]))
        return self._conditioning(ctx, cal, guess)

    def _physical(self, cond: dict[str, torch.Tensor], x0: torch.Tensor) -> np.ndarray:
        return self._physical_members(self._field(cond["context"], x0, cond.get("offset")))

    def _sample_values(
        self, values: np.ndarray, times: np.ndarray, n_members: int, seed: int | None
    ) -> np.ndarray:
        cond = self._cond(values, times)
        return self._physical(cond, self._generate(self.net, cond, n_members, seed=seed))

    def sample_batch(
        self, contexts: Sequence[xr.Dataset], n_members: int, seeds: Sequence[int | None]
    ) -> list[xr.Dataset]:
        """``[self.sample(c, n_members, seed=s) for c, s in zip(contexts, seeds)]`` with the
        members of all contexts denoised together (batches of ``member_batch``): on a CPU one
        large batch costs much less than many small ones. Equal to the one-by-one draws up to
        float32 rounding (as across batch sizes, docs/diffusion.md "Seeds and members")."""
        n = check_members(n_members)
        check_seeds(contexts, seeds)
        if not contexts:
            return []
        values = [self._context_values(c) for c in contexts]
        conds = [self._cond(v, c[TIME].values) for v, c in zip(values, contexts, strict=True)]
        cond = {k: torch.cat([c[k] for c in conds]) for k in conds[0]}  # one item per context
        x0 = self._generate(self.net, cond, n, seeds=seeds)
        return [
            ensemble_dataset(
                self._physical(conds[i], x0[i * n : (i + 1) * n]), c, self.variables, self.step
            )
            for i, c in enumerate(contexts)
        ]

    # -- latent forecaster ---------------------------------------------------------------------
    def _latent_sampler(self):
        return get_sampler("ddim", self.latent_nfe, self.schedule)

    def prior(
        self, context: xr.Dataset, n_members: int, *, seed: int | None = None
    ) -> torch.Tensor:
        """Standard-normal latents ``(M, channel, lead, *space)``; member ``m`` from ``(s, m)``."""
        self._context_values(context)
        check_members(n_members)
        shape = (
            len(self.variables),
            self.horizon,
            *(context.sizes[d] for d in space_dims(context)),
        )
        return torch.stack(
            [torch.randn(shape, generator=member_generator(seed, m)) for m in range(n_members)]
        )

    def decode(self, context: xr.Dataset, latents: Any) -> xr.Dataset:
        """Deterministic members from latents (DDIM, ``latent_nfe`` steps), physical units."""
        values = self._context_values(context)
        cond = self._cond(values, context[TIME].values)
        z = as_latents(latents, (len(self.variables), self.horizon, *cond["context"].shape[3:]))
        x0 = self._generate(self.net, cond, z.shape[0], latents=z, sampler=self._latent_sampler())
        return ensemble_dataset(self._physical(cond, x0), context, self.variables, self.step)

    def encode(self, context: xr.Dataset, target: xr.Dataset) -> torch.Tensor:
        """Latent ``(1, channel, lead, *space)`` whose decoding reproduces ``target``.

        ``target`` holds the ``horizon`` steps after the issue time (e.g.
        ``forecast.data.windows.target_of``), in physical units.
        """
        values = self._context_values(context)
        tgt = self._normalized_target(target)
        cond = self._cond(values, context[TIME].values)
        x0 = self._x0(cond["context"], tgt, cond.get("offset"))
        sampler = self._latent_sampler()
        sigmas = sampler.sigmas(self.sigma_min, self.sigma_max)
        with torch.inference_mode():
            x = invert(
                self.process.denoiser(self._framed(self.net), cond),
                x0,
                sigmas,
                self.invert_refine,
                self.sigma_data,
            )
        return x / float(sigmas[0])

    # -- checkpoints ---------------------------------------------------------------------------
    def _state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        if self.net is None:
            raise ForecastError("diffusion model is not fitted; call fit(train) before save")
        arrays = {f"net.{k}": v.detach().numpy() for k, v in self.net.state_dict().items()}
        first_guess = add_shared_arrays(arrays, self.adjacency, self.fg)
        if self.whiten_space:
            arrays["whiten_power"] = self._need_whitener().power
        state = {
            "format": FORMAT,
            "normalizer": self.normalizer.to_dict(),
            "sigma_data": self.sigma_data,
            "lead_scale": np.asarray(self.lead_scale).tolist(),
            "spread_scale": None
            if self.spread_scale is None
            else np.asarray(self.spread_scale).tolist(),
            "layout": layout_name(self.adjacency),
            "first_guess": first_guess,
            **training_state(self.training),
        }
        return arrays, state

    def _restore(self, arrays: dict[str, np.ndarray], state: dict[str, Any]) -> None:
        check_format("diffusion", state, FORMAT)
        self._restore_shared(arrays, state)
        self.sigma_data = float(state["sigma_data"])
        self.lead_scale = np.asarray(state["lead_scale"], dtype=np.float64)
        # absent in checkpoints written before spread calibration existed: no calibration
        spread = state.get("spread_scale")
        self.spread_scale = None if spread is None else np.asarray(spread, dtype=np.float64)
        self.whitener = None
        if self.whiten_space:
            if "whiten_power" not in arrays:
                raise ForecastError(
                    "diffusion checkpoint with whiten_space=True lacks its whiten_power array; "
                    "retrain it with `forecast train`"
                )
            self.whitener = SpectralWhitener(arrays["whiten_power"])
        self.fg = None
        if self.first_guess is not None and "first_guess_means" in arrays:
            self.fg = self._legacy_first_guess(arrays, state)
        elif self.first_guess is not None:
            self.fg = stored_first_guess(
                self.first_guess,
                arrays,
                state.get("first_guess"),
                f"diffusion checkpoint with first_guess={self.first_guess!r} lacks its first "
                "guess (first_guess.* arrays); retrain it with `forecast train`",
            )
        net = self._build_net(state["layout"], len(self.variables))
        load_net_weights(net, arrays)
        self.net = net.eval()

    def _legacy_first_guess(self, arrays: dict[str, np.ndarray], state: dict[str, Any]) -> Any:
        """The diurnal / damped first guess of a checkpoint written before
        :mod:`forecast.models.first_guess` existed: normalized slot means
        ``first_guess_means``, damping ``first_guess_rho`` (absent: none) and the period."""
        from forecast.models.first_guess import DiurnalFirstGuess

        if self.first_guess not in ("diurnal", "damped") or not state.get("first_guess_period"):
            raise ForecastError(
                "diffusion checkpoint has an incomplete first guess (first_guess_means without "
                "its period); retrain it with `forecast train`"
            )
        means = self.normalizer.inverse_array(
            np.asarray(arrays["first_guess_means"], dtype=np.float64), channel_axis=1
        )
        rho = arrays.get("first_guess_rho", np.ones((len(self.variables), self.horizon)))
        period = pd.Timedelta(state["first_guess_period"])
        return DiurnalFirstGuess(self.first_guess, means, rho, period, self.step)
