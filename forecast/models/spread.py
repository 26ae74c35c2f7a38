"""Spread calibration shared by the generative models: one factor per (variable, lead).

Members become ``centre + f * deviation`` (``centre`` a fixed field of the window, e.g. the
decoded prior mean or the first guess; ``deviation`` the member's departure from it), and ``f``
is chosen from a grid on held-out windows by one of two objectives:

- ``"crps"``: the lowest mean CRPS (the sharpest ensemble the held-out errors support);
- ``"spread-skill"``: the spread-skill ratio closest to 1 (``sqrt((M+1)/M) * spread /
  RMSE(ensemble mean)``, pooled over windows and points, as
  :func:`forecast.scoring.spread_skill_ratio`). Where the errors are heavy-tailed the CRPS
  optimum is under-dispersed; this objective trades a little CRPS for calibrated spread.

:func:`fit_correction_weights` fits, on the same windows, how much of a model's correction of
its anchor to keep (``centre -> w * centre``, least squares): a correction learned on few
training days may be partly noise that held-out windows do not support.
"""

from __future__ import annotations

import numpy as np

from forecast.errors import ForecastError

SPREAD_OBJECTIVES = ("crps", "spread-skill")


def check_objective(objective: str) -> str:
    """``objective`` if it is one of :data:`SPREAD_OBJECTIVES`, else a one-line error."""
    if objective not in SPREAD_OBJECTIVES:
        raise ForecastError(
            f"calibration_objective must be one of {list(SPREAD_OBJECTIVES)}, got {objective!r}"
        )
    return objective


def spread_factor_scores(
    truth: np.ndarray,
    centre: np.ndarray,
    deviation: np.ndarray,
    grid: np.ndarray,
    objective: str = "crps",
) -> np.ndarray:
    """Objective value ``(grid, C, H)`` of every factor in ``grid`` (lower is better).

    ``truth`` is ``(W, C, H, *space)``, ``centre`` broadcasts to it, ``deviation`` is
    ``(W, C, H, *space, M)``; axes other than C and H are pooled. For ``"spread-skill"`` the
    value is ``|log SSR|``.
    """
    from forecast.scoring.kernels import crps_ensemble_np

    check_objective(objective)
    truth = np.asarray(truth, dtype=np.float64)
    centre = np.broadcast_to(np.asarray(centre, dtype=np.float64), truth.shape)
    deviation = np.asarray(deviation, dtype=np.float64)
    if deviation.shape[:-1] != truth.shape:
        raise ForecastError(
            f"deviation shape {deviation.shape} does not match truth {truth.shape} plus members"
        )
    axes = tuple(i for i in range(truth.ndim) if i not in (1, 2))
    members = deviation.shape[-1]
    if objective == "crps":
        return np.stack(
            [
                crps_ensemble_np(truth, centre[..., None] + f * deviation).mean(axis=axes)
                for f in grid
            ]
        )
    if members < 2:
        raise ForecastError("the spread-skill objective needs at least 2 members per window")
    # the spread scales with f exactly; the ensemble mean moves with f through mean(deviation)
    spread = np.sqrt(deviation.var(axis=-1, ddof=1).mean(axis=axes))
    offset, mean_dev = centre - truth, deviation.mean(axis=-1)
    out = []
    for f in grid:
        rmse = np.sqrt(((offset + f * mean_dev) ** 2).mean(axis=axes))
        ssr = np.sqrt((members + 1) / members) * f * spread / np.maximum(rmse, 1e-12)
        out.append(np.abs(np.log(np.maximum(ssr, 1e-12))))
    return np.stack(out)


def fit_spread_factors(
    truth: np.ndarray,
    centre: np.ndarray,
    deviation: np.ndarray,
    grid: np.ndarray,
    objective: str = "crps",
) -> np.ndarray:
    """The factor of ``grid`` with the best ``objective`` per (C, H): ``(C, H)`` float64."""
    grid = np.asarray(grid, dtype=np.float64)
    scores = spread_factor_scores(truth, centre, deviation, grid, objective)
    return grid[np.argmin(scores, axis=0)]


def fit_correction_weights(truth: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Least-squares weight ``w`` in [0, 1] of a model's correction per (C, H): the ``w`` that
    minimizes ``sum (truth - w * centre) ** 2`` over the axes other than C and H, clipped.

    ``truth`` and ``centre`` are ``(W, C, H, *space)`` and measured from the same anchor (a
    first guess, or the last observed step), so that ``w = 0`` keeps the anchor and ``w = 1``
    the model's correction whole. A (C, H) whose centre is zero everywhere gets 1.
    """
    truth = np.asarray(truth, dtype=np.float64)
    centre = np.asarray(centre, dtype=np.float64)
    if truth.shape != centre.shape or truth.ndim < 3:
        raise ForecastError(
            f"truth {truth.shape} and centre {centre.shape} must share one (W, C, H, ...) shape"
        )
    axes = tuple(i for i in range(truth.ndim) if i not in (1, 2))
    cross, power = (truth * centre).sum(axis=axes), (centre * centre).sum(axis=axes)
    weight = np.divide(cross, power, out=np.ones_like(cross), where=power > 0)
    return np.clip(weight, 0.0, 1.0)
