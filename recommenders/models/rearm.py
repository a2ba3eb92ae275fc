"""REARM (Ma et al., "Refining Contrastive Learning and Homography Relations for Multi-Modal
Recommendation", ACM MM 2025), following the protocol and defaults of the reference code
(MrShouxingMa/REARM: model.py, utils/helper.py, utils/data_loader.py, utils/parser.py).

Homography graphs (frozen, built once, vectorised):

* user co-occurrence graph: counts of shared training items (``R R^T``, zero diagonal); item co-occurrence:
  counts of shared training users (``R^T R``). Each row keeps its ``k`` strongest neighbours (of at most
  the 200 strongest, as the reference caches them), weighted by a softmax over the raw counts, so every
  row sums to 1. A row with fewer than ``k`` neighbours is padded to ``k`` slots by re-drawing its own
  neighbours uniformly with replacement (duplicates add up); a row with none gets the ``k`` most popular
  entities, weighted by a softmax of their popularity shares. ``k`` is ``user_knn_k`` / ``item_knn_k``.
* item semantic graph: per modality the top-``item_knn_k`` cosine neighbours (self included) weighted by
  their similarity and divided by ``k`` (the reference normalises the similarity matrix with the binary
  degree, which is ``k`` on every row); mixed ``i_mm_image_weight * image + (1 - .) * text``.
* user interest graph: the same on the users' interest vectors (the mean raw feature of each user's training
  items), ``user_knn_k`` neighbours, mixed with ``u_mm_image_weight``.
* strengthened graphs: ``ii_co_weight * item_co + (1 - ii_co_weight) * item_semantic`` and
  ``uu_co_weight * user_co + (1 - uu_co_weight) * user_interest``.

Forward (every user and item, every step, as the reference):

1. Trainable raw item features -> Linear per modality; trainable user interests (initialised with the
   interest vectors) -> Linear per modality. ``[id ; visual ; text]`` is propagated ``n_ii_layers`` /
   ``n_uu_layers`` times over the strengthened graph (last layer kept) and L2-normalised row-wise.
2. Items: per modality a 1-d self-attention over the ``d`` feature dimensions (each dimension a token,
   ``nn.MultiheadAttention(1, 1)``, dropout ``s_drop``), residual + shared LayerNorm + shared PReLU; then
   cross-attention text->visual and visual->text (dropout ``m_drop``), same residual block. Users: PReLU.
3. LightGCN mean over ``n_layers`` propagations of the normalised user-item graph, separately for the
   ``[visual ; text]`` features (``F``) and for the ID embeddings (``E``).
4. Meta-network (modal-shared knowledge): ``meta_net(F)`` (detached) -> two MLPs -> per node low-rank
   matrices ``W1 [d, rank]``, ``W2 [rank, d]`` (+ their mean over nodes, softmax along ``d`` / ``rank``);
   shared = ``E W1 W2``.
5. Representation = ``[prelu(F_v) + E ; prelu(F_t) + E ; prelu(shared) + E]`` (3d); score = dot product.

Loss = BPR + ``cl_loss_weight`` * InfoNCE(F_v, F_t; temperature ``cl_tmp``, unique batch users and unique
batch items (pos and neg), in-batch negatives) + ``diff_loss_weight`` * orthogonal constraint
(:func:`orthogonal_loss` of F_v against F_t for the batch users and the batch positive items). L2
regularisation is AdamW's decoupled weight decay (``weight_decay``, the reference's ``reg_weight``).
"""
from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from ._graph import knn_indices, spmm, sym_spmm, to_csr, transpose_csr
from ..config import param
from .base import MULTIMODAL_ROLES, MultimodalConfig, Recommender, bpr_logsigmoid, register
from .vbpr import item_modalities

log = logging.getLogger(__name__)

#: the reference keeps at most this many strongest co-occurring neighbours per user / item
CO_OCCURRENCE_CAP = 200


# ---------------------------------------------------------------------------- graphs
def co_occurrence_counts(inter: sp.spmatrix) -> sp.csr_matrix:
    """``B B^T`` with a zero diagonal for the binarised rows of ``inter``: how many columns two rows share.

    ``inter`` = the [users, items] training matrix gives the user co-occurrence counts; its transpose the
    item ones.
    """
    b = sp.csr_matrix(inter, dtype=np.float32, copy=True)
    b.sum_duplicates()
    b.data[:] = 1.0
    c = (b @ b.T).tocsr()
    c = (c - sp.diags(c.diagonal())).tocsr()
    c.eliminate_zeros()
    c.sort_indices()
    return c


def co_occurrence_graph(counts: sp.csr_matrix, k: int, popularity: np.ndarray,
                        generator: torch.Generator | None = None, cap: int = CO_OCCURRENCE_CAP) -> torch.Tensor:
    """The row-stochastic top-``k`` co-occurrence graph (see the module docstring) as sparse COO [n, n].

    Args:
        counts: co-occurrence counts [n, n] (:func:`co_occurrence_counts`).
        k: neighbour slots per row.
        popularity: [n] training degree of each entity; the fallback neighbours of a row without any
            co-occurrence are the most popular entities (degree > 0), ties by index.
        generator: RNG of the padding draws (seeded by the model, so a rebuilt model has the same graph).
        cap: at most this many strongest neighbours are candidates (the reference's 200).
    """
    n = counts.shape[0]
    counts = counts.tocsr()
    lens = np.diff(counts.indptr)
    rows = np.repeat(np.arange(n), lens)
    order = np.lexsort((counts.indices, -counts.data, rows))  # per row: count desc, then column asc
    cols, vals = counts.indices[order].astype(np.int64), counts.data[order].astype(np.float64)
    avail = np.minimum(lens, cap)
    slot = np.broadcast_to(np.arange(k), (n, k))
    draw = torch.rand((n, k), generator=generator, dtype=torch.float64).numpy()
    pick = np.where(slot < avail[:, None], slot, np.floor(draw * avail[:, None]).astype(np.int64))
    flat = np.minimum(counts.indptr[:-1, None] + pick, max(len(cols) - 1, 0))
    nb_cols = cols[flat] if len(cols) else np.zeros((n, k), np.int64)
    logits = vals[flat] if len(vals) else np.zeros((n, k))
    valid = np.ones((n, k), bool)
    empty = avail == 0
    if empty.any():
        pop = np.asarray(popularity, np.float64)
        ranked = np.lexsort((np.arange(n), -pop))
        ranked = ranked[pop[ranked] > 0][:k]
        share = np.zeros(k)
        share[:len(ranked)] = pop[ranked] / max(pop[ranked].sum(), 1e-12)
        fill = np.zeros(k, np.int64)
        fill[:len(ranked)] = ranked
        nb_cols[empty], logits[empty] = fill, share
        valid[empty] = np.arange(k) < len(ranked)
    logits = torch.from_numpy(logits).float().masked_fill(~torch.from_numpy(valid), float("-inf"))
    w = torch.softmax(logits, dim=1).nan_to_num(0.0)  # a row with no valid slot at all: zeros
    idx = torch.stack([torch.arange(n).repeat_interleave(k), torch.from_numpy(nb_cols).reshape(-1)])
    return torch.sparse_coo_tensor(idx, w.reshape(-1), (n, n),  # duplicated slots add up
                                   check_invariants=False).coalesce()


def knn_similarity_graph(feat: torch.Tensor, k: int) -> torch.Tensor:
    """Top-``k`` cosine neighbours of each row (self included) weighted by the similarity / (k + 1e-7).

    The reference's D^-1/2 S D^-1/2 with D the *binary* degree, which is ``k`` on every row. ``k`` is capped
    at the number of rows.
    """
    n = feat.shape[0]
    k = min(int(k), n)
    ind = knn_indices(feat, k)
    xn = F.normalize(feat.float(), dim=1)
    rows, cols = torch.arange(n).repeat_interleave(k), ind.reshape(-1)
    vals = (xn[rows] * xn[cols]).sum(1) / (k + 1e-7)
    return torch.sparse_coo_tensor(torch.stack([rows, cols]), vals, (n, n), check_invariants=False).coalesce()


def user_interests(train: sp.csr_matrix, feat: torch.Tensor) -> torch.Tensor:
    """[n_users, d]: the mean raw feature of each user's training items (zeros for a user without any)."""
    deg = np.asarray(train.sum(1)).ravel()
    s = torch.from_numpy(np.asarray(train @ feat.double().numpy())).float()
    return s / torch.from_numpy(np.maximum(deg, 1.0)).float()[:, None]


def mix(a: torch.Tensor, b: torch.Tensor, w: float) -> torch.Tensor:
    """``w * a + (1 - w) * b`` of two sparse COO graphs."""
    return (a * w + b * (1.0 - w)).coalesce()


# ---------------------------------------------------------------------------- losses
def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """InfoNCE of row i of ``a`` against row i of ``b`` (positives), the other rows of ``b`` as negatives,
    on L2-normalised rows; mean of -log softmax (log-sum-exp form of the reference's exp/sum/log)."""
    a, b = F.normalize(a, dim=1), F.normalize(b, dim=1)
    logits = a @ b.T / temperature
    return (torch.logsumexp(logits, dim=1) - logits.diagonal()).mean()


def orthogonal_loss(x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
    """Modal-unique orthogonal constraint: mean of the squared entries of ``X1^T X2`` [d1, d2], where the
    rows of each input are centred over the batch and divided by their (detached) L2 norm + 1e-6.

    Zero when every centred column of ``x1`` is orthogonal to every centred column of ``x2``; it pushes the
    visual and text parts of a representation to carry different information.
    """
    x1 = x1 - x1.mean(0, keepdim=True)
    x2 = x2 - x2.mean(0, keepdim=True)
    x1 = x1 / (x1.norm(dim=1, keepdim=True).detach() + 1e-6)
    x2 = x2 / (x2.norm(dim=1, keepdim=True).detach() + 1e-6)
    return (x1.T @ x2).pow(2).mean()


def lightgcn_mean(adj: torch.Tensor, x: torch.Tensor, n_layers: int) -> torch.Tensor:
    """Mean of ``x`` and its ``n_layers`` propagations over the symmetric ``adj``."""
    acc = x
    for _ in range(n_layers):
        x = sym_spmm(adj, x)
        acc = acc + x
    return acc / (n_layers + 1)


class _MetaMLP(nn.Module):
    """Linear -> PReLU -> Linear -> L2-normalise: maps a node's meta-knowledge to a flattened matrix."""

    def __init__(self, d_in: int, d_out: int):
        super().__init__()
        self.linear_pre = nn.Linear(d_in, d_out)
        self.prl = nn.PReLU()
        self.linear_out = nn.Linear(d_out, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.linear_out(self.prl(self.linear_pre(x))), dim=-1)


# ---------------------------------------------------------------------------- model
def dropout_keep_mask(shape: tuple[int, ...], p: float, rng: np.random.Generator) -> torch.Tensor:
    """A bool mask, True with probability 1 - p (to 1/65536: uniform 16-bit draws against ceil(p * 2**16)).

    numpy's PCG64 bytes are ~4x cheaper than ``torch.rand`` on CPU, and these masks are [items, d, d]."""
    if p >= 1.0:
        return torch.zeros(shape, dtype=torch.bool)
    n = int(np.prod(shape))
    draws = np.frombuffer(rng.bytes(2 * n), dtype=np.uint16).reshape(shape)
    return torch.from_numpy(draws >= np.uint16(min(int(np.ceil(p * 65536)), 65535)))


class _ScalarTokenSoftmaxAttention(torch.autograd.Function):
    """``out_i = sum_j keep_ij * softmax_j(q_i k_j) * v_j`` for each row (``q, k, v``: [B, L]; ``keep``: a 0/1
    float mask [B, L, L] or None), with a hand-written backward, a block of rows at a time.

    Why: the [B, L, L] weights are 16 MB for 1,000 items of 64 features. Built whole, the forward and
    autograd's backward passed over them about fifteen times in DRAM, which was three quarters of a REARM
    step on CPU. A block of :attr:`ROWS` rows fits in cache. The matrix-vector products are a product and a
    sum (several times faster on CPU than a ``bmm`` with a last dimension of 1). The softmax is kept for the
    backward (writing it is cheaper than its exponentials again). Same values as the whole-tensor form:
    ``tests/test_graph_step_rules.py``.
    """

    ROWS = 64

    @staticmethod
    def forward(ctx, q, k, v, keep):
        out = torch.empty_like(q)
        soft = torch.empty(q.shape[0], q.shape[1], k.shape[1], dtype=q.dtype, device=q.device)
        rows = _ScalarTokenSoftmaxAttention.ROWS if q.device.type == "cpu" else max(1, q.shape[0])
        for r in range(0, q.shape[0], rows):
            b = slice(r, r + rows)
            w = torch.softmax(q[b, :, None] * k[b, None, :], dim=-1)
            soft[b] = w
            if keep is not None:
                w.mul_(keep[b])
            out[b] = (w * v[b, None, :]).sum(-1)
        ctx.save_for_backward(q, k, v, keep, soft)
        ctx.rows = rows
        return out

    @staticmethod
    def backward(ctx, grad):
        q, k, v, keep, soft = ctx.saved_tensors
        dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        for r in range(0, q.shape[0], ctx.rows):
            b = slice(r, r + ctx.rows)
            w, g = soft[b], grad[b]
            dw = g[:, :, None] * v[b, None, :]  # d out / d (kept weights)
            if keep is not None:
                dv[b] = torch.bmm(g[:, None, :], w * keep[b]).squeeze(1)
                dw.mul_(keep[b])
            else:
                dv[b] = torch.bmm(g[:, None, :], w).squeeze(1)
            ds = dw.sub_((w * dw).sum(-1, keepdim=True)).mul_(w)  # softmax backward: d scores
            dq[b] = (ds * k[b, None, :]).sum(-1)
            dk[b] = torch.bmm(q[b, None, :], ds).squeeze(1)
        return dq, dk, dv, None


def scalar_token_attention(attn: nn.MultiheadAttention, q: torch.Tensor, kv: torch.Tensor,
                           training: bool, rng: np.random.Generator | None = None) -> torch.Tensor:
    """``attn(q, kv, kv)`` of an ``nn.MultiheadAttention(1, 1)`` whose tokens are the ``L`` scalar features of
    each row (``q``, ``kv``: [B, L]; returns [B, L]), computed from the module's own parameters.

    Same math as the module (in-projection, softmax over keys, dropout ``attn.dropout`` on the weights in
    training, out-projection; 1/sqrt(head_dim) = 1), without its generic path: with one-dimensional tokens
    the scores are an outer product (:class:`_ScalarTokenSoftmaxAttention`), and the module's masking
    checks and Bernoulli dropout over the [B, L, L] weights were most of a REARM step on CPU. The dropout
    mask comes from ``rng`` on CPU (:func:`dropout_keep_mask`), else ``uniform >= p``.
    """
    w, b = attn.in_proj_weight[:, 0], attn.in_proj_bias
    qs, ks, vs = q * w[0] + b[0], kv * w[1] + b[1], kv * w[2] + b[2]
    p = float(attn.dropout)
    if training and p >= 1.0:  # every weight dropped (F.dropout's p = 1): only the out-projection's bias is left
        return torch.zeros_like(q) + attn.out_proj.bias[0] + 0.0 * (qs.sum() + ks.sum() + vs.sum())
    keep = None
    if training and p > 0.0:  # inverted dropout, its 1 / (1 - p) folded into the values (one pass fewer)
        shape = (q.shape[0], q.shape[1], q.shape[1])
        keep = (dropout_keep_mask(shape, p, rng) if rng is not None and q.device.type == "cpu"
                else torch.rand(shape, device=q.device) >= p).to(device=q.device, dtype=q.dtype)
        vs = vs / (1.0 - p)
    out = _ScalarTokenSoftmaxAttention.apply(qs, ks, vs, keep)
    return out * attn.out_proj.weight[0, 0] + attn.out_proj.bias[0]


class REARMConfig(MultimodalConfig):
    """The reference's utils/parser.py defaults; grids = the values of the reference README's tuned
    Baby / Sports / Clothing commands (the reference publishes no search space beyond them)."""

    seed: int = param(2025)
    embedding_size: int = param(64, ge=1)  # embedding_dim (also the feature projection width)
    learner: str = param("adamw")
    learning_rate: float = param(5e-5, ge=0.0)  # l_r
    weight_decay: float = param(5e-4, ge=0.0, grid=[0.0005, 0.05, 0.00001])  # reg_weight (AdamW)
    epochs: int = param(2000, ge=1)  # num_epoch
    eval_batch_size: int = param(8192, ge=1)
    topk: list[int] = param([10, 20], min_length=1)
    metrics: list[str] = param(["precision", "recall", "ndcg"], min_length=1)
    n_layers: int = param(4, ge=0, grid=[4, 5])  # num_layer: user-item LightGCN layers
    s_drop: float = param(0.4, ge=0.0, le=1.0, grid=[0.4, 1.0])  # self-attention dropout
    m_drop: float = param(0.6, ge=0.0, le=1.0, grid=[0.6, 0.2, 0.1])  # cross-attention dropout
    cl_tmp: float = param(0.6, gt=0.0, grid=[0.6, 1.5, 0.03])
    cl_loss_weight: float = param(5e-6, ge=0.0, grid=[5e-6, 1e-3, 1e-6])
    diff_loss_weight: float = param(1e-4, ge=0.0, grid=[5e-5, 5e-4, 1e-5])
    user_knn_k: int = param(40, ge=1, grid=[40, 25, 45])
    item_knn_k: int = param(10, ge=1, grid=[10, 5])
    i_mm_image_weight: float = param(0.0, ge=0.0, le=1.0, grid=[0.0, 0.2, 0.1])
    u_mm_image_weight: float = param(0.2, ge=0.0, le=1.0, grid=[0.2, 0.0, 0.1])
    n_ii_layers: int = param(1, ge=0, grid=[1, 2])
    n_uu_layers: int = param(1, ge=0, grid=[1, 2])
    rank: int = param(3, ge=1, grid=[3, 7])  # low rank of the meta-network's transformation
    uu_co_weight: float = param(0.4, ge=0.0, le=1.0, grid=[0.4, 0.9, 0.7])
    ii_co_weight: float = param(0.2, ge=0.0, le=1.0, grid=[0.2, 0.1])


@register("REARM")
class REARM(Recommender):
    """Homography-strengthened ID/feature propagation, item attention fusion, a meta-network for the
    modal-shared part and an orthogonal constraint on the modal-unique parts (see the module docstring).

    Both modality slots (visual, text) are part of the architecture; with one modality in the data it fills
    both slots (the reference requires both).

    Reference:
        Paper: Shouxing Ma, Yawen Zeng, Shiqing Wu, Guandong Xu. "Refining Contrastive Learning and
        Homography Relations for Multi-Modal Recommendation". ACM Multimedia (MM) 2025.
        Code: MrShouxingMa/REARM model.py, utils/helper.py, utils/data_loader.py (protocol and defaults
        followed here).
    """

    modality_roles = MULTIMODAL_ROLES
    config_class = REARMConfig

    def __init__(self, data, config):
        super().__init__(data, config)
        d = self.d = int(self.hp("embedding_size"))
        self.rank = int(self.hp("rank"))
        self.n_layers, self.n_ii, self.n_uu = (int(self.hp(k)) for k in ("n_layers", "n_ii_layers", "n_uu_layers"))
        self.cl_tmp = float(self.hp("cl_tmp"))
        self.cl_w, self.diff_w = float(self.hp("cl_loss_weight")), float(self.hp("diff_loss_weight"))

        feats = item_modalities(self, data)
        if len(feats) == 1:
            log.info("REARM: only %s features; they fill both modality slots", next(iter(feats)))
        v_feat = feats.get("image", feats.get("text"))
        t_feat = feats.get("text", v_feat)
        train = data.train_csr()
        u_v, u_t = user_interests(train, v_feat), user_interests(train, t_feat)
        self._build_graphs(data, train, v_feat, t_feat, u_v, u_t, "image" in feats and "text" in feats)

        self.user_id_embedding = nn.Embedding(self.n_users, d)
        self.item_id_embedding = nn.Embedding(self.n_items, d)
        nn.init.normal_(self.user_id_embedding.weight, std=0.1)
        nn.init.normal_(self.item_id_embedding.weight, std=0.1)
        # raw item features and user interests are trainable (the reference's from_pretrained(freeze=False)
        # and nn.Parameter(interest)); the frozen graphs above were built from their initial values
        self.image_embedding = nn.Parameter(v_feat.clone())
        self.text_embedding = nn.Parameter(t_feat.clone())
        self.user_v_prefer = nn.Parameter(u_v)
        self.user_t_prefer = nn.Parameter(u_t)
        self.image_i_trs, self.image_u_trs = nn.Linear(v_feat.shape[1], d), nn.Linear(v_feat.shape[1], d)
        self.text_i_trs, self.text_u_trs = nn.Linear(t_feat.shape[1], d), nn.Linear(t_feat.shape[1], d)
        for lin in (self.image_i_trs, self.text_i_trs, self.image_u_trs, self.text_u_trs):
            nn.init.xavier_normal_(lin.weight)  # biases keep torch's default init, as in the reference

        self.ly_norm = nn.LayerNorm(d)  # one LayerNorm and one PReLU shared by every block
        self.prl = nn.PReLU()
        s_drop, m_drop = float(self.hp("s_drop")), float(self.hp("m_drop"))
        # attention-dropout masks (CPU): seeded from torch's stream, so a seeded run is reproducible
        self._mask_rng = np.random.default_rng(int(torch.randint(0, 2 ** 62, (1,)).item()))
        self.self_i_attn1 = nn.MultiheadAttention(1, 1, dropout=s_drop, batch_first=True)  # visual
        self.self_i_attn2 = nn.MultiheadAttention(1, 1, dropout=s_drop, batch_first=True)  # text
        self.mutual_i_attn1 = nn.MultiheadAttention(1, 1, dropout=m_drop, batch_first=True)  # text -> visual
        self.mutual_i_attn2 = nn.MultiheadAttention(1, 1, dropout=m_drop, batch_first=True)  # visual -> text
        dk = d * self.rank
        self.mlp_u1, self.mlp_u2 = _MetaMLP(d, dk), _MetaMLP(d, dk)
        self.mlp_i1, self.mlp_i2 = _MetaMLP(d, dk), _MetaMLP(d, dk)
        # the meta-networks' outputs are detached (as in the reference), so they keep their initial weights
        self.meta_netu, self.meta_neti = nn.Linear(2 * d, d), nn.Linear(2 * d, d)
        self._cache: torch.Tensor | None = None

    # ------------------------------------------------------------------ graphs
    def _build_graphs(self, data, train: sp.csr_matrix, v_feat, t_feat, u_v, u_t, two_modalities: bool) -> None:
        """The frozen graphs as CSR buffers (not saved: rebuilt identically from the data and the seed)."""
        uk, ik = int(self.hp("user_knn_k")), int(self.hp("item_knn_k"))
        gen = torch.Generator().manual_seed(int(self.hp("seed")))  # co-occurrence padding draws
        user_co = co_occurrence_graph(co_occurrence_counts(train), uk, np.diff(train.indptr), gen)
        train_t = train.T.tocsr()
        item_co = co_occurrence_graph(co_occurrence_counts(train_t), ik, np.diff(train_t.indptr), gen)
        if two_modalities:
            i_mm = mix(knn_similarity_graph(v_feat, ik), knn_similarity_graph(t_feat, ik),
                       float(self.hp("i_mm_image_weight")))
            u_mm = mix(knn_similarity_graph(u_v, uk), knn_similarity_graph(u_t, uk),
                       float(self.hp("u_mm_image_weight")))
        else:
            i_mm, u_mm = knn_similarity_graph(t_feat, ik), knn_similarity_graph(u_t, uk)
        ii = mix(item_co, i_mm, float(self.hp("ii_co_weight")))
        uu = mix(user_co, u_mm, float(self.hp("uu_co_weight")))
        for name, g in (("ii_graph", ii), ("uu_graph", uu)):
            csr = to_csr(g)
            self.register_buffer(name, csr, persistent=False)
            self.register_buffer(name + "_t", transpose_csr(csr), persistent=False)
        self.register_buffer("norm_adj", to_csr(data.norm_adj()), persistent=False)

    @staticmethod
    def _propagate_last(adj, adj_t, x: torch.Tensor, n_layers: int) -> torch.Tensor:
        for _ in range(n_layers):
            x = spmm(adj, x, adj_t)
        return x

    # ------------------------------------------------------------------ forward
    def _attend(self, attn: nn.MultiheadAttention, q: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        """prelu(LayerNorm(kv + attn(q, kv, kv))) with every feature dimension a 1-d token."""
        return self.prl(self.ly_norm(kv + scalar_token_attention(attn, q, kv, self.training, self._mask_rng)))

    def _meta_share(self, ids: torch.Tensor, feats: torch.Tensor, meta: nn.Linear, mlp1: _MetaMLP,
                    mlp2: _MetaMLP) -> torch.Tensor:
        """``ids W1 W2`` with per-node low-rank W1 [d, r], W2 [r, d] generated from the detached
        meta-knowledge of ``feats``; each matrix adds its mean over the nodes and is softmaxed along d / r."""
        know = meta(feats).detach()
        w1 = mlp1(know).reshape(-1, self.d, self.rank)
        w2 = mlp2(know).reshape(-1, self.rank, self.d)
        w1 = torch.softmax(w1 + w1.mean(0), dim=1)
        w2 = torch.softmax(w2 + w2.mean(0), dim=1)
        return torch.einsum("nr,nrd->nd", torch.einsum("nd,ndr->nr", ids, w1), w2)

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(representation [U+I, 3d], propagated [visual ; text] features F [U+I, 2d])."""
        d, nu = self.d, self.n_users
        items = torch.cat([self.item_id_embedding.weight, self.image_i_trs(self.image_embedding),
                           self.text_i_trs(self.text_embedding)], 1)
        items = F.normalize(self._propagate_last(self.ii_graph, self.ii_graph_t, items, self.n_ii), dim=1)
        users = torch.cat([self.user_id_embedding.weight, self.image_u_trs(self.user_v_prefer),
                           self.text_u_trs(self.user_t_prefer)], 1)
        users = F.normalize(self._propagate_last(self.uu_graph, self.uu_graph_t, users, self.n_uu), dim=1)

        i_v = self._attend(self.self_i_attn1, items[:, d:2 * d], items[:, d:2 * d])
        i_t = self._attend(self.self_i_attn2, items[:, 2 * d:], items[:, 2 * d:])
        i_t2v = self._attend(self.mutual_i_attn1, i_t, i_v)
        i_v2t = self._attend(self.mutual_i_attn2, i_v, i_t)
        feat = torch.cat([torch.cat([self.prl(users[:, d:2 * d]), self.prl(users[:, 2 * d:])], 1),
                          torch.cat([i_t2v, i_v2t], 1)], 0)
        feat = lightgcn_mean(self.norm_adj, feat, self.n_layers)
        ids = lightgcn_mean(self.norm_adj, torch.cat([users[:, :d], items[:, :d]], 0), self.n_layers)

        share = torch.cat([self._meta_share(ids[:nu], feat[:nu], self.meta_netu, self.mlp_u1, self.mlp_u2),
                           self._meta_share(ids[nu:], feat[nu:], self.meta_neti, self.mlp_i1, self.mlp_i2)], 0)
        rep = torch.cat([self.prl(feat[:, :d]) + ids, self.prl(feat[:, d:]) + ids, self.prl(share) + ids], 1)
        return rep, feat

    def calculate_loss(self, batch):
        users, pos, neg = batch
        rep, feat = self.forward()
        nu, d = self.n_users, self.d
        u, p, n = rep[users], rep[nu + pos], rep[nu + neg]
        loss = bpr_logsigmoid((u * p).sum(1), (u * n).sum(1))
        uu = torch.unique(users)
        ii = nu + torch.unique(torch.cat([pos, neg]))
        cl = info_nce(feat[ii, :d], feat[ii, d:], self.cl_tmp) + info_nce(feat[uu, :d], feat[uu, d:], self.cl_tmp)
        diff = (orthogonal_loss(feat[users, :d], feat[users, d:])
                + orthogonal_loss(feat[nu + pos, :d], feat[nu + pos, d:]))
        return loss + self.cl_w * cl + self.diff_w * diff

    # ------------------------------------------------------------------ evaluation
    def prepare_eval(self):
        with torch.no_grad():
            self._cache = self.forward()[0]

    def end_eval(self):
        self._cache = None

    def full_sort_predict(self, users):
        rep = self._cache if self._cache is not None else self.forward()[0]
        return rep[users] @ rep[self.n_users:].T
