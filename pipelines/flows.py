"""Prefect flows. Thin on purpose: the work is in :mod:`mmfeat.pipelines.extract`; here each shard becomes
a task (retries, logs, UI) and each run leaves a markdown artifact with its numbers.

Deployments (served by :mod:`mmfeat.pipelines.deployments`): ``extract-features/microlens`` and
``extract-features/movielens-100k``.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from mmfeat.pipelines.extract import FeatureSetJob, FeatureSetReport, load_items, run_feature_set
from mmfeat.pipelines.manifest import load_manifest
from mmfeat.pipelines.store import FeatureStore, default_store_root

from mmfeat.featurizers.registry import Unavailable


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


@flow(name="extract-features", log_prints=True)
def extract_features(
    manifest: str = "microlens",
    feature_sets: list[str] | None = None,
    store_root: str | None = None,
    tag: str | None = None,
    data_root: str | None = None,
) -> dict[str, Any]:
    """Build (or reuse) one store version per feature set of a manifest.

    Parameters: ``manifest`` (a name in manifests/ or a path), ``feature_sets`` (subset to run, in
    manifest order; default all), ``store_root`` (default ``$MMFEAT_STORE`` or ./store), ``tag``
    (an extra alias besides ``latest``), ``data_root`` (override, e.g. a real MicroLens download).
    """
    logger = get_run_logger()
    m = load_manifest(manifest, data_root=data_root)  # invalid manifest: fails here, nothing written
    store = FeatureStore(store_root or default_store_root())
    wanted = feature_sets or [s.name for s in m.feature_sets]
    unknown = sorted(set(wanted) - {s.name for s in m.feature_sets})
    if unknown:
        raise ValueError(f"unknown feature sets {unknown}; manifest {m.name} has {[s.name for s in m.feature_sets]}")
    items, _interactions, source_fp = load_source_task(m)
    aliases = ["latest"] + ([tag] if tag else [])
    reports: list[FeatureSetReport] = []
    produced: dict[str, str] = {}
    lineage = {"manifest": m.name, "source": {"kind": m.source.kind, "root": str(m.source_root() or "built-in"),
                                              "fingerprint": source_fp}}

    def run_shards(job: FeatureSetJob, pending: list[int]) -> None:
        for i in pending:
            featurize_shard(job, i)

    for spec in m.feature_sets:
        if spec.name not in wanted:
            continue
        parent = spec.parent
        if parent and parent not in produced and parent in wanted:
            if spec.optional:
                logger.warning("skipping optional feature set %s: its parent %s was not built", spec.name, parent)
                continue
            raise RuntimeError(f"{spec.name} reads {parent}, which was not built in this run")
        try:
            report = run_feature_set(store, m, spec, items, parent_versions=produced, lineage=lineage,
                                     aliases=aliases, run_shards=run_shards)
        except Unavailable as exc:  # only missing weights or a missing extra make "optional" skip
            if not spec.optional:
                raise
            logger.warning("skipping optional feature set %s: %s", spec.name, exc)
            continue
        produced[spec.name] = report.version
        reports.append(report)
        logger.info("%s -> %s (%d rows, %d errors, %d reused, %d computed%s)", spec.name, report.version,
                    report.rows, report.errors, report.reused, report.computed,
                    ", cache hit" if report.cache_hit else "")
    create_markdown_artifact(
        key=f"extract-{m.store_dataset}".lower().replace("_", "-").replace(".", "-"),
        markdown=_artifact_markdown(m.store_dataset, reports, store),
        description=f"mmfeat extraction of {m.name}",
    )
    return {"dataset": m.store_dataset, "store": str(store.root), "feature_sets": [asdict(r) for r in reports]}
