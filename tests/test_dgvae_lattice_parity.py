"""DGVAE rules fixed to match the reference (enoche/DGVAE) and LATTICE's faster propagation (same values)."""
import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from mmfeat.recommenders.data import InteractionData
from mmfeat.recommenders.models import build_model, dgvae, lattice

pytestmark = pytest.mark.usefixtures("one_torch_thread")
N_USERS, N_ITEMS = 32, 40


def _data(seed: int = 0) -> InteractionData:
    """32 users x 40 items, 6 train items per user in the user's cluster (u % 4), two feature views."""
    rng = np.random.default_rng(seed)
    cl = np.arange(N_ITEMS) % 4
    train = [(u, i) for u in range(N_USERS) for i in rng.choice(np.flatnonzero(cl == u % 4), 6, replace=False)]
    centers = rng.normal(size=(4, 12))
    feats = {"text": centers[cl] + 0.3 * rng.normal(size=(N_ITEMS, 12)),
             "image": np.tanh(centers[cl] @ rng.normal(size=(12, 20))) + 0.3 * rng.normal(size=(N_ITEMS, 20))}
    rows = np.array(train)
    return InteractionData(n_users=N_USERS, n_items=N_ITEMS, train=rows, valid=rows[:8], test=rows[:8],
                           user_ids=np.arange(N_USERS).astype(str), item_ids=np.arange(N_ITEMS).astype(str),
                           item_features={k: v.astype(np.float32) for k, v in feats.items()}, split_hash="t")


SMALL = {"embedding_size": 16, "knn_k": 4, "n_words": 8, "train_batch_size": 64}


def test_dgvae_defaults_follow_the_reference_run_script():
    cfg = dgvae.DGVAEConfig()
    assert (cfg.user_batch_size, cfg.word_min_df, cfg.word_max_df) == (512, 5, 0.6)
    # run-baby.sh: -ep 100 -es 20; the reference stops at the 20th non-improving evaluation in a row,
    # the trainer when more than stopping_step in a row were not a new best
    assert (cfg.epochs, cfg.stopping_step) == (100, 19)
    assert (cfg.n_prototypes, cfg.lambda_reg, cfg.lambda_text, cfg.std, cfg.text_std) == (3, 0.4, 0.2, 0.075, 0.075)


def test_dgvae_word_pruning_is_tfidfvectorizer_min_df_max_df():
    from sklearn.feature_extraction.text import TfidfVectorizer

    rng = np.random.default_rng(0)
    train = sp.csr_matrix((rng.random((20, 15)) < 0.3).astype(np.float32))
    tokens = np.stack([rng.integers(0, 6, 15), 6 + rng.integers(0, 4, 15)], 1)
    got = dgvae.user_tfidf(train, tokens, 10, min_df=3, max_df=0.6).toarray()
    docs = [" ".join(f"w{t:03d}" for i in train[u].indices for t in tokens[i]) for u in range(20)]
    vec = TfidfVectorizer(min_df=3, max_df=0.6, token_pattern=r"\S+", lowercase=False)
    ref = vec.fit_transform(docs).toarray()  # columns sorted by name = by token id
    assert got.shape == ref.shape and got.shape[1] < 10 and np.allclose(got, ref, atol=1e-6)
    everyone = sp.csr_matrix(np.ones((20, 15), np.float32))  # every word in every document
    with pytest.raises(ValueError, match="no pseudo-word left"):
        dgvae.user_tfidf(everyone, tokens, 10, min_df=1, max_df=0.5)
    with pytest.raises(ValueError, match="< min_df"):
        dgvae.user_tfidf(train, tokens, 10, min_df=21, max_df=0.9)


def test_dgvae_model_vocabulary_is_pruned():
    d = _data()
    full = build_model("DGVAE", d, {**SMALL, "word_min_df": 1, "word_max_df": 1.0})
    pruned = build_model("DGVAE", d, {**SMALL, "word_min_df": 8})  # words in 6-8 of the 32 user documents
    assert pruned.n_words < full.n_words and pruned._words.shape == (N_USERS, pruned.n_words)
    assert pruned.text_network.encoder.in_features == pruned.n_words


def test_dgvae_reference_epoch_every_user_once_then_no_update():
    from mmfeat.recommenders.tasks import optimizer_step

    d = _data()  # 192 interactions / train_batch_size 64 = 3 trainer calls per epoch
    torch.manual_seed(0)
    model = build_model("DGVAE", d, {**SMALL, "user_batch_size": 16})
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    model.train()
    seen = []
    orig = model._inputs
    model._inputs = lambda users: (seen.append(users.clone()), orig(users))[1]
    batch = tuple(torch.zeros(64, dtype=torch.long) for _ in range(3))
    model.pre_epoch()
    optimizer_step(model, opt, batch, None, 0, 0)
    optimizer_step(model, opt, batch, None, 0, 1)
    assert [len(s) for s in seen] == [16, 16] and torch.equal(torch.cat(seen).sort().values, torch.arange(N_USERS))
    assert int(model.n_updates) == 2
    before = {k: v.clone() for k, v in model.state_dict().items()}
    steps = {id(p): int(opt.state[p]["step"]) for p in model.parameters() if p in opt.state}
    loss = optimizer_step(model, opt, batch, None, 0, 2)  # the epoch's 3rd interaction batch: no update
    assert loss == 0.0 and int(model.n_updates) == 2 and len(seen) == 2
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert steps == {id(p): int(opt.state[p]["step"]) for p in model.parameters() if p in opt.state}
    # a caller that never calls pre_epoch starts a new epoch after the epoch's calls
    optimizer_step(model, opt, batch, None, 1, 0)
    assert int(model.n_updates) == 3 and len(seen) == 3


def test_dgvae_fewer_calls_than_user_batches_uses_larger_batches():
    d = _data()
    model = build_model("DGVAE", d, {**SMALL, "user_batch_size": 4})  # 8 batches, 3 calls
    model.pre_epoch()
    assert len(model._plan) == 3 and torch.equal(torch.cat(model._plan).sort().values, torch.arange(N_USERS))


def test_dgvae_fast_dropout_is_inverted_dropout():
    torch.manual_seed(0)
    x = torch.ones(200_000)
    y = dgvae.fast_dropout(x, 0.5, True)
    assert set(torch.unique(y).tolist()) == {0.0, 2.0} and abs(float((y > 0).float().mean()) - 0.5) < 0.01
    assert dgvae.fast_dropout(x, 0.5, False) is x


def test_lattice_csr_propagation_equals_edge_list():
    d = _data()
    torch.manual_seed(0)
    model = build_model("LATTICE", d, {"embedding_size": 16, "feat_embed_dim": 16, "weight_size": [16, 16],
                                       "knn_k": 4, "n_layers": 2})
    edges = tuple(t.detach() for t in model.build_item_graph())
    csr = lattice.edges_to_csr(edges, N_ITEMS)
    outs, grads = [], []
    for g in (edges, csr):
        model.zero_grad()
        ue, ie = model.forward(g)
        (ue.square().sum() + ie.pow(3).sum()).backward()
        outs.append((ue.detach(), ie.detach()))
        grads.append(model.item_id_embedding.weight.grad.clone())
    assert torch.allclose(outs[0][0], outs[1][0], atol=1e-6) and torch.allclose(outs[0][1], outs[1][1], atol=1e-5)
    assert torch.allclose(grads[0], grads[1], atol=1e-4)
    # training: the first batch of an epoch builds the graph (with gradient), later batches use the CSR pair
    rng = np.random.default_rng(0)
    b = tuple(torch.from_numpy(a) for a in (d.train[:64, 0], d.train[:64, 1], rng.integers(0, N_ITEMS, 64)))
    model.pre_epoch()
    first = model.calculate_loss(b)
    assert model._item_csr is not None and not model._rebuild
    again = model.calculate_loss(b)
    assert torch.allclose(first, again, atol=1e-6)


# ---------------------------------------------------------------------------- random numbers as the reference draws
def _seeded_model(seed: int, **over):
    from mmfeat.recommenders.trainer import seed_everything

    seed_everything(seed)
    return build_model("DGVAE", _data(), {**SMALL, **over})


def test_dgvae_initial_weights_are_drawn_in_the_reference_order():
    """Per network (ratings, then words): Linear (default init, then xavier-normal weight and N(0, 0.01) bias),
    then the item table (created, xavier-normal), then the prototype table (created, xavier-normal). Creating both
    tables before initializing them (the former order) gave the item table other draws than the reference's for
    the same seed."""
    from torch import nn

    model = _seeded_model(7)
    torch.manual_seed(7)
    for net in (model.cf_network, model.text_network):
        lin = nn.Linear(net.n_inputs, 2 * net.d)
        nn.init.xavier_normal_(lin.weight)
        nn.init.normal_(lin.bias, std=0.01)
        items = nn.Embedding(net.n_inputs, net.d)
        nn.init.xavier_normal_(items.weight)
        protos = nn.Embedding(net.k, net.d)
        nn.init.xavier_normal_(protos.weight)
        for got, want in ((net.encoder.weight, lin.weight), (net.encoder.bias, lin.bias),
                          (net.item_embeddings.weight, items.weight), (net.prototype_embeddings.weight, protos.weight)):
            assert torch.equal(got, want)


def test_dgvae_reference_rng_epoch_is_a_shuffling_dataloader():
    """``reference_rng``: the epoch's user batches are those of DataLoader(users, batch_size, shuffle=True) under
    the same generator state, and the generator is left where that DataLoader leaves it."""
    from torch.utils.data import DataLoader

    assert dgvae.DGVAEConfig().reference_rng is False
    model = _seeded_model(0, reference_rng=True, user_batch_size=12)  # 3 batches (12, 12, 8), 3 calls per epoch
    torch.manual_seed(3)
    model.pre_epoch()
    after = torch.rand(4)
    torch.manual_seed(3)
    want = [b for b in DataLoader(range(N_USERS), batch_size=12, shuffle=True)]
    assert [b.tolist() for b in model._plan] == [b.tolist() for b in want] and len(want) == 3
    assert torch.equal(after, torch.rand(4))


def test_dgvae_reference_rng_noise_is_drawn_per_prototype():
    """``reference_rng``, training: per prototype, its nn.Dropout mask and then its N(0, std) noise (the default
    draws all masks, then all noises, with other generator calls: same distributions, other numbers)."""
    from torch import nn

    model = _seeded_model(0, reference_rng=True, dropout=0.3, text_std=0.5)
    net = model.text_network.train()  # no item graph: the encoder input is the normalized, dropped-out row
    x = torch.from_numpy(model._words[:6].toarray())
    torch.manual_seed(11)
    z, logvar, cates, _ = net.encode(x)
    torch.manual_seed(11)
    logits = F.normalize(net.item_embeddings.weight, dim=1) @ F.normalize(net.prototype_embeddings.weight, dim=1).T
    want_cates = F.gumbel_softmax(logits / net.tau, tau=1.0, hard=False, dim=-1)
    assert torch.allclose(cates, want_cates, atol=1e-6)
    drop = nn.Dropout(0.3).train()
    for k in range(net.k):
        h = net.encoder(drop(F.normalize(x * want_cates[:, k], p=2, dim=1)))
        mu, lv = F.normalize(h[:, : net.d], dim=1), -h[:, net.d:]
        eps = torch.zeros_like(mu).normal_(mean=0, std=0.5)
        assert torch.allclose(lv, logvar[:, k], atol=1e-5)
        assert torch.allclose(F.normalize(mu + eps * torch.exp(0.5 * lv), dim=1), z[:, k], atol=1e-5)


def test_dgvae_reference_rng_evaluation_draws_what_the_reference_evaluation_draws():
    """``reference_rng``: an evaluation pass leaves the generator where the reference's evaluation leaves it (its
    eval DataLoader's base seed, then per batch of user_batch_size users a Gumbel sample of each view)."""
    from torch.utils.data import DataLoader

    model = _seeded_model(0, reference_rng=True, user_batch_size=10).eval()
    torch.manual_seed(5)
    model.prepare_eval()
    model.end_eval()
    after = torch.rand(4)
    torch.manual_seed(5)
    for _ in DataLoader(range(N_USERS), batch_size=10):
        F.gumbel_softmax(torch.zeros(N_ITEMS, model.cf_network.k))
        F.gumbel_softmax(torch.zeros(model.n_words, model.text_network.k))
    assert torch.equal(after, torch.rand(4))
    plain = _seeded_model(0)  # default: evaluation draws nothing
    torch.manual_seed(5)
    plain.prepare_eval()
    r = torch.rand(4)
    torch.manual_seed(5)
    assert torch.equal(r, torch.rand(4))
