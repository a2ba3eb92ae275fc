"""MMRecUn-style unlearning (recommenders/unlearning.py) on MovieLens-100K: original vs unlearned vs gold.

    python bench/graph/unlearning_bench.py --epochs 20 --lr 0.01 --kinds interactions items --share 0.05

For each model (LightGCN, FREEDOM; hyper-parameters of bench/graph/mmrec_parity.py MODELS):

1. train the *original* model on the prepared ML-100K split (bench/_work/ml100k, see mmrec_parity.py
   ``prepare``) for exactly ``--epochs`` epochs (no early stopping, so every run costs the same);
2. per forget kind, draw the forget set (``--share`` of the training interactions, or of the items with all
   their interactions), retrain the *gold* model from scratch on the retain data with the same recipe, and
   unlearn the original with reverse + forward BPR (``--unlearn-epochs``, ``--forget-weight``,
   ``--retain-weight``; unset = the UnlearnConfig defaults);
3. report the paper's metrics: Recall/NDCG@20 on the forget set (the forgotten pairs as targets; compare the
   unlearned model with the gold one) and on the retain set (the retained test rows; compare with the
   original), and the unlearning time vs the retraining time (gold: training epochs only, and its wall time
   including model construction and its one validation + one test pass).

Writes the table with the command to bench/graph/RESULTS_unlearning.md (bench/_results.py).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def _fmt(m: dict, split: str, key: str) -> str:
    return f"{m[split][key]:.4f}" if m else "-"


def run(a) -> list[str]:
    import torch

    torch.set_num_threads(a.threads)
    from mmrec_parity import MODELS, load_ours
    from mmfeat.recommenders import train
    from mmfeat.recommenders.unlearning import forget_set, retain_data, unlearn

    data = load_ours(Path(a.data_dir))
    base = {"epochs": a.epochs, "learning_rate": a.lr, "seed": a.seed, "early_stopping": False,
            "eval_step": a.epochs}
    ucfg = {k: v for k, v in {"epochs": a.unlearn_epochs, "forget_weight": a.forget_weight,
                              "retain_weight": a.retain_weight, "learning_rate": a.unlearn_lr,
                              "seed": a.seed, "topk": [20], "metrics": ["recall", "ndcg"]}.items() if v is not None}
    rows = []
    for name in a.models:
        cfg = {**MODELS[name], **base}
        t = time.perf_counter()
        orig = train(data, name, cfg, progress=False)
        print(f"{name}: original trained in {time.perf_counter() - t:.1f}s "
              f"({orig.s_per_epoch:.2f}s/epoch), test R@20 {orig.test['recall@20']:.4f}", flush=True)
        for kind in a.kinds:
            f = forget_set(data, kind, share=a.share, seed=a.forget_seed)
            retained = retain_data(data, f)
            gold = train(retained, name, cfg, progress=False)
            res = unlearn(orig._model, data, f, ucfg, gold=gold._model)
            gold_train_s = sum(e["train_s"] for e in gold.epochs)
            rows.append((name, kind, f, orig, gold, gold_train_s, res))
            print(f"  {kind}: {len(f.pairs)} pairs; forget R@20 orig {res.original['forget']['recall@20']:.4f} "
                  f"unlearned {res.unlearned['forget']['recall@20']:.4f} gold {res.gold['forget']['recall@20']:.4f}; "
                  f"retain R@20 orig {res.original['retain']['recall@20']:.4f} unlearned "
                  f"{res.unlearned['retain']['recall@20']:.4f} gold {res.gold['retain']['recall@20']:.4f}; "
                  f"unlearn {res.unlearn_s:.1f}s vs retrain {gold_train_s:.1f}s ({gold.wall_s:.1f}s wall)", flush=True)
    return table(rows, a, ucfg)


def table(rows, a, ucfg) -> list[str]:
    from mmfeat.recommenders.unlearning import resolve_unlearn_config

    u = resolve_unlearn_config(ucfg)
    lr = "the model's" if u["learning_rate"] is None else u["learning_rate"]
    L = [f"ML-100K (ratings>=4, 5-core, seeded 8:1:1), CPU, {a.threads} thread(s). Original and gold: exactly "
         f"{a.epochs} epochs, learning_rate {a.lr}, seed {a.seed} (no early stopping). "
         f"Unlearning: {u['epochs']} epochs, normalize {u['normalize']}, "
         f"retain_weight {u['retain_weight']}, forget_weight {u['forget_weight']}, learning rate {lr}. Forget set: "
         f"share {a.share} (seed {a.forget_seed}) of the training interactions (`interactions`) or of the items "
         f"with all their training interactions (`items`). Forget = the forgotten pairs as targets; retain = the "
         "retained test rows; both mask only the retain training items. Time: unlearned = rebuild on the retain "
         "graph + fine-tuning; gold = its training epochs (wall incl. build and one valid + test pass in brackets); "
         "original = its training epochs.", "",
         "| model | forget kind | forget pairs | model state | forget R@20 | forget N@20 | retain R@20 | retain N@20 "
         "| time s |", "|---|---|---|---|---|---|---|---|---|"]
    for name, kind, f, orig, gold, gold_train_s, res in rows:
        n = f"{len(f.pairs)}" + (f" ({len(f.items)} items)" if f.items is not None else "")
        orig_s = sum(e["train_s"] for e in orig.epochs)
        for state, m, secs in (("original", res.original, f"{orig_s:.1f}"),
                               ("unlearned", res.unlearned, f"{res.unlearn_s:.1f}"),
                               ("gold (retrained)", res.gold, f"{gold_train_s:.1f} ({gold.wall_s:.1f})")):
            L.append(f"| {name} | {kind} | {n} | {state} | {_fmt(m, 'forget', 'recall@20')} | "
                     f"{_fmt(m, 'forget', 'ndcg@20')} | {_fmt(m, 'retain', 'recall@20')} | "
                     f"{_fmt(m, 'retain', 'ndcg@20')} | {secs} |")
        L.append(f"| {name} | {kind} | | unlearned vs gold / original | "
                 f"{res.unlearned['forget']['recall@20'] - res.gold['forget']['recall@20']:+.4f} vs gold | | "
                 f"{res.unlearned['retain']['recall@20'] - res.original['retain']['recall@20']:+.4f} vs original | | "
                 f"{gold_train_s / res.unlearn_s:.2f}x faster |")
    return L


def main():
    ap = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=["LightGCN", "FREEDOM"])
    ap.add_argument("--kinds", nargs="+", default=["interactions", "items"], choices=["interactions", "items"])
    ap.add_argument("--share", type=float, default=0.05)
    ap.add_argument("--epochs", type=int, default=20, help="original and gold training epochs")
    ap.add_argument("--lr", type=float, default=0.01, help="original and gold learning_rate")
    ap.add_argument("--unlearn-epochs", type=int)
    ap.add_argument("--unlearn-lr", type=float, help="default: the model's learning rate")
    ap.add_argument("--forget-weight", type=float)
    ap.add_argument("--retain-weight", type=float)
    ap.add_argument("--seed", type=int, default=999)
    ap.add_argument("--forget-seed", type=int, default=2024)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data-dir", default=str(ROOT / "bench" / "_work" / "ml100k"))
    ap.add_argument("--results", default=str(Path(__file__).resolve().with_name("RESULTS_unlearning.md")))
    ap.add_argument("--no-write", action="store_true", help="print the table only")
    a = ap.parse_args()
    lines = run(a)
    print("\n".join(lines))
    if not a.no_write:
        from _results import append_results
        cmd = "python bench/graph/unlearning_bench.py " + " ".join(sys.argv[1:])
        append_results(Path(a.results), "Unlearning (MMRecUn-style reverse + forward BPR)",
                       f"ML-100K, {', '.join(a.models)}", cmd.strip(), "\n".join(lines))


if __name__ == "__main__":
    main()
