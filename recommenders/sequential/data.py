"""Sequences for the sequential recommenders: each user's items in time order, split leave-one-out.

Everything a sequential model needs lives in :class:`SequenceData`; models never see raw ids.

Protocol (RecBole 1.2.1 ``eval_args: {split: {LS: valid_and_test}, order: TO}``, MicroLens, fMRLRec):

* every kept user has n >= 3 interactions in time order (ties broken by source row order, see
  :func:`mmfeat.recommenders.splits.leave_one_out`); the last is the test target, the one before it the
  valid target, the rest is the train sequence. Users with fewer were dropped by the split and are
  counted in ``split_info["dropped_users"]``.
* train targets are positions 1 .. n-3 (the first item is only ever history; fMRLRec's ``first_item_target``
  adds position 0, predicted from an empty history, see batches.py); the valid target sees the
  train items as history, the test target the train items and the valid item (RecBole's rule).
* tokens: item index + 1, with 0 the padding token; ``n_items`` counts real items (every item of any
  split, so an item seen only in valid/test is still a candidate). ``item_features`` are aligned to the
  0-based item index, with the graph models' fill policy (:func:`mmfeat.recommenders.data.align_features`).
* cold items: items that are a valid/test target and occur nowhere in any train sequence; counted in
  :meth:`SequenceData.summary` (a model reading features can still score them through their features).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..data import MAX_MISSING_FEATURE_FRACTION, align_features, hash_split_frame


class SequenceSplitError(ValueError):
    """A split that is not leave-one-out (a sequential model needs one valid and one test target per user)."""


@dataclass
class SequenceData:
    """Users' item sequences (tokens, time order) with leave-one-out targets and aligned item features."""

    n_users: int
    n_items: int
    indptr: np.ndarray  # int64 [n_users + 1]: user u's sequence is tokens[indptr[u]:indptr[u + 1]]
    tokens: np.ndarray  # int64 [n_interactions]: item index + 1, time order inside each user
    user_ids: np.ndarray  # [n_users] original ids
    item_ids: np.ndarray  # [n_items] original ids, item-index order
    item_features: dict[str, np.ndarray] = field(default_factory=dict)  # name -> float32 [n_items, d]
    split_hash: str = ""
    feature_versions: dict[str, str] = field(default_factory=dict)
    missing_features: dict[str, int] = field(default_factory=dict)
    split_info: dict = field(default_factory=dict)
    #: semantic IDs (int64 [n_items, levels], item-index order) for the generative models; None without them
    item_codes: np.ndarray | None = None

    def __post_init__(self):
        self.indptr = np.asarray(self.indptr, np.int64)
        self.tokens = np.asarray(self.tokens, np.int64)
        lengths = np.diff(self.indptr)
        if len(lengths) != self.n_users or (lengths < 3).any():
            raise SequenceSplitError("every user needs at least 3 interactions (train, valid, test)")
        if len(self.tokens) and (self.tokens.min() < 1 or self.tokens.max() > self.n_items):
            raise ValueError("sequence tokens out of range 1..n_items")
        for k, v in self.item_features.items():
            v = np.ascontiguousarray(v, dtype=np.float32)
            if v.ndim != 2 or v.shape[0] != self.n_items:
                raise ValueError(f"item feature {k!r} has shape {v.shape}, expected ({self.n_items}, d)")
            self.item_features[k] = v
        if self.item_codes is not None:
            self.item_codes = np.ascontiguousarray(self.item_codes, dtype=np.int64)
            if self.item_codes.ndim != 2 or self.item_codes.shape[0] != self.n_items:
                raise ValueError(f"item_codes has shape {self.item_codes.shape}, expected ({self.n_items}, levels)")

    # ------------------------------------------------------------------ views
    @property
    def lengths(self) -> np.ndarray:
        """Interactions per user (train + valid + test)."""
        return np.diff(self.indptr)

    def history_end(self, split: str) -> np.ndarray:
        """Per user, the (exclusive) end in ``tokens`` of the history a ``split`` target sees; the target is
        ``tokens[end]``. valid: the train items; test: train items and the valid item."""
        offset = {"valid": 2, "test": 1}[split]
        return self.indptr[1:] - offset

    def targets(self, split: str) -> np.ndarray:
        """0-based item index of every user's ``split`` target."""
        return self.tokens[self.history_end(split)] - 1

    def train_item_mask(self) -> np.ndarray:
        """bool [n_items]: the item occurs in some train sequence."""
        seen = np.zeros(self.n_items, bool)
        train_pos = np.ones(len(self.tokens), bool)
        train_pos[self.indptr[1:] - 1] = False
        train_pos[self.indptr[1:] - 2] = False
        seen[self.tokens[train_pos] - 1] = True
        return seen

    def cold_targets(self) -> dict[str, int]:
        """Users whose valid / test target occurs in no train sequence, and the distinct such items."""
        seen = self.train_item_mask()
        valid, test = self.targets("valid"), self.targets("test")
        cold = np.union1d(valid[~seen[valid]], test[~seen[test]])
        return {"valid_users": int((~seen[valid]).sum()), "test_users": int((~seen[test]).sum()),
                "items": int(len(cold))}

    def summary(self) -> dict:
        lengths = self.lengths
        return {"n_users": self.n_users, "n_items": self.n_items, "n_interactions": int(len(self.tokens)),
                "n_train_targets": int((lengths - 3).sum()), "n_valid": self.n_users, "n_test": self.n_users,
                "mean_sequence_length": float(lengths.mean()) if len(lengths) else 0.0,
                "cold_targets": self.cold_targets(), "split_hash": self.split_hash,
                "features": {k: list(v.shape) for k, v in self.item_features.items()},
                **({"codes": list(self.item_codes.shape)} if self.item_codes is not None else {}),
                "missing_features": dict(self.missing_features)}


def from_loo_frame(df: pd.DataFrame, *, features: dict | None = None, feature_versions: dict | None = None,
                   split_hash: str | None = None, split_info: dict | None = None,
                   max_missing_fraction: float = MAX_MISSING_FEATURE_FRACTION,
                   codes: tuple | None = None) -> SequenceData:
    """Build :class:`SequenceData` from a leave-one-out split table (``user_id, item_id, split, position``;
    :func:`mmfeat.recommenders.splits.split_interactions` with ``method="loo"``).

    Items are indexed in sorted order of their native ids (integer ids keep numeric order), users too.

    Args:
        df: the split table; every user's rows must be train rows then one valid then one test row in
            ``position`` order.
        features: name -> (ids, matrix) or a pandas object indexed by id (see ``align_features``).
        feature_versions: name -> store version, for the run record.
        split_hash: the split file's hash (default: computed).
        split_info: how the split was made, for the run record.
        max_missing_fraction: the fill policy's limit on items without a feature row.
        codes: ``(ids, int matrix [n, levels])`` semantic IDs; every item of the split must have one (a tuple
            cannot be filled in).

    Returns:
        The sequences and aligned features.

    Raises:
        SequenceSplitError: a table without ``position``, or a user whose rows are not leave-one-out.
        ValueError: an item of the split without a semantic ID.
    """
    if "position" not in df.columns:
        raise SequenceSplitError("sequential models need a leave-one-out split (split method 'loo'); this split "
                                 "has no position column")
    if split_hash is None:
        split_hash = hash_split_frame(df)
    uidx, user_ids = pd.factorize(df["user_id"], sort=True)
    iidx, item_ids = pd.factorize(df["item_id"], sort=True)
    order = np.lexsort((df["position"].to_numpy(np.int64), uidx))
    uidx, iidx, split = uidx[order], iidx[order], df["split"].to_numpy(np.int64)[order]
    counts = np.bincount(uidx, minlength=len(user_ids))
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    expected = np.zeros(len(split), np.int64)
    expected[indptr[1:] - 1], expected[indptr[1:] - 2] = 2, 1
    if (counts < 3).any() or (split != expected).any():
        wrong = np.flatnonzero(split != expected)
        bad = str(user_ids[uidx[wrong[0]]]) if len(wrong) else str(user_ids[np.flatnonzero(counts < 3)[0]])
        raise SequenceSplitError(f"sequential models need a leave-one-out split (train rows, then one valid, then "
                                 f"one test row per user in time order); user {bad!r} does not have it: use split "
                                 f"method 'loo'")
    item_ids = np.asarray(item_ids).astype(str)
    feats, missing = align_features(item_ids, features or {}, max_missing_fraction=max_missing_fraction)
    item_codes = _align_codes(item_ids, codes) if codes is not None else None
    return SequenceData(n_users=len(user_ids), n_items=len(item_ids), indptr=indptr, tokens=iidx.astype(np.int64) + 1,
                        user_ids=np.asarray(user_ids).astype(str).astype(object), item_ids=item_ids.astype(object),
                        item_features=feats, split_hash=split_hash, feature_versions=dict(feature_versions or {}),
                        missing_features=missing, split_info=dict(split_info or {}), item_codes=item_codes)


def _align_codes(item_ids: np.ndarray, codes: tuple) -> np.ndarray:
    """Semantic IDs in item-index order; an item without one is an error (no fill policy for code tuples)."""
    ids, matrix = codes
    pos = pd.Index(np.asarray(ids).astype(str)).get_indexer(item_ids)
    if (pos < 0).any():
        missing = item_ids[pos < 0]
        raise ValueError(f"{len(missing)} of {len(item_ids)} items have no semantic ID (first: {list(missing[:5])}); "
                         f"build the codes from an embedding version that covers every item")
    return np.asarray(matrix, np.int64)[pos]
