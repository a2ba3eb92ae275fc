"""The trie of valid semantic-ID tuples, and beam search constrained to it.

Generative retrieval decodes an item as a tuple of codes, one level at a time. Only tuples that name an
item are valid, so decoding is constrained: at level l a beam with prefix p may only continue with the
codes that some item has after p. :class:`CodeTrie` stores that as dense tables per level, built without
Python loops over items:

* ``children[l]``: int64 [n_prefixes_l, F_l], the codes allowed after each length-l prefix (-1 pads; F_l is
  the largest fan-out at that level, at most the codebook size),
* ``child_ids[l]``: the id of each child prefix at length l + 1 (at the last level: the item index).

:func:`constrained_beam_search` keeps ``beam`` prefixes per row, and at every level scores every allowed
child of every beam (one gather, one top-k over ``beam x F_l`` candidates), so it returns ``beam`` distinct
valid items per row, best first. A model scores ``beam x F_l`` candidates per level instead of every item.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch


class CodeTrie:
    """Prefix tables of unique code tuples (row i of ``codes`` is item i).

    Example:
        >>> trie = CodeTrie(np.array([[0, 1], [0, 2], [1, 0]]))
        >>> trie.contains(np.array([[0, 2], [1, 1]])).tolist()
        [True, False]
    """

    def __init__(self, codes: np.ndarray):
        codes = np.asarray(codes, np.int64)
        if codes.ndim != 2 or len(codes) == 0:
            raise ValueError("CodeTrie needs a non-empty [n_items, levels] code matrix")
        if (codes < 0).any():
            raise ValueError("codes must be non-negative")
        if len(np.unique(codes, axis=0)) != len(codes):
            raise ValueError("code tuples are not unique: de-duplicate them (semantic_ids params.dedup: true)")
        self.codes, self.levels = codes, codes.shape[1]
        self.sizes = codes.max(0) + 1  # codes per level
        self.children: list[np.ndarray] = []
        self.child_ids: list[np.ndarray] = []
        prefix = np.zeros(len(codes), np.int64)  # every item's length-0 prefix: the root
        for level in range(self.levels):
            if level == self.levels - 1:
                nxt = np.arange(len(codes), dtype=np.int64)  # a full tuple names its item
            else:
                nxt = np.unique(codes[:, :level + 1], axis=0, return_inverse=True)[1].ravel().astype(np.int64)
            pairs = np.unique(np.column_stack([prefix, codes[:, level], nxt]), axis=0)  # sorted by prefix, code
            n_prefix = int(prefix.max()) + 1
            counts = np.bincount(pairs[:, 0], minlength=n_prefix)
            rank = np.arange(len(pairs)) - np.repeat(np.cumsum(counts) - counts, counts)
            kids = np.full((n_prefix, int(counts.max())), -1, np.int64)
            ids = np.full_like(kids, -1)
            kids[pairs[:, 0], rank], ids[pairs[:, 0], rank] = pairs[:, 1], pairs[:, 2]
            self.children.append(kids)
            self.child_ids.append(ids)
            prefix = nxt

    def contains(self, tuples: np.ndarray) -> np.ndarray:
        """bool per row: the tuple is some item's code tuple."""
        return self.item_of(tuples) >= 0

    def item_of(self, tuples: np.ndarray) -> np.ndarray:
        """Item index of each valid tuple (-1 for an invalid one), walked level by level, vectorised."""
        tuples = np.asarray(tuples, np.int64)
        node = np.zeros(len(tuples), np.int64)
        ok = np.ones(len(tuples), bool)
        for level in range(self.levels):
            hit = self.children[level][node] == tuples[:, level:level + 1]
            ok &= hit.any(1)
            node = np.where(ok, self.child_ids[level][node, hit.argmax(1)], 0)
        return np.where(ok, node, -1)

    def tuples(self) -> np.ndarray:
        """Every tuple the trie admits, in item order (a walk of all paths; for tests and audits)."""
        paths = np.zeros((1, 0), np.int64)
        nodes = np.zeros(1, np.int64)
        for level in range(self.levels):
            kids, ids = self.children[level][nodes], self.child_ids[level][nodes]
            row, col = np.nonzero(kids >= 0)
            paths = np.column_stack([paths[row], kids[row, col]])
            nodes = ids[row, col]
        out = np.empty_like(paths)
        out[nodes] = paths
        return out

    def tensors(self, device: torch.device) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``(children, child_ids)`` per level as torch tensors on ``device`` (for decoding)."""
        return [(torch.from_numpy(k).to(device), torch.from_numpy(i).to(device))
                for k, i in zip(self.children, self.child_ids)]


#: ``step(prefix_codes [N, l], l, parent) -> log-probabilities [N, size_l]`` of the next level's codes, for N
#: beams (the N rows are ``batch x width`` in row-major order; l = 0 at the first step). ``parent`` [batch, width]
#: is each beam's row (within its batch row) among the previous step's beams, None at l = 0: a model that caches
#: per-beam state reorders it with ``parent``, then appends ``prefix_codes[:, -1]``.
StepFn = Callable[[torch.Tensor, int, "torch.Tensor | None"], torch.Tensor]


@torch.no_grad()
def constrained_beam_search(step: StepFn, tables: list[tuple[torch.Tensor, torch.Tensor]], batch: int, beam: int,
                            device: torch.device, renormalise: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``beam`` items per row by the sum of per-level log-probabilities, decoding only valid tuples.

    Args:
        step: the model's next-level log-probabilities given the decoded prefixes (see :data:`StepFn`).
        tables: :meth:`CodeTrie.tensors`.
        batch: rows (users).
        beam: beams kept per row (the number of items returned).
        device: where the tensors live.
        renormalise: each level's probabilities renormalised over the beam's valid child codes (GRID's
            scores) instead of the model's own probability of the tuple (the default).

    Returns:
        ``(items [batch, beam], scores [batch, beam])``, best first; when fewer than ``beam`` valid items exist
        the rest are -1 with score -inf.
    """
    node = torch.zeros(batch, 1, dtype=torch.long, device=device)  # the root, one live beam per row
    score = torch.zeros(batch, 1, device=device)
    prefix = torch.zeros(batch, 1, 0, dtype=torch.long, device=device)
    parent = None
    for level, (kids_all, ids_all) in enumerate(tables):
        width = node.shape[1]
        logp = step(prefix.reshape(batch * width, level), level, parent).view(batch, width, -1)
        kids, ids = kids_all[node], ids_all[node]  # [batch, width, F]
        valid = (kids >= 0) & torch.isfinite(score)[..., None]
        child_logp = logp.gather(2, kids.clamp(min=0))
        if renormalise:
            child_logp = child_logp.masked_fill(kids < 0, -torch.inf)
            child_logp = child_logp - torch.logsumexp(child_logp, 2, keepdim=True)
        cand = torch.where(valid, score[..., None] + child_logp, -torch.inf)
        k = min(beam, cand.shape[1] * cand.shape[2])
        best, flat = cand.view(batch, -1).topk(k, dim=1)
        parent, child = flat // kids.shape[2], flat % kids.shape[2]
        take = lambda t: t.gather(1, parent[..., None].expand(-1, -1, t.shape[2])) if t.dim() == 3 else t.gather(1, parent)  # noqa: E731
        code = kids.gather(1, parent[..., None].expand(-1, -1, kids.shape[2])).gather(2, child[..., None])[..., 0]
        node = ids.gather(1, parent[..., None].expand(-1, -1, ids.shape[2])).gather(2, child[..., None])[..., 0]
        prefix = torch.cat([take(prefix), code[..., None]], 2)
        score = best
        node = torch.where(torch.isfinite(score), node, torch.zeros_like(node))
    items = torch.where(torch.isfinite(score), node, torch.full_like(node, -1))
    if items.shape[1] < beam:  # fewer valid items than beams
        pad = beam - items.shape[1]
        items = torch.cat([items, items.new_full((batch, pad), -1)], 1)
        score = torch.cat([score, score.new_full((batch, pad), -torch.inf)], 1)
    return items, score
