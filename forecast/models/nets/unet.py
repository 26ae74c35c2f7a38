"""A small U-Net denoiser for gridded fields, leads and variables stacked as channels.

Leads as channels (rather than a space-time network) because the horizon is short (<= 24 steps)
and the grid small: one 2-D pass per evaluation is the cheapest way to produce the whole
horizon jointly, which is what keeps few-step sampling of 50 members within seconds on a CPU.
The context frames enter as extra input channels together with two static coordinate
channels; the first convolution is split in a noisy-target part and a context part so that the
context part is computed once per call with batch 1 and broadcast over the members.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from forecast.models.nets.blocks import (
    ConditionEmbedding,
    FiLMResBlock,
    first_guess_input,
    grid_context_input,
)


def _conv3(c_in: int, c_out: int) -> nn.Module:
    return nn.Conv2d(c_in, c_out, 3, padding=1)


class GridDenoiser(nn.Module):
    """U-Net over ``(y, x)`` producing all variables and leads at once.

    Parameters
    ----------
    channels : int
        Number of variables.
    horizon, context : int
        Number of lead steps produced and of context steps given.
    base : int
        Channels at full resolution; level ``k`` has ``base * mults[k]``.
    mults : tuple of int
        Channel multipliers per resolution level (each level halves the grid).
    emb_dim : int
        Size of the noise/calendar embedding.
    n_calendar : int
        Number of calendar features.
    first_guess : bool
        Also take ``cond["first_guess"]`` ``(B or 1, channel, lead, y, x)`` (a deterministic
        forecast of the target) as input channels, through its own first convolution; off by
        default (no extra weights, so older checkpoints load unchanged).
    """

    def __init__(
        self,
        channels: int,
        horizon: int,
        context: int,
        *,
        base: int = 32,
        mults: tuple[int, ...] = (1, 2, 2),
        emb_dim: int = 64,
        n_calendar: int = 4,
        first_guess: bool = False,
    ) -> None:
        super().__init__()
        self.channels, self.horizon, self.context = channels, horizon, context
        widths = [base * m for m in mults]
        self.embed = ConditionEmbedding(emb_dim, n_calendar)
        self.in_x = nn.Conv2d(channels * horizon, widths[0], 3, padding=1, bias=False)
        self.in_ctx = nn.Conv2d(channels * context + 2, widths[0], 3, padding=1)
        self.in_guess = (
            nn.Conv2d(channels * horizon, widths[0], 3, padding=1, bias=False)
            if first_guess
            else None
        )
        self.down_blocks = nn.ModuleList()
        self.downs = nn.ModuleList()
        for k, w in enumerate(widths):
            self.down_blocks.append(FiLMResBlock(widths[max(k - 1, 0)], w, emb_dim, _conv3))
            if k < len(widths) - 1:
                self.downs.append(nn.Conv2d(w, w, 3, stride=2, padding=1))
        self.mid = FiLMResBlock(widths[-1], widths[-1], emb_dim, _conv3)
        self.up_blocks = nn.ModuleList()
        self.ups = nn.ModuleList()
        for k in reversed(range(len(widths) - 1)):
            self.ups.append(nn.Conv2d(widths[k + 1], widths[k], 3, padding=1))
            self.up_blocks.append(FiLMResBlock(2 * widths[k], widths[k], emb_dim, _conv3))
        self.out_norm = nn.GroupNorm(min(8, widths[0]), widths[0])
        self.out = nn.Conv2d(widths[0], channels * horizon, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, cond: dict) -> torch.Tensor:
        """``x``: ``(B, channel, lead, y, x)``; returns the same shape."""
        b, c, h, ny, nx = x.shape
        emb = self.embed(c_noise, cond.get("calendar"))
        if emb.shape[0] != b:
            emb = emb.expand(b, -1)
        context = self.in_ctx(grid_context_input(cond, ny, nx, x.dtype))
        hcur = self.in_x(x.reshape(b, c * h, ny, nx)) + context
        if self.in_guess is not None:
            guess = first_guess_input(cond)
            hcur = hcur + self.in_guess(guess.reshape(guess.shape[0], c * h, ny, nx))
        skips = []
        for k, block in enumerate(self.down_blocks):
            hcur = block(hcur, emb)
            if k < len(self.downs):
                skips.append(hcur)
                hcur = self.downs[k](hcur)
        hcur = self.mid(hcur, emb)
        for up, block in zip(self.ups, self.up_blocks, strict=True):
            skip = skips.pop()
            hcur = up(F.interpolate(hcur, size=skip.shape[-2:], mode="nearest"))
            hcur = block(torch.cat([hcur, skip], 1), emb)
        out = self.out(F.silu(self.out_norm(hcur)))
        return out.reshape(b, c, h, ny, nx)
