"""The extraction engine: versions, reuse, resume after a hard kill, thresholds, chaining, bad input."""

from __future__ import annotations

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
TITLES = [f"video number {i} about {w}" for i, w in enumerate(["cats", "cars", "cooking", "travel", "music"] * 8)]


def _items(titles: list[str | None]) -> pa.Table:
    return pa.table({"item_id": [f"{i:03d}" for i in range(len(titles))], "title": titles})


def _spec(name: str = "title", **inp) -> FeatureSetSpec:
    return FeatureSetSpec(name=name, kind="text_embedding", input=inp or {"text_fields": ["title"]})


class Counting:
    """Wraps a featurizer and counts the inputs it is asked to compute."""

    def __init__(self, inner):
        self.inner, self.seen = inner, []
        self.name, self.input_kind, self.output = inner.name, inner.input_kind, inner.output
        self.code_owner = type(inner)

    def fingerprint(self):
        return self.inner.fingerprint()

    def __call__(self, inputs):
        self.seen += list(inputs)
        return self.inner(inputs)


def _run(store, items, featurizer, spec=None, shard_size=8, threshold=0.5):
    spec = spec or _spec()
    job = FeatureSetJob(store, "ds", spec, featurizer, plan_inputs(items, spec), shard_size=shard_size)
    return job, job.run_all(threshold, progress=False)


def test_same_inputs_are_a_cache_hit_and_changed_items_reuse_the_rest(tmp_path: Path, minilm) -> None:
    store = FeatureStore(tmp_path)
    f = Counting(minilm)
    _, r1 = _run(store, _items(TITLES), f)
    assert (r1.rows, r1.errors, r1.computed, r1.cache_hit) == (40, 0, 40, False)
    f.seen.clear()
    _, r2 = _run(store, _items(TITLES), f)
    assert r2.cache_hit and r2.version == r1.version and f.seen == []
    changed = TITLES[:-1] + ["a brand new title"]
    _, r3 = _run(store, _items(changed), f)
    assert r3.version != r1.version and r3.reused == 39 and f.seen == ["a brand new title"]
    old = store.read_matrix("ds", "title", r1.version, [f"{i:03d}" for i in range(39)]).matrix
    new = store.read_matrix("ds", "title", r3.version, [f"{i:03d}" for i in range(39)]).matrix
    np.testing.assert_array_equal(old, new)
    assert store.resolve("ds", "title", "latest") == r3.version


def test_error_rows_and_failure_threshold(tmp_path: Path, minilm) -> None:
    store = FeatureStore(tmp_path)
    titles = TITLES[:10] + [None, "  "]
    _, rep = _run(store, _items(titles), minilm, threshold=0.2)
    assert rep.errors == 2 and rep.rows == 12
    t = store.read_table("ds", "title")
    bad = t.filter(pa.compute.equal(t.column("status"), "error")).to_pylist()
    assert {(r["item_id"], r["stage"]) for r in bad} == {("010", "read"), ("011", "read")}
    assert all("no text in fields ['title']" in r["error"] for r in bad)
    store2 = FeatureStore(tmp_path / "strict")
    with pytest.raises(FeatureSetFailed, match=r"2/12 items failed.*nothing published.*010 \[read\]"):
        _run(store2, _items(titles), minilm, threshold=0.1)
    assert store2.versions("ds", "title") == []


def test_media_inputs_missing_files_are_error_rows(tmp_path: Path) -> None:
    good = tmp_path / "a.jpg"
    good.write_bytes(b"fake-bytes")
    items = pa.table({"item_id": ["1", "2", "3"], "image_uri": [str(good), str(tmp_path / "gone.jpg"), None]})
    planned = plan_inputs(items, FeatureSetSpec(name="img", kind="x", input={"media": "image_uri"}), data_root=tmp_path)
    assert planned.inputs[0] == str(good) and planned.source_hashes[0] is not None
    assert planned.pre_errors[1][0] == "read" and "file not found" in planned.pre_errors[1][1]
    assert "no image_uri" in planned.pre_errors[2][1]


class FakeCaptioner:
    name, input_kind, output = "fake-caption", "text", OutputSpec("text")

    def fingerprint(self):
        return {"kind": "fake", "random_init": True}

    def __call__(self, inputs):
        return [Result.failed("model refused") if "cars" in t else Result(value=f"A description of {t}.")
                for t in inputs]


def test_chained_text_feature_records_parent_and_propagates_errors(tmp_path: Path, minilm) -> None:
    store = FeatureStore(tmp_path)
    items = _items(TITLES[:10])
    cap_spec = FeatureSetSpec(name="caption", kind="fake", input={"text_fields": ["title"]})
    _, cap = _run(store, items, FakeCaptioner(), spec=cap_spec)
    emb_spec = FeatureSetSpec(name="caption_emb", kind="text_embedding", input={"from": "caption"})
    planned = plan_inputs(items, emb_spec, store=store, dataset="ds", parent_versions={"caption": cap.version})
    job = FeatureSetJob(store, "ds", emb_spec, minilm, planned, shard_size=4)
    rep = job.run_all(0.5, progress=False)
    assert rep.parents == {"caption": cap.version}
    assert store.manifest("ds", "caption_emb")["lineage"]["parents"] == {"caption": cap.version}
    t = store.read_table("ds", "caption_emb").to_pylist()
    assert t[1]["status"] == "error" and t[1]["stage"] == "parent" and "model refused" in t[1]["error"]
    expected = minilm.embed(["A description of video number 0 about cats."])[0]
    np.testing.assert_allclose(t[0]["embedding"], expected, atol=1e-6)


KILL_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    import pyarrow as pa
    sys.path.insert(0, {repo!r})
    from mmfeat.featurizers.text_embedding import TextEmbedder
    from mmfeat.pipelines.engine.extract import FeatureSetJob, plan_inputs
    from mmfeat.pipelines.manifest import FeatureSetSpec
    from mmfeat.pipelines.store.feature_store import FeatureStore
    titles = {titles!r}
    items = pa.table({{"item_id": [f"{{i:03d}}" for i in range(len(titles))], "title": titles}})
    inner = TextEmbedder("all-MiniLM-L6-v2")
    calls = []
    class KilledMidway:
        name, input_kind, output = inner.name, inner.input_kind, inner.output
        code_owner = type(inner)
        def fingerprint(self): return inner.fingerprint()
        def __call__(self, inputs):
            calls.append(1)
            if len(calls) == 3:
                os.kill(os.getpid(), signal.SIGKILL)  # a hard crash: no cleanup, no finally
            return inner(inputs)
    spec = FeatureSetSpec(name="title", kind="text_embedding", input={{"text_fields": ["title"]}})
    job = FeatureSetJob(FeatureStore({root!r}), "ds", spec, KilledMidway(), plan_inputs(items, spec), shard_size=8)
    job.run_all(0.5, progress=False)
    """
)


def test_resume_after_hard_kill_gives_identical_version(tmp_path: Path, minilm) -> None:
    root = tmp_path / "crashy"
    script = KILL_SCRIPT.format(repo=str(REPO), titles=TITLES, root=str(root))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]
    store = FeatureStore(root)
    assert store.versions("ds", "title") == []  # nothing published by the killed run
    staged = store.staged()
    assert len(staged) == 1 and len(list(staged[0].glob("part-*.parquet"))) == 2
    f = Counting(minilm)
    job, resumed = _run(store, _items(TITLES), f)
    assert len(f.seen) == 40 - 16  # only the 3 unfinished shards ran
    _, clean = _run(FeatureStore(tmp_path / "clean"), _items(TITLES), minilm)
    assert resumed.version == clean.version
    a = store.read_table("ds", "title").drop_columns([]).to_pylist()
    b = FeatureStore(tmp_path / "clean").read_table("ds", "title").to_pylist()
    assert [r["item_id"] for r in a] == [r["item_id"] for r in b] and len({r["item_id"] for r in a}) == 40
    np.testing.assert_array_equal(np.array([r["embedding"] for r in a]), np.array([r["embedding"] for r in b]))
    assert store.staged() == []


def test_append_from_adds_parent_text_dgvae_style(tmp_path: Path, minilm) -> None:
    """DGVAE appends CLIP image words to the item text: append_from keeps the item's own text when the
    parent failed, and the parent version is in lineage."""
    store = FeatureStore(tmp_path)
    items = _items(TITLES[:4])
    words_spec = FeatureSetSpec(name="words", kind="fake", input={"text_fields": ["title"]})
    _, words = _run(store, items, FakeCaptioner(), spec=words_spec)  # item 001 ("cars") fails
    spec = FeatureSetSpec(name="title_plus_words", kind="text_embedding",
                          input={"text_fields": ["title"], "append_from": "words"})
    planned = plan_inputs(items, spec, store=store, dataset="ds", parent_versions={})
    assert planned.inputs[0] == "video number 0 about cats A description of video number 0 about cats."
    assert planned.inputs[1] == "video number 1 about cars"
    assert planned.parents == {"words": words.version}
    rep = FeatureSetJob(store, "ds", spec, minilm, planned).run_all(0.5, progress=False)
    assert rep.errors == 0 and store.manifest("ds", "title_plus_words")["lineage"]["parents"] == {"words": words.version}
