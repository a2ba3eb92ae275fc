"""MMHCL: hypergraph construction (against the reference's dense construction), the synergistic contrastive
loss, and training on the tiny planted-signal data of test_rec_models_mm."""
import numpy as np
import pytest
import torch

from mmfeat.recommenders.config import ConfigError
from mmfeat.recommenders.models import build_model
from mmfeat.recommenders.models import mmhcl as mmhcl_mod  # registers MMHCL
from tests.test_rec_models_mm import N_ITEMS, N_USERS, _batch, _cold_precision, _fit, _planted, _shuffled_planted

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = {"embedding_size": 16, "train_batch_size": 64, "knn_k": 4}


@pytest.fixture(scope="module")
def data():
    return _planted()


def _dense(t: torch.Tensor) -> torch.Tensor:
    return t.to_dense() if t.layout != torch.strided else t


# ---------------------------------------------------------------------------- hypergraphs
def test_u2u_hypergraph_is_row_normalized_shared_items_without_self_loops(data):
    g = mmhcl_mod.u2u_hypergraph(data.train_csr())
    assert g.shape == (N_USERS, N_USERS)
    a = _dense(g)
    assert torch.all(a.diagonal() == 0)
    rs = a.sum(1)
    assert torch.allclose(rs[rs > 0], torch.ones_like(rs[rs > 0]), atol=1e-6)  # D^-1 A: rows sum to 1
    # the reference's dense construction: R R^T, diagonal erased, D^-1 (inf -> 0)
    r = torch.from_numpy(data.train_csr().toarray())
    ref = r @ r.T
    ref.fill_diagonal_(0)
    d = ref.sum(1).pow(-1)
    d[torch.isinf(d)] = 0
    assert torch.allclose(a, d[:, None] * ref, atol=1e-6)
    # planted data: users only share items with users of their own cluster
    cl = torch.arange(N_USERS) % 4
    assert torch.all(a[cl[:, None] != cl[None, :]] == 0)


def test_u2u_isolated_user_gets_zero_row():
    import scipy.sparse as sp
    r = sp.csr_matrix(np.array([[1, 1, 0], [1, 0, 0], [0, 0, 1]], dtype=np.float32))
    a = _dense(mmhcl_mod.u2u_hypergraph(r))
    assert torch.equal(a[2], torch.zeros(3)) and torch.allclose(a[:2].sum(1), torch.ones(2))


def test_i2i_hypergraph_matches_dense_reference_and_is_sym_normalized(data):
    feats = [torch.from_numpy(data.item_features[m]) for m in ("image", "text")]
    g = mmhcl_mod.i2i_hypergraph(feats, 4)
    assert g.shape == (N_ITEMS, N_ITEMS)
    a = _dense(g)
    # the reference: per modality top-k cosine scatter, positives -> 1, concatenated, H H^T, D^-1/2 . D^-1/2
    hs = []
    for f in feats:
        xn = f / f.norm(dim=1, keepdim=True)
        sim = xn @ xn.T
        v, i = sim.topk(4, dim=1)
        h = torch.zeros_like(sim).scatter_(1, i, v)
        h[h > 0] = 1.0
        hs.append(h)
    h = torch.cat(hs, 1)
    assert h.shape == (N_ITEMS, 2 * N_ITEMS)
    hh = h @ h.T
    dinv = hh.sum(1).pow(-0.5)
    ref = dinv[:, None] * hh * dinv[None, :]
    assert torch.allclose(a, ref, atol=1e-6)
    assert torch.allclose(a, a.T, atol=1e-7)
    # sym normalization: A_hat @ sqrt(deg) = sqrt(deg) (row sums of D^1/2 A_hat D^1/2 are the degrees)
    deg = hh.sum(1)
    assert torch.allclose(a @ deg.sqrt(), deg.sqrt(), atol=1e-5)
    # every item is in its own kNN list in both modalities: diagonal of H H^T = 2 k
    assert torch.allclose(hh.diagonal(), torch.full((N_ITEMS,), 8.0))
    # cached by content and k
    assert mmhcl_mod.i2i_hypergraph([f.clone() for f in feats], 4) is g
    assert mmhcl_mod.i2i_hypergraph(feats, 3) is not g


def test_knn_incidence_keeps_non_positive_similarities_like_the_reference():
    f = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]])
    h = mmhcl_mod.knn_incidence(f, 3).toarray()
    # row 0: itself (1 -> 1), item 2 (cos 0 -> stays 0, dropped), item 1 (cos -1 -> stays -1)
    assert np.allclose(h[0], [1.0, -1.0, 0.0])


# ---------------------------------------------------------------------------- contrastive loss
def _naive_infonce(a, b, t):
    """The reference's formula, literally: exp, sums, minus the self term, log."""
    an, bn = torch.nn.functional.normalize(a), torch.nn.functional.normalize(b)
    refl, between = torch.exp(an @ an.T / t), torch.exp(an @ bn.T / t)
    return (-torch.log(between.diag() / (refl.sum(1) + between.sum(1) - refl.diag()))).mean()


@pytest.mark.parametrize("chunk", [7, 4096])
def test_infonce_equals_reference_formula(chunk):
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(30, 8, generator=g), torch.randn(30, 8, generator=g)
    got = mmhcl_mod.synergistic_infonce(a, b, 0.6, chunk=chunk)
    assert torch.allclose(got, _naive_infonce(a, b, 0.6), atol=1e-5)
    # aligned views give a lower loss than shuffled ones
    assert mmhcl_mod.synergistic_infonce(a, a + 0.01 * b, 0.6) < mmhcl_mod.synergistic_infonce(a, b, 0.6)


def test_contrastive_weight_changes_loss_and_has_gradient(data):
    b = _batch(data, np.random.default_rng(1))
    losses = {}
    for w in (0.07, 0.5):
        torch.manual_seed(0)
        m = build_model("MMHCL", data, {**SMALL, "item_cl_weight": w, "user_cl_weight": 0.03})
        losses[w] = m.calculate_loss(b)
        ue, ie, ii, uu = m.forward()
        item_cl = mmhcl_mod.synergistic_infonce(ie, ii, m.temperature)
    # the forward does not depend on a (non-zero) weight: the loss moves by exactly dw * InfoNCE_items
    assert not torch.isclose(losses[0.07], losses[0.5])
    assert torch.allclose(losses[0.5] - losses[0.07], (0.5 - 0.07) * item_cl.detach(), atol=1e-5)
    # the contrastive term alone sends gradient to both hypergraph tables and the user-item tables
    m.zero_grad()
    m.contrastive_loss(*m.forward()).backward()
    for p in (m.ii_embedding.weight, m.uu_embedding.weight, m.user_ui_embedding.weight, m.item_ui_embedding.weight):
        assert p.grad is not None and p.grad.abs().sum() > 0


def test_zero_weight_switches_a_branch_off(data):
    torch.manual_seed(0)
    m = build_model("MMHCL", data, {**SMALL, "item_cl_weight": 0.0})
    ue, ie, _, _ = m.forward()
    _, i_ui = m._user_item()
    assert torch.equal(ie, i_ui)  # items: first-order only, no hypergraph view added
    m.calculate_loss(_batch(data, np.random.default_rng(0))).backward()
    assert m.ii_embedding.weight.grad is None
    assert m.uu_embedding.weight.grad.abs().sum() > 0


# ---------------------------------------------------------------------------- model
@pytest.mark.parametrize("modalities", [("text", "image"), ("text",), ("image",)])
def test_loss_finite_backprop_and_full_sort_shape(modalities):
    d = _planted(modalities)
    torch.manual_seed(0)
    m = build_model("MMHCL", d, SMALL)
    m.train()
    loss = m.calculate_loss(_batch(d, np.random.default_rng(1)))
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)
    m.eval()
    with torch.no_grad():
        s = m.full_sort_predict(torch.tensor([0, 5, 7]))
        m.prepare_eval()
        s2 = m.full_sort_predict(torch.tensor([0, 5, 7]))
        m.end_eval()
    assert s.shape == (3, N_ITEMS) and torch.isfinite(s).all() and torch.allclose(s, s2)


def test_learns_planted_signal_on_cold_items(data):
    cfg = {**SMALL, "reg_weight": 1e-4}
    torch.manual_seed(0)
    m = build_model("MMHCL", data, cfg)
    losses = _fit(m, data, 60, lr=0.02)
    assert np.all(np.isfinite(losses)) and np.mean(losses[-5:]) < np.mean(losses[:5])
    prec = _cold_precision(m, data)
    assert prec > 2 * 0.25, prec
    # control: shuffled (uninformative) features do not find the cold items
    shuffled = _shuffled_planted()
    torch.manual_seed(0)
    ctrl = build_model("MMHCL", shuffled, cfg)
    _fit(ctrl, shuffled, 60, lr=0.02)
    assert _cold_precision(ctrl, shuffled) < prec - 0.3


@pytest.mark.parametrize("cf_model", ["ngcf", "mf"])
def test_other_cf_backbones(cf_model, data):
    torch.manual_seed(0)
    m = build_model("MMHCL", data, {**SMALL, "cf_model": cf_model})
    losses = _fit(m, data, 15)
    assert np.all(np.isfinite(losses)) and np.mean(losses[-3:]) < np.mean(losses[:3])
    m.eval()
    assert m.full_sort_predict(torch.arange(4)).shape == (4, N_ITEMS)


def test_config_rejects_unknown_key_and_bad_backbone(data):
    with pytest.raises(ConfigError, match="knn_kk"):
        build_model("MMHCL", data, {"knn_kk": 3})
    with pytest.raises(ValueError, match="cf_model"):
        build_model("MMHCL", data, {**SMALL, "cf_model": "gcn"})


def test_defaults_and_reference_block():
    cls = mmhcl_mod.MMHCL
    assert cls.defaults["learning_rate"] == 1e-4 and cls.defaults["knn_k"] == 5
    assert cls.defaults["user_cl_weight"] == 0.03 and cls.defaults["item_cl_weight"] == 0.07
    assert cls.defaults["temperature"] == 0.6 and cls.defaults["n_user_layers"] == 3
    assert set(cls.grid) >= {"temperature", "knn_k", "user_cl_weight", "item_cl_weight", "reg_weight"}
    assert "Reference:" in cls.__doc__ and "Paper:" in cls.__doc__ and "Code:" in cls.__doc__


def test_end_to_end_through_trainer(data):
    trainer = pytest.importorskip("mmfeat.recommenders.trainer")
    rec = trainer.train(data, "MMHCL", {**SMALL, "epochs": 3, "eval_step": 1, "learning_rate": 0.01,
                                        "topk": [5, 10], "valid_metric": "recall@10", "eval_batch_size": 16},
                        progress=False)
    assert all(np.isfinite(e["loss"]) for e in rec.epochs) and len(rec.epochs) == 3
    assert 0.0 <= rec.test["recall@10"] <= 1.0


def test_dense_and_sparse_u2u_paths_agree(data, monkeypatch):
    monkeypatch.setattr(mmhcl_mod, "DENSE_FRACTION", 0.0)  # always dense
    torch.manual_seed(0)
    dense = build_model("MMHCL", data, SMALL)
    monkeypatch.setattr(mmhcl_mod, "DENSE_FRACTION", 2.0)  # never dense
    torch.manual_seed(0)
    sparse = build_model("MMHCL", data, SMALL)
    assert dense.u2u_dense and not sparse.u2u_dense
    b = _batch(data, np.random.default_rng(0))
    ld, ls = dense.calculate_loss(b), sparse.calculate_loss(b)
    assert torch.allclose(ld, ls, atol=1e-5)
    ld.backward()
    ls.backward()
    assert torch.allclose(dense.uu_embedding.weight.grad, sparse.uu_embedding.weight.grad, atol=1e-6)
