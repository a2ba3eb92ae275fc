"""The baselines: a base model's top-k, never re-showing seen or shown items, ignoring instructions.

:class:`StaticRecommender` wraps any :class:`~.scoring.Scorer` (popularity, a graph run such as LightGCN or
FREEDOM, a sequential run such as SASRec) behind the same ``recommend`` call as the agent, through the same
``score`` tool, so the environment compares them on equal terms: what the agent adds is exactly its planning,
memory and re-ranking.
"""
from __future__ import annotations

import numpy as np

from mmfeat.agents.types import Catalog, Reaction, UserHistory

from .agent import session_history
from .page import Page
from .scoring import Scorer
from .tools import ToolContext, ToolRegistry


class StaticRecommender:
    """Top-k of the base scorer, excluding the history and items shown earlier in the session.

    Args:
        catalog: the items.
        scorer: the base model.
        name: the name in traces (default the scorer's name).

    Example:
        >>> rec = StaticRecommender(catalog, PopularityScorer(catalog))  # doctest: +SKIP
        >>> rec.recommend(user.visible(), 0, None, 10, np.random.default_rng(0)).items  # doctest: +SKIP
    """

    def __init__(self, catalog: Catalog, scorer: Scorer, name: str | None = None) -> None:
        self.catalog, self.scorer = catalog, scorer
        self.name = name or getattr(scorer, "name", "static")
        self.registry = ToolRegistry()
        self._shown: list[int] = []
        self._clicked: list[int] = []
        self._ratings: list[float] = []
        self._user: int | None = None

    def reset(self) -> None:
        self._shown, self._clicked, self._ratings, self._user = [], [], [], None

    def recommend(self, history_visible: UserHistory, turn: int, last_reaction: Reaction | None, k: int,
                  rng: np.random.Generator) -> Page:
        """The base model's top-k unseen, unshown items (``rng`` unused: a static page is deterministic)."""
        if turn == 0 or self._user != history_visible.user:
            self.reset()
            self._user = history_visible.user
        if last_reaction is not None:
            new = [int(i) for i in last_reaction.clicked if int(i) in self._shown and int(i) not in self._clicked]
            self._clicked += new
            self._ratings += [float(last_reaction.ratings.get(i, 1.0)) for i in new]
        ctx = ToolContext(self.catalog, self.scorer, session_history(history_visible, self._clicked, self._ratings),
                          shown=np.asarray(self._shown, dtype=np.int64))
        result = self.registry.call("score", {"items": "all", "k": int(k)}, ctx)
        if not result.ok:
            return Page((), (), (result,), (f"tool {result.summary()}",))
        items = tuple(int(i) for i in result.value["items"])
        self._shown += items
        return Page(items, tuple(f"base score rank {r}" for r in result.value["ranks"]), (result,))


__all__ = ["StaticRecommender"]
