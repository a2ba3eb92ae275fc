"""Agentic recommendation: simulated users grounded in real data (RecoWorld's user side), an LLM-based
agentic recommender whose tools are the feature store and the trained mmfeat recommenders (LLM-ARS), and the
multi-turn environment that measures and trains it.

Prefect-free and store-free like :mod:`mmfeat.recommenders`: everything here takes arrays and tables
(:class:`~mmfeat.agents.types.Catalog`, :class:`~mmfeat.agents.types.UserHistory`); the joins with manifests,
the store and trained runs live in :mod:`mmfeat.pipelines.simulation`.

- :mod:`.types`: the shared data types (catalog, histories, pages, reactions, trace rows).
- :mod:`.simulator`: profile, learned taste model, mindset, the simulated user, fidelity protocol.
- :mod:`.recommender`: typed tools, instruction parsing, pluggable LLMs, the re-ranking policy, the agent.
- :mod:`.environment`: the seeded session loop, metrics, baselines, policy learning.
"""
