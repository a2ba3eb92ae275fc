"""Exports other tools run unchanged (MMRec, Hugging Face, FuxiCTR) and ``store import``.

Store versions here are made with :func:`mmfeat.pipelines.store.imports.import_features` from vectors that
encode their item id (row of item ``i`` = ``[int(i), 0, ...]``), so every alignment is checkable.
The MMRec tests run on the embedded MicroLens sample's manifest (40 items, 60 users).
"""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mmfeat.pipelines.store.exports import export_hf, export_mmrec, export_mmrec_features, read_item_order
from mmfeat.pipelines.store.imports import FeatureImportError, import_features
from mmfeat.pipelines.store.feature_store import FeatureStore, StoreError

ROOT = Path(__file__).resolve().parents[1]
DS = "microlens-mini"  # the microlens manifest's store dataset


def _id_vectors(ids: list[str], dim: int = 4) -> np.ndarray:
    mat = np.zeros((len(ids), dim), np.float32)
    mat[:, 0] = [float(i) for i in ids]
    mat[:, 1] = 1.0
    return mat


def _import(store: FeatureStore, tmp: Path, ids: list[str], mat: np.ndarray, fs: str = "fs",
            dataset: str = DS) -> str:
    np.save(tmp / f"{fs}.npy", mat)
    (tmp / f"{fs}.ids").write_text("\n".join(ids) + "\n")
    return import_features(store, dataset, fs, tmp / f"{fs}.npy", ids=tmp / f"{fs}.ids")


@pytest.fixture(scope="module")
def sample_split() -> pd.DataFrame:
    from mmfeat.pipelines.store.exports import split_frame
    from mmfeat.pipelines.manifest import load_manifest

    return split_frame(load_manifest("microlens"))[0]


# ---------------------------------------------------------------------------- MMRec
def test_mmrec_export_is_a_complete_mmrec_dataset(tmp_path: Path, sample_split: pd.DataFrame) -> None:
    store = FeatureStore(tmp_path / "store")
    ids = sorted(set(sample_split["item_id"]), key=int)
    _import(store, tmp_path, ids, _id_vectors(ids))
    out = tmp_path / "mlmini"
    rec = export_mmrec(store, "microlens", {"text_feat": "fs"}, out)
    for f in ("mlmini.inter", "mlmini.yaml", "u_id_mapping.csv", "i_id_mapping.csv", "text_feat.npy", "_export.json"):
        assert (out / f).is_file(), f
    # read as MMRec's RecDataset does: tab-separated, these three columns, item_num = max + 1
    inter = pd.read_csv(out / "mlmini.inter", sep="\t", usecols=["userID", "itemID", "x_label"])
    assert list(pd.read_csv(out / "mlmini.inter", sep="\t", nrows=0).columns) == ["userID", "itemID", "timestamp",
                                                                                    "x_label"]
    feat = np.load(out / "text_feat.npy")
    assert feat.dtype == np.float32 and feat.shape == (int(inter.itemID.max()) + 1, 4) == (len(ids), 4)
    assert int(inter.userID.max()) + 1 == sample_split["user_id"].nunique() == rec["n_users"]
    assert len(inter) == len(sample_split)
    # integer item ids in integer order (not "1", "10", "11", ...), row k = item mapping[k]
    order = read_item_order(out / "i_id_mapping.csv")
    assert order == ids and order[:3] == ["1", "2", "3"]
    np.testing.assert_array_equal(feat[:, 0], [float(i) for i in order])
    # x_label per (user, item) is the split's
    umap = pd.read_csv(out / "u_id_mapping.csv", sep="\t", dtype=str)
    assert umap["userID"].astype(int).tolist() == list(range(len(umap)))
    back = inter.assign(user_id=umap["user_id"].to_numpy()[inter.userID], item_id=np.asarray(order)[inter.itemID])
    got = sorted(zip(back.user_id, back.item_id, back.x_label))
    want = sorted(zip(sample_split.user_id, sample_split.item_id, sample_split.split.astype(int)))
    assert got == want
    cfg = (out / "mlmini.yaml").read_text()
    assert "inter_file_name: mlmini.inter" in cfg and "text_feature_file: text_feat.npy" in cfg
    assert "vision_feature_file" not in cfg
    # MMRec's default topk [5, 10, 20, 50] cannot rank 40 items (torch.topk fails): cut-offs it can
    import yaml

    assert yaml.safe_load(cfg)["topk"] == [5, 10, 20] == rec["config_overrides"]["topk"]
    saved = json.loads((out / "_export.json").read_text())
    assert saved == json.loads(json.dumps(rec, default=str))
    assert rec["split"]["method"] == "random" and rec["files"]["text_feat.npy"]["missing_count"] == 0


def test_mmrec_export_records_the_split_train_uses(tmp_path: Path) -> None:
    from mmfeat.pipelines.flows.train_flow import load_training_data
    from mmfeat.recommenders.data import hash_split_frame

    store = FeatureStore(tmp_path / "store")
    from mmfeat.pipelines.store.exports import split_frame
    from mmfeat.pipelines.manifest import load_manifest

    split_df = split_frame(load_manifest("microlens"), split_seed=7)[0]
    ids = sorted(set(split_df["item_id"]), key=int)
    _import(store, tmp_path, ids, _id_vectors(ids))
    rec = export_mmrec(store, "microlens", {"text_feat": "fs"}, tmp_path / "x", split_seed=7)
    seed_kw = "split_seed" if "split_seed" in inspect.signature(load_training_data).parameters else "seed"
    data, _info = load_training_data("microlens", {}, store_root=str(store.root), runs_dir=str(tmp_path / "runs"),
                                     **{seed_kw: 7})
    assert rec["split"]["sha256"] == data.split_hash == hash_split_frame(split_df)
    assert export_mmrec(store, "microlens", {"text_feat": "fs"}, tmp_path / "y")["split"]["sha256"] != data.split_hash


def test_mmrec_export_fills_missing_items_by_reported_policy(tmp_path: Path, sample_split: pd.DataFrame) -> None:
    store = FeatureStore(tmp_path / "store")
    ids = sorted(set(sample_split["item_id"]), key=int)
    have = [i for i in ids if i not in ("5", "12")]  # no row for 5 and 12; 7 is an error row (NaN)
    mat = _id_vectors(have)
    mat[have.index("7")] = np.nan
    _import(store, tmp_path, have, mat)
    rec = export_mmrec(store, "microlens", {"text_feat": "fs"}, tmp_path / "m")
    f = rec["files"]["text_feat.npy"]
    assert f["missing_count"] == 3 and f["missing"] == ["5", "7", "12"] and f["fill_missing"] == "mean"
    feat = np.load(tmp_path / "m" / "text_feat.npy")
    assert feat.shape[0] == len(ids)  # every item covered, failed ones too
    ok = np.isfinite(mat).all(axis=1)
    np.testing.assert_allclose(feat[ids.index("7")], mat[ok].mean(axis=0), rtol=1e-6)
    zero = export_mmrec(store, "microlens", {"text_feat": "fs"}, tmp_path / "z", fill_missing=0.0)
    assert zero["files"]["text_feat.npy"]["fill_missing"] == 0.0
    assert not np.load(tmp_path / "z" / "text_feat.npy")[ids.index("5")].any()
    with pytest.raises(StoreError, match="3 of 40 requested items have no feature row"):
        export_mmrec(store, "microlens", {"text_feat": "fs"}, tmp_path / "e", fill_missing=None)
    with pytest.raises(ValueError, match="fill_missing"):
        export_mmrec(store, "microlens", {"text_feat": "fs"}, tmp_path / "e", fill_missing="median")


def test_mmrec_export_item_order_must_match_interacted_items(tmp_path: Path, sample_split: pd.DataFrame) -> None:
    store = FeatureStore(tmp_path / "store")
    ids = sorted(set(sample_split["item_id"]), key=int)
    _import(store, tmp_path, ids, _id_vectors(ids))
    rev = ids[::-1]
    mapping = tmp_path / "i_id_mapping.csv"
    mapping.write_text("asin\titemID\n" + "".join(f"{a}\t{k}\n" for k, a in enumerate(rev)))
    export_mmrec(store, "microlens", {"image_feat": "fs"}, tmp_path / "o", item_order=mapping)
    assert read_item_order(tmp_path / "o" / "i_id_mapping.csv") == rev
    np.testing.assert_array_equal(np.load(tmp_path / "o" / "image_feat.npy")[:, 0], [float(i) for i in rev])
    assert "vision_feature_file: image_feat.npy" in (tmp_path / "o" / "o.yaml").read_text()
    with pytest.raises(StoreError, match="lacks 1 interacted items"):
        export_mmrec(store, "microlens", {"text_feat": "fs"}, tmp_path / "p", item_order=ids[1:])
    with pytest.raises(StoreError, match="1 items without interactions"):
        export_mmrec(store, "microlens", {"text_feat": "fs"}, tmp_path / "p", item_order=[*ids, "999"])
    with pytest.raises(StoreError, match="MMRec reads only"):
        export_mmrec(store, "microlens", {"txt": "fs"}, tmp_path / "p")


def test_mmrec_features_only_export_keeps_failed_items(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path / "store")
    ids = ["10", "2", "1"]
    mat = _id_vectors(ids)
    mat[1] = np.inf
    _import(store, tmp_path, ids, mat, dataset="ds")
    rec = export_mmrec_features(store, "ds", {"text_feat": "fs"}, tmp_path / "f")
    assert read_item_order(tmp_path / "f" / "i_id_mapping.csv") == ["1", "2", "10"]
    assert rec["files"]["text_feat.npy"]["missing"] == ["2"] and np.load(tmp_path / "f" / "text_feat.npy").shape == (3, 4)


def test_read_item_order_id_column(tmp_path: Path) -> None:
    p = tmp_path / "i_id_mapping.csv"
    p.write_text("asin\titemID\nB0X\t1\nA0Y\t0\n")
    assert read_item_order(p) == ["A0Y", "B0X"]
    assert read_item_order(p, id_column="itemID") == ["0", "1"]
    p.write_text("asin\titemID\nB0X\t2\nA0Y\t0\n")
    with pytest.raises(StoreError, match="not 0..n-1"):
        read_item_order(p)


# ---------------------------------------------------------------------------- Hugging Face
def test_hf_export_carries_the_version_manifest(tmp_path: Path) -> None:
    import datasets

    store = FeatureStore(tmp_path / "store")
    ids = ["1", "2", "10"]
    v = _import(store, tmp_path, ids, _id_vectors(ids), dataset="ds")
    export_hf(store, "ds", "fs", tmp_path / "hf")
    info = datasets.load_from_disk(str(tmp_path / "hf")).info
    manifest = json.loads(info.description)
    assert manifest == json.loads(json.dumps(store.manifest("ds", "fs", v), default=str))
    assert manifest["lineage"]["kind"] == "imported" and manifest["featurizer"]["fingerprint_hash"]
    assert (info.dataset_name, info.config_name) == ("ds", "fs")


# ---------------------------------------------------------------------------- store import
def test_import_mmrec_npy_with_its_mapping(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path / "store")
    mat = np.random.default_rng(1).normal(size=(3, 5))  # float64 in, float32 stored
    np.save(tmp_path / "image_feat.npy", mat)
    (tmp_path / "i_id_mapping.csv").write_text("asin\titemID\nB2\t2\nA0\t0\nC1\t1\n")
    v = import_features(store, "baby", "img", tmp_path / "image_feat.npy", ids=tmp_path / "i_id_mapping.csv", tag="mmrec")
    read = store.read_matrix("baby", "img", "mmrec", ["A0", "C1", "B2"])
    np.testing.assert_allclose(read.matrix, mat.astype(np.float32))
    m = store.manifest("baby", "img", v)
    lin = m["lineage"]
    assert lin["kind"] == "imported" and lin["format"] == "mmrec-npy" and lin["source_dtype"] == "float64"
    from mmfeat.pipelines.store.feature_store import file_sha256

    assert lin["file_sha256"] == file_sha256(tmp_path / "image_feat.npy")
    assert lin["ids_sha256"] == file_sha256(tmp_path / "i_id_mapping.csv")
    assert store.aliases("baby", "img") == {"latest": v, "mmrec": v}
    # row k = itemID k, for sources that keep MMRec's integer ids
    v2 = import_features(store, "baby", "img_ids", tmp_path / "image_feat.npy", ids=tmp_path / "i_id_mapping.csv",
                         id_column="itemID")
    np.testing.assert_allclose(store.read_matrix("baby", "img_ids", v2, ["0", "1", "2"]).matrix, mat.astype(np.float32))


def test_import_parquet_and_reimport_is_the_same_version(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path / "store")
    vecs = [[1.0, 2.0], [3.0, 4.0], None]
    pq.write_table(pa.table({"asin": ["a", "b", "c"], "vec": pa.array(vecs, pa.list_(pa.float32()))}), tmp_path / "f.parquet")
    v = import_features(store, "ds", "fs", tmp_path / "f.parquet", id_column="asin", vector_column="vec")
    t = store.read_table("ds", "fs", v).to_pylist()
    assert [(r["item_id"], r["status"], r["stage"]) for r in t] == [("a", "ok", None), ("b", "ok", None),
                                                                   ("c", "error", "import")]
    assert t[2]["error"] == "imported vector is null"
    assert import_features(store, "ds", "fs", tmp_path / "f.parquet", id_column="asin", vector_column="vec") == v
    assert len(store.versions("ds", "fs")) == 1
    with pytest.raises(FeatureImportError, match=r"no column \['item_id'\]"):
        import_features(store, "ds", "fs", tmp_path / "f.parquet", vector_column="vec")


def test_import_nonfinite_rows_are_error_rows(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path / "store")
    mat = np.ones((3, 2), np.float32)
    mat[1, 0] = np.nan
    mat[2, 1] = np.inf
    ids = ["x", "y", "z"]
    v = _import(store, tmp_path, ids, mat, dataset="ds")
    m = store.manifest("ds", "fs", v)
    assert m["errors"] == 2 and m["lineage"]["error_rows"] == 2
    rows = {r["item_id"]: r for r in store.read_table("ds", "fs", v).to_pylist()}
    assert rows["y"]["status"] == "error" and rows["y"]["error"] == "imported vector has NaN/inf values"
    with pytest.raises(StoreError, match="no feature row"):
        store.read_matrix("ds", "fs", v, ["x", "y"])
    mat[0, 0] = np.nan
    with pytest.raises(FeatureImportError, match="no usable row"):
        _import(store, tmp_path, ids, mat, dataset="ds", fs="all_bad")


@pytest.mark.parametrize(
    ("array", "ids", "match"),
    [
        (np.ones(3, np.float32), ["a", "b", "c"], "expected a 2-D matrix"),
        (np.ones((3, 2, 2), np.float32), ["a", "b", "c"], "expected a 2-D matrix"),
        (np.ones((3, 2), np.float32), ["a", "b"], "2 ids for 3 rows"),
        (np.ones((3, 2), np.float32), ["a", "b", "a"], "1 duplicate ids"),
        (np.array([["a", "b"]]), ["a"], "expected numbers"),
    ],
)
def test_import_refuses_bad_arrays_and_ids(tmp_path: Path, array: np.ndarray, ids: list[str], match: str) -> None:
    store = FeatureStore(tmp_path / "store")
    np.save(tmp_path / "f.npy", array)
    (tmp_path / "ids.txt").write_text("\n".join(ids) + "\n")
    with pytest.raises(FeatureImportError, match=match):
        import_features(store, "ds", "fs", tmp_path / "f.npy", ids=tmp_path / "ids.txt")
    assert not store.feature_sets("ds") or not store.versions("ds", "fs")


def test_import_needs_ids_for_npy_and_refuses_ragged_parquet(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path / "store")
    np.save(tmp_path / "f.npy", np.ones((2, 2), np.float32))
    with pytest.raises(FeatureImportError, match="needs its ids"):
        import_features(store, "ds", "fs", tmp_path / "f.npy")
    pq.write_table(pa.table({"item_id": ["a", "b"], "embedding": [[1.0, 2.0], [1.0]]}), tmp_path / "r.parquet")
    with pytest.raises(FeatureImportError, match="different lengths"):
        import_features(store, "ds", "fs", tmp_path / "r.parquet")
    (tmp_path / "x.csv").write_text("item_id,embedding\n")
    with pytest.raises(FeatureImportError, match="unsupported file type"):
        import_features(store, "ds", "fs", tmp_path / "x.csv")


# ---------------------------------------------------------------------------- MMRec's own main.py
def _mmrec_src() -> Path | None:
    for cand in (os.environ.get("MMREC_SRC"), "/tmp/mmrec/src"):
        if cand and (Path(cand) / "main.py").is_file():
            return Path(cand)
    return None


@pytest.mark.slow
@pytest.mark.skipif(_mmrec_src() is None, reason="no MMRec checkout at $MMREC_SRC or /tmp/mmrec/src "
                    "(git clone https://github.com/enoche/MMRec /tmp/mmrec)")
def test_mmrec_main_trains_from_the_export_folder(tmp_path: Path) -> None:
    """MMRec's ``main.py`` (unchanged, in a copy of the checkout) trains LightGCN and FREEDOM for
    2 epochs on the exported MicroLens sample and logs its metrics."""
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "graph" / "mmrec_export_check.py"), "--mmrec-src", str(_mmrec_src()),
                        "--work", str(tmp_path), "--epochs", "2", "--features", "random"],
                       capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    for model in ("LightGCN", "FREEDOM"):
        assert "recall@20" in summary[model]["best_valid"] and "recall@20" in summary[model]["test"]


# ---------------------------------------------------------------------------- the MMCTR challenge's FuxiCTR stacks
def _venv_python(env: str, default: str) -> Path | None:
    py = Path(os.environ.get(env, default))
    return py if py.is_file() else None


def _qin_checkout() -> Path | None:
    qin = Path(os.environ.get("QIN_CHECKOUT", "/work/qin-checkout"))
    return qin if (qin / "run_expid.py").is_file() else None


def _exported_sample(tmp_path: Path) -> Path:
    from mmfeat.pipelines.store.exports import export_fuxictr
    from mmfeat.pipelines.store.feature_store import FeatureStore
    from tests.conftest import import_microlens_features

    store = import_microlens_features(tmp_path, [("title_minilm", None)])
    out = tmp_path / "mmctr_sample"
    export_fuxictr(FeatureStore(store), "microlens", {"text": "title_minilm"}, out, dim=8, seq_len=8)
    return out


@pytest.mark.slow
@pytest.mark.skipif(_venv_python("FUXICTR237_PYTHON", "/work/fuxictr237-venv/bin/python") is None
                    or _qin_checkout() is None,
                    reason="no FuxiCTR 2.3.7 venv (bash bench/ctr/setup_fuxictr.sh /work/fuxictr237-venv 2.3.7) "
                           "or no salmon1802/QIN checkout at $QIN_CHECKOUT or /work/qin-checkout")
def test_the_challenge_run_expid_on_fuxictr_237_trains_din_from_the_export_as_written(tmp_path: Path) -> None:
    """The challenge's pin: its own run_expid.py, unmodified, reads our exported dataset yaml byte for byte."""
    sys.path.insert(0, str(ROOT / "bench" / "ctr"))
    from challenge_stack_check import run_challenge

    r = run_challenge(str(_venv_python("FUXICTR237_PYTHON", "/work/fuxictr237-venv/bin/python")),
                      _exported_sample(tmp_path), "DIN_default", 1, 900)
    assert r["ok"], r["tail"]
    assert r["versions"][0] == "2.3.7" and 0.0 <= r["valid_auc"] <= 1.0 and "auc" in r["test"]


@pytest.mark.slow
@pytest.mark.skipif(_venv_python("FUXICTR_PYTHON", "/work/fuxictr-venv/bin/python") is None or _qin_checkout() is None,
                    reason="no FuxiCTR 2.3.10 venv (bash bench/ctr/setup_fuxictr.sh) or no salmon1802/QIN checkout")
def test_fuxictr_2310_trains_the_challenge_din_from_the_export_as_written(tmp_path: Path) -> None:
    """FuxiCTR 2.3.10 needs ``pretrain_dim`` on the embedding column (KeyError before the export wrote it);
    the parity runner hands it the export's feature columns and label unchanged."""
    out = tmp_path / "result.json"
    r = subprocess.run([str(_venv_python("FUXICTR_PYTHON", "/work/fuxictr-venv/bin/python")),
                        str(ROOT / "bench" / "ctr" / "_fuxictr_runner.py"), "--data", str(_exported_sample(tmp_path)),
                        "--qin-dir", str(_qin_checkout()), "--epochs", "1", "--out", str(out)],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["impl"] == "fuxictr 2.3.10" and result["per_epoch"] and 0.0 <= result["test_auc"] <= 1.0
