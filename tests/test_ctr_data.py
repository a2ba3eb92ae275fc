"""CTR data: metrics against scikit-learn, the MicroLens_1M_MMCTR layout as the challenge's loader reads it,
the CTR set's rules (time split, history, labels, levels, negatives), MUSE's GSU against brute force, and
``store export fuxictr`` on the embedded sample."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mmfeat.recommenders.ctr import CTRDataError, auc, build_ctr_set, group_auc, logloss, read_layout, write_layout
from mmfeat.recommenders.ctr.gsu import gsu_items, normalized


# ---------------------------------------------------------------------------- metrics
def test_auc_logloss_gauc_match_scikit_learn_on_random_cases_with_ties():
    from sklearn.metrics import log_loss, roc_auc_score

    rng = np.random.default_rng(0)
    for _ in range(40):
        n = int(rng.integers(2, 300))
        y = rng.integers(0, 2, n)
        if y.min() == y.max():
            continue
        s = np.round(rng.random(n), int(rng.integers(1, 3)))  # coarse scores: many ties
        assert auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
        p = rng.random(n)
        assert logloss(y, p) == pytest.approx(log_loss(y, np.clip(p, 1e-7, 1 - 1e-7)), abs=1e-9)
        g = rng.integers(0, 5, n)
        per = [(roc_auc_score(y[g == k], s[g == k]), (g == k).sum()) for k in np.unique(g)
               if y[g == k].min() != y[g == k].max()]
        if per:
            assert group_auc(y, s, g) == pytest.approx(np.average([a for a, _ in per], weights=[w for _, w in per]))
    assert np.isnan(auc(np.ones(3), np.arange(3)))


# ---------------------------------------------------------------------------- building a set
def _events() -> tuple[pd.DataFrame, pd.DataFrame]:
    """3 users, 10 items ("1".."10": string order would put "10" second), ratings, distinct times."""
    rng = np.random.default_rng(1)
    rows = []
    t = 0
    for u in ("u1", "u2", "u3"):
        for _ in range(12):
            t += 1
            rows.append((u, str(int(rng.integers(1, 11))), t, float(rng.integers(1, 6))))
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "label"]).sample(frac=1, random_state=0)
    items = pd.DataFrame({"item_id": [str(i) for i in range(1, 11)],
                          "tags": [["drama", "comedy"] if i % 2 else ["drama"] for i in range(1, 11)]})
    return inter, items


def _id_embedding(dim: int = 4) -> tuple[list[str], np.ndarray]:
    ids = [str(i) for i in range(1, 11)]
    mat = np.zeros((10, dim), np.float32)
    mat[:, 0] = [float(i) for i in ids]
    return ids, mat


def test_ctr_set_rules_time_split_history_labels_levels():
    inter, items = _events()
    data = build_ctr_set(inter, items, _id_embedding(), seq_len=5, emb_dim=None)
    assert data.item_ids[1:] == [str(i) for i in range(1, 11)]  # natural order: item k is "k"
    np.testing.assert_array_equal(data.item_emb[1:, 0], np.arange(1, 11))  # row k holds item k's vector
    assert not data.item_emb[0].any() and not data.item_tags[0].any()
    # time split: every train row is older than every valid row, valid older than test
    by_split = {k: len(s) for k, s in data.splits.items()}
    assert by_split == {"train": 28, "valid": 4, "test": 4}
    # item_seq = the user's earlier items, most recent last (rebuilt by hand for every row)
    ordered = inter.sort_values("timestamp")
    hist = {u: [int(i) for i in g["item_id"]] for u, g in ordered.groupby("user_id")}
    users = sorted(hist)
    rows = pd.concat([pd.DataFrame({"u": s.user, "i": s.item, "y": s.label, "seq": list(s.item_seq)})
                      for s in data.splits.values()])
    for u_idx, u in enumerate(users):
        mine = rows[rows["u"] == u_idx]
        assert list(mine["i"]) == hist[u]
        for pos, seq in enumerate(mine["seq"]):
            want = hist[u][max(0, pos - 5):pos]
            assert list(seq) == [0] * (5 - len(want)) + want
    labels = ordered["label"].to_numpy() >= 4
    np.testing.assert_array_equal(np.sort(rows["y"].to_numpy()), np.sort(labels.astype(np.float32)))
    assert data.info["levels"]["views_level"] == "train interactions"


def test_levels_use_train_rows_only():
    inter, items = _events()
    base = build_ctr_set(inter, items, None, seq_len=3)
    late = inter["timestamp"] > inter["timestamp"].quantile(0.9)
    flipped = inter.assign(label=np.where(late, 6 - inter["label"], inter["label"]))  # change test labels only
    again = build_ctr_set(flipped, items, None, seq_len=3)
    np.testing.assert_array_equal(base.splits["train"].likes_level, again.splits["train"].likes_level)
    np.testing.assert_array_equal(base.splits["test"].likes_level, again.splits["test"].likes_level)


def test_implicit_clicks_get_sampled_negatives_the_user_never_saw():
    inter, items = _events()
    data = build_ctr_set(inter.drop(columns="label"), items, None, seq_len=3, label_threshold=None, negatives=2)
    rows = {k: s for k, s in data.splits.items()}
    seen = {(u, i) for s in rows.values() for u, i, y in zip(s.user, s.item, s.label) if y == 1}
    negs = [(u, i) for s in rows.values() for u, i, y in zip(s.user, s.item, s.label) if y == 0]
    assert len(negs) == 2 * len(inter) and not any(n in seen for n in negs)
    with pytest.raises(CTRDataError, match="needs ratings"):
        build_ctr_set(inter.drop(columns="label"), items, None, label_threshold=4.0)


def test_pca_too_few_components_refused_or_padded_or_kept_for_training():
    inter, items = _events()
    ids, _ = _id_embedding()
    wide = (ids, np.random.default_rng(0).normal(size=(10, 32)).astype(np.float32))
    with pytest.raises(CTRDataError, match="has 10 items, so PCA gives at most 10 components"):
        build_ctr_set(inter, items, wide, emb_dim=16)
    assert build_ctr_set(inter, items, wide, emb_dim=16, pad=True).emb_dim == 16
    assert build_ctr_set(inter, items, wide, emb_dim=16, pad=None).emb_dim == 10


# ---------------------------------------------------------------------------- GSU
def test_gsu_top_k_matches_brute_force_and_keeps_time_order():
    rng = np.random.default_rng(0)
    n_items, k = 30, 5
    emb = rng.normal(size=(n_items, 8)).astype(np.float32)
    ev, starts = [], []
    for length in (1, 7, 40):
        s0 = len(ev)
        ev += list(rng.integers(1, n_items + 1, length))
        starts += [s0] * length
    ev, starts = np.array(ev), np.array(starts)
    at, target = np.arange(len(ev)), rng.integers(1, n_items + 1, len(ev))
    got = gsu_items(ev, starts, at, target, emb, k, chunk=50)  # tiny chunks: many passes
    en = normalized(emb)
    for r in range(len(ev)):
        hist = list(range(starts[r], at[r]))
        sims = [float(en[target[r] - 1] @ en[ev[j] - 1]) for j in hist]
        keep = sorted(sorted(range(len(hist)), key=lambda x: -x), key=lambda x: -sims[x])[:k]  # ties: recent
        want = [ev[hist[j]] for j in sorted(keep)]
        assert list(got[r]) == [0] * (k - len(want)) + want


def test_gsu_set_equals_last_k_when_histories_are_short():
    inter, items = _events()
    last = build_ctr_set(inter, items, _id_embedding(), seq_len=40, emb_dim=None)
    gsu = build_ctr_set(inter, items, _id_embedding(), seq_len=40, history="gsu", emb_dim=None)
    for name in last.splits:
        np.testing.assert_array_equal(last.splits[name].item_seq, gsu.splits[name].item_seq)
    with pytest.raises(CTRDataError, match="retrieves by item embedding"):
        build_ctr_set(inter, items, None, history="gsu")


# ---------------------------------------------------------------------------- the layout
def challenge_loader_batch(folder: Path, split: str, rows: list[int], max_len: int = 64):
    """The challenge's ParquetDataset + BatchCollator logic (mmctr_dataloader.py), written from its code:
    stack every row column into one array, cut item_seq to its last max_len, read item_info by iloc."""
    df = pd.read_parquet(folder / f"{split}.parquet")
    arrays, index, at = [], {}, 0
    for col in df.columns:
        if df[col].dtype == "object":
            arr = np.array(df[col].to_list())
            index[col] = list(range(at, at + arr.shape[1]))
            at += arr.shape[1]
        else:
            arr = df[col].to_numpy()
            index[col] = at
            at += 1
        arrays.append(arr)
    darray = np.column_stack(arrays)
    batch = darray[rows]
    seqs = batch[:, index["item_seq"]][:, -max_len:]
    items = np.hstack([seqs, batch[:, [index["item_id"]]]]).flatten()
    info = pd.read_parquet(folder / "item_info.parquet").iloc[items]
    return batch, index, seqs > 0, info


def test_written_layout_is_what_the_challenge_loader_reads(tmp_path: Path):
    inter, items = _events()
    data = build_ctr_set(inter, items, _id_embedding(), seq_len=6, emb_dim=None)
    write_layout(data, tmp_path)
    for split in ("train", "valid", "test"):
        t = pq.read_table(tmp_path / f"{split}.parquet")
        assert t.column_names == ["user_id", "item_seq", "likes_level", "views_level", "item_id", "label"]
        assert all(str(t.schema.field(c).type) == "int64" for c in t.column_names if c != "item_seq")
        assert pa.types.is_list(t.schema.field("item_seq").type) and t.schema.field("item_seq").type.value_type == pa.int64()
    info = pq.read_table(tmp_path / "item_info.parquet")
    assert info.column("item_id").to_pylist() == list(range(11))
    assert info.schema.field("item_emb_d4").type.value_type == pa.float32()
    batch, index, mask, rows = challenge_loader_batch(tmp_path, "train", list(range(8)), max_len=6)
    assert batch.dtype.kind == "i"  # one float column would make the loader index item_info with floats
    assert rows["item_id"].tolist() == batch[:, index["item_seq"] + [index["item_id"]]].flatten().tolist()
    emb = np.array(rows["item_emb_d4"].to_list())
    np.testing.assert_array_equal(emb[:, 0], rows["item_id"].to_numpy())  # item k's row holds item k's vector
    np.testing.assert_array_equal(mask, batch[:, index["item_seq"]] > 0)
    back = read_layout(tmp_path, max_len=6)
    for name in data.splits:
        np.testing.assert_array_equal(back.splits[name].item_seq, data.splits[name].item_seq)
        np.testing.assert_array_equal(back.splits[name].label, data.splits[name].label)
    np.testing.assert_array_equal(back.item_emb, data.item_emb)


def test_read_layout_refuses_broken_folders(tmp_path: Path):
    inter, items = _events()
    write_layout(build_ctr_set(inter, items, _id_embedding(), seq_len=4, emb_dim=None), tmp_path)
    info = pq.read_table(tmp_path / "item_info.parquet")
    pq.write_table(info.take(pa.array([0, 2, 1, *range(3, 11)])), tmp_path / "item_info.parquet")
    with pytest.raises(CTRDataError, match="row 1 holds item_id 2"):
        read_layout(tmp_path)
    pq.write_table(info, tmp_path / "item_info.parquet")
    t = pq.read_table(tmp_path / "valid.parquet").to_pandas()
    t.at[0, "item_seq"] = [1, 2]
    pq.write_table(pa.Table.from_pandas(t, preserve_index=False), tmp_path / "valid.parquet")
    with pytest.raises(CTRDataError, match="lists must all have one length"):
        read_layout(tmp_path)
    (tmp_path / "test.parquet").unlink()
    with pytest.raises(CTRDataError, match="missing"):
        read_layout(tmp_path)


def test_export_fuxictr_on_the_sample_rows_in_item_order(tmp_path: Path):
    """The old exporter crashed on the sample (ArrowInvalid) and wrote MovieLens rows in string order."""
    from mmfeat.pipelines.cli import main
    from mmfeat.pipelines.store.exports import read_item_order
    from mmfeat.pipelines.engine.extract import load_items
    from mmfeat.pipelines.store.imports import import_features
    from mmfeat.pipelines.manifest import load_manifest
    from mmfeat.pipelines.store.feature_store import FeatureStore

    ids = load_items(load_manifest("microlens"))[0].column("item_id").to_pylist()
    mat = np.zeros((len(ids), 6), np.float32)
    mat[:, 0] = [float(i) for i in ids]
    mat[:, 1:] = np.random.default_rng(0).normal(size=(len(ids), 5))
    np.save(tmp_path / "v.npy", mat)
    (tmp_path / "ids.txt").write_text("\n".join(ids) + "\n")
    store = FeatureStore(tmp_path / "store")
    import_features(store, "microlens-mini", "title_minilm", tmp_path / "v.npy", ids=tmp_path / "ids.txt")
    out = tmp_path / "mmctr"
    argv = ["--store", str(tmp_path / "store"), "store", "export", "fuxictr", "microlens", "--feature", "title_minilm",
            "--dim", "6", "--seq-len", "8", "--out", str(out)]
    assert main(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == ["_export.json", "item_id_mapping.csv", "item_info.parquet",
                                                    "mmctr.yaml", "test.parquet", "train.parquet", "valid.parquet"]
    mapping = read_item_order(out / "item_id_mapping.csv")
    assert mapping == sorted(mapping, key=int)  # integer order: "2" before "10"
    rows = pd.read_csv(out / "item_id_mapping.csv", sep="\t", dtype=str)
    assert rows["row"].tolist() == [str(k) for k in range(1, len(mapping) + 1)]  # item_info row of each item
    emb = np.array(pq.read_table(out / "item_info.parquet").column("item_emb_d6").to_pylist())
    np.testing.assert_array_equal(emb[1:, 0], [float(i) for i in mapping])  # item k reads item k's vector
    rec = json.loads((out / "_export.json").read_text())
    assert rec["features"]["text"].startswith("microlens-mini/title_minilm/v-")
    assert rec["label"].startswith("implicit clicks") and rec["rows"]["train"] > 0
    assert set(rec["files"]) == {"train.parquet", "valid.parquet", "test.parquet", "item_info.parquet"}
    # the layout reads back as a source and as a CTR set
    from mmfeat.pipelines.sources import load_source

    src = load_source("mmctr", out)
    assert src.items.num_rows == len(mapping) and set(src.interactions.column("split").to_pylist()) == {0, 1, 2}
    # 7 wanted dims of a 6-d version: refused with the fix, the old folder left as it was
    assert main(argv[:-4] + ["--dim", "7", "--out", str(out)]) == 2
    assert json.loads((out / "_export.json").read_text()) == rec



def test_tags_are_left_padded_and_the_config_has_pretrain_dim(tmp_path: Path):
    """The challenge's item_tags are left-padded; FuxiCTR 2.3.10 needs ``pretrain_dim`` on an embedding column
    (the exported config used to raise KeyError there)."""
    import yaml

    from mmfeat.pipelines.store.exports import _fuxictr_dataset_config
    from mmfeat.recommenders.ctr.build import tag_matrix

    mat, vocab = tag_matrix([["b", "a"], [], ["c", "a", "b", "d"]], 3)
    assert vocab == ["a", "b", "c", "d"]
    assert mat.tolist() == [[0, 0, 0], [0, 2, 1], [0, 0, 0], [3, 1, 2]]

    class Data:
        emb_dim, n_items, n_tags = 6, 4, 5
        item_tags = np.zeros((5, 3), np.int64)

    cols = _fuxictr_dataset_config("mmctr", Data())["mmctr"]["feature_cols"]
    emb = next(c for c in cols if c["type"] == "embedding")
    assert emb["name"] == "item_emb_d6" and emb["embedding_dim"] == emb["pretrain_dim"] == 6
    assert yaml.safe_load(yaml.safe_dump(cols)) == cols
