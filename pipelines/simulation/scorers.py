"""Trained mmfeat recommenders as the agent's base scorer: ``score(history, items) -> scores``.

Two ways to get one:

- :func:`load_run_scorer`: reload a run written by :func:`mmfeat.recommenders.trainer.fit` exactly. A run
  folder holds ``record.json`` (model, config, split hash, feature versions, dataset) and ``model.pt`` (the
  state dict); the split is the Parquet file ``<runs>/splits/<dataset>-<split_hash[:12]>.parquet`` that
  :func:`mmfeat.pipelines.training.run.load_training_data` saved, and the features are the recorded store
  versions. Rebuilding the data from those (same item/user indexing, same feature fill) and loading the state
  dict gives the trained model's scores bit for bit (``tests/test_rec_registry.py`` checks the round trip).
  The split's hash is checked; a missing split file or store version is an error saying what is missing.
- :func:`fit_scorer`: train within the simulation on the users' *visible* histories
  (:meth:`UserHistory.visible`). A stored run was split 8:1:1 at random (or leave-one-out), so it may have
  trained on the very items a simulated user holds out: a graph model would then "know" the held-out part.
  Training on the visible histories only is the leakage-free path, kept in memory.

Graph (user-item) models score by the run's user index (``history.user_id`` in the run's ``user_ids``; an
unknown user raises :class:`UnknownUser`). Sequential models score the history's item sequence (its last
``max_seq_length`` items the model knows), so clicks appended during a session move their scores. Catalog
items the model has no index for score ``-inf`` (:func:`mmfeat.agents.recommender.scoring.all_scores` ranks
them last). CTR runs score impressions, not a catalog, and are refused.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from mmfeat.agents.types import Catalog, UserHistory


class RunReloadError(ValueError):
    """A run that cannot be reloaded exactly (missing split file or store version, changed split, CTR run)."""


class UnknownUser(KeyError):
    """A graph model asked to score a user it has no embedding for."""


def _index(model_ids: np.ndarray, catalog_ids: np.ndarray) -> np.ndarray:
    """Per catalog item, its model item index, -1 when the model has none."""
    return pd.Index(np.asarray(model_ids).astype(str)).get_indexer(np.asarray(catalog_ids).astype(str))


class GraphScorer:
    """A trained user-item model's scores for one of its users.

    Args:
        model: a :class:`mmfeat.recommenders.Recommender` (``full_sort_predict(users)``).
        user_ids: the model's user ids, user-index order.
        item_ids: the model's item ids, item-index order.
        catalog: the catalog whose item indices ``score`` receives.
        name: the name in traces.
    """

    def __init__(self, model: Any, user_ids: np.ndarray, item_ids: np.ndarray, catalog: Catalog,
                 name: str) -> None:
        self.model, self.name = model.cpu().eval(), name
        self._users = {str(u): i for i, u in enumerate(np.asarray(user_ids).astype(str))}
        self._map = _index(item_ids, catalog.item_ids)
        with torch.no_grad():
            model.prepare_eval()  # caches the propagated embeddings once, as an evaluation pass does
        self._row: tuple[int, np.ndarray] | None = None

    def _scores(self, user: int) -> np.ndarray:
        if self._row is None or self._row[0] != user:
            with torch.no_grad():
                row = self.model.full_sort_predict(torch.tensor([user]))[0].double().numpy()
            self._row = (user, row)
        return self._row[1]

    def score(self, history: UserHistory, items: np.ndarray) -> np.ndarray:
        """Scores of catalog ``items`` for ``history.user_id``.

        Raises:
            UnknownUser: the model has no such user.
        """
        user = self._users.get(str(history.user_id))
        if user is None:
            raise UnknownUser(f"{self.name}: user {history.user_id!r} is not among the run's users")
        row = self._scores(user)
        pos = self._map[np.asarray(items, dtype=np.int64)]
        return np.where(pos >= 0, row[np.maximum(pos, 0)], -np.inf)


class SequentialScorer:
    """A trained next-item model's scores after a history's item sequence.

    Args:
        model: a sequential recommender (``full_sort_predict(inputs, lengths)``).
        item_ids: the model's item ids, item-index order (token = index + 1).
        catalog: the catalog whose item indices ``score`` and the histories use.
        name: the name in traces.
    """

    def __init__(self, model: Any, item_ids: np.ndarray, catalog: Catalog, name: str) -> None:
        self.model, self.name = model.cpu().eval(), name
        self._map = _index(item_ids, catalog.item_ids)
        self.max_len = int(model.max_len)
        with torch.no_grad():
            model.prepare_eval()

    def score(self, history: UserHistory, items: np.ndarray) -> np.ndarray:
        """Scores of catalog ``items`` after ``history.items`` (time order); all equal when the model knows none."""
        items = np.asarray(items, dtype=np.int64)
        pos = self._map[np.asarray(history.items, dtype=np.int64)]
        tokens = (pos[pos >= 0] + 1)[-self.max_len:]
        if len(tokens) == 0:
            return np.zeros(len(items))
        inputs = np.zeros((1, self.max_len), dtype=np.int64)
        inputs[0, :len(tokens)] = tokens  # left-aligned, 0-padded (the evaluator's layout)
        with torch.no_grad():
            row = self.model.full_sort_predict(torch.from_numpy(inputs), torch.tensor([len(tokens)]))[0]
        row = row.double().numpy()
        p = self._map[items]
        return np.where(p >= 0, row[np.maximum(p, 0)], -np.inf)


def _scorer(model: Any, data: Any, catalog: Catalog, name: str) -> GraphScorer | SequentialScorer:
    if getattr(model, "task", "general") == "sequential":
        return SequentialScorer(model, data.item_ids, catalog, name)
    return GraphScorer(model, data.user_ids, data.item_ids, catalog, name)


# ---------------------------------------------------------------------------- reload a run
def load_run(run: str | Path, *, store_root: str | None = None,
             splits_dir: str | Path | None = None) -> tuple[Any, Any, dict[str, Any]]:
    """Rebuild a trained run's model exactly: ``(model, data, record)``.

    Args:
        run: the run folder (holding ``record.json``) or the ``record.json`` path.
        store_root: the feature store holding the recorded versions (default: the store's default root).
        splits_dir: where the split file is (default: ``splits/`` next to the run folder).

    Returns:
        The model with the checkpoint loaded (eval mode), its data (``InteractionData`` or ``SequenceData``)
        and the record.

    Raises:
        RunReloadError: no record or checkpoint, a CTR run, the split file missing or changed, a feature
            version missing, or rebuilt data that does not match the record's sizes.
    """
    from mmfeat.pipelines.store.feature_store import FeatureStore, StoreError, default_store_root
    from mmfeat.pipelines.training.run import model_task
    from mmfeat.recommenders import build_model, from_split_frame, load_split
    from mmfeat.recommenders.sequential import from_loo_frame

    path = Path(run)
    folder = path.parent if path.name == "record.json" else path
    if not (folder / "record.json").is_file():
        raise RunReloadError(f"{folder}: no record.json; pass a run folder written by `mmfeat train`")
    record = json.loads((folder / "record.json").read_text())
    model_name, split_hash = record["model"], str(record.get("split_hash", ""))
    task = model_task(model_name)
    if task == "ctr":
        raise RunReloadError(f"{model_name} is a CTR model: it scores impressions, not a user's catalog; use a "
                             f"graph or sequential run")
    ckpt = Path(record.get("checkpoint") or folder / "model.pt")
    if not ckpt.is_file():
        ckpt = folder / "model.pt"
    if not ckpt.is_file():
        raise RunReloadError(f"{folder}: no model.pt checkpoint (the run was not saved)")
    dataset = record.get("dataset") or _dataset_of(record)
    split_file = Path(splits_dir or folder.parent / "splits") / f"{dataset}-{split_hash[:12]}.parquet"
    if not split_file.is_file():
        raise RunReloadError(f"{folder}: the run's split {split_file} is missing, so the run's user and item "
                             f"indexing cannot be rebuilt; train within the simulation instead (fit_scorer)")
    df, got = load_split(split_file)
    if got != split_hash:
        raise RunReloadError(f"{split_file}: content hash {got[:12]} differs from the record's {split_hash[:12]}")
    store = FeatureStore(store_root or default_store_root())
    features, versions, codes = {}, {}, None
    for role, ref in (record.get("feature_versions") or {}).items():
        ds, fs, version = str(ref).split("/", 2)
        try:
            if store.manifest(ds, fs, version).get("output", {}).get("kind") == "codes":
                matrix, ids, _ = store.read_codes(ds, fs, version)
                codes = (ids, matrix)
            else:
                read = store.read_matrix(ds, fs, version)
                features[role] = (read.item_ids, read.matrix)
        except StoreError as exc:
            raise RunReloadError(f"{folder}: feature {role}={ref} cannot be read from {store.root}: {exc}") from None
        versions[role] = ref
    common = {"features": features, "feature_versions": versions, "split_hash": split_hash,
              "split_info": record.get("split") or {}}
    if task == "sequential":
        data = from_loo_frame(df, **common, **({"codes": codes} if codes is not None else {}))
    else:
        data = from_split_frame(df, **common)
    want = record.get("data") or {}
    if any(k in want and int(want[k]) != int(getattr(data, k)) for k in ("n_users", "n_items")):
        raise RunReloadError(f"{folder}: rebuilt data has {data.n_users} users / {data.n_items} items, the record "
                             f"{want.get('n_users')} / {want.get('n_items')}")
    model = build_model(model_name, data, record["config"])
    model.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True))
    return model.eval(), data, record


def _dataset_of(record: dict[str, Any]) -> str:
    versions = [str(v) for v in (record.get("feature_versions") or {}).values() if "/" in str(v)]
    if versions:
        return versions[0].split("/", 1)[0]
    raise RunReloadError(f"run {record.get('run_id')}: the record names no dataset (train it with `mmfeat train`, "
                         f"which records it)")


def load_run_scorer(run: str | Path, catalog: Catalog, *, store_root: str | None = None,
                    splits_dir: str | Path | None = None) -> GraphScorer | SequentialScorer:
    """A trained run as the agent's base scorer (see :func:`load_run`).

    Args:
        run: the run folder or its ``record.json``.
        catalog: the simulation's catalog (items are matched by source item id).
        store_root: the feature store of the run's features.
        splits_dir: where the run's split file is (default ``<runs>/splits``).

    Returns:
        A :class:`GraphScorer` or :class:`SequentialScorer` named after the model.

    Raises:
        RunReloadError: see :func:`load_run`.

    Example:
        >>> scorer = load_run_scorer("runs/lightgcn-20250101-000000-abc123", catalog)  # doctest: +SKIP
        >>> scorer.score(histories[0].visible(), np.arange(catalog.n_items))  # doctest: +SKIP
    """
    model, data, record = load_run(run, store_root=store_root, splits_dir=splits_dir)
    return _scorer(model, data, catalog, f"{record['model']}[{record['run_id']}]")


# ---------------------------------------------------------------------------- train in the simulation
def histories_frame(histories: Sequence[UserHistory], catalog: Catalog) -> pd.DataFrame:
    """The visible histories as ``user_id, item_id, timestamp`` rows (timestamp = position in the history)."""
    lengths = np.array([len(h.items) for h in histories], dtype=np.int64)
    items = np.concatenate([np.asarray(h.items, dtype=np.int64) for h in histories]) if len(histories) else \
        np.zeros(0, np.int64)
    return pd.DataFrame({
        "user_id": np.repeat(np.array([str(h.user_id) for h in histories], dtype=object), lengths),
        "item_id": np.asarray(catalog.item_ids).astype(str)[items],
        "timestamp": np.concatenate([np.arange(n) for n in lengths]) if len(lengths) else np.zeros(0, np.int64),
    })


def fit_scorer(histories: Sequence[UserHistory], catalog: Catalog, model_name: str,
               config: dict[str, Any] | None = None, *, item_features: dict[str, np.ndarray] | None = None,
               runs_dir: str | Path | None = None) -> GraphScorer | SequentialScorer:
    """Train a base model on the users' visible histories only and keep it in memory (no held-out leakage).

    Graph models: each user's last visible item is the validation row (early stopping, as a run selects its
    epoch) and every catalog item is indexed (an item nobody has seen is still rankable); the record's "test"
    repeats validation and is no held-out estimate. Sequential models: leave-one-out over the visible sequence
    (the last two items are the valid/test targets and are still read as history when scoring). Users with
    fewer than 3 visible items are left out of training (a graph model then cannot score them).

    Args:
        histories: the population, held-out parts removed (they are dropped here anyway).
        catalog: the items (indices of ``histories``).
        model_name: a registered general or sequential model (``LightGCN``, ``FREEDOM``, ``SASRec``, ...).
        config: hyper-parameters over the model's defaults.
        item_features: role -> float ``[n_items, d]`` in catalog order (e.g. ``{"text": catalog.embeddings}``).
        runs_dir: also write the run folder there (default: nothing written).

    Returns:
        The trained model as a scorer named ``<model>[fit]``.

    Raises:
        mmfeat.recommenders.ConfigError: unknown model or hyper-parameter.
        ValueError: no user has 3 visible items.

    Example:
        >>> scorer = fit_scorer([h.visible() for h in histories], catalog, "LightGCN", {"epochs": 20})  # doctest: +SKIP
    """
    from mmfeat.recommenders import fit, from_split_frame, get_model_class, split_interactions
    from mmfeat.recommenders.sequential import from_loo_frame

    df = histories_frame([h.visible() for h in histories], catalog)
    n = df.groupby("user_id")["item_id"].transform("size")
    df = df[n >= 3].reset_index(drop=True)
    if df.empty:
        raise ValueError("no user has 3 visible items to train on")
    ids = np.asarray(catalog.item_ids).astype(str)
    feats = {role: (ids, np.asarray(m, dtype=np.float32)) for role, m in (item_features or {}).items()}
    cfg = dict(config or {})
    if getattr(get_model_class(model_name), "task", "general") == "sequential":
        data = from_loo_frame(split_interactions(df, "loo"), features=feats, split_info={"method": "loo"})
    else:
        last = df.groupby("user_id")["timestamp"].transform("max") == df["timestamp"]
        split = pd.concat([df.assign(split=np.where(last, 1, 0)), df[last].assign(split=2)], ignore_index=True)
        data = from_split_frame(split, item_ids=ids, features=feats, split_info={"method": "visible-history"})
    rec = fit(data, model_name, cfg, runs_dir, progress=False, save=runs_dir is not None)
    return _scorer(rec._model, data, catalog, f"{rec.model}[fit]")


__all__ = ["GraphScorer", "SequentialScorer", "RunReloadError", "UnknownUser", "load_run", "load_run_scorer",
           "fit_scorer", "histories_frame"]
