"""``mmfeat unlearn``: train a recommender on a manifest's split, make it forget part of its training data
(MMRecUn-style reverse + forward BPR, :func:`mmfeat.recommenders.unlearning.unlearn`), retrain a gold model
without that data, and report both against the original, in one command.

It uses the same request checks, split, store features and run records as ``mmfeat train`` (both models
trained here are ordinary runs with records); the unlearning result is written next to the original run as
``unlearning-<kind>-<digest>.json``.
"""
from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from mmfeat.pipelines.training.run import (TrainRequestError, default_runs_dir, load_training_data, model_task,
                                       resolve_training_seed, validate_train_request)
from mmfeat.defaults import DEFAULT_SEED

log = logging.getLogger(__name__)


def run_unlearning(manifest: str, *, model: str, features: dict[str, str] | None = None,
                   overrides: dict[str, Any] | None = None, forget: str = "interactions", share: float = 0.05,
                   forget_seed: int = DEFAULT_SEED, unlearn_config: dict[str, Any] | None = None, gold: bool = True,
                   split: str | None = None, split_seed: int | None = None, seed: int | None = None,
                   min_rating: float | None = None, k_core: int = 0, store_root: str | None = None,
                   runs_dir: str | None = None, data_root: str | None = None, progress: bool = False) -> dict[str, Any]:
    """Train, unlearn a forget set, (optionally) retrain without it, and compare.

    Args:
        manifest, model, features, overrides, split, split_seed, seed, min_rating, k_core, store_root, runs_dir,
            data_root: as :func:`mmfeat.pipelines.training.run.run_training` (one arm, no grid).
        forget: ``interactions`` (a share of the training pairs) or ``items`` (a share of the items with all
            their training interactions).
        share: the forgotten share, in (0, 1).
        forget_seed: seed of the forget-set draw.
        unlearn_config: :class:`mmfeat.recommenders.unlearning.UnlearnConfig` keys (epochs, weights, ...).
        gold: also retrain the model from scratch on the retain data (the reference the unlearned model is
            judged against on the forget set).

    Returns:
        ``{"original": record, "gold": record | None, "unlearning": result dict, "path": where it was written}``.

    Raises:
        TrainRequestError: an invalid request (unknown model, key, feature or version; a sequential / CTR /
            generative model, which have no user-item training pairs to forget), checked before data loads.

    Example:
        >>> run_unlearning("movielens-100k", model="LightGCN", forget="items", share=0.05)  # doctest: +SKIP
    """
    from mmfeat.recommenders import ConfigError, fit
    from mmfeat.recommenders.unlearning import FORGET_KINDS, forget_set, resolve_unlearn_config, retain_data, unlearn

    features, overrides = dict(features or {}), dict(overrides or {})
    validate_train_request(manifest, model=model, features=features, versus=None, overrides=overrides, grid=None,
                           store_root=store_root, data_root=data_root, seed=seed, split=split, min_rating=min_rating,
                           k_core=k_core)
    if model_task(model) != "general":
        raise TrainRequestError(f"{model} is a {model_task(model)} model; unlearning forgets user-item training "
                                "pairs of a general (graph / MF) recommender such as LightGCN or FREEDOM")
    if split == "cold":
        raise TrainRequestError("unlearning compares full-ranking metrics of the original, unlearned and gold "
                                "models; a cold-start split ranks only cold items, so use given, random or time")
    if forget not in FORGET_KINDS:
        raise TrainRequestError(f"forget must be one of {', '.join(FORGET_KINDS)}, not {forget!r}")
    if not 0.0 < share < 1.0:
        raise TrainRequestError(f"share must be in (0, 1), got {share}")
    try:
        ucfg = resolve_unlearn_config(unlearn_config)
    except ConfigError as exc:
        raise TrainRequestError(str(exc)) from None
    out_dir = runs_dir or str(default_runs_dir())
    data, info = load_training_data(manifest, features, store_root=store_root, split=split, split_seed=split_seed,
                                    min_rating=min_rating, k_core=k_core, runs_dir=out_dir, data_root=data_root)
    cfg = {**overrides, "seed": resolve_training_seed(seed, overrides)}
    t0 = time.perf_counter()
    original = fit(data, model, cfg, out_dir, progress=progress)
    log.info("original %s trained in %.1f s: test recall@20 %.4f", original.run_id, time.perf_counter() - t0,
             original.test.get("recall@20", float("nan")))
    fs = forget_set(data, forget, share=share, seed=forget_seed)
    gold_rec = None
    if gold:
        retained = retain_data(data, fs)
        gold_rec = fit(retained, model, cfg, out_dir, progress=progress)
    result = unlearn(original._model, data, fs, ucfg, gold=gold_rec._model if gold_rec else None)
    payload = {"manifest": manifest, "model": model, "features": original.feature_versions,
               "split_hash": data.split_hash, "data": info, "forget": fs.summary(), "config": ucfg,
               "original_run": original.run_id, "gold_run": gold_rec.run_id if gold_rec else None,
               "original_train_s": sum(e["train_s"] for e in original.epochs),
               "gold_train_s": sum(e["train_s"] for e in gold_rec.epochs) if gold_rec else None,
               **{k: v for k, v in result.to_dict().items() if k not in ("config", "forget")}}
    path = Path(out_dir) / original.run_id / f"unlearning-{forget}-{fs.digest()}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=1, default=float))
    os.replace(tmp, path)
    return {"original": original, "gold": gold_rec, "unlearning": payload, "path": str(path)}


def unlearning_table(payload: dict[str, Any], k: int = 20) -> str:
    """The paper's comparison as a small table: forget-set and retain-set Recall/NDCG@k per model state."""
    rows = [("original", payload.get("original"), payload.get("original_train_s")),
            ("unlearned", payload.get("unlearned"), payload.get("unlearn_s")),
            ("gold (retrained without it)", payload.get("gold"), payload.get("gold_train_s"))]
    f = payload["forget"]
    what = f"{f['n_pairs']} pairs" + (f" of {f['n_items']} items" if "n_items" in f else "")
    lines = [f"forget set: {f['kind']}, share {f['share']} ({what}, seed {f['seed']})",
             f"| model | forget R@{k} | forget N@{k} | retain R@{k} | retain N@{k} | time s |", "|---|---|---|---|---|---|"]
    for name, m, secs in rows:
        if not m:
            continue
        cells = [f"{m[s].get(f'{metric}@{k}', float('nan')):.4f}" for s in ("forget", "retain") for metric in ("recall", "ndcg")]
        lines.append(f"| {name} | " + " | ".join(cells) + (f" | {secs:.2f} |" if secs is not None else " | - |"))
    return "\n".join(lines)
