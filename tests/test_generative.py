"""The trie of valid code tuples, constrained beam search, and TIGER on tiny data."""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from mmfeat.recommenders import ConfigError, build_model, fit, split_interactions
from mmfeat.recommenders.generative import CodeTrie, constrained_beam_search
from mmfeat.recommenders.sequential import from_loo_frame


def _unique_codes(n: int, levels: int, size: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    every = np.array(list(itertools.product(range(size), repeat=levels)))
    return every[rng.choice(len(every), n, replace=False)]


def test_trie_admits_exactly_the_valid_tuples():
    codes = _unique_codes(40, 3, 4)
    trie = CodeTrie(codes)
    assert np.array_equal(trie.tuples(), codes)  # every path is an item, in item order
    every = np.array(list(itertools.product(range(4), repeat=3)))
    valid = {tuple(c) for c in codes}
    assert trie.contains(every).tolist() == [tuple(t) in valid for t in every]
    assert np.array_equal(trie.item_of(codes), np.arange(40))
    assert (trie.item_of(every[~trie.contains(every)]) == -1).all()


def test_trie_refuses_duplicate_tuples():
    with pytest.raises(ValueError, match="not unique"):
        CodeTrie(np.array([[0, 1], [0, 1]]))


def _independent_step(table: list[torch.Tensor]):
    """A step whose log-probability of a code depends on (level, code) only: exact scores are easy to enumerate."""
    def step(prefix: torch.Tensor, level: int, parent) -> torch.Tensor:
        return table[level][None].expand(len(prefix), -1)
    return step


def test_beam_search_returns_k_distinct_valid_items_in_exact_order():
    codes = _unique_codes(30, 3, 4, seed=1)
    trie = CodeTrie(codes)
    gen = torch.Generator().manual_seed(0)
    table = [torch.log_softmax(torch.randn(4, generator=gen), 0) for _ in range(3)]
    items, scores = constrained_beam_search(_independent_step(table), trie.tensors(torch.device("cpu")),
                                            batch=2, beam=30, device=torch.device("cpu"))
    exact = np.array([sum(float(table[lvl][c[lvl]]) for lvl in range(3)) for c in codes])
    for row in range(2):
        got = items[row].numpy()
        assert len(set(got)) == 30 and (got >= 0).all()
        assert np.allclose(scores[row].numpy(), exact[got], atol=1e-5)
        assert np.all(np.diff(scores[row].numpy()) <= 1e-6)  # best first
        assert np.allclose(np.sort(exact)[::-1], scores[row].numpy(), atol=1e-5)  # a full beam is exact
    small, _ = constrained_beam_search(_independent_step(table), trie.tensors(torch.device("cpu")),
                                       batch=3, beam=7, device=torch.device("cpu"))
    for row in small.numpy():
        assert len(set(row)) == 7 and trie.contains(codes[row]).all()


def test_renormalised_beam_scores_are_exact_over_the_valid_children():
    """renormalise=True (GRID's scores): each level's log-probability renormalised over the prefix's valid
    children; a full beam returns every item with exactly that score, best first."""
    codes = _unique_codes(30, 3, 4, seed=1)
    trie = CodeTrie(codes)
    gen = torch.Generator().manual_seed(0)
    table = [torch.log_softmax(torch.randn(4, generator=gen), 0) for _ in range(3)]
    items, scores = constrained_beam_search(_independent_step(table), trie.tensors(torch.device("cpu")),
                                            batch=1, beam=30, device=torch.device("cpu"), renormalise=True)
    exact = np.zeros(len(codes))
    for i, c in enumerate(codes):
        for lvl in range(3):
            siblings = {tuple(d[:lvl + 1]) for d in codes if tuple(d[:lvl]) == tuple(c[:lvl])}
            norm = np.logaddexp.reduce([float(table[lvl][s[-1]]) for s in siblings])
            exact[i] += float(table[lvl][c[lvl]]) - norm
    got = items[0].numpy()
    assert len(set(got)) == 30 and np.allclose(scores[0].numpy(), exact[got], atol=1e-5)
    assert np.allclose(np.sort(exact)[::-1], scores[0].numpy(), atol=1e-5)


def test_beam_search_pads_when_fewer_items_than_beams():
    trie = CodeTrie(np.array([[0, 0], [1, 1], [1, 0]]))
    table = [torch.zeros(2), torch.zeros(2)]
    items, scores = constrained_beam_search(_independent_step(table), trie.tensors(torch.device("cpu")),
                                            batch=1, beam=5, device=torch.device("cpu"))
    assert sorted(items[0, :3].tolist()) == [0, 1, 2]
    assert items[0, 3:].tolist() == [-1, -1] and torch.isinf(scores[0, 3:]).all()


def clustered_sequences(n_users: int = 200, n_items: int = 60, clusters: int = 6, seed: int = 0):
    """Users who each consume one cluster of items: the next item is predictable from the history's cluster,
    and popularity (the same list for everyone) cannot solve it."""
    rng = np.random.default_rng(seed)
    cluster = rng.integers(0, clusters, n_items)
    rows = []
    for u in range(n_users):
        pool = np.flatnonzero(cluster == rng.integers(0, clusters))
        rows += [(f"u{u}", f"i{rng.choice(pool)}", t) for t in range(12)]
    df = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    features = np.eye(clusters)[cluster] + 0.1 * rng.normal(size=(n_items, clusters))
    return df, [f"i{i}" for i in range(n_items)], features.astype(np.float32)


TINY_TIGER = {"hidden_size": 32, "inner_size": 64, "n_layers": 1, "n_heads": 2, "head_size": 16, "beam_size": 10, "epochs": 8,
              "learning_rate": 3e-3,
              "stopping_step": 8}


def _tiny_data():
    from mmfeat.featurizers.semantic_ids import SemanticIDs

    df, ids, feats = clustered_sequences()
    fz = SemanticIDs.from_spec({"method": "rqkmeans", "levels": 2, "codebook_size": 6})
    return from_loo_frame(split_interactions(df, "loo"), codes=(ids, fz.fit(feats).codes))


def test_tiger_tiny_training_beats_popularity(tmp_path, one_torch_thread):
    data = _tiny_data()
    rec = fit(data, "TIGER", TINY_TIGER, str(tmp_path))
    # popularity: every user gets the most frequent train items
    seen = data.train_item_mask()
    train_pos = np.ones(len(data.tokens), bool)
    train_pos[data.indptr[1:] - 1] = train_pos[data.indptr[1:] - 2] = False
    counts = np.bincount(data.tokens[train_pos] - 1, minlength=data.n_items)
    top10 = np.argsort(-counts, kind="stable")[:10]
    pop_recall = float(np.isin(data.targets("test"), top10).mean())
    assert seen.any()
    assert rec.test["recall@10"] > pop_recall + 0.1, (rec.test, pop_recall)
    assert rec.data["item_repr"] == "codes"


def test_tiger_learns_from_grids_subsequence_samples(tmp_path, one_torch_thread):
    """train_mode: subsequences (GRID's samples) trains TIGER past popularity; the record names the group size;
    the group size is refused for another train mode (it would be ignored)."""
    data = _tiny_data()
    cfg = {**TINY_TIGER, "train_mode": "subsequences", "train_users_per_batch": 8, "train_batch_size": 256}
    rec = fit(data, "TIGER", cfg, str(tmp_path), progress=False)
    assert rec.data["train_mode"] == "subsequences" and rec.data["train_users_per_batch"] == 8
    k = np.diff(data.indptr) - 2  # train items per user
    assert rec.data["train_samples"] == int((k * (k - 1) // 2).sum())  # the sub-sequences that can be drawn
    train_pos = np.ones(len(data.tokens), bool)
    train_pos[data.indptr[1:] - 1] = train_pos[data.indptr[1:] - 2] = False
    top10 = np.argsort(-np.bincount(data.tokens[train_pos] - 1, minlength=data.n_items), kind="stable")[:10]
    assert rec.test["recall@10"] > float(np.isin(data.targets("test"), top10).mean()) + 0.1, rec.test
    with pytest.raises(ConfigError, match="train_users_per_batch=8 applies to train_mode=subsequences"):
        fit(data, "TIGER", {**cfg, "train_mode": "prefix"}, progress=False)


def test_tiger_level_vocab_largest_sizes_every_level_like_grid(one_torch_thread):
    """level_vocab: largest gives every level the largest codebook's rows and outputs (GRID's table and heads);
    decoding still returns valid, distinct items; an unknown value is refused."""
    data = _tiny_data()
    own = build_model("TIGER", data, TINY_TIGER)
    wide = build_model("TIGER", data, {**TINY_TIGER, "level_vocab": "largest"}).eval()
    assert own.head.weight.shape[0] == int(own.trie.sizes.sum())
    assert wide.head.weight.shape[0] == own.trie.levels * int(own.trie.sizes.max())
    items, _ = wide.top_items(torch.from_numpy(data.tokens[:4].reshape(4, 1)))
    assert ((items >= 0) & (items < data.n_items)).all() and all(len(set(r)) == len(r) for r in items.tolist())
    renorm = build_model("TIGER", data, {**TINY_TIGER, "beam_renormalise": True}).eval()
    renorm.load_state_dict(own.state_dict())
    own.eval()
    x = torch.from_numpy(data.tokens[:4].reshape(4, 1))
    _, plain_scores = own.top_items(x)
    _, renorm_scores = renorm.top_items(x)
    # the key reaches the search (its exact scores: test_renormalised_beam_scores_are_exact_over_the_valid_children)
    assert not torch.allclose(renorm_scores, plain_scores) and (renorm_scores <= 1e-6).all()
    with pytest.raises(ConfigError, match="level_vocab='wide'"):
        build_model("TIGER", data, {**TINY_TIGER, "level_vocab": "wide"})


def test_tiger_trains_in_bfloat16(one_torch_thread):
    """train_precision applies to TIGER too (the sequential task's autocast): finite losses, float32 weights."""
    rec = fit(_tiny_data(), "TIGER", {**TINY_TIGER, "epochs": 2, "train_precision": "bfloat16"}, progress=False)
    assert rec.data["train_precision"] == "bfloat16" and all(np.isfinite(e["loss"]) for e in rec.epochs)
    assert all(p.dtype == torch.float32 for p in rec._model.parameters())


def test_tiger_scores_only_the_beam(one_torch_thread):
    from mmfeat.recommenders.models.base import build_model

    data = _tiny_data()
    model = build_model("TIGER", data, TINY_TIGER).eval()
    model.prepare_eval()
    inputs = torch.from_numpy(data.tokens[:20].reshape(2, 10))
    scores = model.full_sort_predict(inputs, torch.tensor([10, 10]))
    finite = torch.isfinite(scores).sum(1)
    assert finite.tolist() == [10, 10]  # beam_size items per row, the rest -inf


def test_tiger_refuses_what_it_cannot_do():
    from mmfeat.recommenders.models.base import build_model

    data = _tiny_data()
    with pytest.raises(ConfigError, match=r"^TIGER \(config\): TIGER ranks beam_size=10 .* must not exceed"):
        build_model("TIGER", data, {**TINY_TIGER, "topk": [5, 20]})
    with pytest.raises(ConfigError, match="TIGER: ce_negatives=5 samples the item softmax"):
        build_model("TIGER", data, {**TINY_TIGER, "ce_negatives": 5})
    df, _, _ = clustered_sequences()
    with pytest.raises(ConfigError, match="semantic IDs"):
        build_model("TIGER", from_loo_frame(split_interactions(df, "loo")), TINY_TIGER)


def test_codes_must_cover_every_item():
    df, ids, _ = clustered_sequences()
    codes = np.arange(len(ids) * 2).reshape(-1, 2)
    with pytest.raises(ValueError, match="no semantic ID"):
        from_loo_frame(split_interactions(df, "loo"), codes=(ids[1:], codes[1:]))


def test_cached_beam_search_equals_uncached():
    """TIGER's KV-cached decoding ranks the same items with the same scores as re-decoding every prefix."""
    from mmfeat.recommenders.models.base import build_model

    data = _tiny_data()
    torch.manual_seed(0)
    model = build_model("TIGER", data, {**TINY_TIGER, "n_layers": 2}).eval()
    model.prepare_eval()
    inputs = torch.from_numpy(data.tokens[:60].reshape(6, 10))
    inputs[2, 4:] = 0  # a shorter history
    with torch.no_grad():
        items, scores = model.top_items(inputs)
        memory, pad = model.encode_history(inputs)

        def uncached(prefix, level, parent):
            width = len(prefix) // len(inputs)
            states = model.decode(prefix, memory.repeat_interleave(width, 0), pad.repeat_interleave(width, 0))
            return F.log_softmax(model.level_logits(states[:, -1], level), -1)

        ref_items, ref_scores = constrained_beam_search(uncached, model.trie.tensors(torch.device("cpu")),
                                                        len(inputs), model.beam, torch.device("cpu"))
    assert torch.equal(items, ref_items)
    assert torch.allclose(scores, ref_scores, atol=1e-5)
