"""Shards on Dask and Ray workers (Prefect task runners) give the version the in-process runner gives.

The engine tests start real clusters whose worker processes import torch and load MiniLM, so they are
marked slow (``pytest -m slow tests/test_runners.py``, about 6 minutes); the rules of the runner spec and
the CLI run in the default suite.

The movielens-100k text feature set (1,682 real MovieLens texts, real MiniLM) cut into small shards so
each worker gets several: the version id and every row must equal the in-process run's, each worker
loads the model once, and a worker killed with SIGKILL mid-run still ends in the identical version.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from pathlib import Path

import pytest
import yaml

from mmfeat.pipelines.manifest import ManifestError, RunnerSpec, load_manifest
from mmfeat.pipelines.engine.runners import resolve_runner
from mmfeat.pipelines.store.feature_store import FeatureStore

DATASET, FEATURE_SET = "movielens-100k", "text_minilm"


def small_shard_manifest(tmp_path: Path, shard_size: int = 256, runner: dict | None = None) -> str:
    """The movielens-100k manifest with small shards (and optionally a runner), as a file."""
    raw = yaml.safe_load(load_manifest("movielens-100k").path.read_text())
    raw["shard_size"] = shard_size
    raw["feature_sets"] = [fs for fs in raw["feature_sets"] if fs["name"] == FEATURE_SET]
    if runner is not None:
        raw["runner"] = runner
    path = tmp_path / "ml-small-shards.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def rows(store_root: Path, version: str):
    t = FeatureStore(store_root).read_table(DATASET, FEATURE_SET, version)
    return t.sort_by("item_id")


@pytest.fixture(scope="module")
def in_process(prefect_harness, tmp_path_factory):
    """The reference: the in-process runner's version (and its store)."""
    from mmfeat.pipelines.flows.extract_flow import extract_features

    root = tmp_path_factory.mktemp("in-process")
    manifest = small_shard_manifest(root)
    out = extract_features(manifest=manifest, store_root=str(root / "store"), progress="none")
    (rep,) = out["feature_sets"]
    assert rep["rows"] == 1682 and rep["errors"] == 0 and rep["computed"] == 1675  # 7 repeated texts
    return rep["version"], root / "store", manifest


# ------------------------------------------------------------------------------------------ the spec


def test_runner_spec_refuses_keys_that_would_be_ignored() -> None:
    with pytest.raises(ValueError, match="only apply to kind dask or ray"):
        RunnerSpec(kind="in_process", workers=2)
    with pytest.raises(ValueError, match="existing cluster"):
        RunnerSpec(kind="dask", address="tcp://127.0.0.1:8786", workers=2)
    with pytest.raises(ValueError, match="only apply to kind ray"):
        RunnerSpec(kind="dask", num_gpus=1)
    assert RunnerSpec(kind="ray", num_gpus=1).num_gpus == 1


def test_command_line_overrides_the_manifest_runner() -> None:
    manifest = RunnerSpec(kind="ray", num_gpus=1, workers=4)
    assert resolve_runner(manifest) == manifest
    assert resolve_runner(manifest, workers=2).workers == 2 and resolve_runner(manifest, workers=2).num_gpus == 1
    # another kind starts from its own defaults: Ray's num_gpus means nothing to Dask
    assert resolve_runner(manifest, "dask") == RunnerSpec(kind="dask")
    # an address replaces the local cluster's size
    assert resolve_runner(manifest, address="auto").workers is None
    with pytest.raises(ManifestError, match="only apply to kind dask or ray"):
        resolve_runner(RunnerSpec(), "in_process", workers=3)


def test_manifest_runner_block_is_validated(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="runner"):
        load_manifest(small_shard_manifest(tmp_path, runner={"kind": "dask", "num_gpus": 1}))
    with pytest.raises(ManifestError, match="runner"):
        load_manifest(small_shard_manifest(tmp_path, runner={"kind": "spark"}))
    m = load_manifest(small_shard_manifest(tmp_path, runner={"kind": "dask", "workers": 2}))
    assert m.runner == RunnerSpec(kind="dask", workers=2)


# ------------------------------------------------------------------------------------------ engines


def _loaded_models(caplog) -> tuple[int, int]:
    """(workers, model loads) from the run log's summary line."""
    import re

    for r in caplog.records:
        msg = r.getMessage()
        found = re.search(r"shards ran on (\d+) workers .* models loaded (\d+) times", msg)
        if found:
            return int(found.group(1)), int(found.group(2))
    raise AssertionError("no runner summary in the run log")


@pytest.mark.slow  # worker processes import torch and load MiniLM: ~100 s on 2 cores
@pytest.mark.parametrize("kind", ["dask", "ray"])
def test_workers_produce_the_in_process_version(in_process, tmp_path: Path, kind: str, caplog) -> None:
    from mmfeat.pipelines.flows.extract_flow import extract_features

    version, ref_root, manifest = in_process
    with caplog.at_level(logging.INFO):
        out = extract_features(manifest=manifest, store_root=str(tmp_path / "store"), progress="none",
                               runner=kind, workers=2)
    (rep,) = out["feature_sets"]
    assert rep["version"] == version and rep["computed"] == 1675 and not rep["cache_hit"]
    assert rows(tmp_path / "store", version).equals(rows(ref_root, version))
    workers, loads = _loaded_models(caplog)
    assert workers == 2 and loads == 2  # 7 shards on 2 workers: each worker loaded MiniLM once
    assert FeatureStore(tmp_path / "store").staged() == []


@pytest.mark.slow
def test_a_worker_killed_mid_run_still_ends_in_the_identical_version(in_process, tmp_path: Path) -> None:
    """SIGKILL one of two Dask workers once the first shard is staged. Dask reschedules the lost
    shards and Prefect retries; if the run still fails, its staged shards make the re-run a resume.
    Either way the end is the in-process version, and nothing half-written is published."""
    from distributed import Client, LocalCluster

    from mmfeat.pipelines.flows.extract_flow import _current_api_url, extract_features
    from mmfeat.pipelines.engine.runners import workers_reach_this_api

    version, ref_root, _ = in_process
    manifest = small_shard_manifest(tmp_path)  # 7 shards, as the reference (batches shape the float bits)
    store_root = tmp_path / "store"
    staging = store_root / DATASET / FEATURE_SET / "_staging"
    with workers_reach_this_api(_current_api_url()):  # the workers report to the test's Prefect server
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    client = Client(cluster)
    killed: list[int] = []

    def kill_one_worker_after_first_part() -> None:
        deadline = time.time() + 120
        while time.time() < deadline and not list(staging.glob("*/part-*.parquet")):
            time.sleep(0.05)
        pid = next(iter(client.run(os.getpid).values()))
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    killer = threading.Thread(target=kill_one_worker_after_first_part, daemon=True)
    try:
        killer.start()
        kw = dict(manifest=manifest, store_root=str(store_root), progress="none", runner="dask",
                  runner_address=cluster.scheduler_address)
        try:
            out = extract_features(**kw)
        except Exception:  # the kill cost a shard for good: the re-run resumes from the staged parts
            out = extract_features(**kw)
        killer.join(timeout=5)
        assert killed, "no worker was killed: the test did not test anything"
        (rep,) = out["feature_sets"]
        assert rep["version"] == version
        assert rows(store_root, version).equals(rows(ref_root, version))
        assert [m["version"] for m in FeatureStore(store_root).versions(DATASET, FEATURE_SET)] == [version]
    finally:
        client.close()
        cluster.close()


def test_missing_runner_extra_is_a_clear_message(monkeypatch) -> None:
    import builtins

    from mmfeat.featurizers.registry import MissingDependency
    from mmfeat.pipelines.engine.runners import require_runner

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name.startswith("prefect_ray"):
            raise ImportError("No module named 'prefect_ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(__import__("sys").modules, "prefect_ray", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(MissingDependency, match=r"mmfeat\[ray\]"):
        require_runner(RunnerSpec(kind="ray"))


def test_cli_refuses_a_bad_runner_before_anything_starts(tmp_path: Path, capsys) -> None:
    from mmfeat.pipelines.cli import main

    assert main(["extract", "movielens-100k", "--runner", "in_process", "--workers", "2",
                 "--store", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "only apply to kind dask or ray" in err and "Traceback" not in err
    assert not (tmp_path / "movielens-100k").exists()  # refused before the store was touched


@pytest.mark.slow
def test_dask_workers_stage_into_an_object_store_root(in_process, s3_endpoint, caplog) -> None:
    """Workers in other processes write the shards of an s3:// store (rebuilt from its URI, credentials
    from their environment); the driver publishes with the conditional commit: the in-process version."""
    import uuid

    from mmfeat.pipelines.flows.extract_flow import extract_features
    from tests.conftest import S3_BUCKET

    version, ref_root, manifest = in_process
    root = f"s3://{S3_BUCKET}/runners-{uuid.uuid4().hex[:8]}"
    with caplog.at_level(logging.INFO):
        out = extract_features(manifest=manifest, store_root=root, progress="none", runner="dask", workers=2)
    (rep,) = out["feature_sets"]
    assert rep["version"] == version and _loaded_models(caplog)[0] == 2
    store = FeatureStore(root)
    assert store.read_table(DATASET, FEATURE_SET, version).sort_by("item_id").equals(rows(ref_root, version))
    store.verify(DATASET, FEATURE_SET, version)
    assert store.staged() == []


def test_remote_shard_path_gives_the_in_process_version(prefect_harness, tmp_path: Path) -> None:
    """The runner's whole driver/worker path without starting a cluster: shards prepared by the lock
    holder, pickled, computed by ``featurize-shard`` tasks on a thread pool, staged through
    ``stage_part`` and published: the version the in-process runner publishes."""
    import pickle

    from prefect.task_runners import ThreadPoolTaskRunner

    from mmfeat.pipelines.flows import extract_flow as flows
    from mmfeat.pipelines.flows.extract_flow import extract_features, extract_on_workers

    src = load_manifest("microlens")
    raw = yaml.safe_load(src.path.read_text())
    raw.update(shard_size=8, data_root=str(src.resolved_data_root()))
    raw["feature_sets"] = [fs for fs in raw["feature_sets"] if fs["name"] == "title_minilm"]
    manifest = tmp_path / "microlens-small-shards.yaml"
    manifest.write_text(yaml.safe_dump(raw))
    ref = extract_features(manifest=str(manifest), store_root=str(tmp_path / "a"), progress="none")
    (want,) = ref["feature_sets"]

    pickled: list[int] = []
    real_submit = flows.featurize_remote_shard.submit

    def submit_pickled(shard):  # what Dask/Ray do to a payload: it must survive pickling
        pickled.append(shard.work.index)
        return real_submit(pickle.loads(pickle.dumps(shard)))

    flows.featurize_remote_shard.submit = submit_pickled
    try:
        rows_out = extract_on_workers.with_options(task_runner=ThreadPoolTaskRunner(max_workers=2))(
            manifest=str(manifest), runner={"kind": "dask", "address": "tcp://already-running:8786"},
            store_root=str(tmp_path / "b"), progress="none")
    finally:
        flows.featurize_remote_shard.submit = real_submit
    (got,) = rows_out
    assert sorted(pickled) == list(range(5))  # 40 items in 5 shards, each submitted once
    assert got["version"] == want["version"] and got["computed"] == want["computed"]
    a = FeatureStore(tmp_path / "a").read_table("microlens-mini", "title_minilm", want["version"])
    b = FeatureStore(tmp_path / "b").read_table("microlens-mini", "title_minilm", got["version"])
    assert a.equals(b) and FeatureStore(tmp_path / "b").staged() == []
