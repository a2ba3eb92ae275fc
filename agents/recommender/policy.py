"""The re-ranking policy: a page from the base recommender's candidates by a weighted sum of features.

Per candidate (a row of :data:`FEATURES`):

- ``base``: the base model's score, z-scored over the candidates (so weights mean the same for any model);
- ``match``: instruction match (+1 an asked-for genre or a search hit, -1 an avoided genre or a violated
  filter that had to be relaxed; :func:`.constraints.match_features`);
- ``novelty``: ``1 - log(1 + pop) / log(1 + max pop)``, times ``1 + novelty_boost``;
- ``diversity``: minus the largest similarity to the items already picked on this page (MMR), times
  ``1 + diversity_boost``; recomputed after each pick;
- ``repetition``: minus the largest similarity to items shown earlier in the session and not clicked;
- ``affinity``: cosine between the item's genres and the genres the user clicked this session.

Similarity is cosine over the catalog's text embeddings, else over genre vectors. The page is built one slot
at a time: greedily (``temperature == 0``) or by sampling from ``softmax(score / temperature)`` over the
remaining candidates (a Plackett-Luce policy). For a sampled page the decision carries ``log_prob`` and its
gradient with respect to the weights, ``sum_t (f_t(pick) - E_p[f_t]) / temperature`` (linear softmax), so a
learner can run REINFORCE on :class:`PolicyWeights` with numpy alone.

Reference:
    Carbonell & Goldstein, "The use of MMR, diversity-based reranking", SIGIR 1998; Williams, "Simple
    statistical gradient-following algorithms" (REINFORCE), Machine Learning 1992; Plackett-Luce ranking
    policies (e.g. Oosterhuis, "Computationally efficient optimization of Plackett-Luce ranking models",
    SIGIR 2021).
"""
from __future__ import annotations

from dataclasses import astuple, dataclass

import numpy as np

from mmfeat.agents.types import Catalog

#: feature order of :class:`PolicyWeights`, :attr:`PageDecision.features` and the gradient
FEATURES = ("base", "match", "novelty", "diversity", "repetition", "affinity")


@dataclass(frozen=True)
class PolicyWeights:
    """One weight per feature of :data:`FEATURES` (what a policy-gradient learner updates).

    Defaults: the base model leads (1.0), following the user's words matters more than any other signal
    (1.5), and a mild push to variety; they are starting points, not tuned values.
    """

    base: float = 1.0
    match: float = 1.5
    novelty: float = 0.2
    diversity: float = 0.5
    repetition: float = 0.5
    affinity: float = 0.3

    def as_array(self) -> np.ndarray:
        return np.array(astuple(self), dtype=np.float64)

    @classmethod
    def from_array(cls, values: np.ndarray) -> PolicyWeights:
        """Weights from a vector in :data:`FEATURES` order.

        Raises:
            ValueError: wrong length or non-finite values.
        """
        v = np.asarray(values, dtype=np.float64).reshape(-1)
        if len(v) != len(FEATURES) or not np.isfinite(v).all():
            raise ValueError(f"need {len(FEATURES)} finite weights ({', '.join(FEATURES)}), got {v.tolist()}")
        return cls(*(float(x) for x in v))


@dataclass(frozen=True)
class Candidates:
    """The candidates of one page with their static features.

    Attributes:
        items: catalog indices, best base score first.
        static: float ``[n, 6]`` in :data:`FEATURES` order with the ``diversity`` column 0 (set per pick).
        similarity: float ``[n, n]`` cosine similarity among the candidates.
        diversity_scale: ``1 + diversity_boost``.
    """

    items: np.ndarray
    static: np.ndarray
    similarity: np.ndarray
    diversity_scale: float = 1.0


@dataclass(frozen=True)
class PageDecision:
    """How a page was picked.

    Attributes:
        positions: index into the candidates of each pick, page order.
        features: float ``[k, 6]``: the picked items' features at the step each was picked.
        scores: the weighted score of each pick at its step.
        sampled: whether picks were sampled (else greedy).
        temperature: the sampling temperature (0 for greedy).
        log_prob: log-probability of the page under the policy (0 for greedy).
        grad_log_prob: d log_prob / d weights, ``[6]`` (zeros for greedy).
    """

    positions: np.ndarray
    features: np.ndarray
    scores: np.ndarray
    sampled: bool
    temperature: float
    log_prob: float
    grad_log_prob: np.ndarray


def item_vectors(catalog: Catalog, items: np.ndarray) -> np.ndarray:
    """L2-normalised vectors of ``items`` for similarity: text embeddings when the catalog has them, else genres."""
    items = np.asarray(items, dtype=np.int64)
    if catalog.embeddings is not None:
        v = np.asarray(catalog.embeddings, dtype=np.float64)[items]
    else:
        v = np.asarray(catalog.genres, dtype=np.float64)[items]
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def novelty(catalog: Catalog) -> np.ndarray:
    """float ``[n_items]`` in [0, 1]: 1 for an item nobody interacted with, 0 for the most popular one."""
    pop = np.log1p(np.maximum(np.asarray(catalog.popularity, dtype=np.float64), 0.0))
    top = pop.max() if len(pop) else 0.0
    return 1.0 - pop / top if top > 0 else np.ones_like(pop)


def build_candidates(catalog: Catalog, items: np.ndarray, base: np.ndarray, match: np.ndarray, *,
                     skipped: np.ndarray, clicked_genres: np.ndarray, novelty_boost: float = 0.0,
                     diversity_boost: float = 0.0) -> Candidates:
    """Static features of the candidates ``items`` (vectorized over them).

    Args:
        catalog: the items.
        items: candidate catalog indices.
        base: their base scores (z-scored here).
        match: their instruction-match values.
        skipped: items shown earlier this session and not clicked (for ``repetition``).
        clicked_genres: float ``[n_genres]`` counts of the genres clicked this session.
        novelty_boost, diversity_boost: from the user's constraints.

    Returns:
        :class:`Candidates`.
    """
    items = np.asarray(items, dtype=np.int64)
    n = len(items)
    base = np.asarray(base, dtype=np.float64)
    z = (base - base.mean()) / base.std() if n > 1 and base.std() > 0 else np.zeros(n)
    vec = item_vectors(catalog, items)
    sim = vec @ vec.T
    rep = np.zeros(n)
    if len(skipped):
        rep = -np.clip((vec @ item_vectors(catalog, skipped).T).max(axis=1), 0.0, None)
    g = np.asarray(catalog.genres, dtype=np.float64)[items]
    cg = np.asarray(clicked_genres, dtype=np.float64)
    aff = np.zeros(n)
    if cg.sum() > 0:
        aff = (g @ cg) / np.maximum(np.linalg.norm(g, axis=1) * np.linalg.norm(cg), 1e-12)
    static = np.column_stack([z, np.asarray(match, dtype=np.float64), novelty(catalog)[items] * (1 + novelty_boost),
                              np.zeros(n), rep, aff])
    return Candidates(items, static, sim, 1.0 + diversity_boost)


def rank_page(cands: Candidates, weights: PolicyWeights, k: int, *, temperature: float = 0.0,
              rng: np.random.Generator | None = None, allowed: np.ndarray | None = None,
              fixed: np.ndarray | None = None, required: np.ndarray | None = None,
              n_required: int = 0) -> PageDecision:
    """Pick ``k`` candidates one slot at a time (greedy, or sampled when ``temperature > 0``).

    Args:
        cands: the candidates.
        weights: feature weights.
        k: page size (fewer when there are fewer candidates).
        temperature: 0 = greedy (ties go to the better base score); > 0 = Plackett-Luce sampling.
        rng: the session's generator (required when sampling).
        allowed: bool ``[n]``: candidates that may be picked (default all).
        fixed: candidate positions to "pick" instead of choosing: evaluates that page's log-probability and
            gradient under ``weights`` (off-policy checks, finite differences); needs ``temperature > 0``.
        required: bool ``[n]``: candidates that count towards a quota (the items meeting the user's latest
            wish); with ``n_required``, once the slots left equal the quota still open, only such candidates may
            be picked (while any is available). The page's probability is then that of the constrained policy,
            so the gradient stays exact.
        n_required: how many of the ``k`` picks must be ``required`` candidates (clipped to what exists).

    Returns:
        :class:`PageDecision`.

    Raises:
        ValueError: sampling without ``rng``, or ``fixed`` without a temperature or with unavailable positions.
    """
    if fixed is not None:
        if temperature <= 0:
            raise ValueError("evaluating a fixed page's log-probability needs temperature > 0")
        k = len(fixed)
    elif temperature > 0 and rng is None:
        raise ValueError("sampling (temperature > 0) needs the session's rng")
    w = weights.as_array()
    n = len(cands.items)
    avail = np.ones(n, dtype=bool) if allowed is None else np.asarray(allowed, dtype=bool).copy()
    maxsim = np.zeros(n)
    feats = cands.static.copy()
    div = FEATURES.index("diversity")
    picks, rows, scores = [], [], []
    log_prob, grad = 0.0, np.zeros(len(FEATURES))
    need = np.zeros(n, dtype=bool) if required is None else np.asarray(required, dtype=bool)
    open_quota = int(n_required) if required is not None else 0
    total = min(k, int(avail.sum()))
    for step in range(total):
        feats[:, div] = -maxsim * cands.diversity_scale if step else 0.0
        s = feats @ w
        pickable = avail
        if open_quota > 0 and open_quota >= total - step and (avail & need).any():
            pickable = avail & need
        s_av = np.where(pickable, s, -np.inf)
        if temperature > 0:
            logits = s_av / temperature
            logits -= logits[pickable].max()
            p = np.where(pickable, np.exp(logits), 0.0)
            p /= p.sum()
            j = int(fixed[step]) if fixed is not None else int(rng.choice(n, p=p))
            if not pickable[j]:
                raise ValueError(f"fixed pick {j} at slot {step} is not available")
            log_prob += float(np.log(p[j]))
            grad += (feats[j] - p @ feats) / temperature
        else:
            j = int(np.argmax(s_av))  # first of equal scores: candidates come best base score first
        picks.append(j)
        rows.append(feats[j].copy())
        scores.append(float(s[j]))
        avail[j] = False
        open_quota -= int(need[j])
        maxsim = np.maximum(maxsim, np.clip(cands.similarity[:, j], 0.0, None))
    return PageDecision(np.array(picks, dtype=np.int64), np.array(rows).reshape(-1, len(FEATURES)),
                        np.array(scores), temperature > 0 and fixed is None, float(temperature), log_prob, grad)


__all__ = ["FEATURES", "PolicyWeights", "Candidates", "PageDecision", "build_candidates", "rank_page",
           "item_vectors", "novelty"]
