"""The cold-start protocol (``--split cold``), the content-only ItemKNNCBF baseline, and VBPR's per-step projection."""
import logging

import numpy as np
import pandas as pd
import pytest
import torch

from mmfeat.recommenders import fit, from_split_frame, split_interactions
from mmfeat.recommenders.config import ConfigError
from mmfeat.recommenders.evaluation import Evaluator
from mmfeat.recommenders.models import build_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")

N_USERS, N_ITEMS, N_CL = 60, 80, 4


def _frame(seed=0) -> tuple[pd.DataFrame, np.ndarray]:
    """Users of cluster c interact with 10 random items of cluster c (item cluster = item % 4); features
    carry the cluster, so only content can rank cold items."""
    rng = np.random.default_rng(seed)
    items = np.arange(N_ITEMS)
    rows = []
    for u in range(N_USERS):
        own = items[items % N_CL == u % N_CL]
        rows += [(f"u{u}", f"i{i:03d}", t) for t, i in enumerate(rng.choice(own, 10, replace=False))]
    df = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    centers = rng.normal(size=(N_CL, 16))
    feats = (centers[items % N_CL] + 0.3 * rng.normal(size=(N_ITEMS, 16))).astype(np.float32)
    return df, feats


def _cold_data(seed=0):
    df, feats = _frame()
    split = split_interactions(df, "cold", seed=seed)
    ids = np.array([f"i{i:03d}" for i in range(N_ITEMS)])
    return from_split_frame(split, item_ids=ids, features={"text": (ids, feats)},
                            split_info={"method": "cold", "seed": seed}), split


def test_cold_split_keeps_every_cold_item_out_of_train():
    df, _ = _frame()
    split = split_interactions(df, "cold", seed=3)
    by_item = split.groupby("item_id")["split"].agg(["min", "max"])
    assert (by_item["min"] == by_item["max"]).all()  # an item lies in exactly one split
    train_items = set(split.loc[split.split == 0, "item_id"])
    valid_items = set(split.loc[split.split == 1, "item_id"])
    test_items = set(split.loc[split.split == 2, "item_id"])
    assert not (train_items & valid_items) and not (train_items & test_items) and not (valid_items & test_items)
    assert len(valid_items) + len(test_items) == round(0.2 * N_ITEMS)
    assert split.attrs["cold_items"] == {"valid": 8, "test": 8}
    again = split_interactions(df, "cold", seed=3)
    assert again["split"].tolist() == split["split"].tolist()  # seeded
    assert split_interactions(df, "cold", seed=4)["split"].tolist() != split["split"].tolist()


def test_cold_split_refuses_a_share_that_leaves_no_item():
    df, _ = _frame()
    with pytest.raises(ValueError, match="holdout"):
        split_interactions(df, "cold", holdout=1.0)
    with pytest.raises(ValueError, match="cold items"):
        split_interactions(df.head(20), "cold", holdout=0.01)


def test_cold_data_ranks_only_the_split_cold_items():
    data, split = _cold_data()
    assert set(data.eval_candidates) == {"valid", "test"}
    train_items = set(data.train[:, 1].tolist())
    for name in ("valid", "test"):
        assert not train_items & set(data.eval_candidates[name].tolist())
    assert data.summary()["eval_candidates"] == {"valid": 8, "test": 8}

    class WarmFirst(torch.nn.Module):  # scores every warm item above every cold item
        device = torch.device("cpu")

        def full_sort_predict(self, users):
            s = torch.zeros(len(users), data.n_items)
            s[:, sorted(train_items)] = 10.0
            s[:, data.test[0, 1]] = 1.0  # one test item: the best-scored cold item
            return s

        def prepare_eval(self):
            pass

        def end_eval(self):
            pass

    ev = Evaluator(data.train_csr(), data.test, topk=(1,), metrics=("recall",),
                   candidates=data.eval_candidates["test"])
    hits = ev.topk_hits(WarmFirst())
    assert hits.shape[1] == 1  # warm items never enter the ranking, so top-1 is that test item for everyone
    users_of_item = set(data.test[data.test[:, 1] == data.test[0, 1], 0].tolist())
    assert hits[:, 0].sum() == len(users_of_item)
    unrestricted = Evaluator(data.train_csr(), data.test, topk=(1,), metrics=("recall",))
    assert unrestricted.topk_hits(WarmFirst()).sum() == 0  # the old protocol ranked warm items first


def test_content_beats_id_only_on_cold_items_and_the_record_says_so(caplog):
    data, _ = _cold_data()
    at2 = {"topk": [2], "valid_metric": "recall@2"}  # 8 cold test items, 2 of each user's cluster
    knn = fit(data, "ItemKNNCBF", {"knn_k": 10, **at2}, progress=False)
    with caplog.at_level(logging.WARNING):
        bpr = fit(data, "BPR", {"epochs": 5, "embedding_size": 8, "train_batch_size": 128, **at2}, progress=False)
    assert knn.test["recall@2"] > 0.8 and bpr.test["recall@2"] < 0.5
    assert "chance baseline" in caplog.text
    assert knn.data["cold_start"]["model_reads_content"] is True
    assert bpr.data["cold_start"] == {"ranked": "each split's cold items only",
                                      "candidates": {"valid": 8, "test": 8}, "model_reads_content": False}
    assert len(knn.epochs) == 1 and knn.epochs[0]["loss"] == 0.0  # closed-form: evaluated once, no step


def test_itemknncbf_refuses_epochs_it_would_ignore():
    data, _ = _cold_data()
    with pytest.raises(ConfigError, match="epochs"):
        fit(data, "ItemKNNCBF", {"epochs": 5}, progress=False)


def test_itemknncbf_scores_are_the_sum_of_shrunk_cosine_neighbours():
    data, _ = _cold_data()
    model = build_model("ItemKNNCBF", data, {"knn_k": 3, "shrink": 2.0})
    f = torch.from_numpy(data.item_features["text"])
    n = torch.linalg.vector_norm(f, dim=1)
    sim = (f @ f.T) / (n[:, None] * n[None, :] + 2.0)
    keep = torch.zeros_like(sim).scatter_(1, torch.topk(sim, 3, dim=1).indices, 1.0)
    want = torch.from_numpy(data.train_csr().toarray()) @ (sim * keep)
    got = model.full_sort_predict(torch.arange(data.n_users))
    assert torch.allclose(got, want, atol=1e-5)


def test_vbpr_projects_each_distinct_batch_item_once():
    data, _ = _cold_data()
    model = build_model("VBPR", data, {"embedding_size": 8})
    rows = []
    model.item_linear.register_forward_hook(lambda m, inp, out: rows.append(inp[0].shape[0]))
    users = torch.tensor([0, 1, 2, 3, 4, 5])
    pos, neg = torch.tensor([1, 1, 2, 2, 3, 3]), torch.tensor([3, 5, 5, 1, 1, 7])
    loss = model.calculate_loss((users, pos, neg))
    assert rows == [5]  # distinct items {1, 2, 3, 5, 7}, not 12 gathered rows
    full = model.item_embeddings()  # the same values as projecting every item (MMRec)
    u = model.u_embedding[users]
    p, q = full[pos], full[neg]
    from mmfeat.recommenders.models.base import bpr_loss, emb_loss
    want = bpr_loss((u * p).sum(1), (u * q).sum(1)) + model.reg_weight * emb_loss(u, p, q)
    assert torch.allclose(loss, want)


def test_a_cold_frame_restricts_evaluation_without_split_info():
    df, feats = _frame()
    data = from_split_frame(split_interactions(df, "cold", seed=0))
    assert set(data.eval_candidates) == {"valid", "test"} and data.split_info["method"] == "cold"


def test_run_training_with_a_cold_split_records_it(tmp_path):
    from mmfeat.pipelines.training import run as tr
    from tests.conftest import import_microlens_features

    store = import_microlens_features(tmp_path, [("title_minilm", "a")])
    out = tr.run_training("microlens", model="ItemKNNCBF", features={"text": "title_minilm@a"}, split="cold",
                          split_seed=7, store_root=store, runs_dir=str(tmp_path / "runs"))
    rec = out["best"]
    assert rec["split"]["method"] == "cold" and rec["split"]["seed"] == 7 and out["data"]["split"]["cold_items"]
    assert rec["data"]["cold_start"]["model_reads_content"] is True
    assert rec["data"]["eval_candidates"] == rec["data"]["cold_start"]["candidates"]
    with pytest.raises(tr.TrainRequestError, match="loo"):
        tr.run_training("microlens", model="SASRec", split="cold", store_root=store)
