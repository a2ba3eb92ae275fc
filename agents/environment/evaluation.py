"""Playing recommenders on a population and scoring them: the glue between :mod:`.session`, :mod:`.metrics`
and :mod:`.learning`.

:func:`evaluate_recommender` plays one recommender on a set of users and returns its trace and metrics;
:func:`policy_evaluator` builds the learner's evaluator, which plays *several* weight vectors (each on its own
users and seed) in one lock-step run, so the simulated users score the pages of every candidate of an
iteration in one batched call per turn.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mmfeat.agents.recommender.policy import PolicyWeights
from mmfeat.agents.types import Catalog, UserHistory

from .learning import Evaluator, Job
from .metrics import population_metrics, trace_frame
from .session import SessionConfig, SessionRun, run_sessions
from .users import UserPool


@dataclass
class Evaluation:
    """One recommender on one population: the run (trace rows, timings) and its metrics."""

    name: str
    run: SessionRun
    metrics: dict[str, Any]


def evaluate_recommender(make_recommender: Callable[[int], Any], pool: UserPool, catalog: Catalog,
                         histories: Sequence[UserHistory], users: np.ndarray, config: SessionConfig = SessionConfig(),
                         *, name: str | None = None,
                         progress: Callable[[int, int], None] | None = None) -> Evaluation:
    """Play one session per user and compute :func:`~.metrics.population_metrics`.

    Args:
        make_recommender: session index -> a fresh recommender (see :func:`~.session.run_sessions`).
        pool: the simulated users.
        catalog: the items.
        histories: the population, held-out parts included (metrics read them; recommenders never do).
        users: population indices to simulate.
        config: turns, page size, seed.
        name: the recommender's name in tables (default: the first session's recommender name).
        progress: ``(finished sessions, total)`` after every turn.

    Returns:
        :class:`Evaluation`.

    Example:
        >>> ev = evaluate_recommender(lambda j: StaticRecommender(cat, PopularityScorer(cat)), pool, cat,
        ...                           pop.histories, pop.users, SessionConfig(turns=10))      # doctest: +SKIP
        >>> ev.metrics["retention"]                                                            # doctest: +SKIP
    """
    run = run_sessions(make_recommender, pool, histories, users, config, progress=progress)
    metrics = population_metrics(run.rows, catalog, histories, turns=config.turns)
    label = name or (run.rows[0]["recommender"] if run.rows else "recommender")
    return Evaluation(label, run, metrics)


def policy_evaluator(make_agent: Callable[[PolicyWeights], Any], pool: UserPool, catalog: Catalog,
                     histories: Sequence[UserHistory], config: SessionConfig = SessionConfig()) -> Evaluator:
    """The learner's evaluator: every job ``(weights, users, seed)`` in one lock-step run, metrics per job.

    Args:
        make_agent: weights -> a fresh agent with those re-ranking weights.
        pool: the simulated users.
        catalog, histories: the population (held-out parts for the hit metrics).
        config: turns and page size (its seed is replaced by each job's).

    Returns:
        A function ``jobs -> [metrics per job]`` (:data:`~.learning.Evaluator`).
    """
    def evaluate(jobs: Sequence[Job]) -> list[dict[str, Any]]:
        sizes = np.array([len(u) for _, u, _ in jobs], dtype=np.int64)
        owner = np.repeat(np.arange(len(jobs)), sizes)
        users = np.concatenate([np.asarray(u, dtype=np.int64) for _, u, _ in jobs]) if len(jobs) else \
            np.zeros(0, np.int64)
        seeds = np.repeat(np.array([int(s) for _, _, s in jobs], dtype=np.int64), sizes)
        run = run_sessions(lambda j: make_agent(jobs[owner[j]][0]), pool, histories, users, config, seeds=seeds)
        df = trace_frame(run.rows)
        out = []
        for k in range(len(jobs)):
            part = df[owner[df["session"].to_numpy()] == k] if len(df) else df
            out.append(population_metrics(part, catalog, histories, turns=config.turns))
        return out

    return evaluate


__all__ = ["Evaluation", "evaluate_recommender", "policy_evaluator"]
