"""The notebook entry points behind ``mmfeat.extract`` and ``mmfeat.train``: the code the Prefect
deployments run (:func:`mmfeat.pipelines.engine.extract.extract_manifest`,
:func:`mmfeat.pipelines.training.run.run_training`), in this process, without a Prefect server."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence


def extract(
    manifest: str | Path,
    *,
    feature_sets: Sequence[str] | None = None,
    store: str | Path | None = None,
    tag: str | None = None,
    data_root: str | Path | None = None,
    progress: str = "bar",
) -> list[Any]:
    """Build (or find) the feature versions of a manifest, in this process.

    Args:
        manifest: a shipped manifest's name (``"microlens"``) or a path to a YAML file.
        feature_sets: only these feature sets (in manifest order; default all).
        store: the store root (default ``$MMFEAT_STORE``, else ``./store``).
        tag: an alias to point at the versions, besides ``latest``.
        data_root: overrides the manifest's ``data_root`` (e.g. a real MicroLens download).
        progress: ``"bar"`` (tqdm), ``"log"`` (a line every 10 s) or ``"none"``.

    Returns:
        One :class:`mmfeat.pipelines.engine.extract.FeatureSetReport` per feature set built or found
        (version, rows, errors, reused, computed, cache hit).

    Raises:
        ManifestError: the manifest is invalid, its data paths do not exist, it has no set named in
            ``feature_sets``, or a backbone of a set to run is mistyped or (required, offline) not here.
        FeatureSetFailed: a feature set has more error rows than its failure threshold.
        Unavailable: a non-optional feature set's weights or extra are missing here.

    Example:
        >>> import mmfeat                                               # doctest: +SKIP
        >>> reports = mmfeat.extract("microlens", feature_sets=["title_minilm"])  # doctest: +SKIP
        >>> reports[0].version                                          # doctest: +SKIP
        'v-...'
    """
    from mmfeat.pipelines.engine.extract import extract_manifest
    from mmfeat.pipelines.manifest import check_backbones, load_manifest
    from mmfeat.pipelines.engine.progress import progress_factory
    from mmfeat.pipelines.store.feature_store import FeatureStore, default_store_root

    m = load_manifest(manifest, data_root=str(data_root) if data_root is not None else None)
    for name in feature_sets or []:
        m.feature_set(name)  # ManifestError naming the closest real set
    check_backbones(m, list(feature_sets) if feature_sets else None)  # a typo: one error before anything loads
    return extract_manifest(m, store=FeatureStore(store or default_store_root()), feature_sets=feature_sets,
                            tag=tag, progress=progress_factory(progress))  # type: ignore[arg-type]


def train(manifest: str, *, model: str, features: dict[str, str] | None = None, seed: int | None = None,
          split_seed: int | None = None, **options: Any) -> dict[str, Any]:
    """Train and evaluate a recommender on a manifest's interactions and store features, in this process.

    Args:
        manifest: a manifest name or path (its interactions and dataset).
        model: a registered model (``"FREEDOM"``; ``mmfeat train --help`` lists them).
        features: role -> ``feature_set[@ref]`` (``{"text": "title_minilm"}``).
        seed: the training seed (the same as ``overrides={"seed": ...}``); None: the one default of the
            CLI, the flow and this function, :data:`mmfeat.pipelines.training.run.DEFAULT_SEED` (2024),
            never the recommenders' own config default.
        split_seed: the seed of a random or cold split; None: ``DEFAULT_SEED`` too.
        **options: the rest of :func:`mmfeat.pipelines.training.run.run_training`'s options
            (``versus``, ``overrides``, ``grid``, ``split``, ``min_rating``, ``k_core``, ``store_root``,
            ``runs_dir``, ``data_root``).

    Returns:
        ``{"best", "runs", "records", "data", "versus"}``: the best run's id, every run's id, their
        records (config, split hash, feature versions, valid/test metrics at the best-valid epoch).

    Raises:
        TrainRequestError: an unknown model, role, hyper-parameter or feature version (checked before
            any data loads).

    Example:
        >>> import mmfeat                                               # doctest: +SKIP
        >>> out = mmfeat.train("microlens", model="FREEDOM",             # doctest: +SKIP
        ...                    features={"text": "title_minilm"}, overrides={"epochs": 5})
    """
    from mmfeat.pipelines.training.run import run_training  # Prefect-free

    return run_training(manifest, model=model, features=features, seed=seed, split_seed=split_seed, **options)
