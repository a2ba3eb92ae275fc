"""The MMCTR challenge's own stack reads our export as written: ``run_expid.py`` of salmon1802/QIN, unmodified,
on FuxiCTR 2.3.7 (the challenge's pin, numpy < 2, scikit-learn < 1.5), with our exported dataset config.

    python bench/ctr/challenge_stack_check.py [--dataset ml-100k] [--expid DIN_default] [--epochs 1]
        [--seeds 20242025 ...] [--ours] [--python /work/fuxictr237-venv/bin/python]

With ``--ours`` it is also the side-by-side benchmark against the authors' own code: for each seed our
model (DIN for DIN_default, QIN for QIN_variety_v9, the same released hyper-parameters) trains on the same
export, and the table pairs the two per seed (valid AUC per epoch, the final validation, test AUC from the
predictions run_expid.py writes for submission).

What it does, nothing more:
  * exports the bench's MMCTR folder (:func:`fuxictr_ctr_parity.prepare`, once);
  * copies the QIN checkout (outside the repo) to a temp dir, links the four parquet files under its
    ``data/<name>/`` (run_expid.py writes feature_map.json next to them, so the export is never written);
  * writes a config dir with our ``<name>.yaml`` byte for byte as ``dataset_config/<name>.yaml`` and the
    checkout's ``config/qin_config/model_config.yaml`` with four keys changed in Base and the experiment:
    ``dataset_id`` (our name), ``epochs`` (the budget), ``seed`` and ``num_workers`` (1: this machine has
    2 cores);
  * runs ``python run_expid.py --config ./config/mmfeat/ --expid EXPID --gpu -1`` in that copy and reports
    its validation AUC/logloss lines, the exit status and the wall time (appended to RESULTS_ctr.md); test
    AUC/logloss come from its ``submission/prediction.csv`` against our test labels (the challenge hides
    them; our export has them).

The venv: ``bash bench/ctr/setup_fuxictr.sh /work/fuxictr237-venv 2.3.7``. FuxiCTR 2.3.10 cannot run this
``run_expid.py`` at all (its ``RankDataLoader`` is a function without ``make_iterator``); the DIN parity
runner (``_fuxictr_runner.py``) is the 2.3.10 reader of the same config.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fuxictr_ctr_parity import QIN_DIR, append_results, prepare, run_ours  # noqa: E402

DEFAULT_PYTHON = os.environ.get("FUXICTR237_PYTHON", "/work/fuxictr237-venv/bin/python")
#: the only keys of the challenge's model config this check changes (why: see the module docstring)
CHANGED_KEYS = ("dataset_id", "epochs", "seed", "num_workers")
#: the challenge experiment -> our model with the same released hyper-parameters (our defaults)
OUR_MODEL = {"DIN_default": "DIN", "QIN_variety_v9": "QIN"}


def challenge_config_dir(qin: Path, export: Path, expid: str, epochs: int, seed: int | None) -> Path:
    """``qin/config/mmfeat/``: our dataset yaml as written + the challenge's model config (CHANGED_KEYS)."""
    name = export.name
    cfg_dir = qin / "config" / "mmfeat"
    (cfg_dir / "dataset_config").mkdir(parents=True)
    shutil.copyfile(export / f"{name}.yaml", cfg_dir / "dataset_config" / f"{name}.yaml")
    models = yaml.safe_load((qin / "config" / "qin_config" / "model_config.yaml").read_text())
    if expid not in models:
        raise SystemExit(f"{expid!r} is not in the checkout's model_config.yaml: {', '.join(models)}")
    kept = {"Base": {**models["Base"], "num_workers": 1},
            expid: {**models[expid], "dataset_id": name, "epochs": epochs,
                    **({"seed": seed} if seed is not None else {})}}
    (cfg_dir / "model_config.yaml").write_text(yaml.safe_dump(kept, sort_keys=False))
    return cfg_dir


def run_challenge(python: str, export: Path, expid: str, epochs: int, timeout: float, seed: int | None = None) -> dict:
    """Run the checkout's run_expid.py on ``export``; returns status, metrics, test AUC and timings."""
    work = Path(tempfile.mkdtemp(prefix="mmctr_challenge_"))
    try:
        qin = work / "qin"
        shutil.copytree(QIN_DIR, qin, ignore=shutil.ignore_patterns("checkpoints", "submission", "data"))
        data = qin / "data" / export.name
        data.mkdir(parents=True)
        for f in ("train", "valid", "test", "item_info"):
            os.symlink(export / f"{f}.parquet", data / f"{f}.parquet")
        challenge_config_dir(qin, export, expid, epochs, seed)
        written = hashlib.sha256((export / f"{export.name}.yaml").read_bytes()).hexdigest()[:12]
        t0 = time.perf_counter()
        proc = subprocess.run([python, "run_expid.py", "--config", "./config/mmfeat/", "--expid", expid, "--gpu", "-1"],
                              cwd=qin, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "OMP_NUM_THREADS": "2"})
        wall = time.perf_counter() - t0
        log = proc.stdout + proc.stderr
        version = subprocess.run([python, "-c", "import fuxictr, numpy, sklearn; print(fuxictr.__version__, "
                                  "numpy.__version__, sklearn.__version__)"], capture_output=True, text=True).stdout.split()
        metrics = re.findall(r"\[Metrics\] (AUC: [0-9.]+ - logloss: [0-9.]+)", log)
        out = {"ok": proc.returncode == 0, "returncode": proc.returncode, "wall_s": wall, "metrics": metrics,
               "valid_auc_per_epoch": [float(m.split()[1]) for m in metrics[:-1]],
               "valid_auc": float(metrics[-1].split()[1]) if metrics else None,
               "versions": version, "config_sha": written, "tail": log[-1500:]}
        pred = qin / "submission" / "prediction.csv"
        if pred.is_file():
            import pandas as pd
            from sklearn.metrics import log_loss, roc_auc_score

            p = pd.read_csv(pred)["Task2"].to_numpy(float)
            y = pd.read_parquet(export / "test.parquet", columns=["label"])["label"].to_numpy(float)
            out["test"] = {"auc": float(roc_auc_score(y, p)), "logloss": float(log_loss(y, p))}
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--expid", default="DIN_default", help="an experiment of config/qin_config/model_config.yaml")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--seeds", type=int, nargs="+", default=[None], help="default: the experiment's own seed")
    ap.add_argument("--ours", action="store_true", help="also train our model on the same export, per seed")
    ap.add_argument("--python", default=DEFAULT_PYTHON, help="the FuxiCTR 2.3.7 venv's python")
    ap.add_argument("--timeout", type=float, default=7200)
    args = ap.parse_args()
    if not Path(args.python).is_file():
        raise SystemExit(f"no python at {args.python}: bash bench/ctr/setup_fuxictr.sh /work/fuxictr237-venv 2.3.7")
    if args.ours and args.expid not in OUR_MODEL:
        raise SystemExit(f"--ours: no model of ours for {args.expid} (one of {', '.join(OUR_MODEL)})")
    export = prepare(args.dataset)
    lines = ["| impl | seed | valid AUC per epoch | valid AUC (selected) | test AUC | test logloss | wall s |",
             "|" + "---|" * 7]
    failed, pairs = [], []
    for seed in args.seeds:
        r = run_challenge(args.python, export, args.expid, args.epochs, args.timeout, seed)
        print(r["tail"], flush=True)
        fx, np_v, sk = (r["versions"] + ["?"] * 3)[:3]
        test = r.get("test") or {}
        lines.append(f"| FuxiCTR {fx} run_expid.py (exit {r['returncode']}) | {seed or 'config'} | "
                     f"{', '.join(f'{a:.4f}' for a in r['valid_auc_per_epoch']) or '-'} | "
                     f"{_f(r['valid_auc'])} | {_f(test.get('auc'))} | {_f(test.get('logloss'))} | {r['wall_s']:.0f} |")
        if not r["ok"]:
            failed.append(r)
        if args.ours:
            cfg = {"epochs": args.epochs, **({"seed": seed} if seed is not None else {})}
            o = run_ours(export, cfg, 2, None, args.timeout, model=OUR_MODEL[args.expid], reuse=True)
            curve = [e["valid_auc"] for e in o.get("per_epoch") or []]
            lines.append(f"| mmfeat {OUR_MODEL[args.expid]} | {seed or 'default'} | {', '.join(f'{a:.4f}' for a in curve)} | "
                         f"{_f(o['valid']['auc'])} | {_f(o['test']['auc'])} | {_f(o['test']['logloss'])} | "
                         f"{o['wall_s']:.0f} |")
            if r["ok"] and r["valid_auc"] is not None:
                pairs.append((o["valid"]["auc"] - r["valid_auc"], o["test"]["auc"] - test.get("auc", float("nan"))))
        print("\n".join(lines), flush=True)
    body = (f"FuxiCTR {fx} (numpy {np_v}, scikit-learn {sk}), `run_expid.py --expid {args.expid}` of the QIN "
            f"checkout, unmodified; our `{export.name}.yaml` as written (sha256 {r['config_sha']}); model config "
            f"keys changed: {', '.join(CHANGED_KEYS)} (epochs {args.epochs}).\n\n" + "\n".join(lines))
    if pairs:
        import numpy as np

        d = np.array(pairs)
        body += (f"\n\nours - authors' code over {len(d)} seed(s): valid AUC mean {d[:, 0].mean():+.4f} (largest |delta| "
                 f"{np.abs(d[:, 0]).max():.4f}), test AUC mean {d[:, 1].mean():+.4f}")
    for r in failed:
        body += "\n\n```\n" + r["tail"][-800:] + "\n```"
    append_results(f"the challenge's own code on our export: {args.expid} on {args.dataset}",
                   "python bench/ctr/challenge_stack_check.py " + " ".join(sys.argv[1:]), body)
    if failed:
        raise SystemExit(f"run_expid.py failed (exit {failed[0]['returncode']})")


def _f(v, fmt: str = ".4f") -> str:
    return "-" if v is None else format(v, fmt)


if __name__ == "__main__":
    main()
