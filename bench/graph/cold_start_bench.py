"""Cold-start items on MovieLens: which store feature versions help new items most, and by how much content beats IDs.

    python bench/graph/cold_start_bench.py --dataset ml-100k --epochs 30

Protocol: the manifest's interactions (ratings >= 4, 5-core), ``--split cold`` (a seeded 20% of the movies never
appear in train: 10% are validation items, 10% test items), each evaluation ranking only its split's cold items
(full ranking among them, MMRec metrics @20), early stopping on validation Recall@20, test reported at the
selected epoch. Every run goes through :func:`mmfeat.pipelines.training.run.run_training` (the path of
``mmfeat train``), reading store versions of the manifest's feature sets:

* ``title_minilm`` (title only), ``genres_minilm`` (genres only), ``text_minilm`` (title + year + genres), all
  all-MiniLM-L6-v2; and the two one-field versions as two roles at once (text = title, image = genres);
* models: ItemKNNCBF (content only, closed-form), VBPR, FREEDOM and LATTICE (content + IDs), LightGCN (IDs only,
  the chance baseline: its cold items keep their initial embeddings).

One fresh process per run, ``--threads`` torch threads (default 2). Prints a markdown table and appends it
(with this command) to bench/graph/RESULTS_cold_start.md.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / "bench" / "_work" / "cold_start"
RESULTS = Path(__file__).resolve().with_name("RESULTS_cold_start.md")
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

MANIFESTS = {"ml-100k": "movielens-100k", "ml-1m": "movielens-1m"}
FEATURE_SETS = ["title_minilm", "genres_minilm", "text_minilm"]
ARMS = {"title": {"text": "title_minilm"}, "genres": {"text": "genres_minilm"},
        "title+year+genres": {"text": "text_minilm"},
        "title & genres (2 roles)": {"text": "title_minilm", "image": "genres_minilm"}}
CONTENT_MODELS = ["ItemKNNCBF", "VBPR", "FREEDOM", "LATTICE"]
METRICS = ["recall@20", "ndcg@20"]


def _env(threads: int) -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(threads)}


def extract(dataset: str) -> dict[str, str]:
    """The feature versions (a cache hit when already built); feature set -> version id."""
    from mmfeat.pipelines.environment import apply_defaults

    apply_defaults()
    from mmfeat.pipelines.engine.extract import extract_manifest
    from mmfeat.pipelines.manifest import load_manifest
    from mmfeat.pipelines.store.feature_store import FeatureStore

    m = load_manifest(MANIFESTS[dataset])
    reports = extract_manifest(m, store=FeatureStore(WORK / "store"), feature_sets=FEATURE_SETS)
    return {r.feature_set: r.version for r in reports}


def worker(spec: dict) -> dict:
    import torch

    torch.set_num_threads(int(spec["threads"]))
    from mmfeat.pipelines.environment import apply_defaults

    apply_defaults()
    from mmfeat.pipelines.training.run import run_training

    out = run_training(MANIFESTS[spec["dataset"]], model=spec["model"], features=spec["features"],
                       overrides=spec["config"], split="cold", min_rating=4, k_core=5,
                       store_root=str(WORK / "store"), runs_dir=str(WORK / "runs"), progress=False)
    rec = out["best"]
    return {"test": rec["test"], "valid": rec["best_valid"], "epochs": len(rec["epochs"]),
            "s_per_epoch": rec["s_per_epoch"], "cold": rec["data"].get("cold_start", {}),
            "split_hash": rec["data"]["split_hash"]}


def run_one(spec: dict) -> dict:
    t = time.time()
    from _results import run_json_worker

    r = run_json_worker(__file__, spec, _env(spec["threads"]), ROOT)
    print(f"  {spec['model']:10s} {spec['arm']:26s} test R@20 {r['test']['recall@20']:.4f} "
          f"N@20 {r['test']['ndcg@20']:.4f} ({time.time() - t:.0f} s)", flush=True)
    return r


def main() -> None:
    from _results import append_results

    ap = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n")[0])
    ap.add_argument("mode", nargs="?", default="run", choices=["run", "_worker"])
    ap.add_argument("spec", nargs="?")
    ap.add_argument("--dataset", choices=sorted(MANIFESTS), default="ml-100k")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--models", nargs="+", default=CONTENT_MODELS)
    ap.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if args.mode == "_worker":
        print(json.dumps(worker(json.loads(args.spec))))
        return
    command = "python bench/graph/cold_start_bench.py " + " ".join(sys.argv[1:])
    WORK.mkdir(parents=True, exist_ok=True)
    versions = extract(args.dataset)
    print("versions:", versions, flush=True)
    budget = {"epochs": args.epochs, "learning_rate": 0.01, "stopping_step": 5}
    runs = [("LightGCN", "IDs only", {})]
    runs += [(m, arm, ARMS[arm]) for m in args.models for arm in args.arms]
    rows, hashes = [], set()
    for model, arm, feats in runs:
        cfg = {} if model == "ItemKNNCBF" else dict(budget)
        r = run_one({"dataset": args.dataset, "model": model, "arm": arm, "features": feats, "config": cfg,
                     "threads": args.threads})
        hashes.add(r["split_hash"])
        rows.append((model, arm, feats, r))
    assert len(hashes) == 1, f"runs saw different splits: {hashes}"
    cold = rows[0][3]["cold"].get("candidates", {})
    lines = [f"{args.dataset.upper()}, ratings >= 4, 5-core, cold split (seed 2024; split {hashes.pop()[:12]}): "
             f"{cold.get('valid')} validation and {cold.get('test')} test items never in train, each split ranking "
             f"only its cold items. {args.epochs} epochs max, learning rate 0.01, early stopping (5) on valid "
             f"Recall@20; {args.threads} torch thread(s).", "",
             "| model | item content (store versions) | valid R@20 | test R@20 | test N@20 | epochs |",
             "|---|---|---|---|---|---|"]
    for model, arm, feats, r in rows:
        names = ", ".join(f"{role}={fs}@{versions.get(fs, '?')[:8]}" for role, fs in feats.items()) or "-"
        lines.append(f"| {model} | {arm} ({names}) | {r['valid']['recall@20']:.4f} | {r['test']['recall@20']:.4f} | "
                     f"{r['test']['ndcg@20']:.4f} | {r['epochs']} |")
    best = {}
    for model, arm, _, r in rows[1:]:
        best.setdefault(arm, []).append(r["test"]["recall@20"])
    lines += ["", "Mean test Recall@20 over the content models, per content: " + ", ".join(
        f"{arm} {sum(v) / len(v):.4f}" for arm, v in sorted(best.items(), key=lambda kv: -sum(kv[1]) / len(kv[1])))
        + f"; IDs only (LightGCN) {rows[0][3]['test']['recall@20']:.4f}."]
    body = "\n".join(lines)
    print(body)
    append_results(RESULTS, "Cold-start benchmark log", f"cold split, {args.dataset}", command, body)


if __name__ == "__main__":
    main()
