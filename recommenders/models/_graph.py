"""Sparse-graph helpers shared by the graph models."""
from __future__ import annotations

import hashlib
import os
import warnings

import numpy as np
import torch

from ._cache import KNN_GRAPHS


def to_csr(t: torch.Tensor) -> torch.Tensor:
    """COO -> CSR (torch.sparse.mm with CSR is ~3x faster on CPU, forward and backward)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return t.coalesce().to_sparse_csr()


class _SpMM(torch.autograd.Function):
    """sparse @ dense with an explicit transpose for the backward pass.

    torch's own backward of ``sparse.mm(csr, x)`` transposes the CSR matrix on every call; passing a
    precomputed transpose (the matrix itself when symmetric) makes forward+backward ~3x faster on CPU.
    """

    @staticmethod
    def forward(ctx, adj, adj_t, x):
        ctx.adj_t = adj_t
        return torch.sparse.mm(adj, x)

    @staticmethod
    def backward(ctx, grad):
        return None, None, torch.sparse.mm(ctx.adj_t, grad)


def spmm(adj: torch.Tensor, x: torch.Tensor, adj_t: torch.Tensor | None = None) -> torch.Tensor:
    """``adj @ x``; pass ``adj_t`` (the transpose, e.g. from :func:`transpose_csr`) for a fast backward."""
    if adj_t is not None and x.requires_grad:
        return _SpMM.apply(adj, adj_t, x)
    return torch.sparse.mm(adj, x)


def sym_spmm(adj: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``adj @ x`` for a symmetric ``adj`` (normalized bipartite adjacency): backward reuses ``adj``."""
    return spmm(adj, x, adj)


def transpose_csr(adj: torch.Tensor) -> torch.Tensor:
    return to_csr(adj.to_sparse_coo().t())


# ---------------------------------------------------------------------------- degree-pruned user-item graph
class DegreePrunedGraph:
    """FREEDOM's denoised user-item graph (also LIRDRec's): each epoch keep ``1 - dropout`` of the training
    edges, drawn without replacement with probability proportional to 1/sqrt(d_u d_i), and re-normalise the
    kept edges by their own degrees (MMRec's ``pre_epoch_processing``)."""

    def __init__(self, data, dropout: float):
        coo = data.train_csr().tocoo()
        self.n_users, self.n_items, self.dropout = data.n_users, data.n_items, float(dropout)
        self.edges = torch.from_numpy(np.stack([coo.row, coo.col]).astype(np.int64))
        self.weights = self.norm_values(self.edges)

    def norm_values(self, edges: torch.Tensor) -> torch.Tensor:
        """1/sqrt(d_u d_i) of each (user, item) edge, degrees counted over ``edges`` (+1e-7 as MMRec)."""
        du = torch.bincount(edges[0], minlength=self.n_users).float() + 1e-7
        di = torch.bincount(edges[1], minlength=self.n_items).float() + 1e-7
        return du.pow(-0.5)[edges[0]] * di.pow(-0.5)[edges[1]]

    def sample(self) -> torch.Tensor:
        """A fresh pruned, normalised, symmetric (U+I) x (U+I) adjacency as CSR (``dropout`` > 0)."""
        keep_n = int(self.weights.numel() * (1.0 - self.dropout))
        e = self.edges[:, torch.multinomial(self.weights, keep_n, replacement=False)]
        v = self.norm_values(e)
        u, i = e[0], e[1] + self.n_users
        n = self.n_users + self.n_items
        adj = torch.sparse_coo_tensor(torch.stack([torch.cat([u, i]), torch.cat([i, u])]),
                                      torch.cat([v, v]), (n, n), check_invariants=False)
        return to_csr(adj)


# ---------------------------------------------------------------------------- item-item kNN graphs
def feature_hash(mat) -> str:
    """sha256 of a feature matrix's content (dtype, shape and bytes)."""
    a = mat.detach().cpu().numpy() if isinstance(mat, torch.Tensor) else np.asarray(mat)
    a = np.ascontiguousarray(a, dtype=np.float32)
    h = hashlib.sha256()
    h.update(str(a.shape).encode())
    h.update(a.tobytes())
    return h.hexdigest()


def knn_cache_key(mat, k: int, kind: str = "freedom-knn-sym") -> str:
    """Cache key of a kNN graph: the features' content hash, k and the graph construction (``kind``)."""
    return f"{kind}-k{int(k)}-{feature_hash(mat)[:32]}"


def knn_indices(feat: torch.Tensor, k: int, chunk: int = 4096) -> torch.Tensor:
    """[n, k] indices of each row's k most cosine-similar rows (self included, as MMRec), chunked."""
    x = feat.float()
    x = x / x.norm(dim=1, keepdim=True)  # MMRec divides without epsilon; a zero row gives NaN there too
    x = torch.nan_to_num(x)
    out = []
    for s in range(0, x.shape[0], chunk):
        sim = x[s:s + chunk] @ x.T
        out.append(torch.topk(sim, k, dim=1).indices)
    return torch.cat(out)


def _binary_knn_normalized(feat, k: int) -> torch.Tensor:
    f = feat if isinstance(feat, torch.Tensor) else torch.from_numpy(np.asarray(feat, np.float32))
    n = f.shape[0]
    ind = knn_indices(f, k)
    rows = torch.arange(n).repeat_interleave(k)
    cols = ind.reshape(-1)
    row_sum = torch.bincount(rows, minlength=n).float() + 1e-7
    r = row_sum.pow(-0.5)
    return torch.sparse_coo_tensor(torch.stack([rows, cols]), r[rows] * r[cols], (n, n),
                                   check_invariants=False).coalesce()


def knn_normalized_graph(feat, k: int, cache_dir: str | os.PathLike | None = None) -> torch.Tensor:
    """FREEDOM's frozen item-item graph: binary kNN adjacency A (row i -> its k neighbours),
    normalized as D^-1/2 A D^-1/2 with D = row sums (MMRec ``compute_normalized_laplacian``).

    Returned as a coalesced sparse COO float32 tensor, shared through :data:`_cache.KNN_GRAPHS` (bounded, in
    memory, and on disk under ``cache_dir`` when given), keyed by :func:`knn_cache_key` (feature content + k),
    never by hyper-parameters. Callers must not modify it in place.
    """
    return KNN_GRAPHS.get_or_build(knn_cache_key(feat, k), lambda: _binary_knn_normalized(feat, k), cache_dir)


def mixed_knn_graph(feats: dict, k: int, image_weight: float, cache_dir=None) -> torch.Tensor:
    """FREEDOM's frozen item-item graph (also LIRDRec's and CM3's): per modality the normalized kNN graph of its
    raw features (:func:`knn_normalized_graph`), mixed with ``image_weight`` on the image graph and the other
    roles sharing the rest equally (text + image: ``w * image + (1 - w) * text``); one role: its graph."""
    graphs = {r: knn_normalized_graph(f, k, cache_dir) for r, f in feats.items()}
    if len(graphs) == 1:
        return next(iter(graphs.values()))
    others = [r for r in graphs if r != "image"]
    weights = {r: (1.0 - image_weight) / len(others) if "image" in graphs else 1.0 / len(others) for r in others}
    if "image" in graphs:
        weights["image"] = image_weight
    terms = [weights[r] * g for r, g in graphs.items()]
    out = terms[0]
    for t in terms[1:]:  # sparse + sparse (the built-in sum would start from the int 0)
        out = out + t
    return out.coalesce()


def attach_item_graphs(model: torch.nn.Module, data, feats: dict, knn_k: int, image_weight: float,
                       cache_dir) -> None:
    """Register on ``model`` the frozen item-item ``mm_adj`` of :func:`mixed_knn_graph` (+ its transpose
    ``mm_adj_t``: the kNN graph is not symmetric) and the full normalized user-item graph ``norm_adj``."""
    mm = mixed_knn_graph(feats, knn_k, image_weight, cache_dir)
    model.register_buffer("mm_adj", to_csr(mm), persistent=False)
    model.register_buffer("mm_adj_t", transpose_csr(mm), persistent=False)
    model.register_buffer("norm_adj", to_csr(data.norm_adj()), persistent=False)


def attach_freedom_graphs(model: torch.nn.Module, data, feats: dict, knn_k: int, image_weight: float,
                          cache_dir, dropout: float) -> None:
    """FREEDOM's graphs (also LIRDRec's): :func:`attach_item_graphs` plus the per-epoch degree-pruned
    ``masked_adj`` (:class:`DegreePrunedGraph`, starting as the full graph)."""
    attach_item_graphs(model, data, feats, knn_k, image_weight, cache_dir)
    model._pruning = DegreePrunedGraph(data, dropout)
    model.masked_adj = model.norm_adj
