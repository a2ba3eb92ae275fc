"""MUSE's general search unit (GSU): keep the history items most similar to the target by embedding cosine.

For lifelong histories (hundreds to thousands of behaviours) MUSE retrieves, per impression, the top-k
behaviours by cosine similarity between the target item's multimodal embedding and each behaviour's
(the "simple" GSU), and runs fine attention (the ESU: here DIN's / QIN's target attention) on those k
only. The embedding is fixed (a store version), so retrieval is a data-building step: it runs once per
set, vectorised, not per epoch.

Memory: rows are processed in chunks of at most ``chunk`` similarity entries (rows x the longer of the
chunk's longest history and the catalogue), so a 2,000-item history costs the same memory per chunk as
a short one with fewer rows per chunk.

Reference: Wu et al., "MUSE: Multi-modal target attention for lifelong user behaviour modelling" (2024),
the simple GSU (cosine top-k over the multimodal embeddings).
"""
from __future__ import annotations

import numpy as np
import torch


def normalized(mat: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero)."""
    norms = np.linalg.norm(mat, axis=1, keepdims=True)
    return np.divide(mat, norms, out=np.zeros_like(mat), where=norms > 0)


def gsu_items(ev_items: np.ndarray, start: np.ndarray, at: np.ndarray, target: np.ndarray, emb: np.ndarray,
              k: int, *, chunk: int = 1 << 23) -> np.ndarray:
    """Per row, the ``k`` earlier events of the user most similar to the target, in time order.

    Args:
        ev_items: item id (1-based) of every event, users' events contiguous and in time order.
        start: per row, the event index of the user's first event.
        at: per row, the row's own event index (its history is events ``start .. at - 1``).
        target: per row, the target item id (1-based).
        emb: [n_items, d] item embeddings (row k-1 = item k), any scale (cosine is used).
        k: items kept; a history of at most ``k`` items is kept whole (the same as "last k").
        chunk: similarity entries per chunk (memory bound).

    Returns:
        int32 [n_rows, k], left-padded with 0, the kept items oldest first. Similarity ties keep the
        more recent event.

    Example:
        >>> gsu_items(np.array([1, 2, 3]), np.array([0]), np.array([3]), np.array([2]), np.eye(3), 1)  # doctest: +SKIP
        array([[2]], dtype=int32)
    """
    n = len(at)
    out = np.zeros((n, k), np.int32)
    hist_len = at - start
    e = torch.from_numpy(normalized(np.asarray(emb, np.float32)))
    n_items = e.shape[0]
    order = np.argsort(-hist_len, kind="stable")  # longest first: a chunk's first row bounds its memory
    s = 0
    while s < n:
        longest = int(hist_len[order[s]])
        # grow the chunk while rows x max(history, catalogue) stays within the bound
        step = max(1, chunk // max(1, longest, n_items))
        rows = order[s:s + step]
        h = int(hist_len[rows].max())
        s += len(rows)
        if h == 0:
            continue
        idx = at[rows, None] - h + np.arange(h)[None, :]  # the last h events: the whole history of each row
        valid = idx >= start[rows, None]
        items = np.where(valid, ev_items[np.clip(idx, 0, None)], 0)
        sims = e[target[rows] - 1] @ e.T  # [rows, n_items]
        cand = torch.gather(sims, 1, torch.from_numpy(np.maximum(items - 1, 0))).numpy()
        cand[~valid] = -np.inf
        kk = min(k, h)
        # most recent first, then a stable sort by similarity: a tie keeps the more recent event
        ranked = np.argsort(-cand[:, ::-1], axis=1, kind="stable")[:, :kk]
        top = np.sort(h - 1 - ranked, axis=1)  # positions of the kept events, time order
        picked = np.take_along_axis(items, top, axis=1)
        picked_valid = np.take_along_axis(valid, top, axis=1)
        # a row with fewer than kk earlier events picked padding: move its zeros to the left
        picked = np.where(picked_valid, picked, 0)
        left = np.argsort(picked_valid, axis=1, kind="stable")
        out[rows, k - kk:] = np.take_along_axis(picked, left, axis=1)
    return out
