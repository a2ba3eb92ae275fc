"""The fidelity protocol's labelled pairs: held-out positives mixed 1:1 with never-seen negatives.

Why uniform negatives from items the user never interacted with (neither in training nor held out): it is the
protocol Agent4Rec, SimUSER and AlignUSER report (a 1:1 mix of items the user really interacted with and items
they did not), so accuracy is comparable to their numbers. The same sampler builds the click head's training
pairs on calibration users, so the head is fit on exactly the task it is tested on, never on test users.

Reference:
    Zhang et al., "On Generative Agents in Recommendation", SIGIR 2024 (Agent4Rec, Sec. 4: 1:m item mixes);
    AlignUSER (2026): binary "would this user interact" accuracy on MovieLens.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from mmfeat.agents.types import UserHistory


def sample_pairs(histories: Sequence[UserHistory], users: np.ndarray, n_items: int, rng: np.random.Generator, *,
                 ratio: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each user's held-out items (label 1) and ``ratio`` x as many uniform never-interacted items (label 0).

    Args:
        histories: the population (``histories[u]`` is user ``u``).
        users: the users to draw for (population indices); users without held-out items add nothing.
        n_items: catalog size.
        rng: draws the negatives (same seed, same pairs).
        ratio: negatives per positive.

    Returns:
        ``(users, items, labels, ratings)`` per pair; ``ratings`` is the held-out rating for positives, nan for
        negatives.

    Raises:
        ValueError: a user has interacted with every item (no negative can be drawn).

    Example:
        >>> u, i, y, r = sample_pairs(histories, np.arange(10), catalog.n_items, np.random.default_rng(0))  # doctest: +SKIP
    """
    users = np.asarray(users, np.int64)
    pos_items = [histories[u].heldout_items for u in users]
    n_pos = np.fromiter((len(x) for x in pos_items), np.int64, count=len(users))
    if n_pos.sum() == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty.astype(np.int8), np.zeros(0, np.float32)
    pos_u = np.repeat(users, n_pos)
    pos_i = np.concatenate(pos_items).astype(np.int64)
    pos_r = np.concatenate([histories[u].heldout_ratings for u in users]).astype(np.float32)
    # Everything each user touched, as sorted keys user * n_items + item, for a vectorized membership test.
    seen_u = np.concatenate([np.full(len(histories[u].items) + len(histories[u].heldout_items), u) for u in users])
    seen_i = np.concatenate([np.concatenate([histories[u].items, histories[u].heldout_items]) for u in users])
    seen = np.unique(seen_u.astype(np.int64) * n_items + seen_i.astype(np.int64))
    if np.unique(seen // n_items, return_counts=True)[1].max() >= n_items:
        raise ValueError("a user has interacted with every item: no negative item to sample")
    neg_u = np.repeat(pos_u, ratio)
    neg_i = np.empty(len(neg_u), np.int64)
    todo = np.arange(len(neg_u))
    while len(todo):  # rejection sampling: redraw only the draws that hit a seen item
        draw = rng.integers(0, n_items, len(todo))
        keys = neg_u[todo] * n_items + draw
        pos = np.searchsorted(seen, keys)
        hit = (pos < len(seen)) & (seen[np.minimum(pos, len(seen) - 1)] == keys)
        neg_i[todo[~hit]] = draw[~hit]
        todo = todo[hit]
    out_u = np.concatenate([pos_u, neg_u])
    out_i = np.concatenate([pos_i, neg_i])
    labels = np.concatenate([np.ones(len(pos_u), np.int8), np.zeros(len(neg_u), np.int8)])
    ratings = np.concatenate([pos_r, np.full(len(neg_u), np.nan, np.float32)])
    return out_u, out_i, labels, ratings


def choose_threshold(proba: np.ndarray, labels: np.ndarray) -> float:
    """The click-probability threshold with the best accuracy on validation pairs (ties: the one nearest 0.5).

    Args:
        proba: predicted click probabilities.
        labels: 1 = the user interacted.

    Returns:
        A threshold ``t``: predict "would pick" when ``proba >= t``. 0.5 when there is nothing to choose on.
    """
    proba = np.asarray(proba, np.float64)
    labels = np.asarray(labels).astype(bool)
    if len(proba) == 0 or labels.all() or (~labels).all():
        return 0.5
    order = np.argsort(-proba, kind="stable")
    p, y = proba[order], labels[order]
    # Predicting positive for the top k: correct = positives in the top k + negatives below it.
    tp = np.cumsum(y)
    correct = tp + ((~y).sum() - (np.arange(1, len(y) + 1) - tp))
    last = np.r_[p[1:] != p[:-1], True]  # only cut between distinct probabilities
    ks = np.flatnonzero(last)
    best = correct[ks].max()
    cands = ks[correct[ks] == best]
    cuts = np.where(cands + 1 < len(p), (p[cands] + p[np.minimum(cands + 1, len(p) - 1)]) / 2, p[cands])
    return float(cuts[np.argmin(np.abs(cuts - 0.5))])
