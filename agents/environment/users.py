"""The user side of a session as the environment drives it: a :class:`UserPool` reacts to many pages at once.

Why a pool and not one object per user: a learned taste model is a gradient-boosted classifier, whose
``predict`` costs about the same for 10 pairs as for 10,000 (thread start-up and validation dominate). The
environment runs all active sessions of a population in lock step (turn ``t`` of every session, then turn
``t + 1``), so the simulator scores every page of a turn in one call. A pool keys its state (a mindset that
changes with each page) by *session*, not by user: the same user may be simulated in several sessions of one
run (the learner evaluates several policies on the same users with common random numbers).

:class:`PerUserPool` adapts any per-user simulator with ``react(page, rng) -> Reaction`` (the
:class:`~mmfeat.agents.simulator` ``SimulatedUser`` contract) to the pool protocol, one call per page.

Reference:
    RecoWorld (Meta, 2025): multi-agent simulation of target populations; Agent4Rec (Zhang et al., SIGIR 2024):
    1,000 simulated users interacting page by page.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from mmfeat.agents.types import Reaction


@runtime_checkable
class UserPool(Protocol):
    """Simulated users reacting to pages, many sessions per call.

    ``begin`` is called once per session before its first page (a fresh mindset); ``react`` once per turn with
    every active session's page. Each session brings its own generator, so a reaction never depends on which
    other sessions share the call.
    """

    def begin(self, sessions: np.ndarray, users: np.ndarray) -> None:
        """Start sessions ``sessions[j]`` for population users ``users[j]``."""
        ...

    def react(self, sessions: np.ndarray, pages: Sequence[tuple[int, ...]],
              rngs: Sequence[np.random.Generator]) -> list[Reaction | Exception]:
        """One :class:`Reaction` per session to its page (catalog item indices, page order), or the exception
        that session's user raised (that session ends with an error row; the others go on). Raise only for a
        failure of the whole batch, before any session's state changed."""
        ...


class PerUserPool:
    """A :class:`UserPool` over per-user simulators (``react(page, rng) -> Reaction``), one call per page.

    Args:
        make_user: population user index -> a fresh simulated user for one session.

    Example:
        >>> pool = PerUserPool(lambda u: simulated_users[u])   # doctest: +SKIP
        >>> pool.begin(np.array([0]), np.array([12])); pool.react(np.array([0]), [(3, 4, 5)], [rng])  # doctest: +SKIP
    """

    def __init__(self, make_user: Callable[[int], Any]) -> None:
        self.make_user = make_user
        self._users: dict[int, Any] = {}

    def begin(self, sessions: np.ndarray, users: np.ndarray) -> None:
        for s, u in zip(np.asarray(sessions).tolist(), np.asarray(users).tolist(), strict=True):
            self._users[int(s)] = self.make_user(int(u))

    def react(self, sessions: np.ndarray, pages: Sequence[tuple[int, ...]],
              rngs: Sequence[np.random.Generator]) -> list[Reaction | Exception]:
        return [_guarded(self._users[int(s)].react, tuple(page), rng)
                for s, page, rng in zip(np.asarray(sessions).tolist(), pages, rngs, strict=True)]

    def end(self, sessions: np.ndarray) -> None:
        """Forget finished sessions (keeps memory flat over a long run)."""
        for s in np.asarray(sessions).tolist():
            self._users.pop(int(s), None)


def _guarded(react: Callable[..., Reaction], page: Any, rng: np.random.Generator) -> Reaction | Exception:
    """One user's reaction, or the exception it raised (it ends that session only)."""
    try:
        return react(page, rng)
    except Exception as exc:  # noqa: BLE001  reported in the session's trace row
        return exc


__all__ = ["UserPool", "PerUserPool"]
