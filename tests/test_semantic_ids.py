"""Semantic IDs: the quantizers, the featurizer's rules, and codes versions in the store."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sp
import yaml

from mmfeat.featurizers.params import ParamsError
from mmfeat.featurizers.quantization import code_stats, dedup_level, propagate, residual_kmeans
from mmfeat.featurizers.semantic_ids import SemanticIDs
from tests.conftest import import_microlens_features


def _points(n: int = 120, d: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


def test_rqkmeans_residuals_shrink_level_by_level():
    codes, recon, norms = residual_kmeans(_points(), levels=4, codebook_size=5, seed=0)
    assert codes.shape == (120, 4) and codes.max() < 5
    assert all(b < a for a, b in zip(norms, norms[1:])), norms
    assert np.linalg.norm(_points() - recon, axis=1).mean() == pytest.approx(norms[-1], rel=1e-5)


def test_dedup_level_numbers_items_sharing_a_tuple():
    codes = np.array([[1, 2], [0, 0], [1, 2], [1, 2], [0, 1]])
    assert dedup_level(codes).tolist() == [0, 0, 1, 2, 0]
    stats = code_stats(codes, codebook_size=4)
    assert stats["collision_rate"] == 0.6 and stats["max_items_per_tuple"] == 3 and stats["unique_tuples"] == 3


@pytest.mark.parametrize("method", ["rqkmeans", "rqvae"])
def test_codes_are_unique_after_dedup_and_deterministic(method, one_torch_thread):
    extra = {"epochs": 5, "hidden": [16], "latent_dim": 4, "batch_size": 64} if method == "rqvae" else {}
    spec = {"method": method, "levels": 2, "codebook_size": 4, **extra}  # 16 tuples for 120 items: collisions
    fit = SemanticIDs.from_spec(spec).fit(_points())
    assert fit.codes.shape == (120, 3)
    assert len(np.unique(fit.codes, axis=0)) == 120
    assert fit.stats["collision_rate"] > 0 and len(fit.stats["usage_per_level"]) == 2
    assert 0 < fit.stats["reconstruction_error"] < 1.5
    again = SemanticIDs.from_spec(spec).fit(_points())
    assert np.array_equal(fit.codes, again.codes)
    other = SemanticIDs.from_spec({**spec, "seed": 1}).fit(_points())
    assert not np.array_equal(fit.codes, other.codes)


def test_das_alignment_and_graph_options_read_interactions(one_torch_thread):
    x = _points(60)
    rng = np.random.default_rng(0)
    ui = sp.csr_matrix((np.ones(300), (rng.integers(0, 30, 300), rng.integers(0, 60, 300))), shape=(30, 60))
    das = SemanticIDs.from_spec({"levels": 2, "codebook_size": 4, "epochs": 5, "hidden": [16], "latent_dim": 4,
                                 "cf_align": {"dim": 8}})
    fit = das.fit(x, ui)
    assert "cf_alignment_loss" in fit.stats and len(np.unique(fit.codes, axis=0)) == 60
    with pytest.raises(ValueError, match="interactions are needed"):
        das.fit(x)
    with pytest.raises(ValueError, match="interactions are needed"):
        SemanticIDs.from_spec({"method": "rqkmeans", "codebook_size": 4}).fit(x, ui)


def test_graph_propagation_smooths_over_co_consumed_items():
    x = np.eye(4, dtype=np.float32)
    ui = sp.csr_matrix(np.array([[1, 1, 0, 0], [1, 1, 0, 0]], np.float32))  # items 0, 1 co-consumed; 2, 3 never
    out = propagate(x, ui, layers=2)
    assert np.allclose(out[2], x[2]) and np.allclose(out[3], x[3])  # no interactions: own vector
    assert out[0, 1] > 0 and out[1, 0] > 0 and out[0, 2] == 0
    assert np.allclose(propagate(x, ui, layers=0), x)


@pytest.mark.parametrize("params, match", [
    ({"method": "rqkmeans", "cf_align": {}}, "only applies to method: rqvae"),
    ({"method": "rqkmeans", "epochs": 3}, "only applies to method: rqvae"),
    ({"holdout": 1}, "only applies with graph_layers"),
    ({"levls": 3}, "did you mean levels"),
    ({"cf_align": {"wieght": 1.0}}, "cf_align.wieght: unknown parameter; did you mean weight"),
])
def test_params_that_would_be_ignored_are_errors(params, match):
    with pytest.raises(ParamsError, match=match):
        SemanticIDs.from_spec(params)


def test_more_codes_than_items_is_a_clear_error():
    with pytest.raises(ValueError, match="at most 10"):
        SemanticIDs.from_spec({"method": "rqkmeans", "codebook_size": 16}).fit(_points(10))


# --------------------------------------------------------------------------- store versions

def _manifest(tmp_path, sid_params: dict, parent_kind: str = "text_embedding"):
    from mmfeat.pipelines.manifest import PACKAGE_ROOT, validate_manifest

    raw = yaml.safe_load((PACKAGE_ROOT / "manifests" / "microlens.yaml").read_text())
    raw["data_root"] = str(PACKAGE_ROOT / "manifests" / "data" / "microlens-mini")
    raw["feature_sets"] = [
        {"name": "emb", "kind": parent_kind, "input": {"text_fields": ["title"]}},
        {"name": "sid", "kind": "semantic_ids", "input": {"from": "emb"}, "params": sid_params},
    ]
    return validate_manifest(raw)


def test_codes_version_records_lineage_stats_and_is_a_cache_hit(tmp_path):
    from mmfeat.pipelines.engine.extract import extract_manifest
    from mmfeat.pipelines.store.feature_store import FeatureStore

    root = import_microlens_features(tmp_path, [("emb", None)], dim=8)
    store = FeatureStore(root)
    m = _manifest(tmp_path, {"method": "rqkmeans", "levels": 2, "codebook_size": 4})
    (report,) = extract_manifest(m, store=store, feature_sets=["sid"])
    assert not report.cache_hit and report.errors == 0
    man = store.manifest("microlens-mini", "sid")
    assert man["output"] == {"kind": "codes", "dim": 3, "dtype": "int32"}
    assert man["lineage"]["parents"] == {"emb": store.resolve("microlens-mini", "emb")}
    assert {"usage_per_level", "collision_rate", "reconstruction_error"} <= set(man["codes"])
    codes, ids, version = store.read_codes("microlens-mini", "sid")
    assert version == report.version and len(np.unique(codes, axis=0)) == len(ids) == 40
    table = store.read_table("microlens-mini", "sid")
    assert table.schema.field("codes").type == pa.list_(pa.int32(), 3)
    (again,) = extract_manifest(m, store=store, feature_sets=["sid"])
    assert again.cache_hit and again.version == report.version
    # deterministic: the same request rebuilt from scratch gets the same rows, hence the same version id
    import shutil

    shutil.rmtree(store.feature_dir("microlens-mini", "sid"))
    (rebuilt,) = extract_manifest(m, store=store, feature_sets=["sid"])
    assert not rebuilt.cache_hit and rebuilt.version == report.version
    with pytest.raises(Exception, match="not semantic"):
        store.read_codes("microlens-mini", "emb")
    with pytest.raises(Exception, match="holds codes, not embeddings: pass an embedding feature set"):
        store.read_matrix("microlens-mini", "sid")  # e.g. an MMRec export of a codes version


def test_items_without_a_parent_vector_get_error_rows(tmp_path):
    from mmfeat.pipelines.engine.extract import load_items
    from mmfeat.pipelines.store.imports import import_features
    from mmfeat.pipelines.manifest import load_manifest
    from mmfeat.pipelines.engine.extract import extract_manifest
    from mmfeat.pipelines.store.feature_store import FeatureStore

    ids = load_items(load_manifest("microlens"))[0].column("item_id").to_pylist()
    (tmp_path / "ids.txt").write_text("\n".join(ids[3:]) + "\n")
    np.save(tmp_path / "e.npy", _points(len(ids) - 3))
    store = FeatureStore(tmp_path / "store")
    import_features(store, "microlens-mini", "emb", tmp_path / "e.npy", ids=tmp_path / "ids.txt")
    (report,) = extract_manifest(_manifest(tmp_path, {"method": "rqkmeans", "levels": 2, "codebook_size": 4}),
                                 store=store, feature_sets=["sid"])
    assert report.errors == 3
    rows = store.read_table("microlens-mini", "sid").to_pylist()
    bad = [r for r in rows if r["status"] == "error"]
    assert sorted(r["item_id"] for r in bad) == sorted(ids[:3])
    assert all(r["stage"] == "parent" and "no ok vector" in r["error"] and r["codes"] is None for r in bad)
    with pytest.raises(Exception, match="no semantic ID"):
        store.read_codes("microlens-mini", "sid", item_ids=ids)


def test_graph_codes_never_see_the_held_out_interactions():
    from mmfeat.pipelines.engine.codes_job import holdout_interactions, user_item_matrix

    t = pa.table({"user_id": ["a"] * 5 + ["b"] * 3, "item_id": ["1", "2", "3", "4", "5", "1", "2", "3"],
                  "timestamp": pa.array([1, 2, 3, 3, 5, 9, 8, 7], pa.int64())})
    kept = holdout_interactions(t, 2)
    assert sorted(zip(kept["user_id"], kept["item_id"])) == [("a", "1"), ("a", "2"), ("a", "3"), ("b", "3")]
    m = user_item_matrix(kept, ["1", "2", "3", "4", "5"])
    assert m.shape == (2, 5) and m.nnz == 4


def test_manifest_check_knows_what_a_parent_produces(tmp_path):
    from mmfeat.pipelines.manifest import ManifestError, PACKAGE_ROOT, validate_manifest

    raw = yaml.safe_load((PACKAGE_ROOT / "manifests" / "microlens.yaml").read_text())
    raw["feature_sets"] = [
        {"name": "emb", "kind": "text_embedding", "input": {"text_fields": ["title"]}},
        {"name": "sid", "kind": "semantic_ids", "input": {"text_fields": ["title"]}},
        {"name": "re", "kind": "text_embedding", "input": {"from": "emb"}},
    ]
    with pytest.raises(ManifestError) as exc:
        validate_manifest(raw)
    text = str(exc.value)
    assert "feature_sets.1.input: semantic_ids reads embedding input, but it is given text" in text
    assert "feature_sets.2.input: text_embedding reads text input, but it is given embedding" in text


def test_train_request_checks_the_kind_each_role_reads(tmp_path):
    from mmfeat.pipelines.engine.extract import extract_manifest
    from mmfeat.pipelines.store.feature_store import FeatureStore
    from mmfeat.pipelines.training.run import TrainRequestError, validate_train_request

    root = import_microlens_features(tmp_path, [("emb", None)], dim=8)
    extract_manifest(_manifest(tmp_path, {"method": "rqkmeans", "levels": 2, "codebook_size": 4}),
                     store=FeatureStore(root), feature_sets=["sid"])
    common = dict(versus=None, overrides=None, grid=None, store_root=root)
    with pytest.raises(TrainRequestError, match="holds embedding, not codes"):
        validate_train_request("microlens", model="TIGER", features={"codes": "emb"}, **common)
    with pytest.raises(TrainRequestError, match="holds codes, not embeddings"):
        validate_train_request("microlens", model="SASRec", features={"text": "sid"}, **common)
    validate_train_request("microlens", model="TIGER", features={"codes": "sid"}, **common)


def test_tiger_trains_on_a_codes_version_and_records_it(tmp_path, one_torch_thread):
    from mmfeat.pipelines.engine.extract import extract_manifest
    from mmfeat.pipelines.store.feature_store import FeatureStore
    from mmfeat.pipelines.training.run import run_training
    from tests.test_generative import TINY_TIGER

    root = import_microlens_features(tmp_path, [("emb", None)], dim=8)
    (report,) = extract_manifest(_manifest(tmp_path, {"method": "rqkmeans", "levels": 2, "codebook_size": 4}),
                                 store=FeatureStore(root), feature_sets=["sid"])
    out = run_training("microlens", model="TIGER", features={"codes": "sid"}, store_root=root,
                       runs_dir=str(tmp_path / "runs"), overrides={**TINY_TIGER, "epochs": 2}, progress=False)
    run = out["best"]
    assert run["feature_versions"] == {"codes": f"microlens-mini/sid/{report.version}"}
    assert run["data"]["codes"] == [40, 3] and {"recall@5", "ndcg@10"} <= set(run["test"])


def test_a_missing_parent_says_how_to_build_it(tmp_path):
    from mmfeat.pipelines.engine.extract import extract_manifest
    from mmfeat.pipelines.store.feature_store import FeatureStore, StoreError

    with pytest.raises(StoreError, match="build it first: `mmfeat extract microlens --feature-set emb`"):
        extract_manifest(_manifest(tmp_path, {"method": "rqkmeans", "codebook_size": 4}),
                         store=FeatureStore(tmp_path / "store"), feature_sets=["sid"])


def test_the_same_fit_of_the_same_vectors_runs_once_across_feature_sets(tmp_path, monkeypatch):
    """Equal work once: a second semantic-ID set asking for the same fit of the same parent vectors gets a
    version of its own holding the first one's codes; nothing is fitted again."""
    from mmfeat.featurizers.semantic_ids import SemanticIDs
    from mmfeat.pipelines.engine.extract import extract_manifest
    from mmfeat.pipelines.manifest import validate_manifest
    from mmfeat.pipelines.store.feature_store import FeatureStore

    fits = []
    real_fit = SemanticIDs.fit
    monkeypatch.setattr(SemanticIDs, "fit", lambda self, *a, **kw: fits.append(1) or real_fit(self, *a, **kw))
    store = FeatureStore(import_microlens_features(tmp_path, [("emb", None)], dim=8))
    params = {"method": "rqkmeans", "levels": 2, "codebook_size": 4}
    m = _manifest(tmp_path, params).model_dump(by_alias=True, exclude_none=True)
    m["feature_sets"].append({"name": "sid_copy", "kind": "semantic_ids", "input": {"from": "emb"}, "params": params})
    first, second = extract_manifest(validate_manifest(m), store=store, feature_sets=["sid", "sid_copy"])
    assert len(fits) == 1 and (second.computed, second.reused, second.cache_hit) == (0, 40, False)
    assert second.version == first.version
    man = store.manifest("microlens-mini", "sid_copy")
    assert man["lineage"]["reused_from"] == {"feature_set": "sid", "version": first.version}
    assert man["codes"]["collision_rate"] == store.manifest("microlens-mini", "sid")["codes"]["collision_rate"]
    assert store.read_codes("microlens-mini", "sid_copy")[0].tolist() == store.read_codes("microlens-mini", "sid")[0].tolist()


def test_a_small_rqvae_fit_runs_on_one_thread_with_the_same_codes(monkeypatch):
    """The demo's 40-item fit took 94 s on a loaded 2-core machine: every tiny op of 200 steps waited at a
    thread barrier. A fit whose steps are small runs on one thread (same codes and loss curve); a large
    catalogue's fit keeps the process's threads; the setting is restored after."""
    import torch

    import mmfeat.featurizers.quantization as q

    seen: list[int] = []
    real_make = q.make_rqvae
    monkeypatch.setattr(q, "make_rqvae", lambda *a, **kw: seen.append(torch.get_num_threads()) or real_make(*a, **kw))
    kw = dict(levels=2, codebook_size=4, latent_dim=8, hidden=[16], epochs=3, batch_size=1024, lr=1e-3,
              commitment_weight=0.25, seed=0)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        small = _points(40, 384)
        one = q.train_rqvae(small, **kw)
        monkeypatch.setattr(q, "SMALL_STEP_ELEMENTS", 0)  # as before: the process's threads
        two = q.train_rqvae(small, **kw)
        monkeypatch.setattr(q, "SMALL_STEP_ELEMENTS", 128 * 1024)
        q.train_rqvae(_points(400, 384), **kw)  # 400 x 384 per step: a large fit
        assert seen == [1, 2, 2] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert np.array_equal(one.codes, two.codes) and one.losses == two.losses
