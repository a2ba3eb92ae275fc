"""The multi-turn session loop: a recommender shows a page, the simulated user reacts, the recommender adapts.

One session (RecoWorld's loop): turn 0 shows the first page; the user clicks, rates, maybe writes a reflective
instruction, maybe leaves; the recommender's next page sees only what a real system would see -- the user's
visible history (held-out items removed), its own pages and the reactions (instruction text included) --
never the simulator's taste model or mindset. A session ends when the user leaves, when the recommender has
nothing to show, when either side fails, or at the turn cap.

Why lock step: all active sessions of a population play turn ``t`` before any plays ``t + 1``, so the
simulated users react to every page of a turn in one batched call (:class:`~.users.UserPool`): a learned
taste model scores 10,000 pairs in about the time it scores 10.

Why per-session generators: each session draws from two streams derived from ``(seed, user)`` by
:class:`numpy.random.SeedSequence` (one for the recommender's sampling, one for the user's reactions), so a
session gives the same trace whatever order sessions run in, whichever other sessions share its batch, and
however the population is chunked -- a session replays exactly from its seed and user.

A failure is a trace row, not a crashed run: a recommender that raises ends its session with
``status="error"``, ``stage="recommend"``; a simulator batch that raises is retried session by session so only
the failing sessions end (``stage="react"``).

Reference:
    RecoWorld (Meta, 2025): multi-turn sessions between a simulated user and an agentic recommender, aiming at
    retention; Agent4Rec (Zhang et al., SIGIR 2024): page-by-page interaction of simulated users.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mmfeat.agents.types import Reaction, UserHistory

from .users import UserPool

#: why a session ended (the ``end_reason`` of its last row)
END_REASONS = ("left", "turn_cap", "empty_page", "error")


@dataclass(frozen=True)
class SessionConfig:
    """How sessions run.

    Attributes:
        turns: the turn cap (pages per session at most).
        page_size: items per page (``k``).
        seed: the base of every session's generators (with the user index).
        batch_sessions: sessions played in lock step at once (memory bound; results do not depend on it).
    """

    turns: int = 20
    page_size: int = 10
    seed: int = 0
    batch_sessions: int = 1000

    def __post_init__(self) -> None:
        if self.turns < 1 or self.page_size < 1 or self.batch_sessions < 1:
            raise ValueError("turns, page_size and batch_sessions must be >= 1")


def session_rngs(seed: int, user: int) -> tuple[np.random.Generator, np.random.Generator]:
    """The recommender's and the user's generators of the session of ``user`` under ``seed``.

    Example:
        >>> a, u = session_rngs(0, 7)
        >>> float(u.random()) == float(session_rngs(0, 7)[1].random())
        True
    """
    agent_seq, user_seq = np.random.SeedSequence(int(seed), spawn_key=(int(user),)).spawn(2)
    return np.random.default_rng(agent_seq), np.random.default_rng(user_seq)


@dataclass
class _Session:
    index: int
    user: int
    visible: UserHistory
    recommender: Any
    agent_rng: np.random.Generator
    user_rng: np.random.Generator
    last: Reaction | None = None
    done: bool = False


@dataclass
class SessionRun:
    """A run's trace and timings.

    Attributes:
        rows: one dict per turn (see :func:`trace_row`), sessions in ``users`` order, turns in order.
        n_sessions: sessions played.
        seconds: wall time in the recommenders (``recommend``), the simulator (``react``) and overall (``total``).
        config: the session config.
    """

    rows: list[dict[str, Any]]
    n_sessions: int
    seconds: dict[str, float] = field(default_factory=dict)
    config: SessionConfig = field(default_factory=SessionConfig)


def _tool_calls(page: Any) -> list[dict[str, Any]]:
    """The page's tool calls without their timings (a trace must replay byte for byte)."""
    return [{"name": t.name, "arguments": t.arguments, "ok": t.ok, "summary": t.summary()}
            for t in getattr(page, "tool_calls", ())]


def trace_row(s: _Session, turn: int, page: Any, reaction: Reaction | None, *, received: str | None,
              end_reason: str | None, error: str | None = None, stage: str | None = None) -> dict[str, Any]:
    """One turn as a JSON-able dict: the page (items, explanations, tool calls, messages, constraints and how they
    were parsed) and the user's reaction (clicks, ratings, instruction, reasons, leaving)."""
    items = [int(i) for i in getattr(page, "items", ())] if page is not None else []
    constraints = getattr(page, "constraints", None)
    parse = getattr(page, "parse", None)
    decision = getattr(page, "decision", None)
    clicked = [int(i) for i in reaction.clicked] if reaction else []
    return {
        "session": s.index, "user": s.user, "user_id": s.visible.user_id, "turn": turn,
        "recommender": str(getattr(s.recommender, "name", type(s.recommender).__name__)),
        "items": items, "clicked": clicked,
        "ratings": [float(reaction.ratings.get(i, np.nan)) for i in clicked] if reaction else [],
        "left": bool(reaction.left) if reaction else end_reason is not None,
        "end_reason": end_reason, "instruction_in": received,
        "instruction": reaction.instruction if reaction else None,
        "constraints": constraints.model_dump(exclude_defaults=True) if constraints is not None else None,
        "parse_path": parse.path if parse is not None else None,
        "unsatisfied": list(parse.unsatisfied) if parse is not None else [],
        "explanations": list(getattr(page, "explanations", ())) if page is not None else [],
        "tool_calls": _tool_calls(page) if page is not None else [],
        "messages": list(getattr(page, "messages", ())) if page is not None else [],
        "reasons": list(reaction.reasons) if reaction else [],
        "reaction_text": reaction.text if reaction else None,
        "log_prob": float(decision.log_prob) if decision is not None and decision.sampled else None,
        "status": "error" if error else "ok", "error": error, "stage": stage,
    }


def _clean(reaction: Reaction, page_items: tuple[int, ...]) -> Reaction:
    """Clicks restricted to the page (a simulator cannot click what it was not shown)."""
    shown = set(page_items)
    if all(int(i) in shown for i in reaction.clicked):
        return reaction
    clicked = tuple(int(i) for i in reaction.clicked if int(i) in shown)
    return Reaction(clicked, {i: r for i, r in reaction.ratings.items() if i in shown}, reaction.left,
                    reaction.instruction, reaction.reasons + ("clicks outside the page dropped",), reaction.text)


def _react(pool: UserPool, sessions: list[_Session], pages: list[tuple[int, ...]]
           ) -> list[Reaction | BaseException]:
    """The pool's reactions (an entry may be the exception one session's user raised). When the whole batch
    raises, it is retried session by session so only the failing sessions end; a pool should raise a batch-wide
    error before any session's state changes (the retry would otherwise update those sessions twice), and
    report a per-session failure in its slot instead (as :class:`~.users.PerUserPool` and
    :class:`~.simulated.SimulatorPool` do)."""
    ids = np.array([s.index for s in sessions], dtype=np.int64)
    try:
        out = pool.react(ids, pages, [s.user_rng for s in sessions])
        if len(out) != len(sessions):
            raise ValueError(f"the user pool returned {len(out)} reactions for {len(sessions)} pages")
        return list(out)
    except Exception:  # noqa: BLE001  isolate the failing sessions below
        pass
    results: list[Reaction | BaseException] = []
    for j, (s, page) in enumerate(zip(sessions, pages, strict=True)):
        try:
            results.append(pool.react(ids[j:j + 1], [page], [s.user_rng])[0])
        except Exception as exc:  # noqa: BLE001  one failing user ends one session
            results.append(exc)
    return results


def run_sessions(make_recommender: Callable[[int], Any], pool: UserPool, histories: Sequence[UserHistory],
                 users: np.ndarray, config: SessionConfig = SessionConfig(), *,
                 seeds: np.ndarray | None = None,
                 progress: Callable[[int, int], None] | None = None) -> SessionRun:
    """Play one session per entry of ``users``, all in lock step (in chunks of ``config.batch_sessions``).

    Args:
        make_recommender: session index ``j`` -> a fresh recommender for that session (the agent or a static
            baseline: anything with ``recommend(history_visible, turn, last_reaction, k, rng) -> Page``); one
            per session, so session memories never mix.
        pool: the simulated users (:class:`~.users.UserPool`).
        histories: the population (``histories[u].user == u``); recommenders get ``.visible()`` only.
        users: population indices, one session each (session ``j`` plays ``users[j]``).
        config: turn cap, page size, seed.
        seeds: per-session seeds instead of ``config.seed`` (the learner plays several policies, each on its own
            seed, in one lock-step run).
        progress: called with ``(finished sessions, total)`` after every turn.

    Returns:
        :class:`SessionRun` with one trace row per turn played.

    Example:
        >>> run = run_sessions(lambda j: StaticRecommender(cat, PopularityScorer(cat)), pool, pop.histories,
        ...                    pop.users, SessionConfig(turns=10, page_size=10, seed=0))   # doctest: +SKIP
        >>> len({r["session"] for r in run.rows}) == len(pop.users)                       # doctest: +SKIP
        True
    """
    users = np.asarray(users, dtype=np.int64)
    seeds = np.full(len(users), config.seed, dtype=np.int64) if seeds is None else np.asarray(seeds, dtype=np.int64)
    if len(seeds) != len(users):
        raise ValueError(f"{len(seeds)} seeds for {len(users)} sessions")
    t_start = time.perf_counter()
    seconds = {"recommend": 0.0, "react": 0.0}
    by_session: list[list[dict[str, Any]]] = [[] for _ in range(len(users))]
    finished = 0
    for lo in range(0, len(users), config.batch_sessions):
        chunk = []
        for j in range(lo, min(lo + config.batch_sessions, len(users))):
            agent_rng, user_rng = session_rngs(seeds[j], users[j])
            chunk.append(_Session(j, int(users[j]), histories[users[j]].visible(), make_recommender(j),
                                  agent_rng, user_rng))
        pool.begin(np.array([s.index for s in chunk], dtype=np.int64), np.array([s.user for s in chunk]))
        for turn in range(config.turns):
            active = [s for s in chunk if not s.done]
            if not active:
                break
            shown: list[tuple[_Session, Any]] = []
            t0 = time.perf_counter()
            for s in active:
                received = s.last.instruction if s.last is not None else None
                try:
                    page = s.recommender.recommend(s.visible, turn, s.last, config.page_size, s.agent_rng)
                except Exception as exc:  # noqa: BLE001  a failing recommender ends its session, not the run
                    by_session[s.index].append(trace_row(s, turn, None, None, received=received, end_reason="error",
                                                         error=f"{type(exc).__name__}: {exc}"[:500],
                                                         stage="recommend"))
                    s.done = True
                    continue
                if not page.items:
                    by_session[s.index].append(trace_row(s, turn, page, None, received=received,
                                                         end_reason="empty_page"))
                    s.done = True
                    continue
                shown.append((s, page))
            seconds["recommend"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            reactions = _react(pool, [s for s, _ in shown], [tuple(p.items) for _, p in shown]) if shown else []
            seconds["react"] += time.perf_counter() - t0
            for (s, page), reaction in zip(shown, reactions, strict=True):
                received = s.last.instruction if s.last is not None else None
                if isinstance(reaction, BaseException):
                    by_session[s.index].append(trace_row(s, turn, page, None, received=received, end_reason="error",
                                                         error=f"{type(reaction).__name__}: {reaction}"[:500],
                                                         stage="react"))
                    s.done = True
                    continue
                reaction = _clean(reaction, tuple(page.items))
                end = "left" if reaction.left else ("turn_cap" if turn == config.turns - 1 else None)
                by_session[s.index].append(trace_row(s, turn, page, reaction, received=received, end_reason=end))
                s.last = reaction
                s.done = end is not None
            finished = lo + sum(s.done for s in chunk)
            if progress is not None:
                progress(finished, len(users))
        ended = getattr(pool, "end", None)
        if callable(ended):
            ended(np.array([s.index for s in chunk], dtype=np.int64))
    seconds["total"] = time.perf_counter() - t_start
    rows = [r for rs in by_session for r in rs]
    return SessionRun(rows, len(users), {k: round(v, 3) for k, v in seconds.items()}, config)


__all__ = ["SessionConfig", "SessionRun", "END_REASONS", "session_rngs", "run_sessions", "trace_row"]
