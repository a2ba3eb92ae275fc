"""REARM: the homography graphs, the contrastive / orthogonal terms and training on the tiny planted data."""
import numpy as np
import pytest
import scipy.sparse as sp
import torch

from mmfeat.recommenders.config import ConfigError
from mmfeat.recommenders.models import build_model, rearm  # noqa: F401  (importing registers REARM)
from mmfeat.recommenders.models.rearm import (co_occurrence_counts, co_occurrence_graph, info_nce,
                                              knn_similarity_graph, orthogonal_loss, user_interests)
from tests.test_rec_models_mm import N_ITEMS, N_USERS, _batch, _cold_precision, _fit, _planted, _shuffled_planted

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SMALL = {"embedding_size": 16, "train_batch_size": 64, "user_knn_k": 4, "item_knn_k": 4, "n_layers": 2}


@pytest.fixture(scope="module")
def data():
    return _planted()


def _dense(t: torch.Tensor) -> np.ndarray:
    return t.to_dense().numpy()


# ---------------------------------------------------------------------------- graphs
def test_co_occurrence_counts_are_shared_neighbours_without_self():
    r = sp.csr_matrix(np.array([[1, 1, 0, 0], [1, 1, 1, 0], [0, 0, 0, 1], [1, 0, 1, 0]], np.float32))
    b = r.toarray()
    users, items = co_occurrence_counts(r).toarray(), co_occurrence_counts(r.T).toarray()
    ref_u, ref_i = b @ b.T, b.T @ b
    np.fill_diagonal(ref_u, 0)
    np.fill_diagonal(ref_i, 0)
    assert np.array_equal(users, ref_u) and np.array_equal(items, ref_i)
    # duplicated interactions count once (sets, as the reference)
    dup = sp.csr_matrix((np.ones(3), ([0, 0, 1], [0, 0, 0])), shape=(2, 1))
    assert co_occurrence_counts(dup).toarray()[0, 1] == 1


def test_co_occurrence_graph_topk_softmax_padding_and_popular_fallback():
    counts = sp.csr_matrix(np.array([[0, 5, 3, 1, 2],   # 4 neighbours >= k=3: the top 3 (5, 3, 2)
                                     [5, 0, 0, 0, 0],   # 1 neighbour < k: padded with itself
                                     [3, 0, 0, 2, 0],   # 2 neighbours < k: one re-drawn
                                     [1, 0, 2, 0, 0],
                                     [0, 0, 0, 0, 0]], np.float32))  # none: the most popular entities
    popularity = np.array([4, 1, 3, 2, 0])
    g = co_occurrence_graph(counts, 3, popularity, torch.Generator().manual_seed(0))
    dense = _dense(g)
    assert g.shape == (5, 5) and np.allclose(dense.sum(1), 1.0, atol=1e-6)  # row-stochastic
    e = np.exp([5.0, 3.0, 2.0])
    assert np.allclose(dense[0], [0, e[0], e[1], 0, e[2]] / e.sum(), atol=1e-6)
    assert np.allclose(dense[1], [1, 0, 0, 0, 0])  # its single neighbour fills every slot
    # row 2: slots {0, 3} + one re-drawn copy of either; weight of a neighbour = multiplicity * exp(count)
    assert set(np.flatnonzero(dense[2])) == {0, 3}
    m0 = 2 if dense[2, 0] > np.exp(3) / (np.exp(3) + np.exp(2)) + 1e-6 else 1
    mult = np.array([m0, 3 - m0])
    w = mult * np.exp([3.0, 2.0])
    assert np.allclose(dense[2, [0, 3]], w / w.sum(), atol=1e-6)
    # row 4 (no co-occurrence): the 3 most popular (0, 2, 3) weighted by softmax of popularity shares
    share = np.array([4, 3, 2]) / 9
    assert np.allclose(dense[4, [0, 2, 3]], np.exp(share) / np.exp(share).sum(), atol=1e-6)
    # the padding draws come from the generator: the same seed rebuilds the same graph
    again = co_occurrence_graph(counts, 3, popularity, torch.Generator().manual_seed(0))
    assert torch.equal(again.indices(), g.indices()) and torch.equal(again.values(), g.values())


def test_co_occurrence_graph_on_the_planted_data_is_vectorised_and_row_stochastic(data):
    train = data.train_csr()
    g = co_occurrence_graph(co_occurrence_counts(train), 5, np.diff(train.indptr))
    d = _dense(g)
    assert d.shape == (N_USERS, N_USERS) and np.allclose(d.sum(1), 1.0, atol=1e-5)
    counts = co_occurrence_counts(train).toarray()
    # a user's neighbours are users it shares items with (all its cluster mates here), never itself
    assert np.all((d > 0) <= (counts > 0)) and np.all(np.diag(d) == 0)


def test_user_interest_graph_is_the_knn_graph_of_mean_item_features(data):
    train = data.train_csr()
    feat = torch.from_numpy(data.item_features["text"])
    interest = user_interests(train, feat)
    ref = (train.toarray() @ feat.numpy()) / train.toarray().sum(1, keepdims=True)
    assert interest.shape == (N_USERS, feat.shape[1]) and np.allclose(interest.numpy(), ref, atol=1e-5)
    k = 6
    g = knn_similarity_graph(interest, k)
    d = _dense(g)
    assert d.shape == (N_USERS, N_USERS) and np.all((d != 0).sum(1) == k)
    xn = ref / np.linalg.norm(ref, axis=1, keepdims=True)
    sim = xn @ xn.T
    picked = d != 0
    assert np.allclose(d[picked], sim[picked] / (k + 1e-7), atol=1e-5)  # similarity values / binary degree k
    # the picked neighbours are a top-k (users with the same items tie: any of them may be picked)
    kth = -np.sort(-sim, axis=1)[:, k - 1]
    assert np.all(np.where(picked, sim, np.inf).min(1) >= kth - 1e-5)
    assert np.allclose(np.diag(d), 1.0 / k, atol=1e-5)  # self included, cosine 1
    # a user without training items gets a zero interest (the reference would divide by zero)
    empty = sp.csr_matrix((np.ones(2), ([0, 0], [1, 2])), shape=(2, N_ITEMS))
    assert torch.equal(user_interests(empty, feat)[1], torch.zeros(feat.shape[1]))


def test_model_graphs_mix_co_occurrence_and_similarity(data):
    cfg = {**SMALL, "uu_co_weight": 0.3, "ii_co_weight": 0.6, "u_mm_image_weight": 0.25, "i_mm_image_weight": 0.5}
    model = build_model("REARM", data, cfg)
    train = data.train_csr()
    text, image = (torch.from_numpy(data.item_features[k]) for k in ("text", "image"))
    item_co = _dense(co_occurrence_graph(co_occurrence_counts(train.T.tocsr()), 4, np.diff(train.T.tocsr().indptr)))
    i_mm = 0.5 * _dense(knn_similarity_graph(image, 4)) + 0.5 * _dense(knn_similarity_graph(text, 4))
    ii = model.ii_graph.to_dense().numpy()
    assert ii.shape == (N_ITEMS, N_ITEMS)
    # the item co-occurrence part of the planted data needs no padding draws: deterministic, compare all
    assert np.allclose(ii, 0.6 * item_co + 0.4 * i_mm, atol=1e-5)
    assert torch.allclose(model.ii_graph_t.to_dense(), model.ii_graph.to_dense().T)
    uu = model.uu_graph.to_dense().numpy()
    u_mm = (0.25 * _dense(knn_similarity_graph(user_interests(train, image), 4))
            + 0.75 * _dense(knn_similarity_graph(user_interests(train, text), 4)))
    assert uu.shape == (N_USERS, N_USERS) and np.allclose(uu.sum(1), 0.3 + 0.7 * u_mm.sum(1), atol=1e-5)


# ---------------------------------------------------------------------------- loss terms
def test_orthogonal_constraint_zero_for_orthogonal_inputs_positive_otherwise():
    from scipy.linalg import hadamard

    h = torch.from_numpy(hadamard(8)).float()  # columns 1.. are centred and mutually orthogonal, rows +-1
    x1, x2 = h[:, 1:4], 3.0 * h[:, 4:7]
    assert float(orthogonal_loss(x1, x2)) == pytest.approx(0.0, abs=1e-10)
    assert float(orthogonal_loss(x1 + 5.0, x2 - 2.0)) == pytest.approx(0.0, abs=1e-10)  # centred first
    # identical inputs: X^T X = 8 I on rows of norm sqrt(3) -> (8/3)^2 on 3 of 9 entries
    assert float(orthogonal_loss(x1, x1)) == pytest.approx((8 / 3) ** 2 / 3, rel=1e-4)
    assert float(orthogonal_loss(x1, 10.0 * x1)) == pytest.approx((8 / 3) ** 2 / 3, rel=1e-4)  # scale-free
    a = torch.randn(16, 4, requires_grad=True)
    loss = orthogonal_loss(a, a[:, [1, 0, 3, 2]] + 0.1 * torch.randn(16, 4))
    loss.backward()
    assert loss > 0 and torch.isfinite(a.grad).all() and a.grad.abs().sum() > 0


def test_info_nce_is_in_batch_softmax_cross_entropy():
    torch.manual_seed(0)
    a, b = torch.randn(6, 5), torch.randn(6, 5)
    an, bn = torch.nn.functional.normalize(a, dim=1), torch.nn.functional.normalize(b, dim=1)
    t = 0.6
    sim = torch.exp(an @ bn.T / t)
    ref = -torch.log(sim.diagonal() / sim.sum(1)).mean()
    assert torch.allclose(info_nce(a, b, t), ref, atol=1e-6)
    assert float(info_nce(a, a, 0.05)) < float(info_nce(a, b, 0.05))  # aligned views: lower loss


# ---------------------------------------------------------------------------- model
@pytest.mark.parametrize("modalities", [("text", "image"), ("text",), ("image",)])
def test_loss_backprop_and_full_sort_predict_shape(modalities):
    d = _planted(modalities)
    torch.manual_seed(0)
    model = build_model("REARM", d, SMALL)
    model.train()
    loss = model.calculate_loss(_batch(d, np.random.default_rng(1)))
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert all(torch.isfinite(g).all() for g in grads.values())
    assert grads["image_embedding"].abs().sum() > 0 and grads["user_t_prefer"].abs().sum() > 0
    assert "meta_netu.weight" not in grads  # the meta-knowledge is detached, as in the reference
    model.eval()
    with torch.no_grad():
        s = model.full_sort_predict(torch.tensor([0, 5, 7]))
        model.prepare_eval()
        cached = model.full_sort_predict(torch.tensor([0, 5, 7]))
        model.end_eval()
    assert s.shape == (3, d.n_items) and torch.isfinite(s).all()
    assert torch.allclose(s, cached)


def test_loss_decreases_and_features_rank_cold_items(data):
    torch.manual_seed(0)
    model = build_model("REARM", data, {**SMALL, "learning_rate": 0.02})
    losses = _fit(model, data, 50, lr=0.02)
    assert np.all(np.isfinite(losses)) and np.mean(losses[-5:]) < np.mean(losses[:5]), losses
    prec = _cold_precision(model, data)
    assert prec > 2 * 0.25, prec
    # control: the same model on shuffled (uninformative) features does not find the cold items
    shuffled = _shuffled_planted()
    torch.manual_seed(0)
    ctrl = build_model("REARM", shuffled, SMALL)
    _fit(ctrl, shuffled, 50, lr=0.02)
    assert _cold_precision(ctrl, shuffled) < prec - 0.3


def test_config_defaults_and_unknown_key(data):
    with pytest.raises(ConfigError, match="unknown hyper-parameter 'user_knn'.*did you mean user_knn_k"):
        build_model("REARM", data, {"user_knn": 5})
    with pytest.raises(ConfigError, match="reg_weight"):  # the reference's reg_weight is weight_decay here
        build_model("REARM", data, {"reg_weight": 1e-4})
    cfg = build_model("REARM", data, SMALL).config
    assert cfg["learner"] == "adamw" and cfg["learning_rate"] == 5e-5 and cfg["weight_decay"] == 5e-4
    assert (cfg["cl_tmp"], cfg["rank"], cfg["user_knn_k"], cfg["n_layers"]) == (0.6, 3, 4, 2)


def test_rebuilt_model_has_identical_graphs_and_scores(data):
    torch.manual_seed(0)
    a = build_model("REARM", data, SMALL)
    torch.manual_seed(1)
    b = build_model("REARM", data, SMALL)
    b.load_state_dict(a.state_dict())
    for name in ("ii_graph", "uu_graph"):
        assert torch.equal(getattr(a, name).to_dense(), getattr(b, name).to_dense())
    a.eval(), b.eval()
    with torch.no_grad():
        assert torch.equal(a.full_sort_predict(torch.arange(4)), b.full_sort_predict(torch.arange(4)))


def test_end_to_end_through_trainer(data):
    from mmfeat.recommenders.trainer import train

    rec = train(data, "REARM", {**SMALL, "epochs": 2, "learning_rate": 0.01, "topk": [5, 10],
                                "valid_metric": "recall@10", "eval_batch_size": 16}, progress=False)
    assert len(rec.epochs) == 2 and all(np.isfinite(e["loss"]) for e in rec.epochs)
    assert 0.0 <= rec.test["recall@10"] <= 1.0
