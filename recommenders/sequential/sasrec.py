"""SASRec: causal self-attention over the item sequence."""
from __future__ import annotations

import torch
from torch import nn

from ..config import param
from ..models.base import register
from .base import SequentialConfig, SequentialRecommender, init_normal


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


class _Block(nn.Module):
    """Post-LayerNorm transformer block (RecBole's TransformerLayer): attention, then the feed-forward,
    each with dropout, a residual and a LayerNorm; attention and hidden dropout are separate."""

    def __init__(self, d: int, heads: int, inner: int, hidden_dropout: float, attn_dropout: float, act: str,
                 eps: float):
        super().__init__()
        self.attn = nn.MultiheadAttention(d, heads, dropout=attn_dropout, batch_first=True)
        self.ln1, self.ln2 = nn.LayerNorm(d, eps=eps), nn.LayerNorm(d, eps=eps)
        activations = {"gelu": nn.GELU(), "relu": nn.ReLU(), "swish": nn.SiLU(), "tanh": nn.Tanh(),
                       "sigmoid": nn.Sigmoid()}
        if act not in activations:
            from ..config import ConfigError
            raise ConfigError(f"SASRec: hidden_act={act!r} is not one of {', '.join(activations)}")
        self.ffn = nn.Sequential(nn.Linear(d, inner), activations[act], nn.Linear(inner, d), nn.Dropout(hidden_dropout))
        self.drop = nn.Dropout(hidden_dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        a = self.attn(x, x, x, attn_mask=mask, need_weights=False, is_causal=True)[0]
        x = self.ln1(x + self.drop(a))
        return self.ln2(x + self.ffn(x))


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
            from ..config import ConfigError
            raise ConfigError(f"SASRec: hidden_size={d} is not divisible by n_heads={config['n_heads']}")
        self.items = self.item_table_module(d)
        self.position = nn.Embedding(self.max_len, d)
        self.ln = nn.LayerNorm(d, eps=float(config["layer_norm_eps"]))
        self.drop = nn.Dropout(float(config["hidden_dropout_prob"]))
        self.blocks = nn.ModuleList(_Block(d, int(config["n_heads"]), int(config["inner_size"]),
                                           float(config["hidden_dropout_prob"]), float(config["attn_dropout_prob"]),
                                           config["hidden_act"], float(config["layer_norm_eps"]))
                                    for _ in range(int(config["n_layers"])))
        init_normal(self, float(config["initializer_range"]))
        self.register_buffer("causal", torch.triu(torch.full((self.max_len, self.max_len), float("-inf")), 1),
                             persistent=False)

    def encode(self, inputs: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        L = inputs.shape[1]
        x = table[inputs] + self.position.weight[:L][None]
        x = self.drop(self.ln(x))
        mask = self.causal[:L, :L]
        for block in self.blocks:
            x = block(x, mask)
        return x
