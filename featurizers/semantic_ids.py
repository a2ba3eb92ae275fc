"""The ``semantic_ids`` featurizer: an embedding version in, one integer code tuple per item out.

Unlike the other kinds it is not a per-item function: a quantizer is fitted to the whole catalogue (and,
for the MMGRec / DAS options, to the user-item graph), so it is a *set* featurizer (``set_level = True``):
:meth:`SemanticIDs.fit` takes the parent matrix and returns every item's codes plus the statistics the
version manifest records. The extraction engine runs it as one job (:mod:`mmfeat.pipelines.engine.codes_job`).

Methods (``params.method``):

* ``rqvae`` (default, TIGER): an RQ-VAE on ``vector-quantize-pytorch``'s ``ResidualVQ``;
  ``graph_layers > 0`` quantizes graph-propagated features (MMGRec's Graph RQ-VAE);
  ``cf_align`` trains it jointly with an alignment to collaborative item vectors (DAS).
* ``rqkmeans``: residual k-means with scikit-learn (no training loop; ``graph_layers`` applies too).

With ``dedup`` (default) a last level numbers the items that share a tuple, so every tuple is unique and a
generated tuple names exactly one item.

Example:
    >>> fz = SemanticIDs.from_spec({"method": "rqkmeans", "levels": 2, "codebook_size": 4})
    >>> fit = fz.fit(np.random.default_rng(0).normal(size=(50, 8)).astype("float32"))
    >>> fit.codes.shape, len(np.unique(fit.codes, axis=0))
    ((50, 3), 50)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from mmfeat.featurizers.base import OutputSpec
from mmfeat.featurizers.params import SemanticIDsParams
from mmfeat.featurizers.quantization import (code_stats, cf_item_embeddings, dedup_level, propagate,
                                             residual_kmeans, train_rqvae)
from mmfeat.featurizers.registry import register_featurizer


@dataclass
class CodesFit:
    """Every item's codes (int64 [n, levels (+1 with dedup)]) and what the version manifest records."""

    codes: np.ndarray
    stats: dict[str, Any] = field(default_factory=dict)


@register_featurizer("semantic_ids", SemanticIDsParams, reads=("embedding",), produces="codes")
class SemanticIDs:
    """Quantize item embeddings into semantic IDs (see the module doc for the methods and options)."""

    input_kind = "embedding"
    set_level = True

    def __init__(self, params: SemanticIDsParams):
        self.params = params
        self.name = f"semantic-ids-{params.method}"
        self.output = OutputSpec("codes", params.levels + int(params.dedup))

    @classmethod
    def from_spec(cls, spec: dict[str, Any] | SemanticIDsParams) -> "SemanticIDs":
        return cls(SemanticIDsParams.parse(spec, "semantic_ids"))

    @property
    def reads_interactions(self) -> bool:
        """True when the codes depend on the user-item graph (``graph_layers`` or ``cf_align``)."""
        return self.params.reads_interactions

    def fingerprint(self) -> dict[str, Any]:
        return {"kind": "semantic_ids", **self.params.model_dump(mode="json")}

    def fit(self, x: np.ndarray, user_item: sp.csr_matrix | None = None) -> CodesFit:
        """Codes for the rows of ``x``.

        Args:
            x: float [n, d] parent vectors, one row per item.
            user_item: [n_users, n] interactions (the options that read them need it; others refuse it).

        Returns:
            The codes and the statistics (codebook usage per level, collision rate before de-duplication,
            reconstruction error, and for RQ-KMeans the residual norm after each level).

        Raises:
            ValueError: fewer items than codes per level, or interactions missing / given needlessly.
        """
        p = self.params
        x = np.asarray(x, np.float32)
        if len(x) < p.codebook_size:
            raise ValueError(f"semantic_ids: {len(x)} items cannot fill codebooks of {p.codebook_size} codes; "
                             f"set params.codebook_size to at most {len(x)}")
        if self.reads_interactions != (user_item is not None):
            raise ValueError("semantic_ids: interactions are needed exactly when graph_layers > 0 or cf_align is set")
        stats: dict[str, Any] = {"method": p.method, "items": int(len(x))}
        if p.graph_layers:
            x = propagate(x, user_item, p.graph_layers)
            stats["graph_layers"] = p.graph_layers
        if p.method == "rqkmeans":
            codes, recon, norms = residual_kmeans(x, p.levels, p.codebook_size, p.seed)
            stats["residual_norm_per_level"] = [round(v, 5) for v in norms]
        else:
            cf = cf_item_embeddings(user_item, p.cf_align.dim, p.seed) if p.cf_align is not None else None
            fit = train_rqvae(x, levels=p.levels, codebook_size=p.codebook_size, latent_dim=p.latent_dim,
                              hidden=list(p.hidden), epochs=p.epochs, batch_size=p.batch_size, lr=p.lr,
                              commitment_weight=p.commitment_weight, seed=p.seed, cf=cf,
                              cf_weight=p.cf_align.weight if p.cf_align else 0.0,
                              temperature=p.cf_align.temperature if p.cf_align else 0.1)
            codes, recon = fit.codes, fit.reconstruction
            stats["loss_curve"] = [round(v, 6) for v in fit.losses]
            if fit.alignment is not None:
                stats["cf_alignment_loss"] = round(fit.alignment, 5)
        stats.update(code_stats(codes, p.codebook_size))
        # relative squared error of the reconstruction (RQ-KMeans: the sum of centroids; RQ-VAE: the decoder)
        stats["reconstruction_error"] = round(float(((recon - x) ** 2).sum() / max((x ** 2).sum(), 1e-12)), 6)
        if p.dedup:
            codes = np.column_stack([codes, dedup_level(codes)])
            stats["dedup_max"] = int(codes[:, -1].max()) if len(codes) else 0
        return CodesFit(codes.astype(np.int64), stats)
