"""The sequential protocol: leave-one-out split (ties, short users, order in the hash), sequences, training
samples, and next-item metrics against hand-computed cases."""
import numpy as np
import pandas as pd
import pytest
import torch

from mmfeat.recommenders import hash_split_frame, split_interactions
from mmfeat.recommenders.sequential import SequenceSplitError, SequentialEvaluator, from_loo_frame, metrics_from_ranks
from mmfeat.recommenders.sequential.batches import epoch_batches, subsequence_batches, train_samples
from mmfeat.recommenders.sequential.evaluation import target_ranks


def _frame(rows):
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])


def test_leave_one_out_breaks_timestamp_ties_by_source_order_and_drops_short_users():
    df = _frame([("u", "a", 5), ("u", "b", 3), ("u", "c", 3), ("u", "d", 7), ("v", "x", 1), ("v", "y", 2),
                 ("w", "p", 9), ("w", "q", 9), ("w", "r", 9)])
    out = split_interactions(df, "loo")
    u = out[out.user_id == "u"].sort_values("position")
    assert u.item_id.tolist() == ["b", "c", "a", "d"] and u.split.tolist() == [0, 0, 1, 2]
    w = out[out.user_id == "w"].sort_values("position")  # all tied: source order
    assert w.item_id.tolist() == ["p", "q", "r"] and w.split.tolist() == [0, 1, 2]
    assert "v" not in set(out.user_id) and out.attrs["dropped_users"] == 1


def test_split_hash_holds_the_sequence_order():
    df = split_interactions(_frame([("u", "a", 1), ("u", "b", 2), ("u", "c", 3), ("u", "d", 4)]), "loo")
    swapped = df.copy()
    swapped.loc[swapped.item_id == "a", "position"], swapped.loc[swapped.item_id == "b", "position"] = 1, 0
    assert hash_split_frame(df) != hash_split_frame(swapped)
    assert hash_split_frame(df.drop(columns="position")) == hash_split_frame(swapped.drop(columns="position"))


def test_sequence_data_needs_a_leave_one_out_split():
    df = _frame([(u, f"i{k}", k) for u in range(3) for k in range(6)])
    with pytest.raises(SequenceSplitError, match="leave-one-out"):
        from_loo_frame(split_interactions(df, "random"))
    bad = split_interactions(df, "loo")
    bad.loc[bad.index[0], "split"] = 1  # a valid row before the train rows
    with pytest.raises(SequenceSplitError, match="user '0'"):
        from_loo_frame(bad)


def test_sequence_data_targets_histories_and_cold_items():
    # item z only ever appears as u's test target: a cold item
    df = _frame([("u", "a", 1), ("u", "b", 2), ("u", "c", 3), ("u", "z", 4), ("v", "c", 1), ("v", "a", 2),
                 ("v", "b", 3)])
    data = from_loo_frame(split_interactions(df, "loo"))
    ids = list(data.item_ids)
    assert [ids[i] for i in data.targets("valid")] == ["c", "a"] and [ids[i] for i in data.targets("test")] == ["z", "b"]
    assert data.cold_targets() == {"valid_users": 0, "test_users": 1, "items": 1}
    assert data.summary()["n_train_targets"] == 1  # u: a -> b; v has no train target


def test_training_samples_cover_every_train_target_once():
    lengths = np.array([3, 4, 9, 23])
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    tokens = np.arange(1, indptr[-1] + 1)
    want = sorted(int(t) for u in range(4) for t in tokens[indptr[u] + 1: indptr[u + 1] - 2])
    rng = np.random.default_rng(0)
    for mode, stride in (("window", None), ("window", 2), ("window", 5), ("prefix", None)):
        s, e, c = train_samples(indptr, 5, mode, stride)
        got = []
        for inputs, targets in epoch_batches(tokens, s, e, c, 5, 7, rng):
            for x, y in zip(inputs.numpy(), targets.numpy()):
                n = int((x > 0).sum())
                assert (x[n:] == 0).all() and n <= 5  # left-aligned, padded at the end
                real = y > 0
                assert (y[real] == x[real] + 1).all()  # the next token of this toy sequence
                got += y[real].tolist()
                if stride:  # only the window's last `stride` positions predict
                    assert (np.flatnonzero(real) >= n - stride).all()
        assert sorted(got) == want, (mode, stride)
    # prefix: the same (history, target) pairs as one window per target (RecBole's samples), fewer windows
    def pairs(samples):
        out = []
        for start, end, n in zip(*samples):
            for stop in range(end - n + 1, end + 1):  # each predicting position sees tokens[start:stop]
                out.append((tuple(tokens[start:stop]), int(tokens[stop])))
        return sorted(out)

    prefix, one_each = train_samples(indptr, 5, "prefix"), train_samples(indptr, 5, "window", 1)
    assert pairs(prefix) == pairs(one_each) and len(prefix[0]) < len(one_each[0])
    s, e, _ = train_samples(indptr, 5, "last")
    assert len(s) == 3 and (e - s <= 5).all()  # users with a train target, newest window each


def _subsequence_pairs(batch) -> list[tuple[tuple[int, ...], int]]:
    inputs, targets = batch
    out = []
    for x, y in zip(inputs.numpy(), targets.numpy()):
        (pos,) = np.flatnonzero(y)  # one target per row, at the history's last position
        assert (x[pos + 1:] == 0).all() and (x[:pos + 1] > 0).all()
        out.append((tuple(int(t) for t in x[:pos + 1]), int(y[pos])))
    return out


def test_subsequences_are_every_contiguous_run_of_a_user_group_as_grid_draws_them():
    """snap-research/GRID's TIGER samples: with more draws than sub-sequences, a group's batch is every
    contiguous sub-sequence of >= 2 train items of its users exactly once (target: its last item; history:
    the items before it, the newest max_len); users are grouped, never mixed across batches."""
    lengths = np.array([3, 4, 9, 23, 6])  # train items: n - 2 -> 1, 2, 7, 21, 4
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    tokens = np.arange(1, indptr[-1] + 1)
    max_len = 5
    batches = list(subsequence_batches(tokens, indptr, max_len, 2, 10_000, np.random.default_rng(0)))
    assert len(batches) == 2  # 4 users with a sub-sequence, 2 per batch
    owner = np.searchsorted(indptr, tokens, side="right") - 1  # token -> its user
    seen = []
    for batch in batches:
        pairs = _subsequence_pairs(batch)
        assert len({int(owner[t - 1]) for _, t in pairs}) == 2
        seen += pairs
    want = []
    for u in range(len(lengths)):
        train = tokens[indptr[u]:indptr[u + 1] - 2]
        for e in range(2, len(train) + 1):
            for s in range(e - 1):
                want.append((tuple(int(t) for t in train[max(s, e - 1 - max_len):e - 1]), int(train[e - 1])))
    assert sorted(seen) == sorted(want)  # as multisets: truncated to max_len, some histories repeat


def test_subsequence_draws_favour_later_targets_and_drop_repeats():
    """Fewer draws than sub-sequences: at most that many distinct rows, and a target at position p is drawn
    in proportion to p (GRID's enumeration: p sub-sequences end at it)."""
    indptr = np.array([0, 62])  # one user, 60 train items: 1,770 sub-sequences
    tokens = np.arange(1, 63)
    rng = np.random.default_rng(1)
    counts = np.zeros(63)
    for _ in range(300):
        (batch,) = list(subsequence_batches(tokens, indptr, 60, 32, 256, rng))  # no truncation
        pairs = _subsequence_pairs(batch)
        assert len(pairs) == len(set(pairs)) <= 256
        np.add.at(counts, [t for _, t in pairs], 1)
    positions = np.arange(1, 60)  # target token p + 1 sits at position p
    share = counts[positions + 1] / counts.sum()
    assert np.corrcoef(share, positions)[0, 1] > 0.97
    assert share[-10:].sum() > 4 * share[:10].sum()


def test_metrics_from_ranks_by_hand():
    m = metrics_from_ranks(np.array([1, 3, 11]), topk=(5, 10), metrics=("hit", "ndcg", "mrr", "recall", "precision"))
    assert m["hit@5"] == pytest.approx(2 / 3) and m["recall@10"] == pytest.approx(2 / 3)
    assert m["ndcg@5"] == pytest.approx((1 + 1 / np.log2(4)) / 3)
    assert m["mrr@10"] == pytest.approx((1 + 1 / 3) / 3) and m["precision@5"] == pytest.approx(2 / 15)


def test_ties_count_against_the_target():
    scores = torch.tensor([[0.5, 0.5, 0.2], [0.1, 0.1, 0.1], [0.3, -torch.inf, 0.9]])
    assert target_ranks(scores, torch.tensor([1, 2, 1])).tolist() == [2, 3, 3]


class _FixedScores(torch.nn.Module):
    """Scores every item by a fixed vector (the same for every user)."""

    def __init__(self, scores):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(scores, dtype=torch.float32))

    device = torch.device("cpu")

    def full_sort_predict(self, inputs, lengths):
        return self.w.detach().expand(len(inputs), -1).clone()

    def prepare_eval(self):
        pass

    def end_eval(self):
        pass


def test_history_masking_on_and_off_and_users_without_a_target():
    # items a..e; u: a b c | d | e ; v: b c a | e | d
    df = _frame([("u", x, t) for t, x in enumerate("abcde")] + [("v", x, t) for t, x in enumerate("bcaed")])
    data = from_loo_frame(split_interactions(df, "loo"))
    model = _FixedScores([0.9, 0.8, 0.7, 0.6, 0.5])  # a > b > c > d > e
    ev = SequentialEvaluator(data, "test", max_len=10, topk=(1, 3), metrics=("hit",))
    assert ev.ranks(model).tolist() == [5, 4]  # e is last for u, d is 4th for v
    masked = SequentialEvaluator(data, "test", max_len=10, topk=(1, 3), metrics=("hit",), mask_history=True)
    assert masked.ranks(model).tolist() == [1, 1]  # history a b c d / b c a e masked: the target is first
    assert masked.evaluate(model) == {"hit@1": 1.0, "hit@3": 1.0}
    masked.targets[0] = -1  # u has no target: left out of the average
    assert masked.ranks(model).tolist() == [1]
    ev.targets[1] = -1
    assert ev.evaluate(model) == {"hit@1": 0.0, "hit@3": 0.0}


def test_a_nan_or_inf_target_ranks_last_not_first():
    """``scores >= nan`` is false for every item: the old rank was 0, a hit with NDCG = 1/log2(1) = inf."""
    scores = torch.tensor([[0.5, float("nan"), 0.2], [0.1, float("inf"), 0.3], [0.3, 0.1, float("nan")]])
    ranks = target_ranks(scores, torch.tensor([1, 1, 0]))
    assert ranks.tolist() == [3, 3, 1]
    m = metrics_from_ranks(ranks.numpy(), topk=(1, 2), metrics=("hit", "ndcg"))
    assert m["hit@2"] == pytest.approx(1 / 3) and np.isfinite(m["ndcg@2"])
