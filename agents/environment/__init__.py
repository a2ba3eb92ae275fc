"""The multi-turn environment: seeded sessions between a recommender and simulated users, the population's
metrics, and learning the agent's re-ranking policy from simulated sessions (RecoWorld's loop).

- :mod:`.users`: the user side as a batched :class:`UserPool` (and an adapter for per-user simulators).
- :mod:`.simulated`: the simulator's :class:`~mmfeat.agents.simulator.SimulatedUser` s as a batched pool
  (one taste-model prediction per turn for every page; imported by name, it loads scikit-learn).
- :mod:`.session`: the seeded lock-step session loop and its trace rows.
- :mod:`.metrics`: retention, engagement, instruction following, hit rate, diversity, coverage, filter bubble.
- :mod:`.learning`: REINFORCE over the policy weights (Gaussian, antithetic, common random numbers), the curve.
- :mod:`.evaluation`: one recommender on a population; the learner's batched evaluator.

Prefect-free and store-free: the joins with manifests, trained runs and the store (and writing traces to it)
live in :mod:`mmfeat.pipelines.simulation`.
"""
from .evaluation import Evaluation, evaluate_recommender, policy_evaluator
from .learning import LearningConfig, LearningResult, learn_policy, plot_learning_curve
from .metrics import TABLE_METRICS, metrics_table, population_metrics, session_lengths, trace_frame
from .session import END_REASONS, SessionConfig, SessionRun, run_sessions, session_rngs, trace_row
from .users import PerUserPool, UserPool

__all__ = ["Evaluation", "evaluate_recommender", "policy_evaluator", "LearningConfig", "LearningResult",
           "learn_policy", "plot_learning_curve", "TABLE_METRICS", "metrics_table", "population_metrics",
           "session_lengths", "trace_frame", "END_REASONS", "SessionConfig", "SessionRun", "run_sessions",
           "session_rngs", "trace_row", "PerUserPool", "UserPool"]
