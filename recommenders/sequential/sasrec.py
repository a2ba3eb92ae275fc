"""SASRec: causal self-attention over the item sequence."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ConfigError, param
from ..models.base import register
from .base import Dropout, SequentialConfig, SequentialRecommender, init_normal, rand_dropout


class SASRecConfig(SequentialConfig):
    """RecBole 1.2.1 recbole/properties/model/SASRec.yaml."""

    hidden_size: int = param(64, ge=1)
    inner_size: int = param(256, ge=1)
    n_layers: int = param(2, ge=1)
    n_heads: int = param(2, ge=1)
    hidden_dropout_prob: float = param(0.5, ge=0.0, le=1.0)
    attn_dropout_prob: float = param(0.5, ge=0.0, le=1.0)
    hidden_act: str = param("gelu")
    layer_norm_eps: float = param(1e-12, gt=0.0)
    initializer_range: float = param(0.02, gt=0.0)


ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "swish": nn.SiLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}


class _Block(nn.Module):
    """Post-LayerNorm transformer block (RecBole's TransformerLayer): causal multi-head attention, then the
    feed-forward, each with dropout, a residual and a LayerNorm; attention dropout (on the attention
    probabilities) and hidden dropout are separate. Attention is one fused QKV projection and
    ``scaled_dot_product_attention`` (no head transposes through ``nn.MultiheadAttention``)."""

    def __init__(self, d: int, heads: int, inner: int, hidden_dropout: float, attn_dropout: float, act: str,
                 eps: float):
        super().__init__()
        if act not in ACTIVATIONS:
            raise ConfigError(f"SASRec: hidden_act={act!r} is not one of {', '.join(ACTIVATIONS)}")
        self.heads, self.attn_dropout = heads, attn_dropout
        self.qkv, self.out = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.ln1, self.ln2 = nn.LayerNorm(d, eps=eps), nn.LayerNorm(d, eps=eps)
        self.ffn = nn.Sequential(nn.Linear(d, inner), ACTIVATIONS[act](), nn.Linear(inner, d), Dropout(hidden_dropout))
        self.drop = Dropout(hidden_dropout)

    def _heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        return q, k, v

    def _merge(self, a: torch.Tensor) -> torch.Tensor:
        b, h, n, dh = a.shape
        return a.transpose(1, 2).reshape(b, n, h * dh)

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, allowed: torch.Tensor | None) -> torch.Tensor:
        """Softmax attention where ``allowed`` (bool, broadcast to the scores; None: causal) is true. Without
        dropout, the fused ``scaled_dot_product_attention``; with it (training), the same product written out
        so that the probabilities take :func:`rand_dropout`'s mask (SDPA draws its own with the slow
        ``bernoulli_``)."""
        if not self.training or self.attn_dropout == 0.0:
            return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, is_causal=allowed is None)
        if allowed is None:
            allowed = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool, device=q.device).tril()
        scores = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5
        probs = scores.masked_fill(~allowed, float("-inf")).softmax(-1)
        return rand_dropout(probs, self.attn_dropout) @ v

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self._heads(x)
        a = self._merge(self._attend(q, k, v, None))
        x = self.ln1(x + self.drop(self.out(a)))
        return self.ln2(x + self.ffn(x))

    def forward_at(self, x: torch.Tensor, sel: torch.Tensor) -> torch.Tensor:
        """The block's output at the positions ``sel`` (bool [B, L]) only, [P, d] in row-major order: one
        query per selected position over the keys up to it (causal), and the feed-forward on P vectors.
        The last block of an evaluation (one position per history) or of RecBole-style samples needs no more."""
        rows, pos = sel.nonzero(as_tuple=True)
        q, k, v = self._heads(x)
        keep = torch.arange(x.shape[1], device=x.device)[None, :] <= pos[:, None]  # causal for each query
        a = self._attend(q[rows, :, pos][:, :, None], k[rows], v[rows], keep[:, None, None, :])
        y = self.ln1(x[rows, pos] + self.drop(self.out(self._merge(a)[:, 0])))
        return self.ln2(y + self.ffn(y))


@register("SASRec")
class SASRec(SequentialRecommender):
    """Self-attentive sequential recommendation: item (+ position) embeddings, causal transformer blocks,
    the output at the last history position scored against the (tied) item table.

    Item representation: IDs, store features through a projection, or both (``item_repr``, see
    :mod:`.base`). Loss: CE over all items (RecBole's default) or BPR with sampled negatives.

    Reference:
        Paper: Kang & McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018.
        Code: RecBole 1.2.1 ``recbole/model/sequential_recommender/sasrec.py`` (the parity reference);
        the authors' github.com/kang205/SASRec.
    """

    config_class = SASRecConfig

    def __init__(self, data, config: dict):
        super().__init__(data, config)
        d = int(config["hidden_size"])
        if d % int(config["n_heads"]):
            raise ConfigError(f"SASRec: hidden_size={d} is not divisible by n_heads={config['n_heads']}")
        self.items = self.item_table_module(d)
        self.position = nn.Embedding(self.max_len, d)
        self.ln = nn.LayerNorm(d, eps=float(config["layer_norm_eps"]))
        self.drop = Dropout(float(config["hidden_dropout_prob"]))
        self.blocks = nn.ModuleList(_Block(d, int(config["n_heads"]), int(config["inner_size"]),
                                           float(config["hidden_dropout_prob"]), float(config["attn_dropout_prob"]),
                                           config["hidden_act"], float(config["layer_norm_eps"]))
                                    for _ in range(int(config["n_layers"])))
        init_normal(self, float(config["initializer_range"]))

    def _embed(self, inputs: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        x = table[inputs] + self.position.weight[:inputs.shape[1]][None]
        return self.drop(self.ln(x))

    def encode(self, inputs: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        x = self._embed(inputs, table)
        for block in self.blocks:
            x = block(x)
        return x

    def hidden_at(self, inputs: torch.Tensor, sel: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """``encode(...)[sel]``; when under half the positions are selected (evaluation, RecBole-style
        samples), the last block runs at the selected positions only."""
        x = self._embed(inputs, table)
        for block in self.blocks[:-1]:
            x = block(x)
        if 2 * int(sel.sum()) >= sel.numel():
            return self.blocks[-1](x)[sel]
        return self.blocks[-1].forward_at(x, sel)
