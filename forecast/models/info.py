"""What a checkpoint holds, read from its file alone: no model or network is built.

:func:`checkpoint_info` gathers the model kind, window geometry, data description, the
training record (steps, best validation score, time, device, active latent units), the first
guess (with the per-lead weights of ``"gp-clim"``), the spread factors, a pool's components, an
online-spread model's settings and base model, a schaake model's record and base model, and
the shipped-model record;
:func:`format_info` prints it (``forecast model info``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from forecast.checkpoint import load_checkpoint
from forecast.models.schaake import RECORD_TIMES
from forecast.models.wrapped import BASE_PREFIX, WRAPPERS

#: Config keys shown in the one-line model description, when present.
HEADLINE_KEYS = ("target", "sampler", "nfe", "latent_channels", "method", "n_inducing")


def checkpoint_info(path: str | Path) -> dict[str, Any]:
    """A JSON-able summary of the checkpoint at ``path`` (see the module docstring).

    Raises a ForecastError (one line) for a missing file or one that is not a checkpoint.
    """
    path = Path(path)
    arrays, meta = load_checkpoint(path)
    info: dict[str, Any] = {
        "path": str(path),
        "size_bytes": path.stat().st_size,
        "format": meta.get("format"),
        "version": meta.get("version"),
        "data": meta.get("data", {}),
        "parameters": int(sum(np.asarray(a).size for a in arrays.values())),
    }
    info.update(_summary(meta, arrays))
    if meta.get("shipped"):
        info["shipped"] = meta["shipped"]
    return info


def _summary(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """:func:`_model_part`, plus a pool's components and an online-spread model's base."""
    out = _model_part(meta, arrays)
    if meta.get("kind") == "pooled":
        config = meta.get("config", {})
        parts = meta.get("state", {}).get("models", [])
        labels = config.get("labels") or [f"c{k}" for k in range(len(parts))]
        weights = config.get("weights") or [1.0] * len(parts)
        out["components"] = [
            {"label": label, "weight": float(weight), **_model_part(part, _prefixed(arrays, k))}
            for k, (label, weight, part) in enumerate(zip(labels, weights, parts, strict=False))
        ]
    if meta.get("kind") in WRAPPERS:
        base = (meta.get("state") or {}).get("model") or {}
        prefix = BASE_PREFIX
        own = {n[len(prefix) :]: a for n, a in arrays.items() if n.startswith(prefix)}
        out["base"] = _summary(base, own)
    return out


def _prefixed(arrays: dict[str, np.ndarray], k: int) -> dict[str, np.ndarray]:
    """The arrays of a pool's component ``k`` (stored under ``c<k>/``), unprefixed."""
    prefix = f"c{k}/"
    return {name[len(prefix) :]: a for name, a in arrays.items() if name.startswith(prefix)}


def _model_part(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """Kind, geometry, configuration, training record, first guess and spread of one model."""
    config = dict(meta.get("config", {}))
    state = meta.get("state", {}) or {}
    part: dict[str, Any] = {
        "kind": meta.get("kind", "?"),
        "context": config.pop("context", None),
        "horizon": config.pop("horizon", None),
    }
    train = config.pop("train", None)
    if meta.get("kind") not in ("pooled", *WRAPPERS):
        part["config"] = config
    if meta.get("kind") == "schaake":
        times = arrays.get(RECORD_TIMES)
        if times is not None and len(times):
            stamps = np.asarray(times).astype("datetime64[ns]")[[0, -1]]
            part["schaake"] = [np.datetime_as_string(t, unit="m") for t in stamps]
    if meta.get("kind") == "online-spread":
        keys = ("history", "members", "prior_weight", "persistence_blend", "diurnal_width")
        part["online"] = {k: config.get(k) for k in keys}
    if train is not None:
        part["train_config"] = train
    training = state.get("training")
    if isinstance(training, dict) and training:
        part["training"] = _training(training)
    fg = state.get("first_guess")
    if isinstance(fg, dict) and fg.get("kind"):
        guess: dict[str, Any] = {"kind": fg["kind"]}
        folds = int(config.get("first_guess_folds", 1))
        if folds > 1:  # the training windows saw out-of-fold first guesses
            guess["training_folds"] = folds
        if "first_guess.weights" in arrays:
            guess["weights"] = np.round(arrays["first_guess.weights"], 4).tolist()
        part["first_guess"] = guess
    spread = state.get("spread_scale", state.get("spread_factor"))
    if spread is not None:
        values = np.asarray(spread, dtype=float)
        part["spread_factors"] = [float(values.min()), float(values.max())]
    weight = state.get("correction_weight")
    if weight is not None:
        part["correction_weights"] = np.round(np.asarray(weight, dtype=float), 2).tolist()
    return part


def _training(record: dict[str, Any]) -> dict[str, Any]:
    """The parts of a training record worth showing (steps, best score, time, device, latent)."""
    keys = (
        "step",
        "weights_step",
        "total_steps",
        "best_step",
        "best_score",
        "stopped",
        "seconds",
        "device",
    )
    out = {k: record[k] for k in keys if record.get(k) not in (None, "")}
    out.setdefault("device", "cpu")
    latent = record.get("latent")
    if isinstance(latent, dict) and "active_units" in latent:
        out["active_latent_units"] = [latent["active_units"], latent.get("latent_units")]
    return out


def format_info(info: dict[str, Any]) -> str:
    """Human-readable lines of :func:`checkpoint_info`'s summary."""
    size = info["size_bytes"] / 2**20
    lines = [
        f"{info['path']}: {info['kind']} checkpoint, {size:.2f} MiB, "
        f"{info['parameters']:,} stored values, format {info['format']} "
        f"(forecast {info['version']})",
        f"  data: {_data_text(info['data'])}",
        *_part_lines(info, "  "),
    ]
    lines.extend(_parts_of(info, "  "))
    shipped = info.get("shipped")
    if shipped:
        lines.append(f"  shipped as {shipped.get('name')}; retrain: {shipped.get('command')}")
    return "\n".join(lines)


def _parts_of(info: dict[str, Any], indent: str) -> list[str]:
    """Lines of a pool's components and of an online-spread model's base model."""
    lines = []
    for comp in info.get("components", []):
        lines.append(f"{indent}component {comp['label']} (weight {comp['weight']:g}):")
        lines.extend(_part_lines(comp, indent + "  "))
    base = info.get("base")
    if base:
        lines.append(f"{indent}base model:")
        lines.extend(_part_lines(base, indent + "  "))
        lines.extend(_parts_of(base, indent + "  "))
    return lines


def _data_text(data: dict[str, Any]) -> str:
    shape = " x ".join(f"{dim} {n}" for dim, n in (data.get("shape") or {}).items())
    units = data.get("units") or {}
    variables = ", ".join(f"{v} [{units.get(v, '?')}]" for v in data.get("variables", []))
    step = data.get("time_step_s")
    step_text = f", step {step / 3600:g} h" if step and step % 3600 == 0 else ""
    if step and step % 3600:
        step_text = f", step {step / 60:g} min"
    return f"{data.get('kind', '?')} {variables}, {shape}{step_text}"


def _part_lines(part: dict[str, Any], indent: str) -> list[str]:
    config = part.get("config", {})
    head = ", ".join(f"{k} {config[k]}" for k in HEADLINE_KEYS if k in config)
    if config.get("whiten_space"):
        head += ", diffused in spatially whitened coordinates"
        on_field = [
            what
            for what, key in (("network", "whiten_net"), ("loss", "whiten_loss"))
            if config.get(key) == "field"
        ]
        if on_field:
            head += f" ({' and '.join(on_field)} on the field)"
    lines = [
        f"{indent}model: {part['kind']}, context {part['context']} steps, horizon "
        f"{part['horizon']} steps" + (f"; {head}" if head else "")
    ]
    online = part.get("online")
    if online:
        lines.append(
            f"{indent}online spread: factors from the last {online['history']} issue times "
            f"({online['members']} reference members each, prior weight "
            f"{online['prior_weight']:g})"
            + ("; mean blended with persistence" if online.get("persistence_blend") else "")
            + (
                f"; factors by time of day (kernel half width {online['diurnal_width']:g} h)"
                if online.get("diurnal_width")
                else ""
            )
            + f"; reads {part['context'] + online['history']} steps"
        )
    record = part.get("schaake")
    if record:
        lines.append(
            f"{indent}Schaake shuffle: members reordered to the ranks of observed changes from "
            f"the record {record[0]} to {record[1]}"
        )
    training = part.get("training")
    if training:
        # the record is the loop's state when these weights were saved (the best step for a
        # best checkpoint and for forecast train's model.safetensors), or the whole run's with
        # the step of the kept weights (a fit without a folder, e.g. a pool's models)
        text = f"weights of step {training.get('weights_step', training.get('step', '?'))}"
        if training.get("total_steps"):
            text += f" of {training['total_steps']}"
        if training.get("stopped"):
            text += f" ({training['stopped']})"
        if training.get("best_score") is not None:
            text += (
                f", best validation CRPS {training['best_score']:.4g} at step "
                f"{training.get('best_step')}"
            )
        if training.get("seconds") is not None:
            text += f", {training['seconds']:.0f} s of training"
        text += f" on {training['device']}"
        seed = (part.get("train_config") or {}).get("seed")
        if seed is not None:
            text += f", seed {seed}"
        lines.append(f"{indent}training: {text}")
        if "active_latent_units" in training:
            active, total = training["active_latent_units"]
            lines.append(f"{indent}latent: {active} of {total} units active")
    guess = part.get("first_guess")
    if guess:
        text = guess["kind"]
        weights = guess.get("weights")
        if weights:
            per_lead = ", ".join(f"{w:.2f}" for w in np.asarray(weights)[0])
            text += f" (weights by lead: {per_lead})"
        if guess.get("training_folds"):
            text += f"; training windows cross-fitted over {guess['training_folds']} folds"
        lines.append(f"{indent}first guess: {text}")
    if part.get("spread_factors"):
        low, high = part["spread_factors"]
        lines.append(f"{indent}spread factors: {low:.2f}-{high:.2f}")
    if part.get("correction_weights"):
        per_lead = ", ".join(f"{w:.2f}" for w in np.asarray(part["correction_weights"])[0])
        lines.append(f"{indent}kept share of the correction by lead: {per_lead}")
    return lines
