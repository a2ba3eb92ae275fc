"""``mmfeat extract`` (run the extract-features flow locally) and ``mmfeat serve``.

Everything a run can know to be wrong before it starts (an invalid manifest, an unknown feature
set, a mistyped backbone or weights missing here, a missing or escaping data path, a source file
without its required columns) is checked here,
before Prefect is imported, so it is one line and not a failed flow run.
"""

from __future__ import annotations

import argparse
import sys

from mmfeat.pipelines.cli.store import summarize_version


#: what ``mmfeat extract`` leaves when SIGINT / SIGTERM stops it (the ``interrupted`` line says it)
ON_INTERRUPT = "finished shards are kept: the next run resumes from them"


def precheck_manifest(manifest: str, data_root: str | None, feature_sets: list[str] | None = None,
                      read_source: bool = True) -> tuple["Manifest", str]:  # noqa: F821
    """Validate a manifest, check the backbones of the feature sets that would run (a mistyped name, weights
    missing here) and (``read_source``) read its source once; a short description of what was read."""
    from mmfeat.pipelines.manifest import check_backbones, load_manifest

    m = load_manifest(manifest, data_root=data_root)
    for name in feature_sets or []:
        m.feature_set(name)  # ManifestError naming the closest real set
    check_backbones(m, feature_sets)
    if not read_source:
        return m, "source not read"
    from mmfeat.pipelines.engine.extract import load_items

    items, interactions, _fp = load_items(m)
    return m, f"source {m.source.kind}: {items.num_rows} items, {interactions.num_rows} interactions"


def progress_mode(stream: "TextIO | None" = None) -> str:  # noqa: F821
    """A bar on a terminal; log lines (one every 10 s) when stderr is a file or a pipe, where a
    bar's carriage returns would become hundreds of lines."""
    stream = stream if stream is not None else sys.stderr
    return "bar" if getattr(stream, "isatty", lambda: False)() else "log"


def cmd_extract(args: argparse.Namespace) -> int:
    m, _ = precheck_manifest(args.manifest, args.data_root, args.feature_set)
    from mmfeat.pipelines.engine.runners import require_runner, resolve_runner

    require_runner(resolve_runner(m.runner, args.runner, args.runner_address, args.workers))  # before Prefect starts
    from mmfeat.pipelines.cli.prefect_run import run_flow
    from mmfeat.pipelines.flows.extract_flow import extract_features
    from mmfeat.pipelines.engine.progress import quiet_library_bars
    from mmfeat.pipelines.store.feature_store import FeatureStore

    quiet_library_bars()
    result = run_flow(extract_features, args, manifest=args.manifest, feature_sets=args.feature_set or None,
                      store_root=args.store, tag=args.tag, data_root=args.data_root,
                      progress=args.progress or progress_mode(), runner=args.runner,
                      runner_address=args.runner_address, workers=args.workers)
    store = FeatureStore(result["store"])
    for fs in result["feature_sets"]:
        print(summarize_version(store, result["dataset"], fs["feature_set"], fs["version"]))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from mmfeat.pipelines.flows.deployments import main as serve_main

    serve_main()
    return 0


def add_extract_commands(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    ex = sub.add_parser("extract", parents=[common], help="run the extract-features flow locally on a manifest",
                        description="Build (or reuse) one store version per feature set of a manifest, "
                                    "running the extract-features flow in this process (no server needed). "
                                    "The manifest and its data are checked before the flow starts.")
    ex.add_argument("manifest", help="manifest name (manifests/NAME.yaml) or path")
    ex.add_argument("--feature-set", action="append", metavar="NAME", help="only this feature set (repeatable)")
    ex.add_argument("--tag", help="extra alias for the new versions (besides latest)")
    ex.add_argument("--data-root", help="override the manifest's data_root (e.g. a real download)")
    ex.add_argument("--progress", choices=["bar", "log", "none"],
                    help="items done / total and items/s per feature set: a bar (default on a terminal), "
                         "log lines every 10 s (default otherwise), or none")
    ex.add_argument("--runner", choices=["in_process", "dask", "ray"],
                    help="where the shards run (default: the manifest's runner.kind, else in_process): a Dask "
                         "cluster or Ray, through Prefect's task runners; same version as in process")
    ex.add_argument("--runner-address", metavar="ADDR",
                    help="an existing cluster (dask: tcp://host:8786, ray: ray://host:10001 or auto); "
                         "default a temporary local one")
    ex.add_argument("--workers", type=int, metavar="N",
                    help="worker processes of the temporary local cluster (default one per CPU)")
    ex.set_defaults(func=cmd_extract, on_interrupt=ON_INTERRUPT)

    sv = sub.add_parser("serve", parents=[common],
                        help="serve the Prefect deployments (extract-features/*, train-recommender/*)",
                        description="Register and serve the deployments; needs a running Prefect server "
                                    "(`prefect server start`).")
    sv.set_defaults(func=cmd_serve)
