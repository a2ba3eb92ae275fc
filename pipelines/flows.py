"""Prefect flows. Thin on purpose: the work is in :mod:`mmfeat.pipelines.extract`
(:func:`~mmfeat.pipelines.extract.extract_manifest`); here loading the source and each shard become
tasks (retries, logs, UI), progress and the engine's own log lines go to the run logger, and each
run leaves a markdown artifact with its numbers.

Deployments (served by :mod:`mmfeat.pipelines.deployments`): ``extract-features/microlens`` and
``extract-features/movielens-100k``.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from mmfeat.pipelines.extract import FeatureSetJob, FeatureSetReport, extract_manifest, load_items
from mmfeat.pipelines.manifest import load_manifest
from mmfeat.pipelines.progress import ProgressMode, forward_logs, progress_factory, quiet_library_bars
from mmfeat.pipelines.store import FeatureStore, default_store_root


@task(name="load-source", cache_policy=NO_CACHE, retries=1)
def load_source_task(manifest):  # type: ignore[no-untyped-def]
    items, interactions, fp = load_items(manifest)
    get_run_logger().info("source %s: %d items, %d interactions (fingerprint %s)",
                          manifest.source.kind, items.num_rows, interactions.num_rows, fp[:12])
    return items, interactions, fp


@task(name="featurize-shard", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2,
      task_run_name="{job.spec.name}-shard-{index}")
def featurize_shard(job: FeatureSetJob, index: int) -> dict[str, int]:
    stats = job.compute_shard(index)
    get_run_logger().info("%s shard %d/%d: %s", job.spec.name, index + 1, len(job.shards), stats)
    return stats


def _artifact_markdown(dataset: str, reports: list[FeatureSetReport], store: FeatureStore) -> str:
    lines = [
        f"## mmfeat extraction: `{dataset}`",
        f"store: `{store.root}`",
        "",
        "| feature set | version | rows | errors | reused | computed | items/s | cache hit | featurizer | parents |",
        "|---|---|---:|---:|---:|---:|---:|---|---|---|",
    ]
    for r in reports:
        parents = ", ".join(f"{k}@{v}" for k, v in r.parents.items()) or "-"
        lines.append(
            f"| {r.feature_set} | `{r.version}` | {r.rows} | {r.errors} | {r.reused} | {r.computed} | "
            f"{r.items_per_s:.1f} | {'yes' if r.cache_hit else 'no'} | {r.featurizer['name']} | {parents} |"
        )
    notes = [f"- **{r.feature_set}**: {r.note}" for r in reports if r.note]
    errs = [f"- {r.feature_set} / {e['item_id']} [{e['stage']}]: {e['error']}" for r in reports for e in r.error_examples]
    if notes:
        lines += ["", "### Notes", *notes]
    if errs:
        lines += ["", "### Error rows (first few per feature set)", *errs]
    return "\n".join(lines)


def _run_shards_as_tasks(job: FeatureSetJob, pending: list[int]) -> None:
    """Each pending shard as a ``featurize-shard`` task run (retried by Prefect on failure)."""
    for i in pending:
        featurize_shard(job, i)


@flow(name="extract-features", log_prints=True)
def extract_features(
    manifest: str = "microlens",
    feature_sets: list[str] | None = None,
    store_root: str | None = None,
    tag: str | None = None,
    data_root: str | None = None,
    progress: ProgressMode = "log",
) -> dict[str, Any]:
    """Build (or reuse) one store version per feature set of a manifest.

    Parameters: ``manifest`` (a name in manifests/ or a path), ``feature_sets`` (subset to run, in
    manifest order; default all), ``store_root`` (default ``$MMFEAT_STORE`` or ./store), ``tag``
    (an extra alias besides ``latest``), ``data_root`` (override, e.g. a real MicroLens download),
    ``progress``: ``log`` (items done / total and items/s as run-log lines every 10 s, the default
    for deployments), ``bar`` (a tqdm bar on the terminal, what ``mmfeat extract`` asks for), ``none``.
    """
    logger = get_run_logger()
    quiet_library_bars()  # "Loading weights" and friends: noise next to the run's own progress
    m = load_manifest(manifest, data_root=data_root)  # invalid manifest: fails here, nothing written
    store = FeatureStore(store_root or default_store_root())
    with forward_logs(logger):  # the engine's cache-hit / resume / lock-wait lines, in the run's log
        reports = extract_manifest(m, store=store, feature_sets=feature_sets, tag=tag, load_source=load_source_task,
                                   run_shards=_run_shards_as_tasks, progress=progress_factory(progress, logger),
                                   logger=logger)
    create_markdown_artifact(
        key=f"extract-{m.store_dataset}".lower().replace("_", "-").replace(".", "-"),
        markdown=_artifact_markdown(m.store_dataset, reports, store),
        description=f"mmfeat extraction of {m.name}",
    )
    return {"dataset": m.store_dataset, "store": str(store.root), "feature_sets": [asdict(r) for r in reports]}
