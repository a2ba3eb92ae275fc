"""MMHCL (Guo et al., "MMHCL: Multi-Modal Hypergraph Contrastive Learning for Recommendation", ACM TOMM 2025),
following the authors' code (Xu107/MMHCL, ``codes/``: LATTICE/MMSSL-style, not MMRec) and its
``utility/parser.py`` defaults.

Two second-order graphs next to the first-order user-item graph:

* u2u hypergraph: every item is a hyperedge over the users who interacted with it, so with the binary
  train matrix R (users x items) the user-user operator is ``R R^T`` with its diagonal removed (no
  self-connection), row-normalized ``D^-1 A`` (each user's row sums to 1; a user who shares no item with
  anyone gets an all-zero row, the reference's inf -> 0).
* i2i hypergraph: per modality, a top-``knn_k`` cosine kNN of the raw item features (the item itself
  included). Each kNN list is a hyperedge: ``H_m[i, j] = 1`` when j is among i's k most similar items
  (the reference writes the top-k similarities and then sets the *positive* ones to 1, so a non-positive
  similarity among the top k keeps its value; we do the same). The modalities' incidence matrices are
  concatenated, ``H = [H_image | H_text]`` (n x 2n), and the item-item operator is ``H H^T``
  (entry (i, j) = number of hyperedges shared), symmetric-normalized ``D^-1/2 (H H^T) D^-1/2``.
* user-item graph: LightGCN (default; ``cf_model`` also "ngcf" or "mf", as the reference) over the
  symmetric-normalized bipartite adjacency without self loops (``data.norm_adj()``), mean of the
  ``n_ui_layers + 1`` layer outputs.

Embeddings: separate ID tables for the user-item branch and for each hypergraph branch. The hypergraph
branches propagate their own table ``n_user_layers`` / ``n_item_layers`` times (last layer only, no
mean). Final user = u_ui + L2-normalize(u_hyper); final item = i_ui + L2-normalize(i_hyper); a branch
whose contrastive weight is 0 is switched off entirely (not propagated, not added), as in the reference.

Loss (per batch) = BPR(log-sigmoid) on the final embeddings
  + reg_weight * 0.5 * (|u|^2 + |p|^2 + |n|^2) / train_batch_size
  + item_cl_weight * InfoNCE(final items, i_hyper) + user_cl_weight * InfoNCE(final users, u_hyper),
where the synergistic InfoNCE runs over *all* users / items every batch (GRACE-style, one direction): for
node i, positive = its own other view, negatives = every other node in both views,
``-log e^{s(a_i,b_i)/t} / (sum_j e^{s(a_i,b_j)/t} + sum_{j!=i} e^{s(a_i,a_j)/t})`` with s = cosine, t =
``temperature``. Scores: <final user, final item>.

Implementation differences (same values): the graphs are built with sparse products (scipy) instead of
the reference's dense n x n matrices (the u2u operator is kept dense when most of it is non-zero); the InfoNCE is computed in log space (logsumexp with the self pair
masked) instead of exp / sum / log, chunked over rows like the reference (4096), so memory is
O(chunk * n).
"""
from __future__ import annotations

import hashlib
import logging
import os

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from ._cache import KNN_GRAPHS
from ._graph import feature_hash, spmm, sym_spmm, to_csr, transpose_csr
from ..config import param
from ..data import InteractionData
from .base import MULTIMODAL_ROLES, MultimodalConfig, Recommender, register
from .vbpr import item_modalities

log = logging.getLogger(__name__)

CL_CHUNK = 4096  # rows per InfoNCE block (the reference's batch_size of batched_contrastive_loss)
# R R^T is often mostly non-zero (ML-100K: 80% of 938^2): kept dense when at least this share of its
# entries is non-zero and it has at most DENSE_MAX_ENTRIES entries, where a dense matmul is ~10x faster
DENSE_FRACTION = 0.25
DENSE_MAX_ENTRIES = 25_000_000


# ---------------------------------------------------------------------------- hypergraph construction
def _scipy_to_torch(m: sp.spmatrix) -> torch.Tensor:
    """A scipy sparse matrix as a coalesced float32 torch COO tensor."""
    c = m.tocoo()
    idx = torch.from_numpy(np.stack([c.row, c.col]).astype(np.int64))
    return torch.sparse_coo_tensor(idx, torch.from_numpy(c.data.astype(np.float32)), c.shape,
                                   check_invariants=False).coalesce()


def u2u_hypergraph(train_csr: sp.csr_matrix) -> torch.Tensor:
    """Row-normalized user-user operator ``D^-1 (R R^T - diag)`` of the u2u hypergraph (items = hyperedges).

    ``(R R^T)[u, v]`` is the number of items u and v share; the diagonal (a user's own degree) is removed,
    because the reference erases self-connections before normalizing. Rows of users with no co-interacting
    user are all zero. Returned as a coalesced torch COO tensor [n_users, n_users].
    """
    r = sp.csr_matrix(train_csr, dtype=np.float32)
    a = (r @ r.T).tocsr()
    a.setdiag(0.0)
    a.eliminate_zeros()
    deg = np.asarray(a.sum(1)).ravel()
    dinv = np.divide(1.0, deg, out=np.zeros_like(deg), where=deg > 0)
    return _scipy_to_torch(sp.diags(dinv) @ a)


def knn_incidence(feat: torch.Tensor, k: int, chunk: int = 4096) -> sp.csr_matrix:
    """Incidence [n, n] of one modality's kNN hyperedges: row i has i's ``k`` most cosine-similar items.

    Value 1 for a positive similarity; a non-positive one among the top k keeps its similarity, as the
    reference (``scatter(topk values)`` then ``adj[adj > 0] = 1``). Zero-norm rows get similarity 0 to
    everything (the reference would produce NaN there). Chunked over rows: O(chunk * n) memory.
    """
    x = feat.float()
    x = torch.nan_to_num(x / x.norm(dim=1, keepdim=True))
    n = x.shape[0]
    k = min(int(k), n)
    vals, inds = [], []
    for s in range(0, n, chunk):
        v, i = torch.topk(x[s:s + chunk] @ x.T, k, dim=1)
        vals.append(v)
        inds.append(i)
    v, i = torch.cat(vals), torch.cat(inds)
    v = torch.where(v > 0, torch.ones_like(v), v)
    rows = np.repeat(np.arange(n), k)
    m = sp.csr_matrix((v.reshape(-1).numpy().astype(np.float32), (rows, i.reshape(-1).numpy())), shape=(n, n))
    m.eliminate_zeros()
    return m


def _i2i_build(feats: list[torch.Tensor], k: int) -> torch.Tensor:
    h = sp.hstack([knn_incidence(f, k) for f in feats]).tocsr()  # [n, n * n_modalities]
    a = (h @ h.T).tocsr()  # shared-hyperedge counts; symmetric
    deg = np.asarray(a.sum(1)).ravel()
    dinv = np.zeros_like(deg)
    np.power(deg, -0.5, out=dinv, where=deg > 0)  # reference: inf -> 0 (non-positive degree -> 0 here)
    return _scipy_to_torch(sp.diags(dinv) @ a @ sp.diags(dinv))


def i2i_hypergraph(feats: list[torch.Tensor], k: int,
                   cache_dir: str | os.PathLike | None = None) -> torch.Tensor:
    """Symmetric-normalized ``D^-1/2 H H^T D^-1/2`` of the i2i hypergraph, ``H`` = the modalities' kNN
    incidences side by side. Cached (memory, and disk under ``cache_dir``) by the features' content and k,
    never by hyper-parameters; callers must not modify it in place."""
    h = hashlib.sha256("|".join(feature_hash(f) for f in feats).encode()).hexdigest()[:32]
    return KNN_GRAPHS.get_or_build(f"mmhcl-i2i-hyper-sym-k{int(k)}-{h}", lambda: _i2i_build(feats, k), cache_dir)


# ---------------------------------------------------------------------------- contrastive loss
def synergistic_infonce(a: torch.Tensor, b: torch.Tensor, temperature: float, chunk: int = CL_CHUNK
                        ) -> torch.Tensor:
    """Mean over nodes of ``-log e^{s(a_i,b_i)/t} / (sum_j e^{s(a_i,b_j)/t} + sum_{j!=i} e^{s(a_i,a_j)/t})``.

    ``a``: the fused (first-order + hypergraph) embeddings, ``b``: the hypergraph-branch embeddings, both
    [n, d]; s = cosine. Every node is an anchor and every other node, in both views, a negative (the
    reference's ``batched_contrastive_loss``), computed in row chunks in log space.
    """
    an, bn = F.normalize(a, dim=1), F.normalize(b, dim=1)
    n = a.shape[0]
    losses = []
    for s in range(0, n, chunk):
        e = min(s + chunk, n)
        refl = an[s:e] @ an.T / temperature  # [B, n]
        between = an[s:e] @ bn.T / temperature  # [B, n]
        refl[:, s:e].diagonal().fill_(float("-inf"))  # no self pair in the own view
        denom = torch.logaddexp(torch.logsumexp(refl, 1), torch.logsumexp(between, 1))
        losses.append(denom - between[:, s:e].diagonal())
    return torch.cat(losses).mean()


# ---------------------------------------------------------------------------- model
class MMHCLConfig(MultimodalConfig):
    """Xu107/MMHCL codes/utility/parser.py defaults (the reference's names in comments).

    Grids: the reference ships no search space; these are the values of its three published best runs
    (log/tiktok.txt, log/clothing.txt, log/sports.txt).
    """

    embedding_size: int = param(64, ge=1)  # embed_size
    learning_rate: float = param(1e-4, ge=0.0)  # lr
    train_batch_size: int = param(1024, ge=1)  # batch_size (also the regularizer's denominator)
    learning_rate_scheduler: list[float] = param([0.96, 50.0], min_length=2, max_length=2)  # 0.96 ** (epoch/50)
    eval_step: int = param(5, ge=1)  # verbose: validate every 5 epochs
    stopping_step: int = param(5, ge=0)  # early_stopping_patience (in evaluations)
    topk: list[int] = param([10, 20], min_length=1)  # Ks
    reg_weight: float = param(1e-3, ge=0.0, grid=[1e-3, 1e-5])  # regs
    knn_k: int = param(5, ge=1, grid=[5, 10])  # topk of the i2i kNN hyperedges
    n_ui_layers: int = param(2, ge=0)  # UI_layers
    n_user_layers: int = param(3, ge=0, grid=[2, 3])  # User_layers (u2u propagations)
    n_item_layers: int = param(2, ge=0)  # Item_layers (i2i propagations)
    user_cl_weight: float = param(0.03, ge=0.0, grid=[0.03, 0.1, 0.3])  # user_loss_ratio
    item_cl_weight: float = param(0.07, ge=0.0, grid=[0.07, 0.7])  # item_loss_ratio
    temperature: float = param(0.6, gt=0.0, grid=[0.4, 0.5, 0.6])  # temperature
    cf_model: str = param("lightgcn")  # lightgcn | ngcf | mf (case-insensitive)
    ngcf_dropout: float = param(0.1, ge=0.0, lt=1.0)  # the reference's fixed NGCF message dropout
    graph_cache_dir: str | None = param(None)  # where i2i hypergraphs are kept across processes


@register("MMHCL")
class MMHCL(Recommender):
    """u2u and i2i hypergraphs fused into a LightGCN backbone, with synergistic contrastive losses (see the
    module docstring).

    Reference:
        Paper: Xu Guo, Tong Zhang, Fuyun Wang, Xudong Wang, Xiaoya Zhang, Xin Liu, Zhen Cui. "MMHCL:
        Multi-Modal Hypergraph Contrastive Learning for Recommendation". ACM Transactions on Multimedia
        Computing, Communications and Applications (TOMM) 2025 (arXiv:2504.16576).
        Code: Xu107/MMHCL codes/Models.py, codes/main.py, codes/utility/load_data.py (math, defaults and
        protocol followed here).
    """

    modality_roles = MULTIMODAL_ROLES
    config_class = MMHCLConfig

    def __init__(self, data: InteractionData, config: dict):
        super().__init__(data, config)
        d = int(self.hp("embedding_size"))
        self.n_ui_layers = int(self.hp("n_ui_layers"))
        self.n_user_layers = int(self.hp("n_user_layers"))
        self.n_item_layers = int(self.hp("n_item_layers"))
        self.user_cl_weight = float(self.hp("user_cl_weight"))
        self.item_cl_weight = float(self.hp("item_cl_weight"))
        self.temperature = float(self.hp("temperature"))
        self.reg_weight = float(self.hp("reg_weight"))
        self.batch_size = int(self.hp("train_batch_size"))
        self.cf_model = str(self.hp("cf_model")).lower()
        if self.cf_model not in ("lightgcn", "ngcf", "mf"):
            raise ValueError(f"MMHCL: cf_model must be lightgcn, ngcf or mf, got {self.cf_model!r}")

        self.user_ui_embedding = nn.Embedding(self.n_users, d)
        self.item_ui_embedding = nn.Embedding(self.n_items, d)
        self.uu_embedding = nn.Embedding(self.n_users, d)
        self.ii_embedding = nn.Embedding(self.n_items, d)
        for e in (self.user_ui_embedding, self.item_ui_embedding, self.uu_embedding, self.ii_embedding):
            nn.init.xavier_uniform_(e.weight)
        if self.cf_model == "ngcf":
            self.gc_linear = nn.ModuleList(nn.Linear(d, d) for _ in range(self.n_ui_layers))
            self.bi_linear = nn.ModuleList(nn.Linear(d, d) for _ in range(self.n_ui_layers))
            self.ngcf_dropout = nn.Dropout(float(self.hp("ngcf_dropout")))

        feats = item_modalities(self, data)
        # reference order (image, text); irrelevant for H H^T, kept for the cache key
        self.modalities = tuple(r for r in ("image", "text") if r in feats)
        i2i = i2i_hypergraph([feats[r] for r in self.modalities], int(self.hp("knn_k")), self.hp("graph_cache_dir"))
        self.register_buffer("i2i_adj", to_csr(i2i), persistent=False)  # symmetric: backward reuses it
        u2u = u2u_hypergraph(data.train_csr())
        n2 = self.n_users * self.n_users
        self.u2u_dense = n2 <= DENSE_MAX_ENTRIES and u2u._nnz() >= DENSE_FRACTION * n2
        if self.u2u_dense:  # same values; dense matmul (autograd transposes it for the backward)
            self.register_buffer("u2u_adj", u2u.to_dense(), persistent=False)
            self.u2u_adj_t = None
        else:
            self.register_buffer("u2u_adj", to_csr(u2u), persistent=False)
            # row-normalized, so not symmetric: keep the transpose for the backward pass
            self.register_buffer("u2u_adj_t", transpose_csr(u2u), persistent=False)
        self.register_buffer("norm_adj", to_csr(data.norm_adj()), persistent=False)

    # ------------------------------------------------------------------ forward
    def _user_item(self) -> tuple[torch.Tensor, torch.Tensor]:
        """First-order embeddings from the user-item graph (``cf_model``)."""
        u, i = self.user_ui_embedding.weight, self.item_ui_embedding.weight
        if self.cf_model == "mf":
            return u, i
        ego = torch.cat([u, i], 0)
        layers = [ego]
        for k in range(self.n_ui_layers):
            side = sym_spmm(self.norm_adj, ego)
            if self.cf_model == "ngcf":
                ego = F.leaky_relu(self.gc_linear[k](side)) + F.leaky_relu(self.bi_linear[k](ego * side))
                ego = self.ngcf_dropout(ego)
                layers.append(F.normalize(ego, p=2, dim=1))
            else:
                ego = side
                layers.append(ego)
        out = torch.stack(layers, 1).mean(1)
        return out[: self.n_users], out[self.n_users:]

    def forward(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(final users, final items, item hypergraph view, user hypergraph view)."""
        ii, uu = self.ii_embedding.weight, self.uu_embedding.weight
        u, i = self._user_item()
        if self.item_cl_weight != 0:
            for _ in range(self.n_item_layers):
                ii = sym_spmm(self.i2i_adj, ii)
            i = i + F.normalize(ii, p=2, dim=1)
        if self.user_cl_weight != 0:
            for _ in range(self.n_user_layers):
                uu = self.u2u_adj @ uu if self.u2u_dense else spmm(self.u2u_adj, uu, self.u2u_adj_t)
            u = u + F.normalize(uu, p=2, dim=1)
        return u, i, ii, uu

    def contrastive_loss(self, u: torch.Tensor, i: torch.Tensor, ii: torch.Tensor, uu: torch.Tensor) -> torch.Tensor:
        """item_cl_weight * InfoNCE(items) + user_cl_weight * InfoNCE(users), over all nodes."""
        loss = u.new_zeros(())
        if self.item_cl_weight != 0:
            loss = loss + self.item_cl_weight * synergistic_infonce(i, ii, self.temperature)
        if self.user_cl_weight != 0:
            loss = loss + self.user_cl_weight * synergistic_infonce(u, uu, self.temperature)
        return loss

    def calculate_loss(self, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
        users, pos, neg = batch
        ue, ie, ii, uu = self.forward()
        u, p, n = ue[users], ie[pos], ie[neg]
        mf = -F.logsigmoid((u * p).sum(1) - (u * n).sum(1)).mean()
        reg = 0.5 * (u.pow(2).sum() + p.pow(2).sum() + n.pow(2).sum()) / self.batch_size
        return mf + self.reg_weight * reg + self.contrastive_loss(ue, ie, ii, uu)

    # ------------------------------------------------------------------ evaluation
    def eval_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        u, i, _, _ = self.forward()
        return u, i
