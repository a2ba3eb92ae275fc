"""Serve the deployments (``python -m mmfeat.pipelines.flows.deployments``).

A Prefect runner (what ``prefect.serve`` uses) registers the deployments with the server and runs their
flow runs from this process (no work pool needed), which is what a single-machine feature factory wants.

Stopping: SIGTERM or SIGINT (Ctrl-C) stops the runner in well under a second, quietly. Unlike
``prefect.serve`` it does not pause the deployments on the way out: a paused deployment looks broken
to the next ``prefect deployment run``, and pausing needs the server, which may already be stopping.
Stop this process before the server (``scripts/demo.sh`` does).
"""

from __future__ import annotations

import asyncio
import signal
import sys

#: deployment name -> (flow, default parameters)
EXTRACT_DEPLOYMENTS = {
    "microlens": {"manifest": "microlens"},
    "movielens-100k": {"manifest": "movielens-100k"},
    "movielens-1m": {"manifest": "movielens-1m"},
}


def deployments() -> list:
    """extract-features/<name> for each manifest of EXTRACT_DEPLOYMENTS, then the train-recommender and
    simulate-sessions ones."""
    from mmfeat.pipelines.flows.extract_flow import extract_features
    from mmfeat.pipelines.manifest import load_manifest

    out = [
        extract_features.to_deployment(
            name=name, parameters=params, tags=["mmfeat", "extract"],
            description=load_manifest(params["manifest"]).description or f"Extract features for the {name} manifest")
        for name, params in EXTRACT_DEPLOYMENTS.items()
    ]
    from mmfeat.pipelines.flows.simulate_flow import simulate_deployments
    from mmfeat.pipelines.flows.train_flow import train_deployments

    return out + train_deployments() + simulate_deployments()


def build_runner(deps: list) -> "Runner":  # noqa: F821
    """A Prefect runner serving ``deps`` one flow run at a time that does not pause them when it stops.

    What ``prefect.serve`` builds, minus two shutdown problems: its default ``pause_on_shutdown=True``
    leaves every deployment paused (and needs the server while stopping), and its SIGTERM handler
    calls an async ``stop`` without awaiting it (``RuntimeWarning: coroutine 'Runner.astop' was never
    awaited`` in the log). See :func:`stop_on_signals`.
    """
    from prefect.runner import Runner

    runner = Runner(limit=1, pause_on_shutdown=False)
    for dep in deps:
        runner.add_deployment(dep)
    stop_on_signals(runner)
    return runner


def stop_on_signals(runner: "Runner") -> None:  # noqa: F821
    """SIGINT and SIGTERM both stop ``runner`` through asyncio's Ctrl-C path (the main task is cancelled,
    the runner's context exits, ``asyncio.run`` raises KeyboardInterrupt).

    SIGINT gets Python's default handler back because a background job of a shell script starts with
    SIGINT ignored; the runner installs ``runner.handle_sigterm`` for SIGTERM when it starts, so that
    becomes "raise SIGINT".
    """
    signal.signal(signal.SIGINT, signal.default_int_handler)
    runner.handle_sigterm = lambda *_args: signal.raise_signal(signal.SIGINT)


def require_server() -> str:
    """The Prefect API URL deployments will be registered with.

    Without one, Prefect would start a temporary server inside this process: the deployments would be
    served where no ``prefect deployment run`` can reach them, and vanish with it.

    Raises:
        SystemExit: (code 2) no ``PREFECT_API_URL``, with what to do.
    """
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if not url:
        print("error: PREFECT_API_URL is not set: start a server (`prefect server start`) and "
              "`export PREFECT_API_URL=http://127.0.0.1:4200/api` first", file=sys.stderr)
        raise SystemExit(2)
    return url


def main() -> None:
    """Register and serve every deployment until SIGTERM / SIGINT; says so on stderr when it stops."""
    url = require_server()
    deps = deployments()
    names = ", ".join(d.flow_name + "/" + d.name for d in deps)
    runner = build_runner(deps)
    print(f"serving {len(deps)} deployments: {names} (server {url}; prefect deployment run NAME)",
          file=sys.stderr, flush=True)
    try:
        asyncio.run(runner.start())
    except KeyboardInterrupt:
        pass
    print("deployment runner stopped", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
