"""A CTR set (:class:`~.data.CTRData`) from a source's interactions and an item embedding, vectorised.

Rules (docs/recommenders.md documents them for users):

- **Events** are the source's interactions in each user's time order (timestamp, then source row: ties
  keep their order, as the leave-one-out split does). ``item_seq`` of a row is the user's events before
  it, the most recent last (``history="last"``), or the ``seq_len`` of them most similar to the target
  (``history="gsu"``, :mod:`.gsu`), kept in time order.
- **Labels**: with ratings, ``label = rating >= label_threshold`` (MovieLens: 4). Without (implicit
  clicks, MicroLens), every event is a positive and ``negatives`` items the user never interacted with
  are sampled per positive (seeded), sharing its user, time and history.
- **Split by time**: events ranked by timestamp over the whole set (stable), the first 80% train, then
  10% valid, 10% test (:func:`mmfeat.recommenders.splits.split_interactions` ``method="time"``); sampled
  negatives take their positive's split.
- **likes_level / views_level** (0..10, 0 = unknown): the source's item ``likes`` / ``views`` counts where
  it has them (MicroLens), else the item's train positive rate / train interaction count; levels are
  deciles over the items (1..10), computed on train rows only so valid/test labels never leak in.
- **Items**: ids 1..n in the ids' natural order (integers numerically); ``item_tags`` = the item's first
  ``n_tags`` tags (MovieLens genres, MicroLens categories) as ids 1.. in sorted tag order, left-padded with 0.
- **Embedding**: the store version's matrix aligned to the items, reduced to ``emb_dim`` by PCA
  (scikit-learn, full SVD: deterministic), as the challenge reduced its embeddings to 128.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

from .data import SPLITS, CTRData, CTRDataError, CTRSplit
from ..splits import DEFAULT_SPLIT_SEED

HISTORIES = ("last", "gsu")


def reduce_dim(mat: np.ndarray, dim: int, pad: bool | None, what: str) -> tuple[np.ndarray, float, int]:
    """``mat`` reduced to ``dim`` columns by PCA (or zero-padded when narrower and ``pad``; kept narrower
    as it is when ``pad`` is None: training reads any width, only the exported layout has a fixed one).

    Returns:
        (matrix float32 [n, dim], explained variance ratio of the kept components (1.0 unreduced),
        number of padded columns).

    Raises:
        CTRDataError: fewer components than ``dim`` (few items or a narrow matrix) without ``pad``.
    """
    n, d = mat.shape
    explained = 1.0
    if d > dim:
        from sklearn.decomposition import PCA

        # full SVD: exact components (the randomized solver's are approximate); at most min(n, d) exist.
        # Component signs are sklearn's deterministic svd_flip convention.
        pca = PCA(n_components=min(dim, n, d), svd_solver="full")
        with np.errstate(invalid="ignore", divide="ignore"):  # constant matrix: 0/0 ratios, reported as 0
            mat = pca.fit_transform(mat)
        ratio = pca.explained_variance_ratio_
        explained = float(ratio.sum()) if np.isfinite(ratio).all() else 0.0
    short = dim - mat.shape[1]
    if short > 0 and pad is None:
        return mat.astype(np.float32), explained, 0
    if short > 0 and not pad:
        why = (f"has {n} items, so PCA gives at most {n} components" if d > dim else f"has {d} dims")
        raise CTRDataError(f"{what} {why}, fewer than the requested {dim}: pass a smaller dim (--dim <= "
                           f"{mat.shape[1]}) or pad (--pad, pad=True) to append {short} zero columns")
    if short > 0:
        mat = np.hstack([mat, np.zeros((n, short), mat.dtype)])
    return mat.astype(np.float32), explained, max(short, 0)


def deciles(values: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Levels 1..10 by the deciles of ``values[known]``; 0 where not ``known``."""
    out = np.zeros(len(values), np.int64)
    if known.any():
        cuts = np.quantile(values[known], np.linspace(0.1, 0.9, 9))
        out[known] = 1 + np.searchsorted(cuts, values[known], side="right")
    return np.clip(out, 0, 10)


def tag_matrix(tags: Sequence[Sequence[str]], n_tags: int) -> tuple[np.ndarray, list[str]]:
    """Per-item tag id lists -> ([n_items + 1, n_tags] int64 with row 0 zero, vocabulary (id k+1 = vocab[k])).

    Each row is left-padded with 0, as the MMCTR challenge's ``item_tags`` are (the models pool tags with a
    mask, so the side only matters to readers that expect the challenge's layout)."""
    vocab = sorted({t for ts in tags for t in ts})
    index = {t: k + 1 for k, t in enumerate(vocab)}
    mat = np.zeros((len(tags) + 1, n_tags), np.int64)
    for row, ts in enumerate(tags, start=1):  # one pass over items (not interactions)
        ids = [index[t] for t in dict.fromkeys(ts)][:n_tags]
        if ids:
            mat[row, n_tags - len(ids):] = ids
    return mat, vocab


def _ordered_events(df: pd.DataFrame, items: list[str]) -> pd.DataFrame:
    """Events with integer ``u``, ``i`` (1-based item), in (user, timestamp, source row) order, plus
    ``start`` (index of the user's first event) and a time ``split``."""
    from mmfeat.recommenders.data import natural_order
    from mmfeat.recommenders.splits import split_interactions

    ev = df.reset_index(drop=True).copy()
    if "timestamp" not in ev.columns:
        raise CTRDataError("a CTR set is split by time and needs a timestamp column in the interactions")
    ev["split"] = split_interactions(ev[["user_id", "item_id", "timestamp"]], "time")["split"].to_numpy()
    users = natural_order(ev["user_id"])
    ev["u"] = pd.Index(users).get_indexer(ev["user_id"].astype(str))
    ev["i"] = pd.Index(items).get_indexer(ev["item_id"].astype(str)) + 1
    order = np.lexsort((np.arange(len(ev)), ev["timestamp"].to_numpy(), ev["u"].to_numpy()))
    ev = ev.iloc[order].reset_index(drop=True)
    first = np.r_[True, ev["u"].to_numpy()[1:] != ev["u"].to_numpy()[:-1]]
    ev["start"] = np.maximum.accumulate(np.where(first, np.arange(len(ev)), 0))
    return ev


def last_items(ev_items: np.ndarray, start: np.ndarray, at: np.ndarray, seq_len: int) -> np.ndarray:
    """For each row (event index ``at``, user's first event ``start``): the ``seq_len`` events before it,
    most recent last, left-padded with 0 (int32 [n, seq_len])."""
    idx = at[:, None] - seq_len + np.arange(seq_len)[None, :]
    ok = idx >= start[:, None]
    return np.where(ok, ev_items[np.clip(idx, 0, None)], 0).astype(np.int32)


def _sample_negatives(ev: pd.DataFrame, n_items: int, per_positive: int, seed: int) -> np.ndarray:
    """``per_positive`` item ids (1-based) per event that the event's user never interacted with."""
    rng = np.random.default_rng(seed)
    u = ev["u"].to_numpy(np.int64)
    seen = np.unique(u * (n_items + 1) + ev["i"].to_numpy(np.int64))
    users = np.repeat(u, per_positive)
    neg = rng.integers(1, n_items + 1, len(users))
    todo = np.arange(len(users))
    for _ in range(100):  # rejection rounds: each redraws only the clashes
        todo = todo[np.isin(users[todo] * (n_items + 1) + neg[todo], seen)]
        if not len(todo):
            return neg
        neg[todo] = rng.integers(1, n_items + 1, len(todo))
    raise CTRDataError("could not sample negatives: some users interacted with (almost) every item")


def build_ctr_set(
    interactions: pd.DataFrame,
    items: pd.DataFrame,
    embedding: tuple[list[str], np.ndarray] | None,
    *,
    seq_len: int = 64,
    history: str = "last",
    label_threshold: float | None = 4.0,
    negatives: int = 1,
    seed: int = DEFAULT_SPLIT_SEED,
    emb_dim: int | None = 128,
    pad: bool | None = False,
    n_tags: int = 5,
    gsu_chunk: int = 1 << 23,
) -> CTRData:
    """The CTR set of the module's rules.

    Args:
        interactions: ``user_id``, ``item_id``, ``timestamp`` and, for explicit feedback, ``label`` (rating).
        items: ``item_id`` and optional ``tags`` (a list of strings per item), ``likes``, ``views``.
        embedding: ``(item ids, matrix)`` covering every interacted item (missing items are the caller's
            fill policy), or None for a set without embeddings (then ``history="gsu"`` is unavailable).
        seq_len: items per ``item_seq`` (the challenge: 64).
        history: ``last`` (the most recent items) or ``gsu`` (the most similar to the target by embedding
            cosine over the user's whole earlier history, MUSE's general search unit).
        label_threshold: ``label = rating >= threshold``; None: implicit clicks, negatives sampled.
        negatives: sampled negatives per positive for implicit data.
        seed: seed of the negative sampling.
        emb_dim: PCA width of the exported embedding (None: unreduced).
        pad: zero-pad to ``emb_dim`` when there are fewer components (False: an error; None: keep them).
        n_tags: tags kept per item.
        gsu_chunk: GSU memory bound (similarity entries per chunk).

    Returns:
        The validated :class:`CTRData`; ``info`` records every rule that ran.

    Raises:
        CTRDataError: no timestamps, ratings missing for a threshold, an unknown history, too few PCA
            components without ``pad``, an embedding that lacks interacted items.

    Example:
        >>> data = build_ctr_set(ratings_df, items_df, (ids, matrix), label_threshold=4)  # doctest: +SKIP
    """
    from mmfeat.recommenders.data import hash_split_frame, natural_order

    from .gsu import gsu_items

    if history not in HISTORIES:
        raise CTRDataError(f"history={history!r} is not one of {', '.join(HISTORIES)}")
    if history == "gsu" and embedding is None:
        raise CTRDataError("history='gsu' retrieves by item embedding: pass an embedding (a store feature)")
    explicit = label_threshold is not None
    if explicit and "label" not in interactions.columns:
        raise CTRDataError(f"label_threshold={label_threshold} needs ratings (a label column); the interactions "
                           f"have {list(interactions.columns)}: use label_threshold=None for implicit clicks")
    item_ids = natural_order(interactions["item_id"])
    ev = _ordered_events(interactions, item_ids)
    n_items = len(item_ids)
    ev_items = ev["i"].to_numpy(np.int64)
    start = ev["start"].to_numpy(np.int64)
    at = np.arange(len(ev))
    labels = (ev["label"].to_numpy(np.float64) >= label_threshold).astype(np.float32) if explicit \
        else np.ones(len(ev), np.float32)
    target = ev_items.copy()
    if not explicit and negatives:
        neg = _sample_negatives(ev, n_items, negatives, seed)
        at = np.r_[at, np.repeat(np.arange(len(ev)), negatives)]
        target = np.r_[target, neg]
        labels = np.r_[labels, np.zeros(len(neg), np.float32)]
    split = ev["split"].to_numpy()[at]
    users = ev["u"].to_numpy(np.int64)[at]

    # ---- items: tags, levels (train rows only), embedding
    info_items = items.assign(item_id=items["item_id"].astype(str)).drop_duplicates("item_id").set_index("item_id")
    info_items = info_items.reindex(item_ids)
    tag_lists = [list(t) if isinstance(t, (list, tuple, np.ndarray)) else [] for t in
                 (info_items["tags"] if "tags" in info_items.columns else [None] * n_items)]
    tags, vocab = tag_matrix(tag_lists, n_tags)
    train = split == 0
    count = np.bincount(target[train], minlength=n_items + 1)[1:].astype(np.float64)
    pos = np.bincount(target[train], weights=labels[train], minlength=n_items + 1)[1:]
    levels = {}
    for col, fallback, why in (("likes", np.divide(pos, count, out=np.zeros(n_items), where=count > 0),
                                "train positive rate"), ("views", count, "train interactions")):
        src = info_items[col].to_numpy(np.float64) if col in info_items.columns else None
        if src is not None and np.isfinite(src).any():
            levels[col] = (deciles(np.log1p(np.nan_to_num(src, nan=0.0)), np.isfinite(src)), f"source {col} count")
        else:
            levels[col] = (deciles(fallback, count > 0), why)
    emb, emb_info = None, {}
    if embedding is not None:
        ids, mat = embedding
        pos_of = pd.Index([str(i) for i in ids]).get_indexer(item_ids)
        if (pos_of < 0).any():
            lacking = [item_ids[k] for k in np.flatnonzero(pos_of < 0)[:5]]
            raise CTRDataError(f"the item embedding lacks {int((pos_of < 0).sum())} interacted items (first: {lacking})")
        full = np.asarray(mat, np.float32)[pos_of]
        reduced, explained, padded = (reduce_dim(full, emb_dim, pad, "the item embedding") if emb_dim
                                      else (full, 1.0, 0))
        emb = np.vstack([np.zeros((1, reduced.shape[1]), np.float32), reduced])
        emb_info = {"source_dim": int(full.shape[1]), "dim": int(emb.shape[1]), "pca_explained_variance": explained,
                    "padded_dims": padded}
    row_start = start[at]
    seq = (gsu_items(ev_items, row_start, at, target, full, seq_len, chunk=gsu_chunk) if history == "gsu"
           else last_items(ev_items, row_start, at, seq_len))

    splits = {}
    for k, name in enumerate(SPLITS):
        rows = np.flatnonzero(split == k)
        splits[name] = CTRSplit(user=users[rows], item=target[rows], likes_level=levels["likes"][0][target[rows] - 1],
                                views_level=levels["views"][0][target[rows] - 1], label=labels[rows],
                                item_seq=seq[rows])
    frame = pd.DataFrame({"user_id": users, "item_id": target, "split": split})
    cold = {name: int((~np.isin(splits[name].item, splits["train"].item)).sum()) for name in ("valid", "test")}
    info: dict[str, Any] = {
        "label": f"rating >= {label_threshold}" if explicit else f"implicit clicks, {negatives} sampled negative(s) "
                                                                   f"per positive (seed {seed})",
        "split": {"method": "time", "fractions": [0.8, 0.1, 0.1]},
        "history": {"kind": history, "seq_len": seq_len},
        "levels": {"likes_level": levels["likes"][1], "views_level": levels["views"][1]},
        "tags": {"per_item": n_tags, "vocabulary": len(vocab)}, "embedding": emb_info,
        "cold_target_rows": cold, "events": int(len(ev)),
    }
    data = CTRData(splits=splits, item_tags=tags, item_emb=emb, item_ids=[""] + item_ids, info=info,
                   split_hash=hash_split_frame(frame))
    data.validate()
    return data
