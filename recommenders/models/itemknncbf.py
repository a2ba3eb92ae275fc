"""ItemKNNCBF: content-based item kNN (Dacrema et al., RecSys 2019), following MMRec's
src/models/itemknncbf.py protocol and src/configs/model/ItemKNNCBF.yaml defaults.

No training (MMRec's ``req_training: False``): the item features of every configured role are concatenated,
the item-item similarity is the cosine with a shrink term, ``f_i . f_j / (|f_i| |f_j| + shrink)``, each item
keeps its ``knn_k`` most similar items (itself included, as MMRec's top-k does), and a user's score for item j
is the sum of the similarities of the user's training items to j.

It is the content-only baseline of the cold-start protocol (``--split cold``): a cold item is scored
through its feature neighbours, with no embedding of its own. Kept as a sparse [n_items, n_items] matrix (k
per row) instead of MMRec's dense one, so it fits catalogues where n_items^2 floats would not.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from ..config import param
from .base import MULTIMODAL_ROLES, MultimodalConfig, Recommender, register
from .vbpr import item_modalities


class ItemKNNCBFConfig(MultimodalConfig):
    """MMRec src/configs/model/ItemKNNCBF.yaml (``epochs: 1``; nothing is trained)."""

    epochs: int = param(1, ge=1, le=1)  # nothing trains: more epochs would be a key that is ignored
    knn_k: int = param(10, ge=1, grid=[10])
    shrink: float = param(10.0, ge=0.0, grid=[10.0])


def shrunk_cosine_knn(features: torch.Tensor, k: int, shrink: float, chunk: int = 2048) -> sp.csr_matrix:
    """Row i keeps the ``k`` largest ``f_i . f_j / (|f_i| |f_j| + shrink)`` (ties as ``torch.topk``), as CSR."""
    n = features.shape[0]
    k = min(k, n)
    norms = torch.linalg.vector_norm(features, dim=1)
    rows, cols, vals = [], [], []
    for s in range(0, n, chunk):  # chunked so that only chunk x n similarities exist at once
        block = features[s:s + chunk] @ features.T
        block = block / (norms[s:s + chunk, None] * norms[None, :] + shrink)
        v, idx = torch.topk(block, k, dim=1)
        rows.append(np.repeat(np.arange(s, s + len(block)), k))
        cols.append(idx.reshape(-1).numpy())
        vals.append(v.reshape(-1).numpy())
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))


@register("ItemKNNCBF")
class ItemKNNCBF(Recommender):
    """A user's training items vote for their feature-space neighbours (see the module docstring).

    Reference:
        Paper: Maurizio Ferrari Dacrema, Paolo Cremonesi, Dietmar Jannach. "Are We Really Making Much Progress?
        A Worrying Analysis of Recent Neural Recommendation Approaches". RecSys 2019.
        Code: enoche/MMRec src/models/itemknncbf.py (protocol and defaults followed here).
    """

    modality_roles = MULTIMODAL_ROLES
    config_class = ItemKNNCBFConfig
    trainable = False

    def __init__(self, data, config):
        super().__init__(data, config)
        feats = item_modalities(self, data)
        self.modalities = tuple(feats)
        item_feat = torch.cat([feats[r] for r in self.modalities], 1)
        self._sim = shrunk_cosine_knn(item_feat, int(self.hp("knn_k")), float(self.hp("shrink")))
        self._train = data.train_csr()
        self.register_buffer("_device_probe", torch.zeros(0), persistent=False)  # no parameters: .device reads it

    def calculate_loss(self, batch):
        raise RuntimeError("ItemKNNCBF is closed-form (trainable = False): it has no loss to optimise")

    def full_sort_predict(self, users):
        u = users.detach().cpu().numpy()
        scores = (self._train[u] @ self._sim).toarray().astype(np.float32)
        return torch.from_numpy(scores).to(self.device)
