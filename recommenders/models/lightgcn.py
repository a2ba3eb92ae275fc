"""LightGCN (He et al., SIGIR 2020), MMRec's src/models/lightgcn.py protocol.

Layer-mean of K propagations over D^-1/2 A D^-1/2; BPR + reg_weight * EmbLoss on the ego embeddings.
"""
from __future__ import annotations

import torch
from torch import nn

from ..config import TrainerConfig, param
from ._graph import sym_spmm, to_csr
from .base import Recommender, bpr_loss, emb_loss, register


class LightGCNConfig(TrainerConfig):
    """MMRec src/configs/model/LightGCN.yaml."""

    embedding_size: int = param(64, ge=1)
    n_layers: int = param(2, ge=0, grid=[1, 2, 3, 4])
    reg_weight: float = param(1e-4, ge=0.0, grid=[1e-02, 1e-03, 1e-04, 1e-05, 1e-06])


@register("LightGCN")
class LightGCN(Recommender):
    """Mean of ``n_layers`` propagations of the ID embeddings over D^-1/2 A D^-1/2.

    Reference:
        Paper: Xiangnan He, Kuan Deng, Xiang Wang, Yan Li, Yongdong Zhang, Meng Wang. "LightGCN: Simplifying
        and Powering Graph Convolution Network for Recommendation". SIGIR 2020.
        Code: enoche/MMRec src/models/lightgcn.py (protocol and defaults followed here).
    """

    config_class = LightGCNConfig

    def __init__(self, data, config):
        super().__init__(data, config)
        d = self.hp("embedding_size")
        self.n_layers = int(self.hp("n_layers"))
        self.reg_weight = float(self.hp("reg_weight"))
        self.user_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_users, d)))
        self.item_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_items, d)))
        self.register_buffer("adj", to_csr(data.norm_adj()), persistent=False)

    def forward(self):
        x = torch.cat([self.user_emb, self.item_emb], 0)
        acc = x
        for _ in range(self.n_layers):
            x = sym_spmm(self.adj, x)
            acc = acc + x
        out = acc / (self.n_layers + 1)
        return out[: self.n_users], out[self.n_users:]

    def calculate_loss(self, batch):
        users, pos, neg = batch
        ue, ie = self.forward()
        # index_select (backward: index_add) is ~3x faster on CPU than advanced indexing (index_put)
        u, p, n = ue.index_select(0, users), ie.index_select(0, pos), ie.index_select(0, neg)
        loss = bpr_loss((u * p).sum(1), (u * n).sum(1))
        return loss + self.reg_weight * emb_loss(self.user_emb.index_select(0, users), self.item_emb.index_select(0, pos),
                                                 self.item_emb.index_select(0, neg))

    def eval_embeddings(self):
        return self.forward()
