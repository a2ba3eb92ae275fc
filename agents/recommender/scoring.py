"""The base recommender as the agent sees it: a :class:`Scorer` of catalog items for one user's history.

Any trained mmfeat model becomes one in :mod:`mmfeat.pipelines.simulation.scorers` (graph models by the run's
user index, sequential models from the history's item sequence); :class:`PopularityScorer` needs no training
and is the popularity baseline. The agent only ever calls ``score`` through its ``score`` tool.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from mmfeat.agents.types import Catalog, UserHistory


@runtime_checkable
class Scorer(Protocol):
    """Scores catalog items for a user: higher is better; only the order within one call matters.

    ``name`` names the model in traces and benchmark tables.
    """

    name: str

    def score(self, history: UserHistory, items: np.ndarray) -> np.ndarray:
        """float ``[len(items)]``: the base model's score of each catalog item index in ``items`` for ``history``."""
        ...


class PopularityScorer:
    """Training interactions per item (``Catalog.popularity``): the same page for everyone.

    Example:
        >>> import numpy as np
        >>> from mmfeat.agents.types import Catalog, UserHistory
        >>> cat = Catalog(np.array(["a", "b"]), ["A", "B"], ["Drama"], np.ones((2, 1), bool), np.array([1990, 1991]),
        ...               np.array([3.0, 7.0]))
        >>> PopularityScorer(cat).score(UserHistory(0, "u", np.array([0]), np.array([1.0])), np.array([0, 1]))
        array([3., 7.])
    """

    name = "popularity"

    def __init__(self, catalog: Catalog) -> None:
        self.popularity = np.asarray(catalog.popularity, dtype=np.float64)

    def score(self, history: UserHistory, items: np.ndarray) -> np.ndarray:
        return self.popularity[np.asarray(items, dtype=np.int64)]


def all_scores(scorer: Scorer, history: UserHistory, n_items: int) -> np.ndarray:
    """float64 ``[n_items]`` scores of every catalog item; non-finite scores become the lowest finite one
    (an item the model cannot score ranks last without poisoning z-scores).

    Raises:
        ValueError: the scorer returned the wrong shape.
    """
    s = np.asarray(scorer.score(history, np.arange(n_items)), dtype=np.float64)
    if s.shape != (n_items,):
        raise ValueError(f"scorer {getattr(scorer, 'name', scorer)!r} returned shape {s.shape}, expected ({n_items},)")
    bad = ~np.isfinite(s)
    if bad.any():
        s[bad] = (s[~bad].min() - 1.0) if (~bad).any() else 0.0
    return s


__all__ = ["Scorer", "PopularityScorer", "all_scores"]
