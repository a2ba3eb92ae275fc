from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from mmfeat.pipelines.store.feature_store import FeatureStore, StoreError, build_rows, row_schema


def _publish(store: FeatureStore, ids: list[str], mat: np.ndarray, key: str = "r-1",
             errors: dict[str, str] | None = None, fp_hash: str = "fp", parts: int = 1,
             feature_set: str = "fs") -> str:
    errors = errors or {}
    schema = row_schema("embedding", mat.shape[1], "float32")
    w = store.writer("ds", feature_set, key, {"n": len(ids)})
    chunks = np.array_split(np.arange(len(ids)), parts)
    for k, idx in enumerate(chunks):
        t = build_rows(schema, [ids[i] for i in idx], [mat[i] for i in idx],
                       [errors.get(ids[i]) for i in idx], [("featurize" if ids[i] in errors else None) for i in idx],
                       [f"h{ids[i]}" for i in idx])
        w.write_part(k, t)
    final = w.publish({"output": {"kind": "embedding", "dim": mat.shape[1], "dtype": "float32"},
                       "featurizer": {"name": "t", "kind": "t", "fingerprint": {}, "fingerprint_hash": fp_hash},
                       "lineage": {"parents": {}}, "input": {}})
    return final.name


def test_version_id_names_the_rows_not_the_sharding(tmp_path: Path) -> None:
    """Same rows -> same id however they are cut into parts; any changed row, error reason or
    featurizer -> another id (two versions with different rows never share an id)."""
    ids = [str(i) for i in range(10)]
    mat = np.random.default_rng(0).normal(size=(10, 4)).astype(np.float32)
    ids_for = {}
    for name, kwargs in {"one_part": {}, "three_parts": {"parts": 3}}.items():
        ids_for[name] = _publish(FeatureStore(tmp_path / name), ids, mat, **kwargs)
    assert ids_for["one_part"] == ids_for["three_parts"]
    changed = mat.copy()
    changed[4, 2] += 1e-3
    others = {
        "value": _publish(FeatureStore(tmp_path / "a"), ids, changed),
        "error": _publish(FeatureStore(tmp_path / "b"), ids, mat, errors={"3": "oom"}),
        "reason": _publish(FeatureStore(tmp_path / "c"), ids, mat, errors={"3": "codec missing"}),
        "featurizer": _publish(FeatureStore(tmp_path / "d"), ids, mat, fp_hash="fp2"),
    }
    assert len({ids_for["one_part"], *others.values()}) == 5, others


def test_reads_verify_checksums(tmp_path: Path) -> None:
    """read_table / read_matrix (and so training and exports) refuse a part whose bytes changed."""
    store = FeatureStore(tmp_path)
    _publish(store, [str(i) for i in range(20)], np.ones((20, 8), np.float32), parts=2)
    m = store.manifest("ds", "fs")
    part = tmp_path / "ds" / "fs" / m["version"] / m["parts"][1]["file"]
    raw = bytearray(part.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    part.write_bytes(bytes(raw))
    for read in (lambda: store.read_matrix("ds", "fs"), lambda: store.read_table("ds", "fs"),
                 lambda: store.read_matrix("ds", "fs", item_ids=["1"])):
        with pytest.raises(StoreError, match=r"part-00001\.parquet is corrupted"):
            read()
    part.unlink()
    with pytest.raises(StoreError, match="missing"):
        store.read_table("ds", "fs")


def test_concurrent_alias_writers_keep_every_alias(tmp_path: Path) -> None:
    """Alias updates from many threads/processes never lose one another (atomic swap under the lock)."""
    import threading

    store = FeatureStore(tmp_path)
    v = _publish(store, ["a"], np.ones((1, 2), np.float32))
    threads = [threading.Thread(target=lambda k=k: FeatureStore(tmp_path).set_alias("ds", "fs", f"t{k}", v))
               for k in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {f"t{k}" for k in range(16)} <= set(store.aliases("ds", "fs"))


def test_publish_read_matrix_aligned_and_missing(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path)
    ids = [str(i) for i in range(10)]
    mat = np.random.default_rng(0).normal(size=(10, 4)).astype(np.float32)
    v = _publish(store, ids, mat, errors={"3": "boom"}, parts=3)
    m = store.manifest("ds", "fs")
    assert m["version"] == v and m["rows"] == 10 and m["errors"] == 1 and len(m["parts"]) == 3
    order = ["9", "0", "5"]
    read = store.read_matrix("ds", "fs", "latest", order)
    np.testing.assert_array_equal(read.matrix, mat[[9, 0, 5]])
    with pytest.raises(StoreError, match="no feature row"):
        store.read_matrix("ds", "fs", "latest", ["1", "3", "99"])
    filled = store.read_matrix("ds", "fs", "latest", ["1", "3", "99"], fill_missing=0.0)
    assert filled.missing == ["3", "99"]
    np.testing.assert_array_equal(filled.matrix[1:], 0.0)
    np.testing.assert_array_equal(filled.matrix[0], mat[1])
    mean = store.read_matrix("ds", "fs", "latest", ["3"], fill_missing="mean")
    np.testing.assert_allclose(mean.matrix[0], mat[[i for i in range(10) if i != 3]].mean(0), rtol=1e-5)
    t = store.read_table("ds", "fs")
    assert t.column("status").to_pylist().count("error") == 1
    assert t.column("error").to_pylist()[3] == "boom" and t.column("stage").to_pylist()[3] == "featurize"


def test_staging_invisible_until_publish(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path)
    schema = row_schema("text")
    w = store.writer("ds", "fs", "r-abc", {"n": 1})
    w.write_part(0, build_rows(schema, ["1"], ["hello"], [None], [None], ["h"]))
    with pytest.raises(StoreError):
        store.resolve("ds", "fs", "latest")
    assert store.versions("ds", "fs") == []
    assert store.staged() and store.staged()[0].name == "r-abc"


def test_aliases_and_prefix_resolution(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path)
    mat = np.eye(3, dtype=np.float32)
    v1 = _publish(store, ["a", "b", "c"], mat)
    v2 = _publish(store, ["a", "b", "c"], mat * 2)
    assert store.resolve("ds", "fs", "latest") == v2
    store.set_alias("ds", "fs", "paper", v1)
    assert store.resolve("ds", "fs", "paper") == v1
    assert store.resolve("ds", "fs", v1[:8]) == v1
    with pytest.raises(StoreError, match="not a version or alias"):
        store.resolve("ds", "fs", "nope")
    with pytest.raises(StoreError, match="not published"):
        store.set_alias("ds", "fs", "x", "v-9999")


def test_corrupted_part_detected_by_checksum(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path)
    _publish(store, [str(i) for i in range(20)], np.ones((20, 8), np.float32), parts=2)
    store.verify("ds", "fs")
    m = store.manifest("ds", "fs")
    part = tmp_path / "ds" / "fs" / m["version"] / m["parts"][1]["file"]
    raw = bytearray(part.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # one flipped byte in the middle of the data
    part.write_bytes(bytes(raw))
    with pytest.raises(StoreError, match=r"part-00001\.parquet is corrupted"):
        store.verify("ds", "fs")
    with pytest.raises(StoreError, match="corrupted"):
        store.read_matrix("ds", "fs")


def test_reusable_rows_only_from_same_featurizer(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path)
    mat = np.arange(6, dtype=np.float32).reshape(3, 2)
    _publish(store, ["a", "b", "c"], mat, errors={"c": "bad"}, fp_hash="fpA")
    reuse = store.reusable_rows("ds", "fs", "fpA")
    assert set(reuse) == {"ha", "hb"}  # the error row is never reused
    np.testing.assert_array_equal(reuse["hb"], mat[1])
    assert store.reusable_rows("ds", "fs", "fpB") == {}
    assert set(store.reusable_rows("ds", "fs", "fpA", needed={"hb", "hz"})) == {"hb"}  # only what is asked


def test_reuse_prefers_the_newest_version(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path)
    _publish(store, ["a"], np.zeros((1, 2), np.float32), fp_hash="fpA")
    import time as _t
    _t.sleep(1.1)  # created_at has 1 s resolution
    _publish(store, ["a"], np.ones((1, 2), np.float32), fp_hash="fpA")
    np.testing.assert_array_equal(store.reusable_rows("ds", "fs", "fpA", needed={"ha"})["ha"], [1, 1])


def test_float16_and_text_roundtrip(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path)
    schema = row_schema("embedding", 3, "float16")
    w = store.writer("ds", "h", "r-h", {})
    w.write_part(0, build_rows(schema, ["1", "2"], [np.array([1, 2, 3]), None], [None, "x"], [None, "read"], ["a", None]))
    vh = w.publish({"output": {"kind": "embedding", "dim": 3, "dtype": "float16"},
               "featurizer": {"name": "t", "kind": "t", "fingerprint": {}, "fingerprint_hash": "f"},
               "lineage": {}, "input": {}})
    read = store.read_matrix("ds", "h", "latest", ["1"])
    assert read.matrix.dtype == np.float16 and read.matrix.tolist() == [[1, 2, 3]]
    on_disk = pq.read_schema(next(vh.glob("*.parquet"))).field("embedding")
    assert on_disk.type.byte_width == 6 and on_disk.metadata[b"mmfeat.dtype"] == b"float16"
    arrow = store.read_table("ds", "h").column("embedding")
    assert str(arrow.type) == "fixed_size_list<item: halffloat>[3]"
    assert arrow.to_pylist()[0] == [1, 2, 3] and arrow.to_pylist()[1] is None
    m = json.loads((vh / "_manifest.json").read_text())
    assert m["errors"] == 1


def test_cli_list_show_verify_tag(tmp_path: Path, capsys) -> None:
    from mmfeat.pipelines.cli import main

    store = FeatureStore(tmp_path)
    v = _publish(store, ["a", "b"], np.ones((2, 3), np.float32))
    root = ["--store", str(tmp_path)]
    assert main(root + ["store", "list"]) == 0
    out = capsys.readouterr().out
    assert v in out and "rows=2" in out and "latest" in out
    assert main(root + ["store", "tag", "ds", "fs", "latest", "paper"]) == 0
    assert store.resolve("ds", "fs", "paper") == v
    assert main(root + ["store", "show", "ds", "fs", "paper"]) == 0
    assert f"ds/fs/{v}" in capsys.readouterr().out
    assert main(root + ["store", "verify", "ds", "fs"]) == 0
    assert main(root + ["store", "show", "ds", "nope"]) == 2
    assert "no feature set ds/nope" in capsys.readouterr().err


def test_parts_staged_by_other_processes_are_seen_and_read_without_paths(tmp_path: Path) -> None:
    """What a Dask/Ray runner relies on: a worker's FeatureStore(root).stage_part is seen by the driver's
    writer (done_parts lists again), and a retryable part rewritten by a worker counts as done."""
    store = FeatureStore(tmp_path)
    schema = row_schema("embedding", 2, "float32")

    def rows(i: int, error: str | None = None):
        return build_rows(schema, [f"{i}"], [np.ones(2)], [error], ["featurize" if error else None], [f"h{i}"])

    store.writer("ds", "fs", "r-1", {"n": 3}).write_part(0, rows(0, "oom"))  # a run died with a retryable error
    w = store.writer("ds", "fs", "r-1", {"n": 3})
    assert w.done_parts() == set()  # part 0 must be recomputed
    worker = FeatureStore(str(tmp_path))
    worker.stage_part("ds", "fs", "r-1", 0, rows(0))
    worker.stage_part("ds", "fs", "r-1", 1, rows(1))
    assert w.done_parts() == {0, 1}
    assert w.read_part(0, columns=["status"]).column("status").to_pylist() == ["ok"]
    assert [t.num_rows for t in w.iter_parts(["item_id"])] == [1, 1]
    version = w.publish({"output": {"kind": "embedding", "dim": 2, "dtype": "float32"},
                         "featurizer": {"name": "t", "kind": "t", "fingerprint": {}, "fingerprint_hash": "fp"},
                         "lineage": {}, "input": {}}).name
    tables = list(store.version_part_tables("ds", "fs", version, columns=["item_id"]))
    assert [t.column("item_id").to_pylist() for t in tables] == [["0"], ["1"]]
    part = tmp_path / "ds" / "fs" / version / "part-00001.parquet"
    part.write_bytes(part.read_bytes()[:-9] + b"corrupted")
    with pytest.raises(StoreError, match=r"part-00001\.parquet is corrupted"):
        list(FeatureStore(tmp_path).version_part_tables("ds", "fs", version))


def test_local_exclusive_create_and_uri_roots(tmp_path: Path) -> None:
    """The local side of the store's filesystem layer, and roots that are URIs, not paths."""
    from mmfeat.pipelines.store.fs import LocalFS, ObjectPath, open_fs

    fs = open_fs(tmp_path)
    assert isinstance(fs, LocalFS) and fs.create_exclusive("a/b.json", b"1")
    assert not fs.create_exclusive("a/b.json", b"2") and fs.read_text("a/b.json") == "1"
    assert fs.list_files("a", "*.json") == ["a/b.json"] and not list((tmp_path / "a").glob("*.tmp"))
    s3 = FeatureStore("s3://bucket/team/features")  # nothing is contacted until the first operation
    assert s3.root == "s3://bucket/team/features" and not s3.fs.is_local
    loc = s3.feature_dir("ds", "fs") / "v-1"
    assert isinstance(loc, ObjectPath) and loc == "s3://bucket/team/features/ds/fs/v-1" and loc.name == "v-1"
    with pytest.raises(ValueError, match="unknown option"):
        FeatureStore("s3://bucket/x?endpoint=http://127.0.0.1:9000")
    with pytest.raises(ValueError, match="only local folders and s3://"):
        FeatureStore("gs://bucket/x")
