"""QIN: adaptive sparse target attention and a quadratic interaction network (2nd place, MMCTR 2025)."""
from __future__ import annotations

import torch
from torch import nn

from ..config import param
from ..models.base import register
from .base import BatchItems, CTRConfig, CTRRecommender


class QINConfig(CTRConfig):
    """QIN's released config (``QIN_variety_v9`` in config/qin_config/model_config.yaml, valid AUC .9701)."""

    embedding_size: int = param(128, ge=1)
    train_batch_size: int = param(8192, ge=1)
    learning_rate: float = param(2e-3, ge=0.0)
    embedding_regularizer: float = param(2e-4, ge=0.0)
    #: quadratic layers
    num_layers: int = param(4, ge=1)
    #: rank R of each quadratic layer (the authors: 3 if 4 is unstable)
    num_row: int = param(4, ge=1)
    net_dropout: float = param(0.1, ge=0.0, lt=1.0)
    batch_norm: bool = param(True)
    #: early_stop_patience 8 in the released config
    stopping_step: int = param(7, ge=0)
    #: reduce-on-plateau factor of the released config
    lr_decay_on_plateau: float | None = param(0.5, gt=0.0, le=1.0)


class SparseTargetAttention(nn.Module):
    """Scaled dot-product target attention with ReLU in place of softmax: history items whose score is not
    positive get exactly zero weight (sparse, unnormalised), so the pooled vector's scale adapts to how
    many items are relevant. ``out = W_o (sum_j relu(q.k_j / sqrt(a)) v_j) + target``."""

    def __init__(self, dim: int, attention_dim: int):
        super().__init__()
        self.q = nn.Linear(dim, attention_dim, bias=False)
        self.kv = nn.Linear(dim, 2 * attention_dim, bias=False)  # keys and values in one matmul
        self.o = nn.Linear(attention_dim, dim, bias=False)
        self.scale = attention_dim ** -0.5

    def reset_kv(self) -> None:
        """Initialise keys and values as the reference's two separate ``Linear(dim, A)`` layers (Xavier-normal
        over ``dim + A`` each), not as one ``dim -> 2A`` layer, whose Xavier scale is smaller
        (``sqrt(2 / (dim + 2A))``; std 0.032 instead of 0.042 at the challenge's sizes)."""
        with torch.no_grad():
            for half in self.kv.weight.chunk(2, dim=0):
                nn.init.xavier_normal_(half)

    def forward(self, items: BatchItems) -> torch.Tensor:
        q = self.q(items.target) * self.scale  # [B, A]
        k, v = self.kv(items.table).chunk(2, dim=-1)  # once per distinct item [U, A]
        scores = torch.einsum("ba,bla->bl", q, k[items.seq_index]) * items.mask
        attended = torch.einsum("bl,bla->ba", torch.relu(scores), v[items.seq_index])
        return self.o(attended) + items.target


class QuadraticLayer(nn.Module):
    """``x * sum_r (W_r x + b_r)``: a rank-R quadratic form of the input, elementwise (Khatri-Rao style)."""

    def __init__(self, dim: int, rank: int, dropout: float):
        super().__init__()
        self.linear = nn.Linear(dim, dim * rank)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.rank = rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.dropout(self.linear(x)).view(x.shape[0], self.rank, -1)
        return x * h.sum(1)


class QuadraticNetwork(nn.Module):
    """Residual stack of quadratic layers, each followed by BatchNorm, PReLU and dropout; a linear readout."""

    def __init__(self, dim: int, layers: int, rank: int, dropout: float, batch_norm: bool):
        super().__init__()
        self.blocks = nn.ModuleList(nn.Sequential(
            QuadraticLayer(dim, rank, dropout), nn.BatchNorm1d(dim) if batch_norm else nn.Identity(), nn.PReLU(),
            nn.Dropout(dropout) if dropout > 0 else nn.Identity()) for _ in range(layers))
        self.fc = nn.Linear(dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x) + x
        return self.fc(x).squeeze(-1)


@register("QIN")
class QIN(CTRRecommender):
    """Quadratic Interest Network: sparse target attention (ReLU-gated scaled dot products) pools the
    history; a quadratic interaction network models feature interactions of ``[fields, target, pooled]``.

    Reference:
        Paper: Li et al., "Quadratic Interest Network for Multimodal Click-Through Rate Prediction",
        WWW 2025 companion (MMCTR challenge, 2nd place).
        Code: salmon1802/QIN ``src/QIN_variety_v9.py`` on FuxiCTR 2.3.7.
    """

    config_class = QINConfig

    def __init__(self, data, config: dict):
        super().__init__(data, config)
        dim = int(config["embedding_size"])
        self.item_dim = self.build_embeddings(dim)
        self.attention = SparseTargetAttention(self.item_dim, 2 * self.item_dim)
        self.qnn = QuadraticNetwork(2 * dim + 2 * self.item_dim, int(config["num_layers"]), int(config["num_row"]),
                                    float(config["net_dropout"]), bool(config["batch_norm"]))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """FuxiCTR's initialisation (:meth:`CTRRecommender.reset_parameters`), with the fused key/value layer
        initialised as the reference's separate layers (:meth:`SparseTargetAttention.reset_kv`)."""
        super().reset_parameters()
        self.attention.reset_kv()

    def logits(self, batch: dict) -> torch.Tensor:
        items = self.batch_items(batch)
        pooled = self.attention(items)
        return self.qnn(torch.cat([self.field_embeddings(batch), items.target, pooled], dim=-1))
