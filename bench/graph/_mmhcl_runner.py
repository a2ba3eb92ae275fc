"""Run the authors' MMHCL (github Xu107/MMHCL, a /tmp checkout, never vendored) on our prepared ML-100K files,
next to ours, and parse its per-epoch time and final metrics.

    python bench/graph/_mmhcl_runner.py --ref /tmp/mmhcl_ref --epochs 2 --seed 999 [--params '{"knn_k": 5}'] [--ours]

Why a converter: the reference is LATTICE/MMSSL-style, not MMRec. It reads
``<data_path>/<dataset>/5-core/{train,val,test}.json`` (user id -> list of item ids) and
``../data/<dataset>/{image,text}_feat.npy`` relative to its ``codes/`` folder, and builds the item hypergraph
only for the dataset names Tiktok (three modalities) or Clothing/Sports (two) -- any other name leaves
``Item_mat`` undefined. So our ``ml100k.inter`` (x_label 0/1/2) is written as JSON under a fresh work folder
named ``Sports`` (the two-modality branch; nothing else depends on the name), with valid/test rows of users
without train rows dropped as our loader (MMRec's ``filter_out_cod_start_users``) does.

Shims (in a launcher that then runs ``main.py`` unchanged with ``runpy``): ``.cuda()`` is a no-op when no
GPU is present (the reference calls it unconditionally); ``np.asfarray`` (removed in numpy 2, used by its
metrics); ``multiprocessing.Pool`` -> a serial map (it asks for ``cpu_count() // 5`` processes, 0 on a
machine with < 5 cores, which raises). The reference validates every ``--verbose`` epochs; the runner sets
it to ``eval_step`` (default: every epoch) so that a short run still produces metrics.

Protocol differences that remain (the reference's own, not shimmed): it samples ``batch_size`` distinct users
per batch (one positive, one negative from all items), ``n_train // batch_size + 1`` batches per epoch; its
NDCG normalizes by the ideal DCG of the *retrieved* hits (LATTICE's metrics.py), not of the user's test
items, so its NDCG is not comparable to ours (recall is).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

DATASET = "Sports"  # the reference's two-modality code path
# our key -> the reference's argparse flag (parser.py)
FLAGS = {"embedding_size": "embed_size", "learning_rate": "lr", "train_batch_size": "batch_size",
         "reg_weight": "regs", "knn_k": "topk", "n_ui_layers": "UI_layers", "n_user_layers": "User_layers",
         "n_item_layers": "Item_layers", "user_cl_weight": "user_loss_ratio", "item_cl_weight": "item_loss_ratio",
         "temperature": "temperature", "cf_model": "cf_model", "stopping_step": "early_stopping_patience"}
CF_NAMES = {"lightgcn": "LightGCN", "ngcf": "NGCF", "mf": "MF"}

SHIM = '''\
import multiprocessing, runpy, sys
import numpy as np
import torch
torch.set_num_threads({threads})
if not hasattr(np, "asfarray"):  # removed in numpy 2; the reference's metrics use it
    np.asfarray = lambda a, dtype=float: np.asarray(a, dtype=dtype)
if not torch.cuda.is_available():  # the reference calls .cuda() unconditionally
    torch.Tensor.cuda = lambda self, *a, **k: self
    torch.nn.Module.cuda = lambda self, *a, **k: self


class _SerialPool:  # Pool(cpu_count() // 5) is Pool(0) on small machines
    def __init__(self, *a, **k):
        pass

    def map(self, f, it):
        return list(map(f, it))

    def close(self):
        pass


multiprocessing.Pool = _SerialPool
sys.argv = ["main.py"] + {argv!r}
runpy.run_path("main.py", run_name="__main__")
'''


def convert(data_dir: Path, out: Path) -> dict:
    """ml100k.inter + features -> ``out/data/Sports/5-core/{train,val,test}.json`` and the feature files."""
    import pandas as pd
    df = pd.read_csv(data_dir / f"{data_dir.name}.inter", sep="\t")
    tf, vf = np.load(data_dir / "text_feat.npy"), np.load(data_dir / "image_feat.npy")
    train_users = set(df.loc[df.x_label == 0, "userID"])
    df = df[df.userID.isin(train_users)]  # our loader drops valid/test rows of users without train rows
    n_items = int(df.itemID.max()) + 1
    if n_items != len(tf) or len(vf) != len(tf):
        raise SystemExit(f"the reference derives n_items = max(item id) + 1 = {n_items} from the JSON, but the "
                         f"features have {len(tf)}/{len(vf)} rows; it would fail on the mismatch")
    core = out / "data" / DATASET / "5-core"
    core.mkdir(parents=True, exist_ok=True)
    for label, name in ((0, "train"), (1, "val"), (2, "test")):
        part = df[df.x_label == label]
        groups = part.groupby("userID")["itemID"].apply(lambda s: [int(i) for i in s])
        (core / f"{name}.json").write_text(json.dumps({str(int(u)): v for u, v in groups.items()}))
    np.save(out / "data" / DATASET / "text_feat.npy", tf.astype(np.float32))
    np.save(out / "data" / DATASET / "image_feat.npy", vf.astype(np.float32))
    return {"n_users": int(df.userID.max()) + 1, "n_items": n_items, "n_train": int((df.x_label == 0).sum())}


def reference_argv(params: dict, epochs: int, seed: int, eval_step: int) -> list[str]:
    argv = ["--dataset", DATASET, "--data_path", "../data/", "--epoch", str(epochs), "--seed", str(seed),
            "--verbose", str(eval_step), "--Ks", "[10,20]", "--debug", "True"]
    for k, v in params.items():
        if k not in FLAGS:
            raise SystemExit(f"no reference flag for {k!r}; known: {sorted(FLAGS)}")
        if k == "cf_model":
            v = CF_NAMES[str(v).lower()]
        argv += [f"--{FLAGS[k]}", str(v)]
    return argv


_EPOCH = re.compile(r"Epoch (\d+) \[([\d.]+)s(?: \+ ([\d.]+)s)?\]: train==\[([\d.naNinf]+)=")
_VALID = re.compile(r"recall=\[([\d.]+), ([\d.]+)\].*ndcg=\[([\d.]+), ([\d.]+)\]")
_TEST = re.compile(r"Test_Recall@(\d+): ([\d.]+)\s+Test_Precision@\d+: ([\d.]+)\s+Test_NDCG@\d+: ([\d.]+)")
_ARR = r"'{}': array\(\[([^\]]*)\]\)"


def parse(log: str) -> dict:
    """Per-epoch (train s, eval s, loss, valid R/N@10,20), the valid row whose test was kept, final test."""
    epochs, best_valid = [], None
    for line in log.splitlines():
        m = _EPOCH.search(line)
        if m:
            row = {"epoch": int(m.group(1)), "train_s": float(m.group(2)), "loss": float(m.group(4))}
            if m.group(3):
                row["eval_s"] = float(m.group(3))
            v = _VALID.search(line)
            if v:
                row["valid"] = {"recall@10": float(v.group(1)), "recall@20": float(v.group(2)),
                                "ndcg@10": float(v.group(3)), "ndcg@20": float(v.group(4))}
            epochs.append(row)
        elif _TEST.search(line) and epochs:
            best_valid = epochs[-1]  # the reference evaluates test when valid R@20 or N@20 improves
    test = {}
    final = [ln for ln in log.splitlines() if "'recall': array" in ln]
    if final:
        for name in ("recall", "ndcg", "precision"):
            m = re.search(_ARR.format(name), final[-1])
            if m:
                vals = [float(x) for x in m.group(1).split(",")]
                test.update({f"{name}@10": vals[0], f"{name}@20": vals[1]})
    train_s = [e["train_s"] for e in epochs]
    eval_s = [e["eval_s"] for e in epochs if "eval_s" in e]
    return {"epochs": epochs, "best_epoch": best_valid["epoch"] if best_valid else None,
            "valid": best_valid.get("valid") if best_valid else None, "test": test,
            "s_per_epoch": float(np.mean(train_s)) if train_s else None,
            "s_per_eval": float(np.mean(eval_s)) if eval_s else None}


def run_reference(a, params: dict) -> dict:
    ref = Path(a.ref)
    if not (ref / "codes" / "main.py").exists():
        raise SystemExit(f"{ref}/codes/main.py not found: check out github Xu107/MMHCL there first")
    work = Path(a.work)
    if work.exists():
        shutil.rmtree(work)  # the reference caches its graphs by (dataset, topk) only: always start fresh
    shutil.copytree(ref / "codes", work / "codes")
    stats = convert(Path(a.data_dir), work)
    argv = reference_argv(params, a.epochs, a.seed, a.eval_step)
    (work / "codes" / "_run_shimmed.py").write_text(SHIM.format(threads=a.threads, argv=argv))
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads), "MKL_NUM_THREADS": str(a.threads)}
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "_run_shimmed.py"], cwd=work / "codes", capture_output=True, text=True,
                       env=env, timeout=a.timeout)
    wall = time.perf_counter() - t
    (work / "stdout.log").write_text(p.stdout + "\n--- stderr ---\n" + p.stderr)
    if p.returncode:
        raise SystemExit(f"reference failed (rc {p.returncode}); log: {work / 'stdout.log'}\n{p.stderr[-3000:]}")
    return {**parse(p.stdout), "wall_s": wall, "data": stats, "argv": argv}


def run_ours(a, params: dict) -> dict:
    import torch
    from mmfeat.recommenders import train
    from mmfeat.recommenders.models import mmhcl  # noqa: F401  (registers MMHCL if not in _MODEL_MODULES)
    from mmrec_parity import load_ours
    torch.set_num_threads(a.threads)
    d = load_ours(Path(a.data_dir))
    cfg = {**params, "epochs": a.epochs, "seed": a.seed, "eval_step": a.eval_step}
    r = train(d, "MMHCL", cfg, progress=False)
    return {"valid": r.best_valid, "test": r.test, "best_epoch": r.best_epoch, "epochs_run": len(r.epochs),
            "s_per_epoch": r.s_per_epoch, "s_per_eval": r.s_per_eval, "wall_s": r.wall_s}


def main():
    ap = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n")[0])
    ap.add_argument("--ref", default="/tmp/mmhcl_ref", help="checkout of github Xu107/MMHCL")
    ap.add_argument("--work", default="/tmp/mmhcl_run", help="scratch folder (recreated each run)")
    ap.add_argument("--data-dir", default=str(ROOT / "bench" / "_work" / "ml100k"))
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--eval-step", type=int, default=1, help="validate every N epochs (reference --verbose)")
    ap.add_argument("--seed", type=int, default=999)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--params", default="{}", help="JSON of our MMHCL keys, given to both sides")
    ap.add_argument("--ours", action="store_true", help="also train ours (after the reference, not concurrently)")
    ap.add_argument("--timeout", type=float, default=3600)
    ap.add_argument("--out", help="write the JSON result here")
    a = ap.parse_args()
    params = json.loads(a.params)
    res = {"reference": run_reference(a, params)}
    if a.ours:
        res["ours"] = run_ours(a, params)
    for side, r in res.items():
        v, t = r.get("valid") or {}, r.get("test") or {}
        print(f"{side:9s}: valid R@20 {v.get('recall@20', float('nan')):.4f}  test R@20 "
              f"{t.get('recall@20', float('nan')):.4f}  test N@20 {t.get('ndcg@20', float('nan')):.4f}  "
              f"{r['s_per_epoch']:.2f} s/epoch  {(r['s_per_eval'] or float('nan')):.2f} s/eval  "
              f"best epoch {r['best_epoch']}")
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=1, default=float))


if __name__ == "__main__":
    main()
