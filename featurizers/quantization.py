"""Residual quantization of item embeddings into semantic IDs, and the signals it can be trained with.

Pieces (each a function of arrays, no store, no pipeline):

* :func:`residual_kmeans`: RQ-KMeans. Level l clusters the residual left by levels 0..l-1 with
  scikit-learn's ``KMeans``; the code is the cluster, the new residual is the vector minus its centroid.
* :class:`RQVAE` + :func:`train_rqvae`: the RQ-VAE of TIGER (Rajput et al. 2023): an MLP encoder to a small
  latent, ``vector-quantize-pytorch``'s ``ResidualVQ`` (k-means initialised, EMA codebooks, dead codes
  replaced, commitment loss) and an MLP decoder trained to reconstruct the input. Optionally (DAS, Ye et al.
  2025) jointly with an InfoNCE alignment between each item's quantized latent and its collaborative
  (CF) embedding, so items users consume together get close codes.
* :func:`propagate`: MMGRec's graph-propagated features: item vectors smoothed over the user-item graph
  (item -> user -> item hops with LightGCN's symmetric normalisation, the mean of layers 0..L).
* :func:`cf_item_embeddings`: the collaborative signal: the leading singular vectors of the normalised
  user-item matrix (``sklearn.decomposition.TruncatedSVD``), one vector per item.
* :func:`dedup_level` and :func:`code_stats`: the extra level that makes every tuple unique, and what the
  version manifest records (codebook usage per level, collision rate before de-duplication).

Everything is seeded: the same inputs and seed give the same codes (the version id names them).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import scipy.sparse as sp


def residual_kmeans(x: np.ndarray, levels: int, codebook_size: int, seed: int,
                    ) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """RQ-KMeans codes of the rows of ``x``.

    Args:
        x: float [n, d] item vectors.
        levels: code levels.
        codebook_size: clusters per level (at most n).
        seed: KMeans' ``random_state`` (level l uses ``seed + l``).

    Returns:
        ``(codes int64 [n, levels], reconstruction float32 [n, d], residual_norms)``: the sum of the chosen
        centroids, and the mean residual norm after each level (non-increasing: a level can only explain more).
    """
    from sklearn.cluster import KMeans

    residual = np.asarray(x, np.float64).copy()
    codes = np.zeros((len(x), levels), np.int64)
    norms = []
    for level in range(levels):
        km = KMeans(n_clusters=codebook_size, n_init=1, random_state=seed + level, max_iter=100)
        codes[:, level] = km.fit_predict(residual)
        residual -= km.cluster_centers_[codes[:, level]]
        norms.append(float(np.linalg.norm(residual, axis=1).mean()))
    return codes, (np.asarray(x, np.float64) - residual).astype(np.float32), norms


def _mlp(dims: list[int]):
    from torch import nn

    layers: list = []
    for a, b in zip(dims[:-1], dims[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def make_rqvae(in_dim: int, hidden: list[int], latent_dim: int, levels: int, codebook_size: int,
               commitment_weight: float, cf_dim: int | None):
    """The RQ-VAE modules: encoder, ResidualVQ, decoder, and (DAS) a projection of the quantized latent to the
    CF space."""
    from torch import nn
    from vector_quantize_pytorch import ResidualVQ

    mods = nn.ModuleDict({
        "encoder": _mlp([in_dim, *hidden, latent_dim]),
        "rvq": ResidualVQ(dim=latent_dim, num_quantizers=levels, codebook_size=codebook_size, kmeans_init=True,
                          kmeans_iters=10, decay=0.99, commitment_weight=commitment_weight,
                          threshold_ema_dead_code=2),
        "decoder": _mlp([latent_dim, *reversed(hidden), in_dim]),
    })
    if cf_dim:
        mods["to_cf"] = nn.Linear(latent_dim, cf_dim)
    return mods


#: A fit whose every step sees at most this many items x input dims runs torch on one intra-op thread
#: (the demo's 40 x 384 = 15,360; ML-1M's 1024-item batches of 384-d vectors, 393,216, keep their threads).
SMALL_STEP_ELEMENTS = 128 * 1024


@contextlib.contextmanager
def _intra_op_threads(n: int | None) -> Iterator[None]:
    """torch's intra-op threads set to ``n`` while the block runs (None: left alone), restored after.

    Why: a step of a small fit (the demo's 40 items: one 40 x 384 batch) is a few hundred microsecond-long
    ops. Split over threads, every op ends in a barrier that waits for all of them; on a loaded 2-core
    machine a thread waits out other processes' time slices at each barrier, and the demo's 200-step
    fit took 94 s instead of 2 s. One thread does the same arithmetic in the same order: the codes and
    statistics are unchanged (same loss curve to the last digit), only the waiting goes.
    """
    import torch

    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass
class RQVAEResult:
    codes: np.ndarray  # int64 [n, levels]
    reconstruction: np.ndarray  # float32 [n, d]
    losses: list[float]  # mean training loss per logged epoch
    alignment: float | None  # DAS: final InfoNCE loss (None without cf)


def train_rqvae(x: np.ndarray, *, levels: int, codebook_size: int, latent_dim: int, hidden: list[int],
                epochs: int, batch_size: int, lr: float, commitment_weight: float, seed: int,
                cf: np.ndarray | None = None, cf_weight: float = 0.0, temperature: float = 0.1) -> RQVAEResult:
    """Train an RQ-VAE on ``x`` (rows = items) and return every item's codes.

    Args:
        x: float [n, d] item vectors.
        levels, codebook_size: the residual codebooks.
        latent_dim, hidden: the encoder's output size and hidden layers (the decoder mirrors them).
        epochs, batch_size, lr: Adam on shuffled item batches.
        commitment_weight: the VQ commitment loss weight (TIGER: 0.25).
        seed: seeds the initialisation, the k-means init and the shuffling (torch RNG state is restored after).
        cf: DAS: float [n, c] collaborative embeddings; the quantized latent is aligned to them by InfoNCE
            (in-batch negatives) with weight ``cf_weight`` and ``temperature``, trained jointly.

    Sized to the catalogue: when a step sees at most :data:`SMALL_STEP_ELEMENTS` numbers (items per
    batch x input dims: the demo's 40 x 384, not ML-1M's 1024 x 384 batches), torch runs on one thread
    (:func:`_intra_op_threads` says why); large fits keep the process's threads. Results are the same.

    Returns:
        The codes, the decoder's reconstruction, the loss curve and the final alignment loss.
    """
    import torch
    import torch.nn.functional as F

    small = min(len(x), batch_size) * int(np.shape(x)[1]) <= SMALL_STEP_ELEMENTS if len(x) else True
    with torch.random.fork_rng(devices=[]), _intra_op_threads(1 if small else None):
        torch.manual_seed(seed)
        xt = torch.from_numpy(np.ascontiguousarray(x, np.float32))
        cft = F.normalize(torch.from_numpy(np.ascontiguousarray(cf, np.float32)), dim=1) if cf is not None else None
        mods = make_rqvae(xt.shape[1], hidden, latent_dim, levels, codebook_size, commitment_weight,
                          cft.shape[1] if cft is not None else None)
        opt = torch.optim.Adam(mods.parameters(), lr=lr)
        gen = torch.Generator().manual_seed(seed)
        n, losses, align = len(xt), [], None
        # the k-means init of every level runs on the first forward pass: give it all items, not one batch
        with torch.no_grad():
            mods["rvq"](mods["encoder"](xt)[:, None, :])
        for epoch in range(epochs):
            total, steps = 0.0, 0
            for idx in torch.randperm(n, generator=gen).split(batch_size):
                z = mods["encoder"](xt[idx])
                q, _, commit = mods["rvq"](z[:, None, :])
                q = q[:, 0]
                loss = F.mse_loss(mods["decoder"](q), xt[idx]) + commit.sum()
                if cft is not None and cf_weight > 0 and len(idx) > 1:
                    logits = F.normalize(mods["to_cf"](q), dim=1) @ cft[idx].T / temperature
                    align_loss = F.cross_entropy(logits, torch.arange(len(idx)))
                    loss = loss + cf_weight * align_loss
                    align = float(align_loss.detach())
                opt.zero_grad()
                loss.backward()
                opt.step()
                total, steps = total + float(loss.detach()), steps + 1
            if epoch % max(1, epochs // 20) == 0 or epoch == epochs - 1:
                losses.append(total / max(steps, 1))
        mods.eval()
        with torch.no_grad():
            q, codes, _ = mods["rvq"](mods["encoder"](xt)[:, None, :])
            recon = mods["decoder"](q[:, 0])
    return RQVAEResult(codes[:, 0].numpy().astype(np.int64), recon.numpy(), losses, align)


def propagate(x: np.ndarray, user_item: sp.csr_matrix, layers: int) -> np.ndarray:
    """MMGRec's graph-propagated item features: ``x`` smoothed over the user-item graph.

    One layer is one item -> user -> item hop with LightGCN's symmetric normalisation,
    ``A = D_i^-1/2 R^T D_u^-1 R D_i^-1/2``; the result is the mean of layers 0..``layers`` (layer 0 is ``x``).
    An item nobody interacted with has no neighbours and keeps its own vector at every layer.
    """
    r = sp.csr_matrix(user_item, dtype=np.float64)
    du, di = np.asarray(r.sum(1)).ravel(), np.asarray(r.sum(0)).ravel()
    left = r @ sp.diags(np.where(di > 0, di, 1.0) ** -0.5)
    hop = left.T @ sp.diags(np.where(du > 0, du, 1.0) ** -1.0) @ left + sp.diags((di == 0).astype(np.float64))
    cur = np.asarray(x, np.float64)
    total = cur.copy()
    for _ in range(layers):
        cur = hop @ cur
        total += cur
    return (total / (layers + 1)).astype(np.float32)


def cf_item_embeddings(user_item: sp.csr_matrix, dim: int, seed: int) -> np.ndarray:
    """Collaborative item vectors: the top ``dim`` right singular directions of the symmetric-normalised
    user-item matrix, scaled by their singular values (a closed-form stand-in for a trained MF/LightGCN table)."""
    from sklearn.decomposition import TruncatedSVD

    r = sp.csr_matrix(user_item, dtype=np.float64)
    du, di = np.asarray(r.sum(1)).ravel(), np.asarray(r.sum(0)).ravel()
    norm = sp.diags(np.where(du > 0, du, 1.0) ** -0.5) @ r @ sp.diags(np.where(di > 0, di, 1.0) ** -0.5)
    dim = max(1, min(dim, min(norm.shape) - 1))
    svd = TruncatedSVD(n_components=dim, random_state=seed)
    svd.fit(norm)
    return (svd.components_.T * svd.singular_values_).astype(np.float32)


def dedup_level(codes: np.ndarray) -> np.ndarray:
    """The de-duplication code of every item: 0 for the first item (in row order) with its tuple, 1 for the
    second, ... (TIGER's extra level). Vectorised: a stable sort groups equal tuples."""
    _, inverse = np.unique(codes, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    order = np.argsort(inverse, kind="stable")
    sorted_groups = inverse[order]
    starts = np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]])
    group_start = np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    out = np.empty(len(codes), np.int64)
    out[order] = np.arange(len(order)) - group_start
    return out


def code_stats(codes: np.ndarray, codebook_size: int) -> dict:
    """Codebook usage per level (share of the codebook that some item uses), the collision rate (share of
    items whose tuple another item also has) and the largest collision group, of codes before de-duplication."""
    _, inverse, counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    shared = counts[inverse.ravel()] > 1
    return {
        "usage_per_level": [round(len(np.unique(codes[:, level])) / codebook_size, 4) for level in range(codes.shape[1])],
        "collision_rate": round(float(shared.mean()) if len(codes) else 0.0, 4),
        "unique_tuples": int(len(counts)),
        "max_items_per_tuple": int(counts.max()) if len(counts) else 0,
    }
