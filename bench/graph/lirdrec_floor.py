"""The work every LIRDRec training step must do, on either implementation: a lower bound of its seconds per epoch.

    python bench/graph/lirdrec_floor.py --epochs 20

LIRDRec represents items only through MLPs of their fixed features, and those outputs propagate through the
user-item graph, so every step runs the three encoders on *every* item (forward and weight gradients) and the
``n_ui_layers`` sparse propagations over all users and items (forward and backward), whatever the batch. This
script builds exactly those operations at the shapes of bench/graph/mmrec_parity.py's prepared ML-100K files (our
model's own encoders and normalised adjacency, MMRec's LIRDRec hyper-parameters), times them alone over the
number of steps of one epoch (one thread), and prints that floor beside the measured s/epoch of both sides taken
from the kept parity results of ``--epochs`` (``bench/_work/res_{mmrec,ours}_LIRDRec_<seed>_<epochs>_0.01_1.json``). The ratio floor / reference is
the best ours / reference an implementation of the same float32 math can reach on this machine.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench" / "graph"))


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=20, help="the epochs budget of the kept parity runs to compare")
    a = ap.parse_args()
    import mmrec_parity as mp
    from mmfeat.recommenders.models import build_model
    from mmfeat.recommenders.models._graph import sym_spmm
    from mmfeat.recommenders.trainer import resolve_config

    torch.set_num_threads(1)
    data = mp.load_ours(mp.prepare(mp.WORK / "ml100k"))  # the prepared files (built on the first run)
    cfg = resolve_config("LIRDRec", {**mp.MODELS["LIRDRec"], "learning_rate": 0.01, "seed": 999})
    model = build_model("LIRDRec", data, cfg)
    model.pre_epoch()
    steps = int(np.ceil(len(data.train) / int(cfg["train_batch_size"])))
    width = model.d * (len(model.modalities) + 1)

    def step() -> None:
        blocks = model.item_blocks()  # the three encoders on every item
        x = torch.randn(model.n_users + model.n_items, width, requires_grad=True)
        y = x
        for _ in range(model.n_ui_layers):
            y = sym_spmm(model.masked_adj, y)
        loss = y.sum() + sum(b.sum() for b in blocks)
        loss.backward()

    step()
    times = []
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(steps):
            step()
        times.append(time.perf_counter() - t)
    floor = min(times)
    print(f"LIRDRec on {data.n_users} users x {data.n_items} items, {steps} steps per epoch, 1 thread: "
          f"encoders + propagation alone take {floor:.3f} s per epoch")
    kept = {side: [json.loads(p.read_text())["s_per_epoch"] for p in mp.WORK.glob(f"res_{side}_LIRDRec_*_{a.epochs}_0.01_1.json")]
            for side in ("mmrec", "ours")}
    if all(kept.values()):
        ref, ours = float(np.mean(kept["mmrec"])), float(np.mean(kept["ours"]))
        print(f"kept parity runs: reference {ref:.3f} s/epoch, ours {ours:.3f} ({ours / ref:.2f}x); "
              f"floor / reference = {floor / ref:.2f}x")


if __name__ == "__main__":
    main()
