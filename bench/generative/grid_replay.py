"""snap-research/GRID's TIGER training replayed step by step in ours: same initial weights, same batches.

    python bench/generative/grid_replay.py --dataset ml-1m --steps 100 --seed 2024

The budget runs of ``grid_parity.py`` differ in their random streams (initial weights, sampled sub-sequences,
dropout masks), and early in training that alone moves valid NDCG@10 by 15-30% between validations. This
bench removes the randomness to compare the update itself:

1. GRID trains ``--steps`` optimizer steps (``grid_tiger.py run --record``, ``grid_parity.py``'s sizes and
   optimizer, ``--dropout``, default 0, so no mask is random), validates and tests once at the last step.
   Its launcher saves GRID's initial weights and every training batch with the loss GRID computed on it.
2. Ours: TIGER with the same sizes and GRID's level sizes (``level_vocab: largest``) gets GRID's initial
   weights (``grid_weights.load_into_ours``), our trainer's optimizer (``build_optimizer``: AdamW, same learning
   rate and weight decay) and step (``accumulated_step``), and GRID's batches in our sample format (each
   row's history items and target item, decoded from GRID's codes).

The table (appended to bench/generative/RESULTS_generative.md) gives both losses at a few steps (GRID's unit:
the sum of the levels' cross-entropies; ours is their mean, times the levels here), the largest relative
difference over all steps, and after the last step our evaluator's valid and test Recall/NDCG@5/10 (GRID's
beam scores, ``beam_renormalise``) next to GRID's own.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from grid_parity import SHARED, grid_command  # noqa: E402
from grid_tiger import MANIFESTS, ROOT, WORK  # noqa: E402
from _results import exit_on_sigterm  # noqa: E402
from grid_weights import METRICS, load_into_ours, load_split, log_result, tiger_config  # noqa: E402


def run_grid(a: argparse.Namespace) -> dict:
    """GRID's ``--steps`` steps with recording; returns its result.json (``run_dir`` names the run)."""
    cmd = grid_command(a.dataset, a.codes, a.minutes, a.seed, f"replay-{a.seed}", a.dropout) + [
        "--max-steps", str(a.steps), "--val-every", str(a.steps), "--record"]
    out = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    if out.returncode:
        raise SystemExit(f"GRID's run failed (exit {out.returncode}); its log is printed above")
    return json.loads(out.stdout.strip().splitlines()[-1])


def code_lookup(sid: np.ndarray):
    """GRID's code rows ``[n, levels]`` -> our item tokens (index + 1), through the exported code table."""
    base = int(sid.max()) + 1
    weights = base ** np.arange(sid.shape[0] - 1, -1, -1, dtype=np.int64)
    keys = weights @ sid
    order = np.argsort(keys)

    def tokens(codes: np.ndarray) -> np.ndarray:
        k = codes @ weights
        at = np.clip(np.searchsorted(keys[order], k), 0, len(keys) - 1)
        if not (keys[order][at] == k).all():
            raise SystemExit("a GRID batch holds a code tuple of no item: the export and the run disagree")
        return order[at] + 1

    return tokens


def to_ours(record: dict, tokens, levels: int, max_len: int):
    """One recorded GRID batch -> our ``(inputs [B, max_len], targets [B, max_len])``: each row's history items
    left-aligned, its target item at the history's last position (``train_mode: subsequences``' layout).
    GRID's attention mask must cover exactly the row's codes (padding -1), so ours sees what GRID attended to."""
    import torch

    seq, labels = record["sequence"].numpy(), record["labels"].numpy().reshape(len(record["sequence"]), levels)
    real = seq >= 0
    if not np.array_equal(record["mask"].numpy().astype(bool), real):
        raise SystemExit("a GRID batch's attention mask is not its non-padding codes: the recorded layout is not "
                         "the expected one")
    n_hist = real.sum(1) // levels
    if (real.sum(1) % levels).any() or (n_hist < 1).any() or (n_hist > max_len).any():
        raise SystemExit("a GRID batch row is not whole items of history: the recorded layout is not the expected one")
    aligned = np.take_along_axis(seq, np.argsort(~real, axis=1, kind="stable"), 1)  # real codes first, in order
    inputs = np.zeros((len(seq), max_len), np.int64)
    width = seq.shape[1] // levels
    keep = np.arange(width)[None, :] < n_hist[:, None]  # the item slots that hold history
    items = np.zeros((len(seq), width), np.int64)
    items[keep] = tokens(aligned[:, :width * levels].reshape(len(seq), width, levels)[keep])
    inputs[:, :min(width, max_len)] = items[:, :max_len]
    targets = np.zeros_like(inputs)
    targets[np.arange(len(seq)), n_hist - 1] = tokens(labels)
    return torch.from_numpy(inputs), torch.from_numpy(targets)


def replay(a: argparse.Namespace, grid: dict, meta: dict) -> tuple[list[tuple[int, float, float]], dict, dict]:
    """Our TIGER through GRID's recorded steps; returns (step, GRID loss, our loss) per step and our valid /
    test metrics after the last step."""
    import torch

    from mmfeat.recommenders import build_model
    from mmfeat.recommenders.sequential import SequentialEvaluator
    from mmfeat.recommenders.tasks import accumulated_step
    from mmfeat.recommenders.trainer import build_optimizer

    torch.set_num_threads(1)
    record_dir = Path(grid["run_dir"]) / "record"
    data = load_split(meta)
    cfg = {**tiger_config(grid, meta), "beam_renormalise": True}
    model = build_model("TIGER", data, cfg)
    load_into_ours(model, torch.load(record_dir / "init.pt"))
    opt, _ = build_optimizer(model, {"learner": SHARED["learner"], "learning_rate": SHARED["learning_rate"],
                                     "weight_decay": SHARED["weight_decay"], "learning_rate_scheduler": [1.0, 1.0]},
                             torch.device("cpu"))
    levels = int(meta["levels"])
    tokens = code_lookup(torch.load(WORK / "grid" / a.dataset / "semantic_ids.pt").numpy())
    steps = sorted(record_dir.glob("step-*.pt"))
    if len(steps) != a.steps:
        raise SystemExit(f"GRID recorded {len(steps)} steps, not {a.steps}: see {grid['run_dir']}/grid.log")
    losses = []
    model.train()
    t0 = time.time()
    for i, path in enumerate(steps):
        rec = torch.load(path)
        batch = to_ours(rec, tokens, levels, cfg["max_seq_length"])
        ours = accumulated_step(model, opt, [(batch, 1.0)], None, 0, i) * levels  # GRID's unit: sum over levels
        losses.append((i + 1, rec["loss"], ours))
        if (i + 1) % 10 == 0:
            print(f"step {i + 1}: GRID {rec['loss']:.5f} ours {ours:.5f} ({time.time() - t0:.0f} s)", flush=True)
    model.eval()
    metrics = {}
    for split in ("valid", "test"):
        ev = SequentialEvaluator(data, split, max_len=cfg["max_seq_length"], topk=(5, 10), metrics=("recall", "ndcg"),
                                 batch_size=128)
        metrics[split] = ev.evaluate(model)
    return losses, metrics["valid"], metrics["test"]


def main() -> None:
    ap = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", choices=sorted(MANIFESTS), default="ml-1m")
    ap.add_argument("--codes", default="sid_rqvae")
    ap.add_argument("--steps", type=int, default=100, help="optimizer steps GRID trains and ours replays")
    ap.add_argument("--seed", type=int, default=2024, help="GRID's seed (its initial weights and sub-sequence draws)")
    ap.add_argument("--dropout", type=float, default=0.0, help="both sides (above 0 the masks differ)")
    ap.add_argument("--minutes", type=float, default=120.0, help="GRID's time cap (a safety net; --steps ends it)")
    a = ap.parse_args()
    exit_on_sigterm()  # a killed replay stops GRID's run too (grid_tiger.py stops its training on SIGTERM)
    meta = json.loads((WORK / "grid" / a.dataset / "meta.json").read_text())
    print(f"GRID: {a.steps} steps, recording its batches (progress: the run folder's grid.log)", flush=True)
    grid = run_grid(a)
    if grid.get("optimizer_steps") != a.steps:
        raise SystemExit(f"GRID stopped after {grid.get('optimizer_steps')} of {a.steps} steps (time cap?): raise "
                         f"--minutes")
    losses, valid, test = replay(a, grid, meta)
    rel = [abs(o - g) / g for _, g, o in losses]
    shown = sorted({1, 2, 10, len(losses) // 2, len(losses)})
    lines = ["| step | GRID loss | our loss | relative difference |", "|---|---|---|---|"]
    lines += [f"| {s} | {losses[s - 1][1]:.5f} | {losses[s - 1][2]:.5f} | {rel[s - 1]:.1e} |" for s in shown]
    lines += ["", "| after the last step | " + " | ".join(METRICS) + " |", "|---|---|---|---|---|"]
    for split, ours in (("valid", valid), ("test", test)):
        theirs = grid["best_valid"] if split == "valid" else grid["test"]
        lines.append(f"| {split}, GRID | " + " | ".join(f"{theirs[m]:.5f}" for m in METRICS) + " |")
        lines.append(f"| {split}, ours | " + " | ".join(f"{ours[m]:.5f}" for m in METRICS) + " |")
        lines.append(f"| {split}, ours / GRID | " + " | ".join(
            f"{ours[m] / theirs[m]:.3f}" if theirs[m] else "-" for m in METRICS) + " |")
    body = (f"GRID run {Path(grid['run_dir']).name}: {a.steps} steps, dropout {a.dropout:g}, seed {a.seed}; "
            f"largest relative loss difference over all steps {max(rel):.1e} (step {int(np.argmax(rel)) + 1}).\n\n"
            + "\n".join(lines))
    log_result(f"GRID's training replayed in our TIGER, {a.dataset}", body)


if __name__ == "__main__":
    main()
