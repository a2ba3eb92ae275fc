"""Prefect flows and deployments: the orchestration layer over the engine and the training runs.

One job: turn :mod:`mmfeat.pipelines.engine` and :mod:`mmfeat.pipelines.training` into Prefect flows (tasks,
retries, logs, artifacts) and serve them as deployments.

Public names (from their modules; importing this package does not import Prefect):

- :mod:`.extract_flow`: ``extract_features`` (the ``extract-features/<manifest>`` deployments).
- :mod:`.train_flow`: ``train_recommender`` (the ``train-recommender/<manifest>`` deployments).
- :mod:`.deployments`: ``python -m mmfeat.pipelines.flows.deployments`` serves them all.
"""
