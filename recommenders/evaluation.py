"""Full-ranking top-K evaluation, computed exactly as MMRec's TopKEvaluator (src/utils/metrics.py).

Protocol rules (each checked against MMRec's trainer.py / dataloader.py / metrics.py):

1. Users evaluated = the users that have at least one row in the evaluated split (valid or test);
   users without rows are not in the average (MMRec's ``EvalDataLoader.eval_u``). Cold users (no
   train rows) were already dropped from valid/test by the data builder.
2. Every item (``n_items``, all splits) is ranked (full sort).
3. Masking: only the user's *training* items are masked (score set to -inf; MMRec uses -1e10), both
   for validation and for test. At test time the user's validation items are NOT masked (MMRec's
   ``EvalDataLoader`` takes ``additional_dataset=train_dataset`` for both loaders).
4. Top-maxK taken once per batch of users; metrics at each K from the same list.
   A NaN or +inf score is not a score: that item ranks last (as -inf), and a warning names the users it
   happened to (:func:`invalid_scores_last`); torch's top-k would otherwise put NaN first.
5. Recall@K  = hits@K / |T_u|.
   Precision@K = hits@K / K.
   NDCG@K    = DCG@K / IDCG@K with binary gains 1/log2(rank+1) and IDCG over min(|T_u|, K) positions.
   MAP@K     = sum_{r<=K} P@r * rel_r / min(|T_u|, K)   (MMRec's map_, normalizer min(m, K)).
   All averaged over the evaluated users. MMRec rounds to 4 decimals for display; we keep full precision.
"""
from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp
import torch

log = logging.getLogger(__name__)

DEFAULT_TOPK = (5, 10, 20, 50)
DEFAULT_METRICS = ("recall", "ndcg", "precision", "map")


def invalid_scores_last(scores: torch.Tensor, users: np.ndarray) -> torch.Tensor:
    """``scores`` with NaN and +inf set to -inf, so those items rank last; a warning names the users affected.

    Why: a model that outputs NaN for an item must not gain from it: torch's top-k ranks NaN above every number,
    and ``scores >= nan`` is false for all items, so a NaN target would rank first in both evaluators.

    Args:
        scores: float ``[len(users), n_items]``.
        users: the row's user ids (for the warning).

    Returns:
        The same tensor when every score is a number or -inf, else a copy with the bad scores replaced.
    """
    bad = torch.isnan(scores) | torch.isposinf(scores)
    if not bool(bad.any()):
        return scores
    rows = bad.any(dim=1).nonzero().flatten().cpu().numpy()
    shown = ", ".join(str(int(u)) for u in np.asarray(users)[rows[:5]])
    log.warning("%d score(s) of %d user(s) are NaN or +inf (users %s%s): those items rank last",
                int(bad.sum()), len(rows), shown, ", ..." if len(rows) > 5 else "")
    return scores.masked_fill(bad, -torch.inf)


def metrics_from_hits(hits: np.ndarray, pos_len: np.ndarray, topk=DEFAULT_TOPK,
                      metrics=DEFAULT_METRICS) -> dict[str, float]:
    """Metrics from a boolean hit matrix [n_users, maxK] (rank order) and |T_u| per user."""
    hits = np.asarray(hits, dtype=bool)
    pos_len = np.asarray(pos_len, dtype=np.float64)
    n, maxk = hits.shape
    if n == 0:
        return {f"{m}@{k}": 0.0 for m in metrics for k in topk}
    if max(topk) > maxk:
        raise ValueError(f"hit matrix has {maxk} columns, need {max(topk)}")
    ranks = np.arange(1, maxk + 1, dtype=np.float64)
    cum = np.cumsum(hits, axis=1, dtype=np.float64)
    out = {}
    for m in metrics:
        if m == "recall":
            v = cum / pos_len[:, None]
        elif m == "precision":
            v = cum / ranks
        elif m == "ndcg":
            disc = 1.0 / np.log2(ranks + 1.0)
            dcg = np.cumsum(np.where(hits, disc, 0.0), axis=1)
            cdisc = np.cumsum(disc)
            # IDCG at cutoff k uses min(|T|, k) ideal positions
            ideal_len = np.minimum(pos_len[:, None], ranks[None, :]).astype(np.int64)
            v = dcg / cdisc[ideal_len - 1]
        elif m == "map":
            sum_prec = np.cumsum((cum / ranks) * hits, axis=1)
            v = sum_prec / np.minimum(pos_len[:, None], ranks[None, :])
        else:
            raise ValueError(f"unknown metric {m!r}")
        mean = v.mean(axis=0)
        for k in topk:
            out[f"{m}@{k}"] = float(mean[k - 1])
    return out


def _csr_of(pairs: np.ndarray, n_users: int, n_items: int) -> sp.csr_matrix:
    m = sp.csr_matrix((np.ones(len(pairs), np.float32), (pairs[:, 0], pairs[:, 1])), shape=(n_users, n_items))
    m.sum_duplicates()
    m.sort_indices()
    return m


class Evaluator:
    """Evaluates a model on one split. Built once per (data, split); reused every epoch."""

    def __init__(self, train_csr: sp.csr_matrix, eval_pairs: np.ndarray, topk=DEFAULT_TOPK,
                 metrics=DEFAULT_METRICS, batch_size: int = 4096, candidates: np.ndarray | None = None):
        """``candidates``: the only items ranked (a cold-start split's cold items); None = every item."""
        n_users, n_items = train_csr.shape
        self.n_items = n_items
        self.topk = tuple(sorted(int(k) for k in topk))
        self.metrics = tuple(m.lower() for m in metrics)
        self.batch_size = int(batch_size)
        self.train_csr = train_csr.tocsr()
        ev = _csr_of(np.asarray(eval_pairs, np.int64).reshape(-1, 2), n_users, n_items)
        self.pos_len_all = np.diff(ev.indptr)
        self.users = np.flatnonzero(self.pos_len_all > 0)  # rule 1
        rows = np.repeat(np.arange(n_users, dtype=np.int64), self.pos_len_all)
        self.eval_keys = torch.from_numpy(rows * n_items + ev.indices.astype(np.int64))  # sorted
        self.excluded = None  # items never ranked (not candidates)
        if candidates is not None:
            keep = np.zeros(n_items, bool)
            keep[np.asarray(candidates, np.int64)] = True
            if not keep[ev.indices].all():
                raise ValueError("evaluation rows name items outside the candidate set")
            self.excluded = torch.from_numpy(np.flatnonzero(~keep))
            self.n_ranked = int(keep.sum())
        else:
            self.n_ranked = n_items

    def _mask_index(self, users: np.ndarray):
        ip = self.train_csr.indptr
        starts, ends = ip[users], ip[users + 1]
        lens = ends - starts
        r = np.repeat(np.arange(len(users)), lens)
        offs = np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens, lens)
        c = self.train_csr.indices[np.repeat(starts, lens) + offs]
        return torch.from_numpy(r), torch.from_numpy(c.astype(np.int64))

    @torch.no_grad()
    def topk_hits(self, model) -> np.ndarray:
        maxk = min(max(self.topk), self.n_ranked)
        out = []
        dev = model.device
        excluded = self.excluded.to(dev) if self.excluded is not None else None
        for s in range(0, len(self.users), self.batch_size):
            u = self.users[s:s + self.batch_size]
            scores = invalid_scores_last(model.full_sort_predict(torch.from_numpy(u).to(dev)), u)
            r, c = self._mask_index(u)
            scores[r.to(dev), c.to(dev)] = -torch.inf  # rule 3: train items only
            if excluded is not None:
                scores[:, excluded] = -torch.inf  # a cold-start split ranks its cold items only
            idx = torch.topk(scores, maxk, dim=1).indices.cpu()  # rule 4
            q = torch.from_numpy(u)[:, None] * self.n_items + idx
            pos = torch.searchsorted(self.eval_keys, q).clamp_max(max(len(self.eval_keys) - 1, 0))
            out.append((self.eval_keys[pos] == q).numpy())
        return np.concatenate(out) if out else np.zeros((0, maxk), bool)

    def evaluate(self, model) -> dict[str, float]:
        was_training = model.training
        model.eval()
        model.prepare_eval()
        try:
            hits = self.topk_hits(model)
        finally:
            model.end_eval()
            model.train(was_training)
        if hits.shape[1] < max(self.topk):  # fewer items than K: pad with misses
            hits = np.pad(hits, ((0, 0), (0, max(self.topk) - hits.shape[1])))
        return metrics_from_hits(hits, self.pos_len_all[self.users], self.topk, self.metrics)
