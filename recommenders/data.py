"""Interaction data for the recommenders: index-mapped splits plus aligned item features.

Everything a model needs lives in :class:`InteractionData`; models never see raw ids.

Protocol (matches MMRec's ``RecDataset`` / ``EvalDataLoader``):

* ``n_users`` / ``n_items`` cover every user / item that appears in *any* split (MMRec sets
  ``item_num = max(item_id) + 1`` over the whole file), so an item seen only in valid/test is still
  a rankable candidate (it just has no training signal).
* Valid/test rows whose *user* has no training interaction are dropped (MMRec's
  ``filter_out_cod_start_users``); rows with a cold *item* are kept, as in MMRec.
* A cold-start split (``split_info["method"] == "cold"``) also restricts each evaluation to that split's
  cold items (``eval_candidates``): the question it asks is how well new items are ranked among new items.
"""
from __future__ import annotations

import hashlib
import re
import logging
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

log = logging.getLogger(__name__)

# Items without a feature row are filled with the mean of the present rows; more than this
# fraction missing is an error (the features would be mostly made up).
MAX_MISSING_FEATURE_FRACTION = 0.05


@dataclass
class InteractionData:
    n_users: int
    n_items: int
    train: np.ndarray  # int64 [n_train, 2] (user_idx, item_idx)
    valid: np.ndarray  # int64 [n, 2]
    test: np.ndarray  # int64 [n, 2]
    user_ids: np.ndarray  # [n_users] original ids
    item_ids: np.ndarray  # [n_items] original ids, in model item-index order
    item_features: dict[str, np.ndarray] = field(default_factory=dict)  # name -> float32 [n_items, d]
    split_hash: str = ""
    feature_versions: dict[str, str] = field(default_factory=dict)  # name -> feature-store version
    missing_features: dict[str, int] = field(default_factory=dict)  # name -> #items filled with the mean
    split_info: dict = field(default_factory=dict)  # how the split was made ({"method", "seed"}), for records
    #: split -> the only items its evaluation ranks (sorted indices); absent = every item (MMRec's protocol)
    eval_candidates: dict[str, np.ndarray] = field(default_factory=dict)
    _csr: sp.csr_matrix | None = field(default=None, init=False, repr=False, compare=False)
    _norm_adj: torch.Tensor | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self):
        for name in ("train", "valid", "test"):
            a = np.asarray(getattr(self, name), dtype=np.int64).reshape(-1, 2)
            if len(a) and (a[:, 0].min() < 0 or a[:, 0].max() >= self.n_users
                           or a[:, 1].min() < 0 or a[:, 1].max() >= self.n_items):
                raise ValueError(f"{name}: user/item index out of range")
            setattr(self, name, a)
        for k, v in self.item_features.items():
            v = np.ascontiguousarray(v, dtype=np.float32)
            if v.ndim != 2 or v.shape[0] != self.n_items:
                raise ValueError(f"item feature {k!r} has shape {v.shape}, expected ({self.n_items}, d)")
            self.item_features[k] = v

    # ------------------------------------------------------------------ graphs
    def train_csr(self) -> sp.csr_matrix:
        """Binary [n_users, n_items] CSR of the training interactions (duplicates collapsed)."""
        if self._csr is None:
            m = sp.csr_matrix((np.ones(len(self.train), dtype=np.float32),
                               (self.train[:, 0], self.train[:, 1])),
                              shape=(self.n_users, self.n_items))
            m.sum_duplicates()
            m.data[:] = 1.0
            m.sort_indices()
            self._csr = m
        return self._csr

    def norm_adj(self) -> torch.Tensor:
        """Symmetric-normalized bipartite adjacency D^-1/2 A D^-1/2 of size (U+I, U+I).

        A coalesced sparse COO float32 tensor (cached). Degrees get +1e-7 as in MMRec/LightGCN so that
        isolated nodes give 0 rows instead of inf.
        """
        if self._norm_adj is None:
            self._norm_adj = sym_norm_bipartite(self.train_csr().tocoo(), self.n_users, self.n_items)
        return self._norm_adj

    # ------------------------------------------------------------------ misc
    def split_rows(self, split: str) -> np.ndarray:
        return {"train": self.train, "valid": self.valid, "test": self.test}[split]

    def summary(self) -> dict:
        return {"n_users": self.n_users, "n_items": self.n_items, "n_train": len(self.train),
                "n_valid": len(self.valid), "n_test": len(self.test), "split_hash": self.split_hash,
                "features": {k: list(v.shape) for k, v in self.item_features.items()},
                "missing_features": dict(self.missing_features),
                **({"eval_candidates": {k: int(len(v)) for k, v in self.eval_candidates.items()}}
                   if self.eval_candidates else {})}


def sym_norm_bipartite(coo: sp.coo_matrix, n_users: int, n_items: int) -> torch.Tensor:
    """D^-1/2 A D^-1/2 for the bipartite graph of a binary user-item COO matrix, as a torch sparse COO."""
    rows = coo.row.astype(np.int64)
    cols = coo.col.astype(np.int64) + n_users
    n = n_users + n_items
    deg = np.bincount(rows, minlength=n) + np.bincount(cols, minlength=n)
    dinv = np.power(deg.astype(np.float64) + 1e-7, -0.5)
    vals = (dinv[rows] * dinv[cols]).astype(np.float32)
    idx = np.concatenate([np.stack([rows, cols]), np.stack([cols, rows])], axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = torch.sparse_coo_tensor(torch.from_numpy(idx), torch.from_numpy(np.concatenate([vals, vals])),
                                    (n, n))
        return t.coalesce()


def natural_key(s: str) -> tuple:
    """Sort key of an id: digit runs compare numerically ("2" < "10"), the rest as text."""
    return tuple((0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", s) if t)


def natural_order(ids) -> list[str]:
    """Distinct ids in the dataset's own order: integers numerically ("2" before "10"), digit runs
    inside other ids numerically too; never plain string order."""
    return sorted({str(i) for i in ids}, key=natural_key)


def hash_split_frame(df: pd.DataFrame) -> str:
    """sha256 of a (user_id, item_id, split[, position]) table, independent of row order.

    A ``position`` column (the order inside a user's sequence, leave-one-out splits) is part of the content:
    the same interactions in another order are another split. Tables without it hash as they always did.
    """
    ordered = "position" in df.columns
    cols = ["user_id", "item_id", "split"] + (["position"] if ordered else [])
    d = df[cols].astype({"user_id": str, "item_id": str})
    d = d.sort_values(["user_id", "position", "item_id"] if ordered else ["user_id", "item_id", "split"],
                      kind="mergesort")
    h = hashlib.sha256()
    for col in ("user_id", "item_id"):
        h.update("\x1f".join(d[col].tolist()).encode())
        h.update(b"\x1e")
    h.update(d["split"].to_numpy(np.int64).tobytes())
    if ordered:
        h.update(b"position")
        h.update(d["position"].to_numpy(np.int64).tobytes())
    return h.hexdigest()


def align_features(item_ids, matrices: dict, *, max_missing_fraction: float = MAX_MISSING_FEATURE_FRACTION,
                   ) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Align feature matrices to ``item_ids`` (model item order).

    ``matrices``: name -> (ids, matrix [len(ids), d]) or name -> pandas DataFrame/Series indexed by id
    (rows are vectors). Policy for items with no feature row: fill with the mean of the present rows
    and report the count (returned as the second value, recorded in the run record). If more than
    ``max_missing_fraction`` of the items lack a row, raise ``ValueError``.
    """
    item_ids = np.asarray(item_ids).astype(str)
    out, missing = {}, {}
    for name, spec in matrices.items():
        if isinstance(spec, (pd.Series, pd.DataFrame)):
            ids = np.asarray(spec.index).astype(str)
            mat = np.stack(spec.to_numpy()) if isinstance(spec, pd.Series) else spec.to_numpy()
        else:
            ids, mat = spec
            ids = np.asarray(ids).astype(str)
        mat = np.asarray(mat, dtype=np.float32)
        if mat.ndim != 2 or mat.shape[0] != len(ids):
            raise ValueError(f"feature {name!r}: matrix shape {mat.shape} does not match {len(ids)} ids")
        pos = pd.Index(ids).get_indexer(item_ids)  # -1 where absent (first occurrence on duplicates)
        n_miss = int((pos < 0).sum())
        frac = n_miss / max(len(item_ids), 1)
        if frac > max_missing_fraction:
            raise ValueError(f"feature {name!r}: {n_miss}/{len(item_ids)} items ({frac:.1%}) have no row, "
                             f"more than the allowed {max_missing_fraction:.1%}")
        aligned = np.empty((len(item_ids), mat.shape[1]), dtype=np.float32)
        present = pos >= 0
        aligned[present] = mat[pos[present]]
        if n_miss:
            aligned[~present] = mat.mean(axis=0) if len(mat) else 0.0
            log.warning("feature %s: %d items without a row filled with the mean", name, n_miss)
        out[name], missing[name] = aligned, n_miss
    return out, missing


def from_split_frame(df: pd.DataFrame, *, item_ids=None, features: dict | None = None,
                     feature_versions: dict | None = None, split_hash: str | None = None,
                     max_missing_fraction: float = MAX_MISSING_FEATURE_FRACTION,
                     split_info: dict | None = None) -> InteractionData:
    """Build :class:`InteractionData` from a table with ``user_id, item_id, split`` (0/1/2).

    ``item_ids``: optional item catalogue fixing the item index order (must cover every item in df);
    default: the sorted unique item ids of df (every split, as MMRec). Users are indexed in sorted order.
    Valid/test rows of users with no train row are dropped (MMRec ``filter_out_cod_start_users``).
    ``split_info``: how the split was made (e.g. ``{"method": "random", "seed": 2024}``), copied into run
    records. A cold-start split (``split_info["method"] == "cold"``, or a frame straight from
    :func:`mmfeat.recommenders.splits.cold_item_split`, which marks itself in ``df.attrs``) also restricts each
    evaluation to its split's cold items (``eval_candidates``).
    """
    if split_info is None and "cold_items" in df.attrs:
        split_info = {"method": "cold", "cold_items": df.attrs["cold_items"]}
    df = df[["user_id", "item_id", "split"]]
    if split_hash is None:
        split_hash = hash_split_frame(df)
    # sort on the native values (integer ids keep numeric order, so MMRec's 0..N-1 ids map to themselves)
    uidx, user_ids = pd.factorize(df["user_id"], sort=True)
    user_ids = np.asarray(user_ids).astype(str)
    if item_ids is None:
        iidx, item_ids = pd.factorize(df["item_id"], sort=True)
        item_ids = np.asarray(item_ids).astype(str)
    else:
        item_ids = np.asarray(item_ids).astype(str)
        iidx = pd.Index(item_ids).get_indexer(df["item_id"].astype(str).to_numpy())
    if (iidx < 0).any():
        raise ValueError(f"{int((iidx < 0).sum())} interactions reference items not in item_ids")
    s = df["split"].to_numpy(np.int64)
    pairs = np.stack([uidx, iidx], 1).astype(np.int64)
    train = pairs[s == 0]
    has_train = np.zeros(len(user_ids), bool)
    has_train[train[:, 0]] = True
    parts = []
    for k in (1, 2):
        p = pairs[s == k]
        dropped = int((~has_train[p[:, 0]]).sum())
        if dropped:
            log.info("split %d: dropped %d rows of users without train interactions", k, dropped)
        parts.append(p[has_train[p[:, 0]]])
    feats, missing = align_features(item_ids, features or {}, max_missing_fraction=max_missing_fraction)
    candidates = {}
    if (split_info or {}).get("method") == "cold":  # rank each split's cold items only
        in_train = np.zeros(len(item_ids), bool)
        in_train[train[:, 1]] = True
        for name, p in zip(("valid", "test"), parts):
            c = np.unique(p[:, 1])
            if in_train[c].any():
                raise ValueError(f"cold split: {int(in_train[c].sum())} {name} items also occur in train; the "
                                 "split is not a cold-item split")
            candidates[name] = c
    return InteractionData(n_users=len(user_ids), n_items=len(item_ids), train=train, valid=parts[0],
                           test=parts[1], user_ids=user_ids.astype(object), item_ids=item_ids.astype(object),
                           item_features=feats, split_hash=split_hash,
                           feature_versions=dict(feature_versions or {}), missing_features=missing,
                           split_info=dict(split_info or {}), eval_candidates=candidates)
