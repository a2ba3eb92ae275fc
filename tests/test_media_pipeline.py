"""MLLM and CLIP featurizers through the extraction engine into the store, on the sample's real media:
tiny random-init models (no weights offline), real processors/batching/decoding, real Parquet."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa

from mmfeat.featurizers.captioning import Captioner
from mmfeat.featurizers.image_embedding import ImageEmbedder
from mmfeat.pipelines.engine.extract import FeatureSetJob, plan_inputs
from mmfeat.pipelines.manifest import FeatureSetSpec
from mmfeat.pipelines.sources import load_source, microlens_mini_root
from mmfeat.pipelines.store.feature_store import FeatureStore
from mmfeat.featurizers.tiny_models import tiny_clip, tiny_llava


def _sample_with_bad_covers(tmp_path: Path) -> pa.Table:
    root = tmp_path / "ml"
    shutil.copytree(microlens_mini_root(), root)
    (root / "covers" / "1.jpg").write_bytes(b"")  # zero-byte
    data = (root / "covers" / "2.jpg").read_bytes()
    (root / "covers" / "2.jpg").write_bytes(data[: len(data) // 3])  # truncated
    (root / "covers" / "3.jpg").unlink()  # missing
    return load_source("microlens", root).items.slice(0, 12)


def test_captions_then_chained_embedding_with_error_rows(tmp_path: Path, minilm) -> None:
    items = _sample_with_bad_covers(tmp_path)
    store = FeatureStore(tmp_path / "store")
    model, processor = tiny_llava()
    cap_spec = FeatureSetSpec(name="cover_caption", kind="caption", input={"media": "image_uri"})
    captioner = Captioner.from_model(model, processor, max_new_tokens=5, batch_size=4)
    job = FeatureSetJob(store, "ml", cap_spec, captioner, plan_inputs(items, cap_spec, data_root=tmp_path / "ml"), shard_size=5)
    rep = job.run_all(0.5, progress=False)
    rows = {r["item_id"]: r for r in store.read_table("ml", "cover_caption").to_pylist()}
    assert rep.rows == 12 and rep.errors == 3
    assert rows["1"]["stage"] == "featurize" and "empty" in rows["1"]["error"].lower()
    assert rows["2"]["stage"] == "featurize" and rows["2"]["error"]
    assert rows["3"]["stage"] == "read" and "file not found" in rows["3"]["error"]
    assert all(isinstance(rows[i]["text"], str) for i in rows if rows[i]["status"] == "ok")
    fp = store.manifest("ml", "cover_caption")["featurizer"]["fingerprint"]
    assert fp["random_init"] is True
    emb_spec = FeatureSetSpec(name="caption_minilm", kind="text_embedding", input={"from": "cover_caption"})
    planned = plan_inputs(items, emb_spec, store=store, dataset="ml", parent_versions={})
    rep2 = FeatureSetJob(store, "ml", emb_spec, minilm, planned).run_all(0.5, progress=False)
    assert rep2.parents == {"cover_caption": rep.version} and rep2.errors == 3
    assert store.manifest("ml", "caption_minilm")["lineage"]["parents"] == {"cover_caption": rep.version}


def test_cover_embeddings_into_store_and_mmrec_export(tmp_path: Path) -> None:
    from mmfeat.pipelines.store.exports import export_mmrec_features

    items = _sample_with_bad_covers(tmp_path)
    store = FeatureStore(tmp_path / "store")
    model, processor, tokenizer = tiny_clip()
    emb = ImageEmbedder.from_model(model, processor, tokenizer, name="tiny-clip", batch_size=4)
    spec = FeatureSetSpec(name="cover_clip", kind="image_embedding", input={"media": "image_uri"})
    rep = FeatureSetJob(store, "ml", spec, emb, plan_inputs(items, spec, data_root=tmp_path / "ml"), shard_size=4).run_all(0.5, progress=False)
    assert rep.errors == 3 and rep.rows == 12
    ok_ids = [r["item_id"] for r in store.read_table("ml", "cover_clip").to_pylist() if r["status"] == "ok"]
    mat = store.read_matrix("ml", "cover_clip", "latest", ok_ids).matrix
    direct = np.stack([r.value for r in emb([str(p) for p in items.to_pandas().set_index("item_id")
                                               .loc[ok_ids, "image_uri"]])])
    np.testing.assert_allclose(mat, direct, atol=1e-5)
    rec = export_mmrec_features(store, "ml", {"image_feat": "cover_clip"}, tmp_path / "mmrec", fill_missing="mean")
    assert len(rec["files"]["image_feat.npy"]["missing"]) == 3  # failed items are filled and reported, not dropped
    assert np.load(tmp_path / "mmrec" / "image_feat.npy").shape == (12, emb.output.dim)
