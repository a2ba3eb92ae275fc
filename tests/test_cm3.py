"""CM3: spherical Bézier fusion, calibrated uniformity, and training on the tiny planted-signal data."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmfeat.recommenders.config import ConfigError
from mmfeat.recommenders.data import InteractionData
from mmfeat.recommenders.models import build_model, default_config
from mmfeat.recommenders.models import cm3  # noqa: F401  (registers CM3)
from mmfeat.recommenders.models.cm3 import (calibrated_uniformity, content_similarity, slerp, spherical_bezier,
                                            uniformity)

from .test_rec_models_mm import N_CL, N_ITEMS, N_USERS, _batch, _cold_precision, _fit, _planted, _shuffled_planted

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SMALL = {"embedding_size": 16, "knn_k": 4, "train_batch_size": 64}


@pytest.fixture(scope="module")
def data():
    return _planted()


def _unit(*shape, seed=0):
    return F.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed)), dim=-1)


# ---------------------------------------------------------------------------- fusion
@pytest.mark.parametrize("m", [1, 2, 3, 5])
def test_bezier_fusion_stays_on_the_unit_sphere(m):
    pts = _unit(m, 50, 8)
    t = torch.rand(50, generator=torch.Generator().manual_seed(1))
    out = spherical_bezier(pts, t)
    assert out.shape == (50, 8)
    assert torch.allclose(out.norm(dim=1), torch.ones(50), atol=1e-5)


def test_bezier_fusion_of_one_modality_is_that_modality():
    pts = _unit(1, 20, 8)
    assert torch.equal(spherical_bezier(pts, torch.rand(20)), pts[0])


def test_bezier_endpoints_and_two_modality_slerp():
    pts = _unit(3, 10, 6)
    assert torch.allclose(spherical_bezier(pts, torch.zeros(10)), pts[0], atol=1e-5)  # curve starts at P0
    assert torch.allclose(spherical_bezier(pts, torch.ones(10)), pts[2], atol=1e-5)  # and ends at P_last
    a, b = pts[0], pts[1]
    t = torch.full((10,), 0.5)
    mid = spherical_bezier(pts[:2], t)
    # M = 2 is slerp: the midpoint is the normalized bisector, equally far (in angle) from both ends
    assert torch.allclose(mid, F.normalize(a + b, dim=1), atol=1e-5)
    assert torch.allclose((mid * a).sum(1), (mid * b).sum(1), atol=1e-5)
    # slerp of (nearly) parallel vectors is finite (the clamp keeps sin(theta) > 0)
    assert torch.isfinite(slerp(a, a.clone(), t)).all()


def test_model_fused_features_are_unit_and_follow_the_single_modality():
    d1 = _planted(("text",))
    torch.manual_seed(0)
    model = build_model("CM3", d1, SMALL)
    fused = model.fused_features()
    ref = F.normalize(model.fuse_proj["text"](model.feat_text), dim=1)
    assert torch.allclose(fused, ref, atol=1e-6)
    d2 = _planted()
    model2 = build_model("CM3", d2, SMALL)
    assert torch.allclose(model2.fused_features().norm(dim=1), torch.ones(N_ITEMS), atol=1e-5)


# ---------------------------------------------------------------------------- calibrated uniformity
def test_calibrated_uniformity_down_weights_similar_items():
    """Item 0 sits at equal distance from items 1 and 2; when its content is similar to item 1's (and not to
    item 2's), the loss's repulsion of 0 from 1 is weaker than from 2. With the similarity scaling dropped
    the two pushes would be equal, so this fails."""
    x = torch.eye(4)[:3].clone().requires_grad_(True)  # orthogonal unit vectors: pairwise equidistant
    pushes = {}
    for s01 in (0.0, 0.9):
        sim = torch.zeros(3, 3)
        sim[0, 1] = sim[1, 0] = s01
        x.grad = None
        calibrated_uniformity(x, sim).backward()
        # descent moves x0 by -grad = c1 (x0 - x1) + c2 (x0 - x2) = (c1 + c2) e0 - c1 e1 - c2 e2
        step = -x.grad[0]
        pushes[s01] = (float(-step[1]), float(-step[2]))  # (push away from item 1, from item 2)
    c1, c2 = pushes[0.0]
    assert c1 > 0 and c1 == pytest.approx(c2)  # equal similarity: equal repulsion
    c1, c2 = pushes[0.9]
    assert 0 < c1 < c2  # similar content: weaker repulsion
    assert c1 / c2 == pytest.approx(np.exp(-2 * 2.0 * 0.9), rel=1e-4)  # weight exp(2t (1 - s)) per pair
    # the loss is lower for similar items, and pair weights are exactly exp(2t (1 - s)) times plain uniformity
    y = _unit(6, 8, seed=3)
    sim = torch.zeros(6, 6)
    sim[0, 1] = sim[1, 0] = 0.9
    assert calibrated_uniformity(y, sim) < calibrated_uniformity(y, torch.zeros(6, 6))
    iu = torch.triu_indices(6, 6, 1)
    sq = torch.cdist(y, y).pow(2)[iu[0], iu[1]]
    w = torch.exp(2 * 2.0 * (1 - sim[iu[0], iu[1]]))
    assert torch.allclose(calibrated_uniformity(y, sim), torch.log((w * torch.exp(-2.0 * sq)).mean()), atol=1e-5)


def test_uniformity_matches_pdist_definition():
    x = _unit(9, 5, seed=4)
    ref = torch.pdist(x, p=2).pow(2).mul(-2).exp().mean().log()
    assert torch.allclose(uniformity(x), ref, atol=1e-5)
    # equal similarities s everywhere shift the calibrated loss by the constant 2t(1 - s)
    s = torch.full((9, 9), 0.3)
    assert torch.allclose(calibrated_uniformity(x, s), ref + 2 * 2.0 * (1 - 0.3), atol=1e-5)
    assert float(uniformity(x[:1])) == 0.0  # no pairs: no term (the reference would give NaN)


def test_pair_terms_over_distinct_rows_equal_the_full_batch():
    """The model evaluates the pair terms on the batch's distinct users / negatives weighted by multiplicity:
    same loss and same gradient as on the full batch with its repeats (as the reference's pdist)."""
    base = _unit(5, 6, seed=7)
    idx = torch.tensor([0, 3, 3, 1, 4, 0, 3, 2])
    s5 = content_similarity(_unit(5, 4, seed=8), 0.0, 0.8)
    full_x = base.clone().requires_grad_(True)
    xb = full_x[idx]
    ref = uniformity(xb) + calibrated_uniformity(xb, s5[idx][:, idx])
    ref.backward()
    uniq, counts = torch.unique(idx, return_counts=True)
    dist_x = base.clone().requires_grad_(True)
    xu = dist_x[uniq]
    got = uniformity(xu, counts=counts) + calibrated_uniformity(xu, s5[uniq][:, uniq], counts=counts)
    got.backward()
    assert torch.allclose(got, ref, atol=1e-5)
    assert torch.allclose(dist_x.grad, full_x.grad, atol=1e-5)
    assert float(uniformity(base[:1], counts=torch.tensor([1]))) == 0.0
    assert torch.isfinite(uniformity(base[:1], counts=torch.tensor([3])))  # one row, repeated: pairs exist


def test_content_similarity_is_clamped():
    f = torch.tensor([[1.0, 0.0], [1.0, 0.01], [-1.0, 0.0]])
    s = content_similarity(f, 0.0, 0.8)
    assert float(s.max()) == pytest.approx(0.8) and float(s.min()) == pytest.approx(0.0)


# ---------------------------------------------------------------------------- model
@pytest.mark.parametrize("modalities", [("text", "image"), ("text",), ("image",)])
def test_loss_backprop_and_full_sort_predict_shape(modalities):
    d = _planted(modalities)
    torch.manual_seed(0)
    model = build_model("CM3", d, SMALL)
    model.train()
    loss = model.calculate_loss(_batch(d, np.random.default_rng(1)))
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values()), \
        [n for n, g in grads.items() if g is None]
    assert model.theta.shape == (N_USERS, len(modalities) + 1, 1)
    model.eval()
    with torch.no_grad():
        s = model.full_sort_predict(torch.tensor([0, 5, 7]))
        model.prepare_eval()
        a = model.full_sort_predict(torch.tensor([0, 5, 7]))
        model.end_eval()
        model.prepare_eval()
        b = model.full_sort_predict(torch.tensor([0, 5, 7]))
        model.end_eval()
    assert s.shape == (3, d.n_items) and torch.isfinite(s).all()
    assert torch.equal(a, b) and torch.allclose(s, a)  # evaluation draws are seeded: deterministic


def test_three_modalities_fuse_and_train():
    d = _planted()
    d.item_features["audio"] = d.item_features["text"][:, ::-1].copy()

    class Three(cm3.CM3Config):
        audio_feature: str | None = "audio"

    class CM3x(cm3.CM3):  # not registered: a subclass with a third role, built directly
        modality_roles = ("text", "image", "audio")
        config_class = Three

    torch.manual_seed(0)
    model = CM3x(d, Three(**SMALL).model_dump())
    assert model.modalities == ("text", "image", "audio")
    assert torch.allclose(model.fused_features().norm(dim=1), torch.ones(N_ITEMS), atol=1e-5)
    losses = _fit(model, d, 20)
    assert np.all(np.isfinite(losses)) and np.mean(losses[-3:]) < np.mean(losses[:3])


def test_loss_decreases_and_ranks_planted_cold_items(data):
    torch.manual_seed(0)
    model = build_model("CM3", data, SMALL)
    losses = _fit(model, data, 60, lr=0.02)
    assert np.all(np.isfinite(losses)) and np.mean(losses[-5:]) < np.mean(losses[:5])
    prec = _cold_precision(model, data)
    assert prec > 2 * 0.25, prec
    # control: shuffled (uninformative) features do not find the cold items
    shuffled = _shuffled_planted()
    torch.manual_seed(0)
    ctrl = build_model("CM3", shuffled, SMALL)
    _fit(ctrl, shuffled, 60, lr=0.02)
    assert _cold_precision(ctrl, shuffled) < prec - 0.3


def _warm_planted(seed=0) -> InteractionData:
    """Every item warm: each user trains on 6 of its cluster's 10 items and is tested on 2 others."""
    rng = np.random.default_rng(seed)
    item_cl = np.arange(N_ITEMS) % N_CL
    train, test = [], []
    for u in range(N_USERS):
        own = rng.permutation(np.flatnonzero(item_cl == u % N_CL))
        train += [(u, i) for i in own[:6]]
        test += [(u, i) for i in own[6:8]]
    centers = rng.normal(size=(N_CL, 12))
    feats = {"text": centers[item_cl] + 0.3 * rng.normal(size=(N_ITEMS, 12)),
             "image": np.tanh(centers[item_cl] @ rng.normal(size=(12, 20))) + 0.3 * rng.normal(size=(N_ITEMS, 20))}
    return InteractionData(
        n_users=N_USERS, n_items=N_ITEMS, train=np.array(train), valid=np.array(test), test=np.array(test),
        user_ids=np.arange(N_USERS).astype(str), item_ids=np.arange(N_ITEMS).astype(str),
        item_features={m: f.astype(np.float32) for m, f in feats.items()}, split_hash="synthetic-warm")


def test_trainer_end_to_end_beats_popularity():
    trainer = pytest.importorskip("mmfeat.recommenders.trainer")
    d = _warm_planted()
    rec = trainer.train(d, "CM3", {**SMALL, "epochs": 15, "learning_rate": 0.02, "topk": [5, 10],
                                   "valid_metric": "recall@5", "eval_batch_size": 16}, progress=False)
    assert all(np.isfinite(e["loss"]) for e in rec.epochs)
    # popularity: every user gets the same top items by train count (own-cluster hits only by chance)
    csr = d.train_csr()
    pop = np.asarray(csr.sum(0)).ravel().astype(float)
    hits = []
    for u in range(N_USERS):
        s = pop.copy()
        s[csr[u].indices] = -np.inf
        top = np.argsort(-s, kind="stable")[:5]
        hits.append(len(set(top) & set(d.test[d.test[:, 0] == u, 1])) / 2)
    assert rec.test["recall@5"] > float(np.mean(hits)) + 0.2, (rec.test, np.mean(hits))


# ---------------------------------------------------------------------------- config
def test_config_defaults_grid_and_strictness(data):
    cfg = default_config("CM3")
    assert (cfg["n_ui_layers"], cfg["gamma"], cfg["max_sim"], cfg["alpha"], cfg["knn_k"]) == (3, 0.5, 0.8, 0.1, 10)
    assert cfg["stopping_step"] == 10 and cfg["n_mm_layers"] == 1 and cfg["mm_image_weight"] == 0.1
    assert cm3.CM3.grid == {"n_ui_layers": [3, 4], "gamma": [0.5, 0.9], "max_sim": [0.8, 1.0],
                            "alpha": [0.1, 0.5, 0.9], "weight_decay": [0.0, 1e-6]}
    with pytest.raises(ConfigError, match="gama"):
        build_model("CM3", data, {**SMALL, "gama": 0.5})
    with pytest.raises(ConfigError, match="lambda_coeff"):  # a reference key this model does not read
        build_model("CM3", data, {**SMALL, "lambda_coeff": 0.9})
    with pytest.raises(ConfigError, match="min_sim"):
        build_model("CM3", data, {**SMALL, "min_sim": 0.9, "max_sim": 0.5})


def test_missing_features_is_a_clear_error():
    with pytest.raises(ValueError, match="needs at least one item feature"):
        build_model("CM3", _planted(()), SMALL)
