"""Graph models compute the reference loss with less work: BM3 (MMRec semantics, shared dropout masks) and the
paired positive/negative scoring every BPR model shares."""
import pytest
import torch
import torch.nn.functional as F

from mmfeat.recommenders.models import build_model
from mmfeat.recommenders.models.base import emb_loss

from .test_rec_models_mm import _planted

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _mmrec_loss(model, users, items):
    """MMRec's src/models/bm3.py calculate_loss with dropout 0: full matrices, then the batch rows."""
    u, i = model.forward()
    cos = lambda a, b: 1 - F.cosine_similarity(a, b.detach(), dim=-1).mean()
    pu, pi = model.predictor(u)[users], model.predictor(i)[items]
    loss = cos(pu, i[items]) + cos(pi, u[users])
    cl = 0.0
    for r in model.modalities:
        f = model.feat_trs[r](model.feat_embedding[r])
        pf = model.predictor(f)[items]
        cl = cl + cos(pf, i[items]) + cos(pf, f[items])
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


def test_pair_scores_equal_the_sliced_scores_and_gradients():
    from mmfeat.recommenders.models.base import pair_scores

    torch.manual_seed(0)
    u = torch.randn(5, 3, requires_grad=True)
    table = torch.randn(7, 3, requires_grad=True)
    pos, neg = torch.tensor([0, 2, 2, 6, 1]), torch.tensor([3, 3, 5, 0, 4])
    got = pair_scores(u, table, pos, neg)
    block = table[torch.cat([pos, neg])]
    want = (u * block[:5]).sum(1), (u * block[5:]).sum(1)
    assert all(torch.allclose(a, b) for a, b in zip(got, want))
    g = torch.autograd.grad((got[0] - 2 * got[1]).sum(), [u, table])
    r = torch.autograd.grad((want[0] - 2 * want[1]).sum(), [u, table])
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
