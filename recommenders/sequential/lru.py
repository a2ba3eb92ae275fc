"""Layers of the fMRLRec-style encoder: Matryoshka ("full-scale") linear and LayerNorm layers and the
linear recurrent unit (LRU).

Matryoshka structure: the hidden vector is cut into nested prefixes at ``sizes`` (8, 16, ..., D). Every
layer keeps output prefix ``[:s]`` a function of input prefix ``[:s]`` alone: the linear layers' weights
are block lower-triangular (a fixed mask on one dense weight, one matmul), LayerNorm normalises each
chunk ``[s_{i-1}:s_i]`` on its own, and the LRU is diagonal. So the first ``s`` dimensions of the full
network *are* the size-``s`` model, and one training gives a model at every size.

LRU (Orvieto et al. 2023), causal: ``h_t = lambda * h_{t-1} + gamma * B x_t``, ``y_t = Re(C h_t)`` with a
diagonal complex ``lambda = exp(-exp(nu_log) + i exp(theta_log))`` initialised on the ring
``r_min <= |lambda| <= r_max`` with phase in [0, 2 pi), and ``gamma = sqrt(1 - |lambda|^2)``. ``B`` and ``C``
are real here (the reference casts real weights to complex, so their imaginary parts never train), hence
``Re(C h_t) = C Re(h_t)`` and ``Re(h_t) = sum_{s<=t} |lambda|^(t-s) cos((t-s) theta) (gamma B x)_s``: a causal
convolution with a [L, L, D] Toeplitz kernel, computed in one einsum (the histories are short, L <= 64).
"""
from __future__ import annotations

import math

import torch
from torch import nn


def chunk_ids(sizes: list[int]) -> torch.Tensor:
    """long [D]: the chunk of every dimension (chunk i = ``[sizes[i-1], sizes[i])``)."""
    bounds = [0, *sizes]
    return torch.cat([torch.full((b - a,), i, dtype=torch.long) for i, (a, b) in enumerate(zip(bounds, bounds[1:]))])


class MRLLinear(nn.Linear):
    """A D x D linear layer whose output prefix [:s] reads only input prefix [:s] for every size s."""

    def __init__(self, sizes: list[int], bias: bool = True):
        d = sizes[-1]
        super().__init__(d, d, bias=bias)
        ids = chunk_ids(sizes)
        limit = torch.tensor(sizes)[ids]  # output o reads inputs < sizes[chunk(o)]
        self.register_buffer("mask", (torch.arange(d)[None, :] < limit[:, None]).float(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.weight * self.mask, self.bias)


class MRLLayerNorm(nn.Module):
    """LayerNorm over each chunk separately (with one elementwise affine, which is the chunks' affines)."""

    def __init__(self, sizes: list[int], eps: float = 1e-5):
        super().__init__()
        d, self.eps = sizes[-1], eps
        onehot = nn.functional.one_hot(chunk_ids(sizes), len(sizes)).float()  # [D, C]
        self.register_buffer("onehot", onehot, persistent=False)
        self.register_buffer("count", onehot.sum(0), persistent=False)
        self.weight, self.bias = nn.Parameter(torch.ones(d)), nn.Parameter(torch.zeros(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = (x @ self.onehot / self.count) @ self.onehot.T
        var = ((x - mean) ** 2 @ self.onehot / self.count) @ self.onehot.T
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias


class LRULayer(nn.Module):
    """The linear recurrent unit (module doc), Matryoshka input/output projections, dropout on the output."""

    def __init__(self, sizes: list[int], r_min: float, r_max: float, dropout: float):
        super().__init__()
        d = sizes[-1]
        u1, u2 = torch.rand(d), torch.rand(d)
        nu_log = torch.log(-0.5 * torch.log(u1 * (r_max ** 2 - r_min ** 2) + r_min ** 2))
        theta_log = torch.log(2 * math.pi * u2)
        modulus = torch.exp(-torch.exp(nu_log))
        self.nu_log, self.theta_log = nn.Parameter(nu_log), nn.Parameter(theta_log)
        self.gamma_log = nn.Parameter(torch.log(torch.sqrt(1 - modulus ** 2)))
        self.in_proj, self.out_proj = MRLLinear(sizes), MRLLinear(sizes)
        self.drop = nn.Dropout(dropout)

    def kernel(self, length: int) -> torch.Tensor:
        """[L, L, D]: Re(lambda^(t-s)) for s <= t, else 0."""
        lag = torch.arange(length, device=self.nu_log.device)
        k = lag[:, None, None] - lag[None, :, None]  # t - s
        r = torch.exp(-torch.exp(self.nu_log))
        theta = torch.exp(self.theta_log)
        kf = k.clamp_min(0).float()
        return torch.where(k >= 0, r ** kf * torch.cos(kf * theta), torch.zeros((), device=r.device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.in_proj(x) * torch.exp(self.gamma_log)
        h = torch.einsum("tsd,bsd->btd", self.kernel(x.shape[1]), u)
        return self.drop(self.out_proj(h))


class LRUBlock(nn.Module):
    """Pre-LayerNorm block: ``h = x + LRU(LN(x))``, ``out = h + FFN(LN(h))`` with a gated-SiLU FFN of
    Matryoshka layers (no expansion)."""

    def __init__(self, sizes: list[int], r_min: float, r_max: float, dropout: float, attn_dropout: float):
        super().__init__()
        self.ln1, self.ln2 = MRLLayerNorm(sizes), MRLLayerNorm(sizes)
        self.lru = LRULayer(sizes, r_min, r_max, attn_dropout)
        self.w1, self.wg, self.w2 = MRLLinear(sizes), MRLLinear(sizes), MRLLinear(sizes)
        self.drop1, self.drop2 = nn.Dropout(dropout), nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x + self.lru(self.ln1(x))
        y = self.ln2(h)
        return h + self.drop2(self.w2(nn.functional.silu(self.wg(y)) * self.drop1(self.w1(y))))
