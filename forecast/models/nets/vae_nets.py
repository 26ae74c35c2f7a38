"""Networks of the conditional VAE (``torch.nn.Module`` only, no data handling).

Both networks have the same four parts, so :class:`forecast.models.vae.ConditionalVAE` drives
them alike:

- ``features(context, calendar) -> (feats, emb)``: context features (computed once per issue
  time with batch 1 and broadcast over the members) and the calendar embedding;
- ``prior(feats) -> (mu, log_sigma)``: the learned conditional prior ``p(z | context)``;
- ``posterior(x, feats, emb) -> (mu, log_sigma)``: ``q(z | context, target)``;
- ``decode(z, feats, emb) -> x``: the deterministic decoder mean ``(B, channel, lead, *space)``.

The latent ``z`` is a small feature map: ``(latent_channels, ny / 2^L, nx / 2^L)`` on grids (the
coarsest level of the encoder), ``(latent_channels, node)`` on sensor networks. The residual
blocks (:class:`FiLMResBlock`), the calendar embedding (:class:`ConditionEmbedding`) and the
graph/temporal convolution (:class:`GraphTemporalConv`) are the diffusion networks' blocks;
the calendar enters every block through FiLM (the noise-level input of the embedding gets
zeros).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from forecast.models.nets.blocks import ConditionEmbedding, FiLMResBlock
from forecast.models.nets.graph import GraphTemporalConv, normalized_adjacency


def _conv3(c_in: int, c_out: int) -> nn.Module:
    return nn.Conv2d(c_in, c_out, 3, padding=1)


def _expand(emb: torch.Tensor, b: int) -> torch.Tensor:
    return emb if emb.shape[0] == b else emb.expand(b, -1)


class FlatGraphConv(GraphTemporalConv):
    """:class:`GraphTemporalConv` with the adjacency product done as one matrix product over
    all rows (``(B * C * T, node) @ (node, node)``) instead of a batched one per ``(B, C)``;
    same parameters and result, several times faster on CPU for ``T = 1`` maps."""

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        n = h.shape[-1]
        mixed = torch.matmul(h.reshape(-1, n), self.adj_t).reshape(h.shape)
        return self.temporal(h) + self.graph(mixed)


def _head(c_in: int, latent: int) -> nn.Conv2d:
    """``2 * latent`` outputs (mean, log scale), starting near ``N(0, I)``."""
    head = nn.Conv2d(c_in, 2 * latent, 1)
    nn.init.normal_(head.weight, std=1e-3)
    nn.init.zeros_(head.bias)
    return head


class GridVAENet(nn.Module):
    """Conditional VAE on a grid: leads and variables stacked as channels.

    Parameters
    ----------
    channels, horizon, context : int
        Variables, lead steps produced, context steps given.
    shape : tuple of int
        Grid size ``(ny, nx)`` (a learned location embedding of that size is part of the net).
    base : int
        Channels at full resolution; level ``k`` has ``base * mults[k]``.
    mults : tuple of int
        Channel multipliers per level; each level after the first halves the grid, and the
        latent lives on the last (coarsest) one.
    latent_channels : int
        Latent channels per coarse grid cell.
    emb_dim, n_calendar : int
        Calendar embedding size; number of calendar features.
    loc_channels : int
        Channels of the learned per-cell location embedding (land/sea, orography...).
    """

    def __init__(
        self,
        channels: int,
        horizon: int,
        context: int,
        shape: tuple[int, int],
        *,
        base: int = 16,
        mults: tuple[int, ...] = (1, 2, 4),
        latent_channels: int = 4,
        emb_dim: int = 64,
        n_calendar: int = 4,
        loc_channels: int = 8,
    ) -> None:
        super().__init__()
        self.channels, self.horizon, self.context = channels, horizon, context
        self.shape = (int(shape[0]), int(shape[1]))
        self.latent_channels = latent_channels
        widths = [base * m for m in mults]
        self.widths = widths
        self.embed = ConditionEmbedding(emb_dim, n_calendar)
        self.loc = nn.Parameter(torch.zeros(1, loc_channels, *self.shape))
        # context encoder: one block per level
        self.ctx_in = nn.Conv2d(channels * context + 2 + loc_channels, widths[0], 3, padding=1)
        self.ctx_blocks = nn.ModuleList()
        self.ctx_downs = nn.ModuleList()
        for k, w in enumerate(widths):
            if k > 0:
                self.ctx_downs.append(nn.Conv2d(widths[k - 1], w, 3, stride=2, padding=1))
            self.ctx_blocks.append(FiLMResBlock(w, w, emb_dim, _conv3))
        self.prior_head = _head(widths[-1], latent_channels)
        # posterior encoder: target change at full resolution, down to the latent level
        self.post_in = nn.Conv2d(channels * horizon, widths[0], 3, padding=1)
        self.post_downs = nn.ModuleList(
            nn.Conv2d(widths[k - 1], widths[k], 3, stride=2, padding=1)
            for k in range(1, len(widths))
        )
        self.post_block = FiLMResBlock(widths[-1], widths[-1], emb_dim, _conv3)
        self.post_head = _head(widths[-1], latent_channels)
        # decoder: latent level up to full resolution, context features added at each level
        self.dec_in = nn.Conv2d(latent_channels, widths[-1], 1)
        self.dec_blocks = nn.ModuleList()
        self.dec_ups = nn.ModuleList()
        for k in reversed(range(len(widths))):
            if k < len(widths) - 1:
                self.dec_ups.append(nn.Conv2d(widths[k + 1], widths[k], 3, padding=1))
            self.dec_blocks.append(FiLMResBlock(widths[k], widths[k], emb_dim, _conv3))
        self.out_norm = nn.GroupNorm(min(8, widths[0]), widths[0])
        self.out = nn.Conv2d(widths[0], channels * horizon, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def latent_shape(self) -> tuple[int, ...]:
        """Shape of one latent: ``(latent_channels, ny_coarse, nx_coarse)``."""
        ny, nx = self.shape
        for _ in range(len(self.widths) - 1):
            ny, nx = (ny + 1) // 2, (nx + 1) // 2
        return (self.latent_channels, ny, nx)

    def features(
        self, context: torch.Tensor, calendar: torch.Tensor | None
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Context features per level from ``(B, channel, context, ny, nx)``; and the embedding."""
        b = context.shape[0]
        ny, nx = self.shape
        shape = (b, 1, ny, nx)
        gy = torch.linspace(-1, 1, ny, dtype=context.dtype).reshape(1, 1, ny, 1).expand(shape)
        gx = torch.linspace(-1, 1, nx, dtype=context.dtype).reshape(1, 1, 1, nx).expand(shape)
        emb = self.embed(torch.zeros(b, dtype=context.dtype), calendar)
        h = torch.cat([context.reshape(b, -1, ny, nx), gy, gx, self.loc.expand(b, -1, -1, -1)], 1)
        h = self.ctx_in(h)
        feats = []
        for k, block in enumerate(self.ctx_blocks):
            if k > 0:
                h = self.ctx_downs[k - 1](h)
            h = block(h, emb)
            feats.append(h)
        return feats, emb

    def prior(self, feats: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, log_sigma)`` of ``p(z | context)``, each ``(B, *latent_shape)``."""
        return self.prior_head(feats[-1]).chunk(2, dim=1)

    def posterior(
        self, x: torch.Tensor, feats: list[torch.Tensor], emb: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, log_sigma)`` of ``q(z | context, target)`` from the target change ``x``."""
        b = x.shape[0]
        h = self.post_in(x.reshape(b, -1, *self.shape)) + feats[0]
        for k, down in enumerate(self.post_downs):
            h = down(F.silu(h)) + feats[k + 1]
        h = self.post_block(h, _expand(emb, b))
        return self.post_head(h).chunk(2, dim=1)

    def decode(self, z: torch.Tensor, feats: list[torch.Tensor], emb: torch.Tensor) -> torch.Tensor:
        """Decoder mean ``(B, channel, lead, ny, nx)`` from latents ``(B, *latent_shape)``."""
        b = z.shape[0]
        emb = _expand(emb, b)
        h = self.dec_in(z) + feats[-1]
        ups = iter(self.dec_ups)
        for i, block in enumerate(self.dec_blocks):
            level = len(self.widths) - 1 - i
            if i > 0:
                skip = feats[level]
                h = next(ups)(F.interpolate(h, size=skip.shape[-2:], mode="nearest")) + skip
            h = block(h, emb)
        out = self.out(F.silu(self.out_norm(h)))
        return out.reshape(b, self.channels, self.horizon, *self.shape)


class GraphVAENet(nn.Module):
    """Conditional VAE on a sensor network: one latent vector per sensor, graph convolutions.

    Every block works on one feature vector per sensor (``(B, hidden, 1, node)`` maps: the
    graph convolution mixes neighbours, the temporal kernel sees a single step); the decoder
    reads all leads out of each sensor's final features at once (leads as channels, as on
    grids). Doing the graph mixing before expanding over leads keeps the dense adjacency
    product ``horizon`` times cheaper than on ``(lead, node)`` maps.

    Parameters
    ----------
    channels, horizon, context : int
        Variables, lead steps produced, context steps given.
    adjacency : array (node, node)
        Weighted adjacency (normalized here with self loops).
    hidden : int
        Features per (lead, node).
    blocks : int
        Residual graph-convolution blocks of the decoder (the context encoder has ``blocks``
        too).
    latent_channels : int
        Latent size per sensor.
    emb_dim, n_calendar : int
        Calendar embedding size; number of calendar features.
    """

    def __init__(
        self,
        channels: int,
        horizon: int,
        context: int,
        adjacency: np.ndarray,
        *,
        hidden: int = 32,
        blocks: int = 2,
        latent_channels: int = 4,
        emb_dim: int = 64,
        n_calendar: int = 4,
    ) -> None:
        super().__init__()
        self.channels, self.horizon, self.context = channels, horizon, context
        self.latent_channels = latent_channels
        a = torch.from_numpy(normalized_adjacency(adjacency))
        self.n_nodes = int(a.shape[0])
        adj_t = a.T.contiguous()
        conv = lambda i, o: FlatGraphConv(i, o, adj_t)  # noqa: E731
        self.embed = ConditionEmbedding(emb_dim, n_calendar)
        self.node = nn.Parameter(torch.zeros(1, hidden, 1, self.n_nodes))
        self.ctx_in = nn.Linear(channels * context, hidden)
        self.ctx_blocks = nn.ModuleList(
            FiLMResBlock(hidden, hidden, emb_dim, conv) for _ in range(blocks)
        )
        self.prior_head = _head(hidden, latent_channels)
        self.post_in = nn.Linear(channels * horizon, hidden)
        self.post_block = FiLMResBlock(hidden, hidden, emb_dim, conv)
        self.post_head = _head(hidden, latent_channels)
        self.dec_in = nn.Conv2d(latent_channels, hidden, 1)
        self.dec_blocks = nn.ModuleList(
            FiLMResBlock(hidden, hidden, emb_dim, conv) for _ in range(blocks)
        )
        self.out_norm = nn.GroupNorm(min(8, hidden), hidden)
        self.out = nn.Conv2d(hidden, channels * horizon, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def latent_shape(self) -> tuple[int, ...]:
        """Shape of one latent: ``(latent_channels, node)``."""
        return (self.latent_channels, self.n_nodes)

    @staticmethod
    def _per_node(x: torch.Tensor, linear: nn.Linear) -> torch.Tensor:
        """``(B, C, T, node)`` -> ``(B, hidden, 1, node)`` by a linear map of each node's C*T."""
        b, n = x.shape[0], x.shape[-1]
        return linear(x.reshape(b, -1, n).transpose(1, 2)).transpose(1, 2).unsqueeze(2)

    def features(
        self, context: torch.Tensor, calendar: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-node context features ``(B, hidden, 1, node)`` and the calendar embedding."""
        b = context.shape[0]
        emb = self.embed(torch.zeros(b, dtype=context.dtype), calendar)
        h = self._per_node(context, self.ctx_in) + self.node
        for block in self.ctx_blocks:
            h = block(h, emb)
        return h, emb

    def prior(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, log_sigma)`` of ``p(z | context)``, each ``(B, latent_channels, node)``."""
        mu, log_sigma = self.prior_head(feats).squeeze(2).chunk(2, dim=1)
        return mu, log_sigma

    def posterior(
        self, x: torch.Tensor, feats: torch.Tensor, emb: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, log_sigma)`` of ``q(z | context, target)`` from the target change ``x``."""
        b = x.shape[0]
        h = self.post_block(self._per_node(x, self.post_in) + feats, _expand(emb, b))
        return self.post_head(h).squeeze(2).chunk(2, dim=1)

    def decode(self, z: torch.Tensor, feats: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """Decoder mean ``(B, channel, lead, node)`` from latents ``(B, latent_channels, node)``."""
        b = z.shape[0]
        emb = _expand(emb, b)
        h = self.dec_in(z.unsqueeze(2)) + feats
        for block in self.dec_blocks:
            h = block(h, emb)
        out = self.out(F.silu(self.out_norm(h)))  # (B, channel * lead, 1, node)
        return out.reshape(b, self.channels, self.horizon, self.n_nodes)
