"""The ``simulate-sessions`` Prefect flow and its deployments.

:func:`mmfeat.pipelines.simulation.sessions.run_simulation` does the work (Prefect-free: population, simulated
users, recommender, sessions, metrics, trace in the store, run record); the flow adds its progress lines to the
flow run's log and a markdown artifact of the metrics table.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from mmfeat.defaults import DEFAULT_SEED

#: deployment name -> default parameters (``simulate-sessions/<name>``)
SIMULATE_DEPLOYMENTS: dict[str, dict[str, Any]] = {
    # the agent over LightGCN (trained in the simulation on the users' visible histories), 1,000 users of
    # MovieLens-100K (all 754 it has outside the calibration users), 20 pages of 10 at most, the deterministic parser
    "movielens-100k": {"manifest": "movielens-100k", "agent": "agent", "base_model": "LightGCN",
                       "base_config": {"epochs": 30}, "population": 1000, "turns": 20, "page_size": 10,
                       "llm": "none"},
}


@flow(name="simulate-sessions", log_prints=True)
def simulate_sessions(
    manifest: str = "movielens-100k",
    agent: str = "agent",
    base_model: str | None = "LightGCN",
    base_run: str | None = None,
    base_config: dict[str, Any] | None = None,
    population: int = 1000,
    segment: str = "all",
    turns: int = 20,
    page_size: int = 10,
    llm: str = "none",
    llm_model: str = "default",
    seed: int | None = None,
    weights: Any = None,
    embeddings: str | None = None,
    store_root: str | None = None,
    runs_dir: str | None = None,
    data_root: str | None = None,
    tag: str | None = None,
    progress_every: int = 100,
) -> dict[str, Any]:
    """Simulate ``population`` users of ``manifest`` in sessions with one recommender (``agent`` | ``static`` |
    ``popularity``); the trace goes to the store (``<dataset>/_sessions``), a run record to ``runs_dir``, the
    metrics table to a Prefect markdown artifact. ``seed`` defaults to :data:`mmfeat.defaults.DEFAULT_SEED`.

    Raises:
        mmfeat.pipelines.simulation.sessions.SimulateRequestError: an unknown recommender, segment or LLM spec.
    """
    from mmfeat.pipelines.simulation.sessions import run_simulation

    logger = get_run_logger()
    out = run_simulation(manifest, agent=agent, base_model=base_model, base_run=base_run, base_config=base_config,
                         n_users=population, segment=segment, turns=turns, page_size=page_size, llm=llm,
                         llm_model=llm_model, seed=DEFAULT_SEED if seed is None else seed, weights=weights,
                         embeddings=embeddings, store_root=store_root, runs_dir=runs_dir, data_root=data_root,
                         tag=tag, progress_every=progress_every, logger=logger)
    key = f"simulate-{agent}-{manifest}".lower().replace("_", "-").replace(".", "-").replace("/", "-")
    create_markdown_artifact(key=key, markdown=out["markdown"], description=f"{out['recommender']} on {manifest}")
    return out


def simulate_deployments() -> list:
    """One ``simulate-sessions/<name>`` deployment per entry of :data:`SIMULATE_DEPLOYMENTS`."""
    return [
        simulate_sessions.to_deployment(
            name=name, parameters=params, tags=["mmfeat", "simulate"],
            description=f"Simulate {params['population']} users of {params['manifest']} in sessions of at most "
                        f"{params['turns']} pages with the {params['agent']} over {params['base_model']}; traces to "
                        f"the store ({params['manifest']}'s _sessions), metrics as an artifact")
        for name, params in SIMULATE_DEPLOYMENTS.items()
    ]


__all__ = ["simulate_sessions", "simulate_deployments", "SIMULATE_DEPLOYMENTS"]
