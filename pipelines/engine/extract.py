"""Turning one manifest feature set into one store version, shard by shard.

This module is the extraction engine without Prefect: the flow in :mod:`mmfeat.pipelines.flows.extract_flow` wraps
each shard in a task (retries, UI) but the logic lives here, so a notebook, a test or a benchmark
runs the same code (:func:`run_feature_set`).

The life of a feature set (under the feature set's writer lock, see :class:`FeatureStore.lock`):

1. **plan** (:mod:`mmfeat.pipelines.engine.plan`): each item's input and content hash, or a ``read`` /
   ``parent`` error row with the reason.
2. **request key**: hash(kind, params, weights hash, featurizer code fingerprint, every input
   hash), computed before any model loads. A published version with this key and no retryable
   (``featurize``) error rows is a cache hit: nothing loads, nothing runs. Also before any model
   loads (:mod:`mmfeat.pipelines.engine.reuse`): another feature set's version of the same work
   (``work_key``: the request without where its inputs came from) becomes this feature set's version
   (rows copied, ``lineage.reused_from``), and a staged run with every shard done is published with
   the featurizer it recorded.
3. **shards**: items sorted by id, cut into ``shard_size`` chunks; each writes one Parquet part
   into ``_staging/<key>``. Finished parts without retryable errors are skipped on resume. Items
   whose input hash already has an ok value by the same featurizer (staged, or in a published
   version, newest first) are reused; equal inputs are computed once; error rows are recomputed.
4. **publish**: if the error fraction is within the manifest's threshold, checksum, name the
   version by its content and rename it into place; otherwise :class:`FeatureSetFailed` and
   nothing is published (the finished parts stay staged).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from mmfeat.featurizers.base import Featurizer, fingerprint_hash
from mmfeat.featurizers.fingerprinting import code_fingerprint
from mmfeat.pipelines.manifest import FeatureSetSpec, Manifest
from mmfeat.pipelines.engine.featurizer_choice import build_featurizer_for, fallback_spec  # noqa: F401  (re-exported)
from mmfeat.pipelines.engine.plan import PlannedInputs, plan_inputs, request_key, work_key  # noqa: F401  (plan_inputs re-exported)
from mmfeat.pipelines.engine.progress import ProgressFactory, progress_factory, track  # noqa: F401  (track re-exported)
from mmfeat.pipelines.engine.reuse import featurizer_record, find_equal_work, publish_reused, staged_featurizer
from mmfeat.pipelines.engine.shards import ShardWork
from mmfeat.pipelines.store.feature_store import FeatureStore, VersionWriter, row_schema, run_key

log = logging.getLogger("mmfeat.extract")

#: ``(shard index, rows of that shard done so far)``, called after every sub-batch of a shard.
ShardProgress = Callable[[int, int], None]

#: A sub-batch is this many of the featurizer's own batches (its ``batch_size``), at least
#: ``MIN_SUB_BATCH`` items: small enough for progress every few seconds inside a long shard, large
#: enough that the featurizer's own batching (length sorting, padding) is unchanged in effect
#: (bench/features/bench_foundation.py --parts text: same items/s as one call per shard).
SUB_BATCH_FACTOR = 4
MIN_SUB_BATCH = 32
DEFAULT_SUB_BATCH = 256


def sub_batch_size(featurizer: Featurizer) -> int:
    """Items per featurizer call inside a shard: a few of its own batches, or 256 without one."""
    batch = getattr(featurizer, "batch_size", None)
    if isinstance(batch, int) and batch > 0:
        return max(MIN_SUB_BATCH, SUB_BATCH_FACTOR * batch)
    return DEFAULT_SUB_BATCH


class FeatureSetFailed(RuntimeError):
    """Too many error rows: the version is not published (its finished parts stay staged)."""


@dataclass
class FeatureSetReport:
    feature_set: str
    version: str
    rows: int
    errors: int
    reused: int
    computed: int
    seconds: float
    cache_hit: bool
    featurizer: dict[str, Any]
    parents: dict[str, str]
    path: str
    error_examples: list[dict[str, str]]
    note: str = ""
    #: Media featurizers that decode ahead of their model: the model's computing share of its time
    #: (1.0: it never waited for a decode). None for the others and for cache hits.
    model_busy_fraction: float | None = None

    @property
    def items_per_s(self) -> float:
        return self.computed / self.seconds if self.seconds > 0 else 0.0


def full_fingerprint(featurizer: Featurizer) -> dict[str, Any]:
    """The featurizer's own fingerprint plus its code and library versions
    (:func:`mmfeat.featurizers.fingerprinting.code_fingerprint`). A wrapper that only observes calls
    (counting, timing) names the class whose code computes the values as ``code_owner``; a staged run's
    stand-in (:class:`~mmfeat.pipelines.engine.reuse.StagedFeaturizer`) gives the one it recorded."""
    recorded = getattr(featurizer, "recorded_fingerprint", None)
    if recorded is not None:
        return dict(recorded)
    owner = getattr(featurizer, "code_owner", None) or type(featurizer)
    return {**featurizer.fingerprint(), "code": code_fingerprint(owner)}


class FeatureSetJob:
    """One feature set's run: plan, shard, compute, publish. Prefect-free.

    ``key`` is the request key (:func:`mmfeat.pipelines.engine.plan.request_key`); without one (a featurizer
    that is not a registered kind) the key is derived from the built featurizer's fingerprint.
    Callers that may race other processes hold ``store.lock(dataset, spec.name)`` around the
    job (:func:`run_feature_set` does); :meth:`run_all` takes it itself.

    A shard's unique inputs go to the featurizer in sub-batches of ``sub_batch`` items
    (:func:`sub_batch_size` by default), and ``on_progress(shard, rows_done)`` is called after each,
    so a long shard shows progress; the values are the same as one call per shard.
    """

    def __init__(
        self,
        store: FeatureStore,
        dataset: str,
        spec: FeatureSetSpec,
        featurizer: Featurizer,
        planned: PlannedInputs,
        *,
        shard_size: int = 2048,
        lineage: dict[str, Any] | None = None,
        key: str | None = None,
        sub_batch: int | None = None,
        on_progress: ShardProgress | None = None,
        work: str | None = None,
    ) -> None:
        self.store, self.dataset, self.spec, self.featurizer, self.planned = store, dataset, spec, featurizer, planned
        self.work = work  # the work key (plan.work_key), recorded so other feature sets can reuse the rows
        self.shard_size = shard_size
        self.sub_batch = sub_batch or sub_batch_size(featurizer)
        self.on_progress = on_progress  # (shard index, rows of that shard done): after every sub-batch
        self.lineage = lineage or {}
        self.fingerprint = full_fingerprint(featurizer)
        self.fp_hash = fingerprint_hash(self.fingerprint)
        self.key = key or run_key(self.fp_hash, planned.keyed())
        out = featurizer.output
        self.schema = row_schema(out.kind, out.dim, out.dtype)
        n = len(planned.item_ids)
        self.shards = [range(s, min(s + shard_size, n)) for s in range(0, n, shard_size)]
        self._writer: VersionWriter | None = None
        self.refresh()
        self._reuse: dict[str, Any] | None = None
        self.reused = 0
        self.computed = 0
        self.seconds = 0.0
        self.model_s = self.wait_s = 0.0  # media featurizers: model computing vs waiting for decodes

    def refresh(self) -> None:
        """Look for a finished version of this request again (another run may have published it
        while this one waited for the lock)."""
        hit = self.store.complete_version(self.dataset, self.spec.name, self.key)
        self.cache_hit = hit is not None
        self.version = hit["version"] if hit else ""  # known once published: ids name content

    @property
    def writer(self) -> VersionWriter | None:
        if self.cache_hit:
            return None
        if self._writer is None:
            self._writer = self.store.writer(self.dataset, self.spec.name, self.key, {
                "shard_size": self.shard_size, "items": len(self.planned.item_ids), "fingerprint": self.fp_hash,
                # publishing a fully staged run needs no featurizer (reuse.staged_featurizer)
                "featurizer": featurizer_record(self.featurizer, self.fingerprint)})
        return self._writer

    def pending_shards(self) -> list[int]:
        if self.writer is None:
            return []
        done = self.writer.done_parts()
        return [i for i in range(len(self.shards)) if i not in done]

    def _reusable(self) -> dict[str, Any]:
        """Ok values for this run's input hashes (one filtered lookup per run, not per shard)."""
        if self._reuse is None:
            assert self.writer is not None
            done = self.writer.done_parts()
            needed = {self.planned.source_hashes[i] for s, rows in enumerate(self.shards) if s not in done
                      for i in rows if self.planned.pre_errors[i] is None}
            self._reuse = self.store.reusable_rows(self.dataset, self.spec.name, self.fp_hash, needed,
                                                   extra_parts=self.writer.staged_parts()) if needed else {}
        return self._reuse

    def prepare_shard(self, index: int) -> "ShardWork":
        """One shard's rows as this run sees them: input errors, values reused from earlier ok rows,
        and the distinct inputs left to compute (done in the process holding the store lock; the
        compute may then run anywhere, see :mod:`mmfeat.pipelines.engine.runners`)."""
        rows = self.shards[index]
        p = self.planned
        reuse = self._reusable()
        work = ShardWork(index=index, item_ids=[p.item_ids[i] for i in rows],
                         source_hashes=[p.source_hashes[i] for i in rows], values=[None] * len(rows),
                         errors=[None] * len(rows), stages=[None] * len(rows), todo={}, inputs={})
        for local, i in enumerate(rows):
            if p.pre_errors[i] is not None:
                work.stages[local], work.errors[local] = p.pre_errors[i]
                continue
            h = p.source_hashes[i]
            if h in reuse:
                work.values[local] = reuse[h]
                work.reused += 1
            else:
                work.todo.setdefault(h, []).append(local)  # type: ignore[arg-type]
                work.inputs.setdefault(h, p.inputs[i])  # type: ignore[arg-type]
        return work

    def compute_shard(self, index: int) -> dict[str, Any]:
        """Featurize one shard in this process (reusing earlier ok values, computing equal inputs once)
        and stage its part."""
        assert self.writer is not None, "cache hit: nothing to compute"
        t0 = time.perf_counter()
        work = self.prepare_shard(index)
        table, stats = work.compute(self.featurizer, self.schema, self.sub_batch,
                                    on_progress=lambda done: self._report_progress(index, done))
        self.writer.write_part(index, table)
        self.add_shard_stats(stats, time.perf_counter() - t0)
        return stats

    def add_shard_stats(self, stats: dict[str, Any], seconds: float) -> None:
        """Count a finished shard (computed here or by a worker) in the run's report."""
        self.reused += stats["reused"]
        self.computed += stats["computed"]
        self.seconds += seconds
        self.model_s += stats.get("model_s", 0.0)
        self.wait_s += stats.get("wait_s", 0.0)

    @property
    def model_busy_fraction(self) -> float | None:
        """Share of the model's time spent computing rather than waiting for decoded inputs (None for
        featurizers without a decode pipeline, or before anything was computed)."""
        total = self.model_s + self.wait_s
        return self.model_s / total if total > 0 else None

    def _report_progress(self, index: int, done: int) -> None:
        if self.on_progress is not None:
            self.on_progress(index, done)

    def done_rows(self) -> int:
        """Rows in shards already staged (a resumed run starts its progress there)."""
        if self.writer is None:
            return len(self.planned.item_ids)
        finished = self.writer.done_parts()
        return sum(len(rows) for i, rows in enumerate(self.shards) if i in finished)

    def finish(self, failure_threshold: float, aliases: Sequence[str] = ("latest",)) -> FeatureSetReport:
        """Publish if the error fraction is within the threshold; report either way."""
        if self.cache_hit:
            for alias in aliases:
                self.store.set_alias(self.dataset, self.spec.name, alias, self.version)
            m = self.store.manifest(self.dataset, self.spec.name, self.version)
            return self._report(m["rows"], m["errors"], cache_hit=True)
        assert self.writer is not None
        pending = self.pending_shards()
        if pending:
            self.refresh()  # an object store has no cross-process lock: another run may have published it
            if self.cache_hit:
                return self.finish(failure_threshold, aliases)
            raise RuntimeError(f"{self.spec.name}: shards {pending} not computed; cannot publish")
        status = pa.concat_arrays(
            [self.writer.read_part(i, columns=["status"]).column("status").combine_chunks()
             for i in range(len(self.shards))]
        ) if self.shards else pa.array([], pa.string())
        n = len(status)
        n_err = int(pc.sum(pc.equal(status, "error")).as_py() or 0) if n else 0
        if n and n_err / n > failure_threshold:
            examples = self.error_examples(5)
            raise FeatureSetFailed(
                f"{self.spec.name}: {n_err}/{n} items failed ({n_err / n:.0%} > failure_threshold "
                f"{failure_threshold:.0%}); nothing published. First errors: "
                + "; ".join(f"{e['item_id']} [{e['stage']}] {e['error']}" for e in examples)
            )
        out = self.featurizer.output
        final = self.writer.publish(
            {
                "schema": self.schema.to_string(show_schema_metadata=False),
                "output": {"kind": out.kind, "dim": out.dim, "dtype": out.dtype},
                "featurizer": {"name": self.featurizer.name, "kind": self.spec.kind,
                               "fingerprint": self.fingerprint, "fingerprint_hash": self.fp_hash},
                "input": self.spec.input.model_dump(by_alias=True, exclude_none=True),
                "lineage": {**self.lineage, "parents": self.planned.parents},
                "shard_size": self.shard_size,
                **({"work_key": self.work} if self.work else {}),
            },
            aliases=aliases,
        )
        self.version = final.name
        return self._report(n, n_err, cache_hit=False)

    def error_examples(self, limit: int) -> list[dict[str, str]]:
        """A few error rows (item, stage, reason), from the staged or published parts."""
        columns = ["item_id", "status", "stage", "error"]
        if self._writer is not None and self._writer.staged_parts():
            parts: Iterator[pa.Table] = self._writer.iter_parts(columns)
        elif self.version:
            parts = self.store.version_part_tables(self.dataset, self.spec.name, self.version, columns=columns)
        else:
            parts = iter(())
        out: list[dict[str, str]] = []
        for t in parts:
            t = t.filter(pc.equal(t.column("status"), "error"))
            out += [{"item_id": r["item_id"], "stage": r["stage"], "error": r["error"]} for r in t.to_pylist()]
            if len(out) >= limit:
                break
        return out[:limit]

    def _report(self, rows: int, errors: int, cache_hit: bool) -> FeatureSetReport:
        return FeatureSetReport(
            feature_set=self.spec.name, version=self.version, rows=rows, errors=errors, reused=self.reused,
            computed=self.computed, seconds=self.seconds, cache_hit=cache_hit,
            featurizer={"name": self.featurizer.name, "fingerprint_hash": self.fp_hash,
                        "backbone": self.fingerprint.get("backbone")},
            parents=self.planned.parents,
            path=str(self.store.feature_dir(self.dataset, self.spec.name) / self.version),
            error_examples=self.error_examples(5) if errors else [],
            model_busy_fraction=self.model_busy_fraction,
        )

    def run_all(self, failure_threshold: float, progress: bool = True,
                aliases: Sequence[str] = ("latest",)) -> FeatureSetReport:
        """Run every pending shard in this process, then publish (what the flow does, minus Prefect);
        ``progress`` shows a bar of items done."""
        with self.store.lock(self.dataset, self.spec.name):
            if self._writer is None:
                self.refresh()
            pending = self.pending_shards()
            with track(self, progress_factory("bar") if progress and pending else None):
                _run_in_process(self, pending)
            return self.finish(failure_threshold, aliases)


def cached_report(store: FeatureStore, dataset: str, spec: FeatureSetSpec, m: dict[str, Any],
                  parents: dict[str, str], aliases: Sequence[str], note: str = "") -> FeatureSetReport:
    """The report of a cache hit found before any featurizer was built."""
    for alias in aliases:
        store.set_alias(dataset, spec.name, alias, m["version"])
    fz = m["featurizer"]
    return FeatureSetReport(
        feature_set=spec.name, version=m["version"], rows=m["rows"], errors=m["errors"], reused=0, computed=0,
        seconds=0.0, cache_hit=True,
        featurizer={"name": fz["name"], "fingerprint_hash": fz["fingerprint_hash"],
                    "backbone": fz["fingerprint"].get("backbone")},
        parents=parents, path=str(store.feature_dir(dataset, spec.name) / m["version"]), error_examples=[], note=note,
    )


ShardRunner = Callable[[FeatureSetJob, list[int]], None]


def _run_in_process(job: FeatureSetJob, pending: list[int]) -> None:
    for i in pending:
        job.compute_shard(i)


def run_feature_set(
    store: FeatureStore,
    manifest: Manifest,
    spec: FeatureSetSpec,
    items: pa.Table,
    *,
    parent_versions: dict[str, str] | None = None,
    lineage: dict[str, Any] | None = None,
    aliases: Sequence[str] = ("latest",),
    run_shards: ShardRunner = _run_in_process,
    progress: ProgressFactory | None = None,
) -> FeatureSetReport:
    """Build (or find) one feature set's version, holding its writer lock throughout.

    Args:
        store: the feature store.
        manifest: the manifest (dataset, data root, shard size, failure threshold).
        spec: the feature set.
        items: the source's items table.
        parent_versions: versions built earlier in this run, for chained inputs.
        lineage: what to record about the source.
        aliases: aliases for the result (``latest`` and the run's tag).
        run_shards: how pending shards run (in process by default; the flow submits Prefect tasks).
        progress: what reports items done / total and items/s while shards run
            (:func:`mmfeat.pipelines.engine.progress.progress_factory`); None reports nothing.

    Returns:
        The report (cache hit or the newly published version).

    Raises:
        WeightsUnavailable: neither the primary nor the fallback can load.
        FeatureSetFailed: too many error rows; nothing published.

    Example:
        >>> from mmfeat.pipelines.manifest import load_manifest                        # doctest: +SKIP
        >>> m = load_manifest("microlens"); items, _, _ = load_items(m)         # doctest: +SKIP
        >>> run_feature_set(FeatureStore("store"), m, m.feature_set("title_minilm"), items).version  # doctest: +SKIP
        'v-...'
    """
    from mmfeat.featurizers.registry import Unavailable

    dataset = manifest.store_dataset
    plan = dict(store=store, dataset=dataset, parent_versions=parent_versions,
                data_root=manifest.resolved_data_root())
    with store.lock(dataset, spec.name):
        # Which spec would run (the primary unless its weights are missing), and is it done already?
        for candidate in (spec, fallback_spec(spec)):
            if candidate is None:
                continue
            try:
                planned = plan_inputs(items, candidate, **plan)
                key = request_key(candidate, planned)
            except Unavailable:
                continue
            hit = store.complete_version(dataset, spec.name, key) if key else None
            if hit is not None:
                log.info("%s: version %s already published by the same request (cache hit, no model loaded)",
                         spec.name, hit["version"])
                note = "" if candidate is spec else f"fallback {candidate.kind} (primary weights unavailable)"
                return cached_report(store, dataset, spec, hit, planned.parents, aliases, note)
            break
        else:
            candidate = None  # weights for neither: build_featurizer_for below raises why
        if candidate is not None and key:
            done = _done_without_featurizer(store, manifest, spec, candidate, planned, key, lineage, aliases)
            if done is not None:
                return done
        log.info("%s: loading the %s featurizer (%s)", spec.name, spec.kind,
                 spec.params.get("backbone") or "default backbone")
        featurizer, effective, note = build_featurizer_for(spec)
        planned = plan_inputs(items, effective, **plan)
        job = FeatureSetJob(store, dataset, effective, featurizer, planned, shard_size=manifest.shard_size,
                            lineage=lineage, key=request_key(effective, planned), work=work_key(effective, planned))
        pending = job.pending_shards()
        if not job.cache_hit and len(pending) < len(job.shards):
            log.info("%s: resuming run %s, %d of %d shards left", spec.name, job.key, len(pending), len(job.shards))
        with track(job, progress if pending else None):
            run_shards(job, pending)
        report = job.finish(manifest.failure_threshold, aliases=aliases)
        report.note = note
        return report


def _done_without_featurizer(store: FeatureStore, manifest: Manifest, spec: FeatureSetSpec,
                             candidate: FeatureSetSpec, planned: PlannedInputs, key: str,
                             lineage: dict[str, Any] | None, aliases: Sequence[str]) -> FeatureSetReport | None:
    """The report of work found done elsewhere, before any model loads (the caller holds the lock), or None.

    First another feature set's published version of the same work (:func:`~mmfeat.pipelines.engine.reuse.
    find_equal_work`): its rows become this feature set's version. Then a staged run of this request with
    every shard done: it is published with the featurizer it recorded. ``candidate`` is the spec that would
    run (``spec`` or its fallback), ``key`` its request key.
    """
    from mmfeat.pipelines.store.verify import StoreError

    dataset = manifest.store_dataset
    fallback = "" if candidate is spec else f"fallback {candidate.kind} (primary weights unavailable); "
    work = work_key(candidate, planned)
    source = find_equal_work(store, dataset, work) if work else None
    if source is not None:
        try:
            m = publish_reused(store, dataset, candidate, source, key=key, work=work, parents=planned.parents,
                               lineage=lineage, aliases=aliases)
        except StoreError as exc:  # a damaged source: compute instead, and say so
            log.warning("%s: cannot reuse the rows of %s/%s (%s); computing them", spec.name,
                        source["feature_set"], source["version"], exc)
        else:
            note = f"{fallback}rows reused from {source['feature_set']}/{source['version']} (same featurizer and inputs)"
            report = cached_report(store, dataset, spec, m, planned.parents, (), note)
            report.cache_hit, report.reused = False, m["rows"] - m["errors"]
            return report
    staged = staged_featurizer(store, dataset, spec.name, key)
    if staged is None:
        return None
    job = FeatureSetJob(store, dataset, candidate, staged, planned, shard_size=manifest.shard_size,
                        lineage=lineage, key=key, work=work)
    if job.cache_hit or job.pending_shards():
        return None
    log.info("%s: every shard of run %s is staged; publishing it without loading the featurizer", spec.name, key)
    report = job.finish(manifest.failure_threshold, aliases=aliases)
    report.note = fallback.rstrip("; ")
    return report


def load_items(manifest: Manifest) -> tuple[pa.Table, pa.Table, str]:
    """The manifest's source as normalized (items, interactions, source fingerprint)."""
    from mmfeat.pipelines.sources import load_source

    tables = load_source(manifest.source.kind, manifest.source_root(), **manifest.source.options)
    items = tables.items.sort_by("item_id")
    if manifest.limit_items:
        items = items.slice(0, manifest.limit_items)
    return items, tables.interactions, tables.fingerprint()


SourceLoader = Callable[[Manifest], "tuple[pa.Table, pa.Table, str]"]


def _wanted(manifest: Manifest, feature_sets: Sequence[str] | None) -> list[str]:
    """The feature sets to run (default all), checked against the manifest."""
    names = [s.name for s in manifest.feature_sets]
    wanted = list(feature_sets or names)
    unknown = sorted(set(wanted) - set(names))
    if unknown:
        raise ValueError(f"unknown feature sets {unknown}; manifest {manifest.name} has {names}")
    return wanted


def extract_manifest(
    manifest: Manifest,
    *,
    store: FeatureStore,
    feature_sets: Sequence[str] | None = None,
    tag: str | None = None,
    load_source: SourceLoader = load_items,
    run_shards: ShardRunner = _run_in_process,
    progress: ProgressFactory | None = None,
    logger: logging.Logger | logging.LoggerAdapter = log,
) -> list[FeatureSetReport]:
    """Build (or reuse) one store version per feature set of a manifest, in manifest order.

    This is the whole extraction without Prefect: the ``extract-features`` flow calls it with its
    task hooks (``load_source``, ``run_shards``) and its run logger, a notebook calls it as is.
    A chained feature set reads the version its parent got in this run; an ``optional`` one is
    skipped with a warning when its weights or extra are missing or its parent was skipped.

    Args:
        manifest: the loaded manifest (:func:`mmfeat.pipelines.manifest.load_manifest`).
        store: the feature store to write into.
        feature_sets: the subset to run (default all); manifest order is kept.
        tag: an alias for the new versions besides ``latest``.
        load_source: reads the manifest's source as (items, interactions, source fingerprint).
        run_shards: runs a job's pending shards (in process by default).
        progress: reports items done / total and items/s per feature set
            (:func:`mmfeat.pipelines.engine.progress.progress_factory`: ``"bar"`` or ``"log"``); None: silent.
        logger: where skips and per-feature-set results are logged.

    Returns:
        One report per feature set built or found (cache hits included), in manifest order.

    Raises:
        ValueError: an unknown feature set name.
        RuntimeError: a chained feature set whose parent was wanted but not built.
        WeightsUnavailable: a non-optional feature set cannot load its weights (nor its fallback).
        FeatureSetFailed: too many error rows in a feature set; it publishes nothing and the run stops.

    Example:
        >>> from mmfeat.pipelines.manifest import load_manifest                          # doctest: +SKIP
        >>> from mmfeat.pipelines.engine.progress import progress_factory                       # doctest: +SKIP
        >>> reports = extract_manifest(load_manifest("microlens"), store=FeatureStore("store"),
        ...                            feature_sets=["title_minilm"], progress=progress_factory("bar"))  # doctest: +SKIP
        >>> reports[0].feature_set, reports[0].rows                                      # doctest: +SKIP
        ('title_minilm', 40)
    """
    from mmfeat.featurizers.registry import Unavailable
    from mmfeat.pipelines.engine.codes_job import is_set_level, run_codes_set

    wanted = _wanted(manifest, feature_sets)
    items, interactions, source_fp = load_source(manifest)
    aliases = ["latest"] + ([tag] if tag else [])
    lineage = {"manifest": manifest.name, "source": {"kind": manifest.source.kind,
                                                     "root": str(manifest.source_root() or "built-in"),
                                                     "fingerprint": source_fp}}
    reports: list[FeatureSetReport] = []
    produced: dict[str, str] = {}
    for spec in manifest.feature_sets:
        if spec.name not in wanted:
            continue
        parent = spec.parent
        if parent and parent not in produced and parent in wanted:
            if spec.optional:
                logger.warning("skipping optional feature set %s: its parent %s was not built", spec.name, parent)
                continue
            raise RuntimeError(f"{spec.name} reads {parent}, which was not built in this run")
        try:
            if is_set_level(spec.kind):  # fitted to the whole item set at once (semantic IDs)
                report = run_codes_set(store, manifest, spec, items, interactions, parent_versions=produced,
                                       lineage=lineage, aliases=aliases)
            else:
                report = run_feature_set(store, manifest, spec, items, parent_versions=produced, lineage=lineage,
                                         aliases=aliases, run_shards=run_shards, progress=progress)
        except Unavailable as exc:  # only missing weights or a missing extra make "optional" skip
            if not spec.optional:
                raise
            logger.warning("skipping optional feature set %s: %s", spec.name, exc)
            continue
        produced[spec.name] = report.version
        reports.append(report)
        busy = report.model_busy_fraction
        logger.info("%s -> %s (%d rows, %d errors, %d reused, %d computed%s%s)", spec.name, report.version,
                    report.rows, report.errors, report.reused, report.computed,
                    ", cache hit" if report.cache_hit else "",
                    f", model busy {busy:.0%} of its time (the rest waiting for decodes)" if busy is not None else "")
    return reports
