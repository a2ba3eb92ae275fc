"""Training samples of the sequential models, gathered from the flat token array without Python loops.

A sample is a window of one user's train sequence: ``tokens[start:end]`` as input (left-aligned, padded
with 0 at the end, as RecBole pads) and the next item at every input position as target (0 = no
target). Three ways to cover a user's train targets (positions 1 .. n-3 of its sequence):

* ``window`` (default): non-overlapping windows of ``max_len`` inputs, the last one ending at the newest
  train target, each position predicting the next item. Every train target is predicted once per epoch,
  as in RecBole, but one forward pass serves up to ``max_len`` targets (the causal encoders see only the
  past, so position j's output depends on inputs 0..j alone). A target at position j of a window sees j+1
  items of history instead of up to ``max_len``: the price of the speed, measured in ``bench/``.
* ``prefix``: RecBole's data augmentation: one sample per train target, whose input is the last
  ``max_len`` items before it and whose only target is at the last input position.
* ``last``: one window per user, the newest ``max_len`` inputs (the original SASRec and fMRLRec loaders).

Batches hold about ``batch_targets`` targets (whole samples; at least one sample), so an epoch makes
about the same number of optimizer steps in every mode and as RecBole with the same batch size.
"""
from __future__ import annotations

import numpy as np
import torch

TRAIN_MODES = ("window", "prefix", "last")


def train_samples(indptr: np.ndarray, max_len: int, mode: str) -> tuple[np.ndarray, np.ndarray, bool]:
    """Every training sample as (start, end) offsets into the token array.

    Args:
        indptr: per-user sequence offsets (:attr:`SequenceData.indptr`).
        max_len: the longest input.
        mode: ``window``, ``prefix`` or ``last`` (module doc).

    Returns:
        ``(starts, ends, last_only)``: the input of sample i is ``tokens[starts[i]:ends[i]]``, its targets
        ``tokens[starts[i] + 1:ends[i] + 1]`` (only the last one when ``last_only``).

    Raises:
        ValueError: an unknown mode.
    """
    if mode not in TRAIN_MODES:
        raise ValueError(f"unknown train_mode {mode!r} ({'/'.join(TRAIN_MODES)})")
    first = indptr[:-1]
    pairs = (indptr[1:] - 3) - first  # train targets per user: positions 1 .. n-3
    end_all = first + pairs  # exclusive end of the inputs: the newest train target's predecessor + 1
    if mode == "prefix":
        ends = np.repeat(first, pairs) + _ranks(pairs) + 1
        starts = np.maximum(np.repeat(first, pairs), ends - max_len)
        return starts, ends, True
    n_windows = np.where(pairs > 0, 1, 0) if mode == "last" else -(-pairs // max_len)
    user_end = np.repeat(end_all, n_windows)
    ends = user_end - _ranks(n_windows) * max_len
    starts = np.maximum(np.repeat(first, n_windows), ends - max_len)
    return starts, ends, False


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


def epoch_batches(tokens: np.ndarray, starts: np.ndarray, ends: np.ndarray, last_only: bool, max_len: int,
                  batch_targets: int, rng: np.random.Generator):
    """Shuffled batches ``(inputs [b, L], targets [b, L])`` as torch int64 tensors; targets 0 = none.

    Each batch holds whole samples, about ``batch_targets`` targets (at least one sample).
    """
    order = rng.permutation(len(starts))
    starts, ends = starts[order], ends[order]
    per_sample = np.ones(len(starts), np.int64) if last_only else ends - starts
    cuts = np.searchsorted(np.cumsum(per_sample), np.arange(batch_targets, per_sample.sum(), batch_targets),
                           side="left") + 1
    bounds = np.unique(np.concatenate([[0], cuts, [len(starts)]]))
    for a, b in zip(bounds[:-1], bounds[1:]):
        s, e = starts[a:b], ends[a:b]
        inputs = gather_windows(tokens, s, e, max_len)
        targets = gather_windows(tokens, s + 1, e + 1, max_len)
        if last_only:
            last = np.zeros_like(targets)
            rows = np.arange(len(s))
            last[rows, e - s - 1] = targets[rows, e - s - 1]
            targets = last
        yield torch.from_numpy(inputs), torch.from_numpy(targets)


def histories(tokens: np.ndarray, indptr: np.ndarray, ends: np.ndarray, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Evaluation inputs: per user, the last ``max_len`` tokens before ``ends`` (left-aligned) and their lengths."""
    starts = np.maximum(indptr[:-1], ends - max_len)
    return gather_windows(tokens, starts, ends, max_len), ends - starts
