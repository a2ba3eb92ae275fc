"""The MMCTR challenge's own stack reads our export as written: ``run_expid.py`` of salmon1802/QIN, unmodified,
on FuxiCTR 2.3.7 (the challenge's pin, numpy < 2, scikit-learn < 1.5), with our exported dataset config.

    python bench/ctr/challenge_stack_check.py [--dataset ml-100k] [--expid DIN_default] [--epochs 1]
        [--python /work/fuxictr237-venv/bin/python]

What it does, nothing more:
  * exports the bench's MMCTR folder (:func:`fuxictr_ctr_parity.prepare`, once);
  * copies the QIN checkout (outside the repo) to a temp dir, links the four parquet files under its
    ``data/<name>/`` (run_expid.py writes feature_map.json next to them, so the export is never written);
  * writes a config dir with our ``<name>.yaml`` byte for byte as ``dataset_config/<name>.yaml`` and the
    checkout's ``config/qin_config/model_config.yaml`` with three keys changed in Base and the experiment:
    ``dataset_id`` (our name), ``epochs`` (the budget) and ``num_workers`` (1: this machine has 2 cores);
  * runs ``python run_expid.py --config ./config/mmfeat/ --expid EXPID --gpu -1`` in that copy and reports
    its validation AUC/logloss lines, the exit status and the wall time (appended to RESULTS_ctr.md).

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
from fuxictr_ctr_parity import QIN_DIR, append_results, prepare  # noqa: E402

DEFAULT_PYTHON = os.environ.get("FUXICTR237_PYTHON", "/work/fuxictr237-venv/bin/python")
#: the only keys of the challenge's model config this check changes (why: see the module docstring)
CHANGED_KEYS = ("dataset_id", "epochs", "num_workers")


def challenge_config_dir(qin: Path, export: Path, expid: str, epochs: int) -> Path:
    """``qin/config/mmfeat/``: our dataset yaml as written + the challenge's model config (3 keys changed)."""
    name = export.name
    cfg_dir = qin / "config" / "mmfeat"
    (cfg_dir / "dataset_config").mkdir(parents=True)
    shutil.copyfile(export / f"{name}.yaml", cfg_dir / "dataset_config" / f"{name}.yaml")
    models = yaml.safe_load((qin / "config" / "qin_config" / "model_config.yaml").read_text())
    if expid not in models:
        raise SystemExit(f"{expid!r} is not in the checkout's model_config.yaml: {', '.join(models)}")
    kept = {"Base": {**models["Base"], "num_workers": 1},
            expid: {**models[expid], "dataset_id": name, "epochs": epochs}}
    (cfg_dir / "model_config.yaml").write_text(yaml.safe_dump(kept, sort_keys=False))
    return cfg_dir


def run_challenge(python: str, export: Path, expid: str, epochs: int, timeout: float) -> dict:
    """Run the checkout's run_expid.py on ``export``; returns status, metrics lines and timings."""
    work = Path(tempfile.mkdtemp(prefix="mmctr_challenge_"))
    try:
        qin = work / "qin"
        shutil.copytree(QIN_DIR, qin, ignore=shutil.ignore_patterns("checkpoints", "submission", "data"))
        data = qin / "data" / export.name
        data.mkdir(parents=True)
        for f in ("train", "valid", "test", "item_info"):
            os.symlink(export / f"{f}.parquet", data / f"{f}.parquet")
        challenge_config_dir(qin, export, expid, epochs)
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
        return {"ok": proc.returncode == 0, "returncode": proc.returncode, "wall_s": wall, "metrics": metrics,
                "versions": version, "config_sha": written, "tail": log[-1500:]}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--expid", default="DIN_default", help="an experiment of config/qin_config/model_config.yaml")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--python", default=DEFAULT_PYTHON, help="the FuxiCTR 2.3.7 venv's python")
    ap.add_argument("--timeout", type=float, default=3600)
    args = ap.parse_args()
    if not Path(args.python).is_file():
        raise SystemExit(f"no python at {args.python}: bash bench/ctr/setup_fuxictr.sh /work/fuxictr237-venv 2.3.7")
    export = prepare(args.dataset)
    r = run_challenge(args.python, export, args.expid, args.epochs, args.timeout)
    print(r["tail"])
    fx, np_v, sk = (r["versions"] + ["?"] * 3)[:3]
    body = (f"FuxiCTR {fx} (numpy {np_v}, scikit-learn {sk}), `run_expid.py --expid {args.expid}` of the QIN "
            f"checkout, unmodified; our `{export.name}.yaml` as written (sha256 {r['config_sha']}); model config "
            f"keys changed: {', '.join(CHANGED_KEYS)} (epochs {args.epochs}).\n\n"
            f"| exit | wall s | metrics lines (valid per epoch, then the final validation) |\n|---|---|---|\n"
            f"| {r['returncode']} | {r['wall_s']:.0f} | {'; '.join(r['metrics']) or '-'} |")
    if not r["ok"]:
        body += "\n\n```\n" + r["tail"][-800:] + "\n```"
    append_results(f"challenge stack reads the export: {args.expid} on {args.dataset}",
                   "python bench/ctr/challenge_stack_check.py " + " ".join(sys.argv[1:]), body)
    if not r["ok"]:
        raise SystemExit(f"run_expid.py failed (exit {r['returncode']})")


if __name__ == "__main__":
    main()
