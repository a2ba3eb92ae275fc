"""A manifest's users and items as the simulator's inputs: the :class:`~mmfeat.agents.types.Catalog`, one
time-split :class:`~mmfeat.agents.types.UserHistory` per user, and a seeded selection of users to simulate.

Why a per-user time split (each user's last 20%, at least one, held out): a simulated user is initialised
from what the real user did *before* and judged on what they did *next*, the protocol Agent4Rec, SimUSER and
AlignUSER report fidelity on. Popularity and every crowd statistic come from training interactions only, so
no held-out interaction leaks into the catalog, the profiles or the taste model.

Why a separate, seeded *calibration* set of users: the taste model's click and rating heads (and the click
threshold) are fit on their held-out parts; the users you simulate or evaluate are drawn from the others, so
a fidelity number is never fit on the users it reports. Calibration users are drawn before the segment filter:
one taste model (for a dataset and seed) serves every segment.

Source tables come from the manifest's adapter (:func:`mmfeat.pipelines.engine.extract.load_items`, the same
path extraction and training read); store text and embeddings are joined by feature-set name when asked.

Reference:
    Zhang et al., "On Generative Agents in Recommendation", SIGIR 2024 (Agent4Rec: 1,000 agents from ML-1M,
    traits activity / conformity / diversity); RecoWorld (Meta, 2025): simulated users for agentic recommenders.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
from mmfeat.agents.simulator.profile import (
    LEVELS,
    TRAITS,
    ProfileArrays,
    profile_arrays,
)
from mmfeat.agents.types import Catalog, UserHistory

if TYPE_CHECKING:
    from mmfeat.pipelines.manifest import Manifest
    from mmfeat.pipelines.store import FeatureStore

SEGMENTS = ("all",) + tuple(f"{lvl}-{t}" for t in TRAITS for lvl in ("high", "low"))


@dataclass(frozen=True)
class Population:
    """A dataset's simulated-user inputs.

    Attributes:
        dataset: the store dataset name (the manifest's).
        catalog: every item (popularity from training interactions).
        histories: every user with at least one interaction; ``histories[u].user == u``.
        users: the selected users (segment, size, seed), sorted; disjoint from ``calibration``.
        calibration: users whose held-out parts fit the taste model's heads (never evaluated).
        profiles: profile arrays of every user (row ``u`` = ``histories[u]``; crowd statistics of all users).
        segment: the segment ``users`` were drawn from.
        lineage: how it was built (source fingerprint, shares, seed, store versions).
    """

    dataset: str
    catalog: Catalog
    histories: list[UserHistory]
    users: np.ndarray
    calibration: np.ndarray
    profiles: ProfileArrays
    segment: str = "all"
    lineage: dict[str, Any] = field(default_factory=dict)

    def segment_of(self, trait: str) -> np.ndarray:
        """``low`` / ``medium`` / ``high`` of ``trait`` for each selected user (``users`` order)."""
        return self.profiles.levels(trait)[self.users]


def build_catalog(items: pa.Table, popularity: np.ndarray | None = None) -> Catalog:
    """A :class:`Catalog` from a normalized items table (``item_id``; optional ``title``, ``genres``, ``year``).

    Args:
        items: the source adapter's items table; ``genres`` is comma-separated text.
        popularity: training interactions per item (zeros when None).

    Returns:
        The catalog in the table's row order; the genre vocabulary sorted by name.
    """
    n = items.num_rows
    ids = np.asarray(items.column("item_id").to_pylist(), dtype=object).astype(str)
    cols = set(items.column_names)
    titles = items.column("title").to_pylist() if "title" in cols else list(ids)
    titles = [t if t else str(i) for t, i in zip(titles, ids)]
    raw = items.column("genres").to_pylist() if "genres" in cols else [None] * n
    lists = [[g.strip() for g in (s or "").split(",") if g.strip()] for s in raw]
    names = sorted({g for gl in lists for g in gl})
    genres = np.zeros((n, len(names)), bool)
    if names:
        col = {g: j for j, g in enumerate(names)}
        rows = np.repeat(np.arange(n), [len(gl) for gl in lists])
        genres[rows, [col[g] for gl in lists for g in gl]] = True
    years = np.zeros(n, np.int64)
    if "year" in cols:
        y = pd.to_numeric(pd.Series(items.column("year").to_pylist(), dtype=object), errors="coerce")
        years = y.fillna(0).astype(np.int64).to_numpy()
    pop = np.zeros(n) if popularity is None else np.asarray(popularity, np.float64)
    return Catalog(item_ids=ids, titles=titles, genre_names=names, genres=genres, years=years, popularity=pop)


def split_histories(interactions: pa.Table | pd.DataFrame, item_ids: np.ndarray, *,
                    heldout_share: float = 0.2) -> tuple[list[UserHistory], np.ndarray]:
    """Per-user time-ordered histories with the last ``heldout_share`` (at least one) held out.

    Rows with an item not in ``item_ids`` are dropped; a repeated (user, item) keeps its first occurrence;
    ties in time keep the source order. No rating column (implicit data) gives ratings of 1.0.

    Args:
        interactions: ``user_id``, ``item_id``, optional ``timestamp`` and ``label`` (the rating).
        item_ids: the catalog's item ids (column index).
        heldout_share: share of each user's latest interactions held out.

    Returns:
        ``(histories, training popularity per item)``; users sorted by id, ``histories[u].user == u``.
    """
    df = interactions.to_pandas() if isinstance(interactions, pa.Table) else interactions
    item = pd.Index(np.asarray(item_ids).astype(str)).get_indexer(df["item_id"].astype(str))
    keep = item >= 0
    uid = df["user_id"].astype(str).to_numpy()[keep]
    item = item[keep].astype(np.int64)
    ts = df["timestamp"].to_numpy()[keep].astype(np.int64) if "timestamp" in df else np.arange(len(item))
    rating = df["label"].to_numpy()[keep].astype(np.float32) if "label" in df else np.ones(len(item), np.float32)
    users, u = np.unique(uid, return_inverse=True)
    order = np.lexsort((np.arange(len(u)), ts, u))  # by user, then time, then source order
    u, item, rating = u[order], item[order], rating[order]
    first = ~pd.DataFrame({"u": u, "i": item}).duplicated().to_numpy()
    u, item, rating = u[first], item[first], rating[first]
    counts = np.bincount(u, minlength=len(users))
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    held = np.maximum(1, np.floor(counts * heldout_share + 1e-9).astype(np.int64))
    rank = np.arange(len(u)) - starts[u]
    heldout = rank >= (counts - held)[u]
    pop = np.bincount(item[~heldout], minlength=len(item_ids)).astype(np.float64)
    bounds = np.cumsum(counts)[:-1]
    tr_i, tr_r = np.split(item, bounds), np.split(rating, bounds)
    ho = heldout.astype(bool)
    masks = np.split(ho, bounds)
    histories = [UserHistory(user=k, user_id=str(users[k]), items=tr_i[k][~m], ratings=tr_r[k][~m],
                             heldout_items=tr_i[k][m], heldout_ratings=tr_r[k][m])
                 for k, m in enumerate(masks)]
    return histories, pop


def select_users(profiles: ProfileArrays, histories: list[UserHistory], *, n_users: int, segment: str,
                 calibration_share: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Calibration users (a seeded share of all users with held-out items), then ``n_users`` of the others in
    ``segment`` (all of them when fewer).

    Raises:
        ValueError: an unknown segment.
    """
    if segment not in SEGMENTS:
        raise ValueError(f"unknown segment {segment!r}; known: {list(SEGMENTS)}")
    has_heldout = np.flatnonzero(np.fromiter((len(h.heldout_items) > 0 for h in histories), bool,
                                             count=len(histories)))
    n_cal = round(len(has_heldout) * calibration_share)
    calibration = np.sort(rng.choice(has_heldout, size=n_cal, replace=False)) if n_cal else np.zeros(0, np.int64)
    rest = np.setdiff1d(np.arange(len(histories)), calibration)
    if segment != "all":
        level, trait = segment.split("-", 1)
        rest = rest[profiles.levels(trait)[rest] == level]
    pick = rng.choice(rest, size=min(n_users, len(rest)), replace=False) if len(rest) else rest
    return np.sort(pick).astype(np.int64), calibration.astype(np.int64)


def population_from_tables(items: pa.Table, interactions: pa.Table | pd.DataFrame, *, dataset: str = "tables",
                           n_users: int = 1000, seed: int = 0, segment: str = "all", heldout_share: float = 0.2,
                           calibration_share: float = 0.2, lineage: dict[str, Any] | None = None) -> Population:
    """:func:`population` on tables you already have (tests, notebooks): no manifest, no store.

    Example:
        >>> pop = population_from_tables(items, interactions, n_users=50, seed=0)   # doctest: +SKIP
    """
    ids = np.asarray(items.column("item_id").to_pylist(), dtype=object).astype(str)
    histories, pop = split_histories(interactions, ids, heldout_share=heldout_share)
    catalog = build_catalog(items, pop)
    profiles = profile_arrays(histories, catalog)
    users, calibration = select_users(profiles, histories, n_users=n_users, segment=segment,
                                      calibration_share=calibration_share, rng=np.random.default_rng(seed))
    info = {"dataset": dataset, "users_total": len(histories), "items": catalog.n_items, "seed": seed,
            "segment": segment, "n_users": len(users), "heldout_share": heldout_share,
            "calibration_share": calibration_share, "calibration_users": len(calibration),
            "levels": list(LEVELS), **(lineage or {})}
    return Population(dataset, catalog, histories, users, calibration, profiles, segment, info)


def _ref(name: str) -> tuple[str, str]:
    feature_set, _, ref = name.partition("@")
    return feature_set, ref or "latest"


def _store_features(pop: Population, store: FeatureStore, embeddings: str | None,
                    descriptions: str | None) -> Population:
    """The catalog with a store embedding version and/or text version joined in item order."""
    catalog, lineage = pop.catalog, dict(pop.lineage)
    ids = [str(i) for i in catalog.item_ids]
    emb = emb_version = texts = None
    if embeddings:
        fs, ref = _ref(embeddings)
        read = store.read_matrix(pop.dataset, fs, ref, item_ids=ids, fill_missing=0.0)
        emb = read.matrix.astype(np.float32)
        norm = np.linalg.norm(emb, axis=1, keepdims=True)
        emb = np.where(norm > 0, emb / np.maximum(norm, 1e-12), 0.0).astype(np.float32)
        emb_version = read.version
        lineage["embeddings"] = {"feature_set": fs, "version": read.version, "missing": len(read.missing)}
    if descriptions:
        fs, ref = _ref(descriptions)
        version = store.resolve(pop.dataset, fs, ref)
        table = store.read_table(pop.dataset, fs, version, columns=["item_id", "text"], only_ok=True)
        found = dict(zip(table.column("item_id").to_pylist(), table.column("text").to_pylist()))
        texts = [found.get(i) or "" for i in ids]
        lineage["descriptions"] = {"feature_set": fs, "version": version,
                                   "missing": int(sum(1 for i in ids if i not in found))}
    catalog = Catalog(catalog.item_ids, catalog.titles, catalog.genre_names, catalog.genres, catalog.years,
                      catalog.popularity, descriptions=texts, embeddings=emb, embedding_version=emb_version)
    return Population(pop.dataset, catalog, pop.histories, pop.users, pop.calibration, pop.profiles, pop.segment,
                      lineage)


def population(manifest: Manifest | str, *, n_users: int = 1000, seed: int = 0, segment: str = "all",
               heldout_share: float = 0.2, calibration_share: float = 0.2, store: FeatureStore | str | None = None,
               embeddings: str | None = None, descriptions: str | None = None) -> Population:
    """A manifest's catalog, every user's time-split history, and ``n_users`` users of ``segment`` to simulate.

    Args:
        manifest: a loaded manifest or its name / path (``movielens-1m``).
        n_users: how many users to select (all of the segment when fewer; 1,000 is the normal size).
        seed: seeds the calibration draw and the selection (same seed, same users).
        segment: ``all`` or ``high-|low-`` + ``activity`` / ``diversity`` / ``conformity`` (the top / bottom
            tertile of the trait over all users; high conformity = ratings closest to the crowd's).
        heldout_share: share of each user's latest interactions held out (at least one).
        calibration_share: share of users set aside to fit the taste model's heads (never selected).
        store: a :class:`FeatureStore` or its root, needed when ``embeddings`` / ``descriptions`` are named.
        embeddings: an embedding feature set (``text_minilm`` or ``text_minilm@<version>``) joined into
            ``catalog.embeddings`` (L2-normalised; items without a row get zeros, counted in the lineage).
        descriptions: a text feature set (a describer's output) joined into ``catalog.descriptions``.

    Returns:
        The :class:`Population`.

    Raises:
        ValueError: an unknown segment, or store features asked for without a store.
        mmfeat.pipelines.manifest.ManifestError, mmfeat.pipelines.sources.SourceError: the source cannot be read.
        mmfeat.pipelines.store.StoreError: a named feature set or version is not in the store.

    Example:
        >>> pop = population("movielens-1m", n_users=1000, seed=0, segment="high-activity")  # doctest: +SKIP
        >>> len(pop.users), pop.catalog.n_items                                               # doctest: +SKIP
    """
    from mmfeat.pipelines.engine.extract import load_items
    from mmfeat.pipelines.manifest import load_manifest

    m = load_manifest(manifest) if isinstance(manifest, str) else manifest
    items, interactions, fingerprint = load_items(m)
    pop = population_from_tables(items, interactions, dataset=m.store_dataset, n_users=n_users, seed=seed,
                                 segment=segment, heldout_share=heldout_share, calibration_share=calibration_share,
                                 lineage={"manifest": m.name, "source_fingerprint": fingerprint})
    if embeddings or descriptions:
        if store is None:
            raise ValueError("embeddings / descriptions name store feature sets: pass store= (a FeatureStore or "
                             "its root)")
        if not hasattr(store, "read_matrix"):
            from mmfeat.pipelines.store import FeatureStore
            store = FeatureStore(store)
        pop = _store_features(pop, store, embeddings, descriptions)
    return pop
