"""TIGER's speed on MovieLens-1M: training milliseconds per 1,000 targets and inference milliseconds per user,
against our SASRec, in one process on the same split.

    python bench/generative/tiger_speed.py --threads 1

* Training: the first ``--batches`` batches of one epoch of each model's default samples (TIGER: every
  sub-sequence, 20 items of history; SASRec: RecBole's samples, 50 items), float32 and bfloat16 autocast,
  TIGER at the paper's size and the ``tiger-cpu`` preset's. Every variant runs ``--passes`` times in turn
  after an uncounted warm-up pass; the median pass is reported, per 1,000 targets.
* Inference: ``full_sort_predict`` over the first ``--users`` test histories in batches of 128. TIGER decodes
  with its KV cache and, for comparison, re-decoding every prefix with the encoder states repeated per beam
  (the decoding before the cache; same items and scores, tests/test_generative.py).

Needs the ``sid_rqvae`` codes (``python bench/generative/generative_bench.py codes --dataset ml-1m``).
Results are appended to bench/generative/RESULTS_generative.md.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def _uncached_top_items(model, inputs):
    """TIGER's beam search re-decoding every prefix, the encoder states repeated per beam."""
    import torch.nn.functional as F

    from mmfeat.recommenders.generative import constrained_beam_search

    memory, pad = model.encode_history(inputs)

    def step(prefix, level, parent):
        width = len(prefix) // len(inputs)
        states = model.decode(prefix, memory.repeat_interleave(width, 0), pad.repeat_interleave(width, 0))
        return F.log_softmax(model.level_logits(states[:, -1], level), -1)

    return constrained_beam_search(step, model._tables, len(inputs), model.beam, inputs.device)


def main() -> None:
    ap = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batches", type=int, default=4)
    ap.add_argument("--passes", type=int, default=2)
    ap.add_argument("--users", type=int, default=512)
    args = ap.parse_args()

    import numpy as np
    import torch

    import generative_bench as gb
    from mmfeat.pipelines.environment import apply_defaults

    apply_defaults()
    from mmfeat.pipelines.training.presets import get_preset
    from mmfeat.pipelines.training.run import load_training_data
    from mmfeat.recommenders.models.base import build_model, resolve_config
    from mmfeat.recommenders.sequential.batches import epoch_batches, histories
    from mmfeat.recommenders.sequential.training import SequentialTask

    torch.set_num_threads(args.threads)
    data, _ = load_training_data("movielens-1m", {"codes": "sid_rqvae"}, task="sequential",
                                 store_root=str(gb.WORK / "store"), runs_dir=str(gb.WORK / "runs"))
    cpu = get_preset("tiger-cpu").settings
    models = {"TIGER (paper size)": ("TIGER", {}), "TIGER (tiger-cpu)": ("TIGER", cpu),
              "SASRec": ("SASRec", {**gb.SASREC})}
    train_rows, infer_rows, infer_ms = [], [], {}
    for label, (name, settings) in models.items():
        cfg = resolve_config(name, settings)
        torch.manual_seed(0)
        model = build_model(name, data, cfg)
        opt = torch.optim.Adam(model.parameters(), 1e-3)
        task = SequentialTask(name, data, cfg)
        batches = list(epoch_batches(task.tokens, task.starts, task.ends, task.n_targets, task.max_len,
                                     int(cfg["train_batch_size"]), np.random.default_rng(0)))[:args.batches]
        targets = sum(int((t > 0).sum()) for _, t in batches)
        rows = max(1, int(cfg["max_tokens_per_forward"]) // task.max_len)
        times: dict[str, list[float]] = {"float32": [], "bfloat16": []}
        model.train()
        for rep in range(args.passes + 1):
            for precision in times:
                t0 = time.perf_counter()
                for inputs, tgt in batches:
                    opt.zero_grad(set_to_none=True)
                    n = float((tgt > 0).sum())
                    for a in range(0, len(inputs), rows):
                        part = (inputs[a:a + rows], tgt[a:a + rows])
                        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bfloat16"):
                            loss = model.calculate_loss(part) * (float((part[1] > 0).sum()) / n)
                        loss.backward()
                    opt.step()
                if rep:
                    times[precision].append((time.perf_counter() - t0) / targets * 1000 * 1000)
        for precision, ms in times.items():
            train_rows.append(f"| {label} | {precision} | {statistics.median(ms):.0f} |")
            print(train_rows[-1], flush=True)
        model.eval()
        model.prepare_eval()
        inputs, lengths = histories(data.tokens, data.indptr, data.history_end("test"), task.max_len)
        inputs, lengths = inputs[:args.users], lengths[:args.users]
        variants = {"": model.full_sort_predict}
        if name == "TIGER":
            variants = {", KV cache": model.full_sort_predict,
                        ", no cache": lambda x, n: _uncached_top_items(model, x)}
        for suffix, fn in variants.items():
            with torch.no_grad():
                t0 = time.perf_counter()
                for a in range(0, len(inputs), 128):
                    fn(torch.from_numpy(inputs[a:a + 128]), torch.from_numpy(lengths[a:a + 128]))
                infer_ms[label + suffix] = (time.perf_counter() - t0) / len(inputs) * 1000
        model.end_eval()
    for label, ms in infer_ms.items():
        infer_rows.append(f"| {label} | {ms:.2f} | {ms / infer_ms['SASRec']:.1f}x |")
    body = (f"MovieLens-1M ({data.n_users:,} users, {data.n_items:,} items, sid_rqvae codes), {args.threads} thread(s).\n\n"
            f"Training ({args.batches} batches of each model's default size, median of {args.passes} passes):\n\n"
            "| model | precision | ms per 1,000 targets |\n|---|---|---|\n" + "\n".join(train_rows) +
            f"\n\nInference (full_sort_predict, {len(inputs)} test users, 128 per call):\n\n"
            "| model | ms per user | / SASRec |\n|---|---|---|\n" + "\n".join(infer_rows))
    print(body)
    from _results import append_results

    append_results(gb.RESULTS, "Generative recommendation benchmark log", "TIGER speed, ml-1m",
                   "python bench/generative/tiger_speed.py " + " ".join(sys.argv[1:]), body)


if __name__ == "__main__":
    main()
