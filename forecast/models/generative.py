"""What the trained generative forecasters (:mod:`forecast.models.diffusion`,
:mod:`forecast.models.vae`) share: the start of ``fit``, the NaN-free window dataset, the
training-checkpoint plumbing (resume, ``best``/``last`` files), the common checkpoint state
and the checks on contexts, targets and latents.

Plain functions hold the logic; :class:`GenerativeForecaster` is a thin base class for the
pieces that need the model (``self``). Each model keeps its own network, loss and sampling.
"""

from __future__ import annotations

import copy
import functools
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd
import torch
import xarray as xr

from forecast.checkpoint import load_checkpoint
from forecast.dims import ADJACENCY, NODE, TIME, space_dims
from forecast.errors import ForecastError
from forecast.models.base import ArrayForecaster, nan_location
from forecast.models.nets import load_net_weights
from forecast.training.config import TrainConfig
from forecast.training.loop import resume_state

#: Training settings of the ``tiny`` test configurations (a few seconds of training).
TINY_TRAIN: dict[str, Any] = {
    "epochs": 2,
    "max_steps": 20,
    "batch_size": 8,
    "eval_every": 0,
    "progress": False,
    "warmup_steps": 5,
}


def data_layout(ds: xr.Dataset) -> str:
    """``"graph"`` for sensor data (a node dimension), ``"grid"`` for two space dimensions."""
    space = space_dims(ds)
    if space == (NODE,):
        return "graph"
    if len(space) == 2:
        return "grid"
    raise ForecastError(
        f"data have no grid (lat/lon or y/x) or node dimension: {tuple(ds.dims)}; "
        "open a standard data set"
    )


def check_training_length(train: xr.Dataset, context: int, horizon: int) -> None:
    """Refuse training data without a time axis of at least ``context + horizon`` steps."""
    if TIME not in train.dims or train.sizes[TIME] < context + horizon:
        raise ForecastError(
            f"training data have {train.sizes.get(TIME, 0)} steps, fewer than context + "
            f"horizon = {context + horizon}; pass a longer training period"
        )


def check_folds(folds: Any, first_guess: str | None) -> int:
    """``first_guess_folds`` as an int >= 1; above 1 only with a first guess."""
    if isinstance(folds, bool) or not isinstance(folds, int | np.integer) or folds < 1:
        raise ForecastError(f"first_guess_folds must be an integer >= 1, got {folds!r}")
    if folds > 1 and first_guess is None:
        raise ForecastError(
            f"first_guess_folds = {folds} cross-fits the first guess; set first_guess too"
        )
    return int(folds)


def check_member_batch(member_batch: Any) -> int:
    """``member_batch`` as an int, or a ForecastError when it is below 1."""
    if int(member_batch) < 1:
        raise ForecastError(f"member_batch must be >= 1, got {member_batch}")
    return int(member_batch)


def window_dataset(
    values: np.ndarray, ds: xr.Dataset, context: int, horizon: int, stride: int = 1
) -> Any:
    """The :class:`~forecast.data.torch.WindowDataset` of the normalized ``values``
    ``(time, channel, *space)`` of ``ds``, keeping only windows without NaN in context or
    target."""
    from forecast.data.torch import WindowDataset
    from forecast.data.windows import calendar_features, make_windows

    windows = make_windows(ds, context, horizon, stride=stride)
    bad = np.isnan(values.reshape(values.shape[0], -1)).any(axis=1)
    if bad.any():
        csum = np.concatenate([[0], np.cumsum(bad)])
        i = windows.issue_index
        ok = csum[i + horizon + 1] - csum[i - context + 1] == 0
        if not ok.any():
            raise ForecastError("every training window contains NaN; fill or drop the gaps")
        windows = windows.subset(ok)
    return WindowDataset(values, windows, calendar_features(ds[TIME].values))


def channel_first(norm: np.ndarray) -> torch.Tensor:
    """A batch of one ``(1, channel, time, *space)`` from a ``(time, channel, *space)`` array."""
    return torch.from_numpy(np.ascontiguousarray(np.swapaxes(norm, 0, 1)))[None]


#: Evenly spaced training windows over which the scale of the generated quantity is fitted.
SCALE_WINDOWS = 256


def window_std(x: torch.Tensor, per_point: bool = True) -> np.ndarray:
    """Standard deviation of the generated quantity ``x`` ``(window, C, H, *space)`` over the
    windows, per (channel, lead, *space) (``per_point``) or pooled over space, per (channel,
    lead); clamped at 1e-6, float64 ``(C, H[, *space])``."""
    dims = [0] if per_point else [0, *range(3, x.ndim)]
    return x.std(dim=dims).clamp_min(1e-6).double().numpy()


def broadcast_scale(scale: Any, x: torch.Tensor) -> torch.Tensor:
    """A ``(C, H[, *space])`` scale as a tensor of ``x``'s dtype that broadcasts against the
    batch ``x`` ``(B, C, H, *space)``."""
    scale = torch.as_tensor(np.asarray(scale), dtype=x.dtype)
    return scale.reshape(1, *scale.shape, *([1] * (x.ndim - 1 - scale.ndim)))


def add_shared_arrays(
    arrays: dict[str, np.ndarray], adjacency: np.ndarray | None, fg: Any
) -> dict[str, Any] | None:
    """Add the adjacency and the first guess's arrays to a checkpoint's ``arrays`` (in place);
    returns the first guess's metadata (None without one)."""
    if adjacency is not None:
        arrays["adjacency"] = adjacency
    if fg is None:
        return None
    from forecast.models.first_guess import first_guess_checkpoint

    fg_arrays, fg_state = first_guess_checkpoint(fg)
    arrays.update(fg_arrays)
    return fg_state


def layout_name(adjacency: np.ndarray | None) -> str:
    """The layout stored in a checkpoint: ``"graph"`` with an adjacency, else ``"grid"``."""
    return "graph" if adjacency is not None else "grid"


def training_state(training: dict[str, Any]) -> dict[str, Any]:
    """The ``training`` record and ``history`` entries of a checkpoint state."""
    return {
        "training": {k: v for k, v in training.items() if k != "history"},
        "history": training.get("history", []),
    }


def training_of(state: dict[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`training_state`."""
    return {**state.get("training", {}), "history": state.get("history", [])}


def check_format(kind: str, state: dict[str, Any], expected: int) -> None:
    """Refuse a checkpoint state whose model format is not ``expected``."""
    from forecast import __version__

    if state.get("format") != expected:
        raise ForecastError(
            f"{kind} checkpoint has model format {state.get('format')!r}, forecast "
            f"{__version__} reads format {expected}; retrain it with `forecast train`"
        )


def stored_first_guess(
    kind: str, arrays: dict[str, np.ndarray], meta: dict[str, Any] | None, missing: str
) -> Any:
    """The first guess of ``kind`` stored in a checkpoint; ForecastError(``missing``) when it
    is absent."""
    from forecast.models.first_guess import first_guess_from_checkpoint

    fg = first_guess_from_checkpoint(kind, arrays, meta)
    if fg is None:
        raise ForecastError(missing)
    return fg


def as_latents(latents: Any, want: tuple[int, ...]) -> torch.Tensor:
    """``latents`` as a tensor ``(member, *want)`` (one latent without the member axis gets
    one); ForecastError on another shape."""
    z = torch.as_tensor(np.asarray(latents) if not torch.is_tensor(latents) else latents)
    if z.ndim == len(want):
        z = z[None]
    if tuple(z.shape[1:]) != want:
        raise ForecastError(
            f"latents have shape {tuple(z.shape)}, this model needs (member, {want}); "
            "use prior() or encode() of the same model and data"
        )
    return z


#: [train] settings a resumed run may change: the time limit, the display, the device (the
#: loop itself refuses a device of another type with its own message).
RESUMABLE_CHANGES = ("max_minutes", "progress", "device", "keep")


def in_training_folder(fit: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a generative model's ``fit``: without ``out_dir`` it runs in a temporary folder,
    so that the best and last training checkpoints exist and ``train.keep`` chooses the final
    weights exactly as with a folder (``forecast train``, the protocol runner, pools and the
    Python API then give the same model)."""

    @functools.wraps(fit)
    def wrapper(
        self: Any,
        train: xr.Dataset,
        valid: xr.Dataset | None = None,
        *,
        out_dir: str | Path | None = None,
        resume: bool = False,
        stop_after: int | None = None,
        **options: Any,
    ) -> Any:
        if out_dir is not None or resume:
            return fit(
                self, train, valid, out_dir=out_dir, resume=resume, stop_after=stop_after, **options
            )
        with tempfile.TemporaryDirectory(prefix=f"forecast-{self.kind}-") as tmp:
            return fit(self, train, valid, out_dir=tmp, stop_after=stop_after, **options)

    return wrapper


def resume_key(config: dict[str, Any] | None) -> dict[str, Any] | None:
    """A model configuration without the [train] settings in :data:`RESUMABLE_CHANGES`."""
    if config is None:
        return None
    out = dict(config)
    train = dict(out.get("train", {}))
    out["train"] = {k: v for k, v in train.items() if k not in RESUMABLE_CHANGES}
    return out


class GenerativeForecaster(ArrayForecaster):
    """Thin base class of the trained generative forecasters (see the module docstring).

    Subclasses set ``net``, ``normalizer``, ``adjacency``, ``training``, ``first_guess`` and
    ``fg`` and implement their own network, training loss and sampling.
    """

    #: Bumped when ``fit`` gives another model for the same configuration (2: without a folder
    #: it keeps the ``train.keep`` weights); part of the protocol runner's cache key.
    fit_revision: ClassVar[int] = 2

    def _init_training(self, train: dict[str, Any] | None) -> None:
        """Training configuration and the state a fit or a checkpoint fills in."""
        self.train_config = TrainConfig.from_dict(train)
        self.train = self.train_config.to_dict()
        self.net: torch.nn.Module | None = None
        self.normalizer: Any = None
        self.adjacency: np.ndarray | None = None
        self.training: dict[str, Any] = {}

    # -- training ------------------------------------------------------------------------------
    def _start_fit(self, train: xr.Dataset, out_dir: str | Path | None) -> tuple[str, Path | None]:
        """Layout and checkpoint folder (created) of a fit; sets the variables, data
        description, time step, adjacency (sensor data) and normalizer from ``train``."""
        from forecast.data import data_variables, describe_dataset, time_step
        from forecast.data.normalize import Normalizer

        layout = data_layout(train)
        out = Path(out_dir) if out_dir is not None else None
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
        self.variables = list(data_variables(train))
        self.description = describe_dataset(train)
        self.step = pd.Timedelta(time_step(train))
        if layout == "graph":
            if ADJACENCY not in train:
                raise ForecastError("sensor data lack the adjacency variable; open a network set")
            self.adjacency = np.asarray(train[ADJACENCY].values, dtype=np.float32)
        self.normalizer = Normalizer.fit(train, per_node=layout == "graph")
        return layout, out

    def _fit_first_guess(self, train: xr.Dataset, valid: xr.Dataset | None) -> Any:
        """Fit the configured first guess on ``train`` (and ``valid`` for the kinds that need
        it; ``fg``: None without one). Returns the first guess of the training windows:
        ``fg`` itself, or with ``first_guess_folds > 1`` the out-of-fold one
        (:func:`forecast.models.first_guess.fit_folded_first_guess`). Inside
        :func:`forecast.models.first_guess.shared_first_guesses` an equal fit is done once."""
        self.fg = None
        if self.first_guess is None:
            return None
        from forecast.models.first_guess import (
            dataset_key,
            fit_first_guess,
            fit_folded_first_guess,
            once,
        )

        kw = dict(
            context=self.context, horizon=self.horizon, seed=self.train_config.seed, valid=valid
        )
        folds = self.first_guess_folds

        def fit() -> tuple[Any, Any]:
            fg = fit_first_guess(self.first_guess, train, **kw)
            if folds == 1:
                return fg, fg
            return fg, fit_folded_first_guess(self.first_guess, train, folds=folds, **kw)

        settings = (self.first_guess, folds, self.context, self.horizon, self.train_config.seed)

        def key() -> tuple[Any, ...]:
            return ("fit", *settings, dataset_key(train), dataset_key(valid))

        self.fg, train_fg = once(key, fit)
        return train_fg

    def _resume(self, out: Path | None, module: torch.nn.Module) -> tuple[Any, torch.nn.Module]:
        """Training state and EMA weights (a copy of ``module``) of ``out/last.safetensors``;
        refused when it was written by another kind or another configuration (apart from
        the settings that may change on resume, :func:`resume_key`)."""
        if out is None or not (out / "last.safetensors").is_file():
            raise ForecastError(
                f"nothing to resume: {out}/last.safetensors not found; train without --resume"
            )
        arrays, meta = load_checkpoint(out / "last.safetensors")
        if meta.get("kind") != self.kind or resume_key(meta.get("config")) != resume_key(
            self.config()
        ):
            raise ForecastError(
                f"{out}/last.safetensors was trained with another configuration; use a new "
                "--out folder or the same config"
            )
        resume_arrays = resume_state(arrays, meta)
        ema = copy.deepcopy(module)
        load_net_weights(ema, arrays)
        return resume_arrays, ema

    def _write_training(
        self, out: Path, tag: str, arrays: dict[str, Any], meta: dict[str, Any]
    ) -> None:
        """Write the training checkpoint ``out/{tag}.safetensors`` (the model as it is now,
        the loop's ``arrays`` and record ``meta``)."""
        self.training = {k: v for k, v in meta.items() if k != "config"}
        self._write(out / f"{tag}.safetensors", extra=arrays, training=meta)

    def validation_crps(self, valid: xr.Dataset) -> float:
        """The training loop's validation CRPS (normalized units: its evenly spaced windows of
        ``valid``, members and member seeds) of the model as it is now, e.g. as loaded from a
        checkpoint, with whatever was fitted after training (calibrated spread) included."""
        self._require_fitted()
        validate = self._validator(valid)
        if validate is None:
            raise ForecastError(
                "the validation data hold no complete window; pass a longer validation period"
            )
        return float(validate(self._validated_module()))

    def _validated_module(self) -> Any:
        """What this model's validator is given during training, built from ``self.net``."""
        return self.net

    # -- sampling ------------------------------------------------------------------------------
    def _require_fitted(self) -> None:
        if self.net is None:
            raise ForecastError(
                f"{self.kind} model is not fitted; call fit(train) or load a checkpoint"
            )

    def _context_values(self, context: xr.Dataset) -> np.ndarray:
        self._require_fitted()
        values = super()._context_values(context)
        where = nan_location(context, self.variables)
        if where is not None:
            raise ForecastError(
                f"context contains NaN: {where}; fill the gap (e.g. ds.interpolate_na('time')) "
                "or pick another issue time"
            )
        return values

    def _normalized_target(self, target: xr.Dataset) -> torch.Tensor:
        """The observed ``target`` window (``horizon`` steps, physical units) normalized,
        ``(1, channel, lead, *space)``."""
        from forecast.data.torch import to_array

        if TIME not in target.dims or target.sizes[TIME] != self.horizon:
            raise ForecastError(
                f"target has {target.sizes.get(TIME, 0)} steps, the model needs {self.horizon}; "
                "pass forecast.data.windows.target_of(ds, issue_time, horizon)"
            )
        where = nan_location(target, self.variables)
        if where is not None:
            raise ForecastError(f"target contains NaN: {where}; pick another issue time")
        tgt = self.normalizer.transform_array(to_array(target[self.variables]), channel_axis=1)
        return channel_first(tgt)

    def _physical_members(self, field: torch.Tensor) -> np.ndarray:
        """Normalized members ``(M, C, H, *s)`` in physical units, ``(M, H, C, *s)``."""
        return self.normalizer.inverse_array(field.transpose(1, 2).numpy(), channel_axis=2)

    # -- checkpoints ---------------------------------------------------------------------------
    def _restore_shared(self, arrays: dict[str, np.ndarray], state: dict[str, Any]) -> None:
        """Set the normalizer, adjacency and training record stored in a checkpoint."""
        from forecast.data.normalize import Normalizer

        self.normalizer = Normalizer.from_dict(state["normalizer"])
        self.adjacency = arrays.get("adjacency")
        self.training = training_of(state)

    @classmethod
    def from_checkpoint(
        cls, arrays: dict[str, np.ndarray], meta: dict[str, Any], where: str = "checkpoint"
    ) -> Self:
        """Rebuild a model (or a ``best``/``last`` training checkpoint) written by this class."""
        try:
            return super().from_checkpoint(arrays, meta, where)
        except (KeyError, TypeError) as err:
            raise ForecastError(
                f"{where} is not a readable {cls.kind} checkpoint ({type(err).__name__}: {err}); "
                "retrain it with `forecast train`"
            ) from None
