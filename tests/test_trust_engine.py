"""Trust rules of the extraction engine: failed items are retried, fingerprints follow the code,
paths are contained by their real path, one bad row never rejects a source, concurrent runs of
one feature set both end well, a cache hit loads no model."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from mmfeat.featurizers.base import OutputSpec, Result
from mmfeat.pipelines.engine.extract import FeatureSetFailed, FeatureSetJob, plan_inputs
from mmfeat.pipelines.manifest import FeatureSetSpec
from mmfeat.pipelines.store.feature_store import FeatureStore

REPO = Path(__file__).resolve().parents[1]
SPEC = FeatureSetSpec(name="emb", kind="fake", input={"text_fields": ["title"]})


def _items(n: int = 12) -> pa.Table:
    return pa.table({"item_id": [f"{i:03d}" for i in range(n)], "title": [f"title {i}" for i in range(n)]})


class Flaky:
    """A deterministic 2-d embedder that fails the inputs in ``failing`` (a transient OOM, say)."""

    name, input_kind, output = "flaky", "text", OutputSpec("embedding", 2, "float32")

    def __init__(self, failing: set[str]):
        self.failing, self.seen = failing, []

    def fingerprint(self):
        return {"kind": "flaky"}

    def __call__(self, inputs):
        self.seen += list(inputs)
        return [Result.failed("CUDA out of memory") if t in self.failing
                else Result(value=np.array([len(t), 1.0], np.float32)) for t in inputs]


def _run(store, featurizer, items=None, threshold=0.5, shard_size=4):
    job = FeatureSetJob(store, "ds", SPEC, featurizer, plan_inputs(items or _items(), SPEC), shard_size=shard_size)
    return job.run_all(threshold, progress=False)


def test_featurize_errors_are_recomputed_and_ok_rows_reused(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path)
    first = _run(store, Flaky({"title 5"}))
    assert first.errors == 1 and store.manifest("ds", "emb")["retryable_errors"] == 1
    still = Flaky({"title 5"})
    again = _run(store, still)  # not a cache hit: the error row is retried ...
    assert still.seen == ["title 5"] and not again.cache_hit
    assert again.version == first.version  # ... and the same rows give the same version, not a new one
    fixed = Flaky(set())
    healed = _run(store, fixed)
    assert fixed.seen == ["title 5"] and healed.reused == 11 and healed.errors == 0
    assert healed.version != first.version  # different rows never share an id
    assert store.resolve("ds", "emb", "latest") == healed.version
    assert len(store.versions("ds", "emb")) == 2
    done = Flaky(set())
    assert _run(store, done).cache_hit and done.seen == []  # complete now: a real cache hit


def test_staged_error_parts_are_recomputed_after_a_failed_run(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path)
    broken = {f"title {i}" for i in range(0, 12, 3)}
    with pytest.raises(FeatureSetFailed):
        _run(store, Flaky(broken), threshold=0.1)
    assert store.versions("ds", "emb") == [] and len(store.staged()) == 1
    fixed = Flaky(set())
    rep = _run(store, fixed, threshold=0.1)
    assert sorted(fixed.seen) == sorted(broken)  # only the failed items ran; staged ok rows reused
    assert rep.errors == 0 and rep.reused == 8 and store.staged() == []


def test_code_and_library_changes_change_the_fingerprint(tmp_path: Path, monkeypatch) -> None:
    import importlib

    from mmfeat.featurizers import fingerprinting

    pkg = tmp_path / "featurizers_probe"
    pkg.mkdir()
    mod = pkg / "probe_featurizer.py"
    mod.write_text("import numpy\nclass Probe:\n    def f(self):\n        return 1\n")
    monkeypatch.syspath_prepend(str(pkg))
    probe = importlib.import_module("probe_featurizer")
    a = fingerprinting.code_fingerprint(probe.Probe)
    assert a["libraries"]["numpy"] == np.__version__ and a["mmfeat"]
    mod.write_text("import numpy\nclass Probe:\n    def f(self):\n        return 2\n")
    fingerprinting._closure.cache_clear()
    b = fingerprinting.code_fingerprint(probe.Probe)
    assert b["source_sha256"] != a["source_sha256"]
    fingerprinting.library_versions.cache_clear()
    real = fingerprinting.metadata.version
    monkeypatch.setattr(fingerprinting.metadata, "version",
                        lambda d: "99.0" if d.lower() == "numpy" else real(d))
    c = fingerprinting.code_fingerprint(probe.Probe)
    fingerprinting.library_versions.cache_clear()
    assert c["libraries"]["numpy"] == "99.0" and c["source_sha256"] == b["source_sha256"]


def test_featurizer_fingerprint_carries_its_modules_and_libraries(minilm) -> None:
    from mmfeat.pipelines.engine.extract import full_fingerprint

    fp = full_fingerprint(minilm)
    assert "mmfeat.featurizers.text_embedding" in fp["code"]["modules"]
    assert {"torch", "transformers", "sentence-transformers"} <= set(fp["code"]["libraries"])
    assert "mmfeat.featurizers.video" not in fp["code"]["modules"]  # a video change leaves text versions alone


def test_media_paths_are_contained_by_their_real_path(tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    (root / "ok.jpg").write_bytes(b"inside")
    outside = tmp_path / "secret.txt"
    outside.write_bytes(b"outside the root")
    (root / "link.jpg").symlink_to(outside)
    (root / "dirlink").symlink_to(tmp_path)
    items = pa.table({"item_id": ["1", "2", "3", "4", "5"],
                      "image_uri": [str(root / "ok.jpg"), str(root / "link.jpg"), "../secret.txt",
                                    str(root / "dirlink" / "secret.txt"), "/etc/passwd"]})
    spec = FeatureSetSpec(name="img", kind="x", input={"media": "image_uri"})
    planned = plan_inputs(items, spec, data_root=root)
    assert planned.pre_errors[0] is None and planned.source_hashes[0] is not None
    for i in range(1, 5):
        stage, reason = planned.pre_errors[i]
        assert stage == "read" and "outside the data root" in reason, reason
        assert planned.source_hashes[i] is None and planned.inputs[i] is None  # never hashed, never opened
    with pytest.raises(ValueError, match="data_root"):
        plan_inputs(items, spec)


def test_source_row_errors_become_read_error_rows(tmp_path: Path) -> None:
    items = _items(4).append_column("row_error", pa.array([None, "line 3: bytes not valid utf-8", None, None]))
    store = FeatureStore(tmp_path)
    f = Flaky(set())
    rep = FeatureSetJob(store, "ds", SPEC, f, plan_inputs(items, SPEC), shard_size=4).run_all(0.5, progress=False)
    rows = store.read_table("ds", "emb").to_pylist()
    assert rep.errors == 1 and rows[1]["stage"] == "read" and "utf-8" in rows[1]["error"]
    assert "title 1" not in f.seen and rows[0]["status"] == "ok"


CONCURRENT = textwrap.dedent(
    """
    import sys, time
    import numpy as np, pyarrow as pa
    sys.path.insert(0, {repo!r})
    from mmfeat.featurizers.base import OutputSpec, Result
    from mmfeat.pipelines.engine.extract import FeatureSetJob, plan_inputs
    from mmfeat.pipelines.manifest import FeatureSetSpec
    from mmfeat.pipelines.store.feature_store import FeatureStore
    class Slow:
        name, input_kind, output = "slow", "text", OutputSpec("embedding", 2, "float32")
        def fingerprint(self): return {{"kind": "slow"}}
        def __call__(self, inputs):
            time.sleep(0.3)
            return [Result(value=np.array([len(t), 1.0], np.float32)) for t in inputs]
    spec = FeatureSetSpec(name="emb", kind="fake", input={{"text_fields": ["title"]}})
    items = pa.table({{"item_id": [f"{{i:03d}}" for i in range(12)], "title": [f"t {{i}}" for i in range(12)]}})
    rep = FeatureSetJob(FeatureStore({root!r}), "ds", spec, Slow(), plan_inputs(items, spec), shard_size=3).run_all(0.5, progress=False)
    print(rep.version, rep.cache_hit, rep.computed)
    """
)


def test_two_concurrent_runs_of_one_feature_set_both_end_well(tmp_path: Path) -> None:
    script = CONCURRENT.format(repo=str(REPO), root=str(tmp_path))
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-1500:] for o in outs]
    results = [o[0].split() for o in outs]
    assert results[0][0] == results[1][0]  # one version
    assert sorted(r[1] for r in results) == ["False", "True"]  # the second waited, then found it
    store = FeatureStore(tmp_path)
    assert len(store.versions("ds", "emb")) == 1 and store.staged() == []
    store.verify("ds", "emb")


def test_dead_runs_temp_files_are_cleaned(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path)
    with pytest.raises(FeatureSetFailed):
        _run(store, Flaky({"title 1"}), threshold=0.0)
    (staged,) = store.staged()
    junk = staged / "part-00002.parquet.1234-deadbeef.tmp"
    junk.write_bytes(b"half a part")
    _run(store, Flaky(set()), threshold=0.0)
    assert not junk.exists() and store.staged() == []


def test_cache_hit_loads_no_model(tmp_path: Path, monkeypatch) -> None:
    from mmfeat.featurizers import registry
    from mmfeat.pipelines.engine.extract import load_items, run_feature_set
    from mmfeat.pipelines.manifest import load_manifest

    m = load_manifest("microlens")
    items, _, _ = load_items(m)
    store = FeatureStore(tmp_path)
    spec = m.feature_set("title_minilm")
    first = run_feature_set(store, m, spec, items)
    assert not first.cache_hit and first.rows == 40

    def no_model(*a, **k):
        raise AssertionError("a cache hit must not build a featurizer")

    monkeypatch.setattr(registry, "build_featurizer", no_model)
    again = run_feature_set(store, m, spec, items, aliases=("latest", "again"))
    assert again.cache_hit and again.version == first.version
    assert store.resolve("microlens-mini", "title_minilm", "again") == first.version
    assert os.environ.get("HF_HUB_OFFLINE") == "1"


@pytest.mark.parametrize("error, skipped", [("weights", True), ("extra", True), ("bug", False)])
def test_optional_skips_only_missing_weights_or_extras(prefect_harness, tmp_path: Path, monkeypatch,
                                                       error, skipped) -> None:
    from mmfeat.featurizers.registry import MissingDependency, WeightsUnavailable
    from mmfeat.pipelines.flows import extract_flow as flows

    exc = {"weights": WeightsUnavailable("no CLIP weights here"), "extra": MissingDependency("pip install 'mmfeat[clip]'"),
           "bug": RuntimeError("a real bug in the featurizer")}[error]

    def fails(store, manifest, spec, items, **kw):
        raise exc

    from mmfeat.pipelines.engine import extract as extract

    monkeypatch.setattr(extract, "run_feature_set", fails)  # the flow's loop lives in extract_manifest
    run = lambda: flows.extract_features(manifest="microlens", feature_sets=["cover_clip"],  # noqa: E731
                                         store_root=str(tmp_path))
    if skipped:
        assert run()["feature_sets"] == []
    else:
        with pytest.raises(RuntimeError, match="a real bug"):
            run()


def test_nested_locks_from_two_store_objects_do_not_deadlock(tmp_path: Path) -> None:
    a, b = FeatureStore(tmp_path), FeatureStore(tmp_path)
    with a.lock("ds", "fs"):
        with b.lock("ds", "fs"):  # same thread, another FeatureStore on the root: reentrant
            pass


class FileSize:
    """A deterministic 'image' featurizer: the vector is the file's size."""

    name, input_kind, output = "size", "image", OutputSpec("embedding", 1, "float32")

    def __init__(self):
        self.seen = []

    def fingerprint(self):
        return {"kind": "size"}

    def __call__(self, inputs):
        self.seen += list(inputs)
        return [Result(value=np.array([Path(p).stat().st_size], np.float32)) for p in inputs]


def test_read_errors_are_retried_when_the_file_appears_or_changes(tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    (root / "a.jpg").write_bytes(b"x" * 3)
    (root / "b.jpg").write_bytes(b"x" * 4)
    items = pa.table({"item_id": ["a", "b", "c"], "image_uri": [str(root / f"{n}.jpg") for n in "abc"]})
    spec = FeatureSetSpec(name="img", kind="fake", input={"media": "image_uri"})
    store = FeatureStore(tmp_path / "store")

    def run():
        f = FileSize()
        rep = FeatureSetJob(store, "ds", spec, f, plan_inputs(items, spec, data_root=root),
                            shard_size=2).run_all(0.5, progress=False)
        return rep, sorted(Path(p).name for p in f.seen)

    first, seen = run()
    assert first.errors == 1 and seen == ["a.jpg", "b.jpg"]
    (root / "c.jpg").write_bytes(b"y" * 5)  # the missing file appears
    second, seen = run()
    assert seen == ["c.jpg"] and second.errors == 0 and second.version != first.version
    (root / "a.jpg").write_bytes(b"z" * 7)  # a file changes
    third, seen = run()
    assert seen == ["a.jpg"] and third.version != second.version
    assert store.read_matrix("ds", "img", "latest", ["a", "c"]).matrix.ravel().tolist() == [7, 5]
