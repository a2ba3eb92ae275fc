"""LIRDRec on the tiny planted-signal data of test_rec_models_mm: it learns the content signal, its
progressive weight-copying fusion does what the paper/reference does, shapes, and a strict config."""
import numpy as np
import pytest
import torch

from mmfeat.recommenders.config import ConfigError
from mmfeat.recommenders.models import build_model, get_model_class
from mmfeat.recommenders.models import lirdrec  # noqa: F401  (registers LIRDRec)
from mmfeat.recommenders.models.lirdrec import ProgressiveWeightCopying, dct_ortho, pwc_weights

from .test_rec_models_mm import N_ITEMS, N_USERS, _batch, _cold_precision, _fit, _planted, _shuffled_planted

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = {"embedding_size": 16, "knn_k": 4, "train_batch_size": 64}


@pytest.fixture(scope="module")
def data():
    return _planted()


def _model(data, **extra):
    torch.manual_seed(0)
    return build_model("LIRDRec", data, {**SMALL, **extra})


def test_learns_planted_signal_on_cold_items(data):
    """Items are represented by their features only, so cold items (never in train) of the user's cluster
    must rank first; the same model on shuffled features must not find them."""
    model = _model(data)
    losses = _fit(model, data, 40)
    assert np.all(np.isfinite(losses)) and np.mean(losses[-5:]) < np.mean(losses[:5])
    prec = _cold_precision(model, data)
    assert prec > 0.75, prec  # random: 0.25
    shuffled = _shuffled_planted()
    ctrl = _model(shuffled)
    _fit(ctrl, shuffled, 40)
    assert _cold_precision(ctrl, shuffled) < prec - 0.3


def _fusion_io(model, batch):
    """(blocks given to the fusion, its output) during one training ``calculate_loss``."""
    seen = {}
    hook = model.fusion.register_forward_hook(lambda mod, args, out: seen.update(blocks=args[0], out=out))
    try:
        loss = model.calculate_loss(batch)
    finally:
        hook.remove()
    return loss, [b.detach() for b in seen["blocks"]], seen["out"].detach()


def test_weight_copying_copies_the_last_training_weights_into_theta(data):
    model = _model(data)
    fusion = model.fusion
    model.train()
    theta0 = fusion.theta.detach().clone()
    model.pre_epoch()  # epoch 1: the reference starts last_att at theta, so the first copy changes nothing
    assert torch.equal(fusion.theta.detach(), theta0)
    assert fusion.w.tolist() == pytest.approx(list(pwc_weights(0.9, 0.1, 1, 0.9)))

    loss, blocks, out = _fusion_io(model, _batch(data, np.random.default_rng(1)))
    assert len(blocks) == 3 and out.shape == (N_USERS, 3 * 16)  # image, text, shared blocks
    # the weights the fusion applied, recovered from its output: block k of the output = a_k * block k
    applied = torch.stack([(o * b).sum(1) / (b * b).sum(1) for o, b in zip(out.split(16, 1), blocks)], 1)
    w1, w2 = fusion.w.tolist()
    with torch.no_grad():
        gates = torch.cat([g(b) for g, b in zip(fusion.gates, blocks)], 1)
        expected = torch.softmax(w1 * gates + w2 * theta0, dim=1)
    assert torch.allclose(applied, expected, atol=1e-5)
    loss.backward()
    assert fusion.theta.grad is not None and fusion.theta.grad.abs().sum() > 0  # theta is learned too

    model.pre_epoch()  # epoch 2: those weights become theta, w1 decays again
    assert torch.allclose(fusion.theta.detach(), expected, atol=1e-6)
    assert torch.allclose(fusion.theta.sum(1), torch.ones(N_USERS))  # theta now lies on the simplex
    assert fusion.w.tolist() == pytest.approx(list(pwc_weights(w1, w2, 2, 0.9)))

    # evaluation forwards are never copied
    before = fusion.last_weights.clone()
    model.eval()
    with torch.no_grad():
        model.prepare_eval()
        model.full_sort_predict(torch.arange(3))
        model.end_eval()
    assert torch.equal(fusion.last_weights, before)


def test_fusion_moves_from_gates_to_copied_weights():
    """Progressive: at first the gate networks decide the weights; after enough epochs only the copied
    per-user weights (theta) do, whatever the gates output."""
    torch.manual_seed(0)
    pwc = ProgressiveWeightCopying(n_users=5, n_blocks=3, d=8, decay_base=0.9, decay_weight=0.9)
    blocks = [torch.randn(5, 8) for _ in range(3)]
    other = [torch.randn(5, 8) * 10 for _ in range(3)]  # different gate outputs
    with torch.no_grad():
        assert not torch.allclose(pwc.weights(blocks), pwc.weights(other), atol=1e-2)
        w1 = [float(pwc.w[0])]
        for _ in range(30):
            pwc(blocks, record=True)
            pwc.step_epoch()
            w1.append(float(pwc.w[0]))
        assert all(a > b for a, b in zip(w1, w1[1:])) and w1[-1] < 1e-15
        assert torch.allclose(pwc.weights(blocks), pwc.weights(other), atol=1e-6)
        assert torch.allclose(pwc.weights(other), torch.softmax(pwc.theta, 1), atol=1e-6)
    assert {"w", "epoch", "last_weights", "theta"} <= set(pwc.state_dict())  # best-valid restore keeps them


def test_schedule_matches_reference_recursion():
    w1, w2 = 0.9, 0.1
    for epoch in range(1, 6):
        a = w1 * 0.9 ** epoch
        expect = (a / (a + w2), w2 / (a + w2))
        w1, w2 = pwc_weights(w1, w2, epoch, 0.9)
        assert (w1, w2) == pytest.approx(expect) and w1 + w2 == pytest.approx(1.0)


def test_shared_input_is_orthonormal_dct_of_image_then_text(data):
    model = _model(data)
    img, txt = (torch.from_numpy(data.item_features[k]) for k in ("image", "text"))
    assert model.dct_feat.shape == (N_ITEMS, 20 + 12)
    assert torch.allclose(model.dct_feat[:, :20].norm(dim=1), img.norm(dim=1), atol=1e-4)  # orthonormal
    assert torch.allclose(model.dct_feat[:, :20], dct_ortho(img))
    assert torch.allclose(model.dct_feat[:, 20:], dct_ortho(txt))
    const = dct_ortho(torch.full((1, 4), 3.0))  # DC term sqrt(n) * c, nothing else
    assert torch.allclose(const, torch.tensor([[6.0, 0.0, 0.0, 0.0]]), atol=1e-6)


@pytest.mark.parametrize("modalities", [("text", "image"), ("text",), ("image",)])
def test_full_sort_predict_shape_and_gradients(modalities):
    d = _planted(modalities)
    model = _model(d)
    n_blocks = len(modalities) + 1
    model.train()
    model.pre_epoch()
    loss = model.calculate_loss(_batch(d, np.random.default_rng(1)))
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert len(model.fusion.gates) == n_blocks
    model.eval()
    with torch.no_grad():
        model.prepare_eval()
        s = model.full_sort_predict(torch.tensor([0, 5, 7]))
        model.end_eval()
        s2 = model.full_sort_predict(torch.tensor([0, 5, 7]))  # uncached path, same scores
    assert s.shape == (3, d.n_items) and torch.isfinite(s).all()
    assert torch.allclose(s, s2, atol=1e-5)


def test_edge_pruning_keeps_the_requested_share(data):
    model = _model(data, dropout=0.5)
    model.pre_epoch()
    assert model.masked_adj._nnz() == 2 * int(len(data.train) * 0.5)


def test_config_defaults_grid_and_unknown_key(data):
    cls = get_model_class("LIRDRec")
    assert cls.grid == {"n_ui_layers": [2, 3, 4], "mm_image_weight": [0.1, 0.2],
                        "reg_weight": [0.01, 0.001, 0.0001], "decay_weight": [0.9, 0.95, 0.99],
                        "learning_rate": [0.0001]}
    d = cls.defaults
    assert (d["knn_k"], d["n_mm_layers"], d["n_ui_layers"], d["dropout"], d["decay_base"], d["reg_weight"],
            d["learning_rate"]) == (10, 1, 2, 0.0, 0.9, 0.01, 1e-4)
    with pytest.raises(ConfigError, match="decay_weight"):
        build_model("LIRDRec", data, {"decay_wieght": 0.9})
    with pytest.raises(ConfigError):
        build_model("LIRDRec", data, {"not_a_key": 1})
