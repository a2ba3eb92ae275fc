"""DGVAE side by side with its reference (enoche/DGVAE ``code/main.py``, a checkout outside the repo) on the
prepared ML-100K files of bench/graph/mmrec_parity.py.

    git --git-dir=$(fetch enoche/DGVAE) worktree add /tmp/dgvae HEAD
    python bench/graph/_dgvae_runner.py --epochs 100 --seeds 999 1 2

The reference is not MMRec-layout (its own ``main.py``, ``<ds>.{train,valid,test}.ratings``, ``uid/iid.npy``, a
vocabulary and a user x word tf-idf), so ``bench/graph/mmrec_parity.py`` cannot drive it. This runner:

1. converts bench/_work/ml100k into its layout; its word view is our pseudo-word tf-idf
   (:func:`mmfeat.recommenders.models.dgvae.user_tfidf`), so both sides read the same text view;
2. runs ``main.py`` unchanged in a subprocess with four CPU/library shims: ``torch.load(weights_only=False)``
   (torch >= 2.6 default; its checkpoint holds a graph), ``Tensor.get_device()`` -> ``'cpu'`` for CPU tensors
   (it calls ``.to(item_adj.get_device())``, -1 on CPU), ``np.Inf`` (removed in numpy 2), and a numpy
   ``argpartition`` stand-in for ``bottleneck`` (not installed); each training pass is timed;
3. runs ours through bench/graph/mmrec_parity.py's worker with the same hyper-parameters.

Its Recall@k divides by min(k, #held-out) (ours: by #held-out), so only NDCG@20 and the within-side trends are
strictly comparable; both are printed. Results: bench/graph/RESULTS_recommenders.md section ``dgvae-parity``.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
DATA = ROOT / "bench" / "_work" / "ml100k"
#: enoche/DGVAE run-baby.sh / main.py defaults (one grid point), in our key names
PARAMS = {"embedding_size": 64, "knn_k": 10, "txt_weight": 0.96, "n_prototypes": 3, "tau": 0.1, "dropout": 0.5,
          "std": 0.075, "text_std": 0.075, "rating_anneal_cap": 0.2, "text_anneal_cap": 0.2,
          "rating_total_anneal_steps": 20000, "text_total_anneal_steps": 20000, "lambda_text": 0.2,
          "lambda_reg": 0.4, "reg_weights": [0.0, 0.0], "user_batch_size": 512}
REF_ARGS = ["-l", "200", "-ncl", "3", "-dr", "0.5", "-ldr_reg", "0.4", "-ldr_text", "0.2", "-std", "0.075",
            "-tstd", "0.075", "-rtast", "20000", "-ttast", "20000", "-es", "20", "-lr", "0.001", "-gpu", "0",
            "-topk", "10,20,50", "-fname", "dataset,num_clusters"]

_LAUNCHER = '''import sys, time, runpy, functools
import numpy as np, torch, pandas  # pandas before the bottleneck stand-in is importable
torch.set_num_threads(1)
sys.path.insert(0, {shim!r}); sys.path.insert(0, {code!r})
np.Inf = np.inf
_gd = torch.Tensor.get_device
torch.Tensor.get_device = lambda self: "cpu" if _gd(self) < 0 else _gd(self)
torch.load = functools.partial(torch.load, weights_only=False)
import tqdm as _tq
times = []
class T:
    def __init__(self, it, desc="", **kw): self.it, self.desc = it, desc
    def __iter__(self):
        t = time.perf_counter()
        yield from self.it
        if self.desc == "Training":
            times.append(time.perf_counter() - t)
_tq.tqdm = T
sys.argv = ["main.py"] + sys.argv[1:]
try:
    runpy.run_path({main!r}, run_name="__main__")
finally:
    print("[ref] s/epoch", float(np.mean(times)) if times else None, len(times))
'''


def convert(work: Path) -> Path:
    """bench/_work/ml100k -> the reference's data layout under ``work/data/ml100k``."""
    import pandas as pd
    import scipy.sparse as sp
    import torch

    import mmrec_parity as mp
    from mmfeat.recommenders.models import dgvae

    out = work / "data" / "ml100k"
    out.mkdir(parents=True, exist_ok=True)
    df = pd.read_csv(DATA / "ml100k.inter", sep="\t")
    for label, name in ((0, "train"), (1, "valid"), (2, "test")):
        d = df[df.x_label == label]
        pd.DataFrame({"uid": d.userID, "iid": d.itemID, "rating": 1}).to_csv(out / f"ml100k.{name}.ratings", index=False)
    d = mp.load_ours(DATA)
    np.save(out / "ml100k.uid.npy", np.arange(d.n_users))
    np.save(out / "ml100k.iid.npy", np.arange(d.n_items))
    for f in ("text_feat.npy", "image_feat.npy"):
        np.save(out / f, np.load(DATA / f))
    feats = {r: torch.from_numpy(np.asarray(d.item_features[r], np.float32)) for r in ("text", "image")}
    tokens = dgvae.item_pseudo_words(feats, 1000, 20, 999)
    words = dgvae.user_tfidf(d.train_csr(), tokens, int(tokens.max()) + 1, 5, 0.6)
    sp.save_npz(out / "ml100k.user.words.tfidf.npz", words)
    (out / "ml100k.vocab").write_text(json.dumps({f"w{i}": i for i in range(words.shape[1])}))
    shim = work / "shim"
    shim.mkdir(exist_ok=True)
    (shim / "bottleneck.py").write_text('"""numpy stand-in for bottleneck.argpartition."""\nimport numpy as np\n\n\n'
                                        "def argpartition(a, kth, axis=-1):\n    return np.argpartition(a, kth, axis=axis)\n")
    return out


def _metrics(block: str) -> dict:
    return {k: float(v) for k, v in re.findall(r"(\w+@\d+): ([0-9.]+)", block)}


def run_reference(ref: Path, work: Path, seed: int, epochs: int) -> dict:
    launcher = work / "launch_ref.py"
    launcher.write_text(_LAUNCHER.format(shim=str(work / "shim"), code=str(ref / "code"), main=str(ref / "code" / "main.py")))
    for d in ("results", "saved_models"):
        (work / d).mkdir(exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    p = subprocess.run([sys.executable, str(launcher), "-ddir", "./data", "-ds", "ml100k", "-ep", str(epochs),
                        "-rs", str(seed), *REF_ARGS], cwd=work, env=env, capture_output=True, text=True)
    if p.returncode:
        raise RuntimeError(f"reference DGVAE failed:\n{p.stderr[-3000:]}")
    text = p.stdout + p.stderr
    valid = _metrics(text.split("After training, validation results:")[-1].split("Test results:")[0])
    test = _metrics(text.split("Test results:")[-1])
    spe = re.search(r"\[ref\] s/epoch ([0-9.]+) (\d+)", text)
    out = {"valid": valid, "test": test, "s_per_epoch": float(spe.group(1)), "epochs_run": int(spe.group(2))}
    (ROOT / "bench" / "_work" / f"dgvae_ref_{seed}_{epochs}.json").write_text(json.dumps(out))
    return out


def run_ours(seed: int, epochs: int) -> dict:
    out = ROOT / "bench" / "_work" / f"dgvae_ours_{seed}_{epochs}.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    subprocess.run([sys.executable, str(Path(__file__).resolve().with_name("mmrec_parity.py")), "_worker", "ours", "--model", "DGVAE",
                    "--seed", str(seed), "--epochs", str(epochs), "--stopping-step", "19", "--lr", "0.001",
                    "--threads", "1", "--data-dir", str(DATA), "--runs-dir", str(ROOT / "bench" / "_work" / "runs"),
                    "--out", str(out), "--params", json.dumps(PARAMS)], env=env, check=True, capture_output=True)
    return json.loads(out.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n")[0])
    ap.add_argument("--ref", default="/tmp/dgvae", help="checkout of enoche/DGVAE")
    ap.add_argument("--work", default="/tmp/dgvae_bench")
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--seeds", nargs="+", type=int, default=[999, 1, 2])
    a = ap.parse_args()
    work = Path(a.work)
    convert(work)
    rows = {"reference": [], "ours": []}
    for s in a.seeds:
        rows["reference"].append(run_reference(Path(a.ref), work, s, a.epochs))
        rows["ours"].append(run_ours(s, a.epochs))
        print(f"seed {s}: ref test N@20 {rows['reference'][-1]['test'].get('ndcg@20')}, ours "
              f"{rows['ours'][-1]['test']['ndcg@20']:.4f}", flush=True)
    mean = lambda side, split, k: float(np.mean([r[split].get(k, np.nan) for r in rows[side]]))
    lines = [f"DGVAE, ML-100K, {a.epochs} epochs max (the reference's epoch: every user once, batches of 512), "
             f"learning rate 1e-3, seeds {a.seeds} (mean), CPU, 1 thread. The reference's Recall@k divides by "
             "min(k, #held-out), ours by #held-out (MMRec).", "",
             "| impl | valid R@20 | valid N@20 | test R@20 | test N@20 | s/epoch |", "|---|---|---|---|---|---|"]
    for side in ("reference", "ours"):
        lines.append(f"| {side} | {mean(side, 'valid', 'recall@20'):.4f} | {mean(side, 'valid', 'ndcg@20'):.4f} | "
                     f"{mean(side, 'test', 'recall@20'):.4f} | {mean(side, 'test', 'ndcg@20'):.4f} | "
                     f"{np.mean([r['s_per_epoch'] for r in rows[side]]):.3f} |")
    ratio = np.mean([r["s_per_epoch"] for r in rows["ours"]]) / np.mean([r["s_per_epoch"] for r in rows["reference"]])
    lines.append(f"| ours / reference | | | | {mean('ours', 'test', 'ndcg@20') / mean('reference', 'test', 'ndcg@20') - 1:+.1%} "
                 f"| {ratio:.2f}x |")
    print("\n".join(lines))
    from mmrec_parity import update_results
    cmd = "python bench/graph/_dgvae_runner.py " + " ".join(sys.argv[1:])
    update_results(Path(__file__).resolve().with_name("RESULTS_recommenders.md"), "dgvae-parity", [f"Command: `{cmd}`", ""] + lines)


if __name__ == "__main__":
    main()
