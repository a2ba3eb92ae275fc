"""Seconds per training epoch of the sequential models against ``max_tokens_per_forward``: how many pieces a
batch is run in (gradients accumulated into one step) costs time, and how much memory one piece saves.

    python bench/sequential/batch_pieces.py --models GRU4Rec --modes window:10 prefix --max-tokens 4096 16384 131072
    python bench/sequential/batch_pieces.py --models SASRec --modes window:10 --max-tokens 4096 16384

MovieLens-1M of the converged benchmark (ratings >= 3, 10-core; ``recbole_seq_parity.py`` prepares it),
RecBole's hyper-parameters, ``train_precision: bfloat16``, 2,048 targets a batch, one thread. Every variant is
a fresh process (its own peak RSS) that trains a warm-up share of an epoch, then the timed
``--fraction`` of one (the trainer's own ``train_epoch``: batch building, pieces, steps). Variants run in turn
``--passes`` times (ABAB, so drift hits all alike); the median is reported, with the epoch's summed loss:
the same seed gives the same samples, so equal losses show the pieces change the rounding only.
Results: bench/sequential/RESULTS_sequential.md.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _results import exit_on_sigterm, run_json_worker  # noqa: E402


def variant_config(model_name: str, mode: str, max_tokens: int, fraction: float) -> dict:
    """The resolved config of one variant: RecBole's hyper-parameters, bfloat16, the mode and piece size.

    Raises:
        SystemExit: a model, mode or value our models would reject, named (the parent checks every variant
            before the first worker starts, so a typo never ends as a worker's traceback).
    """
    import recbole_seq_parity as parity

    parity.check_model(model_name)
    extra = {**parity.parse_train_mode(mode), "train_precision": "bfloat16", "max_tokens_per_forward": max_tokens,
             "train_sample_fraction": fraction}
    return parity.resolved_config(model_name, extra,
                                  f"{model_name} {mode} max_tokens_per_forward={max_tokens} fraction={fraction}")


def worker(spec: dict) -> None:
    """Time one variant in this process and print its numbers as JSON (the last stdout line)."""
    import numpy as np
    import pandas as pd
    import torch

    import recbole_seq_parity as parity
    from mmfeat.recommenders.models.base import build_model
    from mmfeat.recommenders.sequential import from_loo_frame
    from mmfeat.recommenders.sequential.training import SequentialTask

    torch.set_num_threads(spec["threads"])
    data = from_loo_frame(pd.read_parquet(parity.prepare("ml-1m", 3.0, 10) / "split.parquet"))
    model_name = spec["model"]
    cpu = torch.device("cpu")
    torch.manual_seed(0)
    warm_cfg = variant_config(model_name, spec["mode"], spec["max_tokens"], 0.01)
    model = build_model(model_name, data, warm_cfg)
    opt = torch.optim.Adam(model.parameters(), warm_cfg["learning_rate"])
    SequentialTask(model_name, data, warm_cfg).train_epoch(model, opt, np.random.default_rng(1), cpu, 0)
    cfg = variant_config(model_name, spec["mode"], spec["max_tokens"], spec["fraction"])
    task = SequentialTask(model_name, data, cfg)
    t0 = time.perf_counter()
    loss = task.train_epoch(model, opt, np.random.default_rng(0), cpu, 1)
    seconds = time.perf_counter() - t0
    print(json.dumps({"s_per_epoch": seconds / spec["fraction"], "loss": loss,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "_worker":
        worker(json.loads(sys.argv[2]))
        return
    exit_on_sigterm()
    ap = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=["GRU4Rec"])
    ap.add_argument("--modes", nargs="+", default=["window:10"], help="window, window:S (stride S) or prefix")
    ap.add_argument("--max-tokens", type=int, nargs="+", default=[4096, 16384])
    ap.add_argument("--fraction", type=float, default=0.1, help="share of an epoch timed per pass")
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    import recbole_seq_parity as parity

    variants = [(m, mode, t) for m in args.models for mode in args.modes for t in args.max_tokens]
    for m, mode, tokens in variants:
        variant_config(m, mode, tokens, args.fraction)  # a typo or bad value stops here, before any worker
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    runs: dict[tuple, list[dict]] = {v: [] for v in variants}
    for rep in range(args.passes):
        for m, mode, tokens in variants:
            spec = {"model": m, "mode": mode, "max_tokens": tokens, "fraction": args.fraction, "threads": args.threads}
            res = run_json_worker(__file__, spec, env, ROOT)
            runs[(m, mode, tokens)].append(res)
            print(f"pass {rep}: {m} {mode} max_tokens_per_forward={tokens}: {res['s_per_epoch']:.1f} s/epoch, "
                  f"loss {res['loss']:.4f}, peak RSS {res['peak_rss_mb']:.0f} MiB", flush=True)
    rows = []
    for m, mode, tokens in variants:
        got = runs[(m, mode, tokens)]
        first = runs[(m, mode, args.max_tokens[0])]
        s = statistics.median(r["s_per_epoch"] for r in got)
        s0 = statistics.median(r["s_per_epoch"] for r in first)
        rows.append(f"| {m} | {mode} | {tokens} | {s:.1f} | {s / s0:.2f}x | {got[0]['loss']:.4f} | "
                    f"{max(r['peak_rss_mb'] for r in got):.0f} |")
    header = [f"| model | samples | max_tokens_per_forward | s per epoch | vs {args.max_tokens[0]} | "
              "epoch loss (same samples) | peak RSS MiB |", "|---|---|---|---|---|---|---|"]
    setting = (f"{args.threads} thread(s), bfloat16, 2,048 targets a batch, {args.fraction:g} of an epoch timed, "
               f"median of {args.passes} passes")
    body = "\n".join([setting, "", *header, *rows])
    print(body)
    parity.append_results("batch pieces: ml-1m (min rating 3, 10-core)",
                          "python bench/sequential/batch_pieces.py " + " ".join(sys.argv[1:]), body)


if __name__ == "__main__":
    main()
