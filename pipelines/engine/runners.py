"""Running a feature set's shards on Dask or Ray workers, through Prefect's task runners.

The engine (:mod:`mmfeat.pipelines.engine.extract`) stays where it is: the process that holds the feature set's
writer lock plans the run, decides what is reused, and publishes. Only the compute of a shard moves:
:meth:`FeatureSetJob.prepare_shard` gives a :class:`~mmfeat.pipelines.engine.extract.ShardWork` (plain data),
:func:`compute_remote_shard` runs it on a worker and stages its Parquet part in the store
(:meth:`FeatureStore.stage_part`), and the driver counts it. So the store's rules hold whoever writes
the parts: a version id names content, parts are staged atomically, a killed worker's shard is simply not
staged (Prefect and the cluster retry it; a re-run resumes from the staged parts), and nothing is
published until every shard is staged.

Models load once per worker process: :func:`worker_featurizer` keeps the featurizer built from a
:class:`FeaturizerRecipe` for the life of the process, and refuses to compute when the worker's
featurizer has a different fingerprint than the driver's (other code or weights on that machine would
otherwise put rows of another model into this version).

Which runner: ``runner:`` in the manifest (:class:`~mmfeat.pipelines.manifest.RunnerSpec`), overridden
by ``mmfeat extract --runner`` or the flow's ``runner`` parameter (:func:`resolve_runner`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Iterator

import pyarrow as pa

from mmfeat.pipelines.engine.shards import ShardWork
from mmfeat.pipelines.manifest import ManifestError, RunnerSpec

log = logging.getLogger("mmfeat.runners")

#: The optional extra each runner needs, and the module that tells whether it is installed.
RUNNER_EXTRAS = {"dask": ("prefect_dask", "dask"), "ray": ("prefect_ray", "ray")}
#: Shards in flight per worker: enough to keep a worker busy while the next shard's payload travels,
#: few enough that the driver never holds every shard's inputs at once.
IN_FLIGHT_PER_WORKER = 2
#: In-flight shards when the cluster's size is not known here (an existing cluster at an address).
DEFAULT_IN_FLIGHT = 8


@dataclass(frozen=True)
class FeaturizerRecipe:
    """How a worker builds the run's featurizer: its kind and params, and the fingerprint hash the
    driver's featurizer has (the worker's must be equal)."""

    kind: str
    params: dict[str, Any]
    fingerprint_hash: str


@dataclass
class RemoteShard:
    """Everything a worker needs for one shard: the work, the featurizer recipe, where to stage."""

    work: ShardWork
    recipe: FeaturizerRecipe
    store_root: str
    dataset: str
    feature_set: str
    key: str
    schema: pa.Schema
    sub_batch: int
    #: torch threads for this worker (cores / local workers), so two workers on one machine do not
    #: oversubscribe it; None leaves the worker's setting alone (an existing cluster).
    threads: int | None = None


_FEATURIZERS: dict[tuple[str, str, str], Any] = {}
_FEATURIZERS_GUARD = threading.Lock()


def worker_featurizer(recipe: FeaturizerRecipe) -> tuple[Any, bool]:
    """This process's featurizer for ``recipe`` (built on first use, then reused across shards).

    Returns:
        ``(featurizer, built_now)``.

    Raises:
        RuntimeError: the featurizer built here has another fingerprint than the driver's.
    """
    import json

    from mmfeat.featurizers.base import fingerprint_hash
    from mmfeat.featurizers.registry import build_featurizer
    from mmfeat.pipelines.engine.extract import full_fingerprint
    from mmfeat.pipelines.engine.progress import quiet_library_bars

    key = (recipe.kind, json.dumps(recipe.params, sort_keys=True, default=str), recipe.fingerprint_hash)
    with _FEATURIZERS_GUARD:
        if key in _FEATURIZERS:
            return _FEATURIZERS[key], False
        quiet_library_bars()  # a worker process: the flow's own call does not reach it
        featurizer = build_featurizer(recipe.kind, dict(recipe.params))
        got = fingerprint_hash(full_fingerprint(featurizer))
        if got != recipe.fingerprint_hash:
            raise RuntimeError(
                f"worker {socket.gethostname()}:{os.getpid()} built {recipe.kind} with fingerprint {got}, the run "
                f"has {recipe.fingerprint_hash}: the worker has other code, library versions or weights. Install "
                f"the same mmfeat environment on every worker")
        log.info("worker %s:%d loaded %s (%s)", socket.gethostname(), os.getpid(), featurizer.name, got[:12])
        _FEATURIZERS[key] = featurizer
        return featurizer, True


def compute_remote_shard(shard: RemoteShard) -> dict[str, Any]:
    """Compute one shard on this worker and stage its part in the store (what a Dask/Ray task runs).

    Args:
        shard: the shard's work, the featurizer recipe and the staging location.

    Returns:
        The shard's counts (``rows``, ``errors``, ``reused``, ``computed``) plus ``seconds`` (compute and
        staging), ``worker`` (host:pid) and ``built_featurizer`` (whether this call loaded the model).

    Raises:
        RuntimeError: the worker's featurizer fingerprint differs from the run's.

    Example:
        >>> stats = compute_remote_shard(shard)   # doctest: +SKIP  (normally submitted as a Prefect task)
        >>> stats["rows"], stats["worker"]        # doctest: +SKIP
        (2048, 'host:4242')
    """
    from mmfeat.pipelines.store.feature_store import FeatureStore

    t0 = time.perf_counter()
    if shard.threads is not None:
        import torch

        if torch.get_num_threads() != shard.threads:
            torch.set_num_threads(shard.threads)
    featurizer, built = worker_featurizer(shard.recipe)
    table, stats = shard.work.compute(featurizer, shard.schema, shard.sub_batch)
    FeatureStore(shard.store_root).stage_part(shard.dataset, shard.feature_set, shard.key, shard.work.index, table)
    return {**stats, "seconds": time.perf_counter() - t0, "worker": f"{socket.gethostname()}:{os.getpid()}",
            "built_featurizer": built}


def resolve_runner(base: RunnerSpec, kind: str | None = None, address: str | None = None,
                   workers: int | None = None) -> RunnerSpec:
    """The manifest's runner with the command line's overrides.

    A different ``kind`` starts from that kind's defaults (the manifest's settings were for another
    engine); ``address`` / ``workers`` replace the manifest's.

    Raises:
        ManifestError: the combination is invalid (e.g. ``workers`` with an ``address``).
    """
    from pydantic import ValidationError

    given = {k: v for k, v in (("address", address), ("workers", workers)) if v is not None}
    if kind is None or kind == base.kind:
        merged = {**base.model_dump(exclude_unset=True), "kind": base.kind, **given}
        if "address" in given:
            merged.pop("workers", None)
    else:
        merged = {"kind": kind, **given}
    try:
        return RunnerSpec(**merged)
    except ValidationError as exc:
        problems = "; ".join((f"{'.'.join(map(str, e['loc']))}: " if e["loc"] else "")
                             + e["msg"].removeprefix("Value error, ") for e in exc.errors())
        raise ManifestError(f"runner {merged}: {problems}") from None


def require_runner(spec: RunnerSpec) -> None:
    """Check that the runner's Prefect integration is installed (before anything starts).

    Raises:
        mmfeat.featurizers.registry.MissingDependency: naming the extra to install.
    """
    if spec.kind in RUNNER_EXTRAS:
        from mmfeat.featurizers.registry import require_extra

        module, extra = RUNNER_EXTRAS[spec.kind]
        require_extra(module, extra, f"the {spec.kind} runner")


def local_workers(spec: RunnerSpec) -> int | None:
    """Worker processes of the temporary local cluster this runner starts (None for an existing cluster)."""
    if spec.kind == "in_process" or spec.address:
        return None
    return spec.workers or os.cpu_count() or 1


def task_runner_for(spec: RunnerSpec) -> Any:
    """The Prefect task runner for ``spec`` (None for ``in_process``).

    Dask: ``DaskTaskRunner`` with a temporary ``distributed.LocalCluster`` of ``workers`` single-threaded
    worker processes (no dashboard), or the scheduler at ``address``. Ray: ``RayTaskRunner`` on a local
    instance with ``workers`` CPUs, or the cluster at ``address``.
    """
    require_runner(spec)
    if spec.kind == "dask":
        from prefect_dask import DaskTaskRunner

        if spec.address:
            return DaskTaskRunner(address=spec.address)
        return DaskTaskRunner(cluster_class="distributed.LocalCluster",
                              cluster_kwargs={"n_workers": local_workers(spec), "threads_per_worker": 1,
                                              "processes": True, "dashboard_address": None})
    if spec.kind == "ray":
        from prefect_ray import RayTaskRunner

        if spec.address:
            return RayTaskRunner(address=spec.address)
        return RayTaskRunner(init_kwargs={"num_cpus": local_workers(spec), "include_dashboard": False,
                                          "log_to_driver": True})
    return None


def worker_threads(spec: RunnerSpec) -> int | None:
    """torch threads per worker: the cores shared out among a local cluster's workers; for Ray, the
    task's ``num_cpus``; None (leave alone) for an existing Dask cluster."""
    if spec.kind == "ray" and spec.num_cpus:
        return max(1, int(spec.num_cpus))
    n = local_workers(spec)
    return max(1, (os.cpu_count() or 1) // n) if n else None


def in_flight(spec: RunnerSpec) -> int:
    """How many shards the driver keeps submitted at once."""
    n = local_workers(spec)
    return IN_FLIGHT_PER_WORKER * n if n else DEFAULT_IN_FLIGHT


def submit_options(spec: RunnerSpec) -> contextlib.AbstractContextManager:
    """Per-task resources for the submits inside the block (Ray's ``num_gpus`` / ``num_cpus``)."""
    if spec.kind == "ray" and (spec.num_gpus is not None or spec.num_cpus is not None):
        from prefect_ray.context import remote_options

        opts = {k: v for k, v in (("num_gpus", spec.num_gpus), ("num_cpus", spec.num_cpus)) if v is not None}
        return remote_options(**opts)
    return contextlib.nullcontext()


@contextlib.contextmanager
def workers_reach_this_api(api_url: str | None) -> Iterator[None]:
    """While the block runs, ``PREFECT_API_URL`` names the API this flow run reports to.

    Worker processes of a local cluster inherit this process's environment. Without the variable, each
    worker would start its own temporary Prefect server and report its task runs there (slow, and the
    runs never show up where the flow run is). Restored afterwards.
    """
    if not api_url:
        yield
        return
    old = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = api_url
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = old
