"""Shared building blocks: scalar embeddings, FiLM residual blocks."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from forecast.errors import ForecastError


def fourier_features(x: torch.Tensor, dim: int, max_period: float = 100.0) -> torch.Tensor:
    """Sin/cos features of scalars ``x`` (shape ``(B,)``) at ``dim // 2`` log-spaced frequencies."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=x.dtype) / half)
    args = x.reshape(-1, 1) * freqs.reshape(1, -1) * 2 * math.pi
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)


class ConditionEmbedding(nn.Module):
    """Embeds the noise level and the calendar features into one vector per batch item.

    Parameters
    ----------
    dim : int
        Output size.
    n_calendar : int
        Number of calendar features (0 for none).
    """

    def __init__(self, dim: int, n_calendar: int = 4) -> None:
        super().__init__()
        self.dim = dim
        self.noise = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.calendar = nn.Linear(n_calendar, dim) if n_calendar else None
        self.out = nn.Sequential(nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, c_noise: torch.Tensor, calendar: torch.Tensor | None) -> torch.Tensor:
        e = self.noise(fourier_features(c_noise, self.dim))
        if self.calendar is not None and calendar is not None:
            e = e + self.calendar(calendar)
        return self.out(e)


class FiLMResBlock(nn.Module):
    """Residual block: norm, SiLU, conv, FiLM from the embedding, norm, SiLU, conv; plus skip.

    ``conv`` is a factory ``(c_in, c_out) -> nn.Module`` on ``(B, C, ...)`` tensors so that one
    block serves grids (3x3 convolution over ``(y, x)``), space-time grids (over ``(lead, y,
    x)``) and graphs (temporal plus graph convolution over ``(lead, node)``); ``skip`` the
    factory of the 1x1 map where ``c_in != c_out`` (default: a 2-D one).
    """

    def __init__(
        self,
        c_in: int,
        c_out: int,
        emb_dim: int,
        conv: Callable[[int, int], nn.Module],
        groups: int = 8,
        skip: Callable[[int, int], nn.Module] | None = None,
    ) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(min(groups, c_in), c_in)
        self.conv1 = conv(c_in, c_out)
        self.film = nn.Linear(emb_dim, 2 * c_out)
        self.norm2 = nn.GroupNorm(min(groups, c_out), c_out)
        self.conv2 = conv(c_out, c_out)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)
        pointwise = skip or (lambda a, b: nn.Conv2d(a, b, 1))
        self.skip = nn.Identity() if c_in == c_out else pointwise(c_in, c_out)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(self.act(self.norm1(x)))
        scale, shift = self.film(emb).chunk(2, dim=1)
        shape = (emb.shape[0], -1) + (1,) * (h.ndim - 2)
        h = self.norm2(h) * (1 + scale.reshape(shape)) + shift.reshape(shape)
        h = self.conv2(self.act(h))
        return h + self.skip(x)


def grid_context_input(cond: dict, ny: int, nx: int, dtype: torch.dtype) -> torch.Tensor:
    """A grid denoiser's context input ``(B or 1, channel * context + 2, y, x)``: the context
    frames ``cond["context"]`` stacked as channels, plus two coordinate channels in [-1, 1]."""
    ctx = cond["context"]
    ctx = ctx.reshape(ctx.shape[0], -1, ny, nx)
    shape = (ctx.shape[0], 1, ny, nx)
    gy = torch.linspace(-1, 1, ny, dtype=dtype).reshape(1, 1, ny, 1).expand(shape)
    gx = torch.linspace(-1, 1, nx, dtype=dtype).reshape(1, 1, 1, nx).expand(shape)
    return torch.cat([ctx, gy, gx], 1)


def first_guess_input(cond: dict) -> torch.Tensor:
    """``cond["first_guess"]`` of a network built with ``first_guess=True``."""
    if cond.get("first_guess") is None:
        raise ForecastError(
            "this denoiser was built with first_guess=True and needs cond['first_guess'] "
            "(channel, lead, *space); pass the normalized first guess"
        )
    return cond["first_guess"]
