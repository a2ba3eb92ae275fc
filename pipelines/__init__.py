"""mmfeat pipelines: manifests, sources, the feature store, Prefect flows and the CLI.

Importing this package changes nothing in the process: the environment defaults the CLI and the
scripts need (Prefect home, telemetry off, a longer server start-up timeout) are applied by
:func:`mmfeat.pipelines.environment.apply_defaults`, which they call before Prefect is imported.
"""
