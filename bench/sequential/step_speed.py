"""Milliseconds per training step of SASRec and GRU4Rec on MovieLens-1M: float32 against bfloat16 autocast,
and the dropout-mask source, on the same batches in one process.

    python bench/sequential/step_speed.py --threads 1
    python bench/sequential/step_speed.py --threads 2 --models SASRec

Batches are the first ``--batches`` of a ``window`` epoch of the converged benchmark's split (ratings >= 3,
10-core; ``recbole_seq_parity.py`` prepares it), 2,048 targets each, RecBole's hyper-parameters. Every variant
runs ``--passes`` times in turn (ABAB, so drift hits all alike), after one uncounted warm-up pass, and the
median pass is reported.
``dropout bernoulli_`` swaps the sequential models' mask back to ``torch.nn.functional.dropout``'s (and
SASRec's attention back to the fused kernel's own dropout) to show what the ``torch.rand`` mask saves.
Results: bench/sequential/RESULTS_sequential.md.
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(Path(__file__).resolve().parent))


@contextlib.contextmanager
def bernoulli_dropout():
    """The masks of ``F.dropout`` (``bernoulli_``) in place of ``rand_dropout``, SDPA's own attention dropout."""
    import torch.nn.functional as F

    from mmfeat.recommenders.sequential import base, sasrec

    def torch_dropout(x, p, training=True):
        return F.dropout(x, p, training)

    def fused(self, q, k, v, allowed):
        p = self.attn_dropout if self.training else 0.0
        return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, is_causal=allowed is None, dropout_p=p)

    saved = base.rand_dropout, sasrec._Block._attend
    base.rand_dropout, sasrec._Block._attend = torch_dropout, fused
    try:
        yield
    finally:
        base.rand_dropout, sasrec._Block._attend = saved


def main() -> None:
    ap = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=["SASRec", "GRU4Rec"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batches", type=int, default=25)
    ap.add_argument("--passes", type=int, default=3)
    args = ap.parse_args()

    import numpy as np
    import pandas as pd
    import torch

    import recbole_seq_parity as parity
    from mmfeat.recommenders.models.base import build_model
    from mmfeat.recommenders.sequential import from_loo_frame
    from mmfeat.recommenders.sequential.batches import epoch_batches
    from mmfeat.recommenders.sequential.training import SequentialTask

    for name in args.models:
        parity.check_model(name)  # a typo stops here, before the data is read
    torch.set_num_threads(args.threads)
    data_dir = parity.prepare("ml-1m", 3.0, 10)
    data = from_loo_frame(pd.read_parquet(data_dir / "split.parquet"))
    variants = {"float32": (False, False), "bfloat16": (True, False), "bfloat16, dropout bernoulli_": (True, True),
                "float32, dropout bernoulli_": (False, True)}
    rows = []
    for name in args.models:
        cfg = parity.resolved_config(name, {"train_mode": "window"}, name)
        torch.manual_seed(0)
        model = build_model(name, data, cfg).train()
        opt = torch.optim.Adam(model.parameters(), cfg["learning_rate"])
        task = SequentialTask(name, data, cfg)
        batches = list(epoch_batches(task.tokens, task.starts, task.ends, task.n_targets, task.max_len,
                                     int(cfg["train_batch_size"]), np.random.default_rng(0)))[:args.batches]
        times: dict[str, list[float]] = {v: [] for v in variants}
        for rep in range(args.passes + 1):  # pass 0 warms every variant up and is not counted
            for label, (bf16, old_dropout) in variants.items():
                with bernoulli_dropout() if old_dropout else contextlib.nullcontext():
                    t0 = time.perf_counter()
                    for batch in batches:
                        opt.zero_grad(set_to_none=True)
                        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                            loss = model.calculate_loss(batch)
                        loss.backward()
                        opt.step()
                    if rep:
                        times[label].append((time.perf_counter() - t0) / len(batches) * 1000)
        base = statistics.median(times["float32, dropout bernoulli_"])
        for label in variants:
            ms = statistics.median(times[label])
            rows.append(f"| {name} | {label} | {ms:.1f} | {ms / base:.2f}x |")
            print(rows[-1], flush=True)
    body = (f"{args.threads} thread(s), {args.batches} batches of 2,048 targets, median of {args.passes} passes\n\n"
            "| model | step | ms/step | vs float32 with bernoulli_ masks (before) |\n|---|---|---|---|\n"
            + "\n".join(rows))
    print(body)
    parity.append_results("step speed: ml-1m (min rating 3, 10-core)",
                          "python bench/sequential/step_speed.py " + " ".join(sys.argv[1:]), body)


if __name__ == "__main__":
    main()
