"""A simulated user's profile, read from its training history only: tastes plus Agent4Rec's social traits.

Why these fields: Agent4Rec initialises each of its 1,000 MovieLens agents with *tastes* (liked / disliked
genres, read from the history) and three *social traits* that explain how real users differ in how they
interact: **activity** (how much they watch), **conformity** (how close their ratings are to the crowd's) and
**diversity** (how many kinds of items they watch). Each trait is bucketed into low / medium / high by the
population's tertiles, so a segment ("high-activity users") means the same thing in every run on a dataset.
The profile drives the reflective-instruction template and the LLM prompt; the taste model reads the same
arrays (genre shares, era, mean rating) as features.

Everything is computed for the whole population at once with sparse matrix products (no per-interaction
loops): :func:`profile_arrays` returns column arrays; :meth:`ProfileArrays.profile` one user's :class:`Profile`.

Reference:
    An Zhang, Yuxin Chen, Leheng Sheng, Xiang Wang, Tat-Seng Chua. "On Generative Agents in Recommendation."
    SIGIR 2024 (Agent4Rec): profile = tastes + social traits (activity, conformity, diversity).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from mmfeat.agents.types import Catalog, UserHistory

LEVELS = ("low", "medium", "high")
TRAITS = ("activity", "conformity", "diversity")


def interaction_matrix(histories: Sequence[UserHistory], n_items: int, *, heldout: bool = False,
                       values: str = "ratings") -> sp.csr_matrix:
    """Users x items sparse matrix of the training (or held-out) part of each history.

    Args:
        histories: row ``r`` is ``histories[r]`` (not ``histories[r].user``).
        n_items: number of catalog items (columns).
        heldout: read the held-out part instead of the training part.
        values: ``"ratings"`` (the ratings) or ``"ones"`` (binary; duplicates summed).

    Returns:
        A float64 CSR matrix ``[len(histories), n_items]``.
    """
    items = [h.heldout_items if heldout else h.items for h in histories]
    lengths = np.fromiter((len(x) for x in items), np.int64, count=len(items))
    cols = np.concatenate(items).astype(np.int64) if len(items) else np.zeros(0, np.int64)
    rows = np.repeat(np.arange(len(histories)), lengths)
    if values == "ratings":
        vals = np.concatenate([h.heldout_ratings if heldout else h.ratings for h in histories]).astype(np.float64) \
            if len(items) else np.zeros(0)
    else:
        vals = np.ones(len(cols))
    return sp.csr_matrix((vals, (rows, cols)), shape=(len(histories), n_items))


@dataclass(frozen=True)
class TraitEdges:
    """Tertile edges of the three traits over a population's users with a history (how a level is read).

    Attributes:
        activity: two edges on the number of training interactions.
        conformity: two edges on the mean absolute deviation from item mean ratings (low deviation = high
            conformity).
        diversity: two edges on the entropy (bits) of the watched-genre distribution.
    """

    activity: tuple[float, float]
    conformity: tuple[float, float]
    diversity: tuple[float, float]


@dataclass(frozen=True)
class Profile:
    """One user's profile (training history only).

    Attributes:
        user: index in the population.
        n_interactions: training interactions.
        mean_rating: mean training rating (nan with no history).
        genre_weights: rating-weighted share of each genre among watched items, sums to 1 (all 0 when empty).
        liked_genres: up to 3 genres watched more than the crowd does and rated at least the user's mean.
        disliked_genres: up to 2 genres the user avoids (watched under half as much as the crowd) or rates low.
        era: decade of the mean release year of watched items (e.g. 1990), or None.
        mean_year: mean release year of watched items (nan when unknown).
        conformity: mean |user rating - item mean rating| (lower = more conforming; nan with no ratings).
        n_genres: number of distinct genres watched.
        genre_entropy: entropy (bits) of the watched-genre distribution.
        activity_level, conformity_level, diversity_level: ``low`` / ``medium`` / ``high`` (``unknown`` for
            conformity without ratings); high conformity = low deviation.
    """

    user: int
    n_interactions: int
    mean_rating: float
    genre_weights: np.ndarray
    liked_genres: tuple[str, ...]
    disliked_genres: tuple[str, ...]
    era: int | None
    mean_year: float
    conformity: float
    n_genres: int
    genre_entropy: float
    activity_level: str
    conformity_level: str
    diversity_level: str

    def describe(self) -> str:
        """The profile as one plain sentence (the LLM prompt's persona; no item text in it)."""
        if self.n_interactions == 0:
            return "A new user with no viewing history yet."
        parts = [f"Has watched {self.n_interactions} movies ({self.activity_level} activity)"]
        if np.isfinite(self.mean_rating):
            parts.append(f"average rating {self.mean_rating:.1f} of 5")
        if self.liked_genres:
            parts.append("likes " + ", ".join(self.liked_genres))
        if self.disliked_genres:
            parts.append("avoids " + ", ".join(self.disliked_genres))
        if self.era is not None:
            parts.append(f"mostly watches movies from the {self.era}s")
        if self.conformity_level != "unknown":
            parts.append(f"{self.conformity_level} conformity with the crowd's ratings")
        parts.append(f"{self.diversity_level} genre diversity")
        return "; ".join(parts) + "."


@dataclass(frozen=True)
class ProfileArrays:
    """The profiles of a population as column arrays (row ``r`` = ``histories[r]``).

    Attributes:
        user: population index per row.
        n: training interactions per row.
        mean_rating: mean training rating (nan when empty).
        genre_weights: ``[rows, n_genres]`` rating-weighted genre shares (rows sum to 1 or are 0).
        genre_mean_rating: ``[rows, n_genres]`` mean rating of the user's items of each genre (nan: none).
        genre_lift: ``[rows, n_genres]`` genre share / the crowd's genre share (0 when empty).
        mean_year: mean known release year (nan when none).
        conformity: mean |rating - item mean| (nan when empty).
        n_genres: distinct genres watched.
        entropy: genre entropy in bits.
        item_mean: ``[n_items]`` mean training rating per item (the global mean where unrated).
        global_mean: mean of all training ratings (3.0 when there are none).
        genre_prior: the crowd's genre share over all training interactions.
        edges: the trait tertiles (from the reference population when one was given).
        genre_names: the catalog's genre vocabulary.
    """

    user: np.ndarray
    n: np.ndarray
    mean_rating: np.ndarray
    genre_weights: np.ndarray
    genre_mean_rating: np.ndarray
    genre_lift: np.ndarray
    mean_year: np.ndarray
    conformity: np.ndarray
    n_genres: np.ndarray
    entropy: np.ndarray
    item_mean: np.ndarray
    global_mean: float
    genre_prior: np.ndarray
    edges: TraitEdges
    genre_names: list[str]

    def levels(self, trait: str) -> np.ndarray:
        """``low`` / ``medium`` / ``high`` per row for ``trait`` (``activity``, ``conformity``, ``diversity``).

        Raises:
            ValueError: an unknown trait.
        """
        if trait not in TRAITS:
            raise ValueError(f"unknown trait {trait!r}; known: {TRAITS}")
        value = {"activity": self.n, "conformity": self.conformity, "diversity": self.entropy}[trait]
        bucket = np.digitize(np.nan_to_num(value, nan=-1.0), getattr(self.edges, trait), right=True)
        if trait == "conformity":  # low deviation = high conformity
            bucket = 2 - bucket
        out = np.asarray(LEVELS, dtype=object)[bucket]
        if trait == "conformity":
            out[~np.isfinite(self.conformity)] = "unknown"
        return out

    def profile(self, row: int) -> Profile:
        """One row as a :class:`Profile`."""
        names = self.genre_names
        lift, share, gmean = self.genre_lift[row], self.genre_weights[row], self.genre_mean_rating[row]
        mean = self.mean_rating[row]
        liked: tuple[str, ...] = ()
        disliked: tuple[str, ...] = ()
        if self.n[row] > 0:
            ok = (lift >= 1.0) & ~(np.nan_to_num(gmean, nan=-np.inf) < mean - 0.25)
            order = np.argsort(-share, kind="stable")
            liked = tuple(names[j] for j in order if ok[j] and share[j] > 0)[:3] or \
                tuple(names[j] for j in order if share[j] > 0)[:2]
            low_rated = np.nan_to_num(gmean, nan=np.inf) <= mean - 0.5
            avoided = (lift < 0.5) & (self.genre_prior >= 0.02)
            bad = (avoided | low_rated) & ~np.isin(np.asarray(names, dtype=object), liked)
            order_bad = np.argsort(lift + np.where(low_rated, -1.0, 0.0), kind="stable")
            disliked = tuple(names[j] for j in order_bad if bad[j])[:2]
        year = self.mean_year[row]
        return Profile(
            user=int(self.user[row]), n_interactions=int(self.n[row]), mean_rating=float(mean),
            genre_weights=share.copy(), liked_genres=liked, disliked_genres=disliked,
            era=int(year // 10 * 10) if np.isfinite(year) else None, mean_year=float(year),
            conformity=float(self.conformity[row]), n_genres=int(self.n_genres[row]),
            genre_entropy=float(self.entropy[row]),
            activity_level=str(self.levels("activity")[row]), conformity_level=str(self.levels("conformity")[row]),
            diversity_level=str(self.levels("diversity")[row]))


def _tertiles(values: np.ndarray) -> tuple[float, float]:
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return (np.inf, np.inf)
    lo, hi = np.quantile(values, [1 / 3, 2 / 3])
    return (float(lo), float(hi))


def _row_mean(m: sp.csr_matrix, counts: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, np.asarray(m.sum(axis=1)).ravel() / np.maximum(counts, 1), np.nan)


def profile_arrays(histories: Sequence[UserHistory], catalog: Catalog, *,
                   reference: ProfileArrays | None = None) -> ProfileArrays:
    """Every history's profile, vectorized (sparse products over the users x items matrix).

    Args:
        histories: the users to profile (training parts only are read).
        catalog: the items (genres, years).
        reference: a population's arrays whose crowd statistics (item means, genre prior, trait edges) are
            used instead of this set's own: profile one new user relative to the population. None = this
            set is the population.

    Returns:
        :class:`ProfileArrays`, row ``r`` = ``histories[r]``.

    Example:
        >>> pa = profile_arrays(histories, catalog)                     # doctest: +SKIP
        >>> pa.profile(0).liked_genres, pa.levels("activity")[:3]       # doctest: +SKIP
    """
    R = interaction_matrix(histories, catalog.n_items)
    X = interaction_matrix(histories, catalog.n_items, values="ones")
    G = sp.csr_matrix(catalog.genres.astype(np.float64))
    n = np.asarray(X.sum(axis=1)).ravel().astype(np.int64)
    mean_rating = _row_mean(R, n)
    if reference is None:
        item_n = np.asarray(X.sum(axis=0)).ravel()
        item_sum = np.asarray(R.sum(axis=0)).ravel()
        global_mean = float(item_sum.sum() / item_n.sum()) if item_n.sum() else 3.0
        # Shrunk toward the global mean (10 pseudo-ratings): an item rated once has no reliable mean.
        item_mean = (item_sum + 10.0 * global_mean) / (item_n + 10.0)
        crowd = np.asarray(X.sum(axis=0)).ravel() @ catalog.genres.astype(np.float64)
        genre_prior = crowd / crowd.sum() if crowd.sum() else np.full(len(catalog.genre_names),
                                                                      1.0 / max(1, len(catalog.genre_names)))
    else:
        item_mean, global_mean, genre_prior = reference.item_mean, reference.global_mean, reference.genre_prior
    XG = (X @ G).toarray()
    RG = (R @ G).toarray()
    with np.errstate(invalid="ignore", divide="ignore"):
        genre_mean_rating = np.where(XG > 0, RG / np.maximum(XG, 1e-12), np.nan)
        rg_total = RG.sum(axis=1, keepdims=True)
        genre_weights = np.where(rg_total > 0, RG / np.maximum(rg_total, 1e-12), 0.0)
        xg_total = XG.sum(axis=1, keepdims=True)
        share = np.where(xg_total > 0, XG / np.maximum(xg_total, 1e-12), 0.0)
        genre_lift = np.where(genre_prior > 0, share / np.maximum(genre_prior, 1e-12), 0.0)
        plogp = np.where(share > 0, share * np.log2(np.where(share > 0, share, 1.0)), 0.0)
    entropy = -plogp.sum(axis=1)
    n_genres = (XG > 0).sum(axis=1)
    # Mean known release year: years of 0 are unknown and left out.
    years = catalog.years.astype(np.float64)
    known = (years > 0).astype(np.float64)
    year_n = X @ known
    mean_year = np.where(year_n > 0, (X @ (years * known)) / np.maximum(year_n, 1), np.nan)
    # Conformity: mean |r_ui - mean_i| over the user's training ratings (CSR data aligned with indices).
    dev = R.copy()
    dev.data = np.abs(dev.data - item_mean[dev.indices])
    conformity = _row_mean(dev, n)
    if reference is None:
        has = n > 0
        edges = TraitEdges(activity=_tertiles(n[has].astype(float)), conformity=_tertiles(conformity[has]),
                           diversity=_tertiles(entropy[has]))
    else:
        edges = reference.edges
    return ProfileArrays(
        user=np.fromiter((h.user for h in histories), np.int64, count=len(histories)), n=n, mean_rating=mean_rating,
        genre_weights=genre_weights, genre_mean_rating=genre_mean_rating, genre_lift=genre_lift,
        mean_year=mean_year, conformity=conformity, n_genres=n_genres, entropy=entropy, item_mean=item_mean,
        global_mean=global_mean, genre_prior=genre_prior, edges=edges, genre_names=list(catalog.genre_names))


def build_profile(history: UserHistory, catalog: Catalog, *, reference: ProfileArrays | None = None) -> Profile:
    """One user's :class:`Profile` (relative to ``reference``'s crowd when given).

    Example:
        >>> build_profile(histories[0], catalog).describe()            # doctest: +SKIP
        'Has watched 42 movies (medium activity); average rating 3.8 of 5; likes Comedy, ...'
    """
    return profile_arrays([history], catalog, reference=reference).profile(0)
