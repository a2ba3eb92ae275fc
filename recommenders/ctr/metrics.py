"""AUC and logloss, the CTR protocol's metrics (FuxiCTR / the MMCTR challenge report both).

AUC is the Mann-Whitney statistic on average ranks, so tied scores count one half, exactly as scikit-learn's
``roc_auc_score`` (which integrates the ROC curve through tied thresholds); it is O(n log n) and also gives
the per-user AUC (gAUC) in one vectorised pass. Logloss clips probabilities to ``[eps, 1 - eps]`` with
FuxiCTR's ``eps = 1e-7``.
"""
from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

LOGLOSS_EPS = 1e-7


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve; NaN when only one class is present.

    Example:
        >>> auc(np.array([0, 1, 1]), np.array([0.1, 0.4, 0.4]))
        1.0
    """
    y = np.asarray(labels, np.float64).ravel() > 0.5
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(np.asarray(scores, np.float64).ravel())  # average ranks: ties count one half
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def logloss(labels: np.ndarray, probs: np.ndarray, eps: float = LOGLOSS_EPS) -> float:
    """Mean binary cross-entropy of probabilities clipped to ``[eps, 1 - eps]``."""
    y = np.asarray(labels, np.float64).ravel()
    p = np.clip(np.asarray(probs, np.float64).ravel(), eps, 1 - eps)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def group_auc(labels: np.ndarray, scores: np.ndarray, groups: np.ndarray) -> float:
    """Impression-weighted mean of per-group (user) AUCs over groups with both classes (gAUC).

    Ranks are taken inside each group by sorting on (group, score) once; no Python loop over groups.
    """
    y = np.asarray(labels, np.float64).ravel() > 0.5
    g = np.asarray(groups).ravel()
    s = np.asarray(scores, np.float64).ravel()
    _, gi = np.unique(g, return_inverse=True)
    order = np.lexsort((s, gi))
    gs, ss = gi[order], s[order]
    # ranks with ties averaged within (group, score) runs
    new_run = np.r_[True, (gs[1:] != gs[:-1]) | (ss[1:] != ss[:-1])]
    run_id = np.cumsum(new_run) - 1
    pos_in_all = np.arange(len(gs), dtype=np.float64)
    run_first = np.minimum.reduceat(pos_in_all, np.flatnonzero(new_run))
    run_last = np.maximum.reduceat(pos_in_all, np.flatnonzero(new_run))
    group_start = np.minimum.reduceat(pos_in_all, np.flatnonzero(np.r_[True, gs[1:] != gs[:-1]]))
    avg_rank = (run_first[run_id] + run_last[run_id]) / 2 - group_start[gs] + 1
    yy = y[order]
    n_groups = int(gs.max()) + 1 if len(gs) else 0
    n_pos = np.bincount(gs, weights=yy, minlength=n_groups)
    n_all = np.bincount(gs, minlength=n_groups).astype(np.float64)
    n_neg = n_all - n_pos
    rank_sum = np.bincount(gs, weights=avg_rank * yy, minlength=n_groups)
    ok = (n_pos > 0) & (n_neg > 0)
    if not ok.any():
        return float("nan")
    per = (rank_sum[ok] - n_pos[ok] * (n_pos[ok] + 1) / 2) / (n_pos[ok] * n_neg[ok])
    return float(np.average(per, weights=n_all[ok]))
