"""The feature store on an object store (``s3://bucket/prefix``), against a real S3-compatible server
(moto's) started on 127.0.0.1 by this module: publish without renames, reads that verify, resume and
reuse, two publishers of one version in two processes, a publisher killed before its commit."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import textwrap
import threading
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from mmfeat.featurizers.base import OutputSpec, Result
from mmfeat.pipelines.engine.extract import FeatureSetJob, plan_inputs
from mmfeat.pipelines.manifest import FeatureSetSpec
from mmfeat.pipelines.store.feature_store import FeatureStore, StoreError, build_rows, default_store_root, row_schema

boto3 = pytest.importorskip("boto3")
pytest.importorskip("moto.server")

REPO = Path(__file__).resolve().parents[1]
from tests.conftest import S3_BUCKET as BUCKET  # the bucket the s3_endpoint fixture creates
SPEC = FeatureSetSpec(name="emb", kind="fake", input={"text_fields": ["title"]})


@pytest.fixture()
def root(s3_endpoint) -> str:
    """A fresh store root in the bucket for each test."""
    return f"s3://{BUCKET}/t-{uuid.uuid4().hex[:8]}"


def _keys(root: str, under: str = "") -> list[str]:
    """Every object key under the store root (relative to it)."""
    prefix = root.split(f"s3://{BUCKET}/", 1)[1] + "/"
    s3 = boto3.client("s3")
    out = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix + under):
        out += [o["Key"][len(prefix):] for o in page.get("Contents", [])]
    return sorted(out)


def _object_key(root: str, key: str) -> str:
    return root.split(f"s3://{BUCKET}/", 1)[1] + "/" + key


def _stage(store: FeatureStore, ids: list[str], mat: np.ndarray, parts: int = 2, key: str = "r-1",
           errors: dict[str, str] | None = None):
    errors = errors or {}
    schema = row_schema("embedding", mat.shape[1], "float32")
    w = store.writer("ds", "fs", key, {"n": len(ids)})
    for k, idx in enumerate(np.array_split(np.arange(len(ids)), parts)):
        w.write_part(k, build_rows(schema, [ids[i] for i in idx], [mat[i] for i in idx],
                                   [errors.get(ids[i]) for i in idx],
                                   ["featurize" if ids[i] in errors else None for i in idx],
                                   [f"h{ids[i]}" for i in idx]))
    return w


MANIFEST = {"output": {"kind": "embedding", "dim": 4, "dtype": "float32"},
            "featurizer": {"name": "t", "kind": "t", "fingerprint": {}, "fingerprint_hash": "fp"},
            "lineage": {"parents": {}}, "input": {}}


class Embedder:
    """A deterministic 2-d embedder that fails the inputs in ``failing`` (a transient OOM, say)."""

    name, input_kind, output = "s3-fake", "text", OutputSpec("embedding", 2, "float32")

    def __init__(self, failing: set[str] = frozenset()):  # type: ignore[assignment]
        self.failing, self.seen = set(failing), []

    def fingerprint(self):
        return {"kind": "s3-fake"}

    def __call__(self, inputs):
        self.seen += list(inputs)
        return [Result.failed("CUDA out of memory") if t in self.failing
                else Result(value=np.array([len(t), sum(map(ord, t))], np.float32)) for t in inputs]


def _items(n: int = 12, changed: dict[int, str] | None = None) -> pa.Table:
    titles = [(changed or {}).get(i, f"title {i}") for i in range(n)]
    return pa.table({"item_id": [f"{i:03d}" for i in range(n)], "title": titles})


def _job(store, featurizer, items=None, shard_size=4) -> FeatureSetJob:
    return FeatureSetJob(store, "ds", SPEC, featurizer, plan_inputs(_items() if items is None else items, SPEC),
                         shard_size=shard_size)


# ---------------------------------------------------------------------------------------------- round trip
def test_publish_read_verify_roundtrip_without_renames(root: str, tmp_path: Path) -> None:
    """Parts go to <version>/<attempt>/, the manifest names them, staging is removed, reads align and
    verify, and the version id is the one the same rows get in a local store."""
    store = FeatureStore(root)
    assert store.root == root and store.uri == root and store.fs.is_local is False
    ids = [str(i) for i in range(10)]
    mat = np.random.default_rng(0).normal(size=(10, 4)).astype(np.float32)
    final = _stage(store, ids, mat, parts=3, errors={"3": "boom"}).publish(MANIFEST)
    version = final.name
    assert str(final) == f"{root}/ds/fs/{version}"
    m = store.manifest("ds", "fs")
    assert m["version"] == version and m["rows"] == 10 and m["errors"] == 1 and len(m["parts"]) == 3
    attempt = m["parts"][0]["file"].split("/")[0]
    assert attempt.startswith("a-") and all(p["file"].startswith(attempt + "/") for p in m["parts"])
    published = _keys(root)
    assert published == sorted([f"ds/fs/{version}/_manifest.json", "ds/fs/_aliases.json"]
                               + [f"ds/fs/{version}/{p['file']}" for p in m["parts"]])  # no staging, no lock
    read = store.read_matrix("ds", "fs", "latest", ["9", "0", "5"])
    np.testing.assert_array_equal(read.matrix, mat[[9, 0, 5]])
    assert store.read_table("ds", "fs").column("error").to_pylist()[3] == "boom"
    store.verify("ds", "fs")
    assert store.resolve("ds", "fs", version[:6]) == version and store.datasets() == ["ds"]
    assert store.feature_sets("ds") == ["fs"] and [v["version"] for v in store.versions("ds", "fs")] == [version]
    local = FeatureStore(tmp_path)
    assert _stage(local, ids, mat, parts=2, errors={"3": "boom"}).publish(MANIFEST).name == version
    again = _stage(store, ids, mat, parts=2, key="r-2", errors={"3": "boom"}).publish(MANIFEST, ["again"])
    assert again.name == version and store.resolve("ds", "fs", "again") == version  # versions are immutable:
    assert store.manifest("ds", "fs") == m and _keys(root) == published              # nothing re-uploaded

    schema = row_schema("text")
    w = store.writer("ds", "words", "r-t", {"n": 2})
    w.write_part(0, build_rows(schema, ["1", "2"], ["hello", None], [None, "no text"], [None, "read"], ["a", None]))
    tv = w.publish({**MANIFEST, "output": {"kind": "text"}}).name
    assert store.read_table("ds", "words", tv, only_ok=True).column("text").to_pylist() == ["hello"]


def test_cli_takes_an_s3_store(root: str, capsys, monkeypatch) -> None:
    """`--store s3://...` and $MMFEAT_STORE=s3://... stay URIs (a Path would collapse s3:// to s3:/)."""
    from mmfeat.pipelines.cli import main

    store = FeatureStore(root)
    v = _stage(store, ["a", "b"], np.ones((2, 4), np.float32)).publish(MANIFEST).name
    assert main(["--store", root, "store", "list"]) == 0
    out = capsys.readouterr().out
    assert v in out and "rows=2" in out
    assert main(["--store", root, "store", "tag", "ds", "fs", "latest", "paper"]) == 0
    assert store.resolve("ds", "fs", "paper") == v
    assert main(["--store", root, "store", "verify", "ds", "fs", "paper"]) == 0
    assert main(["--store", root, "store", "show", "ds", "fs"]) == 0
    assert f"{root}/ds/fs/{v}" in capsys.readouterr().out
    monkeypatch.setenv("MMFEAT_STORE", root)
    assert default_store_root() == root


def test_corrupted_or_missing_part_on_s3_is_detected(root: str) -> None:
    store = FeatureStore(root)
    _stage(store, [str(i) for i in range(20)], np.ones((20, 4), np.float32)).publish(MANIFEST)
    store.read_matrix("ds", "fs")  # verified once: memoized by size + ETag
    m = store.manifest("ds", "fs")
    key = _object_key(root, f"ds/fs/{m['version']}/{m['parts'][1]['file']}")
    s3 = boto3.client("s3")
    raw = bytearray(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    raw[len(raw) // 2] ^= 0xFF
    s3.put_object(Bucket=BUCKET, Key=key, Body=bytes(raw))
    for read in (lambda: store.read_matrix("ds", "fs"), lambda: store.read_table("ds", "fs"),
                 lambda: store.verify("ds", "fs")):
        with pytest.raises(StoreError, match=r"part-00001\.parquet is corrupted"):
            read()
    s3.delete_object(Bucket=BUCKET, Key=key)
    with pytest.raises(StoreError, match="missing"):
        store.read_table("ds", "fs")


def test_concurrent_alias_updates_on_s3_lose_nothing(root: str) -> None:
    """A read-modify-write of _aliases.json is a conditional PUT on its ETag, retried on conflict."""
    store = FeatureStore(root)
    v = _stage(store, ["a"], np.ones((1, 4), np.float32), parts=1).publish(MANIFEST).name
    threads = [threading.Thread(target=lambda k=k: FeatureStore(root).set_alias("ds", "fs", f"t{k}", v))
               for k in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {f"t{k}" for k in range(12)} | {"latest"} == set(store.aliases("ds", "fs"))
    assert "ds/fs/_aliases.json" in _keys(root)  # in the bucket, not in a local folder named "s3:"


def test_pickled_store_rebuilds_from_its_root(root: str, tmp_path: Path) -> None:
    """What a Dask/Ray worker gets: the root, no live client; stage_part from it is seen by the driver."""
    for where in (root, str(tmp_path)):
        store = FeatureStore(where)
        w = _stage(store, ["a", "b"], np.ones((2, 4), np.float32), parts=1)  # opens the connections
        blob = pickle.dumps(store)
        assert b"botocore" not in blob and b"S3FileSystem" not in blob
        worker = pickle.loads(blob)
        assert worker.uri == store.uri and worker.root == store.root
        rows = build_rows(row_schema("embedding", 4, "float32"), ["c"], [np.zeros(4)], [None], [None], ["hc"])
        worker.stage_part("ds", "fs", "r-1", 1, rows)
        assert w.done_parts() == {0, 1}  # listed again: parts staged by another process count
        assert w.read_part(1, columns=["item_id"]).column("item_id").to_pylist() == ["c"]
        assert worker.read_table("ds", "fs", w.publish(MANIFEST).name).num_rows == 3


# ---------------------------------------------------------------------------------------------- the engine
def test_resume_retry_cache_hit_and_reuse_on_s3(root: str, tmp_path: Path) -> None:
    store = FeatureStore(root)
    f = Embedder(failing={"title 5"})
    job = _job(store, f)
    with store.lock("ds", "emb"):
        for i in job.pending_shards()[:2]:
            job.compute_shard(i)  # then the run dies: two of three parts staged
    del job
    still = Embedder(failing={"title 5"})
    resumed = _job(store, still)
    assert resumed.pending_shards() == [1, 2]  # part 1 holds a retryable error: recomputed, its ok rows reused
    first = resumed.run_all(0.5, progress=False)
    assert still.seen == ["title 5"] + [f"title {i}" for i in range(8, 12)]
    assert first.errors == 1 and store.staged() == []
    assert first.path == f"{root}/ds/emb/{first.version}"

    retry = Embedder()
    again = _job(store, retry).run_all(0.5, progress=False)  # the featurize error is retried, ok rows reused
    assert retry.seen == ["title 5"] and not again.cache_hit and again.errors == 0

    nothing = Embedder()
    hit = _job(store, nothing).run_all(0.5, progress=False)
    assert hit.cache_hit and hit.version == again.version and nothing.seen == []

    changed = Embedder()
    rep = _job(store, changed, _items(changed={7: "a new title"})).run_all(0.5, progress=False)
    assert changed.seen == ["a new title"] and rep.reused == 11

    clean = _job(FeatureStore(tmp_path), Embedder()).run_all(0.5, progress=False)
    assert clean.version == again.version  # the same rows, the same id, on either root


def test_extract_manifest_end_to_end_on_s3(root: str) -> None:
    """The microlens sample: MiniLM title embeddings, then semantic IDs read from them, all on S3."""
    import yaml

    from mmfeat.pipelines.engine.extract import extract_manifest
    from mmfeat.pipelines.manifest import PACKAGE_ROOT, validate_manifest

    raw = yaml.safe_load((PACKAGE_ROOT / "manifests" / "microlens.yaml").read_text())
    raw["data_root"] = str(PACKAGE_ROOT / "manifests" / "data" / "microlens-mini")
    raw["feature_sets"] = [s for s in raw["feature_sets"] if s["name"] == "title_minilm"] + [
        {"name": "title_sid", "kind": "semantic_ids", "input": {"from": "title_minilm"},
         "params": {"method": "rqkmeans", "levels": 2, "codebook_size": 4}}]
    m = validate_manifest(raw)
    store = FeatureStore(root)
    reports = extract_manifest(m, store=store, feature_sets=["title_minilm", "title_sid"])
    assert [r.cache_hit for r in reports] == [False, False] and reports[0].rows == 40
    emb = store.read_matrix(m.store_dataset, "title_minilm", item_ids=["1", "2"]).matrix
    assert emb.shape == (2, 384) and np.all(np.isfinite(emb))
    codes, ids, _ = store.read_codes(m.store_dataset, "title_sid")
    assert len(ids) == 40 and codes.shape[0] == 40
    again = extract_manifest(m, store=FeatureStore(root), feature_sets=["title_minilm", "title_sid"])
    assert [r.cache_hit for r in again] == [True, True]
    assert [r.version for r in again] == [r.version for r in reports]
    keys = _keys(root)
    assert {f"microlens-mini/{r.feature_set}/{r.version}/_manifest.json" for r in reports} <= set(keys)
    assert not [k for k in keys if "/_staging/" in k]


# ---------------------------------------------------------------------------------------------- races, kills
def test_losing_publisher_reports_the_winners_version(root: str, monkeypatch) -> None:
    """The commit race, deterministically: B's conditional create runs after A committed the same version."""
    ids, mat = ["a", "b", "c"], np.eye(3, 4, dtype=np.float32)
    a, b = FeatureStore(root), FeatureStore(root)
    wa, wb = _stage(a, ids, mat, key="r-a"), _stage(b, ids, mat, key="r-b")
    real = type(b.fs).create_exclusive
    won: list[str] = []

    def a_first(fs, key, data):
        if fs is b.fs and key.endswith("_manifest.json") and not won:
            won.append(wa.publish(MANIFEST).name)
        return real(fs, key, data)

    monkeypatch.setattr(type(b.fs), "create_exclusive", a_first)
    lost = wb.publish(MANIFEST).name
    assert lost == won[0]
    m = a.manifest("ds", "fs")
    attempts = {k.split("/")[3] for k in _keys(root, f"ds/fs/{lost}/") if "/a-" in k}
    assert attempts == {m["parts"][0]["file"].split("/")[0]}  # the loser removed its own upload
    assert a.read_table("ds", "fs").num_rows == 3 and b.orphan_attempts(0) == []


PUBLISHER = textwrap.dedent(
    """
    import os, sys, time
    sys.path.insert(0, {repo!r})
    import numpy as np
    from mmfeat.pipelines.store.feature_store import FeatureStore, build_rows, row_schema
    store = FeatureStore({root!r})
    schema = row_schema("embedding", 4, "float32")
    w = store.writer("ds", "fs", "r-same", {{"n": 40}})
    mat = np.arange(160, dtype=np.float32).reshape(40, 4)
    for k in range(4):
        idx = range(10 * k, 10 * k + 10)
        w.write_part(k, build_rows(schema, [f"{{i:02d}}" for i in idx], [mat[i] for i in idx], [None] * 10,
                                   [None] * 10, [f"h{{i}}" for i in idx]))
    {before_publish}
    open({ready!r} + str(os.getpid()), "w").close()
    while len([p for p in os.listdir({barrier!r}) if p.startswith("ready")]) < {n}:
        time.sleep(0.01)
    final = w.publish({manifest!r})
    print("VERSION", final.name)
    """
)


def _publisher(root: str, tmp_path: Path, n: int = 1, before_publish: str = "") -> str:
    return PUBLISHER.format(repo=str(REPO), root=root, ready=str(tmp_path / "ready-"), barrier=str(tmp_path), n=n,
                            manifest=MANIFEST, before_publish=before_publish)


def test_two_processes_publish_the_same_version(root: str, tmp_path: Path) -> None:
    """Two runs of one request in two processes, released at the same moment: both succeed with the same
    version id, one manifest, one attempt's parts, and the version reads back whole."""
    script = _publisher(root, tmp_path, n=2)
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    versions = {line.split()[1] for out, _ in outs for line in out.splitlines() if line.startswith("VERSION")}
    assert len(versions) == 1
    (version,) = versions
    keys = _keys(root)
    assert [k for k in keys if k.endswith("_manifest.json")] == [f"ds/fs/{version}/_manifest.json"]
    store = FeatureStore(root)
    m = store.manifest("ds", "fs")
    assert {k.split("/")[3] for k in keys if "/a-" in k} == {m["parts"][0]["file"].split("/")[0]}
    assert not [k for k in keys if "/_staging/" in k]
    store.verify("ds", "fs")
    assert store.read_table("ds", "fs").column("item_id").to_pylist() == [f"{i:02d}" for i in range(40)]


def test_killed_publisher_leaves_no_version_and_the_next_run_publishes(root: str, tmp_path: Path) -> None:
    """kill -9 between uploading the parts and the commit: readers see no version (the parts are an
    attempt no manifest names); the next run resumes from staging, publishes the same id and removes
    the dead attempt."""
    kill = textwrap.dedent(
        """
        import signal
        from mmfeat.pipelines.store.fs import S3FS
        real = S3FS.create_exclusive
        def die_before_commit(self, key, data):
            if key.endswith("_manifest.json"):
                os.kill(os.getpid(), signal.SIGKILL)  # parts uploaded, manifest never created
            return real(self, key, data)
        S3FS.create_exclusive = die_before_commit
        """)
    proc = subprocess.run([sys.executable, "-c", _publisher(root, tmp_path, before_publish=kill)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr[-2000:]
    store = FeatureStore(root)
    uploaded = [k for k in _keys(root) if "/a-" in k]
    assert len(uploaded) == 4  # every part of the attempt is up ...
    assert store.versions("ds", "fs") == [] and store.aliases("ds", "fs") == {}  # ... and nothing is published
    with pytest.raises(StoreError):
        store.read_table("ds", "fs", uploaded[0].split("/")[2])
    assert store.orphan_attempts() == []  # it may still be in flight: not an orphan before an hour
    (stale,) = store.orphan_attempts(min_age_s=0)
    assert not stale.committed and stale.key == "/".join(uploaded[0].split("/")[:4])
    (run,) = store.staged_runs()
    assert run.key == "r-same" and run.parts == 4

    w = store.writer("ds", "fs", "r-same", {"n": 40})
    assert w.done_parts() == {0, 1, 2, 3}  # resumed: nothing to compute
    version = w.publish(MANIFEST).name
    assert version == uploaded[0].split("/")[2]  # the same rows, the same id
    assert not [k for k in _keys(root) if stale.attempt in k]  # the dead attempt is swept at the commit
    assert store.orphan_attempts(0) == [] and store.staged_runs() == []
    assert store.read_table("ds", "fs").num_rows == 40
    assert json.loads(store.fs.read_text(f"ds/fs/{version}/_manifest.json"))["rows"] == 40
