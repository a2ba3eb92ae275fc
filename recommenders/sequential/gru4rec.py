"""GRU4Rec: a recurrent encoder of the item sequence."""
from __future__ import annotations

import torch
from torch import nn

from ..config import param
from ..models.base import register
from .base import Dropout, SequentialConfig, SequentialRecommender


class GRU4RecConfig(SequentialConfig):
    """RecBole 1.2.1 recbole/properties/model/GRU4Rec.yaml."""

    embedding_size: int = param(64, ge=1)
    hidden_size: int = param(128, ge=1)
    num_layers: int = param(1, ge=1)
    dropout_prob: float = param(0.3, ge=0.0, le=1.0)
    #: a GRU steps through time once per call: fewer, larger evaluation batches are faster (unlike SASRec)
    eval_batch_size: int = param(4096, ge=1)
    #: the same for training: every piece of a batch steps through all its positions again, and a GRU keeps
    #: little per token (no attention matrix), so a batch runs in one piece up to RecBole's 2,048 x 50
    #: tokens (SASRec's 4,096 bounds its attention memory; docs/benchmarks.md, batch pieces)
    max_tokens_per_forward: int = param(131072, ge=1)


@register("GRU4Rec")
class GRU4Rec(SequentialRecommender):
    """Session-based recommendation with recurrent networks: embedding dropout, a GRU, a dense layer back
    to the embedding size, scored against the (tied) item table at the last history position.

    Padding sits after the real items (left-aligned windows), so the GRU's outputs at real positions never
    see it; no packing is needed.

    Reference:
        Paper: Hidasi et al., "Session-based Recommendations with Recurrent Neural Networks", ICLR 2016; Tan et al.,
        "Improved Recurrent Neural Networks for Session-based Recommendations", DLRS 2016.
        Code: RecBole 1.2.1 ``recbole/model/sequential_recommender/gru4rec.py`` (the parity reference).
    """

    config_class = GRU4RecConfig

    def __init__(self, data, config: dict):
        super().__init__(data, config)
        e, h = int(config["embedding_size"]), int(config["hidden_size"])
        self.items = self.item_table_module(e)
        self.drop = Dropout(float(config["dropout_prob"]))
        self.gru = nn.GRU(e, h, num_layers=int(config["num_layers"]), bias=False, batch_first=True)
        self.dense = nn.Linear(h, e)
        # RecBole: xavier_normal_ embeddings, xavier_uniform_ GRU weights
        if self.items.id_embedding is not None:
            nn.init.xavier_normal_(self.items.id_embedding.weight)
        for name, w in self.gru.named_parameters():
            if "weight" in name:
                nn.init.xavier_uniform_(w)

    def encode(self, inputs: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        out, _ = self.gru(self.drop(table[inputs]))
        return self.dense(out)

    def hidden_at(self, inputs: torch.Tensor, sel: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """``encode(...)[sel]`` with the dense layer applied at the selected positions only."""
        out, _ = self.gru(self.drop(table[inputs]))
        return self.dense(out[sel])
