"""Full-ranking evaluation of next-item prediction (one target per user), as RecBole 1.2.1 computes it.

Rules:

1. Every item is ranked (full sort); the padding token is never a candidate.
2. ``mask_history``: when true, the items of the user's history (every item before the target: train
   items for valid, train items and the valid item for test) get -inf before ranking. References: RecBole
   1.2.1 does not mask for sequential models (its ``FullSortEvalDataLoader`` gives no history index when
   ``MODEL_TYPE`` is sequential; only the padding column is set to -inf), nor does fMRLRec (padding only);
   MicroLens masks the history. The default (false) is RecBole's. A masked target is ranked last.
3. The rank of the target is 1 + the number of other candidates scoring at least as high as it
   (ties count against the target, so a model that scores everything equal gets nothing). A NaN or +inf
   score ranks last (as -inf; a NaN target used to count as a hit with NDCG = inf), with a warning naming
   the users (:func:`mmfeat.recommenders.evaluation.invalid_scores_last`).
4. Per user: Hit@K = Recall@K = [rank <= K] (one target); NDCG@K = 1/log2(rank + 1) if rank <= K;
   MRR@K = 1/rank if rank <= K; Precision@K = Hit@K / K. Averaged over the users with a target (a
   target of -1 means none: that user is left out of the average).
"""
from __future__ import annotations

import numpy as np
import torch

from mmfeat.recommenders.evaluation import invalid_scores_last

SEQUENTIAL_METRICS = ("hit", "ndcg", "mrr", "recall", "precision")


def metrics_from_ranks(ranks: np.ndarray, topk=(5, 10, 20, 50), metrics=SEQUENTIAL_METRICS) -> dict[str, float]:
    """Metrics (rule 4) from the 1-based rank of each user's target (users without one already left out)."""
    ranks = np.asarray(ranks, np.float64)
    out = {}
    for m in metrics:
        for k in topk:
            hit = ranks <= k
            if m in ("hit", "recall"):
                v = hit.astype(np.float64)
            elif m == "ndcg":
                v = np.where(hit, 1.0 / np.log2(ranks + 1.0), 0.0)
            elif m == "mrr":
                v = np.where(hit, 1.0 / ranks, 0.0)
            elif m == "precision":
                v = hit / k
            else:
                raise ValueError(f"unknown sequential metric {m!r} ({'/'.join(SEQUENTIAL_METRICS)})")
            out[f"{m}@{k}"] = float(v.mean()) if len(v) else 0.0
    return out


def target_ranks(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """1-based rank of ``targets[i]`` in ``scores[i]`` (rule 3); scores may hold -inf for masked items."""
    scores = scores.masked_fill(torch.isnan(scores) | torch.isposinf(scores), -torch.inf)
    t = scores.gather(1, targets[:, None])
    return (scores >= t).sum(1)


class SequentialEvaluator:
    """Evaluates a sequential model on the valid or test targets; built once, reused every epoch."""

    def __init__(self, data, split: str, *, max_len: int, topk=(5, 10, 20, 50), metrics=SEQUENTIAL_METRICS,
                 batch_size: int = 4096, mask_history: bool = False, users: np.ndarray | None = None):
        from .batches import histories

        self.data, self.split = data, split
        self.topk = tuple(sorted(int(k) for k in topk))
        self.metrics = tuple(m.lower() for m in metrics)
        self.batch_size, self.mask_history = int(batch_size), bool(mask_history)
        ends = data.history_end(split)
        self.users = np.arange(data.n_users) if users is None else np.asarray(users, np.int64)
        self.ends = ends[self.users]
        self.inputs, self.lengths = histories(data.tokens, data.indptr, self.ends, max_len)
        self.targets = data.tokens[self.ends] - 1

    def _history_mask(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """(row, item) of every history item of the users ``rows`` (all of it, not only the last max_len)."""
        starts = self.data.indptr[self.users[rows]]
        lens = self.ends[rows] - starts
        r = np.repeat(np.arange(len(rows)), lens)
        offs = np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens, lens)
        return torch.from_numpy(r), torch.from_numpy(self.data.tokens[np.repeat(starts, lens) + offs] - 1)

    @torch.no_grad()
    def ranks(self, model, score_fn=None) -> np.ndarray:
        """The target's rank for every user with a target; ``score_fn(inputs, lengths)`` defaults to the
        model's ``full_sort_predict``."""
        score_fn = score_fn or model.full_sort_predict
        dev = model.device
        keep = np.flatnonzero(self.targets >= 0)
        out = []
        for s in range(0, len(keep), self.batch_size):
            rows = keep[s:s + self.batch_size]
            scores = score_fn(torch.from_numpy(self.inputs[rows]).to(dev), torch.from_numpy(self.lengths[rows]).to(dev))
            scores = invalid_scores_last(scores, self.users[rows])
            if self.mask_history:
                r, c = self._history_mask(rows)
                scores[r.to(dev), c.to(dev)] = -torch.inf
            out.append(target_ranks(scores, torch.from_numpy(self.targets[rows]).to(dev)).cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0, np.int64)

    def evaluate(self, model, score_fn=None) -> dict[str, float]:
        was_training = model.training
        model.eval()
        model.prepare_eval()
        try:
            ranks = self.ranks(model, score_fn)
        finally:
            model.end_eval()
            model.train(was_training)
        return metrics_from_ranks(ranks, self.topk, self.metrics)
