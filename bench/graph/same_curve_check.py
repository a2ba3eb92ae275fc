"""A speed change must not change what a model learns: the per-epoch validation curve of the current tree
against an earlier commit's, same data, seed and settings, with each side's seconds per epoch.

    python bench/graph/same_curve_check.py --base 468e29d --models VBPR LIRDRec FREEDOM REARM --epochs 5

The earlier commit is checked out with ``git worktree`` into a temporary folder (removed afterwards) and run by
extending ``mmfeat``'s package path with it, so ``mmfeat.recommenders`` resolves to that commit's code; the
current tree runs as installed. Both train on bench/graph/mmrec_parity.py's prepared ML-100K files (prepared on
the first run if absent), one process at a time, one thread each, with MMRec's hyper-parameters from its
``MODELS`` table (a model missing there gets its own defaults) and ``--lr``.

Prints, per model, epoch | valid Recall@20 base | current | |difference| and the seconds per epoch of each side;
``--results`` also writes the table (with the command) into bench/graph/RESULTS_recommenders.md under
``--section``. Exact math gives equal curves up to float rounding (differences around 1e-4 and below after a
few epochs, as summation order changes); a different update shows up as a drift that grows with the epochs.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench" / "graph"))


def worker(tree: str | None, model: str, epochs: int, seed: int, lr: float, out: str) -> None:
    """Train ``model`` from ``tree``'s code (None: the installed current tree) and write its curve to ``out``."""
    import mmfeat
    if tree:
        mmfeat.__path__.insert(0, tree)  # mmfeat.recommenders -> <tree>/recommenders (before the editable finder)
    import torch

    torch.set_num_threads(1)
    import mmrec_parity as mp
    from mmfeat.recommenders import train

    assert tree is None or Path(sys.modules["mmfeat.recommenders"].__file__).is_relative_to(tree)
    d = mp.load_ours(mp.prepare(mp.WORK / "ml100k"))  # the prepared files (built on the first run)
    cfg = {**mp.MODELS.get(model, {}), "epochs": epochs, "seed": seed, "learning_rate": lr, "stopping_step": epochs}
    with tempfile.TemporaryDirectory() as runs:
        r = train(d, model, cfg, runs_dir=runs, progress=False)
    Path(out).write_text(json.dumps({"curve": [e["valid"]["recall@20"] for e in r.epochs if "valid" in e],
                                     "s_per_epoch": r.s_per_epoch}))


def run_side(tree: str | None, model: str, a) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        cmd = [sys.executable, __file__, "_worker", "--model", model, "--epochs", str(a.epochs), "--seed", str(a.seed),
               "--lr", str(a.lr), "--out", f.name] + (["--tree", tree] if tree else [])
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        p = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if p.returncode:
            raise RuntimeError(f"{model} ({tree or 'current'}) failed:\n{p.stderr[-3000:]}")
        return json.loads(Path(f.name).read_text())


def main() -> None:
    ap = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n")[0])
    ap.add_argument("mode", nargs="?", default="run", choices=["run", "_worker"])
    ap.add_argument("--base", help="the earlier commit (run mode)")
    ap.add_argument("--models", nargs="+", default=["VBPR"])
    ap.add_argument("--model")
    ap.add_argument("--tree")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--seed", type=int, default=999)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--out")
    ap.add_argument("--results", action="store_true", help="also write the table into RESULTS_recommenders.md")
    ap.add_argument("--section", default="same-curve-check")
    a = ap.parse_args()
    if a.mode == "_worker":
        worker(a.tree, a.model, a.epochs, a.seed, a.lr, a.out)
        return
    if not a.base:
        ap.error("--base COMMIT is required")
    base_dir = Path(tempfile.mkdtemp(prefix="same-curve-"))
    added = subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(base_dir), a.base],
                           capture_output=True, text=True)
    if added.returncode:
        base_dir.rmdir()
        raise SystemExit(f"--base {a.base}: git worktree add failed: {added.stderr.strip()}")
    lines = [f"ML-100K (bench/graph/mmrec_parity.py's files), seed {a.seed}, learning rate {a.lr}, {a.epochs} epochs, "
             f"CPU, 1 thread, one side at a time; base = `{a.base}`, current = the working tree.", ""]
    try:
        for model in a.models:
            base, cur = run_side(str(base_dir), model, a), run_side(None, model, a)
            lines += [f"**{model}**: s/epoch base {base['s_per_epoch']:.3f}, current {cur['s_per_epoch']:.3f} "
                      f"({cur['s_per_epoch'] / base['s_per_epoch']:.2f}x)", "",
                      "| epoch | valid R@20 base | current | abs diff |", "|---|---|---|---|"]
            for e, (b, c) in enumerate(zip(base["curve"], cur["curve"])):
                lines.append(f"| {e} | {b:.4f} | {c:.4f} | {abs(b - c):.1e} |")
            lines.append("")
            print("\n".join(lines[-(len(base["curve"]) + 5):]), flush=True)
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base_dir)], capture_output=True)
    if a.results:
        from mmrec_parity import update_results
        cmd = "python bench/graph/same_curve_check.py " + " ".join(sys.argv[1:]).replace(" --results", "")
        update_results(Path(__file__).resolve().with_name("RESULTS_recommenders.md"), a.section,
                       [f"Command: `{cmd}`", ""] + lines)


if __name__ == "__main__":
    main()
