"""CM3 (Zhou, Wang & Shen, "CM3: Calibrating Multimodal Recommendation", arXiv 2508.01226, 2025), following the
authors' code (github.com/enoche/CM3, src/models/cm3.py, src/configs/model/CM3.yaml), re-written here.

Why: BPR-trained multimodal models over-weight *uniformity* (spreading every item evenly on the hypersphere) at
the cost of *alignment*. CM3 trains directly on alignment + uniformity, and calibrates the item uniformity with
the items' multimodal similarity, so that items with similar content are repelled less and may sit close.

Model
  * Channels: one per modality m plus a shared one. Item side of channel m: ``MLP_m(x_m)`` (Linear f->4d,
    leaky ReLU, Linear 4d->d without bias) on the fixed raw features; user side: a free preference table
    ``P_m`` [n_users, d]. Shared channel: items get the *spherical Bézier fusion* of the modalities, users a
    free table ``P_id``. Every node's channel vector is L2-normalized, the channels concatenated ([U+I, C*d]).
  * Spherical Bézier fusion: each modality is projected (Linear f->d) and L2-normalized, giving M control
    points on the unit sphere; de Casteljau's construction with slerp in place of the straight-line
    interpolation (M-1 rounds of slerp between neighbours at the same parameter t) yields one point of the
    spherical Bézier curve, again on the sphere, for any M (M = 1: the projected modality itself; M = 2: the
    reference's slerp(text, image)). t is drawn per item from Beta(alpha, alpha) at every forward pass.
  * Graph encoder: LightGCN over D^-1/2 A D^-1/2 of the user-item graph, ``n_ui_layers`` propagations,
    layers *summed* (not averaged). Users: channel c scaled by softmax over channels of a learned per-user
    vector ``theta_u``. Items: ``h + S^n_mm_layers h`` with S the frozen multimodal item-item kNN graph
    (FREEDOM's: binary top-``knn_k`` cosine graph per modality, D^-1/2 A D^-1/2, mixed
    ``mm_image_weight * image + (1 - mm_image_weight) * rest``; shared kNN cache keyed by content + k).
  * Loss (u, p, n = L2-normalized user, positive and negative representations of the batch):
        align(u, p) + gamma * (unif(u) + calibrated_unif(n, s)) / 2
    with align = mean ||u - p||^2, unif(x) = log mean_{i<j} exp(-t ||x_i - x_j||^2) (t = 2) and
    calibrated_unif(x, s) = log mean_{i<j} exp(-t (||x_i - x_j||^2 - 2 + 2 s_ij)), where s_ij is the cosine of
    the fused features of items i, j clamped to [min_sim, max_sim]. Pair (i, j)'s repulsion is thus scaled by
    exp(2t (1 - s_ij)): the more similar their content, the weaker the push apart. s is not detached
    (as in the reference), so the calibration also trains the fusion projections.
  * Scores: <user_rep, item_rep> of the *un-normalized* representations (as the reference's result_embed).

Differences from the reference code
  * Any number (>= 1) of modality roles; the reference requires exactly text + image. For M = 2 the fusion is
    slerp(text, image; t); the reference writes it with t and 1 - t swapped, the same law since Beta(a, a)
    is symmetric. With M > 2 roles the kNN graphs of the non-image roles share ``1 - mm_image_weight``.
  * ``weight_decay`` (grid [0, 1e-6] in the yaml) is applied by this project's Adam; the reference's own
    trainer builds Adam without it, so there the key has no effect (default 0: identical).
  * Evaluation embeddings are recomputed with the current weights in ``prepare_eval`` (the reference scores with
    the embeddings of the last training batch's forward pass, i.e. before the last optimizer step), with the
    Bézier parameters drawn from Beta(alpha, alpha) by a generator seeded with ``seed`` (same distribution as
    training, but the same draw at every evaluation, so valid and test use identical item vectors).
  * The slerp angle's clamp uses 1e-6 (the reference's 1e-8 is below float32 resolution, so parallel
    vectors would give 0/0); pair sums use logsumexp over a Gram matrix of the batch's *distinct* users /
    negatives weighted by their multiplicities, instead of ``pdist`` over all batch pairs (same values).
  * A batch with fewer than two rows has no pairs: its uniformity terms are 0 (the reference returns NaN).
  * Unused reference keys/weights are not declared: ``n_layers``, ``weight_size``, ``lambda_coeff``,
    ``feat_embed_dim``, ``dropout`` (the reference has no edge dropout: a value > 0 leaves its graph unset),
    and its trainable copies of the raw features (never read by its forward pass).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import model_validator
from torch import nn

from ._graph import attach_item_graphs, spmm, sym_spmm
from ..config import param
from .base import MULTIMODAL_ROLES, MultimodalConfig, Recommender, register
from .vbpr import item_modalities


UNIFORMITY_T = 2.0  # the reference's temperature t of the (calibrated) uniformity loss (hard-coded there)
SLERP_EPS = 1e-6  # clamp of the cosine before acos: keeps sin(theta) > 0 in float32


# ---------------------------------------------------------------------------- spherical Bézier fusion
def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical linear interpolation of unit row vectors: sin((1-t)θ)/sinθ · a + sin(tθ)/sinθ · b.

    Args:
        a, b: [..., n, d] unit vectors.
        t: [n] interpolation parameter per row (0 -> a, 1 -> b).
    """
    dot = (a * b).sum(-1).clamp(-1.0 + SLERP_EPS, 1.0 - SLERP_EPS)
    theta = torch.acos(dot)
    sin = torch.sin(theta)
    wa = torch.sin((1.0 - t) * theta) / sin
    wb = torch.sin(t * theta) / sin
    return wa.unsqueeze(-1) * a + wb.unsqueeze(-1) * b


def spherical_bezier(points: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The point at parameter ``t`` of the spherical Bézier curve with control points ``points``.

    De Casteljau's algorithm with slerp: each round replaces the M control points by the M-1 slerps of
    neighbours at t; after M-1 rounds one point remains. Slerp of unit vectors is a unit vector, so the
    result stays on the sphere for any M. The loop is over modalities (M-1 rounds), never over rows.

    Args:
        points: [M, n, d] unit vectors (M modalities, n items).
        t: [n] per-item curve parameter in [0, 1].

    Returns:
        [n, d] unit vectors; for M = 1 the single control point itself.
    """
    while points.shape[0] > 1:
        points = slerp(points[:-1], points[1:], t)
    return points[0]


# ---------------------------------------------------------------------------- losses
def alignment(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """mean_i ||x_i - y_i||^2: interacting users and items should coincide."""
    return (x - y).pow(2).sum(1).mean()


def _pair_sq_dists(x: torch.Tensor) -> torch.Tensor:
    """[n, n] squared Euclidean distances via the Gram matrix (one GEMM instead of pdist's pair loop)."""
    sq = x.pow(2).sum(1)
    return (sq[:, None] + sq[None, :] - 2.0 * (x @ x.T)).clamp_min(0.0)


def _log_mean_exp_pairs(logits: torch.Tensor, counts: torch.Tensor | None = None) -> torch.Tensor:
    """log mean_{i<j} exp(logits_ij) over the pairs of a batch, from a symmetric [m, m] matrix, stably.

    Without ``counts`` the m rows are the batch (the diagonal, i = j, is no pair). With ``counts`` the rows
    are the batch's *distinct* rows, row a occurring counts[a] times: pair (a, b) stands for c_a c_b batch
    pairs (a != b) and (a, a) for c_a (c_a - 1) pairs of equal rows at different positions -- the same
    value as on the full batch, on an m x m instead of an n x n matrix (users and negatives repeat a lot
    in a batch of a small catalogue).
    """
    m = logits.shape[0]
    if counts is None:
        counts = torch.ones(m, device=logits.device, dtype=logits.dtype)
    c = counts.to(logits.dtype)
    n = float(c.sum())
    if n < 2:  # no pairs: nothing to spread out
        return logits.new_zeros(())
    w = c[:, None] * c[None, :] - torch.diag(c)  # number of batch pairs each entry stands for
    # symmetric: the full off-diagonal sum is twice the i<j sum, over twice as many pairs
    return torch.logsumexp((logits + torch.log(w)).reshape(-1), 0) - math.log(n * (n - 1))


def uniformity(x: torch.Tensor, t: float = UNIFORMITY_T, counts: torch.Tensor | None = None) -> torch.Tensor:
    """log mean_{i<j} exp(-t ||x_i - x_j||^2) (Wang & Isola): low when the rows spread over the sphere.
    ``counts``: multiplicities when ``x`` holds a batch's distinct rows (see :func:`_log_mean_exp_pairs`)."""
    return _log_mean_exp_pairs(-t * _pair_sq_dists(x), counts)


def calibrated_uniformity(x: torch.Tensor, sim: torch.Tensor, t: float = UNIFORMITY_T,
                          counts: torch.Tensor | None = None) -> torch.Tensor:
    """log mean_{i<j} exp(-t (||x_i - x_j||^2 - 2 + 2 sim_ij)).

    For unit rows ||x_i - x_j||^2 - 2 = -2 cos(x_i, x_j), so each pair's term is the plain uniformity term
    times exp(2t (1 - sim_ij)): the repulsion between items (its share of the loss and of the gradient) is
    down-weighted the more similar the items' multimodal content is (sim = 1: weight 1; sim = 0: e^{2t}).

    Args:
        x: [n, d] item representations (L2-normalized).
        sim: [n, n] symmetric content similarity of the same items (clamped cosine).
        counts: multiplicities when ``x`` holds a batch's distinct rows (see :func:`_log_mean_exp_pairs`).
    """
    return _log_mean_exp_pairs(-t * (_pair_sq_dists(x) - 2.0 + 2.0 * sim), counts)


def content_similarity(f: torch.Tensor, min_sim: float, max_sim: float) -> torch.Tensor:
    """[n, n] cosine similarity of the rows of ``f``, clamped to [min_sim, max_sim]."""
    fn = f / f.norm(dim=1, keepdim=True)
    return (fn @ fn.T).clamp(min_sim, max_sim)


# ---------------------------------------------------------------------------- config and model
class CM3Config(MultimodalConfig):
    """enoche/CM3 src/configs/model/CM3.yaml (grid lists: ``hyper_parameters`` there; default = first value)."""

    embedding_size: int = param(64, ge=1)
    knn_k: int = param(10, ge=1)
    mm_image_weight: float = param(0.1, ge=0.0, le=1.0)
    n_mm_layers: int = param(1, ge=0)
    n_ui_layers: int = param(3, ge=0, grid=[3, 4])
    gamma: float = param(0.5, ge=0.0, grid=[0.5, 0.9])
    min_sim: float = param(0.0, ge=-1.0, le=1.0)
    max_sim: float = param(0.8, ge=-1.0, le=1.0, grid=[0.8, 1.0])
    alpha: float = param(0.1, gt=0.0, grid=[0.1, 0.5, 0.9])
    weight_decay: float = param(0.0, ge=0.0, grid=[0.0, 1e-6])
    stopping_step: int = param(10, ge=0)
    graph_cache_dir: str | None = param(None)  # where frozen kNN graphs are kept across processes

    @model_validator(mode="after")
    def _sim_range(self) -> "CM3Config":
        if self.min_sim > self.max_sim:
            raise ValueError(f"CM3: min_sim ({self.min_sim}) must not exceed max_sim ({self.max_sim})")
        return self


@register("CM3")
class CM3(Recommender):
    """Per-modality + Bézier-fused channels, LightGCN + item kNN graph, calibrated alignment/uniformity loss.

    Reference:
        Paper: Xin Zhou, Yongjie Wang, Zhiqi Shen. "CM3: Calibrating Multimodal Recommendation".
        arXiv 2508.01226, 2025.
        Code: enoche/CM3 src/models/cm3.py, src/configs/model/CM3.yaml (MMRec-based; math, defaults and
        protocol followed here).
    """

    modality_roles = MULTIMODAL_ROLES
    config_class = CM3Config

    def __init__(self, data, config):
        super().__init__(data, config)
        d = int(self.hp("embedding_size"))
        self.d = d
        self.n_ui_layers = int(self.hp("n_ui_layers"))
        self.n_mm_layers = int(self.hp("n_mm_layers"))
        self.gamma = float(self.hp("gamma"))
        self.min_sim, self.max_sim = float(self.hp("min_sim")), float(self.hp("max_sim"))
        self.alpha = float(self.hp("alpha"))
        self.eval_seed = int(self.config.get("seed", 0))

        feats = item_modalities(self, data)
        self.modalities = tuple(feats)
        for r, f in feats.items():  # fixed inputs (the reference reads the plain feature tensors)
            self.register_buffer(f"feat_{r}", f, persistent=False)
        # channel encoders (item side) and free user preferences (user side), one per modality
        self.mlp = nn.ModuleDict({r: nn.Sequential(nn.Linear(f.shape[1], 4 * d), nn.LeakyReLU(),
                                                   nn.Linear(4 * d, d, bias=False)) for r, f in feats.items()})
        self.fuse_proj = nn.ModuleDict({r: nn.Linear(f.shape[1], d) for r, f in feats.items()})
        for lin in self.fuse_proj.values():
            nn.init.xavier_normal_(lin.weight)
        n_ch = len(self.modalities) + 1  # + the shared (fused) channel
        self.preference = nn.ParameterDict({r: nn.Parameter(nn.init.xavier_normal_(torch.empty(self.n_users, d)))
                                            for r in self.modalities})
        self.id_preference = nn.Parameter(nn.init.xavier_normal_(torch.empty(self.n_users, d)))
        self.theta = nn.Parameter(nn.init.xavier_normal_(torch.empty(self.n_users, n_ch, 1)))

        attach_item_graphs(self, data, feats, int(self.hp("knn_k")), float(self.hp("mm_image_weight")),
                           self.hp("graph_cache_dir"))

    # ------------------------------------------------------------------ encoder
    def _mix_parameter(self, training: bool) -> torch.Tensor:
        """[n_items] Bézier parameters t ~ Beta(alpha, alpha): a fresh draw per training forward (torch RNG),
        a fixed seeded draw for evaluation (same distribution; identical at every evaluation)."""
        if training:
            a = torch.tensor(self.alpha, device=self.device)
            return torch.distributions.Beta(a, a).sample((self.n_items,))
        t = np.random.default_rng(self.eval_seed).beta(self.alpha, self.alpha, self.n_items)
        return torch.from_numpy(t.astype(np.float32)).to(self.device)

    def fused_features(self, t: torch.Tensor | None = None) -> torch.Tensor:
        """[n_items, d] unit vectors: spherical Bézier fusion of the projected, normalized modalities."""
        if t is None:
            t = self._mix_parameter(self.training)
        pts = torch.stack([F.normalize(self.fuse_proj[r](getattr(self, f"feat_{r}")), dim=1)
                           for r in self.modalities])
        return spherical_bezier(pts, t)

    def forward(self, t: torch.Tensor | None = None):
        """(user_rep [U, C*d], item_rep [I, C*d], fused features [I, d]), representations un-normalized."""
        mix = self.fused_features(t)
        chans = [torch.cat([self.preference[r], self.mlp[r](getattr(self, f"feat_{r}"))], 0) for r in self.modalities]
        chans.append(torch.cat([self.id_preference, mix], 0))
        x = torch.cat([F.normalize(c, dim=1) for c in chans], 1)
        acc = x
        for _ in range(self.n_ui_layers):
            x = sym_spmm(self.norm_adj, x)
            acc = acc + x  # LightGCN layers summed, as in the reference
        users, items = acc[: self.n_users], acc[self.n_users:]
        w = F.softmax(self.theta, dim=1)  # [U, C, 1] per-user channel weights
        users = (users.view(self.n_users, -1, self.d) * w).reshape(self.n_users, -1)
        h = items
        for _ in range(self.n_mm_layers):
            h = spmm(self.mm_adj, h, self.mm_adj_t)
        return users, items + h, mix

    # ------------------------------------------------------------------ training / scoring
    def calculate_loss(self, batch):
        users, pos, neg = batch
        u_all, i_all, mix = self.forward()
        u = F.normalize(u_all.index_select(0, users), dim=-1)
        p = F.normalize(i_all.index_select(0, pos), dim=-1)
        # pair terms over the batch's distinct users / negatives, weighted by multiplicity (same values)
        uu, u_cnt = torch.unique(users, return_counts=True)
        nu, n_cnt = torch.unique(neg, return_counts=True)
        ng = F.normalize(i_all.index_select(0, nu), dim=-1)
        sim = content_similarity(mix.index_select(0, nu), self.min_sim, self.max_sim)
        uniform = (uniformity(F.normalize(u_all.index_select(0, uu), dim=-1), counts=u_cnt)
                   + calibrated_uniformity(ng, sim, counts=n_cnt)) / 2
        return alignment(u, p) + self.gamma * uniform

    def eval_embeddings(self):
        u, i, _ = self.forward()
        return u, i
