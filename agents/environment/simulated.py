"""The simulator's users (:class:`~mmfeat.agents.simulator.SimulatedUser`) as a batched :class:`~.users.UserPool`.

Why: a :class:`SimulatedUser` asks its taste model for the click probabilities and ratings of each page it
sees, one gradient-boosting ``predict`` per page (about 4 ms on a busy core, most of it fixed cost). In lock
step the environment knows every page of a turn at once, so :class:`SimulatorPool` predicts them all in one
call per turn and hands each user its own page's values; the user then reacts exactly as it would alone (same
numbers: tree predictions are per row, and the taste model's per-user features do not depend on which other
users share the batch). Everything else -- mindset, clicks, ratings, leaving, reflective instructions,
reasons -- is the simulator's own code.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from mmfeat.agents.simulator.mindset import MindsetParams
from mmfeat.agents.simulator.profile import ProfileArrays
from mmfeat.agents.simulator.taste import TasteModel, UserFeatures, UserTaste
from mmfeat.agents.simulator.user import SimulatedUser
from mmfeat.agents.types import Catalog, Reaction, UserHistory

from .users import _guarded


def one_thread() -> Any:
    """OpenMP limited to one thread while the boosted heads predict: a few thousand rows gain nothing from more,
    and on a busy two-core machine spinning OpenMP threads made one batch 15x slower (5 s instead of 0.3 s)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1, user_api="openmp")


class PrefetchedTaste(UserTaste):
    """One user's taste whose answers for the current page were computed in the pool's batch; items not
    prefetched (never in practice) are predicted on the spot, with this user's own features."""

    def __init__(self, model: TasteModel, history: UserHistory, uf: UserFeatures, row: int) -> None:
        super().__init__(model, history, uf)
        self.row = row
        self._click: dict[int, float] = {}
        self._rating: dict[int, float] = {}

    def load(self, items: np.ndarray, click: np.ndarray, rating: np.ndarray) -> None:
        self._click = dict(zip(np.asarray(items).tolist(), np.asarray(click, dtype=np.float64).tolist(), strict=True))
        self._rating = dict(zip(np.asarray(items).tolist(), np.asarray(rating, dtype=np.float64).tolist(), strict=True))

    def _get(self, items: np.ndarray, cache: dict[int, float], predict: Callable[..., np.ndarray]) -> np.ndarray:
        items = np.asarray(items, np.int64)
        missing = [int(i) for i in items if int(i) not in cache]
        if missing:
            rows = np.full(len(missing), self.row, np.int64)
            with one_thread():
                values = predict([self.history], rows, np.asarray(missing), self.uf).tolist()
                cache.update(zip(missing, values, strict=True))
        return np.array([cache[int(i)] for i in items], dtype=np.float64)

    def click_proba(self, items: np.ndarray) -> np.ndarray:
        return self._get(items, self._click, self.model.click_proba)

    def rating(self, items: np.ndarray) -> np.ndarray:
        return self._get(items, self._rating, self.model.rating)


class SimulatorPool:
    """Simulated users (one fresh :class:`SimulatedUser` per session) reacting in batches.

    Args:
        taste: the fitted taste model.
        histories: the population (``histories[u].user == u``; only training parts are read).
        catalog: the items.
        profiles: the population's profile arrays (row ``u`` = user ``u``); each user builds its own when None.
        params: the mindset's parameters (None: the simulator's defaults).
        llm: ``llm(prompt) -> str`` writing the users' reflective instructions (None: the template).

    Example:
        >>> pool = SimulatorPool(taste, pop.histories, pop.catalog, profiles=pop.profiles)   # doctest: +SKIP
        >>> run = run_sessions(make_agent, pool, pop.histories, pop.users)                   # doctest: +SKIP
    """

    def __init__(self, taste: TasteModel, histories: Sequence[UserHistory], catalog: Catalog, *,
                 profiles: ProfileArrays | None = None, params: MindsetParams | None = None,
                 llm: Callable[[str], str] | None = None) -> None:
        self.taste, self.histories, self.catalog = taste, histories, catalog
        self.profiles, self.params, self.llm = profiles, params, llm
        self._users: dict[int, SimulatedUser] = {}
        self._uf: dict[int, UserFeatures] = {}
        self._group: dict[int, int] = {}

    def begin(self, sessions: np.ndarray, users: np.ndarray) -> None:
        """Fresh users for these sessions; the taste model's per-user features computed in one batch."""
        users = np.asarray(users, dtype=np.int64)
        uniq, inv = np.unique(users, return_inverse=True)
        uf = self.taste.user_features([self.histories[u] for u in uniq])
        group = id(uf)
        self._uf[group] = uf
        for s, u, row in zip(np.asarray(sessions).tolist(), users.tolist(), inv.tolist(), strict=True):
            h = self.histories[u]
            profile = self.profiles.profile(int(u)) if self.profiles is not None else None
            taste = PrefetchedTaste(self.taste, h, uf, int(row))
            self._users[int(s)] = SimulatedUser(h, self.catalog, taste, profile=profile, params=self.params,
                                                llm=self.llm)
            self._group[int(s)] = group

    def react(self, sessions: np.ndarray, pages: Sequence[tuple[int, ...]],
              rngs: Sequence[np.random.Generator]) -> list[Reaction | Exception]:
        """Every page's taste predictions in one batch per feature group, then each user's own reaction."""
        ids = [int(s) for s in np.asarray(sessions).tolist()]
        for group in sorted({self._group[s] for s in ids}):
            idx = [j for j, s in enumerate(ids) if self._group[s] == group]
            tastes = [self._users[ids[j]].taste for j in idx]
            rows = np.concatenate([np.full(len(pages[j]), t.row, dtype=np.int64)
                                   for j, t in zip(idx, tastes, strict=True)])
            items = np.concatenate([np.asarray(pages[j], dtype=np.int64) for j in idx])
            with one_thread():
                click = self.taste.click_proba(self.histories, rows, items, self._uf[group])
                rating = self.taste.rating(self.histories, rows, items, self._uf[group])
            cuts = np.cumsum([len(pages[j]) for j in idx])[:-1]
            for j, t, c, r in zip(idx, tastes, np.split(click, cuts), np.split(rating, cuts), strict=True):
                t.load(np.asarray(pages[j], dtype=np.int64), c, r)
        return [_guarded(self._users[s].react, np.asarray(page, dtype=np.int64), rng)
                for s, page, rng in zip(ids, pages, rngs, strict=True)]

    def end(self, sessions: np.ndarray) -> None:
        """Forget finished sessions (and feature groups no session uses any more)."""
        for s in np.asarray(sessions).tolist():
            self._users.pop(int(s), None)
            self._group.pop(int(s), None)
        live = set(self._group.values())
        for g in [g for g in self._uf if g not in live]:
            del self._uf[g]


__all__ = ["SimulatorPool", "PrefetchedTaste", "one_thread"]
