"""In process vs Dask (1 and 2 workers) vs Ray (2 workers): the extract-features flow on MovieLens-1M.

Each configuration runs the real flow (temporary Prefect server, real MiniLM) in a fresh process on an
empty store, over the manifest's three text feature sets (3,883 movies each: 11,649 texts), with small
shards so every worker gets several. Reported: wall time of the flow (cluster start-up included, which is
what a user waits for), items/s on that wall time, the ratio to in process, the sum of the shards' compute
seconds (the cluster's busy time), and whether every version id equals the in-process run's.

    python bench/features/runner_bench.py                       # all configurations, table to bench/features/RESULTS_runners.md
    python bench/features/runner_bench.py --shard-size 512 --configs in_process dask:2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

from _results import append_results, run_json_worker  # noqa: E402

FEATURE_SETS = ["text_minilm", "title_minilm", "genres_minilm"]


def worker(spec: dict) -> dict:
    """One configuration in this process: run the flow, return its timings and versions."""
    import yaml

    from mmfeat.pipelines.environment import apply_defaults

    apply_defaults(Path(spec["home"]))
    from mmfeat.pipelines.flows.extract_flow import extract_features
    from mmfeat.pipelines.manifest import load_manifest

    raw = yaml.safe_load(load_manifest(spec["manifest"]).path.read_text())
    raw["shard_size"] = spec["shard_size"]
    raw["feature_sets"] = [fs for fs in raw["feature_sets"] if fs["name"] in FEATURE_SETS]
    path = Path(spec["home"]) / "manifest.yaml"
    path.write_text(yaml.safe_dump(raw))
    kind, _, workers = spec["config"].partition(":")
    t0 = time.perf_counter()
    out = extract_features(manifest=str(path), store_root=str(Path(spec["home"]) / "store"), progress="none",
                           runner=kind, workers=int(workers) if workers else None)
    wall = time.perf_counter() - t0
    reports = out["feature_sets"]
    return {"config": spec["config"], "wall_s": wall, "items": sum(r["computed"] for r in reports),
            "compute_s": sum(r["seconds"] for r in reports),
            "versions": {r["feature_set"]: r["version"] for r in reports}}


def main() -> None:
    ap = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    ap.add_argument("--manifest", default="movielens-1m")
    ap.add_argument("--shard-size", type=int, default=512)
    ap.add_argument("--configs", nargs="+", default=["in_process", "dask:1", "dask:2", "ray:2"])
    ap.add_argument("--out", default=str(Path(__file__).resolve().with_name("RESULTS_runners.md")))
    args = ap.parse_args()
    results = []
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    for config in args.configs:
        with tempfile.TemporaryDirectory(prefix="mmfeat-runner-bench-") as home:
            spec = {"config": config, "manifest": args.manifest, "shard_size": args.shard_size, "home": home}
            res = run_json_worker(__file__, spec, env, cwd=home)
        print(json.dumps(res), flush=True)
        results.append(res)
    base = next((r for r in results if r["config"] == "in_process"), results[0])
    lines = ["| runner | wall s | items/s (wall) | vs in process | shard compute s (sum) | same versions |",
             "|---|---:|---:|---:|---:|---|"]
    for r in results:
        ips = r["items"] / r["wall_s"]
        lines.append(f"| {r['config']} | {r['wall_s']:.1f} | {ips:.0f} | {base['wall_s'] / r['wall_s']:.2f}x | "
                     f"{r['compute_s']:.1f} | {'yes' if r['versions'] == base['versions'] else 'NO'} |")
    table = "\n".join(lines)
    print(table)
    cmd = "python bench/features/runner_bench.py " + " ".join(sys.argv[1:])
    append_results(Path(args.out), "Runners: in process vs Dask vs Ray", f"{args.manifest}, {args.shard_size}-item shards",
                   cmd.strip(), table)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "_worker":
        print(json.dumps(worker(json.loads(sys.argv[2]))))
    else:
        main()
