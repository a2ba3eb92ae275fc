"""How much the simulated users behave like the real ones: the Agent4Rec / SimUSER / AlignUSER protocol.

For each evaluated user, a 1:1 mix of the items they really interacted with (their held-out part, never seen
by the profile or the taste model) and items they never interacted with (uniform, seeded); the simulator says
which it would pick (click probability >= the threshold chosen on calibration users, never on these users).
Reported: accuracy, precision, recall, F1 (pairs pooled), the per-user mean accuracy (every user weighs the
same, as with Agent4Rec's fixed-size per-agent lists), ROC AUC, and rating MAE / RMSE of the simulator's rating
on the held-out ratings. :class:`PopularityBaseline` is the floor: clicks from item popularity alone, ratings
from item means.

Reference:
    Zhang et al., "On Generative Agents in Recommendation", SIGIR 2024 (Agent4Rec: 1:m discrimination,
    rating MAE 0.768 on ML-1M); SimUSER (2025); AlignUSER (2026: 83.17% accuracy on MovieLens).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Protocol

import numpy as np
from mmfeat.agents.simulator.pairs import choose_threshold, sample_pairs
from mmfeat.agents.simulator.profile import interaction_matrix
from mmfeat.agents.types import Catalog, UserHistory
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score


class PairModel(Protocol):
    """What fidelity evaluates: click probabilities and ratings for (user, item) pairs, and a threshold."""

    threshold: float

    def click_proba(self, histories: Sequence[UserHistory], users: np.ndarray, items: np.ndarray) -> np.ndarray: ...

    def rating(self, histories: Sequence[UserHistory], users: np.ndarray, items: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class FidelityReport:
    """Fidelity numbers for one set of users.

    Attributes:
        users, pairs, ratings: how many users, labelled pairs and held-out ratings were scored.
        accuracy, precision, recall, f1: of "would pick" (proba >= threshold) vs "really interacted", pairs pooled.
        user_accuracy: the mean over users of each user's accuracy.
        auc: ROC AUC of the click probability (nan with one class).
        mae, rmse: of the simulator's rating (whole stars, as the user gives them) on the held-out ratings.
        mae_expected: MAE of the unrounded expected rating.
        threshold: the click threshold used.
    """

    users: int
    pairs: int
    ratings: int
    accuracy: float
    precision: float
    recall: float
    f1: float
    user_accuracy: float
    auc: float
    mae: float
    rmse: float
    mae_expected: float
    threshold: float

    def row(self) -> dict[str, float]:
        """The report as a flat dict (a table row)."""
        return asdict(self)


class PopularityBaseline:
    """The floor a learned simulator must beat: P(click) from log item popularity (a logistic regression fit on
    calibration users' pairs, threshold on their validation share), rating = the item's mean training rating."""

    def __init__(self, catalog: Catalog, popularity: np.ndarray, item_mean: np.ndarray) -> None:
        self.catalog, self.popularity, self.item_mean = catalog, popularity, item_mean
        self.head = LogisticRegression()
        self.threshold = 0.5

    @classmethod
    def fit(cls, histories: Sequence[UserHistory], catalog: Catalog, calibration: np.ndarray,
            rng: np.random.Generator, validation_share: float = 0.3) -> PopularityBaseline:
        """Fit on the same calibration users (and the same kind of pairs) as the taste model.

        Returns:
            The fitted baseline.
        """
        R = interaction_matrix(histories, catalog.n_items)
        X = interaction_matrix(histories, catalog.n_items, values="ones")
        X.data[:] = 1.0
        count = np.asarray(X.sum(axis=0)).ravel()
        total = np.asarray(R.sum(axis=0)).ravel()
        mu = float(total.sum() / max(count.sum(), 1.0))
        model = cls(catalog, count, (total + 10.0 * mu) / (count + 10.0))
        perm = rng.permutation(np.asarray(calibration, np.int64))
        n_val = round(len(perm) * validation_share)
        _, i, y, _ = sample_pairs(histories, perm[n_val:], catalog.n_items, rng)
        model.head.fit(np.log1p(count[i])[:, None], y)
        vu, vi, vy, _ = sample_pairs(histories, perm[:n_val], catalog.n_items, rng)
        model.threshold = choose_threshold(model.click_proba(histories, vu, vi), vy)
        return model

    def click_proba(self, histories: Sequence[UserHistory], users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """P(click) from popularity alone."""
        return self.head.predict_proba(np.log1p(self.popularity[np.asarray(items, np.int64)])[:, None])[:, 1]

    def rating(self, histories: Sequence[UserHistory], users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """The item's (shrunk) mean training rating."""
        return np.clip(self.item_mean[np.asarray(items, np.int64)], 1.0, 5.0)


def _report(users: np.ndarray, labels: np.ndarray, proba: np.ndarray, rating_pred: np.ndarray,
            rating_true: np.ndarray, threshold: float) -> FidelityReport:
    y = labels.astype(bool)
    pick = proba >= threshold
    tp, fp, fn = int((pick & y).sum()), int((pick & ~y).sum()), int((~pick & y).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    correct = (pick == y).astype(np.float64)
    uniq, inv = np.unique(users, return_inverse=True)
    per_user = np.bincount(inv, correct) / np.maximum(np.bincount(inv), 1)
    auc = float(roc_auc_score(y, proba)) if 0 < y.sum() < len(y) else float("nan")
    stars = np.rint(rating_pred)
    err = stars - rating_true
    return FidelityReport(
        users=len(uniq), pairs=len(y), ratings=len(rating_true), accuracy=float(correct.mean()) if len(y) else 0.0,
        precision=precision, recall=recall, f1=f1, user_accuracy=float(per_user.mean()) if len(uniq) else 0.0,
        auc=auc, mae=float(np.abs(err).mean()) if len(err) else float("nan"),
        rmse=float(np.sqrt((err ** 2).mean())) if len(err) else float("nan"),
        mae_expected=float(np.abs(rating_pred - rating_true).mean()) if len(err) else float("nan"),
        threshold=float(threshold))


def fidelity(model: PairModel, histories: Sequence[UserHistory], users: np.ndarray, n_items: int,
             rng: np.random.Generator, *, groups: dict[str, np.ndarray] | None = None) -> dict[str, FidelityReport]:
    """Score ``model`` on the held-out parts of ``users``, overall and per group.

    Args:
        model: a :class:`~mmfeat.agents.simulator.taste.TasteModel`, a :class:`PopularityBaseline`, or any
            :class:`PairModel`.
        histories: the population.
        users: the evaluated users (population indices; none of them may be calibration users).
        n_items: catalog size.
        rng: draws the negatives (pass the same seed to compare models on the same pairs).
        groups: optional ``{trait: label per user}`` (aligned with ``users``), e.g. activity levels; each label
            gets its own report, keyed ``"<trait>=<label>"``.

    Returns:
        ``{"all": report, "<trait>=<label>": report, ...}``.

    Example:
        >>> reports = fidelity(taste, pop.histories, pop.users, pop.catalog.n_items, np.random.default_rng(0),
        ...                    groups={"activity": pop.segment_of("activity")})   # doctest: +SKIP
        >>> reports["all"].accuracy, reports["activity=high"].mae                   # doctest: +SKIP
    """
    users = np.asarray(users, np.int64)
    u, i, y, r = sample_pairs(histories, users, n_items, rng)
    proba = model.click_proba(histories, u, i)
    pos = y == 1
    rating_pred = model.rating(histories, u[pos], i[pos])
    out = {"all": _report(u, y, proba, rating_pred, r[pos], model.threshold)}
    for trait, labels in (groups or {}).items():
        labels = np.asarray(labels).astype(str)
        order = np.argsort(users, kind="stable")
        pair_label = labels[order[np.searchsorted(users[order], u)]]
        for level in sorted(set(labels.tolist())):
            m = pair_label == level
            out[f"{trait}={level}"] = _report(u[m], y[m], proba[m], rating_pred[m[pos]], r[pos][m[pos]],
                                              model.threshold)
    return out
