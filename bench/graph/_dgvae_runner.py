"""DGVAE side by side with its reference (enoche/DGVAE ``code/main.py``, a checkout outside the repo) on the
prepared ML-100K files of bench/graph/mmrec_parity.py, with both sides' per-epoch validation curves.

    git --git-dir=$(fetch enoche/DGVAE) worktree add /tmp/dgvae HEAD
    python bench/graph/_dgvae_runner.py --epochs 100 --seeds 999 1 2 --patience 1000 --rng both --results
    python bench/graph/_dgvae_runner.py --epochs 30 --seeds 999 --patience 1000 --reuse-ref \
        --tag variant --params '{"lambda_text": 0.5}'          # a diagnostic: one change on our side only

The reference is not MMRec-layout (its own ``main.py``, ``<ds>.{train,valid,test}.ratings``, ``uid/iid.npy``, a
vocabulary and a user x word tf-idf), so ``bench/graph/mmrec_parity.py`` cannot drive it. This runner:

1. converts bench/_work/ml100k into its layout; its word view is our pseudo-word tf-idf
   (:func:`mmfeat.recommenders.models.dgvae.user_tfidf`) built with the run's seed, as ours builds it, so both
   sides read the same text view for every seed;
2. runs ``main.py`` unchanged in a subprocess with CPU/library shims: ``torch.load(weights_only=False)``
   (torch >= 2.6 default; its checkpoint holds a graph), ``Tensor.get_device()`` -> ``'cpu'`` for CPU tensors
   (it calls ``.to(item_adj.get_device())``, -1 on CPU), ``np.Inf`` (removed in numpy 2), and a numpy
   ``argpartition`` stand-in for ``bottleneck`` (not installed); each training pass is timed;
3. runs ours (``_ours`` sub-command, a subprocess) with the same hyper-parameters, ``--params`` overlaid;
   ``--rng reference`` (or ``both``) also with ``reference_rng: true``: ours then draws torch's random numbers in
   the reference's order, so each seed gives both sides the same run up to float rounding, which takes the
   seed-to-seed spread (large for DGVAE) out of the comparison and leaves the update rule;
4. per-epoch curves: the reference prints its valid metrics after every epoch (parsed from its log); ours are the
   run record's ``epochs`` rows with a ``valid`` dict. ``--results`` writes the final table and the per-epoch
   table (epoch | ref | ours | ours/ref, means over seeds) to bench/graph/RESULTS_recommenders.md, section
   ``dgvae-parity``. Per-seed results: ``bench/_work/dgvae_{ref,ours}_<seed>_<epochs>_p<patience>[_<tag>].json``
   (``--reuse-ref`` reads a kept reference result instead of re-running it).

Metric definitions. The reference's Recall@k divides by min(k, #held-out) (Mult-VAE's), ours by #held-out
(MMRec's); NDCG@k is the same on both sides. So that the recall columns compare, the launcher wraps the
reference's ``recall_at_k_batch`` (its return value, hence its early stopping, unchanged) and also logs the
MMRec-definition recall of the same ranking; the tables use that one (its own value is kept as
``ref_recall@20`` in the per-seed JSON). Epochs are numbered from 0 on both sides (its log counts from 1).
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
from _results import exit_on_sigterm  # noqa: E402
DATA = ROOT / "bench" / "_work" / "ml100k"
OUT = ROOT / "bench" / "_work"
#: enoche/DGVAE run-baby.sh / main.py defaults (one grid point), in our key names
PARAMS = {"embedding_size": 64, "knn_k": 10, "txt_weight": 0.96, "n_prototypes": 3, "tau": 0.1, "dropout": 0.5,
          "std": 0.075, "text_std": 0.075, "rating_anneal_cap": 0.2, "text_anneal_cap": 0.2,
          "rating_total_anneal_steps": 20000, "text_total_anneal_steps": 20000, "lambda_text": 0.2,
          "lambda_reg": 0.4, "reg_weights": [0.0, 0.0], "user_batch_size": 512}
REF_ARGS = ["-l", "200", "-ncl", "3", "-dr", "0.5", "-ldr_reg", "0.4", "-ldr_text", "0.2", "-std", "0.075",
            "-tstd", "0.075", "-rtast", "20000", "-ttast", "20000", "-lr", "0.001", "-gpu", "0",
            "-topk", "10,20,50", "-fname", "dataset,num_clusters"]
CURVE_METRICS = ("recall@20", "ndcg@20")

_LAUNCHER = '''import sys, time, runpy, functools
import numpy as np, torch, pandas  # pandas before the bottleneck stand-in is importable
torch.set_num_threads(1)
sys.path.insert(0, {shim!r}); sys.path.insert(0, {code!r})
np.Inf = np.inf
_gd = torch.Tensor.get_device
torch.Tensor.get_device = lambda self: "cpu" if _gd(self) < 0 else _gd(self)
torch.load = functools.partial(torch.load, weights_only=False)
import metrics as _metrics
_own_recall, _mmrec = _metrics.recall_at_k_batch, {{}}
def _recall(x_pred, heldout_batch, k=100):
    out = _own_recall(x_pred, heldout_batch, k)  # its value (and so its model selection) unchanged
    n = np.asarray((heldout_batch > 0).sum(axis=1)).ravel().astype(np.float64)
    _mmrec.setdefault(k, []).extend((out * np.minimum(k, n) / np.maximum(n, 1)).tolist())  # hits / #held-out
    return out
_metrics.recall_at_k_batch = _recall
import tqdm as _tq
times = []
class T:
    def __init__(self, it, desc="", **kw): self.it, self.desc = it, desc
    def __iter__(self):
        t = time.perf_counter()
        yield from self.it
        if self.desc == "Training":
            times.append(time.perf_counter() - t)
        elif self.desc == "Predicting":
            print("[ref] mmrec " + " ".join(f"mmrec_recall@{{k}}={{np.mean(v):.6f}}" for k, v in sorted(_mmrec.items())))
            _mmrec.clear()
_tq.tqdm = T
sys.argv = ["main.py"] + sys.argv[1:]
try:
    runpy.run_path({main!r}, run_name="__main__")
finally:
    print("[ref] s/epoch", float(np.mean(times)) if times else None, len(times))
'''


def convert(work: Path, seed: int) -> Path:
    """bench/_work/ml100k -> the reference's data layout under ``work/data/ml100k``; the word view is our
    pseudo-word tf-idf with the vocabulary seeded by ``seed`` (ours seeds it with the run's seed)."""
    import mmrec_parity as mp
    import pandas as pd
    import scipy.sparse as sp
    import torch
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
    tokens = dgvae.item_pseudo_words(feats, 1000, 20, seed)
    words = dgvae.user_tfidf(d.train_csr(), tokens, int(tokens.max()) + 1, 5, 0.6)
    sp.save_npz(out / "ml100k.user.words.tfidf.npz", words)
    (out / "ml100k.vocab").write_text(json.dumps({f"w{i}": i for i in range(words.shape[1])}))
    shim = work / "shim"
    shim.mkdir(exist_ok=True)
    (shim / "bottleneck.py").write_text('"""numpy stand-in for bottleneck.argpartition."""\nimport numpy as np\n\n\n'
                                        "def argpartition(a, kth, axis=-1):\n    return np.argpartition(a, kth, axis=axis)\n")
    return out


def _metrics(block: str) -> dict:
    """``name@k: value`` pairs of one of its evaluation printouts, plus the launcher's MMRec recall (renamed:
    ``recall@k`` is then the MMRec definition, ``ref_recall@k`` its own)."""
    own = {k: float(v) for k, v in re.findall(r"(\w+@\d+): ([0-9.]+)", block)}
    mmrec = {f"recall@{k}": float(v) for k, v in re.findall(r"mmrec_recall@(\d+)=([0-9.]+)", block)}
    out = {k: v for k, v in own.items() if not k.startswith("recall@")}
    out.update({f"ref_{k}": v for k, v in own.items() if k.startswith("recall@")})
    out.update(mmrec)
    return out


def parse_reference_log(text: str) -> dict:
    """Its final valid/test metrics and the per-epoch curve (0-based epochs, valid metrics, mean train loss)."""
    body, _, final = text.partition("TRAINING COMPLETED!")
    curve = []
    for ep, block in re.findall(r"^Epoch (\d+)/\d+:\n(.*?)(?=^Epoch \d+/\d+:|\Z)", body, re.DOTALL | re.MULTILINE):
        if "Validation results:" not in block:
            continue
        loss = re.search(r"Loss: (?:tensor\()?([-0-9.e]+)", block)
        m = _metrics(block.split("Validation results:", 1)[1])
        curve.append({"epoch": int(ep) - 1, **{k: m[k] for k in (*CURVE_METRICS, "ref_recall@20") if k in m},
                      **({"loss": float(loss.group(1))} if loss else {})})
    valid = _metrics(final.split("After training, validation results:")[-1].split("Test results:")[0])
    test = _metrics(final.split("Test results:")[-1])
    best = max(curve, key=lambda e: (round(e.get("ref_recall@20", 0), 4), e["ndcg@20"]))["epoch"] if curve else -1
    return {"valid": valid, "test": test, "curve": curve, "best_epoch": best, "epochs_run": len(curve)}


def run_reference(ref: Path, work: Path, seed: int, epochs: int, patience: int) -> dict:
    convert(work, seed)
    launcher = work / "launch_ref.py"
    launcher.write_text(_LAUNCHER.format(shim=str(work / "shim"), code=str(ref / "code"), main=str(ref / "code" / "main.py")))
    for d in ("results", "saved_models"):
        (work / d).mkdir(exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    p = subprocess.run([sys.executable, str(launcher), "-ddir", "./data", "-ds", "ml100k", "-ep", str(epochs),
                        "-rs", str(seed), "-es", str(patience), *REF_ARGS], cwd=work, env=env, capture_output=True, check=False,
                       text=True)
    if p.returncode:
        raise RuntimeError(f"reference DGVAE failed:\n{p.stderr[-3000:]}")
    text = p.stdout + p.stderr
    out = parse_reference_log(text)
    spe = re.search(r"\[ref\] s/epoch ([0-9.]+) (\d+)", text)
    out.update(s_per_epoch=float(spe.group(1)), patience=patience)
    ref_path(seed, epochs, patience).write_text(json.dumps(out))
    return out


def ref_path(seed: int, epochs: int, patience: int) -> Path:
    return OUT / f"dgvae_ref_{seed}_{epochs}_p{patience}.json"


def ours_path(seed: int, epochs: int, patience: int, tag: str) -> Path:
    return OUT / f"dgvae_ours_{seed}_{epochs}_p{patience}{'_' + tag if tag else ''}.json"


def worker_ours(seed: int, epochs: int, patience: int, params: dict, out: Path) -> None:
    """Train ours once (1 thread) and write its final metrics and per-epoch curve to ``out``."""
    import mmrec_parity as mp
    import torch
    from mmfeat.recommenders import train

    torch.set_num_threads(1)
    cfg = {**PARAMS, **params, "epochs": epochs, "seed": seed, "stopping_step": patience - 1, "learning_rate": 1e-3}
    r = train(mp.load_ours(DATA), "DGVAE", cfg, runs_dir=None, progress=False)
    curve = [{"epoch": e["epoch"], **{k: float(e["valid"][k]) for k in CURVE_METRICS}, "loss": float(e["loss"])}
             for e in r.epochs if e.get("valid")]
    out.write_text(json.dumps({"valid": r.best_valid, "test": r.test, "best_epoch": r.best_epoch,
                               "epochs_run": len(r.epochs), "s_per_epoch": r.s_per_epoch, "curve": curve,
                               "params": params, "patience": patience}))


def run_ours(seed: int, epochs: int, patience: int, params: dict, tag: str) -> dict:
    out = ours_path(seed, epochs, patience, tag)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    p = subprocess.run([sys.executable, __file__, "_ours", "--seed", str(seed), "--epochs", str(epochs),
                        "--patience", str(patience), "--params", json.dumps(params), "--out", str(out)],
                       env=env, capture_output=True, text=True, check=False)
    if p.returncode:
        raise RuntimeError(f"our DGVAE failed:\n{p.stderr[-3000:]}")
    return json.loads(out.read_text())


# ---------------------------------------------------------------------------- tables
def mean_curve(results: list[dict], metric: str) -> dict[int, float]:
    """Epoch -> mean over seeds of ``metric``, on the epochs every seed evaluated."""
    curves = [{e["epoch"]: e[metric] for e in r.get("curve", [])} for r in results]
    common = set.intersection(*(set(c) for c in curves)) if curves else set()
    return {e: float(np.mean([c[e] for c in curves])) for e in sorted(common)}


def curve_table(rows: dict, every: int = 1) -> list[str]:
    """Markdown: per epoch the mean-over-seeds valid Recall@20 / NDCG@20 of both sides and ours/ref, then the
    largest per-epoch gaps (all epochs, and from epoch 10 on) and the mean |ours/ref - 1|."""
    m = {k: (mean_curve(rows["reference"], k), mean_curve(rows["ours"], k)) for k in CURVE_METRICS}
    epochs = sorted(set(m["recall@20"][0]) & set(m["recall@20"][1]))
    if not epochs:
        return ["(no common evaluated epochs)"]
    L = [(f"Valid metrics per epoch (0-based), mean over {len(rows['ours'])} seed(s); both Recall@20 columns "
          "divide by #held-out (MMRec's definition)."), "",
         "| epoch | ref R@20 | ours R@20 | ours/ref | ref N@20 | ours N@20 | ours/ref |", "|---|---|---|---|---|---|---|"]
    for e in epochs:
        if e % every and e != epochs[-1]:
            continue
        (rr, ro), (nr, no) = ((m[k][0][e], m[k][1][e]) for k in CURVE_METRICS)
        L.append(f"| {e} | {rr:.4f} | {ro:.4f} | {ro / rr:.3f} | {nr:.4f} | {no:.4f} | {no / nr:.3f} |")
    L.append("")
    for k, name in zip(CURVE_METRICS, ("Recall@20", "NDCG@20")):
        ratio = {e: m[k][1][e] / m[k][0][e] - 1 for e in epochs if m[k][0][e] > 0}
        for lo in (0, 10):
            gaps = {e: g for e, g in ratio.items() if e >= lo}
            if gaps:
                e = max(gaps, key=lambda x: abs(gaps[x]))
                L.append(f"- valid {name}, epochs >= {lo}: largest per-epoch gap {gaps[e]:+.1%} (epoch {e}), "
                         f"mean |gap| {np.mean(np.abs(list(gaps.values()))):.1%}")
    return L


def final_table(rows: dict, seeds: list[int], epochs: int, patience: int) -> list[str]:
    mean = lambda side, split, k: float(np.mean([r[split].get(k, np.nan) for r in rows[side]]))
    stop = (f"early stopping after {patience} evaluations without a new best" if patience < epochs
            else "no early stopping (test at the best valid epoch of all)")
    lines = [(f"DGVAE, ML-100K, {epochs} epochs, {stop}; the reference's epoch (every user once, batches of 512), "
              f"learning rate 1e-3, seeds {seeds} (mean), CPU, 1 thread. Recall@20 = hits / #held-out on both sides "
              "(the reference's own, hits / min(20, #held-out), in parentheses)."), "",
             "| impl | valid R@20 | valid N@20 | test R@20 | test N@20 | best epochs | s/epoch |",
             "|---|---|---|---|---|---|---|"]
    for side in ("reference", "ours"):
        def own(split: str, side: str = side) -> str:
            return f" ({mean(side, split, 'ref_recall@20'):.4f})" if side == "reference" else ""
        lines.append(f"| {side} | {mean(side, 'valid', 'recall@20'):.4f}{own('valid')} | "
                     f"{mean(side, 'valid', 'ndcg@20'):.4f} | {mean(side, 'test', 'recall@20'):.4f}{own('test')} | "
                     f"{mean(side, 'test', 'ndcg@20'):.4f} | {', '.join(str(r['best_epoch']) for r in rows[side])} | "
                     f"{np.mean([r['s_per_epoch'] for r in rows[side]]):.3f} |")
    rel = lambda split, k: f"{mean('ours', split, k) / mean('reference', split, k) - 1:+.1%}"
    ratio = np.mean([r["s_per_epoch"] for r in rows["ours"]]) / np.mean([r["s_per_epoch"] for r in rows["reference"]])
    lines.append(f"| ours / reference | {rel('valid', 'recall@20')} | {rel('valid', 'ndcg@20')} | "
                 f"{rel('test', 'recall@20')} | {rel('test', 'ndcg@20')} | | {ratio:.2f}x |")
    return lines


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_ours":
        ap = argparse.ArgumentParser(allow_abbrev=False)
        ap.add_argument("_ours")
        for k in ("--seed", "--epochs", "--patience"):
            ap.add_argument(k, type=int, required=True)
        ap.add_argument("--params", default="{}")
        ap.add_argument("--out", required=True)
        a = ap.parse_args()
        return worker_ours(a.seed, a.epochs, a.patience, json.loads(a.params), Path(a.out))
    ap = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n")[0])
    ap.add_argument("--ref", default="/tmp/dgvae", help="checkout of enoche/DGVAE")
    ap.add_argument("--work", default="/tmp/dgvae_bench")
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--seeds", nargs="+", type=int, default=[999, 1, 2])
    ap.add_argument("--patience", type=int, default=20,
                    help="evaluations without a new best before stopping (the reference's -es; ours stopping_step "
                         "= patience - 1); a large value trains every epoch, for full curves")
    ap.add_argument("--params", default="{}", help="JSON object overlaid on our hyper-parameters (ours only)")
    ap.add_argument("--tag", default="", help="suffix of our per-seed result files (for --params variants)")
    ap.add_argument("--rng", choices=("default", "reference", "both"), default="default",
                    help="our random numbers: 'default' (ours as shipped: same distributions as the reference, "
                         "other draws), 'reference' (reference_rng: true, drawn in the reference's order, so a seed "
                         "gives both sides the same run up to float rounding; result files tagged 'paired') or both")
    ap.add_argument("--reuse-ref", action="store_true", help="reuse kept reference results of the same setting")
    ap.add_argument("--only", choices=("reference", "ours"), help="run one side (the other from kept results)")
    ap.add_argument("--kept", action="store_true", help="train nothing: the tables from the kept per-seed results")
    ap.add_argument("--every", type=int, default=1, help="print every n-th epoch of the curve table")
    ap.add_argument("--results", action="store_true",
                    help="write the tables to bench/graph/RESULTS_recommenders.md (section dgvae-parity)")
    a = ap.parse_args()
    exit_on_sigterm()  # a killed benchmark stops its workers too
    work, params = Path(a.work), json.loads(a.params)
    modes = {"default": ["default"], "reference": ["reference"], "both": ["default", "reference"]}[a.rng]
    tags = {m: "_".join(t for t in (a.tag, "paired" if m == "reference" else "") if t) for m in modes}
    refs, ours = [], {m: [] for m in modes}
    for s in a.seeds:
        rp = ref_path(s, a.epochs, a.patience)
        if a.kept or a.only == "ours" or (a.reuse_ref and rp.exists()):
            refs.append(json.loads(rp.read_text()))
        else:
            refs.append(run_reference(Path(a.ref), work, s, a.epochs, a.patience))
        for m in modes:
            op = ours_path(s, a.epochs, a.patience, tags[m])
            p = {**params, **({"reference_rng": True} if m == "reference" else {})}
            ours[m].append(json.loads(op.read_text()) if a.kept or a.only == "reference"
                           else run_ours(s, a.epochs, a.patience, p, tags[m]))
            print(f"seed {s} ({m} rng): valid R@20 ref {refs[-1]['valid']['recall@20']:.4f} ours "
                  f"{ours[m][-1]['valid']['recall@20']:.4f}; test N@20 ref {refs[-1]['test']['ndcg@20']:.4f} "
                  f"ours {ours[m][-1]['test']['ndcg@20']:.4f}", flush=True)
    out = []
    for m in modes:
        rows = {"reference": refs, "ours": ours[m]}
        title = {"default": "Ours as shipped (the reference's initial weights for a seed, then its own random draws: "
                            "from the first batch on, a seed gives the two sides different runs).",
                 "reference": "Ours with `reference_rng: true` (random numbers drawn in the reference's order: each "
                              "seed gives both sides the same run up to float rounding)."}[m]
        out += [f"**{title}**", ""] + final_table(rows, a.seeds, a.epochs, a.patience) + [""]
        out += curve_table(rows, a.every) + [""]
    print("\n".join(out))
    if a.results:
        from mmrec_parity import update_results
        cmd = "python bench/graph/_dgvae_runner.py " + " ".join(x for x in sys.argv[1:] if x != "--kept")
        update_results(Path(__file__).resolve().with_name("RESULTS_recommenders.md"), "dgvae-parity",
                       [f"Command: `{cmd}`", ""] + out[:-1])


if __name__ == "__main__":
    main()
