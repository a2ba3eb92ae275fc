"""BPR-MF (MMRec src/models/bpr.py protocol)."""
from __future__ import annotations

from torch import nn

from ..config import TrainerConfig, param
from .base import Recommender, bpr_loss, emb_loss, register


class BPRConfig(TrainerConfig):
    """MMRec src/configs/model/BPR.yaml."""

    embedding_size: int = param(64, ge=1)
    reg_weight: float = param(1e-4, ge=0.0, grid=[2.0, 1.0, 1e-01, 1e-02, 1e-03, 1e-04, 1e-05])


@register("BPR")
class BPR(Recommender):
    """Matrix factorization trained with the BPR pairwise loss plus ``reg_weight`` * EmbLoss.

    Reference:
        Paper: Steffen Rendle, Christoph Freudenthaler, Zeno Gantner, Lars Schmidt-Thieme. "BPR: Bayesian
        Personalized Ranking from Implicit Feedback". UAI 2009.
        Code: enoche/MMRec src/models/bpr.py (protocol and defaults followed here).
    """

    config_class = BPRConfig

    def __init__(self, data, config):
        super().__init__(data, config)
        d = self.hp("embedding_size")
        self.reg_weight = float(self.hp("reg_weight"))
        self.user_embedding = nn.Embedding(self.n_users, d)
        self.item_embedding = nn.Embedding(self.n_items, d)
        nn.init.xavier_normal_(self.user_embedding.weight)  # MMRec xavier_normal_initialization
        nn.init.xavier_normal_(self.item_embedding.weight)

    def calculate_loss(self, batch):
        users, pos, neg = batch
        u = self.user_embedding(users)
        p = self.item_embedding(pos)
        n = self.item_embedding(neg)
        loss = bpr_loss((u * p).sum(1), (u * n).sum(1))
        return loss + self.reg_weight * emb_loss(u, p, n)

    def full_sort_predict(self, users):
        return self.user_embedding(users) @ self.item_embedding.weight.T
