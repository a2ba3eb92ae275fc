"""Evaluator, metrics, sampler, splits and feature alignment of recommenders/ (MMRec protocol)."""
import math

import numpy as np
import pandas as pd
import pytest
import torch

from mmfeat.recommenders import (Evaluator, NegativeSampler, align_features, from_split_frame, metrics_from_hits,
                          split_interactions)
from mmfeat.recommenders.data import InteractionData

TOPK = (1, 2, 3, 5)


def _ref_metrics(hits_rows, pos_lens, k):
    """Straightforward per-user definitions (MMRec metrics.py semantics), for cross-checking."""
    rec, prec, ndcg, ap = [], [], [], []
    for h, m in zip(hits_rows, pos_lens):
        h = list(h[:k])
        nh = sum(h)
        rec.append(nh / m)
        prec.append(nh / k)
        dcg = sum(1 / math.log2(r + 2) for r, x in enumerate(h) if x)
        idcg = sum(1 / math.log2(r + 2) for r in range(min(m, k)))
        ndcg.append(dcg / idcg)
        s, c = 0.0, 0
        for r, x in enumerate(h):
            if x:
                c += 1
                s += c / (r + 1)
        ap.append(s / min(m, k))
    return {"recall": np.mean(rec), "precision": np.mean(prec), "ndcg": np.mean(ndcg), "map": np.mean(ap)}


def test_metrics_hand_computed():
    # one user, |T| = 2, hits at ranks 1 and 3 of a top-5 list
    hits = np.array([[1, 0, 1, 0, 0]], bool)
    m = metrics_from_hits(hits, np.array([2]), topk=(1, 3, 5))
    assert m["recall@1"] == pytest.approx(0.5)
    assert m["recall@5"] == pytest.approx(1.0)
    assert m["precision@5"] == pytest.approx(2 / 5)
    assert m["precision@3"] == pytest.approx(2 / 3)
    assert m["ndcg@1"] == pytest.approx(1.0)  # IDCG@1 over min(2,1)=1 position
    assert m["ndcg@5"] == pytest.approx((1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3)))
    assert m["map@5"] == pytest.approx((1 / 1 + 2 / 3) / 2)
    assert m["map@1"] == pytest.approx(1.0)  # normalizer min(|T|, K) = 1


def test_metrics_user_with_more_test_items_than_k():
    # |T| = 10 > K = 5 and all five hits: recall 0.5, but NDCG and MAP are 1 (IDCG over min(|T|,K))
    hits = np.ones((1, 5), bool)
    m = metrics_from_hits(hits, np.array([10]), topk=(5,))
    assert m["recall@5"] == pytest.approx(0.5)
    assert m["ndcg@5"] == pytest.approx(1.0)
    assert m["map@5"] == pytest.approx(1.0)
    assert m["precision@5"] == pytest.approx(1.0)


def test_metrics_match_reference_on_random_cases():
    rng = np.random.default_rng(0)
    hits = rng.random((200, 5)) < 0.3
    pos = rng.integers(1, 9, 200)
    hits &= np.arange(5)[None, :] < pos[:, None] + 3  # keep it plausible; any pattern is fine
    got = metrics_from_hits(hits, pos, topk=TOPK)
    for k in TOPK:
        ref = _ref_metrics(hits, pos, k)
        for name, v in ref.items():
            assert got[f"{name}@{k}"] == pytest.approx(v, rel=1e-12), (name, k)


class _FixedScores(torch.nn.Module):
    """A 'model' returning a fixed score matrix."""

    def __init__(self, scores):
        super().__init__()
        self.scores = torch.as_tensor(scores, dtype=torch.float32)
        self.register_buffer("_d", torch.zeros(1))

    device = property(lambda self: torch.device("cpu"))

    def full_sort_predict(self, users):
        return self.scores[users].clone()

    def prepare_eval(self):
        pass

    def end_eval(self):
        pass


def _data(train, valid, test, n_users, n_items):
    return InteractionData(n_users=n_users, n_items=n_items, train=np.array(train).reshape(-1, 2),
                           valid=np.array(valid).reshape(-1, 2), test=np.array(test).reshape(-1, 2),
                           user_ids=np.arange(n_users).astype(str), item_ids=np.arange(n_items).astype(str))


def test_evaluator_masks_train_items_only_and_excludes_users_without_test_items():
    # 3 users, 6 items. Scores rank items 0 > 1 > 2 > 3 > 4 > 5 for everyone.
    scores = np.tile(np.arange(6, 0, -1, dtype=np.float32), (3, 1))
    d = _data(train=[[0, 0], [1, 1], [2, 0]], valid=[[0, 1]], test=[[0, 2], [1, 0]], n_users=3, n_items=6)
    model = _FixedScores(scores)
    ev_test = Evaluator(d.train_csr(), d.test, topk=(1,), metrics=("recall",))
    # user 2 has no test rows -> not in the average
    assert list(ev_test.users) == [0, 1]
    # user 0: train item 0 masked; valid item 1 NOT masked at test time -> top-1 is item 1 (miss)
    # user 1: train item 1 masked, top-1 is item 0 (hit)
    m = ev_test.evaluate(model)
    assert m["recall@1"] == pytest.approx(0.5)
    hits = ev_test.topk_hits(model)
    assert hits[:, 0].tolist() == [False, True]
    # validation: user 0's train item 0 masked -> top-1 is item 1 = its valid item
    ev_valid = Evaluator(d.train_csr(), d.valid, topk=(1,), metrics=("recall",))
    assert ev_valid.evaluate(model)["recall@1"] == pytest.approx(1.0)


def test_evaluator_batched_equals_unbatched():
    rng = np.random.default_rng(1)
    nu, ni = 50, 40
    pairs = np.unique(np.stack([rng.integers(0, nu, 600), rng.integers(0, ni, 600)], 1), axis=0)
    rng.shuffle(pairs)
    d = _data(pairs[:400], pairs[400:500], pairs[500:], nu, ni)
    model = _FixedScores(rng.normal(size=(nu, ni)))
    a = Evaluator(d.train_csr(), d.test, batch_size=7).evaluate(model)
    b = Evaluator(d.train_csr(), d.test, batch_size=4096).evaluate(model)
    assert a == b
    # cross-check with a loop reference over full score rows
    ev = Evaluator(d.train_csr(), d.test, topk=(5, 10))
    hits = []
    tr = d.train_csr().toarray() > 0
    te = {}
    for u, i in d.test:
        te.setdefault(u, set()).add(i)
    users = sorted(te)
    for u in users:
        s = model.scores[u].numpy().copy()
        s[tr[u]] = -np.inf
        top = np.argsort(-s, kind="stable")[:10]
        hits.append([i in te[u] for i in top])
    ref = _ref_metrics(np.array(hits), [len(te[u]) for u in users], 10)
    got = ev.evaluate(model)
    assert got["recall@10"] == pytest.approx(ref["recall"])
    assert got["ndcg@10"] == pytest.approx(ref["ndcg"])
    assert got["map@10"] == pytest.approx(ref["map"])


# ---------------------------------------------------------------------------- sampler
def test_sampler_never_returns_a_train_positive_and_is_uniform():
    rng = np.random.default_rng(0)
    nu, ni = 30, 20
    dense = rng.random((nu, ni)) < 0.6
    dense[:, -1] = False  # item 19 never in train -> never a candidate (MMRec samples train items)
    dense[0, :-1] = True
    dense[0, 3] = False  # user 0's only negative candidate is item 3
    import scipy.sparse as sp
    csr = sp.csr_matrix(dense.astype(np.float32))
    s = NegativeSampler(csr)
    users = np.repeat(np.arange(nu), 2000)
    neg = s.sample(users, rng)
    assert not dense[users, neg].any()
    assert (neg != ni - 1).all()
    assert (neg[users == 0] == 3).all()
    # uniform over the allowed items of a user
    u = 5
    allowed = np.flatnonzero(~dense[u, :-1])
    counts = np.bincount(neg[users == u], minlength=ni)[allowed]
    exp = 2000 / len(allowed)
    chi2 = ((counts - exp) ** 2 / exp).sum()
    assert chi2 < 3 * len(allowed) + 30


def test_sampler_saturated_user_raises():
    import scipy.sparse as sp
    s = NegativeSampler(sp.csr_matrix(np.ones((2, 3), np.float32)))
    with pytest.raises(ValueError):
        s.sample(np.array([0]), np.random.default_rng(0))


# ---------------------------------------------------------------------------- splits
def _inter(counts):
    rows = []
    for u, n in counts.items():
        rows += [(u, f"i{j}", j) for j in range(n)]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])


def test_random_split_rules():
    df = _inter({"a": 2, "b": 3, "c": 9, "d": 10, "e": 25})
    s = split_interactions(df, "random", seed=3)
    c = s.groupby(["user_id", "split"]).size().unstack(fill_value=0)
    assert c.loc["a"].tolist() == [2, 0, 0]  # n < 3: all train
    assert c.loc["b"].tolist() == [1, 1, 1]  # n < 10: n-2 / 1 / 1
    assert c.loc["c"].tolist() == [7, 1, 1]
    assert c.loc["d"].tolist() == [8, 1, 1]  # int(0.2*10)=2 -> 1 valid, 1 test
    assert c.loc["e"].tolist() == [20, 2, 3]  # int(0.2*25)=5 -> 2 valid, 3 test
    assert split_interactions(df, "random", seed=3).equals(s)  # seeded
    key = lambda x: set(map(tuple, x[["user_id", "item_id", "split"]].to_numpy().tolist()))
    assert key(split_interactions(df, "random", seed=4)) != key(s)


def test_given_split_used_and_cold_users_dropped_items_kept():
    df = pd.DataFrame({"user_id": ["u1", "u1", "u1", "u2", "u3"], "item_id": ["a", "b", "c", "a", "z"],
                       "timestamp": [1, 2, 3, 4, 5], "split": [0, 1, 2, 0, 2]})
    s = split_interactions(df)
    assert s["split"].tolist() == [0, 1, 2, 0, 2]
    d = from_split_frame(s)
    # u3 has no train row -> its test row dropped; item 'c' (test only) is still a candidate item
    assert d.n_users == 3 and d.n_items == 4
    assert len(d.test) == 1 and d.item_ids[d.test[0, 1]] == "c"
    assert len(d.valid) == 1
    assert len(d.split_hash) == 64


def test_time_split_is_temporal():
    df = pd.DataFrame({"user_id": ["u"] * 10, "item_id": [f"i{j}" for j in range(10)],
                       "timestamp": np.arange(10)[::-1]})
    s = split_interactions(df, "time")
    assert s.loc[s["split"] == 2, "timestamp"].min() > s.loc[s["split"] == 1, "timestamp"].max()
    assert s.loc[s["split"] == 1, "timestamp"].min() > s.loc[s["split"] == 0, "timestamp"].max()


def test_split_hash_changes_with_split():
    df = _inter({"a": 12, "b": 15})
    d1 = from_split_frame(split_interactions(df, "random", seed=1))
    d2 = from_split_frame(split_interactions(df, "random", seed=2))
    d1b = from_split_frame(split_interactions(df, "random", seed=1))
    assert d1.split_hash == d1b.split_hash != d2.split_hash


def test_align_features_fill_policy():
    ids = ["a", "b", "c", "d"]
    feats, missing = align_features(ids, {"t": (["b", "a", "c"], np.array([[1, 1], [3, 3], [5, 5]]))},
                                    max_missing_fraction=0.3)
    assert feats["t"].tolist() == [[3, 3], [1, 1], [5, 5], [3, 3]]  # d <- mean of present rows
    assert missing == {"t": 1}
    with pytest.raises(ValueError):
        align_features(ids, {"t": (["a"], np.ones((1, 2)))}, max_missing_fraction=0.3)


def test_norm_adj_is_symmetric_normalized():
    d = _data(train=[[0, 0], [0, 1], [1, 1]], valid=[], test=[], n_users=2, n_items=2)
    a = d.norm_adj().to_dense().numpy()
    assert a.shape == (4, 4)
    assert np.allclose(a, a.T)
    # edge (user0, item1): deg(u0)=2, deg(i1)=2 -> 1/2
    assert a[0, 3] == pytest.approx(0.5, rel=1e-5)
    assert a[1, 3] == pytest.approx(1 / math.sqrt(2), rel=1e-5)
    assert d.norm_adj() is d.norm_adj()  # cached


class _NaNModel(torch.nn.Module):
    """Scores item 0 NaN and item 1 +inf for every user (a broken model), the rest by index."""

    device = torch.device("cpu")

    def __init__(self, n_items: int):
        super().__init__()
        self.n_items = n_items

    def prepare_eval(self):
        pass

    def end_eval(self):
        pass

    def full_sort_predict(self, users):
        s = torch.arange(self.n_items, dtype=torch.float32).repeat(len(users), 1) / self.n_items
        s[:, 0] = float("nan")
        s[:, 1] = float("inf")
        return s


def test_nan_and_inf_scores_rank_last_with_a_warning(caplog):
    """torch.topk puts NaN first: a NaN-scored eval item used to count as a hit at rank 1."""
    import scipy.sparse as sp

    n_users, n_items = 3, 6
    train = sp.csr_matrix((np.ones(3), ([0, 1, 2], [5, 5, 5])), shape=(n_users, n_items))
    ev = Evaluator(train, np.array([[0, 0], [1, 1], [2, 0]]), topk=(1, 2))
    with caplog.at_level("WARNING", logger="mmfeat.recommenders.evaluation"):
        m = ev.evaluate(_NaNModel(n_items))
    assert m["recall@2"] == 0.0 and m["ndcg@1"] == 0.0
    assert "NaN or +inf" in caplog.text and "users 0, 1, 2" in caplog.text
