"""Serve the deployments (``python -m mmfeat.pipelines.deployments``).

``flow.serve``/``prefect.serve`` registers deployments with the server and runs their flow runs in
this process (no work pool needed), which is what a single-machine feature factory wants.
"""

from __future__ import annotations

import sys

from prefect import serve

#: deployment name -> (flow, default parameters)
EXTRACT_DEPLOYMENTS = {
    "microlens": {"manifest": "microlens"},
    "movielens-100k": {"manifest": "movielens-100k"},
}


def deployments() -> list:
    from mmfeat.pipelines.flows import extract_features
    from mmfeat.pipelines.manifest import load_manifest

    out = [
        extract_features.to_deployment(
            name=name, parameters=params, tags=["mmfeat", "extract"],
            description=load_manifest(params["manifest"]).description or f"Extract features for the {name} manifest")
        for name, params in EXTRACT_DEPLOYMENTS.items()
    ]
    from mmfeat.pipelines.train_flow import train_deployments

    return out + train_deployments()


def main() -> None:
    deps = deployments()
    print(f"serving {len(deps)} deployments: " + ", ".join(d.flow_name + "/" + d.name for d in deps), file=sys.stderr)
    serve(*deps, limit=1)


if __name__ == "__main__":
    main()
