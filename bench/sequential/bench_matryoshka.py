"""fMRLRec-style Matryoshka training: metrics at every nested size from one training, against separate
trainings of a model of each size, on MovieLens-100K leave-one-out (the split of bench/sequential/recbole_seq_parity.py).

    python bench/sequential/bench_matryoshka.py --hidden 64 --epochs 15 --time-cap 600
    python bench/sequential/bench_matryoshka.py --hidden 64 --epochs 15 --time-cap 600 \
        --train-mode last --batch-size 32 --batch-unit samples

One training with sizes (8, 16, ..., hidden) gives ``sub_models`` metrics at every size; each separate
training is the same model with ``hidden_size = mrl_sizes = [s]``. Same epochs, seed, data and
hyper-parameters (the reference's except ``hidden`` (reference 1024), the learning rate (1e-3; the reference's
1e-4 needs hundreds of epochs) and, by default, the samples (``window``: every train target per epoch, batches
of 2048 targets); the second command batches as the reference does (32 users, each user's newest window with
every target in it, the model's defaults). Items are ID embeddings
(MovieLens ships no item images; the reference projects text + image features). Prints a markdown table
(test hit@10 / ndcg@10 per size for both, and the training cost: one Matryoshka training vs the sum of
the separate ones) and appends it to bench/sequential/RESULTS_sequential.md.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def main() -> None:
    import pandas as pd
    import torch

    from recbole_seq_parity import append_results, prepare

    from mmfeat.recommenders import fit
    from mmfeat.recommenders.sequential import from_loo_frame
    from mmfeat.recommenders.sequential.fmrlrec import nested_sizes

    ap = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n\n")[0])
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--learning-rate", type=float, default=1e-3)
    ap.add_argument("--train-mode", default="window", help="fMRLRec's reference trains on one window per user "
                    "(last); window covers every train target per epoch")
    ap.add_argument("--batch-size", type=int, default=2048, help="train_batch_size, in --batch-unit")
    ap.add_argument("--batch-unit", default="targets", choices=["targets", "samples"],
                    help="what --batch-size counts (fMRLRec's reference: 32 samples = users with train-mode last)")
    ap.add_argument("--time-cap", type=float, default=1200, help="seconds; separate trainings stop being started")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = from_loo_frame(pd.read_parquet(prepare("ml-100k", None, 0) / "split.parquet"))
    base = {"epochs": args.epochs, "seed": args.seed, "learning_rate": args.learning_rate,
            "stopping_step": args.epochs, "train_mode": args.train_mode, "train_batch_size": args.batch_size,
            "train_batch_unit": args.batch_unit}
    sizes = nested_sizes(args.hidden, None)
    t0 = time.perf_counter()
    joint = fit(data, "fMRLRec", {**base, "hidden_size": args.hidden}, progress=False)
    joint_s = time.perf_counter() - t0
    per_size = {f"d{s}": sub["test"] for s, sub in zip(sizes, joint.sub_models.values())}
    per_size[f"d{args.hidden}"] = joint.test
    separate, separate_s, started = {}, {}, time.perf_counter()
    for s in sizes:
        if time.perf_counter() - started > args.time_cap:
            break
        t1 = time.perf_counter()
        rec = fit(data, "fMRLRec", {**base, "hidden_size": s, "mrl_sizes": [s]}, progress=False)
        separate[f"d{s}"], separate_s[f"d{s}"] = rec.test, time.perf_counter() - t1
    lines = ["| size | Matryoshka (one training) hit@10 | ndcg@10 | separate training hit@10 | ndcg@10 | "
             "separate training s |", "|---|---|---|---|---|---|"]
    for name, t in per_size.items():
        sep = separate.get(name, {})
        lines.append(f"| {name} | {t['hit@10']:.4f} | {t['ndcg@10']:.4f} | {sep.get('hit@10', float('nan')):.4f} | "
                     f"{sep.get('ndcg@10', float('nan')):.4f} | {separate_s.get(name, float('nan')):.1f} |")
    total = sum(separate_s.values())
    lines.append(f"\nOne Matryoshka training: {joint_s:.1f} s ({joint.s_per_epoch:.2f} s/epoch, best epoch "
                 f"{joint.best_epoch}); separate trainings of the {len(separate_s)} sizes: {total:.1f} s "
                 f"(ratio {joint_s / total:.2f}x).")
    body = "\n".join(lines)
    print(body)
    append_results(f"fMRLRec Matryoshka sizes: ML-100K, hidden {args.hidden}, {args.epochs} epochs, "
                   f"{args.train_mode} samples, batches of {args.batch_size} {args.batch_unit}",
                   "python bench/sequential/bench_matryoshka.py " + " ".join(sys.argv[1:]), body)


if __name__ == "__main__":
    main()
