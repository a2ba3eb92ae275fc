"""Our TIGER and snap-research/GRID's TIGER side by side: same split, codes, sizes, budget and seed, one core each.

    bash bench/generative/setup_grid.sh                                    # GRID's venv and checkout, once
    python bench/generative/grid_tiger.py export --dataset ml-1m           # our split + codes in GRID's format, once
    python bench/generative/grid_parity.py --dataset ml-1m --minutes 20 --seeds 2024 2025

Per seed, two processes start at once, each with one thread (so on a 2-core machine the wall-clock budget is
also each run's CPU budget):

* GRID: ``grid_tiger.py run`` (GRID's own training loop in its venv; see that script for what it runs) with the
  model and training settings below, validating every ``--val-every`` optimizer steps, stopping at
  ``--minutes`` (Lightning's ``max_time``) or after ``--patience`` validations without improvement, then
  testing its best checkpoint;
* ours: ``generative_bench.py``'s worker (``run_training`` on the ``movielens-1m`` manifest with the
  ``tiger-cpu`` preset) with the same settings, ``time_limit_s`` = ``--minutes``, early stopping with the same
  patience, test at the best validation.

Shared settings (both sides): 64-d T5, 2 encoder + 2 decoder layers, 2 heads of 32, a 256-d feed-forward, dropout
0.1, AdamW lr 1e-3 / weight decay 0.01, float32, 20 items of history, beam 20 constrained to real items,
selection on valid NDCG@10. ``--sampling`` picks our training samples:

* ``subsequences`` (default): GRID's own draw (``train_mode: subsequences``): 32 users per batch, up to 1,024
  distinct random contiguous sub-sequences of theirs; our epoch is half the users (``train_sample_fraction``
  0.5, 95 steps on ML-1M), so ours validates about as often as GRID with ``--val-every 96``;
* ``prefix``: our default, every train target once per epoch with its newest 20 items, batches of 1,024 targets
  from all users, an epoch of 10% of them (the budget runs of ``generative_bench.py``).

``--level-vocab largest`` gives our TIGER GRID's level sizes (256 codes at every level), ``--beam-renormalise``
GRID's beam scores; ``--reuse-grid`` runs ours only, beside GRID's newest earlier run with the same seed and
settings (named in the table).

The table (appended to bench/generative/RESULTS_generative.md) gives each side's test Recall/NDCG@5/10, the
valid NDCG@10 at every validation with the optimizer steps before it and the mean training loss since the
last one (GRID's unit: the sum of the levels' cross-entropies), and ours / GRID per metric.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(HERE))
from _results import append_results, exit_on_sigterm  # noqa: E402

METRICS = ["recall@5", "ndcg@5", "recall@10", "ndcg@10"]
#: the settings both sides share (module doc); GRID's spelling is grid_tiger.py's ``run`` arguments
SHARED = {"dropout_prob": 0.1, "max_seq_length": 20, "beam_size": 20, "learner": "adamw", "learning_rate": 1e-3,
          "weight_decay": 0.01, "train_batch_size": 1024, "train_precision": "float32", "topk": [5, 10],
          "metrics": ["recall", "ndcg"], "valid_metric": "ndcg@10", "mask_history": False, "epochs": 10_000}
SAMPLING = {"subsequences": {"train_mode": "subsequences", "train_users_per_batch": 32, "train_sample_fraction": 0.5},
            "prefix": {"train_mode": "prefix", "train_sample_fraction": 0.1}}


def _env() -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def grid_command(dataset: str, codes: str, minutes: float, seed: int, tag: str, dropout: float = SHARED["dropout_prob"],
                 ) -> list[str]:
    """``grid_tiger.py run`` with the shared settings (module doc); callers append validation and stop flags."""
    return [sys.executable, str(HERE / "grid_tiger.py"), "run", "--dataset", dataset, "--codes", codes,
            "--minutes", str(minutes), "--d-model", "64", "--num-layers", "2", "--num-heads", "2", "--d-kv", "32",
            "--d-ff", "256", "--dropout", str(dropout), "--beam", str(SHARED["beam_size"]),
            "--lr", str(SHARED["learning_rate"]), "--weight-decay", str(SHARED["weight_decay"]),
            "--batch-size", str(SHARED["train_batch_size"]), "--users-per-batch", "32", "--seed", str(seed),
            "--threads", "1", "--nice", "0", "--tag", tag]


def start_grid(a: argparse.Namespace, seed: int, log) -> subprocess.Popen:
    cmd = grid_command(a.dataset, a.codes, a.minutes, seed, f"parity-{seed}") + [
        "--val-every", str(a.val_every), "--patience", str(a.patience)]
    return subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=log, text=True, cwd=ROOT)


def start_ours(a: argparse.Namespace, seed: int, log) -> subprocess.Popen:
    spec = {"dataset": a.dataset, "model": "TIGER", "features": {"codes": a.codes}, "threads": 1,
            "preset": "tiger-cpu",
            "config": {**SHARED, **SAMPLING[a.sampling], "level_vocab": a.level_vocab,
                       "beam_renormalise": a.beam_renormalise, "stopping_step": a.patience,
                       "seed": seed,
                       "time_limit_s": 60 * a.minutes}}
    cmd = [sys.executable, str(HERE / "generative_bench.py"), "_worker", json.dumps(spec)]
    return subprocess.Popen(cmd, env={**_env(), "MMFEAT_STORE": str(ROOT / "bench/_work/generative/store"),
                                      "MMFEAT_RUNS": str(ROOT / "bench/_work/generative/runs")},
                            stdout=subprocess.PIPE, stderr=log, text=True, cwd=ROOT)


def _last_json(p: subprocess.Popen, name: str, log_path: Path) -> dict:
    out, _ = p.communicate()
    if p.returncode:
        raise SystemExit(f"{name} exited {p.returncode}: see {log_path}")
    return json.loads(out.strip().splitlines()[-1])


def reused_grid(a: argparse.Namespace, seed: int) -> dict | None:
    """The newest earlier GRID result of this script with the same seed, budget and settings, if any."""
    import grid_tiger

    want = {f"seed={seed}", f"+trainer.max_time={grid_tiger._hydra_str(grid_tiger._dhms(a.minutes * 60))}",
            f"trainer.val_check_interval={a.val_every}", f"callbacks.early_stopping.patience={a.patience}",
            "model.huggingface_model.config.d_model=64", "optim.optimizer.lr=0.001",
            f"data_loading.train_dataloader_config.dataloader.collate_fn.max_batch_size={SHARED['train_batch_size']}"}
    runs = sorted((ROOT / "bench/_work/generative/grid" / a.dataset / "runs").glob(f"parity-{seed}-*/result.json"))
    for path in reversed(runs):
        res = json.loads(path.read_text())
        if res.get("codes") == a.codes and want <= set(res["overrides"]):
            res["reused"] = path.parent.name
            return res
    return None


def one_seed(a: argparse.Namespace, seed: int, logs: Path) -> tuple[dict, dict]:
    """GRID and ours at once (or ours beside nothing, reusing GRID's earlier run); returns (grid, ours)."""
    grid_done = reused_grid(a, seed) if a.reuse_grid else None
    if a.reuse_grid and grid_done is None:
        raise SystemExit(f"--reuse-grid: no earlier GRID run with seed {seed} and these settings; run without it")
    grid_log, ours_log = logs / f"grid-{seed}.log", logs / f"ours-{seed}.log"
    print(f"seed {seed}: {'ours' if grid_done else 'GRID and ours'} training for {a.minutes:g} min; progress in "
          f"{ours_log}" + ("" if grid_done else f" and {grid_log}"), flush=True)
    with open(ours_log, "w") as ol, open(os.devnull if grid_done else grid_log, "w") as gl:
        grid = None if grid_done else start_grid(a, seed, gl)
        ours = start_ours(a, seed, ol)
        try:
            return grid_done or _last_json(grid, "GRID", grid_log), _last_json(ours, "ours", ours_log)
        finally:
            for p in (grid, ours):
                if p is not None and p.poll() is None:
                    p.terminate()  # grid_tiger.py stops GRID's training on SIGTERM (a kill would orphan it)
                    try:
                        p.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        p.kill()


def grid_losses(grid: dict) -> list[float]:
    """GRID's mean training loss (the sum over levels, per step) between consecutive validations."""
    import csv

    files = sorted(Path(grid["run_dir"]).glob("csv/*/metrics.csv"))
    if not files:
        return []
    with open(files[-1]) as f:
        steps = [float(r["train/loss_step"]) for r in csv.DictReader(f) if r.get("train/loss_step")]
    bounds = [0] + [r["step"] for r in grid["valid_curve"]]
    return [sum(steps[a:b]) / len(steps[a:b]) for a, b in zip(bounds[:-1], bounds[1:]) if steps[a:b]]


def rows(seed: int, grid: dict, ours: dict, users: int, levels: int, sampling: str, level_vocab: str) -> list[str]:
    """Table rows of one seed: GRID, ours, and ours / GRID per test metric. Each validation shows its valid
    NDCG@10, the optimizer steps before it and the mean training loss since the last one, in GRID's unit (the
    sum of the levels' cross-entropies; ours is their mean, so it is multiplied by the levels)."""
    fraction = SAMPLING[sampling]["train_sample_fraction"]
    steps_per_epoch = -(-round(users * fraction) // 32) if sampling == "subsequences" else None
    g_loss = grid_losses(grid)
    g_curve = " ".join(f"{r['ndcg@10']:.4f} ({r['step']}" + (f", {g_loss[i]:.2f}" if i < len(g_loss) else "") + ")"
                       for i, r in enumerate(grid["valid_curve"]))
    o_loss = [v / steps_per_epoch * levels for v in ours.get("loss_curve", [])] if steps_per_epoch else []
    o_curve = " ".join(f"{v:.4f}" + (f" ({(i + 1) * steps_per_epoch}, {o_loss[i]:.2f})" if o_loss else "")
                       for i, v in enumerate(ours["valid_curve"]))
    name = f"GRID (reused run {grid['reused']})" if grid.get("reused") else "GRID"
    out = [f"| {seed} | {name} | " + " | ".join(f"{grid['test'][m]:.4f}" for m in METRICS)
           + f" | {grid['optimizer_steps']} | {grid['stop_reason']} | {g_curve} |",
           f"| {seed} | ours ({sampling}{', level_vocab ' + level_vocab if level_vocab != 'own' else ''}) | " + " | ".join(f"{ours['test'][m]:.4f}" for m in METRICS)
           + f" | {ours['epochs'] * steps_per_epoch if steps_per_epoch else '-'} | {ours['stop_reason']} | {o_curve} |",
           f"| {seed} | ours / GRID | " + " | ".join(
               f"{ours['test'][m] / grid['test'][m]:.2f}" if grid["test"][m] else "-" for m in METRICS) + " | | | |"]
    return out



def main() -> None:
    ap = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", choices=["ml-100k", "ml-1m"], default="ml-1m")
    ap.add_argument("--codes", default="sid_rqvae", help="semantic-ID feature set in bench/_work/generative/store")
    ap.add_argument("--minutes", type=float, default=20.0, help="wall-clock budget of each run (training + validation)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[2024])
    ap.add_argument("--sampling", choices=sorted(SAMPLING), default="subsequences", help="our training samples")
    ap.add_argument("--level-vocab", choices=["own", "largest"], default="own",
                    help="our TIGER's level_vocab (largest: every level sized like GRID's, 256 codes)")
    ap.add_argument("--beam-renormalise", action="store_true",
                    help="our TIGER ranks by GRID's rule (beam_renormalise: scores renormalised over the valid codes)")
    ap.add_argument("--reuse-grid", action="store_true",
                    help="take GRID's side from its newest earlier run with the same seed and settings (said in the "
                         "table) and run ours only")
    ap.add_argument("--val-every", type=int, default=96, help="GRID: optimizer steps between validations")
    ap.add_argument("--patience", type=int, default=5, help="validations without improvement before stopping")
    a = ap.parse_args()
    exit_on_sigterm()  # a killed benchmark stops both runs
    export = ROOT / "bench/_work/generative/grid" / a.dataset / "meta.json"
    if not export.exists():
        raise SystemExit(f"no GRID export at {export.parent}: run `python bench/generative/grid_tiger.py export "
                         f"--dataset {a.dataset}` first")
    meta = json.loads(export.read_text())
    users, levels = meta["n_users"], meta["levels"]
    logs = ROOT / "bench/_work/generative/parity_logs"
    logs.mkdir(parents=True, exist_ok=True)
    command = "python bench/generative/grid_parity.py " + " ".join(sys.argv[1:])
    lines = ["| seed | run | R@5 | N@5 | R@10 | N@10 | optimizer steps | stopped by | valid N@10 per validation "
             "(steps, mean training loss since the last) |", "|---|---|---|---|---|---|---|---|---|"]
    for seed in a.seeds:
        t = time.time()
        grid, ours = one_seed(a, seed, logs)
        print(f"seed {seed}: {time.time() - t:.0f} s; GRID test {grid['test']}; ours test {ours['test']}", flush=True)
        lines += rows(seed, grid, ours, users, levels, a.sampling, a.level_vocab)
    body = (f"{a.dataset}, codes {a.codes}, {a.minutes:g} min per run (training + validation), GRID and ours at "
            f"once, one thread each; ours: `train_mode: {a.sampling}`, `level_vocab: {a.level_vocab}`, "
            f"`beam_renormalise: {str(a.beam_renormalise).lower()}`; logs in "
            f"bench/_work/generative/parity_logs.\n\n"
            + "\n".join(lines))
    print(body)
    append_results(HERE / "RESULTS_generative.md", "Generative recommendation benchmark log",
                   f"TIGER vs snap-research/GRID, {a.dataset}", command, body)


if __name__ == "__main__":
    main()
