"""The extraction engine, without Prefect: a manifest's feature sets become store versions.

One job: plan each item's input, reuse what the store has, compute the rest shard by shard (in process or on
Dask/Ray workers), and publish. The flows in :mod:`mmfeat.pipelines.flows` wrap it; tests, notebooks and
benchmarks run it directly.

Public names (import them from their modules; this package imports nothing, so ``import`` stays cheap):

- :mod:`.extract`: ``extract_manifest``, ``run_feature_set``, ``load_items``, ``FeatureSetJob``,
  ``FeatureSetReport``, ``FeatureSetFailed``.
- :mod:`.plan`: ``plan_inputs``, ``request_key`` (each item's input and content hash; the cache key),
  ``work_key`` (the same without where the inputs came from: equal work across feature sets).
- :mod:`.featurizer_choice`: the featurizer a feature set runs, or its fallback.
- :mod:`.reuse`: work found done instead of computed (another feature set's equal work, a fully staged run).
- :mod:`.shards`: ``ShardWork`` (one shard's work as plain data); :mod:`.runners`: Dask / Ray task runners.
- :mod:`.progress`: progress a person sees (bars, log lines; the flows add Prefect progress artifacts).
- :mod:`.codes_job`: set-level feature sets (semantic IDs) as one job.
"""
