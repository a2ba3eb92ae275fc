"""One table of every graph model against its reference, from the results the parity runs left behind.

    python bench/graph/parity_summary.py
    python bench/graph/parity_summary.py --models VBPR LIRDRec REARM --section speed-stragglers

Reads (nothing is re-run): bench/graph/mmrec_parity.py's ``bench/_work/res_*.json`` (MMRec and the MMRec-layout
seed-paper repositories), bench/graph/_mmhcl_runner.py's ``bench/_work/parity/mmhcl_<seed>.json``,
bench/graph/_rearm_runner.py's ``/tmp/rearm_bench/rearm_<side>_<seed>_<epochs>_<lr>.json`` and bench/graph/_dgvae_runner.py's
``bench/_work/dgvae_{ref,ours}_<seed>_100_p1000.json`` (100 epochs, no early stopping; both recalls divide by #held-out). Prints test Recall/NDCG@20 (mean over the seeds found),
ours relative to the reference, and seconds per epoch with the ratio; writes it to bench/graph/RESULTS_recommenders.md
(section ``parity-summary``, or ``--section``), unless no result was found at all (then it only prints) or
``--no-write``. ``--models`` keeps those rows only (a rerun of a few models, written to its own section, leaves
the full table as it was).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / "bench" / "_work"
sys.path.insert(0, str(ROOT / "bench"))
SEEDS = (999, 1, 2)
#: model -> (reference name, epochs budget) of the ML-100K runs (learning rate 0.01, 1 thread)
MMREC_LAYOUT = {"BPR": ("MMRec", 20), "LightGCN": ("MMRec", 20), "VBPR": ("MMRec", 20), "FREEDOM": ("MMRec", 20),
                "BM3": ("MMRec", 20), "LATTICE": ("MMRec", 20), "ItemKNNCBF": ("MMRec", 20),
                "CM3": ("enoche/CM3", 5), "LIRDRec": ("enoche/LIRDRec", 20)}


def _load(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def collect() -> list[dict]:
    rows = []
    for model, (ref, epochs) in MMREC_LAYOUT.items():
        pairs = [(_load(WORK / f"res_mmrec_{model}_{s}_{epochs}_0.01_1.json"), _load(WORK / f"res_ours_{model}_{s}_{epochs}_0.01_1.json"))
                 for s in SEEDS]
        rows.append({"model": model, "ref": ref, "epochs": epochs, "pairs": [p for p in pairs if all(p)]})
    mmhcl = [_load(WORK / "parity" / f"mmhcl_{s}.json") for s in SEEDS]
    rows.append({"model": "MMHCL", "ref": "Xu107/MMHCL", "epochs": 5,
                 "pairs": [(m["reference"], m["ours"]) for m in mmhcl if m], "ref_ndcg": "its own NDCG: not comparable"})
    rearm = [(_load(Path("/tmp/rearm_bench") / f"rearm_ref_{s}_5_0.01.json"),
              _load(Path("/tmp/rearm_bench") / f"rearm_ours_{s}_5_0.01.json")) for s in SEEDS]
    rows.append({"model": "REARM", "ref": "MrShouxingMa/REARM", "epochs": 5, "pairs": [p for p in rearm if all(p)]})
    dg = [(_load(WORK / f"dgvae_ref_{s}_100_p1000.json"), _load(WORK / f"dgvae_ours_{s}_100_p1000.json")) for s in SEEDS]
    rows.append({"model": "DGVAE", "ref": "enoche/DGVAE", "epochs": 100, "pairs": [p for p in dg if all(p)]})
    return rows


def table(rows: list[dict]) -> list[str]:
    out = ["| model | reference | epochs | seeds | ref test R@20 | ours | ours/ref | ref test N@20 | ours | ours/ref | "
           "ref s/epoch | ours s/epoch | ratio |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if not r["pairs"]:
            out.append(f"| {r['model']} | {r['ref']} | {r['epochs']} | 0 | (not run) | | | | | | | | |")
            continue
        mean = lambda side, f: float(np.mean([f(p[side]) for p in r["pairs"]]))
        rr, orr = mean(0, lambda x: x["test"]["recall@20"]), mean(1, lambda x: x["test"]["recall@20"])
        rn, on = mean(0, lambda x: x["test"]["ndcg@20"]), mean(1, lambda x: x["test"]["ndcg@20"])
        rs, os_ = mean(0, lambda x: x["s_per_epoch"]), mean(1, lambda x: x["s_per_epoch"])
        note_n = f" ({r['ref_ndcg']})" if "ref_ndcg" in r else ""
        note_r = f" ({r['ref_recall']})" if "ref_recall" in r else ""
        ratio = f"**{os_ / rs:.2f}x**" if rs > 0.05 else "- (closed-form)"
        n_rel = "n/a" if note_n else f"{on / rn - 1:+.1%}"
        out.append(f"| {r['model']} | {r['ref']} | {r['epochs']} | {len(r['pairs'])} | {rr:.4f}{note_r} | {orr:.4f} | "
                   f"{orr / rr - 1:+.1%} | {rn:.4f}{note_n} | {on:.4f} | {n_rel} | {rs:.3f} | {os_:.3f} | {ratio} |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n")[0])
    ap.add_argument("--no-write", action="store_true", help="print the table only")
    ap.add_argument("--models", nargs="+", help="these rows only (default: every model)")
    ap.add_argument("--section", default="parity-summary", help="the results section to replace")
    args = ap.parse_args()
    from mmrec_parity import update_results

    rows = collect()
    if args.models:
        unknown = sorted(set(args.models) - {r["model"] for r in rows})
        if unknown:
            ap.error(f"--models: no parity runs are known for {unknown}; known: {[r['model'] for r in rows]}")
        rows = [r for r in rows if r["model"] in args.models]
    lines = ["ML-100K (ratings >= 4, 5-core, seeded 8:1:1, the files of bench/graph/mmrec_parity.py), learning rate 0.01, "
             "CPU, 1 thread per side, one side at a time; test at the best-valid epoch, mean over the seeds.", ""]
    lines += table(rows)
    print("\n".join(lines))
    if args.no_write or not any(r["pairs"] for r in rows):
        if not args.no_write:
            print(f"no parity results under {WORK}: {Path(__file__).with_name('RESULTS_recommenders.md').name} left as it is")
        return
    cmd = " ".join(["python bench/graph/parity_summary.py"] + sys.argv[1:])
    update_results(Path(__file__).resolve().with_name("RESULTS_recommenders.md"), args.section,
                   [f"Command: `{cmd}`", ""] + lines)


if __name__ == "__main__":
    main()
