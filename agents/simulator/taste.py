"""The simulated user's taste, learned from data: would this user click item i, and what would they rate it.

Two stages, both fit on real interactions (never hand-written rules):

1. Collaborative models on every user's *training* interactions (:mod:`.cf`): EASE (what a user watches; a
   personal and a popularity-smoothed penalty), windowed transitions (what people watch next after the user's
   latest items; long and short range) and biased ALS (what they rate), plus the profile arrays (genre shares,
   era, mean rating; :mod:`.profile`).
2. Heads on *calibration users* only (a seeded share of the population that is never evaluated): a gradient-
   boosted click classifier on [EASE scores and rank, transitions, popularity, genre affinity, year gap,
   activity, ALS rating, item statistics] fit on their held-out positives vs uniformly sampled never-seen negatives (the fidelity
   protocol's own pairs, :func:`.pairs.sample_pairs`), and a rating regressor on [ALS rating, user and recent
   means, item mean, the user's mean for the item's genres, ...] fit on their held-out ratings. The held-out
   part is later in time than what the collaborative models saw, so the heads learn how a user's *next*
   choices relate to their past, which is what the simulator is asked. The click threshold is chosen on a
   separate validation share of the calibration users, never on test users.

Gradient boosting (scikit-learn's histogram GBM) is used for both heads: it takes missing values (unknown
year, a genre never rated) as they are, and its log-loss output is a calibrated probability. Everything is
seeded from the ``np.random.Generator`` passed to :meth:`TasteModel.fit`.

Reference:
    Zhang et al., "On Generative Agents in Recommendation", SIGIR 2024 (Agent4Rec: rating MAE 0.768 on ML-1M);
    Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", WWW 2019; Zhou et al., AAIM 2008 (ALS-WR);
    Ke et al., "LightGBM", NeurIPS 2017 (the histogram GBM scikit-learn implements).
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from mmfeat.agents.simulator.cf import EASE, BiasedALS, Transitions
from mmfeat.agents.simulator.pairs import choose_threshold, sample_pairs
from mmfeat.agents.simulator.profile import (
    ProfileArrays,
    interaction_matrix,
    profile_arrays,
)
from mmfeat.agents.types import Catalog, UserHistory
from scipy.stats import rankdata
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
)
from threadpoolctl import ThreadpoolController

CLICK_FEATURES = ("ease", "ease_smooth", "ease_pct", "transition", "transition_short", "log_pop", "genre_cos", "year_gap", "log_n",
                  "als_rating", "item_mean", "item_std", "item_genres", "year")
_POOLS = ThreadpoolController()  # OpenMP of scikit-learn's boosting (loaded above)
_SMALL = 20000  # fewer rows than this: one thread (a thread team's start-up and spinning cost more)
RATING_FEATURES = ("als_rating", "mean_rating", "recent_mean", "item_mean", "user_genre_mean", "log_pop", "log_n",
                   "genre_cos", "year_gap", "ease_pct", "conformity")


@dataclass(frozen=True)
class TasteConfig:
    """Hyper-parameters of the taste model (defaults checked on ML-1M calibration users; see the fidelity bench).

    Attributes:
        ease_l2, ease_smooth_l2: ridge penalties of the two EASE models (personal / popularity-smoothed).
        transition_window, transition_half_life: :class:`~.cf.Transitions` window and recency half-life.
        short_window: window (and half-life) of the second, short-range transitions (the very next items).
        als_dim, als_l2, als_iters: biased ALS factors, weighted-lambda penalty, alternations.
        head_iters, head_lr, head_leaves: boosting rounds, learning rate, leaves per tree of both heads.
        validation_share: share of calibration users kept out of the head fit to choose the click threshold.
        recent: how many of the latest training ratings make ``recent_mean`` (drift of a user's scale).
    """

    ease_l2: float = 300.0
    ease_smooth_l2: float = 3000.0
    transition_window: int = 30
    transition_half_life: float = 30.0
    short_window: int = 5
    als_dim: int = 32
    als_l2: float = 0.08
    als_iters: int = 8
    head_iters: int = 200
    head_lr: float = 0.08
    head_leaves: int = 31
    validation_share: float = 0.3
    recent: int = 10


@dataclass(frozen=True)
class UserFeatures:
    """Per-history state the heads read (row ``r`` = the ``r``-th history passed to :meth:`TasteModel.user_features`)."""

    ease: np.ndarray
    ease_smooth: np.ndarray
    ease_pct: np.ndarray
    transition: np.ndarray
    transition_short: np.ndarray
    P: np.ndarray
    bu: np.ndarray
    recent_mean: np.ndarray
    profiles: ProfileArrays


@dataclass(frozen=True)
class Collaborative:
    """Stage 1: the models and crowd statistics fit on every user's training interactions."""

    ease: EASE
    ease_smooth: EASE
    transitions: Transitions
    short_transitions: Transitions
    als: BiasedALS
    crowd: ProfileArrays
    item_count: np.ndarray
    item_std: np.ndarray

    @classmethod
    def fit(cls, histories: Sequence[UserHistory], catalog: Catalog, rng: np.random.Generator,
            config: TasteConfig) -> Collaborative:
        """Fit EASE (twice), transitions (long and short range) and ALS; item counts and rating spread from training ratings."""
        R = interaction_matrix(histories, catalog.n_items)
        X = interaction_matrix(histories, catalog.n_items, values="ones")
        X.data[:] = 1.0
        item_count = np.asarray(X.sum(axis=0)).ravel()
        R2 = R.multiply(R)
        mean = np.asarray(R.sum(axis=0)).ravel() / np.maximum(item_count, 1)
        var = np.asarray(R2.sum(axis=0)).ravel() / np.maximum(item_count, 1) - mean ** 2
        item_std = np.where(item_count > 1, np.sqrt(np.maximum(var, 0.0)), np.nan)
        seqs = [h.items for h in histories]
        return cls(ease=EASE(l2=config.ease_l2).fit(X), ease_smooth=EASE(l2=config.ease_smooth_l2).fit(X),
                   transitions=Transitions(config.transition_window, config.transition_half_life).fit(
                       seqs, catalog.n_items),
                   short_transitions=Transitions(config.short_window, float(config.short_window)).fit(
                       seqs, catalog.n_items),
                   als=BiasedALS(dim=config.als_dim, l2=config.als_l2, iters=config.als_iters).fit(R, rng),
                   crowd=profile_arrays(histories, catalog), item_count=item_count, item_std=item_std)


class TasteModel:
    """A learned click probability and rating for (user history, item) pairs; see the module docstring.

    Build it with :meth:`fit`. ``threshold`` is the click probability above which the simulator "would pick"
    an item in the fidelity protocol; ``info`` holds the fit's lineage (config, sizes, validation scores,
    seconds).
    """

    def __init__(self, catalog: Catalog, config: TasteConfig, cf: Collaborative, click_head: Any = None,
                 rating_head: Any = None, threshold: float = 0.5, info: dict[str, Any] | None = None) -> None:
        self.catalog, self.config, self.cf = catalog, config, cf
        self.click_head, self.rating_head = click_head, rating_head
        self.threshold, self.info = threshold, dict(info or {})

    @classmethod
    def fit(cls, histories: Sequence[UserHistory], catalog: Catalog, calibration: np.ndarray,
            rng: np.random.Generator, config: TasteConfig = TasteConfig()) -> TasteModel:
        """Fit the collaborative models on all training parts, the heads on ``calibration`` users' held-out parts.

        Args:
            histories: the whole population (``histories[u].user == u``); only training parts feed stage 1.
            catalog: the items.
            calibration: population indices whose held-out items fit the heads and choose the threshold; they
                must not be the users you evaluate.
            rng: seeds ALS, the negatives, the calibration split and the boosting.
            config: hyper-parameters.

        Returns:
            The fitted model.

        Raises:
            ValueError: no calibration user has held-out items.

        Example:
            >>> taste = TasteModel.fit(pop.histories, pop.catalog, pop.calibration, np.random.default_rng(0))  # doctest: +SKIP
            >>> taste.click_proba(pop.histories, np.array([3, 3]), np.array([10, 42]))                         # doctest: +SKIP
        """
        t0 = time.perf_counter()
        calibration = np.asarray(calibration, np.int64)
        calibration = calibration[np.fromiter((len(histories[u].heldout_items) > 0 for u in calibration), bool,
                                              count=len(calibration))]
        if len(calibration) == 0:
            raise ValueError("no calibration user has held-out items: nothing to fit the click and rating heads on")
        model = cls(catalog, config, Collaborative.fit(histories, catalog, rng, config))
        t_cf = time.perf_counter() - t0
        perm = rng.permutation(calibration)
        n_val = round(len(perm) * config.validation_share) if len(perm) > 1 else 0
        val_users, fit_users = perm[:n_val], perm[n_val:]
        u, i, y, r = sample_pairs(histories, fit_users, catalog.n_items, rng)
        Xc, Xr = model.pair_features(histories, u, i)
        seed = int(rng.integers(2**31 - 1))
        hgb = {"max_iter": config.head_iters, "learning_rate": config.head_lr,
               "max_leaf_nodes": config.head_leaves, "early_stopping": False, "random_state": seed}
        pos = y == 1
        with _POOLS.limit(limits=1 if len(y) < _SMALL else None, user_api="openmp"):
            model.click_head = HistGradientBoostingClassifier(**hgb).fit(Xc, y)
            model.rating_head = HistGradientBoostingRegressor(**hgb).fit(Xr[pos], r[pos])
        info: dict[str, Any] = {"config": asdict(config), "calibration_users": len(calibration),
                                "head_fit_users": len(fit_users), "threshold_users": len(val_users),
                                "head_fit_pairs": len(y), "collaborative_seconds": round(t_cf, 2)}
        if n_val:
            vu, vi, vy, vr = sample_pairs(histories, val_users, catalog.n_items, rng)
            p = model.click_proba(histories, vu, vi)
            model.threshold = choose_threshold(p, vy)
            vpos = vy == 1
            info.update(threshold_pairs=len(vy), val_accuracy=float(((p >= model.threshold) == vpos).mean()),
                        val_rating_mae=float(np.abs(model.rating(histories, vu[vpos], vi[vpos]) - vr[vpos]).mean()))
        info["threshold"] = model.threshold
        info["fit_seconds"] = round(time.perf_counter() - t0, 2)
        model.info = info
        return model

    def user_features(self, histories: Sequence[UserHistory]) -> UserFeatures:
        """The heads' per-user inputs for any histories (folded in: no refit, an empty history is fine)."""
        cf, n_items = self.cf, self.catalog.n_items
        X = interaction_matrix(histories, n_items, values="ones")
        X.data[:] = 1.0
        ease = cf.ease.scores(X)
        ease_pct = (rankdata(ease, axis=1) / max(1, n_items)).astype(np.float32)
        P, bu = cf.als.fold_in(interaction_matrix(histories, n_items))
        k = self.config.recent
        recent = np.array([h.ratings[-k:].mean() if len(h.ratings) else np.nan for h in histories], np.float64)
        seqs = [h.items for h in histories]
        return UserFeatures(ease, cf.ease_smooth.scores(X), ease_pct, cf.transitions.scores(seqs),
                            cf.short_transitions.scores(seqs), P, bu, recent,
                            profile_arrays(histories, self.catalog, reference=cf.crowd))

    def pair_features(self, histories: Sequence[UserHistory], users: np.ndarray,
                      items: np.ndarray, uf: UserFeatures | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Click and rating feature matrices for pairs (``users`` index ``histories``; or rows of ``uf``).

        Returns:
            ``(click features [pairs, len(CLICK_FEATURES)], rating features [pairs, len(RATING_FEATURES)])``.
        """
        users, items = np.asarray(users, np.int64), np.asarray(items, np.int64)
        if uf is None:
            uniq, rows = np.unique(users, return_inverse=True)
            uf = self.user_features([histories[u] for u in uniq])
        else:
            rows = users
        pa, cat, cf = uf.profiles, self.catalog, self.cf
        g = cat.genres[items].astype(np.float64)
        w = pa.genre_weights[rows]
        with np.errstate(invalid="ignore", divide="ignore"):
            genre_cos = np.einsum("ij,ij->i", w, g) / (np.linalg.norm(w, axis=1) * np.linalg.norm(g, axis=1))
            gm = pa.genre_mean_rating[rows]
            hit = (g > 0) & np.isfinite(gm)
            user_genre_mean = np.where(hit.any(axis=1), np.where(hit, gm, 0.0).sum(axis=1) / hit.sum(axis=1), np.nan)
        years = cat.years[items].astype(np.float64)
        years = np.where(years > 0, years, np.nan)
        year_gap = np.abs(years - pa.mean_year[rows]) / 10.0
        log_pop = np.log1p(cf.item_count[items])
        log_n = np.log1p(pa.n[rows].astype(np.float64))
        als = cf.als.predict(uf.P, uf.bu, rows, items)
        item_mean = pa.item_mean[items]
        ease_pct = uf.ease_pct[rows, items].astype(np.float64)
        click = np.column_stack([uf.ease[rows, items], uf.ease_smooth[rows, items], ease_pct,
                                 uf.transition[rows, items], uf.transition_short[rows, items], log_pop, genre_cos, year_gap, log_n, als, item_mean,
                                 cf.item_std[items], g.sum(axis=1), years])
        rating = np.column_stack([als, pa.mean_rating[rows], uf.recent_mean[rows], item_mean, user_genre_mean,
                                  log_pop, log_n, genre_cos, year_gap, ease_pct, pa.conformity[rows]])
        return click, rating

    def click_proba(self, histories: Sequence[UserHistory], users: np.ndarray, items: np.ndarray,
                    uf: UserFeatures | None = None) -> np.ndarray:
        """P(the user would click / watch the item), calibrated on the 1:1 fidelity mix, per pair."""
        if len(items) == 0:
            return np.zeros(0)
        return self.click_head.predict_proba(self.pair_features(histories, users, items, uf)[0])[:, 1]

    def rating(self, histories: Sequence[UserHistory], users: np.ndarray, items: np.ndarray,
               uf: UserFeatures | None = None) -> np.ndarray:
        """Expected rating per pair, clipped to 1..5."""
        if len(items) == 0:
            return np.zeros(0)
        return np.clip(self.rating_head.predict(self.pair_features(histories, users, items, uf)[1]), 1.0, 5.0)

    def for_user(self, history: UserHistory) -> UserTaste:
        """One user's taste with its per-user state computed once (what a :class:`SimulatedUser` holds)."""
        return UserTaste(self, history, self.user_features([history]))


class UserTaste:
    """A :class:`TasteModel` bound to one history: click probabilities and ratings for item arrays.

    A page is a few items: predictions run on one OpenMP thread (starting a thread team per page costs more
    than the trees, and on a busy machine spinning threads make a 10 ms page take a second).
    """

    def __init__(self, model: TasteModel, history: UserHistory, uf: UserFeatures) -> None:
        self.model, self.history, self.uf = model, history, uf

    def click_proba(self, items: np.ndarray) -> np.ndarray:
        """P(click) per item (1:1-mix calibrated)."""
        items = np.asarray(items, np.int64)
        with _POOLS.limit(limits=1, user_api="openmp"):
            return self.model.click_proba([self.history], np.zeros(len(items), np.int64), items, self.uf)

    def rating(self, items: np.ndarray) -> np.ndarray:
        """Expected rating per item, 1..5."""
        items = np.asarray(items, np.int64)
        with _POOLS.limit(limits=1, user_api="openmp"):
            return self.model.rating([self.history], np.zeros(len(items), np.int64), items, self.uf)
