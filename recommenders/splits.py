"""Train/valid/test splits of a normalized interactions table (``user_id, item_id, timestamp[, split]``).

Split codes follow MMRec's ``x_label``: 0 = train, 1 = valid, 2 = test.

* ``split`` column present -> used as is (``method="given"``, the default when it exists).
* ``method="random"`` (per user, seeded; MMRec preprocessing/1splitting.ipynb): a user with n >= 10
  interactions gets ``int(0.2 n)`` held out, split ``//2`` valid and the rest test; a user with
  3 <= n < 10 gets n-2 / 1 / 1. Users with n < 3 stay entirely in train (MMRec would give n=2 users
  zero train rows, so they would be dropped as cold anyway, and n=1 breaks its notebook).
* ``method="time"``: global temporal split at the 80% / 90% timestamp quantiles (ties broken by row
  order after a stable sort), so valid/test are strictly later interactions.
* ``method="cold"`` (cold-start items, seeded): a ``holdout`` share of the *items* (default 20%) never
  appears in train: half of them (by count) are validation items, the rest test items, and every
  interaction of such an item goes to its split; every interaction of the other items is train. Evaluation on
  such a split ranks only the split's cold items (:func:`mmfeat.recommenders.data.from_split_frame` records
  them as ``eval_candidates``), so an ID-only model, whose cold-item embeddings never trained, scores as
  chance, and the content features are what separate the models.
* ``method="loo"`` (leave-one-out, the sequential protocol of RecBole, MicroLens and fMRLRec): each user's
  interactions in time order, ties in ``timestamp`` broken by source row order (a stable sort); the last is
  test, the one before it valid, the rest train. Users with fewer than 3 interactions are dropped (they
  would have no train item) and counted in ``out.attrs["dropped_users"]``. The output has a ``position``
  column (0-based rank inside the user's sequence), which the split file and its hash keep, because a
  sequence's order is part of the split.

Valid/test rows of users absent from train are dropped when the data is built
(:func:`mmfeat.recommenders.data.from_split_frame`), as MMRec does; cold items are kept as candidates.
The split is stored as data (parquet ``user_id, item_id, split``); its content sha256 is the
``split_hash`` carried in every run record.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from .data import hash_split_frame
from mmfeat.defaults import DEFAULT_SEED


SPLIT_METHODS = ("given", "random", "time", "loo", "cold")
#: the fewest interactions a user needs for a leave-one-out split (one train, one valid, one test)
LOO_MIN_INTERACTIONS = 3
#: seed of the random split when none is given (the train flow's default since its first records)
DEFAULT_SPLIT_SEED = DEFAULT_SEED


def resolve_split_method(df: pd.DataFrame, method: str | None) -> str:
    """The method :func:`split_interactions` uses: ``given`` when ``df`` has a split column, else ``random``."""
    if method is None:
        return "given" if "split" in df.columns else "random"
    if method not in SPLIT_METHODS:
        raise ValueError(f"unknown split method {method!r} ({'/'.join(SPLIT_METHODS)})")
    return method


def split_interactions(df: pd.DataFrame, method: str | None = None, *, seed: int = DEFAULT_SPLIT_SEED,
                       holdout: float = 0.2) -> pd.DataFrame:
    """Return ``df[user_id, item_id, timestamp, split]`` with a split column (see module doc).

    ``seed`` only matters for ``method="random"`` and ``method="cold"``; ``holdout`` is the held-out share of
    interactions (random, time) or of items (cold).
    """
    cols = [c for c in ("user_id", "item_id", "timestamp") if c in df.columns]
    method = resolve_split_method(df, method)
    if method == "given":
        if "split" not in df.columns:
            raise ValueError("method='given' needs a 'split' column")
        out = df[cols + ["split"]].copy()
        bad = ~out["split"].isin([0, 1, 2])
        if bad.any():
            raise ValueError(f"split column has values outside 0/1/2: {sorted(out.loc[bad, 'split'].unique())[:5]}")
        out["split"] = out["split"].astype(np.int8)
        return out.reset_index(drop=True)
    out = df[cols].copy().reset_index(drop=True)
    if method == "random":
        rng = np.random.default_rng(seed)
        out = out.iloc[rng.permutation(len(out))].reset_index(drop=True)
        out = out.sort_values("user_id", kind="mergesort").reset_index(drop=True)
        u = out["user_id"].to_numpy()
        n = out.groupby("user_id", sort=False)["user_id"].transform("size").to_numpy()
        pos = out.groupby("user_id", sort=False).cumcount().to_numpy()  # rank inside user (random order)
        vt = np.where(n >= 10, (n * holdout).astype(np.int64), 2)
        vt = np.where(n < 3, 0, vt)
        v = vt // 2
        train_len = n - vt
        split = np.where(pos < train_len, 0, np.where(pos < train_len + v, 1, 2))
        out["split"] = split.astype(np.int8)
        del u
        return out
    if method == "time":
        if "timestamp" not in out.columns:
            raise ValueError("time split needs a timestamp column")
        order = np.argsort(out["timestamp"].to_numpy(), kind="stable")
        r = np.empty(len(out), np.int64)
        r[order] = np.arange(len(out))
        a, b = int(len(out) * (1 - holdout)), int(len(out) * (1 - holdout / 2))
        out["split"] = np.where(r < a, 0, np.where(r < b, 1, 2)).astype(np.int8)
        return out
    if method == "loo":
        return leave_one_out(out)
    if method == "cold":
        return cold_item_split(out, seed=seed, holdout=holdout)
    raise ValueError(f"unknown split method {method!r} ({'/'.join(SPLIT_METHODS)})")


def cold_item_split(df: pd.DataFrame, *, seed: int = DEFAULT_SPLIT_SEED, holdout: float = 0.2) -> pd.DataFrame:
    """Cold-start items (see the module doc): ``df`` plus ``split``, where a seeded ``holdout`` share of the
    distinct items is held out entirely, half as validation items and half as test items.

    Raises:
        ValueError: ``holdout`` outside (0, 1), or too few items to hold out one validation and one test item
            while keeping a train item.
    """
    if not 0.0 < holdout < 1.0:
        raise ValueError(f"cold split: holdout must be a share of items in (0, 1), got {holdout}")
    items = np.asarray(sorted(df["item_id"].astype(str).unique()), dtype=object)
    n_cold = int(round(len(items) * holdout))
    if n_cold < 2 or n_cold >= len(items):
        raise ValueError(f"cold split: {len(items)} items with holdout {holdout} gives {n_cold} cold items; it "
                         "needs at least one validation item, one test item and one train item")
    order = np.random.default_rng(seed).permutation(len(items))
    n_valid = n_cold // 2
    code = np.zeros(len(items), np.int8)
    code[order[:n_valid]] = 1
    code[order[n_valid:n_cold]] = 2
    out = df.reset_index(drop=True).copy()
    out["split"] = code[pd.Index(items).get_indexer(out["item_id"].astype(str))]
    out.attrs["cold_items"] = {"valid": int(n_valid), "test": int(n_cold - n_valid)}
    return out


def leave_one_out(df: pd.DataFrame) -> pd.DataFrame:
    """Leave-one-out per user (see the module doc): ``df`` plus ``position`` and ``split``, users in first-seen
    order, each user's rows in (timestamp, source row) order.

    Raises:
        ValueError: no timestamp column (a sequence needs an order), or no user with 3 interactions.
    """
    if "timestamp" not in df.columns:
        raise ValueError("a leave-one-out split needs a timestamp column (the order of each user's sequence)")
    out = df.reset_index(drop=True)
    # stable sorts: by timestamp, then by user; equal timestamps keep source row order
    out = out.iloc[np.argsort(out["timestamp"].to_numpy(), kind="stable")]
    out = out.iloc[np.argsort(pd.factorize(out["user_id"])[0], kind="stable")].reset_index(drop=True)
    user_codes = pd.factorize(out["user_id"])[0]
    n = np.bincount(user_codes)[user_codes]
    keep = n >= LOO_MIN_INTERACTIONS
    dropped = int(len(np.unique(user_codes[~keep])))
    if not keep.any():
        raise ValueError(f"no user has {LOO_MIN_INTERACTIONS} interactions: nothing to leave out")
    out, n = out[keep].reset_index(drop=True), n[keep]
    pos = out.groupby("user_id", sort=False).cumcount().to_numpy()
    out["position"] = pos.astype(np.int64)
    out["split"] = np.where(pos == n - 1, 2, np.where(pos == n - 2, 1, 0)).astype(np.int8)
    out.attrs["dropped_users"] = dropped
    return out


def save_split(split_df: pd.DataFrame, path: str | os.PathLike) -> str:
    """Write the split (user_id, item_id, split[, position]) as parquet atomically; returns its content sha256.

    ``position`` (a leave-one-out split's order inside each user) is kept when present."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    d = split_df[["user_id", "item_id", "split"] + (["position"] if "position" in split_df.columns else [])].copy()
    d["user_id"], d["item_id"] = d["user_id"].astype(str), d["item_id"].astype(str)
    h = hash_split_frame(d)
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    d.to_parquet(tmp, index=False)
    os.replace(tmp, path)
    return h


def load_split(path: str | os.PathLike) -> tuple[pd.DataFrame, str]:
    d = pd.read_parquet(path)
    return d, hash_split_frame(d)


def k_core(df: pd.DataFrame, k: int = 5) -> pd.DataFrame:
    """Iterative k-core: drop users and items with < k interactions until stable."""
    while True:
        uc = df.groupby("user_id")["item_id"].transform("size")
        ic = df.groupby("item_id")["user_id"].transform("size")
        keep = (uc >= k) & (ic >= k)
        if keep.all():
            return df.reset_index(drop=True)
        df = df[keep]
