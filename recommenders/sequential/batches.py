"""Training samples of the sequential models, gathered from the flat token array without Python loops.

A sample is a window of one user's train sequence: ``tokens[start:end]`` as input (left-aligned, padded
with 0 at the end, as RecBole pads) and the next item at every input position as target (0 = no
target). The ways to cover a user's train targets (positions 1 .. n-3 of its sequence):

* ``window``: windows of the ``max_len`` inputs before every ``stride``-th train target (from
  the newest), each predicting the next item at its last ``stride`` positions. Every train target is
  predicted once per epoch, as in RecBole, but one forward pass serves ``stride`` targets (the causal
  encoders see only the past, so position j's output depends on inputs 0..j alone). A target sees at
  least ``max_len - stride`` items of history (RecBole: ``max_len``) and sits in the window's last
  ``stride`` positions: ``stride = max_len`` (non-overlapping windows) is the fastest, ``stride = 1`` is
  exactly ``prefix``; the trade-off is measured in ``bench/sequential/recbole_seq_parity.py``.
* ``prefix`` (default): RecBole's data augmentation: one sample per train target, whose input is the last
  ``max_len`` items before it and whose only target is at the last input position. The samples whose
  history is not truncated (a user's first ``max_len`` targets) are one causal window predicting at
  every position, which gives exactly the same (history, target) pairs with fewer forward passes
  (only the dropout masks are shared between those nested prefixes).
* ``last``: one window per user, the newest ``max_len`` inputs (the original SASRec and fMRLRec loaders).
* ``subsequences``: snap-research/GRID's TIGER samples, drawn anew every epoch (:func:`subsequence_batches`):
  users in shuffled groups, each group's batch drawn with replacement among every contiguous sub-sequence
  of at least two items of its users' train sequences; the sub-sequence's last item is the target, the
  items before it (the newest ``max_len``) its history. A target at position p is drawn in proportion to p,
  with a history of random length, and a batch holds the samples of a few users only.

Batches hold about ``batch_size`` targets (unit ``targets``, whole samples, at least one sample), so an
epoch makes about the same number of optimizer steps in every mode and as RecBole with the same batch size,
or ``batch_size`` samples (unit ``samples``: with ``last``, that many users, as the original SASRec and
fMRLRec loaders batch).

First-item targets (fMRLRec's reference predicts each user's first item from an empty history):
:func:`with_empty_history` puts a padding token (0) before every user's sequence, so the first item becomes
the target of a padding input and every mode above counts it as a train target. Only a model whose encoder
passes nothing on from padding positions may train on it (fMRLRec's masked LRU).
"""
from __future__ import annotations

import numpy as np
import torch

TRAIN_MODES = ("window", "prefix", "last", "subsequences")
BATCH_UNITS = ("targets", "samples")


def with_empty_history(tokens: np.ndarray, indptr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(tokens, indptr)`` with a padding token (0) before every user's sequence: the first item becomes a
    train target (position 1 of the new sequence) whose input is the padding alone (module doc)."""
    indptr = np.asarray(indptr, np.int64)
    out_indptr = indptr + np.arange(len(indptr))
    out = np.zeros(len(tokens) + len(indptr) - 1, np.int64)
    real = np.ones(len(out), bool)
    real[out_indptr[:-1]] = False
    out[real] = tokens
    return out, out_indptr


def train_samples(indptr: np.ndarray, max_len: int, mode: str, stride: int | None = None,
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every training sample as (start, end, n_targets) into the token array.

    Args:
        indptr: per-user sequence offsets (:attr:`SequenceData.indptr`).
        max_len: the longest input.
        mode: ``window``, ``prefix`` or ``last`` (module doc).
        stride: ``window`` only: targets per window (default ``max_len``: non-overlapping windows). A window
            holds the ``max_len`` inputs before its newest target and predicts only its last ``stride``
            positions, so every target sees at least ``max_len - stride`` items of history when the user
            has them; ``stride=1`` is ``prefix``.

    Returns:
        ``(starts, ends, n_targets)``: the input of sample i is ``tokens[starts[i]:ends[i]]``; its targets are
        the next tokens of its last ``n_targets[i]`` input positions.

    Raises:
        ValueError: an unknown mode, a stride outside 1..max_len, or a stride for another mode.
    """
    if mode not in TRAIN_MODES:
        raise ValueError(f"unknown train_mode {mode!r} ({'/'.join(TRAIN_MODES)})")
    if stride is not None and mode != "window":
        raise ValueError(f"train_stride={stride} applies to train_mode=window only, not {mode}; drop it or set "
                         f"train_mode=window")
    first = indptr[:-1]
    pairs = (indptr[1:] - 3) - first  # train targets per user: positions 1 .. n-3
    end_all = first + pairs  # exclusive end of the inputs: the newest train target's predecessor + 1
    if mode == "last":
        has = pairs > 0
        ends = end_all[has]
        starts = np.maximum(first[has], ends - max_len)
        return starts, ends, ends - starts
    if mode == "prefix":
        return _prefix_samples(first, pairs, max_len)
    if mode == "subsequences":  # drawn per epoch (subsequence_batches); every target once, as in prefix
        return _prefix_samples(first, pairs, max_len)
    step = int(stride or max_len)
    if not 1 <= step <= max_len:
        raise ValueError(f"train_stride={stride} must be in 1..max_seq_length={max_len}")
    n_windows = -(-pairs // step)
    user_first = np.repeat(first, n_windows)
    ends = np.repeat(end_all, n_windows) - _ranks(n_windows) * step
    starts = np.maximum(user_first, ends - max_len)
    n_targets = ends - np.maximum(user_first, ends - step)
    return starts, ends, n_targets


def _prefix_samples(first: np.ndarray, pairs: np.ndarray, max_len: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RecBole's samples (one per target, the last ``max_len`` items before it as history), with the
    samples whose history is not truncated computed together: a user's first ``max_len`` targets see
    exactly the prefixes ``tokens[first:first + j + 1]`` at positions 0..j, which is one causal window
    predicting at every position. Every later target gets its own window of the ``max_len`` items before it,
    predicting at its last position only. Same (history, target) pairs as RecBole, fewer forward passes."""
    shared = np.minimum(pairs, max_len)
    has = shared > 0
    tail = np.maximum(pairs - max_len, 0)  # targets whose history is truncated to the last max_len items
    tail_ends = np.repeat(first + max_len, tail) + _ranks(tail) + 1
    starts = np.concatenate([first[has], tail_ends - max_len])
    ends = np.concatenate([first[has] + shared[has], tail_ends])
    return starts, ends, np.concatenate([shared[has], np.ones(len(tail_ends), np.int64)])


def _ranks(counts: np.ndarray) -> np.ndarray:
    """0, 1, .., c-1 for every count c, concatenated."""
    counts = np.asarray(counts, np.int64)
    return np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)


def gather_windows(tokens: np.ndarray, starts: np.ndarray, ends: np.ndarray, max_len: int) -> np.ndarray:
    """int64 [n, max_len]: ``tokens[starts[i]:ends[i]]`` left-aligned, 0-padded."""
    lengths = ends - starts
    idx = starts[:, None] + np.arange(max_len)[None, :]
    valid = np.arange(max_len)[None, :] < lengths[:, None]
    return np.where(valid, tokens[np.minimum(idx, len(tokens) - 1)], 0)


def epoch_batches(tokens: np.ndarray, starts: np.ndarray, ends: np.ndarray, n_targets: np.ndarray, max_len: int,
                  batch_size: int, rng: np.random.Generator, unit: str = "targets"):
    """Shuffled batches ``(inputs [b, L], targets [b, L])`` as torch int64 tensors; targets 0 = none.

    Each batch holds whole samples: about ``batch_size`` targets (at least one sample) for unit ``targets``,
    ``batch_size`` samples (the last batch the rest) for unit ``samples``.

    Raises:
        ValueError: an unknown unit.
    """
    if unit not in BATCH_UNITS:
        raise ValueError(f"unknown train_batch_unit {unit!r} ({'/'.join(BATCH_UNITS)})")
    order = rng.permutation(len(starts))
    starts, ends, n_targets = starts[order], ends[order], n_targets[order]
    if unit == "samples":
        cuts = np.arange(batch_size, len(starts), batch_size)
    else:
        cuts = np.searchsorted(np.cumsum(n_targets), np.arange(batch_size, n_targets.sum(), batch_size),
                               side="left") + 1
    bounds = np.unique(np.concatenate([[0], cuts, [len(starts)]]))
    for a, b in zip(bounds[:-1], bounds[1:]):
        yield _batch(tokens, starts[a:b], ends[a:b], n_targets[a:b], max_len)


def _batch(tokens: np.ndarray, starts: np.ndarray, ends: np.ndarray, n_targets: np.ndarray, max_len: int,
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch ``(inputs [b, L], targets [b, L])`` of the samples (start, end, n_targets)."""
    inputs = gather_windows(tokens, starts, ends, max_len)
    targets = gather_windows(tokens, starts + 1, ends + 1, max_len)
    targets[np.arange(max_len)[None, :] < (ends - starts - n_targets)[:, None]] = 0  # only the last n predict
    return torch.from_numpy(inputs), torch.from_numpy(targets)


def subsequence_batches(tokens: np.ndarray, indptr: np.ndarray, max_len: int, users_per_batch: int,
                        draws_per_batch: int, rng: np.random.Generator, fraction: float = 1.0):
    """One epoch of snap-research/GRID's TIGER samples (``train_mode: subsequences``), one batch per user group.

    GRID (``src/data/loading/components/collate_functions.py``, ``collate_with_sid_causal_duplicate``) batches
    ``users_per_batch`` users, enumerates every contiguous sub-sequence of at least two items of their train
    sequences (a user with k train items has k (k - 1) / 2), draws ``draws_per_batch`` of them uniformly with
    replacement and drops the repeats (all of them when there are fewer). A sub-sequence's last item is the
    target, the items before it the history (the newest ``max_len`` kept), so a target at position p is drawn
    in proportion to p, with a history length uniform in 1..p before truncation.

    Args:
        tokens, indptr: the sequences (:attr:`SequenceData.tokens` / ``indptr``); a user's train items are
            positions 0 .. n-3 of its sequence.
        max_len: the longest history.
        users_per_batch: users per group (GRID: the datamodule's batch size, 32).
        draws_per_batch: draws per group (GRID: ``max_batch_size``, 1024).
        rng: draws the user order and the sub-sequences.
        fraction: the share of the users (drawn anew) that make this epoch's groups (``train_sample_fraction``).

    Yields:
        ``(inputs [b, L], targets [b, L])`` as :func:`epoch_batches` does, one target per row (b <= draws).
    """
    first = np.asarray(indptr[:-1], np.int64)
    k = np.maximum(indptr[1:] - 2 - first, 0)  # train items per user
    counts = k * (k - 1) // 2  # contiguous sub-sequences of >= 2 items
    users = np.flatnonzero(counts > 0)
    users = (rng.permutation(users) if fraction >= 1.0
             else rng.choice(users, max(1, round(fraction * len(users))), replace=False))
    for a in range(0, len(users), users_per_batch):
        group = users[a:a + users_per_batch]
        n = counts[group]
        total = int(n.sum())
        pick = (np.unique(rng.integers(0, total, draws_per_batch)) if total > draws_per_batch
                else np.arange(total))
        cum = np.cumsum(n)
        row = np.searchsorted(cum, pick, side="right")
        local = pick - (cum - n)[row]
        # GRID's order: ends e = 2 .. k (exclusive, in items), then starts 0 .. e-2; (e-1)(e-2)/2 come before e
        m = np.floor((1 + np.sqrt(1 + 8 * local.astype(np.float64))) / 2).astype(np.int64)  # m = e - 1
        m -= m * (m - 1) // 2 > local
        m += m * (m + 1) // 2 <= local
        start = local - m * (m - 1) // 2
        ends = first[group][row] + m  # the target's token index = the history's exclusive end
        starts = np.maximum(first[group][row] + start, ends - max_len)
        yield _batch(tokens, starts, ends, np.ones(len(ends), np.int64), max_len)


def histories(tokens: np.ndarray, indptr: np.ndarray, ends: np.ndarray, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Evaluation inputs: per user, the last ``max_len`` tokens before ``ends`` (left-aligned) and their lengths."""
    starts = np.maximum(indptr[:-1], ends - max_len)
    return gather_windows(tokens, starts, ends, max_len), ends - starts
