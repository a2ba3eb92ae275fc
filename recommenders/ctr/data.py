"""The CTR data every CTR model reads, in the WWW 2025 MMCTR challenge's shape (MicroLens_1M_MMCTR).

Rows (one per impression): ``user_id``, ``item_seq`` (the user's earlier items, oldest first, left-padded
with 0 to a fixed length, most recent last), ``likes_level`` / ``views_level`` (categorical 0..10; 0 =
unknown), ``item_id`` (the target, 1..n_items) and ``label`` (0/1). Items: a table where row k holds item k
and row 0 is all-zero padding, with ``item_tags`` (a fixed number of tag ids, 0 = padding) and the item
embedding (``item_emb_d{D}``). The challenge's data loader reads ``item_info.iloc[k]`` for item k, so the
row order is the contract; :mod:`.layout` reads and writes these files, :mod:`.build` makes them from a
source's interactions and a store version.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

SPLITS = ("train", "valid", "test")
#: the challenge's 11 levels (0..10)
N_LEVELS = 11


class CTRDataError(ValueError):
    """CTR data that breaks the layout's rules; the message names the file/column/row and the fix."""


@dataclass
class CTRSplit:
    """One split's rows as arrays (index r = row r)."""

    user: np.ndarray  # int64 [n]
    item: np.ndarray  # int64 [n], 1..n_items
    likes_level: np.ndarray  # int64 [n], 0..10
    views_level: np.ndarray  # int64 [n], 0..10
    label: np.ndarray  # float32 [n], 0/1
    item_seq: np.ndarray  # int32/int64 [n, L], 0 = padding, most recent last

    def __len__(self) -> int:
        return int(len(self.label))

    def positive_rate(self) -> float:
        return float(self.label.mean()) if len(self) else float("nan")


@dataclass
class CTRData:
    """Rows of the three splits plus the item table (row 0 padding).

    Attributes:
        splits: ``train`` / ``valid`` / ``test`` -> :class:`CTRSplit`.
        item_tags: int64 [n_items + 1, T]; row 0 zeros.
        item_emb: float32 [n_items + 1, D] (row 0 zeros), or None when the data has no item embedding.
        item_ids: the source's id of item k at index k (index 0: ``""``, the padding row).
        feature_versions: role -> ``dataset/feature_set/version`` the embedding came from (empty: from a file).
        info: how the set was made (source, label rule, split, history selection, PCA...), for records.
    """

    splits: dict[str, CTRSplit]
    item_tags: np.ndarray
    item_emb: np.ndarray | None
    item_ids: list[str]
    feature_versions: dict[str, str] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    split_hash: str = ""

    @property
    def item_features(self) -> dict[str, None]:
        """The roles whose store features built ``item_emb`` (the trainer's record reads the keys)."""
        return {role: None for role in self.feature_versions}

    @property
    def missing_features(self) -> dict[str, list]:
        return dict(self.info.get("missing_features") or {})

    @property
    def split_info(self) -> dict[str, Any]:
        return dict(self.info.get("split") or {})

    @property
    def n_items(self) -> int:
        return int(self.item_tags.shape[0] - 1)

    @property
    def n_users(self) -> int:
        return int(max((s.user.max() for s in self.splits.values() if len(s)), default=-1) + 1)

    @property
    def seq_len(self) -> int:
        return int(self.splits["train"].item_seq.shape[1])

    @property
    def n_tags(self) -> int:
        """Tag vocabulary size (ids 1..n_tags-1; 0 = padding)."""
        return int(self.item_tags.max(initial=0)) + 1

    @property
    def emb_dim(self) -> int:
        return 0 if self.item_emb is None else int(self.item_emb.shape[1])

    def summary(self) -> dict[str, Any]:
        """Counts and shapes for run records and logs."""
        return {"n_items": self.n_items, "n_users": self.n_users, "seq_len": self.seq_len, "n_tags": self.n_tags,
                "emb_dim": self.emb_dim, "features": dict(self.feature_versions),
                "rows": {k: len(s) for k, s in self.splits.items()},
                "positive_rate": {k: round(s.positive_rate(), 4) for k, s in self.splits.items()},
                **{k: v for k, v in self.info.items() if k != "missing_features"},
                "missing_features": self.missing_features}

    def validate(self) -> None:
        """Check every rule a CTR model and the challenge's loader rely on.

        Raises:
            CTRDataError: naming the first broken rule.
        """
        n = self.n_items
        if self.item_tags.ndim != 2 or (self.item_tags[0] != 0).any():
            raise CTRDataError("item_tags: row 0 is the padding item and must be all zero")
        if self.item_emb is not None:
            if self.item_emb.shape[0] != n + 1:
                raise CTRDataError(f"item embedding has {self.item_emb.shape[0]} rows, the item table {n + 1}")
            if (self.item_emb[0] != 0).any():
                raise CTRDataError("item embedding: row 0 is the padding item and must be all zero")
            if not np.isfinite(self.item_emb).all():
                raise CTRDataError("item embedding has NaN/inf values")
        lengths = set()
        for name, s in self.splits.items():
            lengths.add(s.item_seq.shape[1])
            for col, arr, lo, hi in (("item_id", s.item, 1, n), ("item_seq", s.item_seq, 0, n),
                                     ("likes_level", s.likes_level, 0, N_LEVELS - 1),
                                     ("views_level", s.views_level, 0, N_LEVELS - 1)):
                if arr.size and (arr.min() < lo or arr.max() > hi):
                    bad = int(np.flatnonzero(((arr < lo) | (arr > hi)).reshape(len(s), -1).any(1))[0])
                    raise CTRDataError(f"{name} row {bad}: {col} outside {lo}..{hi}")
            if s.label.size and not np.isin(s.label, (0.0, 1.0)).all():
                raise CTRDataError(f"{name}: label must be 0 or 1")
        if len(lengths) > 1:
            raise CTRDataError(f"item_seq has different lengths across splits: {sorted(lengths)}")
