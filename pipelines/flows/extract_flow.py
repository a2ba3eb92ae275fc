"""Prefect flows. Thin on purpose: the work is in :mod:`mmfeat.pipelines.engine.extract`
(:func:`~mmfeat.pipelines.engine.extract.extract_manifest`); here loading the source and each shard become
tasks (retries, logs, UI), progress and the engine's own log lines go to the run logger, each feature
set's progress is also a Prefect progress artifact (:class:`ProgressArtifactSink`: the UI's bar, updated
as items complete), and each run leaves a markdown artifact with its numbers.

Deployments (served by :mod:`mmfeat.pipelines.flows.deployments`): ``extract-features/microlens`` and
``extract-features/movielens-100k``.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import asdict
from typing import Any, Callable

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE

from mmfeat.pipelines.engine.extract import FeatureSetJob, FeatureSetReport, extract_manifest, load_items
from mmfeat.pipelines.manifest import RunnerSpec, load_manifest
from mmfeat.pipelines.engine.progress import (ProgressMode, SinkFactory, Snapshot, forward_logs, progress_factory,
                                              quiet_library_bars)
from mmfeat.pipelines.engine.runners import (
    FeaturizerRecipe,
    RemoteShard,
    compute_remote_shard,
    in_flight,
    local_workers,
    resolve_runner,
    submit_options,
    task_runner_for,
    worker_threads,
    workers_reach_this_api,
)
from mmfeat.pipelines.store.feature_store import FeatureStore, default_store_root


log = logging.getLogger("mmfeat.flows")

#: Seconds between two updates of a progress artifact (each is one API call; the log has the detail).
ARTIFACT_INTERVAL_S = 5.0


def artifact_key(*parts: str) -> str:
    """A Prefect artifact key from names: lowercase letters, digits and dashes only."""
    return re.sub(r"[^a-z0-9]+", "-", "-".join(parts).lower()).strip("-")


class ProgressArtifactSink:
    """One feature set's progress as a Prefect progress artifact (the flow run's Artifacts tab shows a bar).

    Created when the feature set starts (inside the flow run, so the artifact belongs to it), then updated
    with the percentage done and the progress line as description, at most once every ``min_interval``
    seconds (a sub-batch or generation batch can report many times a second); the heartbeat sends a
    throttled-away update late, and the last one is always sent. Prefect errors never stop the run: the
    first one is logged as a warning and the sink stops updating.
    """

    def __init__(self, key: str, feature_set: str, total: int, initial: int,
                 min_interval: float = ARTIFACT_INTERVAL_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.total, self.min_interval, self.clock = total, min_interval, clock
        self.sent: tuple[int, str] | None = None
        self.last = clock()
        self.artifact_id: Any = None
        self._lock = threading.Lock()  # the compute thread updates, the heartbeat thread beats
        try:
            self.artifact_id = create_progress_artifact(
                progress=self._percent(initial), key=key, description=f"{feature_set}: starting, {initial:,}/{total:,} items done")
        except Exception as exc:  # noqa: BLE001 - progress must never sink a run; said once
            log.warning("%s: no progress artifact (%s: %s); progress is in the run log", feature_set,
                        type(exc).__name__, exc)

    def _percent(self, done: int) -> float:
        return 100.0 * done / self.total if self.total else 100.0

    def _send(self, snap: Snapshot, description: str) -> None:
        with self._lock:
            if self.artifact_id is None or self.sent == (snap.done, description):
                return
            try:
                update_progress_artifact(self.artifact_id, progress=self._percent(snap.done), description=description)
            except Exception as exc:  # noqa: BLE001 - as in __init__
                log.warning("%s: progress artifact update failed (%s: %s); no more updates", snap.feature_set,
                            type(exc).__name__, exc)
                self.artifact_id = None
                return
            self.sent, self.last = (snap.done, description), self.clock()

    def update(self, snap: Snapshot) -> None:
        if self.clock() - self.last >= self.min_interval:
            self._send(snap, snap.line())

    def beat(self, snap: Snapshot) -> None:
        """Heartbeat: send what throttling held back (nothing when it is already sent)."""
        if self.sent is None or self.sent[0] != snap.done:
            self._send(snap, snap.line())

    def close(self, snap: Snapshot, ok: bool) -> None:
        self._send(snap, f"{snap.line()} ({'finished' if ok else 'stopped'} after {snap.elapsed:.1f} s)")


def artifact_sinks(dataset: str) -> SinkFactory:
    """The ``also=`` sink factory of :func:`~mmfeat.pipelines.engine.progress.progress_factory`: a progress
    artifact per feature set, keyed ``progress-<dataset>-<feature set>``."""
    def make(feature_set: str, total: int, initial: int) -> ProgressArtifactSink:
        return ProgressArtifactSink(artifact_key("progress", dataset, feature_set), feature_set, total, initial)

    return make


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


@task(name="featurize-shard", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2,
      task_run_name="{shard.feature_set}-shard-{shard.work.index}")
def featurize_remote_shard(shard: RemoteShard) -> dict[str, Any]:
    """One shard on a Dask or Ray worker (:func:`mmfeat.pipelines.engine.runners.compute_remote_shard`)."""
    stats = compute_remote_shard(shard)
    get_run_logger().info("%s shard %d on %s: %s", shard.feature_set, shard.work.index, stats["worker"],
                          {k: stats[k] for k in ("rows", "errors", "reused", "computed")})
    return stats


def _artifact_markdown(dataset: str, reports: list[FeatureSetReport], store: FeatureStore) -> str:
    def busy(r: FeatureSetReport) -> str:
        return "-" if r.model_busy_fraction is None else f"{r.model_busy_fraction:.0%}"

    lines = [
        f"## mmfeat extraction: `{dataset}`",
        f"store: `{store.root}`",
        "",
        "| feature set | version | rows | errors | reused | computed | items/s | model busy | cache hit | featurizer "
        "| parents |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|---|---|",
    ]
    for r in reports:
        parents = ", ".join(f"{k}@{v}" for k, v in r.parents.items()) or "-"
        lines.append(
            f"| {r.feature_set} | `{r.version}` | {r.rows} | {r.errors} | {r.reused} | {r.computed} | "
            f"{r.items_per_s:.1f} | {busy(r)} | {'yes' if r.cache_hit else 'no'} | {r.featurizer['name']} | {parents} |"
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


class RemoteShards:
    """Runs a job's pending shards as ``featurize-shard`` tasks on the flow's Dask/Ray task runner.

    At most :func:`~mmfeat.pipelines.engine.runners.in_flight` shards are submitted at once (the driver
    prepares a shard's payload only when a slot frees up). A shard whose task fails for good (after
    Prefect's retries, and the cluster's own rescheduling of a killed worker's task) does not stop the
    others: every shard that can finish is staged, then the run fails naming the shards left, and the
    next run resumes from the staged parts.
    """

    def __init__(self, spec: RunnerSpec) -> None:
        self.spec = spec
        self.workers: set[str] = set()
        self.featurizer_loads = 0

    def __call__(self, job: FeatureSetJob, pending: list[int]) -> None:
        from prefect.futures import as_completed

        assert job.writer is not None
        recipe = FeaturizerRecipe(job.spec.kind, dict(job.spec.params), job.fp_hash)
        store_root = job.store.uri
        threads = worker_threads(self.spec)
        todo = list(pending)
        running: dict[Any, int] = {}
        failed: dict[int, BaseException] = {}
        while todo or running:
            with submit_options(self.spec):
                while todo and len(running) < in_flight(self.spec):
                    i = todo.pop(0)
                    shard = RemoteShard(job.prepare_shard(i), recipe, store_root, job.dataset, job.spec.name,
                                        job.key, job.schema, job.sub_batch, threads)
                    running[featurize_remote_shard.submit(shard)] = i
            future = next(iter(as_completed(list(running))))
            i = running.pop(future)
            try:
                stats = future.result()
            except BaseException as exc:  # noqa: BLE001  (a task's final failure; KeyboardInterrupt re-raised below)
                if isinstance(exc, KeyboardInterrupt):
                    raise
                failed[i] = exc
                continue
            job.writer.mark_written([i])
            job.add_shard_stats(stats, stats["seconds"])
            self.workers.add(stats["worker"])
            self.featurizer_loads += bool(stats["built_featurizer"])
            if job.on_progress is not None:
                job.on_progress(i, stats["rows"])
        if failed:
            first = next(iter(failed.values()))
            raise RuntimeError(
                f"{job.spec.name}: shards {sorted(failed)} failed on the {self.spec.kind} workers "
                f"({type(first).__name__}: {first}); the other shards are staged, re-run to resume from them")


def _extract(m: Any, store: FeatureStore, feature_sets: list[str] | None, tag: str | None,
             progress: ProgressMode, run_shards: Any) -> list[FeatureSetReport]:
    logger = get_run_logger()
    tracking = progress_factory(progress, logger, also=[artifact_sinks(m.store_dataset)])
    with forward_logs(logger):  # the engine's cache-hit / resume / lock-wait / reuse lines, in the run's log
        return extract_manifest(m, store=store, feature_sets=feature_sets, tag=tag, load_source=load_source_task,
                                run_shards=run_shards, progress=tracking, logger=logger)


@flow(name="extract-shards", log_prints=True)
def extract_on_workers(manifest: str, runner: dict[str, Any], feature_sets: list[str] | None = None,
                       store_root: str | None = None, tag: str | None = None, data_root: str | None = None,
                       progress: ProgressMode = "log") -> list[dict[str, Any]]:
    """The extraction with its shards on the Dask/Ray task runner this subflow was given
    (:func:`extract_features` starts it with ``with_options(task_runner=...)``)."""
    spec = RunnerSpec(**runner)
    m = load_manifest(manifest, data_root=data_root)
    store = FeatureStore(store_root or default_store_root())
    remote = RemoteShards(spec)
    reports = _extract(m, store, feature_sets, tag, progress, remote)
    if remote.workers:
        get_run_logger().info("%s runner: shards ran on %d workers (%s); models loaded %d times",
                              spec.kind, len(remote.workers), ", ".join(sorted(remote.workers)),
                              remote.featurizer_loads)
    return [asdict(r) for r in reports]


def _current_api_url() -> str | None:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return str(client.api_url)


@flow(name="extract-features", log_prints=True)
def extract_features(
    manifest: str = "microlens",
    feature_sets: list[str] | None = None,
    store_root: str | None = None,
    tag: str | None = None,
    data_root: str | None = None,
    progress: ProgressMode = "log",
    runner: str | None = None,
    runner_address: str | None = None,
    workers: int | None = None,
) -> dict[str, Any]:
    """Build (or reuse) one store version per feature set of a manifest.

    Parameters: ``manifest`` (a name in manifests/ or a path), ``feature_sets`` (subset to run, in
    manifest order; default all), ``store_root`` (default ``$MMFEAT_STORE`` or ./store; a folder or an
    ``s3://bucket/prefix`` URI), ``tag`` (an extra alias besides ``latest``), ``data_root`` (override,
    e.g. a real MicroLens download), ``progress``: ``log`` (items done / total and items/s as run-log
    lines every 10 s, the default for deployments), ``bar`` (a tqdm bar on the terminal, what
    ``mmfeat extract`` asks for), ``none``; with ``log`` or ``bar`` each feature set also gets a progress
    artifact ``progress-<dataset>-<feature set>`` (the UI's bar, updated at most every 5 s); ``runner`` (``in_process`` | ``dask`` | ``ray``, default the
    manifest's ``runner.kind``), ``runner_address`` (an existing cluster) and ``workers`` (size of a
    temporary local cluster) override the manifest's ``runner:``.
    """
    logger = get_run_logger()
    quiet_library_bars()  # "Loading weights" and friends: noise next to the run's own progress
    m = load_manifest(manifest, data_root=data_root)  # invalid manifest: fails here, nothing written
    spec = resolve_runner(m.runner, runner, runner_address, workers)
    store = FeatureStore(store_root or default_store_root())
    if spec.kind == "in_process":
        reports = _extract(m, store, feature_sets, tag, progress, _run_shards_as_tasks)
    else:
        logger.info("shards run on %s (%s)", spec.kind,
                    spec.address or f"a temporary local cluster of {local_workers(spec)} workers")
        with workers_reach_this_api(_current_api_url()):
            sub = extract_on_workers.with_options(task_runner=task_runner_for(spec),
                                                  flow_run_name=f"{m.name}-on-{spec.kind}")
            rows = sub(manifest=manifest, runner=spec.model_dump(exclude_unset=True) | {"kind": spec.kind},
                       feature_sets=feature_sets, store_root=store.uri, tag=tag, data_root=data_root,
                       progress=progress)
        reports = [FeatureSetReport(**r) for r in rows]
    create_markdown_artifact(
        key=f"extract-{m.store_dataset}".lower().replace("_", "-").replace(".", "-"),
        markdown=_artifact_markdown(m.store_dataset, reports, store),
        description=f"mmfeat extraction of {m.name}",
    )
    return {"dataset": m.store_dataset, "store": store.uri, "feature_sets": [asdict(r) for r in reports]}
