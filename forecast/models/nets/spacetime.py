"""A space-time U-Net denoiser for gridded fields: the lead is a dimension of the features.

The alternative to :class:`forecast.models.nets.unet.GridDenoiser` (leads stacked as
channels). Every layer keeps a feature vector per lead and grid point, ``(B, F, lead, y, x)``,
and each convolution is factorized: a 3x3 convolution over ``(y, x)`` shared by all leads, then
a convolution of width 3 over the leads shared by all points ((2+1)-D). Down- and up-sampling
act on space only. The context frames, the two coordinate channels and a learned embedding of
the lead enter through the first layer, broadcast over the leads; a first guess enters per
lead. Kept for the measured comparison in docs/diffusion.md "Leads as channels or a space-time
network".
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


class SpaceTimeConv(nn.Module):
    """3x3 convolution over ``(y, x)`` then width-3 convolution over the lead, on
    ``(B, F, lead, y, x)``."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.space = nn.Conv3d(c_in, c_out, (1, 3, 3), padding=(0, 1, 1))
        self.time = nn.Conv3d(c_out, c_out, (3, 1, 1), padding=(1, 0, 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.time(self.space(x))


def _pointwise(c_in: int, c_out: int) -> nn.Module:
    return nn.Conv3d(c_in, c_out, 1)


class SpaceTimeDenoiser(nn.Module):
    """U-Net over ``(lead, y, x)`` producing all variables and leads at once.

    Parameters
    ----------
    channels : int
        Number of variables.
    horizon, context : int
        Number of lead steps produced and of context steps given.
    base : int
        Features per lead and point at full resolution; level ``k`` has ``base * mults[k]``.
    mults : tuple of int
        Feature multipliers per resolution level (each level halves the grid, not the leads).
    emb_dim : int
        Size of the noise/calendar embedding.
    n_calendar : int
        Number of calendar features.
    first_guess : bool
        Also take ``cond["first_guess"]`` ``(B or 1, channel, lead, y, x)`` as input.
    """

    def __init__(
        self,
        channels: int,
        horizon: int,
        context: int,
        *,
        base: int = 8,
        mults: tuple[int, ...] = (1, 2, 4),
        emb_dim: int = 64,
        n_calendar: int = 4,
        first_guess: bool = False,
    ) -> None:
        super().__init__()
        self.channels, self.horizon, self.context = channels, horizon, context
        widths = [base * m for m in mults]
        self.embed = ConditionEmbedding(emb_dim, n_calendar)
        self.in_x = nn.Conv3d(channels, widths[0], (1, 3, 3), padding=(0, 1, 1), bias=False)
        self.in_ctx = nn.Conv2d(channels * context + 2, widths[0], 3, padding=1)
        self.lead_embedding = nn.Parameter(torch.zeros(widths[0], horizon, 1, 1))
        self.in_guess = (
            nn.Conv3d(channels, widths[0], (1, 3, 3), padding=(0, 1, 1), bias=False)
            if first_guess
            else None
        )
        self.down_blocks = nn.ModuleList()
        self.downs = nn.ModuleList()
        for k, w in enumerate(widths):
            c_in = widths[max(k - 1, 0)]
            self.down_blocks.append(FiLMResBlock(c_in, w, emb_dim, SpaceTimeConv, skip=_pointwise))
            if k < len(widths) - 1:
                self.downs.append(nn.Conv3d(w, w, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)))
        self.mid = FiLMResBlock(widths[-1], widths[-1], emb_dim, SpaceTimeConv, skip=_pointwise)
        self.up_blocks = nn.ModuleList()
        self.ups = nn.ModuleList()
        for k in reversed(range(len(widths) - 1)):
            self.ups.append(nn.Conv3d(widths[k + 1], widths[k], (1, 3, 3), padding=(0, 1, 1)))
            self.up_blocks.append(
                FiLMResBlock(2 * widths[k], widths[k], emb_dim, SpaceTimeConv, skip=_pointwise)
            )
        self.out_norm = nn.GroupNorm(min(8, widths[0]), widths[0])
        self.out = nn.Conv3d(widths[0], channels, (3, 3, 3), padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        # channels-last weights make torch run these thin 3-D convolutions channels-last, about
        # twice as fast on a CPU (loading a state dict keeps the layout)
        for module in self.modules():
            if isinstance(module, nn.Conv3d):
                module.weight.data = module.weight.data.contiguous(
                    memory_format=torch.channels_last_3d
                )

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, cond: dict) -> torch.Tensor:
        """``x``: ``(B, channel, lead, y, x)``; returns the same shape."""
        b, _, _, ny, nx = x.shape
        emb = self.embed(c_noise, cond.get("calendar"))
        if emb.shape[0] != b:
            emb = emb.expand(b, -1)
        context = self.in_ctx(grid_context_input(cond, ny, nx, x.dtype)).unsqueeze(2)  # lead 1
        hcur = self.in_x(x) + context + self.lead_embedding
        if self.in_guess is not None:
            hcur = hcur + self.in_guess(first_guess_input(cond))
        skips = []
        for k, block in enumerate(self.down_blocks):
            hcur = block(hcur, emb)
            if k < len(self.downs):
                skips.append(hcur)
                hcur = self.downs[k](hcur)
        hcur = self.mid(hcur, emb)
        for up, block in zip(self.ups, self.up_blocks, strict=True):
            skip = skips.pop()
            hcur = up(F.interpolate(hcur, size=skip.shape[-3:], mode="nearest"))
            hcur = block(torch.cat([hcur, skip], 1), emb)
        return self.out(F.silu(self.out_norm(hcur))).contiguous()
