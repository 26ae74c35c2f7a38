"""What a model that wraps one base model shares: the base's spec, its fit and its arrays.

:class:`~forecast.models.online.OnlineSpread` and :class:`~forecast.models.schaake.
SchaakeShuffle` each hold one fitted base model (any registered kind) and change its
ensembles. Both are built from ``{"kind": NAME, "config": {...}}`` (a config file's
``[model.model]`` table) or wrap a fitted model, and both keep the base model's arrays in their
own checkpoint under :data:`BASE_PREFIX`.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import xarray as xr

from forecast.checkpoint import load_checkpoint, save_checkpoint
from forecast.errors import ForecastError

#: Prefix of the base model's arrays in a wrapper's checkpoint.
BASE_PREFIX = "base/"
#: Kinds of the models that wrap one base model (their ``model`` attribute).
WRAPPERS = ("online-spread", "schaake")


def base_spec(
    model: Mapping[str, Any] | None,
    train: Mapping[str, Any] | None,
    *,
    owner: str,
    command: str,
) -> dict[str, Any]:
    """The checked base-model spec of a wrapper of kind ``owner``, with the ``train`` settings
    merged over the base's own (``command`` names the CLI that wraps a checkpoint)."""
    article = "an" if owner[0] in "aeiou" else "a"
    if model is None:
        raise ForecastError(
            f"{article} {owner} model needs a base model: give [model.model] kind = NAME and "
            f"[model.model.config] in the config, or wrap a trained checkpoint with "
            f"`{command}`"
        )
    if not isinstance(model, Mapping) or set(model) != {"kind", "config"}:
        raise ForecastError(f"{owner} model {model!r} is not {{'kind': NAME, 'config': {{...}}}}")
    if model["kind"] == owner:
        raise ForecastError(f"{article} {owner} model cannot wrap another; wrap its base model")
    spec = {"kind": str(model["kind"]), "config": dict(model["config"])}
    if train:
        from forecast.models.pooled import _with_training

        (spec,) = _with_training([spec], dict(train))
    return spec


def fit_base(
    spec: Mapping[str, Any],
    context: int,
    horizon: int,
    train: xr.Dataset,
    valid: xr.Dataset | None,
    *,
    out_dir: str | Path | None = None,
    resume: bool = False,
    jobs: int = 1,
) -> Any:
    """Build the base model of ``spec`` and fit it on ``train`` (and ``valid``); ``out_dir`` and
    ``resume`` go to a model that trains in a folder, ``jobs`` to a pool."""
    from forecast.models import MODELS

    base = MODELS.get(spec["kind"])(context=context, horizon=horizon, **spec["config"])
    params = inspect.signature(base.fit).parameters
    options: dict[str, Any] = {}
    if "out_dir" in params:
        options.update(out_dir=out_dir, resume=resume)
    elif resume:
        raise ForecastError(f"model {spec['kind']} cannot resume; train without --resume")
    if "jobs" in params:
        options["jobs"] = jobs
    elif jobs != 1:
        raise ForecastError(f"model {spec['kind']} fits in one process; drop --jobs")
    base.fit(train, valid, **options)
    return base


def base_content(model: Any) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The base ``model``'s checkpoint arrays (under :data:`BASE_PREFIX`) and metadata."""
    content, meta = model.checkpoint_content()
    return {f"{BASE_PREFIX}{name}": value for name, value in content.items()}, meta


def load_base(arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any], where: str) -> Any:
    """The base model stored in a wrapper's ``arrays`` with its metadata ``meta``."""
    from forecast.models import MODELS

    base_cls = MODELS.get(meta.get("kind"))
    own = {n[len(BASE_PREFIX) :]: a for n, a in arrays.items() if n.startswith(BASE_PREFIX)}
    return base_cls.from_checkpoint(own, dict(meta), where=f"{where} (base model)")


def reference_holder(model: Any) -> Any | None:
    """The model whose reference forecasts can be kept on disk (``use_reference_cache``): an
    online-spread ``model`` itself, the online-spread base of a schaake wrapper, else None."""
    if hasattr(model, "use_reference_cache"):
        return model
    if getattr(model, "kind", None) == "schaake" and model.model is not None:
        return reference_holder(model.model)
    return None


class WrapperModel:
    """What the wrappers share: ``fit`` (build and fit the base, then :meth:`_take` it),
    ``training``, ``save`` and ``load``. A subclass sets ``kind``, ``spec``, ``base_context``,
    ``horizon`` and ``model`` (None until fitted), and defines ``_take``,
    ``checkpoint_content`` and ``from_checkpoint``."""

    kind: ClassVar[str]
    spec: dict[str, Any]
    base_context: int
    horizon: int
    model: Any

    def _take(self, base: Any, train: xr.Dataset) -> None:
        """Adopt the fitted ``base`` (fitted on ``train``)."""
        raise NotImplementedError

    def fit(
        self,
        train: xr.Dataset,
        valid: xr.Dataset | None = None,
        *,
        out_dir: str | Path | None = None,
        resume: bool = False,
        jobs: int = 1,
    ) -> Self:
        """Build and fit the base model on ``train`` (and ``valid``); ``out_dir`` and
        ``resume`` go to a base model that trains in a folder, ``jobs`` to a pool."""
        base = fit_base(
            self.spec,
            self.base_context,
            self.horizon,
            train,
            valid,
            out_dir=out_dir,
            resume=resume,
            jobs=jobs,
        )
        self._take(base, train)
        return self

    @property
    def training(self) -> dict[str, Any]:
        """The base model's training record (empty for a model that does not train)."""
        return dict(getattr(self.model, "training", None) or {})

    @property
    def composition(self) -> str:
        """The wrapped model, e.g. ``gp`` or ``online-spread of pooled (a (diffusion) x1, ...)``:
        what ``forecast predict`` writes after the wrapper's kind in the file's ``model``."""
        if self.model is None:
            return str(self.spec["kind"])
        kind = str(self.model.kind)
        inner = getattr(self.model, "composition", None)
        if not inner:
            return kind
        return f"{kind} of {inner}" if isinstance(self.model, WrapperModel) else f"{kind} ({inner})"

    def _require_fitted(self) -> None:
        if self.model is None:
            raise ForecastError(f"{self.kind} model is not fitted; call fit(train) or load it")

    def save(self, path: str | Path) -> None:
        """Write the model, with its base model, to one checkpoint file."""
        save_checkpoint(path, *self.checkpoint_content())  # type: ignore[attr-defined]

    @classmethod
    def load(cls, path: str | Path) -> Any:
        """Read a model written by :meth:`save`."""
        arrays, meta = load_checkpoint(path)
        return cls.from_checkpoint(arrays, meta, where=str(path))  # type: ignore[attr-defined]
