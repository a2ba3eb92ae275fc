"""FREEDOM (Zhou & Shen, "A Tale of Two Graphs: Freezing and Denoising Graph Structures for
Multimodal Recommendation", MM 2023), following MMRec's src/models/freedom.py protocol.

* Frozen item-item graph: per modality a kNN (k = ``knn_k``) cosine graph of the raw item features,
  normalized; mixed as ``mm_image_weight * image + (1 - mm_image_weight) * text``. Cached by feature
  content + k (see ``_graph.knn_normalized_graph``).
* Denoised user-item graph: each epoch (``pre_epoch``) keep ``(1 - dropout)`` of the training edges,
  sampled without replacement with probability proportional to 1/sqrt(d_u d_i) (degree-sensitive
  pruning), re-normalized. Evaluation uses the full normalized graph.
* Item representation = LightGCN-mean(user-item graph) + ``n_mm_layers`` item-item propagations of the
  ID embeddings; loss = BPR(ID) + reg_weight * (BPR(text proj) + BPR(image proj)).
"""
from __future__ import annotations

import logging

import torch
from torch import nn

from ._graph import attach_freedom_graphs, spmm, sym_spmm
from ..config import param
from .base import (MULTIMODAL_ROLES, MultimodalConfig, Recommender, bpr_logsigmoid, distinct_ids, pair_margin,
                   register)

log = logging.getLogger(__name__)


class FREEDOMConfig(MultimodalConfig):
    """MMRec src/configs/model/FREEDOM.yaml."""

    embedding_size: int = param(64, ge=1)
    feat_embed_dim: int = param(64, ge=1)  # must equal embedding_size
    knn_k: int = param(10, ge=1)
    n_mm_layers: int = param(1, ge=0)
    n_ui_layers: int = param(2, ge=0)
    mm_image_weight: float = param(0.1, ge=0.0, le=1.0)
    dropout: float = param(0.8, ge=0.0, lt=1.0, grid=[0.8, 0.9])  # share of user-item edges pruned per epoch
    reg_weight: float = param(1e-4, ge=0.0, grid=[0.0, 1e-05, 1e-04, 1e-03])
    graph_cache_dir: str | None = param(None)  # where frozen kNN graphs are kept across processes


@register("FREEDOM")
class FREEDOM(Recommender):
    """Frozen multimodal item-item kNN graph + degree-pruned user-item graph (see the module docstring).

    Reference:
        Paper: Xin Zhou, Zhiqi Shen. "A Tale of Two Graphs: Freezing and Denoising Graph Structures for
        Multimodal Recommendation". ACM Multimedia (MM) 2023.
        Code: enoche/MMRec src/models/freedom.py (protocol and defaults followed here; also enoche/FREEDOM).
    """

    modality_roles = MULTIMODAL_ROLES
    config_class = FREEDOMConfig

    def __init__(self, data, config):
        super().__init__(data, config)
        d = self.hp("embedding_size")
        fd = self.hp("feat_embed_dim")
        if fd != d:
            raise ValueError(f"FREEDOM: feat_embed_dim ({fd}) must equal embedding_size ({d}); "
                             "the projected features are scored against user embeddings")
        self.knn_k = int(self.hp("knn_k"))
        self.n_mm_layers = int(self.hp("n_mm_layers"))
        self.n_ui_layers = int(self.hp("n_ui_layers"))
        self.mm_image_weight = float(self.hp("mm_image_weight"))
        self.dropout = float(self.hp("dropout"))
        self.reg_weight = float(self.hp("reg_weight"))

        self.user_embedding = nn.Embedding(self.n_users, d)
        self.item_id_embedding = nn.Embedding(self.n_items, d)
        nn.init.xavier_uniform_(self.user_embedding.weight)
        nn.init.xavier_uniform_(self.item_id_embedding.weight)

        feats = {}
        for role in ("image", "text"):
            name = self.hp(f"{role}_feature")
            if name is not None and name in data.item_features:
                feats[role] = torch.from_numpy(data.item_features[name])
            elif name is not None:
                log.warning("FREEDOM: feature %r (%s) not in data; modality unused", name, role)
        if not feats:
            raise ValueError(f"FREEDOM needs at least one of the item features "
                             f"{self.hp('image_feature')!r}/{self.hp('text_feature')!r}; "
                             f"data has {sorted(data.item_features)}")
        self.has_image, self.has_text = "image" in feats, "text" in feats
        if self.has_image:  # MMRec: the raw features are trainable (from_pretrained(freeze=False))
            self.image_embedding = nn.Embedding.from_pretrained(feats["image"].clone(), freeze=False)
            self.image_trs = nn.Linear(feats["image"].shape[1], fd)
        if self.has_text:
            self.text_embedding = nn.Embedding.from_pretrained(feats["text"].clone(), freeze=False)
            self.text_trs = nn.Linear(feats["text"].shape[1], fd)

        attach_freedom_graphs(self, data, feats, self.knn_k, self.mm_image_weight, self.hp("graph_cache_dir"),
                              self.dropout)
        self.subset_frac = 0.6  # project only the batch's distinct items when they are <= 60% of all

    def pre_epoch(self):
        """Degree-sensitive edge pruning, re-sampled every epoch."""
        if self.dropout <= 0.0:
            self.masked_adj = self.norm_adj
            return
        self.masked_adj = self._pruning.sample().to(self.norm_adj.device)

    def forward(self, adj):
        h = self.item_id_embedding.weight
        for _ in range(self.n_mm_layers):
            h = spmm(self.mm_adj, h, self.mm_adj_t)
        x = torch.cat([self.user_embedding.weight, self.item_id_embedding.weight], 0)
        acc = x
        for _ in range(self.n_ui_layers):
            x = sym_spmm(adj, x)  # norm/masked adj are symmetric
            acc = acc + x
        out = acc / (self.n_ui_layers + 1)
        return out[: self.n_users], out[self.n_users:] + h

    def calculate_loss(self, batch):
        users, pos, neg = batch
        ue, ie = self.forward(self.masked_adj)
        # index_select (backward: index_add) is ~3x faster on CPU than advanced indexing (index_put)
        u = ue.index_select(0, users)
        loss = bpr_logsigmoid(pair_margin(u, ie, pos, neg))
        aux = 0.0
        if self.has_text or self.has_image:
            # MMRec projects every item's raw feature, then gathers the batch rows. When the batch touches
            # few distinct items (large catalogues), projecting only those gives the same scores and
            # gradients (rows outside the batch get zero gradient either way) at a fraction of the GEMMs.
            n = pos.shape[0]
            subset = False
            if n < self.n_items:  # else the uniform negatives alone cover > 63% of the items
                uniq, inv, _ = distinct_ids(torch.cat([pos, neg]), self.n_items)
                subset = uniq.numel() <= self.subset_frac * self.n_items
            mods = ([(self.text_embedding, self.text_trs)] if self.has_text else []) + \
                   ([(self.image_embedding, self.image_trs)] if self.has_image else [])
            for emb, trs in mods:
                if subset:
                    margin = pair_margin(u, trs(emb.weight.index_select(0, uniq)), inv[:n], inv[n:])
                else:
                    margin = pair_margin(u, trs(emb.weight), pos, neg)
                aux = aux + bpr_logsigmoid(margin)
        return loss + self.reg_weight * aux

    def eval_embeddings(self):
        return self.forward(self.norm_adj)  # the full (unpruned) user-item graph
