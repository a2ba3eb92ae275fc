"""Proof that MMRec's own ``main.py`` trains from an ``mmfeat`` MMRec export folder as written.

    python bench/graph/mmrec_export_check.py --mmrec-src /tmp/mmrec/src --epochs 2
    python bench/graph/mmrec_export_check.py --mmrec-src /tmp/mmrec/src --features random   # no model weights needed

1. features for the embedded MicroLens sample (manifest ``microlens``): with ``--features minilm``
   (default) the real all-MiniLM-L6-v2 embeds each title (``text_feat``) and, since the sample's
   covers have no offline CLIP, a second *text* view, tags + comments, for the ``image_feat`` slot
   (as bench/graph/mmrec_parity.py does); ``--features random`` uses seeded random vectors. Either way
   they enter a fresh store through ``mmfeat.pipelines.store.imports.import_features``.
2. ``mmfeat.pipelines.store.exports.export_mmrec`` writes ``<work>/export/mlmini`` (``.inter``, features,
   mappings, ``mlmini.yaml``). The export folder is not touched after that.
3. A copy of the MMRec checkout's ``src/`` gets the exported ``mlmini.yaml`` in
   ``configs/dataset/`` (the file as written, plus an appended, marked ``epochs:`` line so the run
   is short) and a copy of the export folder at ``data/mlmini`` (MMRec's default
   ``data_path: ../data/``; FREEDOM caches its item graph there, hence a copy). Then
   ``python main.py -m <model> -d mlmini`` runs in a subprocess with the shims
   bench/graph/mmrec_parity.py uses for modules MMRec imports but never needs here (lmdb, raw-image
   utils) and for NumPy/SciPy APIs it calls that were removed since (``np.float``, ``dok_matrix._update``).
4. The script reads MMRec's ``best valid result`` / ``test result`` log lines per model, prints a
   table, writes ``<work>/summary.json``, and exits non-zero if a model reported no metrics.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

NAME = "mlmini"
#: quick_start's per-grid-point summary: "best valid result: ..." then "test result: ..." (one line each)
RESULT_PAIR = re.compile(r"best valid result: (.*)\n.*?test result: (.*)")


def build_store(work: Path, features: str) -> "object":
    """A fresh store with ``title_view`` and ``tags_view`` versions of the sample (imported)."""
    from mmfeat.pipelines.engine.extract import load_items
    from mmfeat.pipelines.store.imports import import_features
    from mmfeat.pipelines.manifest import load_manifest
    from mmfeat.pipelines.store.feature_store import FeatureStore

    items = load_items(load_manifest("microlens"))[0].to_pandas()
    ids = items["item_id"].astype(str).tolist()
    views = {"title_view": items["title"].fillna("").tolist(),
             "tags_view": (items["tags"].fillna("") + ". " + items["comments"].fillna("")).tolist()}
    store = FeatureStore(work / "store")
    (work / "ids.txt").write_text("\n".join(ids) + "\n")
    rng = np.random.default_rng(0)
    for fs, texts in views.items():
        if features == "minilm":
            from mmfeat.featurizers.text_embedding import TextEmbedder

            res = TextEmbedder("all-MiniLM-L6-v2", batch_size=32)(texts)
            mat = np.stack([r.value for r in res]).astype(np.float32)
        else:
            mat = rng.normal(size=(len(ids), 64)).astype(np.float32)
        np.save(work / f"{fs}.npy", mat)
        import_features(store, "microlens-mini", fs, work / f"{fs}.npy", ids=work / "ids.txt")
    return store


def run_main(mmrec_src: Path, model: str, epochs: int, export: Path, run_dir: Path) -> dict:
    """``main.py -m model -d mlmini`` in a fresh copy of MMRec's src/ with the export installed."""
    src = run_dir / "src"
    shutil.copytree(mmrec_src, src, ignore=shutil.ignore_patterns("log", "saved", "__pycache__"))
    shutil.copytree(export, run_dir / "data" / NAME)
    cfg = (export / f"{NAME}.yaml").read_text() + f"\n# appended by bench/graph/mmrec_export_check.py: a short run\nepochs: {epochs}\n"
    (src / "configs" / "dataset" / f"{NAME}.yaml").write_text(cfg)
    code = ("import runpy, sys; sys.path.insert(0, %r); from mmrec_parity import _mmrec_shims; _mmrec_shims(); "
            "sys.argv = ['main.py', '-m', %r, '-d', %r]; sys.path.insert(0, '.'); "
            "runpy.run_path('main.py', run_name='__main__')") % (str(Path(__file__).resolve().parent), model, NAME)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    r = subprocess.run([sys.executable, "-c", code], cwd=src, capture_output=True, text=True, env=env, timeout=1800)
    out = r.stdout + r.stderr
    pairs = RESULT_PAIR.findall(out)
    valid, test = pairs[0] if pairs else ("", "")  # the first hyper-parameter point's results
    parse = lambda s: {k.strip(): float(v) for k, v in re.findall(r"([a-z]+@\d+): ([0-9.]+)", s)}  # noqa: E731
    return {"returncode": r.returncode, "best_valid": parse(valid), "test": parse(test), "grid_points": len(pairs),
            "tail": out[-1500:] if r.returncode else ""}


def main() -> int:
    ap = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n")[0])
    ap.add_argument("--mmrec-src", default=os.environ.get("MMREC_SRC", "/tmp/mmrec/src"))
    ap.add_argument("--work", default=None, help="working folder (default: a temporary one)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--models", nargs="+", default=["LightGCN", "FREEDOM"])
    ap.add_argument("--features", choices=["minilm", "random"], default="minilm")
    a = ap.parse_args()
    src = Path(a.mmrec_src)
    if not (src / "main.py").is_file():
        print(f"no MMRec checkout at {src} (git clone https://github.com/enoche/MMRec /tmp/mmrec)", file=sys.stderr)
        return 2
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    work = Path(a.work or tempfile.mkdtemp(prefix="mmrec-export-"))
    work.mkdir(parents=True, exist_ok=True)
    from mmfeat.pipelines.store.exports import export_mmrec

    store = build_store(work, a.features)
    rec = export_mmrec(store, "microlens", {"text_feat": "title_view", "image_feat": "tags_view"}, work / "export" / NAME)
    print(f"export: {work / 'export' / NAME}  users {rec['n_users']}  items {rec['n_items']}  "
          f"split {rec['split']['method']} {rec['split']['sha256'][:12]}  rows by x_label {rec['split']['rows_by_x_label']}")
    summary = {}
    for model in a.models:
        summary[model] = run_main(src, model, a.epochs, work / "export" / NAME, work / f"run-{model}")
    (work / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"\nMMRec main.py, {a.epochs} epochs, features={a.features} (first grid point's results)\n")
    print("| model | rc | grid points | valid recall@20 | test recall@20 | test ndcg@20 |\n|---|---|---|---|---|---|")
    ok = True
    for model, s in summary.items():
        v, t = s["best_valid"], s["test"]
        print(f"| {model} | {s['returncode']} | {s['grid_points']} | {v.get('recall@20', float('nan')):.4f} | "
              f"{t.get('recall@20', float('nan')):.4f} | {t.get('ndcg@20', float('nan')):.4f} |")
        if s["returncode"] or "recall@20" not in v or "recall@20" not in t:
            ok = False
            print(s["tail"], file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
