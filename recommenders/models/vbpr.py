"""VBPR (He & McAuley, "VBPR: Visual Bayesian Personalized Ranking from Implicit Feedback", AAAI 2016),
following MMRec's src/models/vbpr.py protocol.

* user  = [gamma_u ; theta_u]  (one free ``2 * embedding_size`` vector per user)
* item  = [gamma_i ; E f_i]    (free ID part + a learned linear map of the item's content features)
* score = <user, item>;  loss = BPR + reg_weight * EmbLoss(user, pos, neg)

``f_i`` is the concatenation of every modality the data provides (text first, then image, as MMRec
concatenates ``t_feat, v_feat``); with one modality it is that modality alone. The content features
themselves are fixed inputs (not trained), as in MMRec, where they are a plain tensor.

Also home of :func:`item_modalities`, the modality lookup shared by the multimodal models
(VBPR, LATTICE, BM3, DGVAE).
"""
from __future__ import annotations

import logging

import torch
from torch import nn

from ..data import InteractionData
from ..config import param
from .base import (MULTIMODAL_ROLES, MultimodalConfig, Recommender, bpr_loss, counted_norm, distinct_ids,
                   pair_margin, register)

log = logging.getLogger(__name__)


def item_modalities(model: Recommender, data: InteractionData) -> dict[str, torch.Tensor]:
    """Role -> float32 tensor [n_items, d] for each configured modality present in ``data``.

    A configured name that is absent is logged and skipped (so one set of defaults works on text-only,
    image-only and text+image data); having none at all is an error naming what the data holds,
    because a multimodal model without content would silently degrade to plain CF.
    """
    out: dict[str, torch.Tensor] = {}
    roles = type(model).modality_roles  # MMRec order (t_feat, v_feat)
    for role in roles:
        name = model.hp(f"{role}_feature")
        if name is None:
            continue
        if name in data.item_features:
            out[role] = torch.from_numpy(data.item_features[name]).float()
        else:
            log.info("%s: feature %r (%s) not in data; modality unused", type(model).__name__, name, role)
    if not out:
        raise ValueError(
            f"{type(model).__name__} needs at least one item feature among "
            f"{[model.hp(f'{r}_feature') for r in roles]}; data has {sorted(data.item_features)}")
    return out


class VBPRConfig(MultimodalConfig):
    """MMRec src/configs/model/VBPR.yaml."""

    embedding_size: int = param(64, ge=1)
    reg_weight: float = param(1e-4, ge=0.0, grid=[2.0, 1.0, 1e-01, 1e-02, 1e-03, 1e-04, 1e-05])


@register("VBPR")
class VBPR(Recommender):
    """User [gamma_u; theta_u] against item [gamma_i; E f_i], BPR loss (see the module docstring).

    Reference:
        Paper: Ruining He, Julian McAuley. "VBPR: Visual Bayesian Personalized Ranking from Implicit
        Feedback". AAAI 2016.
        Code: enoche/MMRec src/models/vbpr.py (protocol and defaults followed here).
    """

    modality_roles = MULTIMODAL_ROLES
    config_class = VBPRConfig

    def __init__(self, data, config):
        super().__init__(data, config)
        d = int(self.hp("embedding_size"))
        self.reg_weight = float(self.hp("reg_weight"))
        feats = item_modalities(self, data)
        self.modalities = tuple(feats)
        # fixed content input f_i: concatenation text ; image (whichever exist)
        self.register_buffer("item_raw_features", torch.cat([feats[r] for r in self.modalities], 1),
                             persistent=False)
        # MMRec: the two free tables are nn.Parameters initialised xavier_uniform; its
        # xavier_normal_initialization then only reaches the Linear (weight normal, bias 0).
        self.u_embedding = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_users, 2 * d)))
        self.i_embedding = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_items, d)))
        self.item_linear = nn.Linear(self.item_raw_features.shape[1], d)
        nn.init.xavier_normal_(self.item_linear.weight)
        nn.init.zeros_(self.item_linear.bias)

    def item_embeddings(self, items: torch.Tensor | None = None) -> torch.Tensor:
        """[gamma_i ; E f_i] for the (distinct) ``items``, or for all items when None.

        The linear map is row-wise, so a training step projects only the batch's distinct items (same values
        as MMRec's full projection). Projecting every batch row instead (2 x 2,048 gathered rows of a 4,480-d
        input) cost several times MMRec's full 1,008-item projection on ML-100K, and projecting every item
        each step wastes work on large catalogues.
        """
        if items is None:
            return torch.cat([self.i_embedding, self.item_linear(self.item_raw_features)], 1)
        return torch.cat([self.i_embedding.index_select(0, items),
                          self.item_linear(self.item_raw_features.index_select(0, items))], 1)

    def calculate_loss(self, batch):
        """BPR on ``<u, i_pos - i_neg>`` plus ``reg_weight * EmbLoss(u, i_pos, i_neg)``, as MMRec's VBPR.

        The same values as scoring the gathered positives and negatives separately, with fewer batch-sized
        tensors: one product for the margin (:func:`pair_margin`), and the three Frobenius norms from the
        distinct rows and their batch counts (:func:`counted_norm`) rather than from gathered copies.
        Together with :func:`distinct_ids` in place of ``torch.unique`` this cut the step by about a third
        on ML-100K (measured in ``bench/graph/mmrec_parity.py``).
        """
        users, pos, neg = batch
        b = len(pos)
        uniq, inverse, _ = distinct_ids(torch.cat([pos, neg]), self.n_items)
        if len(uniq) * 8 >= self.n_items * 7:
            # the batch holds nearly every item: project the whole catalogue (the gather of ~all feature rows
            # costs more than projecting the few absent ones)
            uniq, inverse = None, torch.cat([pos, neg])
        rows = self.item_embeddings(uniq)
        # index_select gathers (backward index_add, several times faster on CPU than index_put)
        u = self.u_embedding.index_select(0, users)
        loss = bpr_loss(pair_margin(u, rows, inverse[:b], inverse[b:]))
        item_counts = torch.stack([torch.bincount(inverse[:b], minlength=len(rows)),
                                   torch.bincount(inverse[b:], minlength=len(rows))])
        norms = counted_norm(self.u_embedding, torch.bincount(users, minlength=self.n_users)).sum()
        norms = norms + counted_norm(rows, item_counts).sum()
        return loss + self.reg_weight * norms / b

    def full_sort_predict(self, users):
        return self.u_embedding[users] @ self.item_embeddings().T
