"""A spatio-temporal denoiser for sensor networks: graph convolution over the normalized
adjacency and temporal convolution over the horizon, on ``(lead, node)`` feature maps."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from forecast.models.nets.blocks import ConditionEmbedding, FiLMResBlock, first_guess_input


def normalized_adjacency(adj: np.ndarray) -> np.ndarray:
    """Symmetric normalization ``D^-1/2 (A + I) D^-1/2`` (self loops added where missing).

    Examples
    --------
    >>> normalized_adjacency(np.array([[0.0, 1.0], [1.0, 0.0]])).tolist()
    [[0.5, 0.5], [0.5, 0.5]]
    """
    a = np.nan_to_num(np.asarray(adj, dtype=np.float64))
    a = np.maximum(a, a.T)
    np.fill_diagonal(a, np.maximum(np.diag(a), 1.0))
    d = 1 / np.sqrt(a.sum(1))
    return (a * d[:, None] * d[None, :]).astype(np.float32)


class GraphTemporalConv(nn.Module):
    """``conv_t(h) + conv_g(h A)``: a kernel-3 convolution over leads plus one graph hop."""

    def __init__(self, c_in: int, c_out: int, adj: torch.Tensor) -> None:
        super().__init__()
        # transposed normalized adjacency, shared between layers; the model saves it once
        self.register_buffer("adj_t", adj, persistent=False)
        self.temporal = nn.Conv2d(c_in, c_out, (3, 1), padding=(1, 0))
        self.graph = nn.Conv2d(c_in, c_out, 1, bias=False)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.temporal(h) + self.graph(torch.matmul(h, self.adj_t))


class GraphDenoiser(nn.Module):
    """Residual stack of graph + temporal convolution blocks with FiLM conditioning.

    Parameters
    ----------
    channels, horizon, context : int
        Variables, lead steps produced, context steps given.
    adjacency : array (node, node)
        Weighted adjacency of the sensors (normalized here).
    hidden : int
        Feature size per (lead, node).
    blocks : int
        Number of residual blocks (each sees two graph hops).
    emb_dim, n_calendar : int
        Embedding size; number of calendar features.
    first_guess : bool
        Also take ``cond["first_guess"]`` ``(B or 1, channel, lead, node)`` as input (one
        linear map per (lead, node)); off by default (no extra weights).
    """

    def __init__(
        self,
        channels: int,
        horizon: int,
        context: int,
        adjacency: np.ndarray,
        *,
        hidden: int = 32,
        blocks: int = 3,
        emb_dim: int = 64,
        n_calendar: int = 4,
        first_guess: bool = False,
    ) -> None:
        super().__init__()
        self.channels, self.horizon, self.context = channels, horizon, context
        a = torch.from_numpy(normalized_adjacency(adjacency))
        adj_t = a.T.contiguous()
        self.embed = ConditionEmbedding(emb_dim, n_calendar)
        self.in_x = nn.Conv2d(channels, hidden, 1, bias=False)
        self.in_ctx = nn.Linear(channels * context, hidden)
        self.in_guess = nn.Conv2d(channels, hidden, 1, bias=False) if first_guess else None
        self.lead = nn.Parameter(torch.zeros(1, hidden, horizon, 1))
        self.node = nn.Parameter(torch.zeros(1, hidden, 1, a.shape[0]))
        conv = lambda i, o: GraphTemporalConv(i, o, adj_t)  # noqa: E731
        self.blocks = nn.ModuleList(
            FiLMResBlock(hidden, hidden, emb_dim, conv) for _ in range(blocks)
        )
        self.out_norm = nn.GroupNorm(min(8, hidden), hidden)
        self.out = nn.Conv2d(hidden, channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, cond: dict) -> torch.Tensor:
        """``x``: ``(B, channel, lead, node)``; returns the same shape."""
        b = x.shape[0]
        ctx = cond["context"]  # (B or 1, channel, context, node)
        ctx = self.in_ctx(ctx.reshape(ctx.shape[0], -1, ctx.shape[-1]).transpose(1, 2))
        ctx = ctx.transpose(1, 2).unsqueeze(2)  # (B or 1, hidden, 1, node)
        emb = self.embed(c_noise, cond.get("calendar"))
        if emb.shape[0] != b:
            emb = emb.expand(b, -1)
        h = self.in_x(x) + ctx + self.lead + self.node
        if self.in_guess is not None:
            h = h + self.in_guess(first_guess_input(cond))
        for block in self.blocks:
            h = block(h, emb)
        return self.out(torch.nn.functional.silu(self.out_norm(h)))
