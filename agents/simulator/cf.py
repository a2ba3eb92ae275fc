"""The collaborative models behind the simulator's taste: EASE for *what a user would watch*, biased ALS for
*what they would rate it*.

Why these two: both are closed-form or alternating least squares, so a fit on ML-1M takes seconds on two
cores, is exactly reproducible for a seed, and folds a new history in without retraining (EASE scores any
history row; ALS solves one ridge problem per user). Neither is a model the agentic recommender uses as its
base scorer (LightGCN / SASRec runs), so the simulated user shares no hidden state with the agent it judges.

Reference:
    Harald Steck. "Embarrassingly Shallow Autoencoders for Sparse Data." WWW 2019 (EASE).
    Yunhong Zhou, Dennis Wilkinson, Robert Schreiber, Rong Pan. "Large-Scale Parallel Collaborative Filtering
    for the Netflix Prize." AAIM 2008 (ALS with weighted-lambda regularisation, used here with biases).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.linalg
import scipy.sparse as sp


@dataclass
class EASE:
    """Item-item linear autoencoder with a zero diagonal: ``score(u, i) = x_u @ B[:, i]``.

    Attributes:
        l2: ridge penalty on ``B`` (Steck's lambda; larger = more popularity-like scores).
        max_items: only the this-many most popular items get a column (the inverse is ``max_items``^2 memory);
            the others score 0.
    """

    l2: float = 300.0
    max_items: int = 12000
    B: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]
    keep: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]
    n_items: int = 0

    def fit(self, X: sp.csr_matrix) -> "EASE":
        """Fit on a binary users x items matrix (training interactions only).

        Returns:
            self.
        """
        self.n_items = X.shape[1]
        counts = np.asarray(X.sum(axis=0)).ravel()
        order = np.argsort(-counts, kind="stable")
        self.keep = np.sort(order[: min(self.max_items, int((counts > 0).sum()))])
        Xk = X[:, self.keep]
        gram = (Xk.T @ Xk).toarray().astype(np.float64)
        gram[np.diag_indices_from(gram)] += self.l2
        P = scipy.linalg.inv(gram, overwrite_a=True, check_finite=False)
        B = P / (-np.diag(P))
        B[np.diag_indices_from(B)] = 0.0
        self.B = B.astype(np.float32)
        return self

    def scores(self, X: sp.csr_matrix) -> np.ndarray:
        """Scores of every item for each row of a binary history matrix, ``[rows, n_items]`` float32."""
        out = np.zeros((X.shape[0], self.n_items), np.float32)
        if len(self.keep):
            out[:, self.keep] = np.asarray(X[:, self.keep].astype(np.float32) @ self.B)
        return out


def _ridge_rows(X: sp.csr_matrix, T: sp.csr_matrix, F: np.ndarray, l2: float) -> np.ndarray:
    """Per-row ridge solutions ``argmin_w sum_j X_rj (T_rj - F_j . w)^2 + l2 * n_r * |w|^2``, all rows at once.

    The per-row Gram matrices are one sparse-dense product (``X @ vec(F_j F_j^T)``), then a batched solve:
    no loop over interactions or rows.
    """
    k = F.shape[1]
    outer = (F[:, :, None] * F[:, None, :]).reshape(len(F), k * k)
    A = np.asarray(X @ outer).reshape(-1, k, k)
    n = np.asarray(X.sum(axis=1)).ravel()
    A += (l2 * np.maximum(n, 1.0))[:, None, None] * np.eye(k)
    b = np.asarray(T @ F)
    return np.linalg.solve(A, b[:, :, None])[:, :, 0]


@dataclass
class BiasedALS:
    """Explicit-rating matrix factorisation ``r = mu + b_u + b_i + p_u . q_i`` by alternating ridge solves.

    Attributes:
        dim: latent factors.
        l2: weighted-lambda penalty (times each row's rating count).
        iters: alternations.
    """

    dim: int = 32
    l2: float = 0.08
    iters: int = 12
    mu: float = 3.0
    Q: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]
    bi: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]

    def fit(self, R: sp.csr_matrix, rng: np.random.Generator) -> "BiasedALS":
        """Fit on a users x items rating matrix (stored entries are the ratings).

        Args:
            R: training ratings.
            rng: initialises the item factors.

        Returns:
            self.
        """
        R = R.tocsr()
        X = R.copy()
        X.data = np.ones_like(X.data)
        self.mu = float(R.data.mean()) if R.nnz else 3.0
        n_items = R.shape[1]
        self.Q = rng.normal(0.0, 0.1, (n_items, self.dim))
        self.bi = np.zeros(n_items)
        Rt, Xt = R.T.tocsr(), X.T.tocsr()
        for _ in range(self.iters):
            P, bu = self.fold_in(R)
            T = Rt.copy()  # item rows: r - mu - b_u
            T.data = T.data - self.mu - bu[Rt.indices]
            W = _ridge_rows(Xt, T, np.hstack([P, np.ones((len(P), 1))]), self.l2)
            self.Q, self.bi = W[:, :-1], W[:, -1]
        return self

    def fold_in(self, R: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
        """User factors and biases for any rating rows (the ALS user step; an empty row gets zeros).

        Returns:
            ``(P [rows, dim], b_u [rows])``.
        """
        R = R.tocsr()
        X = R.copy()
        X.data = np.ones_like(X.data)
        T = R.copy()
        T.data = T.data - self.mu - self.bi[R.indices]
        W = _ridge_rows(X, T, np.hstack([self.Q, np.ones((len(self.Q), 1))]), self.l2)
        return W[:, :-1], W[:, -1]

    def predict(self, P: np.ndarray, bu: np.ndarray, rows: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Predicted ratings of pairs (``rows`` index ``P``/``bu``), unclipped."""
        return self.mu + bu[rows] + self.bi[items] + np.einsum("ij,ij->i", P[rows], self.Q[items])
