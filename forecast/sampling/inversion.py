"""DDIM inversion: run the deterministic sampler backwards from data to its initial noise.

The DDIM step from level ``s`` to ``s'`` is ``x' = F(x) = r x + (1 - r) D(x, s)`` with
``r = s'/s`` (``F(x) = D(x, s)`` for the last step to ``s' = 0``). Plain DDIM inversion
evaluates ``D`` at the known point ``x'`` instead of the unknown ``x``, which leaves a
discretization error. Here each step starts from that guess and refines it with residual
iterations ``x <- x + (x' - F(x)) / J``: first with ``J = r + (1 - r) c_skip(s)`` (the Jacobian
of ``F`` for the skip part of the EDM denoiser), then with a secant estimate of ``J`` per batch
item, so that ``DDIM(invert(x0)) == x0`` up to the iteration's residual, at high noise (``D``
nearly constant) as at low noise (``D`` nearly the identity).
"""

from __future__ import annotations

import torch

from forecast.sampling.process import Denoiser


def invert(
    denoise: Denoiser,
    x0: torch.Tensor,
    sigmas: torch.Tensor,
    refine: int = 3,
    sigma_data: float = 1.0,
) -> torch.Tensor:
    """Find the start ``x`` at ``sigmas[0]`` that the DDIM sampler on ``sigmas`` maps to ``x0``.

    Parameters
    ----------
    denoise : callable
        The denoiser ``D(x, sigma)``.
    x0 : torch.Tensor
        Clean samples, batch first.
    sigmas : torch.Tensor
        The decreasing schedule the DDIM sampler uses (last entry 0).
    refine : int
        Refinement iterations per step (0 gives plain DDIM inversion). Cost:
        ``(1 + refine) * (len(sigmas) - 1)`` denoiser evaluations.
    sigma_data : float
        The process's ``sigma_data`` (sets ``c_skip`` of the preconditioner).

    Returns
    -------
    torch.Tensor
        The noisy start at ``sigmas[0]`` (divide by it for a standard-normal latent).
    """
    x_next = x0
    n = len(sigmas) - 1
    for i in reversed(range(n)):
        s, s_next = sigmas[i], sigmas[i + 1]
        sd = s.to(x0.dtype)
        c_skip = float(sigma_data**2 / (s**2 + sigma_data**2))
        if s_next == 0:
            r = 0.0
            x = x_next.clone()  # D(x, s) ~ x at the smallest noise level

            def step(x, sd=sd):
                return denoise(x, sd)
        else:
            r = float(s_next / s)
            # plain DDIM inversion: the denoiser at the known (lower-noise) point
            d = denoise(x_next, s_next.to(x0.dtype))
            x = (x_next - (1 - r) * d) / r

            def step(x, sd=sd, r=r):
                return r * x + (1 - r) * denoise(x, sd)

        x = _refine(step, x, x_next, r + (1 - r) * c_skip, refine)
        x_next = x
    return x_next


def _refine(step, x: torch.Tensor, target: torch.Tensor, scale: float, n: int) -> torch.Tensor:
    """Solve ``step(x) = target`` by ``n`` preconditioned residual iterations.

    The first iteration divides the residual by ``scale`` (the skip part of the Jacobian); the
    next ones by a secant estimate of the Jacobian's scale, one per batch item (a Barzilai-
    Borwein step), which also covers the learned part of the denoiser.
    """
    if n <= 0:
        return x
    dims = tuple(range(1, x.ndim))
    f = step(x)
    x_new = x + (target - f) / scale
    for _ in range(n - 1):
        f_new = step(x_new)
        dx, df = x_new - x, f_new - f
        num = (df * dx).sum(dim=dims, keepdim=True) if dims else df * dx
        den = (dx * dx).sum(dim=dims, keepdim=True) if dims else dx * dx
        secant = torch.where(den > 0, num / den.clamp_min(1e-30), torch.full_like(den, scale))
        secant = torch.where(secant > 1e-3 * scale, secant, torch.full_like(secant, scale))
        x, f = x_new, f_new
        x_new = x + (target - f) / secant
    return x_new
