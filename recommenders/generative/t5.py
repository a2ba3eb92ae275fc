"""T5's transformer stack, as TIGER uses it: relative position bias, RMS layer norms, no attention scaling.

TIGER (Rajput et al. 2023) is a T5 encoder-decoder; snap-research/GRID builds it from ``transformers``' T5 blocks.
This module is the same computation written for generative retrieval's shapes, so that decoding can cache what
T5's generic code recomputes (tests/test_t5.py checks it against ``transformers``' T5 on the same weights):

* **Relative position bias** (Raffel et al. 2020): a learned scalar per head and bucket of the key-query
  distance (32 buckets, exact up to 8 then logarithmic up to 128), computed by the first layer and added to the
  attention logits of every layer. Bidirectional in the encoder, causal in the decoder; cross-attention has none.
* **Pre-norm residual blocks** with T5's RMS norm (no mean, no bias), a final norm after the last block,
  ReLU feed-forward, dropout on the embeddings, the attention probabilities, each sub-layer's output and the
  final states, and attention logits ``q . k`` without the ``1/sqrt(d)`` scaling (T5 folds it into the init).
* **Incremental decoding** (:meth:`T5Stack.step`): the decoder's self-attention keys and values of the prefix
  are cached per beam, and cross-attention reads the encoder's keys and values once per *user*: every beam of a
  user is a query row of one attention call against that user's memory (the same numbers as repeating the
  memory per beam, without the copies).

Initialisation is PyTorch's default for every Linear and Embedding, as GRID resets T5's own init.
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ..sequential.base import Dropout, rand_dropout

#: T5's defaults (``relative_attention_num_buckets``, ``relative_attention_max_distance``)
BUCKETS, MAX_DISTANCE = 32, 128
#: T5's ``layer_norm_epsilon``
NORM_EPS = 1e-6


def relative_position_bucket(relative: torch.Tensor, bidirectional: bool, buckets: int = BUCKETS,
                             max_distance: int = MAX_DISTANCE) -> torch.Tensor:
    """T5's bucket of each ``key - query`` distance: exact below ``buckets / 2`` (per direction when
    bidirectional), logarithmically wider up to ``max_distance``, the last bucket beyond.

    Example:
        >>> relative_position_bucket(torch.tensor([-200, -3, 0, 3, 200]), bidirectional=True).tolist()
        [15, 3, 0, 19, 31]
    """
    out = torch.zeros_like(relative)
    if bidirectional:
        buckets //= 2
        out = out + (relative > 0).long() * buckets
        relative = relative.abs()
    else:
        relative = -torch.clamp(relative, max=0)
    exact = buckets // 2
    large = exact + (torch.log(relative.float().clamp(min=1) / exact) / math.log(max_distance / exact)
                     * (buckets - exact)).long()
    return out + torch.where(relative < exact, relative, large.clamp(max=buckets - 1))


class RelativePositionBias(nn.Module):
    """Learned bias [1, heads, queries, keys] of the bucketed key-query distance."""

    def __init__(self, heads: int, bidirectional: bool):
        super().__init__()
        self.bidirectional = bidirectional
        self.embedding = nn.Embedding(BUCKETS, heads)

    def forward(self, queries: int, keys: int, first_query: int = 0) -> torch.Tensor:
        device = self.embedding.weight.device
        q = torch.arange(first_query, first_query + queries, device=device)[:, None]
        k = torch.arange(keys, device=device)[None, :]
        return self.embedding(relative_position_bucket(k - q, self.bidirectional)).permute(2, 0, 1)[None]


class Attention(nn.Module):
    """T5's multi-head attention: bias-free projections of ``heads x head_size``, unscaled logits."""

    def __init__(self, d: int, heads: int, head_size: int, dropout: float):
        super().__init__()
        self.heads, self.head_size, self.p = heads, head_size, dropout
        inner = heads * head_size
        self.q, self.k, self.v = (nn.Linear(d, inner, bias=False) for _ in range(3))
        self.o = nn.Linear(inner, d, bias=False)

    def split(self, x: torch.Tensor, proj: nn.Linear) -> torch.Tensor:
        """[N, T, d] -> [N, heads, T, head_size]."""
        return proj(x).view(x.shape[0], x.shape[1], self.heads, self.head_size).transpose(1, 2)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """Softmax(q k^T + bias) v over [.., heads, T, head_size] tensors, merged to [N, T, heads x head_size].

        Training writes the attention out so that its probabilities take :func:`rand_dropout`'s mask (the
        fused kernel draws its own with ``bernoulli_``, which took 30% of a training step); evaluation uses
        the fused kernel."""
        if self.training:
            scores = (q @ k.transpose(-1, -2)).float()
            if bias is not None:
                scores = scores + bias
            out = rand_dropout(scores.softmax(-1), self.p).to(v.dtype) @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=None if bias is None else bias.to(q.dtype),
                                                 scale=1.0)
        return self.o(out.transpose(1, 2).reshape(q.shape[0], q.shape[2], -1))


class FeedForward(nn.Module):
    """T5's dense ReLU feed-forward (``wi``, dropout, ``wo``; no biases)."""

    def __init__(self, d: int, inner: int, dropout: float):
        super().__init__()
        self.wi, self.wo = nn.Linear(d, inner, bias=False), nn.Linear(inner, d, bias=False)
        self.dropout = Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.wo(self.dropout(F.relu(self.wi(x))))


class Block(nn.Module):
    """Self-attention, cross-attention (decoder only) and feed-forward, each ``x + dropout(f(norm(x)))``."""

    def __init__(self, d: int, heads: int, head_size: int, inner: int, dropout: float, cross: bool):
        super().__init__()
        self.self_norm, self.self_attn = nn.RMSNorm(d, eps=NORM_EPS), Attention(d, heads, head_size, dropout)
        self.cross_norm = nn.RMSNorm(d, eps=NORM_EPS) if cross else None
        self.cross_attn = Attention(d, heads, head_size, dropout) if cross else None
        self.ff_norm, self.ff = nn.RMSNorm(d, eps=NORM_EPS), FeedForward(d, inner, dropout)
        self.dropout = Dropout(dropout)


class T5Stack(nn.Module):
    """A T5 encoder (``cross=False``: bidirectional) or decoder (``cross=True``: causal, attends to a memory).

    Args:
        d: model width (``d_model``).
        heads: attention heads.
        head_size: width of each head (``d_kv``; T5 does not tie it to ``d / heads``).
        inner: feed-forward width (``d_ff``).
        layers: blocks.
        dropout: T5's ``dropout_rate`` (every dropout of the stack).
        cross: a decoder (causal self-attention, then cross-attention to the encoder's output).

    Example:
        >>> enc = T5Stack(16, 2, 8, 32, 1, 0.0, cross=False)
        >>> enc(torch.zeros(3, 5, 16), pad=torch.zeros(3, 5, dtype=torch.bool)).shape
        torch.Size([3, 5, 16])
    """

    def __init__(self, d: int, heads: int, head_size: int, inner: int, layers: int, dropout: float, cross: bool):
        super().__init__()
        self.cross = cross
        self.position = RelativePositionBias(heads, bidirectional=not cross)
        self.blocks = nn.ModuleList(Block(d, heads, head_size, inner, dropout, cross) for _ in range(layers))
        self.final_norm = nn.RMSNorm(d, eps=NORM_EPS)
        self.dropout = Dropout(dropout)

    def forward(self, x: torch.Tensor, pad: torch.Tensor | None = None, memory: torch.Tensor | None = None,
                memory_pad: torch.Tensor | None = None) -> torch.Tensor:
        """States [N, T, d] of the embedded tokens ``x`` [N, T, d].

        ``pad`` (bool [N, T], True = padding) masks keys of the encoder; the decoder is causal and attends to
        ``memory`` [N, S, d] except where ``memory_pad`` [N, S] is True.
        """
        n, t = x.shape[:2]
        bias = self.position(t, t)
        if self.cross:
            bias = bias.masked_fill(torch.ones(t, t, dtype=torch.bool, device=x.device).triu(1), -torch.inf)
        elif pad is not None:
            bias = bias.masked_fill(pad[:, None, None, :], -torch.inf)
        cross_bias = None if memory_pad is None else torch.zeros(
            memory_pad.shape, device=x.device).masked_fill(memory_pad, -torch.inf)[:, None, None, :]
        h = self.dropout(x)
        for blk in self.blocks:
            a = blk.self_attn
            y = blk.self_norm(h)
            h = h + blk.dropout(a.attend(a.split(y, a.q), a.split(y, a.k), a.split(y, a.v), bias))
            if self.cross:
                c = blk.cross_attn
                y = blk.cross_norm(h)
                h = h + blk.dropout(c.attend(c.split(y, c.q), c.split(memory, c.k), c.split(memory, c.v), cross_bias))
            h = h + blk.dropout(blk.ff(blk.ff_norm(h)))
        return self.dropout(self.final_norm(h))

    @torch.no_grad()
    def load_transformers_state(self, state: Mapping[str, torch.Tensor], prefix: str = "") -> None:
        """Copy the weights of a ``transformers`` T5 stack (its ``state_dict`` names under ``prefix``).

        The two stacks compute the same function on the same weights (tests/test_t5.py); this is how a
        checkpoint of a T5-based reference (snap-research/GRID's TIGER) is read into ours.

        Args:
            state: a state dict holding ``{prefix}block.{i}.layer.{j}...`` and ``{prefix}final_layer_norm.weight``.
            prefix: the stack's name in ``state`` (e.g. ``"decoder.decoder."``).

        Raises:
            KeyError: a tensor this stack needs is missing from ``state``.
            RuntimeError: a tensor's shape differs from ours.
        """
        g = lambda name: state[prefix + name]  # noqa: E731
        self.position.embedding.weight.copy_(g("block.0.layer.0.SelfAttention.relative_attention_bias.weight"))
        self.final_norm.weight.copy_(g("final_layer_norm.weight"))
        for i, blk in enumerate(self.blocks):
            layer = f"block.{i}.layer."
            parts = [(blk.self_attn, blk.self_norm, "0.SelfAttention.", "0.layer_norm.weight")]
            if self.cross:
                parts.append((blk.cross_attn, blk.cross_norm, "1.EncDecAttention.", "1.layer_norm.weight"))
            for attn, norm, name, norm_name in parts:
                for w in "qkvo":
                    getattr(attn, w).weight.copy_(g(layer + name + w + ".weight"))
                norm.weight.copy_(g(layer + norm_name))
            ff = layer + ("2." if self.cross else "1.")
            blk.ff.wi.weight.copy_(g(ff + "DenseReluDense.wi.weight"))
            blk.ff.wo.weight.copy_(g(ff + "DenseReluDense.wo.weight"))
            blk.ff_norm.weight.copy_(g(ff + "layer_norm.weight"))

    # ------------------------------------------------------------------ incremental decoding
    def memory_kv(self, memory: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Each decoder block's cross-attention keys and values [B, heads, S, head_size] of ``memory`` [B, S, d]
        (once per user, whatever the beam width)."""
        return [(b.cross_attn.split(memory, b.cross_attn.k), b.cross_attn.split(memory, b.cross_attn.v))
                for b in self.blocks]

    def step(self, x: torch.Tensor, position: int, cache: list[tuple[torch.Tensor, torch.Tensor]] | None,
             memory_kv: list[tuple[torch.Tensor, torch.Tensor]], memory_pad: torch.Tensor,
             ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """The decoder state [B * W, d] of one new token per beam, and the grown self-attention cache.

        Args:
            x: the new tokens' embeddings [B * W, d] (row-major: user, then beam).
            position: the new token's position (0 = the start token).
            cache: per block, the self-attention keys and values [B * W, heads, position, head_size] of the
                beams' earlier tokens (already reordered to the beams' parents), or None at position 0.
            memory_kv: :meth:`memory_kv` of the B users' encoder states.
            memory_pad: bool [B, S], True = padding.

        Returns:
            ``(state [B * W, d], cache with this token appended)``.

        Raises:
            RuntimeError: the stack is in training mode (decoding applies no dropout: call ``eval()`` first).
        """
        if self.training:
            raise RuntimeError("T5Stack.step decodes without dropout: put the model in eval mode first")
        users = memory_pad.shape[0]
        width = x.shape[0] // users
        bias = self.position(1, position + 1, first_query=position)
        cross_bias = torch.zeros(memory_pad.shape, device=x.device).masked_fill(memory_pad, -torch.inf)[:, None, None]
        h, grown = x[:, None], []
        for i, blk in enumerate(self.blocks):
            a = blk.self_attn
            y = blk.self_norm(h)
            k, v = a.split(y, a.k), a.split(y, a.v)
            if cache is not None:
                k, v = torch.cat([cache[i][0], k], 2), torch.cat([cache[i][1], v], 2)
            grown.append((k, v))
            h = h + a.attend(a.split(y, a.q), k, v, bias)
            c = blk.cross_attn
            q = c.split(blk.cross_norm(h), c.q)  # [B * W, heads, 1, hs] -> the W beams as query rows of one user
            q = q.view(users, width, c.heads, c.head_size).transpose(1, 2)
            out = F.scaled_dot_product_attention(q, *memory_kv[i], attn_mask=cross_bias.to(q.dtype), scale=1.0)
            h = h + c.o(out.transpose(1, 2).reshape(users * width, 1, -1))
            h = h + blk.ff(blk.ff_norm(h))
        return self.final_norm(h)[:, 0], grown
