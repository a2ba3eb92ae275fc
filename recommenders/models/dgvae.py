"""DGVAE (Zhou & Miao, "Disentangled Graph Variational Auto-Encoder for Multimodal Recommendation with
Interpretability", IEEE TMM 2024). Not part of MMRec; behaviour and defaults follow the authors' code
(github.com/enoche/DGVAE, code/dgvae.py, code/dataset.py, code/main.py, run-baby.sh), re-written here.

Model
  Two prototype ("macro-disentangled", MacridVAE-style) VAEs that share the latent space:
  * the *rating* VAE encodes a user's training row x_u (a multi-hot over items);
  * the *text* VAE encodes the user's bag of words w_u (tf-idf over a vocabulary).
  Each VAE has K prototypes; every item (word) is softly assigned to a prototype
  (cosine(item, prototype) / tau, Gumbel-softmax while training, softmax at evaluation). For prototype k
  the encoder sees x_u restricted to the items of k (L2-normalized), *graph-convolved* with the
  multimodal item-item graph A (two hops, mixed 1:1 with the un-convolved input), dropped out, and
  maps it to (mu_k, logvar_k) with one Linear; mu_k and z_k are L2-normalized (so the KL keeps only its
  variance term). The two views' z are exchanged through a cross attention (tanh(q k^T) gated by a
  centred sigmoid of -L1 distance), summed, and each VAE decodes the shared z:
  p(i | u) ∝ sum_k cate_k(i) exp(<z_k, item_i> / tau).
  Loss = CE_rating + beta_r KL_rating + lambda_text (CE_text + beta_t KL_text) + lambda_reg MI, with the
  KL weights beta annealed linearly to their caps over ``*_total_anneal_steps`` updates and MI a
  Jensen-Shannon mutual-information bound that makes prototype k of one view agree with prototype k of
  the other and not with the other prototypes (disentanglement across views).
  Item graph A: per modality the binary kNN (k = ``knn_k``) cosine graph of the item features,
  D^-1/2 A D^-1/2 normalized (the FREEDOM graph, shared cache keyed by feature content + k), mixed
  ``txt_weight * text + (1 - txt_weight) * image``.

Adaptations to this project (documented deviations)
  * Word view. The reference reads a per-user tf-idf matrix over real words (item reviews/titles plus
    BLIP-2 captions of the images). Our data contract only carries dense item embeddings, so the
    vocabulary is made of *pseudo-words*: per modality, k-means (``n_words`` centroids, seeded,
    scikit-learn) over the L2-normalized item embeddings; each item emits one pseudo-word per modality; the user's
    document is the pseudo-words of their training items; weighting is scikit-learn's default tf-idf
    (smooth idf, raw counts, L2-normalized rows). Built from TRAIN interactions only, cached by feature
    content + n_words + iterations + seed.
  * Vocabulary pruning as the reference's TfidfVectorizer(min_df=5, max_df=0.6): pseudo-words in fewer
    than ``word_min_df`` user documents or in more than ``word_max_df`` of them are dropped before the idf.
  * Batching. The reference iterates over users (every user once per epoch, shuffled, in batches of 512
    users, one Adam update per batch); the project's trainer yields (users, pos, neg) *interaction*
    batches. With ``user_batch_size`` set (default 512), the model follows the reference's epoch itself:
    ``pre_epoch`` shuffles all users into batches of ``user_batch_size``, the first calls of the epoch
    train on them, and the epoch's remaining calls return a loss connected to no parameter (no gradient,
    so no optimizer update and no tick of the KL-annealing clock). So the number of updates per epoch,
    the users per update and the annealing schedule are the reference's. (Only when an epoch has fewer
    interaction batches than user batches, i.e. mean train degree < train_batch_size / user_batch_size,
    are the users split into that many larger batches, with a warning.) With ``user_batch_size: null``
    the former per-interaction-batch mode is used: ``user_sampling="inverse_degree"`` keeps each
    occurrence of user u with probability 1/deg(u) (every user once per epoch in expectation, ~train_batch_size
    / mean degree users per update, one update per interaction batch); ``"all"`` trains on every unique
    user of the batch. Either way the model sees the user's full training row (``data.train_csr()``);
    ``pos``/``neg`` themselves are not used.
  * Selection: the trainer's (best valid Recall@20, 4-decimal rounding, ``stopping_step``); the reference
    additionally treats an equal Recall@20 with a better NDCG@20 as a new best, and its Recall@k divides
    by min(k, #held-out) (Mult-VAE's definition) where the trainer divides by #held-out.
  * With a single prototype the MI term has no negatives and is 0.
  * Random numbers. Same distributions as the reference, drawn faster by default (all K dropout masks as
    ``rand >= p`` in one call, then all K reparameterisation noises). ``reference_rng: true`` draws torch's
    global generator exactly as the reference's main.py does (per prototype its ``nn.Dropout`` mask then its
    noise; the epoch's user order as its shuffling DataLoader draws it; at every evaluation the numbers its
    evaluation draws and discards). The initial weights are drawn in its order either way, so with
    ``reference_rng`` a seed reproduces the reference's run up to float rounding (bench/graph/_dgvae_runner.py
    ``--rng reference``): a comparison free of seed-to-seed spread, which is large for this model (valid
    Recall@20 at epoch 10 ranged 0.11-0.18 over three reference seeds on ML-100K, and the initial weights
    largely decide whether a run peaks near epoch 40 or keeps improving to ~95). Costs ~17% per training
    step on CPU (``bernoulli_`` masks, one call per prototype).
"""
from __future__ import annotations

from typing import Literal

import hashlib
import logging
import warnings

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from ..config import param
from mmfeat.lru import LRUCache
from ._graph import feature_hash, knn_normalized_graph, spmm, to_csr
from .base import MULTIMODAL_ROLES, MultimodalConfig, Recommender, fast_dropout, register
from .vbpr import item_modalities

log = logging.getLogger(__name__)
_WORDS: LRUCache[np.ndarray] = LRUCache(maxsize=16, name="dgvae-pseudo-words")


# ---------------------------------------------------------------------------- pseudo-word vocabulary
def spherical_kmeans(x: torch.Tensor, n_clusters: int, iters: int = 20, seed: int = 0) -> torch.Tensor:
    """Cluster index per row of ``x`` by direction: scikit-learn's KMeans (k-means++ init, seeded, one
    init, at most ``iters`` Lloyd steps, stopping when labels no longer change) on the L2-normalized rows.

    Why scikit-learn and not a cosine-assignment loop: on the unit sphere Euclidean k-means differs from
    textbook spherical k-means only in the assignment's centroid-norm term; measured on the 1682
    MovieLens-100k titles embedded with all-MiniLM-L6-v2 (2-core machine, 1 thread), the spherical
    objective (mean cosine to the normalized cluster mean) of KMeans was higher than the former hand-written
    cosine loop's in 8 of 9 runs (k = 16/100/1000, seeds 0-2; e.g. k=1000: 0.903 vs 0.888), it left no empty
    cluster where the loop left 4-7 of 1000, and it costs ~2.3 s once per vocabulary at k = 1000 (1 thread).
    """
    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning
    from threadpoolctl import threadpool_limits

    xn = F.normalize(x.float(), dim=1).numpy()
    n_clusters = max(1, min(int(n_clusters), xn.shape[0]))
    km = KMeans(n_clusters, init="k-means++", n_init=1, max_iter=max(1, int(iters)), tol=0.0,
                random_state=int(seed))
    # threads as torch's (sklearn would take every core, which oversubscribes a shared or loaded machine)
    with warnings.catch_warnings(record=True) as caught, threadpool_limits(torch.get_num_threads()):
        warnings.simplefilter("always", ConvergenceWarning)
        labels = km.fit_predict(xn)
    for w in caught:  # duplicate rows (e.g. filled missing features): fewer distinct words than asked
        log.info("DGVAE pseudo-words: %s", w.message)
    return torch.from_numpy(labels.astype(np.int64))


def item_pseudo_words(feats: dict[str, torch.Tensor], n_words: int, iters: int, seed: int) -> np.ndarray:
    """[n_items, n_modalities] int64 token ids (modality m's tokens offset by m * n_words); cached (bounded
    LRU) by feature content + n_words + iterations + seed."""
    h = hashlib.sha256(f"kmeans-{n_words}-{iters}-{seed}".encode())
    for r in sorted(feats):
        h.update(r.encode() + feature_hash(feats[r]).encode())

    def build() -> np.ndarray:
        n = next(iter(feats.values())).shape[0]
        v = max(1, min(int(n_words), n))
        cols = [spherical_kmeans(feats[r], v, iters, seed).numpy() + m * v for m, r in enumerate(sorted(feats))]
        return np.stack(cols, 1).astype(np.int64)

    return _WORDS.get_or_create(h.hexdigest(), build)


def user_tfidf(train_csr: sp.csr_matrix, item_tokens: np.ndarray, vocab_size: int, min_df: int = 1,
               max_df: float = 1.0) -> sp.csr_matrix:
    """Users' pseudo-word documents: counts over their training items' tokens, tf-idf weighted by
    scikit-learn's TfidfTransformer defaults (raw counts, idf = ln((1 + n) / (1 + df)) + 1, rows
    L2-normalized), float32.

    ``min_df`` / ``max_df`` prune the vocabulary *before* the idf, exactly as the reference's
    ``TfidfVectorizer(min_df=5, max_df=0.6)`` (DGVAE-baby-word-vocab.ipynb) does: a word is kept when
    ``min_df <= df <= max_df * n_users`` (df = number of user documents containing it); the returned matrix
    has only the kept columns, in their original order (a user left without words gets a zero row).

    Raises:
        ValueError: when the pruning keeps no word, or ``max_df * n_users < min_df`` (as scikit-learn).
    """
    from sklearn.feature_extraction.text import TfidfTransformer

    n_items, per_item = item_tokens.shape
    t = sp.csr_matrix((np.ones(n_items * per_item, np.float32),
                       (np.repeat(np.arange(n_items), per_item), item_tokens.reshape(-1))),
                      shape=(n_items, vocab_size))
    counts = (train_csr.astype(np.float32) @ t).tocsr()
    if min_df > 1 or max_df < 1.0:
        n_docs = counts.shape[0]
        if max_df * n_docs < min_df:
            raise ValueError(f"DGVAE words: max_df={max_df} * {n_docs} users < min_df={min_df}")
        df = np.bincount(counts.indices, minlength=counts.shape[1])
        keep = np.flatnonzero((df >= min_df) & (df <= max_df * n_docs))
        if keep.size == 0:
            raise ValueError(f"DGVAE words: no pseudo-word left after pruning (min_df={min_df}, max_df={max_df}, "
                             f"{n_docs} users); lower word_min_df or raise word_max_df")
        counts = counts[:, keep]
    tfidf = TfidfTransformer(norm="l2", use_idf=True, smooth_idf=True, sublinear_tf=False)
    return tfidf.fit_transform(counts).astype(np.float32).tocsr()


def _dense_rows(m: sp.csr_matrix, rows: np.ndarray, device) -> torch.Tensor:
    return torch.from_numpy(np.asarray(m[rows].todense(), dtype=np.float32)).to(device)


# ---------------------------------------------------------------------------- one prototype VAE
class PrototypeVAE(nn.Module):
    """A MacridVAE-style encoder/decoder over ``n_inputs`` columns (items or words), vectorized over
    the K prototypes ([batch, K, ...] tensors instead of a Python loop)."""

    def __init__(self, n_inputs: int, d: int, n_prototypes: int, tau: float, dropout: float, std: float,
                 item_adj_t: torch.Tensor | None = None, hops: int = 2, reference_rng: bool = False):
        super().__init__()
        self.d, self.k, self.tau, self.std, self.hops = d, n_prototypes, tau, std, hops
        self.n_inputs, self.reference_rng = n_inputs, bool(reference_rng)
        self.encoder = nn.Linear(n_inputs, 2 * d)
        nn.init.xavier_normal_(self.encoder.weight)
        nn.init.normal_(self.encoder.bias, std=0.01)
        # each table created then initialized, in the reference's order: the same torch seed then gives the
        # reference's initial weights (creating both before initializing shifted the item table's draws)
        self.item_embeddings = nn.Embedding(n_inputs, d)
        nn.init.xavier_normal_(self.item_embeddings.weight)
        self.prototype_embeddings = nn.Embedding(n_prototypes, d)
        nn.init.xavier_normal_(self.prototype_embeddings.weight)
        self.dropout = float(dropout)
        # A^T, so that x @ A (row vectors) is computed as (A^T x^T)^T with a sparse left operand
        if item_adj_t is not None:
            self.register_buffer("adj_t", item_adj_t, persistent=False)
        else:
            self.adj_t = None

    def categories(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(soft prototype assignment [n_inputs, K], normalized item embeddings)."""
        items = F.normalize(self.item_embeddings.weight, dim=1)
        protos = F.normalize(self.prototype_embeddings.weight, dim=1)
        logits = items @ protos.T / self.tau
        if self.training:
            return F.gumbel_softmax(logits, tau=1.0, hard=False, dim=-1), items
        return logits.softmax(-1), items

    def reference_noise(self, b: int) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(dropout keep mask / (1 - p) [b, K, n] or None when p = 0, N(0, std^2) noise [b, K, d]) drawn in the
        reference's order: per prototype, its ``nn.Dropout`` mask (``bernoulli_(1 - p)``, nothing when p = 0),
        then its ``normal_(0, std)`` noise. Same distributions as the default draws; only the order and the
        generator calls differ, which is what makes a seed reproduce the reference's run."""
        masks, eps = [], []
        dev = self.encoder.weight.device
        for _ in range(self.k):
            if self.dropout > 0:
                masks.append(torch.empty(b, self.n_inputs, device=dev).bernoulli_(1 - self.dropout))
            eps.append(torch.empty(b, self.d, device=dev).normal_(mean=0.0, std=self.std))
        keep = torch.stack(masks, 1).div_(1 - self.dropout) if masks else None
        return keep, torch.stack(eps, 1)

    def encode(self, x: torch.Tensor):
        cates, items = self.categories()
        xk = F.normalize(x.unsqueeze(1) * cates.T.unsqueeze(0), p=2, dim=-1)  # [B, K, n]
        if self.adj_t is not None:
            b, k, n = xk.shape
            h = xk.reshape(b * k, n).T  # [n, B*K]
            for _ in range(self.hops):
                h = spmm(self.adj_t, h)
            xk = (h.T.reshape(b, k, n) + xk) / 2
        if self.training and self.reference_rng:
            keep, eps = self.reference_noise(x.shape[0])
            xk = xk * keep if keep is not None else xk
        else:
            eps = None
            xk = fast_dropout(xk, self.dropout, self.training)
        out = self.encoder(xk)  # [B, K, 2d]
        mu = F.normalize(out[..., : self.d], dim=-1)
        logvar = -out[..., self.d:]
        if self.training:
            noise = eps if eps is not None else torch.randn_like(mu) * self.std
            z = mu + noise * torch.exp(0.5 * logvar)
        else:
            z = mu
        return F.normalize(z, dim=-1), logvar, cates, items

    def decode(self, z: torch.Tensor, cates: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """log sum_k cate_k(i) exp(<z_k, item_i> / tau) -> [B, n]."""
        logits = torch.einsum("bkd,nd->bkn", z, items / self.tau)  # 1/tau on [n, d], not on [B, K, n]
        # = log((exp(logits) * cates).sum(1)), computed stably (z is a sum of attention outputs, so
        # |logits| can exceed float32's exp range for larger K)
        return torch.logsumexp(logits + torch.log(cates.T.clamp_min(1e-30)).unsqueeze(0), dim=1)

    @staticmethod
    def kl(logvar: torch.Tensor) -> torch.Tensor:
        """Reference KL: -0.5 * mean_b sum_d (1 + logvar - exp(logvar)), summed over prototypes (mu is
        unit-norm, so its term is a constant and is left out, as in the authors' code)."""
        return -0.5 * (1 + logvar - logvar.exp()).sum(-1).mean(0).sum()

    @staticmethod
    def ce(x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """Multinomial log-likelihood of the input row under softmax(logits)."""
        return -(F.log_softmax(logits, 1) * x).sum(1).mean()

    def reg(self, w_items: float, w_other: float) -> torch.Tensor:
        return (w_items * self.item_embeddings.weight.norm(2) + w_other * self.prototype_embeddings.weight.norm(2)
                + w_other * self.encoder.weight.norm(2))


def _cross_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Reference attention: weights tanh(q k^T) gated by sigmoid(-L1(q, k) centred over keys). [B, K, d]."""
    p1 = torch.tanh(q @ k.transpose(1, 2))
    p2 = -(q.unsqueeze(2) - k.unsqueeze(1)).abs().sum(-1)
    p2 = torch.sigmoid(p2 - p2.mean(-1, keepdim=True))
    return (p1 * p2) @ v


def _mutual_information_reg(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Jensen-Shannon MI bound between prototype-aligned views: positive pair (a_k, b_k), negatives
    (a_k, b_j), j != k. Returns mean_k mean_b [E_neg softplus(f) + softplus(-f_pos)]."""
    k = a.shape[1]
    if k < 2:
        return a.new_zeros(())
    s = a @ b.transpose(1, 2)  # [B, K, K], s[:, i, j] = <a_i, b_j>
    eye = torch.eye(k, dtype=torch.bool, device=a.device)
    e_p = -F.softplus(-s.diagonal(dim1=1, dim2=2))  # [B, K]
    e_n = F.softplus(s).masked_fill(eye, 0.0).sum(-1) / (k - 1)
    return (e_n - e_p).mean(0).mean()


class DGVAEConfig(MultimodalConfig):
    """The authors' main.py defaults overridden by their run-baby.sh (-ncl 3, -ldr_reg 0.4, -ldr_text 0.2,
    -std/-tstd 0.075, -dr 0.5, anneal steps 20000), plus this project's adaptations (pseudo-words, batching)."""

    embedding_size: int = param(64, ge=1)
    knn_k: int = param(10, ge=1)
    txt_weight: float = param(0.96, ge=0.0, le=1.0)
    n_item_hops: int = param(2, ge=0)
    n_prototypes: int = param(3, ge=1, grid=[2, 3, 4])
    tau: float = param(0.1, gt=0.0)
    dropout: float = param(0.5, ge=0.0, lt=1.0)
    std: float = param(0.075, ge=0.0)
    text_std: float = param(0.075, ge=0.0)
    rating_anneal_cap: float = param(0.2, ge=0.0)
    text_anneal_cap: float = param(0.2, ge=0.0)
    rating_total_anneal_steps: int = param(20000, ge=0)
    text_total_anneal_steps: int = param(20000, ge=0)
    lambda_text: float = param(0.2, ge=0.0, grid=[0.2, 0.5])
    lambda_reg: float = param(0.4, ge=0.0, grid=[0.2, 0.4])
    reg_weights: list[float] = param([0.0, 0.0], min_length=2, max_length=2)  # (items, prototypes+encoder)
    learning_rate: float = param(1e-3, ge=0.0)
    # pseudo-word vocabulary (project adaptation, see module docstring)
    n_words: int = param(1000, ge=1)
    word_kmeans_iters: int = param(20, ge=1)
    graph_cache_dir: str | None = param(None)  # where frozen kNN graphs are kept across processes
    word_min_df: int = param(5, ge=1)  # the reference's TfidfVectorizer(min_df=5, max_df=0.6)
    word_max_df: float = param(0.6, gt=0.0, le=1.0)
    predict_chunk: int = param(1024, ge=1)
    # draw torch's random numbers in the reference's order (same seed, same run as its main.py; see the module
    # docstring); off: the faster draws of the same distributions
    reference_rng: bool = param(False)
    # training epoch: the reference's (every user once, shuffled, batches of user_batch_size users, one
    # update each); None: one update per interaction batch, users picked by user_sampling
    user_batch_size: int | None = param(512, ge=1)
    user_sampling: Literal["inverse_degree", "all"] = param("inverse_degree")
    # the reference's run-baby.sh: -ep 100, -es 20 (it stops at the 20th evaluation in a row without a
    # new best; the trainer stops when more than stopping_step evaluations in a row were not a new best)
    epochs: int = param(100, ge=1)
    stopping_step: int = param(19, ge=0)


@register("DGVAE")
class DGVAE(Recommender):
    """Two prototype VAEs (ratings, pseudo-word tf-idf) sharing a latent space (see the module docstring).

    Reference:
        Paper: Xin Zhou, Chunyan Miao. "Disentangled Graph Variational Auto-Encoder for Multimodal
        Recommendation with Interpretability". IEEE Transactions on Multimedia (TMM) 2024.
        Code: enoche/DGVAE code/dgvae.py, code/dataset.py, code/main.py, run-baby.sh (not part of MMRec).
    """

    modality_roles = MULTIMODAL_ROLES
    config_class = DGVAEConfig

    def __init__(self, data, config):
        super().__init__(data, config)
        d = int(self.hp("embedding_size"))
        k = int(self.hp("n_prototypes"))
        tau, dropout = float(self.hp("tau")), float(self.hp("dropout"))
        self.lambda_text = float(self.hp("lambda_text"))
        self.lambda_reg = float(self.hp("lambda_reg"))
        self.reg_weights = [float(w) for w in self.hp("reg_weights")]
        self.anneal = {"rating": (float(self.hp("rating_anneal_cap")), int(self.hp("rating_total_anneal_steps"))),
                       "text": (float(self.hp("text_anneal_cap")), int(self.hp("text_total_anneal_steps")))}
        self.predict_chunk = int(self.hp("predict_chunk"))
        self.user_sampling = str(self.hp("user_sampling"))
        if self.user_sampling not in ("inverse_degree", "all"):
            raise ValueError(f"DGVAE: user_sampling must be 'inverse_degree' or 'all', got {self.user_sampling!r}")

        feats = item_modalities(self, data)
        self.modalities = tuple(feats)
        knn_k, cache = int(self.hp("knn_k")), self.hp("graph_cache_dir")
        graphs = {r: knn_normalized_graph(f, knn_k, cache) for r, f in feats.items()}
        if len(graphs) == 2:
            w = float(self.hp("txt_weight"))
            adj = (1.0 - w) * graphs["image"] + w * graphs["text"]
        else:
            adj = next(iter(graphs.values()))
        adj_t = to_csr(adj.coalesce().t())

        tokens = item_pseudo_words(feats, int(self.hp("n_words")), int(self.hp("word_kmeans_iters")),
                                   int(self.config.get("seed", 0)))
        vocab = int(tokens.max()) + 1
        self._ratings = data.train_csr()
        self._words = user_tfidf(self._ratings, tokens, vocab, int(self.hp("word_min_df")),
                                 float(self.hp("word_max_df")))
        vocab = self.n_words = self._words.shape[1]

        self.reference_rng = bool(self.hp("reference_rng"))
        self.cf_network = PrototypeVAE(self.n_items, d, k, tau, dropout, float(self.hp("std")), adj_t,
                                       int(self.hp("n_item_hops")), self.reference_rng)
        self.text_network = PrototypeVAE(vocab, d, k, tau, dropout, float(self.hp("text_std")), None,
                                         reference_rng=self.reference_rng)
        self.register_buffer("n_updates", torch.zeros((), dtype=torch.long))  # KL annealing clock
        deg = np.diff(self._ratings.indptr).astype(np.float32)
        self.register_buffer("_keep_prob", torch.from_numpy(1.0 / np.maximum(deg, 1.0)), persistent=False)
        ubs = self.hp("user_batch_size")
        self.user_batch_size = None if ubs is None else int(ubs)
        # trainer calls per epoch: one per interaction batch (the MMRec loop over data.train)
        self._calls_per_epoch = max(1, -(-len(data.train) // int(self.hp("train_batch_size"))))
        self._plan: list[torch.Tensor] = []  # this epoch's user batches (reference epoch)
        self._call = 0  # calls since the plan was made

    # ------------------------------------------------------------------ core
    def _inputs(self, users: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        u = users.detach().cpu().numpy()
        return _dense_rows(self._ratings, u, self.device), _dense_rows(self._words, u, self.device)

    def forward(self, ratings: torch.Tensor, words: torch.Tensor):
        cf_z, cf_logvar, cf_cates, cf_items = self.cf_network.encode(ratings)
        tx_z, tx_logvar, tx_cates, tx_items = self.text_network.encode(words)
        tx_given_cf = _cross_attention(cf_z, tx_z, tx_z)
        cf_given_tx = _cross_attention(tx_z, cf_z, cf_z)
        mi = _mutual_information_reg(cf_given_tx, tx_given_cf)
        z = cf_given_tx + tx_given_cf
        cf_logits = self.cf_network.decode(z, cf_cates, cf_items)
        tx_logits = self.text_network.decode(z, tx_cates, tx_items)
        return cf_logits, tx_logits, mi, cf_logvar, tx_logvar

    def pre_epoch(self) -> None:
        """Reference epoch: shuffle every user into batches of ``user_batch_size`` (the reference's
        DataLoader over the rows of the user x item matrix, shuffle=True, drop_last=False)."""
        if self.user_batch_size is None:
            return
        if self.reference_rng:  # DataLoader iterator's base seed, then RandomSampler's seed for its own generator
            torch.empty((), dtype=torch.int64).random_()
            g = torch.Generator()
            g.manual_seed(int(torch.empty((), dtype=torch.int64).random_().item()))
            perm = torch.randperm(self.n_users, generator=g)
        else:
            perm = torch.randperm(self.n_users)
        batches = list(perm.split(self.user_batch_size))
        if len(batches) > self._calls_per_epoch:  # fewer trainer calls than reference steps: larger batches
            log.warning("DGVAE: %d user batches of %d but only %d training calls per epoch; using %d batches "
                        "of ~%d users (raise train_batch_size to keep the reference's batch size)",
                        len(batches), self.user_batch_size, self._calls_per_epoch, self._calls_per_epoch,
                        -(-self.n_users // self._calls_per_epoch))
            batches = list(torch.tensor_split(perm, self._calls_per_epoch))
        self._plan, self._call = batches, 0

    def prepare_eval(self) -> None:
        """With ``reference_rng``: the random numbers the reference's evaluation draws and never uses (its eval
        DataLoader's base seed; per batch of ``user_batch_size`` users, a Gumbel sample of each view, computed
        in eval mode too), so that the next epoch's training draws what the reference's does."""
        super().prepare_eval()
        if not (self.reference_rng and self.user_batch_size):
            return
        torch.empty((), dtype=torch.int64).random_()
        for _ in range(-(-self.n_users // self.user_batch_size)):
            for net in (self.cf_network, self.text_network):
                torch.empty(net.n_inputs, net.k, device=self.device).exponential_()

    def _epoch_users(self) -> torch.Tensor | None:
        """This call's user batch of the reference epoch, or None when the epoch's batches are done (the
        trainer still hands over the epoch's remaining interaction batches). A caller that never calls
        :meth:`pre_epoch` gets a new epoch every ``ceil(len(train) / train_batch_size)`` calls."""
        if not self._plan or self._call >= self._calls_per_epoch:
            self.pre_epoch()
        i, self._call = self._call, self._call + 1
        return self._plan[i].to(self.device) if i < len(self._plan) else None

    def _train_users(self, users: torch.Tensor) -> torch.Tensor:
        """The users a training step reconstructs (see ``user_sampling`` in the module docstring)."""
        if self.user_sampling == "inverse_degree":
            keep = torch.rand(users.shape, device=users.device) < self._keep_prob[users]
            if not bool(keep.any()):  # never an empty step
                keep[torch.randint(len(users), (1,), device=users.device)] = True
            users = users[keep]
        return torch.unique(users)

    def _beta(self, view: str) -> float:
        cap, steps = self.anneal[view]
        return min(cap, float(self.n_updates) / steps) if steps > 0 else cap

    def calculate_loss(self, batch):
        """The reference loss on a batch of users' full rows (pos/neg unused).

        With ``user_batch_size`` (default), the users are the next batch of the reference epoch; once the
        epoch's batches are done, the remaining calls of the epoch return a 0 connected to no parameter:
        its backward leaves every ``.grad`` None, so the optimizer (which skips parameters without a
        gradient, the trainer zeroing grads to None) makes no update and the annealing clock stands still.
        """
        if self.user_batch_size is not None:
            users = self._epoch_users()
            if users is None:
                return torch.zeros((), device=self.device, requires_grad=True)
        else:
            users = self._train_users(batch[0])
        ratings, words = self._inputs(users)
        cf_logits, tx_logits, mi, cf_logvar, tx_logvar = self.forward(ratings, words)
        self.n_updates += 1
        cf_loss = PrototypeVAE.ce(ratings, cf_logits) + self._beta("rating") * PrototypeVAE.kl(cf_logvar)
        tx_loss = PrototypeVAE.ce(words, tx_logits) + self._beta("text") * PrototypeVAE.kl(tx_logvar)
        if any(self.reg_weights):
            cf_loss = cf_loss + self.cf_network.reg(*self.reg_weights)
            tx_loss = tx_loss + self.text_network.reg(*self.reg_weights)
        loss = cf_loss + self.lambda_text * tx_loss
        if self.lambda_reg > 0:
            loss = loss + self.lambda_reg * mi
        return loss

    def full_sort_predict(self, users):
        """Rating-view logits for every item (the trainer masks training items)."""
        out = []
        for s in range(0, len(users), self.predict_chunk):
            ratings, words = self._inputs(users[s:s + self.predict_chunk])
            out.append(self.forward(ratings, words)[0])
        return torch.cat(out) if out else torch.zeros(0, self.n_items, device=self.device)

    @torch.no_grad()
    def item_prototypes(self) -> torch.Tensor:
        """[n_items, K] soft assignment of items to the disentangled factors (for interpretation)."""
        items = F.normalize(self.cf_network.item_embeddings.weight, dim=1)
        protos = F.normalize(self.cf_network.prototype_embeddings.weight, dim=1)
        return (items @ protos.T / self.cf_network.tau).softmax(-1)
