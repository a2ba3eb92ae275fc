"""Equal work is computed once: across feature sets of a run, across runs, and a fully staged run is
published without building its featurizer (counting fakes stand in for the models)."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from mmfeat.featurizers.base import OutputSpec, Result
from mmfeat.pipelines.store.feature_store import FeatureStore

DS = "microlens-mini"
DESCRIBE = {"kind": "text_description",
            "input": {"text_fields": ["title", "comments"], "template": "Title: {title}\nViewer comments: {comments}"},
            "params": {"backbone": "SmolLM2-135M-Instruct", "max_new_tokens": 48, "batch_size": 16}}


class FakeDescriber:
    """Text -> text, recording every input it computes."""

    name, input_kind, output = "fake-describer", "text", OutputSpec("text")

    def __init__(self, seen: list[str]) -> None:
        self.seen = seen

    def fingerprint(self):
        return {"kind": "fake-describer"}

    def __call__(self, inputs):
        self.seen += list(inputs)
        return [Result(value=f"About {t.splitlines()[0][7:]}.") for t in inputs]


class FakeEmbedder:
    """Text -> a 2-d vector, recording every input it computes."""

    name, input_kind, output = "fake-embedder", "text", OutputSpec("embedding", 2, "float32")

    def __init__(self, seen: list[str]) -> None:
        self.seen = seen

    def fingerprint(self):
        return {"kind": "fake-embedder"}

    def __call__(self, inputs):
        self.seen += list(inputs)
        return [Result(value=np.array([len(t), 1.0], np.float32)) for t in inputs]


@pytest.fixture()
def fakes(monkeypatch):
    """The registry builds counting fakes; ``built`` counts builds, ``seen`` the inputs computed per kind."""
    import mmfeat.featurizers.registry as registry

    state = {"built": [], "seen": {"text_description": [], "text_embedding": []}}

    def build(kind, params):
        state["built"].append(kind)
        cls = FakeDescriber if kind == "text_description" else FakeEmbedder
        return cls(state["seen"][kind])

    monkeypatch.setattr(registry, "build_featurizer", build)
    return state


def _manifest(feature_sets: list[dict]):
    from mmfeat.pipelines.manifest import PACKAGE_ROOT, validate_manifest

    raw = yaml.safe_load((PACKAGE_ROOT / "manifests" / "microlens.yaml").read_text())
    raw["data_root"] = str(PACKAGE_ROOT / "manifests" / "data" / "microlens-mini")
    raw["feature_sets"] = feature_sets
    return validate_manifest(raw)


#: The demo's shape: a description and its embedding, then a caption whose VLM is not here, so its fallback
#: (the same describer on the same fields) runs, and the caption's embedding.
DEMO_LIKE = [
    {"name": "item_description", **DESCRIBE},
    {"name": "description_emb", "kind": "text_embedding", "input": {"from": "item_description"},
     "params": {"backbone": "all-MiniLM-L6-v2"}},
    {"name": "cover_caption", "kind": "caption", "input": {"media": "image_uri"},
     "params": {"backbone": "Qwen/Qwen2-VL-2B-Instruct"}, "fallback": DESCRIBE, "optional": True},
    {"name": "cover_caption_emb", "kind": "text_embedding", "input": {"from": "cover_caption"},
     "params": {"backbone": "all-MiniLM-L6-v2"}},
]


def test_equal_work_is_computed_once_across_feature_sets_and_runs(tmp_path, fakes) -> None:
    from mmfeat.pipelines.engine.extract import extract_manifest

    store = FeatureStore(tmp_path)
    reports = {r.feature_set: r for r in extract_manifest(_manifest(DEMO_LIKE), store=store)}
    assert len(fakes["seen"]["text_description"]) == 40 and len(fakes["seen"]["text_embedding"]) == 40
    assert fakes["built"] == ["text_description", "text_embedding"]  # the reusing sets load no model
    for first, second in (("item_description", "cover_caption"), ("description_emb", "cover_caption_emb")):
        a, b = reports[first], reports[second]
        assert (b.computed, b.reused, b.cache_hit, b.rows) == (0, 40, False, 40)
        assert b.version == a.version  # the same rows: the content-named id is equal
        assert store.read_table(DS, second).to_pylist() == store.read_table(DS, first).to_pylist()
        m = store.manifest(DS, second)
        assert m["lineage"]["reused_from"] == {"feature_set": first, "version": a.version}
        assert f"rows reused from {first}/{a.version}" in b.note
        store.verify(DS, second)
    assert store.manifest(DS, "cover_caption_emb")["lineage"]["parents"] == {"cover_caption": reports["cover_caption"].version}
    assert store.manifest(DS, "cover_caption")["input"] == DESCRIBE["input"]  # the spec that would have run

    # the next run: every set is its own cache hit, nothing built
    again = extract_manifest(_manifest(DEMO_LIKE), store=store)
    assert all(r.cache_hit for r in again) and fakes["built"] == ["text_description", "text_embedding"]

    # across runs: a new feature set asking for the same work reuses the published rows
    later = _manifest([{"name": "blurb", **DESCRIBE}])
    (blurb,) = extract_manifest(later, store=store)
    assert (blurb.computed, blurb.reused) == (0, 40) and fakes["built"] == ["text_description", "text_embedding"]
    assert len(fakes["seen"]["text_description"]) == 40


def test_other_params_are_other_work(tmp_path, fakes) -> None:
    from mmfeat.pipelines.engine.extract import extract_manifest

    other = {**DESCRIBE, "params": {**DESCRIBE["params"], "max_new_tokens": 32}}
    extract_manifest(_manifest([{"name": "a", **DESCRIBE}, {"name": "b", **other}]), store=FeatureStore(tmp_path))
    assert len(fakes["seen"]["text_description"]) == 80


def test_a_fully_staged_run_is_published_without_building_the_featurizer(tmp_path, fakes, monkeypatch) -> None:
    from mmfeat.pipelines.engine.extract import FeatureSetJob, extract_manifest

    m = _manifest([{"name": "title_emb", "kind": "text_embedding", "input": {"text_fields": ["title"]},
                    "params": {"backbone": "all-MiniLM-L6-v2"}}])
    m = m.model_copy(update={"shard_size": 16})
    store = FeatureStore(tmp_path)
    finish = FeatureSetJob.finish

    def killed_before_publish(self, *a, **kw):
        raise KeyboardInterrupt("killed after the last shard")

    monkeypatch.setattr(FeatureSetJob, "finish", killed_before_publish)
    with pytest.raises(KeyboardInterrupt):
        extract_manifest(m, store=store)
    assert fakes["built"] == ["text_embedding"] and len(fakes["seen"]["text_embedding"]) == 40
    monkeypatch.setattr(FeatureSetJob, "finish", finish)
    (report,) = extract_manifest(m, store=store)
    assert fakes["built"] == ["text_embedding"]  # resumed with 0 shards left: no model loaded
    assert (report.rows, report.errors, report.cache_hit) == (40, 0, False)
    man = store.manifest(DS, "title_emb")
    assert man["featurizer"]["name"] == "fake-embedder" and man["featurizer"]["fingerprint"]["kind"] == "fake-embedder"

    fresh = FeatureStore(tmp_path / "fresh")  # the same request run in one go gives the same version
    (clean,) = extract_manifest(m, store=fresh)
    assert clean.version == report.version
