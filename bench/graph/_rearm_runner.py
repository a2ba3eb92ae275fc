"""Side-by-side smoke of REARM: the reference (MrShouxingMa/REARM, checked out under /tmp, never vendored)
and ours (mmfeat.recommenders.models.rearm) on the prepared ML-100K files (bench/_work/ml100k).

The reference does not follow MMRec's layout (its own main.py / Net / Load_dataset / trainer), so
bench/graph/mmrec_parity.py cannot drive it. This runner:

1. converts ``ml100k.inter`` (TSV userID itemID rating timestamp x_label 0/1/2) into the reference's format:
   ``<ref>/data/ml100k/{train,valid,test}.npy`` = int64 [2, n] (row 0 users, row 1 items, both 0-based),
   plus ``text_feat.npy`` / ``image_feat.npy`` copied as they are;
2. runs the reference's own ``Net`` (its Config, Load_dataset, DataLoader, REARM, AdamW, trainer and
   evaluator) in a subprocess from ``<ref>`` with three shims only: a stub ``tensorboardX`` module (imported
   by main.py, used only with --with_tensorboard) and ``random.sample`` accepting a set (its negative
   sampler calls ``random.sample(set, 1)``, which Python >= 3.11 rejects; Python 3.8, its tested version,
   converted the set with ``tuple()``, which the shim does too), and scipy's removed private
   ``dok_matrix._update`` (its get_norm_adj_mat builds the user-item adjacency with it; the shim sets the same
   entries, as bench/graph/mmrec_parity.py's shim does for MMRec);
3. runs ours through ``mmfeat.recommenders.train`` on the same files (bench/graph/mmrec_parity.py's loader);
4. prints a markdown table: best-valid Recall@20 / NDCG@20, test at that epoch, s/epoch, s/eval; the header
   names the data folder it read. Each side's result is kept as ``<work>/rearm_<side>_<seed>_<epochs>_<lr>.json``
   (what bench/graph/parity_summary.py reads); ``--out FILE`` also writes both sides' results as one JSON object,
   ``--results FILE`` the markdown table with its command.

    python bench/graph/_rearm_runner.py --ref /tmp/REARM --epochs 2 --lr 0.01 --seed 999
    python bench/graph/_rearm_runner.py --ref /tmp/REARM --epochs 2 --params '{"n_layers": 2}' --impls ours
    python bench/graph/_rearm_runner.py curves --epochs 5 --lr 0.01 --seeds 999 1 2

Each kept result carries its per-epoch valid Recall@20 / NDCG@20 (``curve``, as bench/graph/_curves.py keeps them
for bench/graph/mmrec_parity.py); the ``curves`` mode prints both sides' mean curves over the kept seeds.

``--params`` uses our key names; they are translated for the reference (``embedding_size`` ->
``embedding_dim``, ``weight_decay`` -> ``reg_weight``, ``n_layers`` -> ``num_layer``, ``learning_rate`` ->
``l_r``, ``train_batch_size`` -> ``batch_size``; the other keys are spelled alike).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _curves import curve_entry, curve_table, ours_curve  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "bench" / "_work" / "ml100k"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

#: our key -> the reference's argparse name (keys not listed are spelled alike)
REF_NAMES = {"embedding_size": "embedding_dim", "weight_decay": "reg_weight", "n_layers": "num_layer",
             "learning_rate": "l_r", "train_batch_size": "batch_size"}


def convert(data_dir: Path, ref: Path, name: str = "ml100k") -> Path:
    """Write the reference's data folder ``<ref>/data/<name>`` from our prepared MMRec-format files."""
    import pandas as pd
    out = ref / "data" / name
    out.mkdir(parents=True, exist_ok=True)
    df = pd.read_csv(data_dir / f"{data_dir.name}.inter", sep="\t")
    # the reference counts users/items as the distinct ids over all splits and uses them as indices
    assert df.userID.nunique() == df.userID.max() + 1 and df.itemID.nunique() == df.itemID.max() + 1
    for label, split in ((0, "train"), (1, "valid"), (2, "test")):
        part = df[df.x_label == label]
        np.save(out / f"{split}.npy", np.stack([part.userID.to_numpy(np.int64), part.itemID.to_numpy(np.int64)]))
    for f in ("text_feat.npy", "image_feat.npy"):
        np.save(out / f, np.load(data_dir / f).astype(np.float32))
    for cached in out.glob("*.pt"):  # graphs the reference caches from an earlier (other) split
        cached.unlink()
    return out


def _shims() -> None:
    import random
    import types
    sys.modules.setdefault("tensorboardX", types.SimpleNamespace(SummaryWriter=None))
    sample = random.sample

    def sample_from_set(population, k, **kw):
        if isinstance(population, (set, frozenset)):
            population = tuple(population)
        return sample(population, k, **kw)
    random.sample = sample_from_set
    import scipy.sparse as sp
    if not hasattr(sp.dok_matrix, "_update"):  # removed in scipy >= 1.12; its get_norm_adj_mat uses it
        def _update(self, d):
            if d:
                k = np.array(list(d.keys()))
                self[k[:, 0], k[:, 1]] = np.array(list(d.values()), dtype=self.dtype)
        sp.dok_matrix._update = _update


def worker_ref(a) -> dict:
    import logging
    ref = Path(a.ref).resolve()
    os.chdir(ref)
    sys.path.insert(0, str(ref))
    _shims()
    import torch
    torch.set_num_threads(a.threads)
    params = {**json.loads(a.params or "{}"), "learning_rate": a.lr, "seed": a.seed}
    argv = ["main.py", "--dataset", "ml100k", "--num_epoch", str(a.epochs), "--num_workers", "0"]
    for k, v in params.items():
        argv += [f"--{REF_NAMES.get(k, k)}", str(v)]
    sys.argv = argv
    from utils.parser import parse_args
    import main as ref_main
    t0 = time.perf_counter()
    net = ref_main.Net(parse_args())
    build_s = time.perf_counter() - t0
    train_t, valid_t, valid, test = [], [], [], []

    class H(logging.Handler):
        def emit(self, rec):
            m = rec.getMessage()
            t = re.search(r"epoch \d+ (training|validing|testing) \[time: ([0-9.]+)s\]", m)
            if t:
                {"training": train_t, "validing": valid_t, "testing": []}[t.group(1)].append(float(t.group(2)))
            for tag, dst in (("valid result", valid), ("test result", test)):
                if tag in m:
                    dst.append({k.lower(): float(v) for k, v in re.findall(r"(\w+@\d+): ([0-9.]+)", m)})

    logging.getLogger("normal").addHandler(H())
    net.run()
    best = int(np.argmax([v["recall@20"] for v in valid]))  # its early stopping: first strictly greater
    return {"valid": valid[best], "test": test[-1] if test else {}, "best_epoch": best, "epochs_run": len(train_t),
            "curve": [curve_entry(e, v) for e, v in enumerate(valid)],
            "s_per_epoch": float(np.mean(train_t)), "s_per_eval": float(np.mean(valid_t)), "build_s": build_s,
            "wall_s": time.perf_counter() - t0, "device": str(net.device)}


def worker_ours(a) -> dict:
    import torch
    from mmfeat.recommenders import train
    from mmfeat.recommenders.models import rearm  # noqa: F401  (registers REARM)
    from mmrec_parity import load_ours
    torch.set_num_threads(a.threads)
    t0 = time.perf_counter()
    d = load_ours(Path(a.data_dir))
    cfg = {**json.loads(a.params or "{}"), "epochs": a.epochs, "seed": a.seed, "learning_rate": a.lr}
    r = train(d, "REARM", cfg, runs_dir=a.runs_dir, progress=False)
    return {"valid": r.best_valid, "test": r.test, "best_epoch": r.best_epoch, "epochs_run": len(r.epochs),
            "curve": ours_curve(r.epochs), "s_per_epoch": r.s_per_epoch, "s_per_eval": r.s_per_eval,
            "wall_s": time.perf_counter() - t0}


def print_curves(a) -> None:
    """Both sides' mean per-epoch valid curves over the kept runs of ``--seeds`` (``--epochs``, ``--lr``)."""
    kept = {side: [Path(a.work) / f"rearm_{kind}_{s}_{a.epochs}_{a.lr}.json" for s in a.seeds]
            for side, kind in (("mmrec", "ref"), ("ours", "ours"))}
    missing = [str(p) for paths in kept.values() for p in paths if not p.exists()]
    if missing:
        raise SystemExit(f"no kept run at {missing}: run those seeds first")
    res = {side: [json.loads(p.read_text()) for p in paths] for side, paths in kept.items()}
    print("\n".join(curve_table("REARM", res, "MrShouxingMa/REARM", gap_from=2)))


def run_worker(kind: str, a) -> dict:
    out = Path(a.work) / f"rearm_{kind}_{a.seed}_{a.epochs}_{a.lr}.json"
    cmd = [sys.executable, __file__, "_worker", kind, "--ref", a.ref, "--data-dir", a.data_dir, "--seed", str(a.seed),
           "--epochs", str(a.epochs), "--lr", str(a.lr), "--threads", str(a.threads), "--out", str(out),
           "--work", a.work] + (["--params", a.params] if a.params else [])
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads), "MKL_NUM_THREADS": str(a.threads)}
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode:
        raise RuntimeError(f"{kind} failed (rc {p.returncode}):\n{p.stderr[-4000:]}")
    r = json.loads(out.read_text())
    print(f"  {kind:4s}: valid R@20 {r['valid']['recall@20']:.4f} test R@20 {r['test'].get('recall@20', float('nan')):.4f}"
          f"  {r['s_per_epoch']:.2f}s/epoch {r['s_per_eval']:.2f}s/eval ({time.perf_counter() - t:.0f}s)", flush=True)
    return r


def main() -> None:
    ap = argparse.ArgumentParser(allow_abbrev=False)
    ap.add_argument("mode", nargs="?", default="run", choices=["run", "convert", "curves", "_worker"])
    ap.add_argument("kind", nargs="?")
    ap.add_argument("--ref", default="/tmp/REARM", help="checkout of MrShouxingMa/REARM")
    ap.add_argument("--data-dir", default=str(DATA))
    ap.add_argument("--impls", nargs="+", default=["ref", "ours"])
    ap.add_argument("--seed", type=int, default=999)
    ap.add_argument("--seeds", type=int, nargs="+", default=[999, 1, 2], help="curves mode: the kept seeds to average")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--lr", type=float, default=5e-5, help="learning rate of both (the reference's default 5e-5)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--params", help="JSON object of hyper-parameters (our key names) for both sides")
    ap.add_argument("--work", default="/tmp/rearm_bench",
                    help="per-run JSON results (rearm_<side>_<seed>_<epochs>_<lr>.json, read by parity_summary.py)")
    ap.add_argument("--out", help="write every side's result as one JSON object here (worker mode: that side's)")
    ap.add_argument("--results", help="write the markdown table here too")
    a = ap.parse_args()
    # the reference's worker changes into its checkout, so every path it is handed must be absolute
    a.work, a.data_dir = str(Path(a.work).resolve()), str(Path(a.data_dir).resolve())
    a.out = str(Path(a.out).resolve()) if a.out else None
    a.runs_dir = str(Path(a.work) / "runs")
    if a.mode == "_worker":
        if not a.out:
            ap.error("_worker needs --out")
        r = worker_ref(a) if a.kind == "ref" else worker_ours(a)
        Path(a.out).write_text(json.dumps(r, default=float))
        return
    if a.mode == "curves":
        print_curves(a)
        return
    Path(a.work).mkdir(parents=True, exist_ok=True)
    convert(Path(a.data_dir), Path(a.ref))
    if a.mode == "convert":
        return
    res = {k: run_worker(k, a) for k in a.impls}
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(res, default=float, indent=1))
    lines = [f"REARM, {Path(a.data_dir).name} ({a.data_dir}), CPU, {a.threads} thread(s), {a.epochs} epochs, lr {a.lr}, "
             f"seed {a.seed}, params {a.params or '{}'}; metrics at the best-valid epoch.", "",
             "| impl | valid R@20 | valid N@20 | test R@20 | test N@20 | s/epoch | s/eval |", "|---|---|---|---|---|---|---|"]
    for k, r in res.items():
        lines.append(f"| {k} | {r['valid']['recall@20']:.4f} | {r['valid']['ndcg@20']:.4f} | "
                     f"{r['test'].get('recall@20', float('nan')):.4f} | {r['test'].get('ndcg@20', float('nan')):.4f} | "
                     f"{r['s_per_epoch']:.2f} | {r['s_per_eval']:.2f} |")
    print("\n".join(lines))
    if a.results:
        Path(a.results).write_text("\n".join([f"Command: `python bench/graph/_rearm_runner.py {' '.join(sys.argv[1:])}`", ""]
                                             + lines) + "\n")


if __name__ == "__main__":
    main()
