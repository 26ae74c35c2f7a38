"""Latent paths: spherical interpolation between two Gaussian latents, decoded by any model.

Built once on top of :class:`forecast.dims.LatentForecaster`: the path only needs ``decode``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from forecast.dims import MEMBER, PATH, TIME, space_dims
from forecast.errors import ForecastError


def slerp(z_a: Any, z_b: Any, t: Any) -> Any:
    """Spherical linear interpolation between latents ``z_a`` and ``z_b`` (same shape).

    Parameters
    ----------
    z_a, z_b : numpy array or torch tensor
        Two latents of the same shape (each flattened to one vector for the angle).
    t : sequence of float
        Fractions along the path; 0 gives exactly ``z_a`` and 1 exactly ``z_b``.

    Returns
    -------
    Same type as ``z_a``: shape ``(len(t), *z_a.shape)``.

    Examples
    --------
    >>> import numpy as np
    >>> out = slerp(np.array([1.0, 0.0]), np.array([0.0, 1.0]), [0.0, 0.5, 1.0])
    >>> np.round(out, 4).tolist()
    [[1.0, 0.0], [0.7071, 0.7071], [0.0, 1.0]]
    """
    is_torch = hasattr(z_a, "detach")
    a = z_a.detach().cpu().numpy() if is_torch else np.asarray(z_a)
    b = z_b.detach().cpu().numpy() if hasattr(z_b, "detach") else np.asarray(z_b)
    if a.shape != b.shape:
        raise ForecastError(
            f"latents differ in shape: {a.shape} vs {b.shape}; pass two of one model"
        )
    ts = np.asarray(t, dtype=np.float64).reshape(-1)
    af, bf = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    cos = np.dot(af, bf) / (np.linalg.norm(af) * np.linalg.norm(bf))
    omega = np.arccos(np.clip(cos, -1.0, 1.0))
    out = np.empty((len(ts), af.size))
    for k, tk in enumerate(ts):
        if np.sin(omega) < 1e-8:  # (anti)parallel: the sphere path is not unique; blend
            out[k] = (1 - tk) * af + tk * bf
        else:
            out[k] = (np.sin((1 - tk) * omega) * af + np.sin(tk * omega) * bf) / np.sin(omega)
    out = out.reshape(len(ts), *a.shape).astype(a.dtype)
    out[ts == 0] = a
    out[ts == 1] = b
    if is_torch:
        import torch

        return torch.from_numpy(out).to(z_a.device)
    return out


def latent_path(
    forecaster: Any, context: xr.Dataset, z_a: Any, z_b: Any, steps: int = 9
) -> xr.Dataset:
    """Decode ``steps`` points along the slerp path from latent ``z_a`` to ``z_b``.

    Parameters
    ----------
    forecaster : LatentForecaster
        Any model with ``decode(context, latents)``.
    context : xr.Dataset
        The context window both latents belong to.
    z_a, z_b : array or tensor
        One latent each, without member axis (e.g. ``prior(...)[m]`` or ``encode(...)[0]``).
    steps : int
        Number of points, ``>= 2``; the first decodes ``z_a`` and the last ``z_b``.

    Returns
    -------
    xr.Dataset
        The decoded fields with dimension ``path`` (coordinate: fraction in [0, 1]) in place of
        ``member``.
    """
    if int(steps) < 2:
        raise ForecastError(f"a latent path needs steps >= 2, got {steps}")
    t = np.linspace(0.0, 1.0, int(steps))
    path = forecaster.decode(context, slerp(z_a, z_b, t))
    return path.rename({MEMBER: PATH}).assign_coords({PATH: t})


def blend_path(end_a: xr.Dataset, end_b: xr.Dataset, steps: int = 9) -> xr.Dataset:
    """The straight blend ``(1 - t) a + t b`` of two decoded fields, for comparison with slerp."""
    t = xr.DataArray(np.linspace(0.0, 1.0, int(steps)), dims=PATH)
    end_a, end_b = (e.drop_vars(PATH, errors="ignore") for e in (end_a, end_b))
    out = (1 - t) * end_a + t * end_b
    return out.assign_coords({PATH: t.values})


def variance_ratio(path: xr.Dataset, last: xr.Dataset) -> xr.Dataset:
    """Spatial variance of the anomaly (field minus ``last``) along a path over that at its ends.

    Parameters
    ----------
    path : xr.Dataset
        Output of :func:`latent_path` or :func:`blend_path` (dimension ``path``).
    last : xr.Dataset
        The last context step (the issue-time field), without time dimension.

    Returns
    -------
    xr.Dataset
        Per variable, over ``path``: the mean over leads of the spatial variance divided by
        the same interpolated linearly between the two ends, ``(1 - t) v_a + t v_b``. It is 1
        at the ends; a straight blend of two independent fields drops to about 0.5 mid-way.
    """
    anom = path - last
    var = anom.var(dim=list(space_dims(path))).mean(
        dim=[d for d in anom.dims if d not in (PATH, *space_dims(path))]
    )
    t = xr.DataArray(np.asarray(path[PATH].values, dtype=float), dims=PATH)
    ends = (1 - t) * var.isel({PATH: 0}, drop=True) + t * var.isel({PATH: -1}, drop=True)
    return var / ends


def largest_step(path: xr.Dataset) -> xr.Dataset:
    """Per variable: the largest change between neighbouring points of a path (RMS over the
    field) over the RMS difference between its ends. Evenly spaced changes give the smallest
    value, ``1 / (steps - 1)``; a jump gives a value near 1."""
    out = {}
    for name, da in path.data_vars.items():
        f = np.asarray(da.transpose(PATH, ...).values, dtype=np.float64).reshape(da.sizes[PATH], -1)
        end = np.sqrt(((f[-1] - f[0]) ** 2).mean())
        steps = np.sqrt((np.diff(f, axis=0) ** 2).mean(axis=1))
        out[name] = float(steps.max() / end) if end > 0 else np.nan
    return xr.Dataset({name: ((), value) for name, value in out.items()})


def path_dataset(
    path: xr.Dataset, blend: xr.Dataset, path_ratio: xr.Dataset, blend_ratio: xr.Dataset
) -> xr.Dataset:
    """A latent path, its straight blend and both anomaly-variance ratios in one data set.

    Variables ``<var>`` (decoded along the slerp path), ``<var>_blend`` (the straight blend of
    its ends, :func:`blend_path`) and ``<var>_variance_ratio`` / ``<var>_blend_variance_ratio``
    (:func:`variance_ratio` of each), all over ``path``.
    """
    out = path.copy()
    for name in path.data_vars:
        out[name].attrs = {**path[name].attrs, "comment": "decoded along the slerp latent path"}
        out[f"{name}_blend"] = blend[name].astype(path[name].dtype)
        out[f"{name}_blend"].attrs = {
            **blend[name].attrs,
            "comment": "straight blend (1 - t) A + t B of the path ends",
        }
        for kind, ratio in (("path", path_ratio), ("blend", blend_ratio)):
            key = f"{name}_variance_ratio" if kind == "path" else f"{name}_blend_variance_ratio"
            out[key] = ratio[name]
            out[key].attrs = {
                "long_name": f"spatial variance of the {kind}'s anomaly from the issue-time "
                "field over the same interpolated between the two ends",
                "units": "1",
            }
    out[PATH].attrs = {"long_name": "fraction along the path from scenario A to B", "units": "1"}
    return out


def latent_explorer(
    model: Any, context: xr.Dataset, z_a: Any, z_b: Any, steps: int
) -> tuple[xr.Dataset, xr.Dataset, xr.Dataset, xr.Dataset]:
    """Decode the slerp path between two latents and the straight blend of its end fields
    (the dashboard's latent explorer and ``forecast path``).

    Returns
    -------
    path, blend : xr.Dataset
        Dims ``(path, lead_time, *space)``: the decoded latent path and the blend
        ``(1 - t) A + t B`` of its two ends.
    path_ratio, blend_ratio : xr.Dataset
        Spatial variance of the anomaly from the last context step along each, relative to
        the ends (:func:`forecast.sampling.paths.variance_ratio`).
    """
    path = latent_path(model, context, z_a, z_b, steps)
    blend = blend_path(path.isel({PATH: 0}, drop=True), path.isel({PATH: -1}, drop=True), steps)
    for name in blend.data_vars:
        blend[name].attrs = path[name].attrs
    last = context.isel({TIME: -1}, drop=True)[list(path.data_vars)]
    last = last.drop_vars([c for c in last.coords if c not in last.dims])
    return path, blend, variance_ratio(path, last), variance_ratio(blend, last)
