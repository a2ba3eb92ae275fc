"""Graph models compute the reference loss with less work: BM3 (MMRec semantics, shared dropout masks) and the
paired positive/negative scoring every BPR model shares."""
import pytest
import torch
import torch.nn.functional as F

from mmfeat.recommenders.models import build_model
from mmfeat.recommenders.models.base import emb_loss

from .test_rec_models_mm import _planted

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _mmrec_loss(model, users, items, masks=None):
    """MMRec's src/models/bm3.py calculate_loss: full matrices, then the batch rows. ``masks`` (None: dropout 0)
    are its dropout masks of the detached full target matrices: users "u", items "i", each modality by role."""
    keep = (lambda key, x: x) if masks is None else (lambda key, x: x * masks[key])
    u, i = model.forward()
    cos = lambda a, b: 1 - F.cosine_similarity(a, b.detach(), dim=-1).mean()
    u_t, i_t = keep("u", u).detach(), keep("i", i).detach()
    pu, pi = model.predictor(u)[users], model.predictor(i)[items]
    loss = cos(pu, i_t[items]) + cos(pi, u_t[users])
    cl = 0.0
    for r in model.modalities:
        f = model.feat_trs[r](model.feat_embedding[r])
        pf = model.predictor(f)[items]
        cl = cl + cos(pf, i_t[items]) + cos(pf, keep(r, f).detach()[items])
    return loss + model.reg_weight * emb_loss(u, i) + model.cl_weight * cl


def test_bm3_loss_and_gradients_equal_mmrec_formula():
    data = _planted()
    torch.manual_seed(0)
    model = build_model("BM3", data, {"embedding_size": 16, "dropout": 0.0})
    users = torch.tensor([0, 3, 3, 5, 7, 7, 7, 1])
    items = torch.tensor([2, 2, 9, 9, 9, 11, 4, 2])
    got = model.calculate_loss((users, items, items))
    grads = torch.autograd.grad(got, list(model.parameters()))
    want = _mmrec_loss(model, users, items)
    ref = torch.autograd.grad(want, list(model.parameters()))
    assert torch.allclose(got, want, atol=1e-6)
    for g, r in zip(grads, ref):
        assert torch.allclose(g, r, atol=1e-6)


def test_bm3_dropout_targets_and_adam_steps_equal_mmrec(monkeypatch):
    """With dropout on: MMRec drops out the *detached full target matrices* (users, items, each modality's
    projection, one mask each) and then indexes the batch; the online side and the predictor are never dropped.
    Given the same full-matrix masks, our loss, gradients and three Adam steps (the trainer's optimizer) equal
    that rule computed the MMRec way (bench/graph/bm3_same_steps.py checks the same against MMRec's code)."""
    from mmfeat.recommenders.models import bm3
    from mmfeat.recommenders.trainer import build_optimizer

    data = _planted()
    torch.manual_seed(0)
    cfg = {"embedding_size": 16, "dropout": 0.5, "learning_rate": 0.01}
    model = build_model("BM3", data, cfg)
    ref = build_model("BM3", data, cfg)
    ref.load_state_dict(model.state_dict())
    users = torch.tensor([0, 3, 3, 5, 7, 7, 7, 1])
    items = torch.tensor([2, 2, 9, 9, 9, 11, 4, 2])
    keep = lambda n: (torch.rand(n, 16) >= 0.5).float() * 2.0
    masks = {"u": keep(model.n_users), "i": keep(model.n_items), **{r: keep(model.n_items) for r in model.modalities}}
    order, rows = [], {"u": torch.unique(users), "i": torch.unique(items)}

    def ours_dropout(x, p, training):  # our model drops out the batch's distinct rows of each full matrix
        key = order.pop(0)
        return x * masks[key][rows["u" if key == "u" else "i"]]

    monkeypatch.setattr(bm3, "fast_dropout", ours_dropout)

    full = {**model.config, **cfg}
    opt, _ = build_optimizer(model, full, torch.device("cpu"))
    ref_opt = torch.optim.Adam(ref.parameters(), lr=0.01)  # MMRec's Trainer: plain Adam, weight_decay 0
    for _ in range(3):
        order[:] = ["u", "i", *model.modalities]
        opt.zero_grad()
        got = model.calculate_loss((users, items, items))
        got.backward()
        ref_opt.zero_grad()
        want = _mmrec_loss(ref, users, items, masks)
        want.backward()
        assert torch.allclose(got, want, atol=1e-6)
        for (name, p), r in zip(model.named_parameters(), ref.parameters()):
            assert torch.allclose(p.grad, r.grad, atol=1e-6), name
        opt.step()
        ref_opt.step()
    for (name, p), r in zip(model.named_parameters(), ref.parameters()):
        assert torch.allclose(p, r, atol=1e-5), name


def test_bm3_repeated_items_share_one_dropout_mask(monkeypatch):
    """MMRec drops out the full target matrix before indexing: a repeated item gets one mask, not one per row."""
    from mmfeat.recommenders.models import bm3

    data = _planted()
    model = build_model("BM3", data, {"embedding_size": 16, "dropout": 0.5})
    shapes = []
    real = bm3.fast_dropout
    monkeypatch.setattr(bm3, "fast_dropout", lambda x, p, t: shapes.append(tuple(x.shape)) or real(x, p, t))
    model.calculate_loss((torch.tensor([0, 0, 1, 1]), torch.tensor([5, 5, 5, 6]), torch.tensor([0, 0, 0, 0])))
    assert shapes[:2] == [(2, 16), (2, 16)]  # 2 distinct users, 2 distinct items: one mask row each


def test_pair_margin_equals_the_sliced_score_difference_and_gradients():
    from mmfeat.recommenders.models.base import pair_margin

    torch.manual_seed(0)
    u = torch.randn(5, 3, requires_grad=True)
    table = torch.randn(7, 3, requires_grad=True)
    pos, neg = torch.tensor([0, 2, 2, 6, 1]), torch.tensor([3, 3, 5, 0, 4])
    got = pair_margin(u, table, pos, neg)
    block = table[torch.cat([pos, neg])]
    want = (u * block[:5]).sum(1) - (u * block[5:]).sum(1)
    assert torch.allclose(got, want)
    g = torch.autograd.grad((got * torch.arange(5.0)).sum(), [u, table])
    r = torch.autograd.grad((want * torch.arange(5.0)).sum(), [u, table])
    assert all(torch.allclose(a, b) for a, b in zip(g, r))


def test_rearm_scalar_token_attention_equals_multihead_attention():
    from mmfeat.recommenders.models.rearm import scalar_token_attention

    torch.manual_seed(0)
    attn = torch.nn.MultiheadAttention(1, 1, dropout=0.4, batch_first=True)
    torch.nn.init.normal_(attn.in_proj_bias)
    torch.nn.init.normal_(attn.out_proj.bias)
    q, kv = torch.randn(6, 16), torch.randn(6, 16)
    attn.eval()
    want, _ = attn(q.unsqueeze(2), kv.unsqueeze(2), kv.unsqueeze(2), need_weights=False)
    assert torch.allclose(scalar_token_attention(attn, q, kv, training=False), want.squeeze(2), atol=1e-6)
    attn.dropout = 0.0  # training mode without dropout: the same values and gradients as the module
    attn.train()
    got = scalar_token_attention(attn, q, kv, training=True)
    ref, _ = attn(q.unsqueeze(2), kv.unsqueeze(2), kv.unsqueeze(2), need_weights=False)
    assert torch.allclose(got, ref.squeeze(2), atol=1e-6)
    g = torch.autograd.grad(got.sum(), list(attn.parameters()))
    r = torch.autograd.grad(ref.sum(), list(attn.parameters()))
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(g, r))


def test_rearm_dropout_mask_keeps_one_minus_p():
    import numpy as np

    from mmfeat.recommenders.models.rearm import dropout_keep_mask

    keep = dropout_keep_mask((200, 64, 64), 0.4, np.random.default_rng(0))
    assert keep.dtype == torch.bool and keep.shape == (200, 64, 64)
    assert abs(keep.float().mean().item() - 0.6) < 0.003
    assert not dropout_keep_mask((1000,), 1.0, np.random.default_rng(0)).any()


def test_rearm_attention_with_every_weight_dropped_is_its_bias():
    """REARM's Sports setting uses s_drop = 1.0: the module then drops every weight (F.dropout p = 1)."""
    import numpy as np

    from mmfeat.recommenders.models.rearm import scalar_token_attention

    attn = torch.nn.MultiheadAttention(1, 1, dropout=1.0, batch_first=True)
    torch.nn.init.normal_(attn.out_proj.bias)
    q = torch.randn(3, 8)
    out = scalar_token_attention(attn, q, q, training=True, rng=np.random.default_rng(0))
    assert torch.isfinite(out).all() and torch.allclose(out, attn.out_proj.bias.expand(3, 8))
    attn.train()
    ref, _ = attn(q.unsqueeze(2), q.unsqueeze(2), q.unsqueeze(2), need_weights=False)
    assert torch.allclose(out, ref.squeeze(2))


def test_rearm_blockwise_attention_gradients_are_exact(monkeypatch):
    """The block-by-block attention with its hand-written backward: gradcheck in float64, with a dropout mask
    and more rows than one block (a last, partial block included)."""
    from mmfeat.recommenders.models.rearm import _ScalarTokenSoftmaxAttention as Attn

    monkeypatch.setattr(Attn, "ROWS", 4)
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(10, 6, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(3))
    keep = (torch.rand(10, 6, 6, generator=g) >= 0.4).double()
    assert torch.autograd.gradcheck(lambda a, b, c: Attn.apply(a, b, c, keep), (q, k, v))
    assert torch.autograd.gradcheck(lambda a, b, c: Attn.apply(a, b, c, None), (q, k, v))
    whole = torch.bmm(torch.softmax(q[:, :, None] * k[:, None, :], -1) * keep, v[:, :, None]).squeeze(2)
    assert torch.allclose(Attn.apply(q, k, v, keep), whole)


def test_distinct_ids_match_torch_unique():
    from mmfeat.recommenders.models.base import distinct_ids

    ids = torch.tensor([5, 0, 5, 9, 3, 0, 5])
    got = distinct_ids(ids, 12)
    want = torch.unique(ids, return_inverse=True, return_counts=True)
    assert all(torch.equal(a, b) for a, b in zip(got, want))


def test_vbpr_loss_and_gradients_equal_mmrec_form():
    """VBPR's step (the margin, norms from the distinct rows and their counts) gives MMRec's loss,
    BPR on separate scores + reg * EmbLoss of the gathered batch, and the same gradients, whether the batch
    holds a few items or nearly all of them (the whole-catalogue projection)."""
    from mmfeat.recommenders.models.base import bpr_loss

    data = _planted()  # 40 items
    torch.manual_seed(0)
    model = build_model("VBPR", data, {"embedding_size": 8, "reg_weight": 0.1})
    few = (torch.tensor([0, 3, 3, 5]), torch.tensor([2, 2, 9, 11]), torch.tensor([4, 9, 30, 2]))
    g = torch.Generator().manual_seed(1)
    many = (torch.randint(0, 32, (60,), generator=g), torch.randperm(40, generator=g).repeat(2)[:60],
            torch.randint(0, 40, (60,), generator=g))
    for users, pos, neg in (few, many):
        got = model.calculate_loss((users, pos, neg))
        items = model.item_embeddings()
        u, p, n = model.u_embedding[users], items[pos], items[neg]
        want = bpr_loss((u * p).sum(1), (u * n).sum(1)) + model.reg_weight * emb_loss(u, p, n)
        assert torch.allclose(got, want, atol=1e-6)
        params = list(model.parameters())
        for a, b in zip(torch.autograd.grad(got, params), torch.autograd.grad(want, params)):
            assert torch.allclose(a, b, atol=1e-6)
