"""The feature store has no dead end after a failure: a damaged version is rebuilt by the next run (or
removed by `mmfeat store repair` / `drop`) and marked by `list` / `show`; `latest` survives a run killed
before its alias write; an import never silently changes what `latest` holds; a mistyped store root is an
error; empty feature-set folders are not listed; exports honour the umask."""

from __future__ import annotations

import json
import os
import re
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from mmfeat.featurizers.base import OutputSpec, Result
from mmfeat.pipelines.cli import main
from mmfeat.pipelines.engine.extract import FeatureSetJob, plan_inputs
from mmfeat.pipelines.manifest import FeatureSetSpec
from mmfeat.pipelines.store.feature_store import FeatureStore, StoreError, build_rows, row_schema
from mmfeat.pipelines.store.imports import FeatureImportError, import_features

SPEC = FeatureSetSpec(name="emb", kind="fake", input={"text_fields": ["title"]})


class Embedder:
    """A deterministic 2-d embedder that records what it was asked to compute."""

    name, input_kind, output = "fake", "text", OutputSpec("embedding", 2, "float32")

    def __init__(self) -> None:
        self.seen: list[str] = []

    def fingerprint(self):
        return {"kind": "fake"}

    def __call__(self, inputs):
        self.seen += list(inputs)
        return [Result(value=np.array([len(t), sum(map(ord, t))], np.float32)) for t in inputs]


def _items(n: int = 12) -> pa.Table:
    return pa.table({"item_id": [f"{i:03d}" for i in range(n)], "title": [f"title {i}" for i in range(n)]})


def _extract(store: FeatureStore, featurizer: Embedder):
    job = FeatureSetJob(store, "ds", SPEC, featurizer, plan_inputs(_items(), SPEC), shard_size=4)
    return job.run_all(0.5, progress=False)


def _flip_a_byte(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))


def _publish(store: FeatureStore, ids: list[str], mat: np.ndarray, *, key: str = "r-1", feature_set: str = "fs",
             errors: dict[str, str] | None = None, kind: str = "t") -> str:
    errors = errors or {}
    schema = row_schema("embedding", mat.shape[1], "float32")
    w = store.writer("ds", feature_set, key, {"n": len(ids)})
    w.write_part(0, build_rows(schema, ids, list(mat), [errors.get(i) for i in ids],
                               ["featurize" if i in errors else None for i in ids], [f"h{i}" for i in ids]))
    return w.publish({"output": {"kind": "embedding", "dim": mat.shape[1], "dtype": "float32"},
                      "featurizer": {"name": "t", "kind": kind, "fingerprint": {}, "fingerprint_hash": "fp"},
                      "lineage": {"parents": {}}, "input": {}}).name


def _import(store: FeatureStore, tmp_path: Path, feature_set: str, dim: int, *, seed: int = 0, **kwargs) -> str:
    ids = [str(i) for i in range(6)]
    npy, ids_file = tmp_path / f"{feature_set}-{dim}-{seed}.npy", tmp_path / "ids.txt"
    np.save(npy, np.random.default_rng(seed).normal(size=(len(ids), dim)).astype(np.float32))
    ids_file.write_text("\n".join(ids) + "\n")
    return import_features(store, "ds", feature_set, npy, ids=ids_file, **kwargs)


@pytest.fixture()
def store_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "store"
    root.mkdir()
    monkeypatch.setenv("MMFEAT_STORE", str(root))
    return root


# ---------------------------------------------------------------------------- 1. damaged versions
def test_rerun_rebuilds_a_corrupted_version_instead_of_hitting_it(tmp_path: Path) -> None:
    """The read error says "re-run the extraction to rebuild this version": the re-run must not be a cache
    hit on the damaged version (even one this process read, i.e. memoized, before the damage)."""
    store = FeatureStore(tmp_path)
    f = Embedder()
    first = _extract(store, f)
    before = store.read_matrix("ds", "emb").matrix  # memoizes the parts' checksums in this process
    _flip_a_byte(tmp_path / "ds" / "emb" / first.version / "part-00001.parquet")
    with pytest.raises(StoreError, match=r"part-00001\.parquet is corrupted.*re-run the extraction"):
        store.read_matrix("ds", "emb")
    f.seen.clear()
    again = _extract(FeatureStore(tmp_path), f)
    assert not again.cache_hit and again.version == first.version  # rebuilt: same rows, same id
    assert sorted(f.seen) == sorted(f"title {i}" for i in range(12))  # nothing reused from the damaged version
    np.testing.assert_array_equal(store.read_matrix("ds", "emb").matrix, before)
    store.verify("ds", "emb")
    assert not [p for p in (tmp_path / "ds" / "emb").iterdir() if p.name.startswith(".removing-")]
    f.seen.clear()
    assert _extract(store, f).cache_hit and f.seen == []  # an intact version is still a hit


def test_rerun_rebuilds_a_version_with_a_missing_part(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path)
    first = _extract(store, Embedder())
    (tmp_path / "ds" / "emb" / first.version / "part-00000.parquet").unlink()
    again = _extract(store, Embedder())
    assert not again.cache_hit and again.version == first.version
    store.verify("ds", "emb")


def test_reimport_rebuilds_a_corrupted_import(tmp_path: Path) -> None:
    """Imports hit the cache the same way (another caller of the same rule)."""
    store = FeatureStore(tmp_path / "store")
    v = _import(store, tmp_path, "imp", 4)
    _flip_a_byte(next((tmp_path / "store" / "ds" / "imp" / v).glob("part-*.parquet")))
    assert _import(store, tmp_path, "imp", 4) == v
    store.verify("ds", "imp")


def test_a_damaged_old_version_does_not_stop_reuse(tmp_path: Path) -> None:
    """Rows are reused from published versions of the same featurizer; a damaged one is skipped."""
    store = FeatureStore(tmp_path)
    _publish(store, ["a", "b"], np.ones((2, 2), np.float32))
    _flip_a_byte(next((tmp_path / "ds" / "fs").glob("v-*/part-00000.parquet")))
    assert store.reusable_rows("ds", "fs", "fp", needed={"ha"}) == {}


def test_publishing_rows_of_a_damaged_version_replaces_it(tmp_path: Path) -> None:
    """Another request that makes the same rows (same id) puts them in place of a damaged copy."""
    store = FeatureStore(tmp_path)
    mat = np.arange(4, dtype=np.float32).reshape(2, 2)
    v = _publish(store, ["a", "b"], mat, key="r-1")
    _flip_a_byte(tmp_path / "ds" / "fs" / v / "part-00000.parquet")
    assert _publish(store, ["a", "b"], mat, key="r-2") == v
    np.testing.assert_array_equal(store.read_matrix("ds", "fs", v).matrix, mat)


def test_list_show_repair_and_rebuild_from_the_cli(tmp_path: Path, store_root: Path, capsys) -> None:
    store = FeatureStore(store_root)
    v = _import(store, tmp_path, "imp", 4)
    store.set_alias("ds", "imp", "paper", v)
    capsys.readouterr()
    _flip_a_byte(next((store_root / "ds" / "imp" / v).glob("part-*.parquet")))
    assert main(["store", "list"]) == 0
    out = capsys.readouterr().out
    assert v in out and "DAMAGED: part-00000.parquet checksum mismatch" in out and "store repair ds imp" in out
    assert main(["store", "show", "ds", "imp"]) == 0
    assert "DAMAGED: part-00000.parquet checksum mismatch" in capsys.readouterr().out
    assert main(["store", "repair", "ds", "imp"]) == 0
    out = capsys.readouterr().out
    assert f"removed ds/imp/{v}: part-00000.parquet checksum mismatch" in out
    assert "rebuilds it (same rows, same version id)" in out and "latest, paper still name it" in out
    assert not (store_root / "ds" / "imp" / v).exists()
    with pytest.raises(StoreError, match="not published .*re-run the extraction"):
        store.read_matrix("ds", "imp")  # a dangling latest is an error, never another version
    assert main(["store", "list"]) == 0
    assert "alias latest -> " + v + ": not published" in capsys.readouterr().out
    assert _import(store, tmp_path, "imp", 4) == v  # the rebuild brings the same id back
    assert store.read_matrix("ds", "imp", "paper").matrix.shape == (6, 4)
    assert main(["store", "repair", "ds", "imp"]) == 0
    assert "ok: 1 version(s) of ds/imp checked, none damaged" in capsys.readouterr().out
    assert main(["store", "repair", "ds", "nope"]) == 2
    assert "no feature set ds/nope" in capsys.readouterr().err
    assert not (store_root / "ds" / "nope").exists()


def test_drop_refuses_an_aliased_version_unless_forced(tmp_path: Path, store_root: Path, capsys) -> None:
    store = FeatureStore(store_root)
    old = _publish(store, ["a"], np.zeros((1, 2), np.float32), key="r-1")
    manifest = store_root / "ds" / "fs" / old / "_manifest.json"
    m = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**m, "created_at": "2000-01-01T00:00:00Z"}))  # older, without a 1 s sleep
    new = _publish(store, ["a"], np.ones((1, 2), np.float32), key="r-2")
    store.set_alias("ds", "fs", "paper", new)
    assert main(["store", "drop", "ds", "fs", new]) == 2
    err = capsys.readouterr().err
    assert "is named by latest, paper" in err and "--force" in err
    assert store.resolve("ds", "fs", "latest") == new  # nothing changed
    assert main(["store", "drop", "ds", "fs", new[:8], "--force"]) == 0
    out = capsys.readouterr().out
    assert f"dropped ds/fs/{new}" in out and f"latest -> {old}" in out and "removed alias paper" in out
    assert store.aliases("ds", "fs") == {"latest": old} and not (store_root / "ds" / "fs" / new).exists()
    assert main(["store", "drop", "ds", "fs", old, "--force"]) == 0
    assert store.aliases("ds", "fs") == {} and store.versions("ds", "fs") == []


def test_an_unreadable_manifest_names_the_command_that_removes_it(store_root: Path, capsys) -> None:
    store = FeatureStore(store_root)
    v = _publish(store, ["a"], np.ones((1, 2), np.float32))
    (store_root / "ds" / "fs" / v / "_manifest.json").write_text('{"version": ')  # truncated by a crash
    assert main(["store", "list"]) == 2
    assert "_manifest.json is unreadable" in (err := capsys.readouterr().err)
    assert f"mmfeat store drop ds fs {v} --force" in err
    assert main(["store", "drop", "ds", "fs", v, "--force"]) == 0
    assert f"dropped ds/fs/{v}" in capsys.readouterr().out
    assert main(["store", "list"]) == 0 and v not in capsys.readouterr().out


# ---------------------------------------------------------------------------- 2. latest after a kill
def test_latest_without_its_alias_reads_the_newest_version(tmp_path: Path, monkeypatch) -> None:
    """A run killed between the version's rename and the alias write leaves no `latest` alias: readers
    get the newest published version, and the next run (a cache hit) writes the alias."""
    store = FeatureStore(tmp_path)

    def killed(*_a, **_k):
        raise KeyboardInterrupt  # the kill, right after the version folder was renamed into place

    monkeypatch.setattr(FeatureStore, "set_alias", killed)
    with pytest.raises(KeyboardInterrupt):
        _extract(store, Embedder())
    monkeypatch.undo()
    assert not (tmp_path / "ds" / "emb" / "_aliases.json").exists()
    (version,) = [m["version"] for m in store.versions("ds", "emb")]
    assert store.resolve("ds", "emb", "latest") == version
    assert store.read_matrix("ds", "emb", "latest").matrix.shape == (12, 2)
    assert _extract(store, Embedder()).cache_hit
    assert store.aliases("ds", "emb") == {"latest": version}


def test_an_existing_latest_alias_is_never_overridden_by_a_newer_version(tmp_path: Path) -> None:
    """`latest` means what the last run asked for (a cache hit on an older version moves it back)."""
    store = FeatureStore(tmp_path)
    a = _publish(store, ["a"], np.zeros((1, 2), np.float32), key="r-1")
    b = _publish(store, ["a"], np.ones((1, 2), np.float32), key="r-2")
    store.set_alias("ds", "fs", "latest", a)
    assert b != a and store.resolve("ds", "fs", "latest") == a


# ---------------------------------------------------------------------------- 3. imports and `latest`
def test_import_of_another_layout_is_refused_unless_replace(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path / "store")
    v4 = _import(store, tmp_path, "imp", 4)
    with pytest.raises(FeatureImportError, match=r"differs from its latest version .*dim 4 -> 8.*--replace"):
        _import(store, tmp_path, "imp", 8)
    assert store.resolve("ds", "imp") == v4 and len(store.versions("ds", "imp")) == 1
    assert _import(store, tmp_path, "imp", 4, seed=1) != v4  # same layout: a new version is fine
    v8 = _import(store, tmp_path, "imp", 8, replace=True)
    assert store.resolve("ds", "imp") == v8
    _publish(store, ["a"], np.ones((1, 8), np.float32), feature_set="extracted", kind="text_embedding")
    with pytest.raises(FeatureImportError, match=r"kind text_embedding -> imported"):
        _import(store, tmp_path, "extracted", 8)


def test_cli_import_replace_prints_the_difference(tmp_path: Path, store_root: Path, capsys) -> None:
    v4 = _import(FeatureStore(store_root), tmp_path, "imp", 4)
    npy = tmp_path / "wide.npy"
    np.save(npy, np.ones((6, 8), np.float32))
    args = ["store", "import", "ds", "imp", str(npy), "--ids", str(tmp_path / "ids.txt")]
    assert main(args) == 2
    assert "dim 4 -> 8" in capsys.readouterr().err
    assert main(args + ["--replace"]) == 0
    out = capsys.readouterr().out
    assert f"replaced: latest of ds/imp was {v4}" in out and "dim 4 -> 8" in out
    assert f"mmfeat store tag ds imp {v4} latest" in out


# ---------------------------------------------------------------------------- 4. a wrong store path
@pytest.mark.parametrize("argv", [
    ["store", "list"],
    ["store", "show", "ds", "fs"],
    ["store", "verify", "ds", "fs"],
    ["store", "repair", "ds", "fs"],
    ["store", "summary", "microlens"],
    ["store", "export", "hf", "ds", "--feature", "fs", "--out", "OUT"],
])
def test_read_commands_refuse_a_store_root_that_does_not_exist(argv, tmp_path, monkeypatch, capsys) -> None:
    typo = tmp_path / "stroe"
    argv = [a.replace("OUT", str(tmp_path / "out")) for a in argv]
    assert main(["--store", str(typo), *argv]) == 2
    err = capsys.readouterr().err
    assert f"feature store {typo} does not exist" in err and "$MMFEAT_STORE" in err and "./store" in err
    assert not typo.exists() and not (tmp_path / "out").exists()
    monkeypatch.setenv("MMFEAT_STORE", str(typo))
    assert main(argv) == 2
    assert "from $MMFEAT_STORE" in capsys.readouterr().err


def test_train_names_a_store_root_that_does_not_exist(tmp_path, monkeypatch, capsys) -> None:
    import mmfeat.pipelines.flows.train_flow as train_flow

    monkeypatch.setattr(train_flow, "train_recommender", lambda *a, **k: pytest.fail("the flow must not run"))
    typo = tmp_path / "stroe"
    assert main(["--store", str(typo), "train", "microlens", "--model", "FREEDOM", "--feature",
                 "text=title_minilm"]) == 2
    err = capsys.readouterr().err
    assert f"feature store {typo} does not exist" in err and "mmfeat extract microlens --feature-set" not in err


def test_import_creates_the_store_root(tmp_path: Path, capsys) -> None:
    npy, ids = tmp_path / "x.npy", tmp_path / "ids.txt"
    np.save(npy, np.ones((2, 3), np.float32))
    ids.write_text("a\nb\n")
    root = tmp_path / "new-store"
    assert main(["--store", str(root), "store", "import", "ds", "x", str(npy), "--ids", str(ids)]) == 0
    assert FeatureStore(root).versions("ds", "x")


# ---------------------------------------------------------------------------- 5. smaller rules
def test_show_prints_the_first_error_rows(tmp_path: Path, store_root: Path, capsys) -> None:
    store = FeatureStore(store_root)
    _publish(store, ["a", "b", "c"], np.ones((3, 2), np.float32), errors={"b": "CUDA out of memory"})
    assert main(["store", "show", "ds", "fs"]) == 0
    out = capsys.readouterr().out
    assert "first 1 of 1" in out and "b [featurize] CUDA out of memory" in out


def test_feature_set_folders_without_a_version_are_not_listed(store_root: Path, capsys) -> None:
    """A feature set skipped before it wrote anything (missing weights) leaves its writer lock's folder."""
    store = FeatureStore(store_root)
    _publish(store, ["a"], np.ones((1, 2), np.float32), feature_set="title")
    with store.lock("ds", "cover_clip"):
        pass
    with store.lock("other-ds", "cover_clip"):
        pass
    assert (store_root / "ds" / "cover_clip").is_dir()
    assert store.feature_sets("ds") == ["title"] and store.datasets() == ["ds"]
    assert main(["store", "list"]) == 0
    out = capsys.readouterr().out
    assert "title" in out and "cover_clip" not in out and "other-ds" not in out


def test_export_folders_honour_the_umask(tmp_path: Path) -> None:
    from mmfeat.pipelines.store.exports import _staged_folder

    old = os.umask(0o022)
    try:
        out = tmp_path / f"export-{uuid.uuid4().hex[:4]}"
        with _staged_folder(out) as stage:
            (stage / "data.txt").write_text("x")
    finally:
        os.umask(old)
    assert (out / "data.txt").read_text() == "x"
    assert out.stat().st_mode & 0o777 == 0o755


# ---------------------------------------------------------------------------- the same rules on s3://
@pytest.fixture()
def s3_root(s3_endpoint) -> str:
    from tests.conftest import S3_BUCKET

    return f"s3://{S3_BUCKET}/t-{uuid.uuid4().hex[:8]}"


def _s3_part(root: str, store: FeatureStore, index: int) -> tuple:
    """(boto3 client, bucket, object key) of part ``index`` of the latest version."""
    import boto3

    bucket, prefix = root[len("s3://"):].split("/", 1)
    m = store.manifest("ds", "emb")
    return boto3.client("s3"), bucket, f"{prefix}/ds/emb/{m['version']}/{m['parts'][index]['file']}"


@pytest.mark.parametrize("damage", ["delete", "truncate"])
def test_s3_cache_hit_rebuilds_a_version_with_a_missing_or_cut_part(s3_root: str, damage: str) -> None:
    store = FeatureStore(s3_root)
    first = _extract(store, Embedder())
    s3, bucket, key = _s3_part(s3_root, store, 1)
    if damage == "delete":
        s3.delete_object(Bucket=bucket, Key=key)
    else:
        s3.put_object(Bucket=bucket, Key=key, Body=s3.get_object(Bucket=bucket, Key=key)["Body"].read()[:-10])
    f = Embedder()
    again = _extract(FeatureStore(s3_root), f)
    assert not again.cache_hit and again.version == first.version and f.seen
    store.verify("ds", "emb")


def test_s3_repair_removes_a_replaced_part_and_the_rerun_rebuilds(s3_root: str, capsys) -> None:
    """A cache hit on s3 checks presence and size only (no download); a same-size replaced object is
    refused by reads and removed by `store repair`, then rebuilt by the next run."""
    store = FeatureStore(s3_root)
    first = _extract(store, Embedder())
    s3, bucket, key = _s3_part(s3_root, store, 0)
    body = bytearray(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    body[len(body) // 2] ^= 0xFF
    s3.put_object(Bucket=bucket, Key=key, Body=bytes(body))
    with pytest.raises(StoreError, match="corrupted"):
        FeatureStore(s3_root).read_matrix("ds", "emb")
    assert main(["--store", s3_root, "store", "repair", "ds", "emb"]) == 0
    out = capsys.readouterr().out
    assert "object store" in out
    assert re.search(rf"removed ds/emb/{first.version}: a-\w+/part-00000\.parquet checksum mismatch", out), out
    assert not FeatureStore(s3_root).versions("ds", "emb")
    again = _extract(FeatureStore(s3_root), Embedder())
    assert not again.cache_hit and again.version == first.version
    FeatureStore(s3_root).verify("ds", "emb")


def test_s3_read_commands_refuse_an_empty_prefix(s3_root: str, capsys) -> None:
    assert main(["--store", s3_root, "store", "list"]) == 2
    assert f"feature store {s3_root} holds no object" in capsys.readouterr().err
