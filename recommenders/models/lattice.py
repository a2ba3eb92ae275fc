"""LATTICE (Zhang et al., "Mining Latent Structures for Multimedia Recommendation", ACM MM 2021),
following MMRec's src/models/lattice.py protocol and src/configs/model/LATTICE.yaml defaults.

Item-item structure
  * Per modality, a *frozen* graph S_m from the raw features: each item keeps its ``knn_k`` most
    cosine-similar items (itself included), weighted by the cosine similarity, then normalized
    D^-1/2 S D^-1/2 with D = row sums. Built once and cached by feature content + k (not by
    hyper-parameters), in the shared bounded kNN cache and optionally on disk (``graph_cache_dir``).
  * Per modality, a *learned* graph from the projected features ``W_m x_m`` (the raw features are
    trainable, as in MMRec): same kNN construction, the similarity values carry gradients.
  * Modalities are mixed with ``softmax(modal_weight)`` (a learned 2-vector), the learned mix is
    normalized, and the item graph is ``(1 - lambda_coeff) * learned + lambda_coeff * frozen`` -- the
    skip connection to the original structure.
  * The learned graph is rebuilt (with gradient) on the first batch of each epoch (``pre_epoch``)
    and reused detached for the remaining batches, as MMRec does; evaluation rebuilds it.

User-item part: ``cf_model`` = "lightgcn" (default; mean of ``len(weight_size)`` propagations),
"ngcf" or "mf", over MMRec LATTICE's own adjacency D^-1 (A + I) (row-normalized with self loops,
not the symmetric one of ``data.norm_adj``). Item representation = CF embedding +
L2-normalize(item graph^``n_layers`` x item ID embedding). Loss = BPR (log-sigmoid) +
reg_weight * 0.5 * (|u|^2 + |p|^2 + |n|^2) / train_batch_size (MMRec divides by the configured batch size).

Implementation differences (same values): graphs are kept as edge lists (n * k edges per modality)
and propagated with ``index_add`` instead of dense n x n matrices, so memory is O(n k), not O(n^2);
a row whose weighted degree is not positive gets a 0 normalizer instead of NaN. The graph stored after an
epoch's first batch (fixed for the rest of the epoch) is kept as a coalesced CSR matrix with its transpose, so
the later batches propagate with one sparse matmul (forward and backward) instead of an edge gather/scatter,
and embeddings are gathered with ``index_select`` (~3.5x faster epochs on CPU, same values up to float
summation order).
"""
from __future__ import annotations

import logging
import os
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ._cache import KNN_GRAPHS
from ._graph import knn_cache_key, knn_indices, spmm, to_csr, transpose_csr
from ..config import param
from .base import MULTIMODAL_ROLES, MultimodalConfig, Recommender, register
from .vbpr import item_modalities

log = logging.getLogger(__name__)

Edges = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # (rows, cols, values)


# ---------------------------------------------------------------------------- edge-list graph helpers
def knn_edges(x: torch.Tensor, k: int) -> Edges:
    """Weighted kNN graph of the rows of ``x``: edge i -> j for j among i's k most cosine-similar rows
    (i itself included), value cos(x_i, x_j). The neighbour *selection* is not differentiable (as
    top-k); the values are, so a graph built from projected features trains the projection."""
    n = x.shape[0]
    k = min(int(k), n)
    with torch.no_grad():
        ind = knn_indices(x.detach(), k)
    rows = torch.arange(n, device=x.device).repeat_interleave(k)
    cols = ind.reshape(-1).to(x.device)
    xn = x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return rows, cols, (xn[rows] * xn[cols]).sum(1)


def sym_normalize(edges: Edges, n: int) -> Edges:
    """D^-1/2 S D^-1/2 with D = row sums of S (duplicate edges add up, as in a dense matrix)."""
    rows, cols, vals = edges
    deg = torch.zeros(n, dtype=vals.dtype, device=vals.device).index_add(0, rows, vals)
    dinv = torch.where(deg > 0, deg.clamp_min(1e-12).pow(-0.5), torch.zeros_like(deg))
    return rows, cols, dinv[rows] * vals * dinv[cols]


def propagate(edges: Edges, h: torch.Tensor) -> torch.Tensor:
    """S @ h for an edge-list S (differentiable in both the values and h)."""
    rows, cols, vals = edges
    return torch.zeros_like(h).index_add(0, rows, vals.unsqueeze(1) * h[cols])


def frozen_knn_graph(feat: torch.Tensor, k: int, cache_dir: str | os.PathLike | None = None) -> Edges:
    """LATTICE's original modality graph (weighted kNN, symmetric-normalized), shared through
    :data:`_cache.KNN_GRAPHS` by feature content and k: two models with different hyper-parameters on the
    same features share it. Callers must not modify it in place."""
    def build() -> Edges:
        with torch.no_grad():
            return sym_normalize(knn_edges(feat.float(), k), feat.shape[0])

    return KNN_GRAPHS.get_or_build(knn_cache_key(feat, k, kind="lattice-knn-weighted-sym"), build, cache_dir)


def edges_to_csr(edges: Edges, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A detached edge-list graph as (CSR, CSR of its transpose), duplicate edges summed: the graph is
    fixed for the rest of the epoch, so every later batch propagates with one sparse matmul (and its
    precomputed transpose for the backward) instead of an O(nnz * d) gather + scatter."""
    rows, cols, vals = (t.detach() for t in edges)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        coo = torch.sparse_coo_tensor(torch.stack([rows, cols]), vals, (n, n), check_invariants=False).coalesce()
    return to_csr(coo), transpose_csr(coo)


def cat_edges(parts: list[tuple[Edges, torch.Tensor | float]]) -> Edges:
    """Weighted sum of edge-list graphs: sum_m w_m S_m (concatenation; duplicates add up when used)."""
    return (torch.cat([e[0] for e, _ in parts]), torch.cat([e[1] for e, _ in parts]),
            torch.cat([e[2] * w for e, w in parts]))


def row_normalized_bipartite_with_self_loops(csr, n_users: int, n_items: int) -> torch.Tensor:
    """MMRec LATTICE's user-item adjacency D^-1 (A + I) of size (U+I, U+I), as sparse CSR."""
    coo = csr.tocoo()
    u = torch.from_numpy(coo.row.astype(np.int64))
    i = torch.from_numpy(coo.col.astype(np.int64)) + n_users
    n = n_users + n_items
    loops = torch.arange(n)
    rows = torch.cat([u, i, loops])
    cols = torch.cat([i, u, loops])
    deg = torch.bincount(rows, minlength=n).float()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adj = torch.sparse_coo_tensor(torch.stack([rows, cols]), 1.0 / deg[rows], (n, n), check_invariants=False)
    return to_csr(adj)


class LATTICEConfig(MultimodalConfig):
    """MMRec src/configs/model/LATTICE.yaml (it overrides the trainer's learning-rate schedule)."""

    embedding_size: int = param(64, ge=1)
    feat_embed_dim: int = param(64, ge=1)
    weight_size: list[int] = param([64, 64], min_length=1)  # one entry per user-item layer
    learning_rate_scheduler: list[float] = param([0.96, 50.0], min_length=2, max_length=2)
    learning_rate: float = param(1e-3, ge=0.0, grid=[0.0001, 0.0005, 0.001, 0.005])
    lambda_coeff: float = param(0.9, ge=0.0, le=1.0)
    reg_weight: float = param(1e-4, ge=0.0, grid=[0.0, 1e-05, 1e-04, 1e-03])
    cf_model: str = param("lightgcn")  # lightgcn | ngcf | mf (case-insensitive)
    mess_dropout: list[float] = param([0.1, 0.1])  # ngcf only
    n_layers: int = param(1, ge=0)
    knn_k: int = param(10, ge=1)
    graph_cache_dir: str | None = param(None)  # where frozen kNN graphs are kept across processes


@register("LATTICE")
class LATTICE(Recommender):
    """Learned + frozen item-item kNN graphs over a user-item CF backbone (see the module docstring).

    Reference:
        Paper: Jinghao Zhang, Yanqiao Zhu, Qiang Liu, Shu Wu, Shuhui Wang, Liang Wang. "Mining Latent
        Structures for Multimedia Recommendation". ACM Multimedia (MM) 2021.
        Code: enoche/MMRec src/models/lattice.py (protocol and defaults followed here; the authors' code is
        CRIPAC-DIG/LATTICE).
    """

    modality_roles = MULTIMODAL_ROLES
    config_class = LATTICEConfig

    def __init__(self, data, config):
        super().__init__(data, config)
        d = int(self.hp("embedding_size"))
        fd = int(self.hp("feat_embed_dim"))
        self.knn_k = int(self.hp("knn_k"))
        self.lambda_coeff = float(self.hp("lambda_coeff"))
        self.cf_model = str(self.hp("cf_model")).lower()
        if self.cf_model not in ("lightgcn", "ngcf", "mf"):
            raise ValueError(f"LATTICE: cf_model must be lightgcn, ngcf or mf, got {self.cf_model!r}")
        self.n_layers = int(self.hp("n_layers"))
        self.reg_weight = float(self.hp("reg_weight"))
        self.batch_size = int(self.hp("train_batch_size"))  # MMRec's regularizer denominator
        weight_size = [d] + list(self.hp("weight_size"))
        self.n_ui_layers = len(weight_size) - 1

        self.user_embedding = nn.Embedding(self.n_users, d)
        self.item_id_embedding = nn.Embedding(self.n_items, d)
        nn.init.xavier_uniform_(self.user_embedding.weight)
        nn.init.xavier_uniform_(self.item_id_embedding.weight)
        if self.cf_model == "ngcf":
            drops = list(self.hp("mess_dropout"))
            self.gc_linear = nn.ModuleList(nn.Linear(a, b) for a, b in zip(weight_size[:-1], weight_size[1:]))
            self.bi_linear = nn.ModuleList(nn.Linear(a, b) for a, b in zip(weight_size[:-1], weight_size[1:]))
            self.mess_dropout = nn.ModuleList(nn.Dropout(p) for p in drops[: self.n_ui_layers])

        feats = item_modalities(self, data)
        self.modalities = tuple(feats)
        cache = self.hp("graph_cache_dir")
        # raw features are trainable (MMRec: nn.Embedding.from_pretrained(freeze=False))
        self.feat_embedding = nn.ParameterDict({r: nn.Parameter(f.clone()) for r, f in feats.items()})
        self.feat_trs = nn.ModuleDict({r: nn.Linear(f.shape[1], fd) for r, f in feats.items()})
        for r, f in feats.items():  # buffers, so .to(device) moves them
            for name, t in zip(("rows", "cols", "vals"), frozen_knn_graph(f, self.knn_k, cache)):
                self.register_buffer(f"frozen_{r}_{name}", t.clone(), persistent=False)
        # order (image, text) as MMRec's weight[0] -> image, weight[1] -> text
        self.modal_weight = nn.Parameter(torch.tensor([0.5, 0.5]))
        ui_adj = row_normalized_bipartite_with_self_loops(data.train_csr(), self.n_users, self.n_items)
        self.register_buffer("ui_adj", ui_adj, persistent=False)
        # D^-1 (A + I) is not symmetric: keep its transpose for the backward pass (torch's own CSR
        # backward would transpose the ~2 nnz(train) matrix on every call)
        self.register_buffer("ui_adj_t", transpose_csr(ui_adj), persistent=False)
        self._rebuild = True
        self._item_csr: tuple[torch.Tensor, torch.Tensor] | None = None  # the detached graph, (S, S^T)

    def _apply(self, fn, *args, **kwargs):  # keep the stored (detached) item graph on the model's device
        out = super()._apply(fn, *args, **kwargs)
        if self._item_csr is not None:
            self._item_csr = tuple(fn(t) for t in self._item_csr)
        return out

    def _store_item_graph(self, edges: Edges) -> None:
        """Keep the (detached) item graph for the following batches, as MMRec keeps ``item_adj``."""
        self._item_csr = edges_to_csr(edges, self.n_items)

    def _frozen(self, role: str) -> Edges:
        return (getattr(self, f"frozen_{role}_rows"), getattr(self, f"frozen_{role}_cols"),
                getattr(self, f"frozen_{role}_vals"))

    # ------------------------------------------------------------------ item graph
    def _modal_weights(self) -> dict[str, torch.Tensor | float]:
        if len(self.modalities) == 1:
            return {self.modalities[0]: 1.0}
        w = torch.softmax(self.modal_weight, 0)
        return {"image": w[0], "text": w[1]}

    def build_item_graph(self) -> Edges:
        """(1 - lambda) * norm(sum_m w_m learned_m) + lambda * sum_m w_m frozen_m, with gradient."""
        w = self._modal_weights()
        learned = [(knn_edges(self.feat_trs[r](self.feat_embedding[r]), self.knn_k), w[r]) for r in self.modalities]
        learned = sym_normalize(cat_edges(learned), self.n_items)
        frozen = cat_edges([(self._frozen(r), w[r]) for r in self.modalities])
        return cat_edges([(learned, 1.0 - self.lambda_coeff), (frozen, self.lambda_coeff)])

    def pre_epoch(self):
        self._rebuild = True

    # ------------------------------------------------------------------ forward
    def forward(self, item_graph: Edges | tuple[torch.Tensor, torch.Tensor]):
        """``item_graph``: an edge list (values may carry gradient) or a detached (CSR, CSR^T) pair."""
        h = self.item_id_embedding.weight
        for _ in range(self.n_layers):
            h = propagate(item_graph, h) if len(item_graph) == 3 else spmm(item_graph[0], h, item_graph[1])
        h = F.normalize(h, p=2, dim=1)
        if self.cf_model == "mf":
            return self.user_embedding.weight, self.item_id_embedding.weight + h
        ego = torch.cat([self.user_embedding.weight, self.item_id_embedding.weight], 0)
        layers = [ego]
        for k in range(self.n_ui_layers):
            side = spmm(self.ui_adj, ego, self.ui_adj_t)
            if self.cf_model == "ngcf":
                ego = F.leaky_relu(self.gc_linear[k](side)) + F.leaky_relu(self.bi_linear[k](ego * side))
                ego = self.mess_dropout[k](ego)
                layers.append(F.normalize(ego, p=2, dim=1))
            else:
                ego = side
                layers.append(ego)
        out = torch.stack(layers, 1).mean(1)
        return out[: self.n_users], out[self.n_users:] + h

    def calculate_loss(self, batch):
        users, pos, neg = batch
        if self._rebuild or self._item_csr is None:
            graph = self.build_item_graph()  # gradient reaches the projections and modal weights
            self._store_item_graph(graph)
            self._rebuild = False
        else:
            graph = self._item_csr  # fixed until the next epoch
        ue, ie = self.forward(graph)
        # index_select: its backward is an index_add, ~2x faster on CPU than advanced indexing's index_put
        u, p, n = ue.index_select(0, users), ie.index_select(0, pos), ie.index_select(0, neg)
        mf = -F.logsigmoid((u * p).sum(1) - (u * n).sum(1)).mean()
        reg = 0.5 * (u.pow(2).sum() + p.pow(2).sum() + n.pow(2).sum()) / self.batch_size
        return mf + self.reg_weight * reg

    def eval_embeddings(self):
        self._store_item_graph(self.build_item_graph())  # MMRec's full_sort_predict also replaces it
        return self.forward(self._item_csr)
