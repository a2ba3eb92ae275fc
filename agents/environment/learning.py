"""Learning the agent's re-ranking weights (:class:`~mmfeat.agents.recommender.PolicyWeights`) from simulated
sessions: REINFORCE with a Gaussian policy over the weight vector, reward = retention.

Why a Gaussian over the *weights* (parameter-space REINFORCE, as in PGPE and evolution strategies) rather than
over each page: retention is a session-level outcome of ten correlated pages, and a page-level
Plackett-Luce gradient must credit one return to ~100 sampled slot choices, which needs far more sessions than
two CPU cores play in minutes. A weight vector ``w ~ N(mu, sigma^2 I)`` is one action per session batch; its
score function is ``(w - mu) / sigma^2``, so the REINFORCE gradient of the expected return is
``E[R(w) (w - mu)] / sigma^2``. Each iteration draws ``pairs`` antithetic pairs ``mu +/- sigma * eps`` and plays
every candidate on the *same* training users with the *same* session seeds (common random numbers): the pair
difference ``R(mu + sigma eps) - R(mu - sigma eps)`` is the baseline-corrected return (the mirrored sample is
the baseline), and the simulator's noise cancels within a pair. Returns are standardised over the iteration's
candidates (so the step size does not depend on the reward's scale) and ``mu`` takes a plain gradient step.

What is reported and selected: after each update, ``mu`` is played on a fixed set of training users (the
*train* curve) and on *held-out* users never used for an update (the *held-out* curve), both on fixed seeds.
The learned weights are ``mu`` at the iteration with the best train retention (selection never sees held-out
users); hit rate and instruction following are reported alongside as constraints, not optimised.

Reference:
    Williams, "Simple statistical gradient-following algorithms for connectionist reinforcement learning",
    Machine Learning 1992 (REINFORCE); Sehnke et al., "Parameter-exploring policy gradients", Neural Networks
    2010 (PGPE, symmetric sampling); Salimans et al., "Evolution strategies as a scalable alternative to
    reinforcement learning", 2017 (antithetic sampling, fitness standardisation); RecoWorld (Meta, 2025):
    multi-turn RL of the recommender for retention.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mmfeat.agents.recommender.policy import FEATURES, PolicyWeights

#: one evaluation job: play ``weights`` on ``users`` with session seed ``seed``
Job = tuple[PolicyWeights, np.ndarray, int]
#: plays jobs (ideally in one lock-step run) and returns one metrics dict per job, each with ``retention``
Evaluator = Callable[[Sequence[Job]], list[dict[str, Any]]]


@dataclass(frozen=True)
class LearningConfig:
    """Hyper-parameters of the learner.

    Attributes:
        iterations: updates of ``mu``.
        pairs: antithetic pairs per iteration (``2 * pairs`` candidates).
        sigma: standard deviation of the Gaussian over weights.
        lr: step size on the standardised gradient (weight units per iteration, roughly).
        batch_users: training users each candidate is played on per iteration.
        bound: weights are clipped to ``[-bound, bound]``.
        seed: draws the batches and the perturbations; session seeds derive from it.
    """

    iterations: int = 8
    pairs: int = 4
    sigma: float = 0.3
    lr: float = 0.4
    batch_users: int = 64
    bound: float = 5.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.iterations < 0 or self.pairs < 1 or self.sigma <= 0 or self.batch_users < 1:
            raise ValueError("need iterations >= 0, pairs >= 1, sigma > 0, batch_users >= 1")


@dataclass
class LearningResult:
    """The learning curve and the weights.

    Attributes:
        initial: the starting (hand-set) weights.
        learned: ``mu`` at the best train retention.
        best_iteration: where ``learned`` comes from (0 = the initial weights).
        curve: per iteration (0 = before any update): ``mu``, train and held-out metrics of ``mu``, the mean
            candidate reward, seconds.
        config: the learner's config.
        train_users, heldout_users: how many users each curve is measured on.
    """

    initial: PolicyWeights
    learned: PolicyWeights
    best_iteration: int
    curve: list[dict[str, Any]] = field(default_factory=list)
    config: LearningConfig = field(default_factory=LearningConfig)
    train_users: int = 0
    heldout_users: int = 0

    def as_dict(self) -> dict[str, Any]:
        """JSON-able (run records, benchmark logs)."""
        return {"initial": asdict(self.initial), "learned": asdict(self.learned), "best_iteration": self.best_iteration,
                "config": asdict(self.config), "train_users": self.train_users, "heldout_users": self.heldout_users,
                "curve": self.curve}


def _pick(m: dict[str, Any]) -> dict[str, Any]:
    keys = ("retention", "hit_rate", "instruction_following", "clicks_per_session")
    return {k: (round(float(m[k]), 4) if m.get(k) is not None and np.isfinite(m[k]) else None) for k in keys}


def learn_policy(evaluate: Evaluator, train_users: np.ndarray, heldout_users: np.ndarray,
                 initial: PolicyWeights = PolicyWeights(), config: LearningConfig = LearningConfig(), *,
                 train_eval_users: np.ndarray | None = None,
                 log: Callable[[str], None] | None = None) -> LearningResult:
    """Learn policy weights on ``train_users``; report retention on ``heldout_users`` per iteration.

    Args:
        evaluate: plays jobs and returns metrics per job (:func:`mmfeat.agents.environment.policy_evaluator`).
        train_users: users the updates are computed on.
        heldout_users: users only ever evaluated (the held-out curve), never used for an update or selection.
        initial: the starting weights (the hand-set ones).
        config: the learner's hyper-parameters.
        train_eval_users: fixed training users for the train curve (default: up to 200 of ``train_users``).
        log: receives one line per iteration.

    Returns:
        :class:`LearningResult`.

    Raises:
        ValueError: overlapping train and held-out users, or no training user.

    Example:
        >>> result = learn_policy(policy_evaluator(...), train, heldout, PolicyWeights(),
        ...                       LearningConfig(iterations=8))                       # doctest: +SKIP
        >>> result.learned, result.curve[-1]["heldout"]["retention"]                 # doctest: +SKIP
    """
    train_users = np.asarray(train_users, dtype=np.int64)
    heldout_users = np.asarray(heldout_users, dtype=np.int64)
    if len(train_users) == 0:
        raise ValueError("no training user to learn on")
    if np.intersect1d(train_users, heldout_users).size:
        raise ValueError("train and held-out users overlap: held-out users must never be trained on")
    rng = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(0xC0FFEE,)))
    if train_eval_users is None:
        train_eval_users = np.sort(rng.choice(train_users, size=min(200, len(train_users)), replace=False))
    eval_seed = int(rng.integers(2**31 - 1))
    mu = initial.as_array()
    curve: list[dict[str, Any]] = []
    best, best_it, best_mu = -np.inf, 0, mu.copy()
    batch_n = min(config.batch_users, len(train_users))
    for it in range(config.iterations + 1):
        t0 = time.perf_counter()
        jobs: list[Job] = [(PolicyWeights.from_array(mu), train_eval_users, eval_seed)]
        if len(heldout_users):
            jobs.append((PolicyWeights.from_array(mu), heldout_users, eval_seed))
        n_eval = len(jobs)
        cands = eps = None
        if it < config.iterations:
            batch = np.sort(rng.choice(train_users, size=batch_n, replace=False))
            eps = rng.standard_normal((config.pairs, len(FEATURES)))
            cands = np.concatenate([mu + config.sigma * eps, mu - config.sigma * eps])
            cands = np.clip(cands, -config.bound, config.bound)
            seed = int(rng.integers(2**31 - 1))
            jobs += [(PolicyWeights.from_array(w), batch, seed) for w in cands]
        results = evaluate(jobs)
        train_m, held_m = results[0], (results[1] if len(heldout_users) else {})
        row: dict[str, Any] = {"iteration": it, "weights": dict(zip(FEATURES, np.round(mu, 4).tolist(), strict=True)),
                               "train": _pick(train_m), "heldout": _pick(held_m) if held_m else {}}
        if float(train_m["retention"]) > best:
            best, best_it, best_mu = float(train_m["retention"]), it, mu.copy()
        if cands is not None:
            rewards = np.array([float(m["retention"]) for m in results[n_eval:]])
            r_plus, r_minus = rewards[:config.pairs], rewards[config.pairs:]
            scale = rewards.std()
            grad = ((r_plus - r_minus)[:, None] * eps).sum(axis=0) / (2 * config.pairs)
            step = config.lr * grad / scale if scale > 0 else np.zeros_like(mu)
            mu = np.clip(mu + step, -config.bound, config.bound)
            row.update(candidate_retention=round(float(rewards.mean()), 4),
                       candidate_spread=round(float(scale), 4), step=np.round(step, 4).tolist())
        row["seconds"] = round(time.perf_counter() - t0, 2)
        curve.append(row)
        if log is not None:
            held = row["heldout"].get("retention") if row["heldout"] else None
            log(f"iteration {it}: train retention {row['train']['retention']}, held-out {held}, "
                f"weights {row['weights']} ({row['seconds']} s)")
    return LearningResult(initial, PolicyWeights.from_array(best_mu), best_it, curve, config,
                          int(len(train_eval_users)), int(len(heldout_users)))


def plot_learning_curve(result: LearningResult, path: str | Path, *, baselines: dict[str, float] | None = None,
                        title: str = "Retention while learning the agent's policy weights") -> Path:
    """The learning curve as a PNG: retention of ``mu`` per iteration on train and held-out users, with the
    hand-set level and optional baselines (name -> retention) as horizontal lines.

    Returns:
        The written path.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    its = [r["iteration"] for r in result.curve]
    train = [r["train"].get("retention") for r in result.curve]
    held = [r["heldout"].get("retention") if r["heldout"] else None for r in result.curve]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    ax.plot(its, train, "o-", label=f"train users (n={result.train_users})")
    if any(h is not None for h in held):
        ax.plot(its, held, "s-", label=f"held-out users (n={result.heldout_users})")
    cand = [r.get("candidate_retention") for r in result.curve]
    if any(c is not None for c in cand):
        ax.plot(its, cand, ":", color="grey", label="candidates (train batch, mean)")
    ax.axvline(result.best_iteration, color="green", alpha=0.3, lw=6, label="selected (best train)")
    for k, (name, value) in enumerate((baselines or {}).items()):
        ax.axhline(value, ls="--", lw=1, color=f"C{k + 3}", label=name)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("iteration")
    ax.set_ylabel("retention (pages per session)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


__all__ = ["LearningConfig", "LearningResult", "learn_policy", "plot_learning_curve", "Job", "Evaluator"]
