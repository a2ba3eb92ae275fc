"""The ``train-recommender`` Prefect flow and its deployments: :func:`mmfeat.pipelines.training.run.run_training`
plus a Prefect markdown artifact with the metrics table. Everything else about training lives in
:mod:`mmfeat.pipelines.training.run` (Prefect-free) and is re-exported here for existing importers.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from mmfeat.pipelines.training.run import (  # noqa: F401  (re-exported: the flow module's former API)
    DEFAULT_SEED,
    TrainRequestError,
    compare_runs,
    default_runs_dir,
    known_models,
    load_training_data,
    resolve_training_seed,
    run_training,
    validate_train_request,
)

#: deployment name -> default parameters
TRAIN_DEPLOYMENTS: dict[str, dict[str, Any]] = {
    # what extract-features/microlens builds offline: title and description text, both MiniLM (the
    # description stands in for the visual role; cover_clip needs CLIP weights and is skipped offline)
    "microlens": {"manifest": "microlens", "model": "FREEDOM",
                  "features": {"text": "title_minilm", "image": "description_minilm"}, "config": {"epochs": 50}},
    "movielens-100k": {"manifest": "movielens-100k", "model": "FREEDOM", "features": {"text": "text_minilm"},
                       "min_rating": 4.0, "k_core": 5, "config": {"epochs": 50}},
    # next-video prediction with the MicroLens protocol: the last 10 items as history, history masked
    "microlens-sasrec": {"manifest": "microlens", "model": "SASRec", "features": {"text": "title_minilm"},
                         "config": {"epochs": 50, "max_seq_length": 10, "mask_history": True}},
    # click-through rate on MovieLens-1M (rating >= 4) with the MMCTR challenge's DIN and the title text
    "movielens-1m-din": {"manifest": "movielens-1m", "model": "DIN", "features": {"text": "text_minilm"},
                         "config": {"epochs": 10}},
    # generative retrieval: TIGER writes the next video's semantic ID (title_sid), beam search over valid tuples;
    # the CPU-sized model (the paper's 128-d 4+4 layers is TIGER's default and 7.4x the work per target)
    "microlens-tiger": {"manifest": "microlens", "model": "TIGER", "features": {"codes": "title_sid"},
                        "preset": "tiger-cpu", "config": {"epochs": 30, "max_seq_length": 10, "beam_size": 10}},
}


@flow(name="train-recommender", log_prints=True)
def train_recommender(
    manifest: str = "movielens-100k",
    model: str = "LightGCN",
    features: dict[str, str] | None = None,
    config: dict[str, Any] | None = None,
    grid: dict[str, list[Any]] | None = None,
    seed: int | None = None,
    split: str | None = None,
    min_rating: float | None = None,
    k_core: int = 0,
    store_root: str | None = None,
    runs_dir: str | None = None,
    data_root: str | None = None,
    split_seed: int | None = None,
    history: str | None = None,
    preset: str | None = None,
) -> dict[str, Any]:
    """Train ``model`` on a manifest's interactions with store features (``{"text": "text_minilm@latest"}``).

    :func:`run_training` does the work (``config`` is its ``overrides``); the flow adds a Prefect
    markdown artifact with the metrics table. ``grid`` (name -> values) trains every combination and
    selects on VALID; test is only reported. ``seed`` is the training seed (same as ``config["seed"]``),
    ``split_seed`` seeds a random split; both default to DEFAULT_SEED and both are recorded. ``history``
    (CTR models): ``last`` or ``gsu``. ``preset`` (e.g. ``din-mmctr``) is a published baseline's settings
    and search space; ``config`` and ``grid`` win over it.

    Raises:
        TrainRequestError: the request is invalid (see :func:`validate_train_request`), or the split has
            no validation users and early stopping is on.
    """
    out = run_training(manifest, model=model, features=features, overrides=config, grid=grid, split=split,
                       split_seed=split_seed, seed=seed, min_rating=min_rating, k_core=k_core,
                       store_root=store_root, runs_dir=runs_dir, data_root=data_root, logger=get_run_logger(),
                       history=history, preset=preset)
    _publish_artifact(out["best"]["model"], out["data"], out["records"], out["best"] if out["grid"] else None)
    return {"best": out["best"], "runs": out["runs"], "data": out["data"]}


def _publish_artifact(model: str, info: dict[str, Any], runs: list[dict[str, Any]],
                      grid_best: dict[str, Any] | None) -> None:
    """The Prefect markdown artifact of a training run: split, seeds, how test was chosen, the metrics."""
    from mmfeat.pipelines.training.report import metrics_table

    split = info["split"]
    seeds = ", ".join(sorted({f"training seed {r['config']['seed']}" for r in runs}))
    chosen = ("selected on validation, test reported at the best-valid epoch"
              if runs[0].get("selection", "best_valid") == "best_valid"
              else "fixed number of epochs (early_stopping false), test reported at the last epoch")
    md = [f"## train-recommender: {model} on {info['manifest']}",
          f"split {info['split_hash'][:12]} ({info['split_file']}; {split['method']}, split seed {split['seed']}); "
          f"{seeds}; {chosen}", "", metrics_table(runs)]
    if grid_best is not None:
        vm = str(grid_best["config"].get("valid_metric", "recall@20")).lower()
        md += ["", f"best (by valid {vm}): `{grid_best['run_id']}`"]
    create_markdown_artifact(key=f"train-{model}-{info['manifest']}".lower().replace("_", "-").replace(".", "-"),
                             markdown="\n".join(md), description=f"{model} on {info['manifest']}")


def train_deployments() -> list:
    """One ``train-recommender/<name>`` deployment per entry of TRAIN_DEPLOYMENTS."""
    return [
        train_recommender.to_deployment(name=name, parameters=params, tags=["mmfeat", "train"],
                                        description=_deployment_description(name, params))
        for name, params in TRAIN_DEPLOYMENTS.items()
    ]


def _deployment_description(name: str, params: dict[str, Any]) -> str:
    """What a train deployment trains on, as the Prefect UI shows it."""
    feats = ", ".join(f"{k}={v}" for k, v in params.get("features", {}).items()) or "no item features"
    return f"Train {params['model']} on {name} ({feats}; run extract-features/{params['manifest']} first)"
