"""BM3 step by step beside MMRec's: the same initial weights, batches and dropout masks on both sides.

    python bench/graph/bm3_same_steps.py --epochs 25 --lr 0.01 --seed 999 --results
    python bench/graph/bm3_same_steps.py --data-dir /tmp/split7/ml100k --split-seed 7 --seed 1   # another split

Why: bench/graph/mmrec_parity.py compares independent runs (each side draws its own initial weights, batch orders
and dropout masks). BM3's valid Recall@20 has a take-off (about 0.18 to 0.28 on ML-100K at learning rate 0.01)
whose epoch varies with the seed (6 to 10), so the per-epoch means of a few seeds differ by several percent
mid-training even between two seed sets of the *same* implementation. This check takes the randomness out:

1. MMRec's BM3 comes from MMRec's own Config, dataset and model code (``mmrec_parity.mmrec_setup``) and trains with
   its Trainer's optimizer and learning-rate scheduler, one step per batch as its ``_train_epoch`` takes it
   (zero_grad, ``calculate_loss``, backward, step; no gradient clipping configured), the scheduler stepped per epoch;
2. ours comes from ``build_model`` and trains with the trainer's ``build_optimizer`` and ``optimizer_step``;
3. MMRec's initial weights are copied into ours (the item feature tables are compared, not copied);
4. each epoch's batches are one permutation of the training pairs, fed to both;
5. each step draws one dropout mask per full matrix (users, items, text, image). MMRec's ``F.dropout`` (in its bm3
   module) and our ``bm3.fast_dropout`` are replaced by look-ups of those masks: MMRec's calls in its order
   (users, items, text, image), ours by the distinct rows of the batch it drops out.

Per epoch: both summed train losses, the largest parameter difference, and valid Recall@20 / NDCG@20 (MMRec's
Trainer.evaluate for its model, our evaluator for ours). ``--results`` writes the table to
bench/graph/RESULTS_recommenders.md (section ``bm3-same-steps``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

import mmrec_parity as mp

#: MMRec BM3 parameter -> ours
PARAMS = {"user_embedding.weight": "user_embedding.weight", "item_id_embedding.weight": "item_id_embedding.weight",
          "predictor.weight": "predictor.weight", "predictor.bias": "predictor.bias",
          "text_trs.weight": "feat_trs.text.weight", "text_trs.bias": "feat_trs.text.bias",
          "image_trs.weight": "feat_trs.image.weight", "image_trs.bias": "feat_trs.image.bias",
          "text_embedding.weight": "feat_embedding.text", "image_embedding.weight": "feat_embedding.image"}
#: the order of MMRec's dropout calls in one calculate_loss; our modality role -> its mask
REF_ORDER, ROLE_MASK = ("u", "i", "t", "v"), {"text": "t", "image": "v"}


class SharedMasks:
    """One full-matrix keep mask (scaled by 1 / (1 - p)) per target matrix and step, served to both sides."""

    def __init__(self, sizes: dict, dim: int, p: float, seed: int):
        import torch
        self.sizes, self.dim, self.p = sizes, dim, p
        self.gen = torch.Generator().manual_seed(seed)
        self.masks, self.ref_queue, self.ours_queue, self.rows = {}, [], [], {}

    def draw(self, users, items, roles):
        import torch
        self.masks = {k: (torch.rand(n, self.dim, generator=self.gen) >= self.p).float() / (1.0 - self.p)
                      for k, n in self.sizes.items()}
        self.ref_queue = list(REF_ORDER)
        self.ours_queue = ["u", "i"] + [ROLE_MASK[r] for r in roles]
        self.rows = {"u": torch.unique(users), "i": torch.unique(items)}  # the distinct rows ours drops out

    def ref_dropout(self, x, p=0.5, training=True, inplace=False):
        return x * self.masks[self.ref_queue.pop(0)]

    def ours_dropout(self, x, p, training):
        key = self.ours_queue.pop(0)
        return x * self.masks[key][self.rows["u" if key == "u" else "i"]]


class _Functional:
    """``torch.nn.functional`` with ``dropout`` replaced (MMRec's bm3 module calls ``F.dropout``)."""

    def __init__(self, dropout):
        self.dropout = dropout

    def __getattr__(self, name):
        import torch.nn.functional as F
        return getattr(F, name)


def run(a) -> list[str]:
    import torch
    from mmfeat.recommenders.models import bm3 as ours_bm3
    from mmfeat.recommenders.models import build_model
    from mmfeat.recommenders.models.base import resolve_config
    from mmfeat.recommenders.tasks import optimizer_step, task_for
    from mmfeat.recommenders.trainer import build_optimizer

    data = mp.load_ours(Path(a.data_dir))
    hp = mp.model_params(a)
    cfg = resolve_config("BM3", {**hp, "learning_rate": a.lr, "seed": a.seed})
    config, _, valid_data, _, ref = mp.mmrec_setup(a)  # moves into MMRec's src folder
    from utils.utils import get_trainer
    trainer = get_trainer()(config, ref, False)
    torch.manual_seed(a.seed)
    ours = build_model("BM3", data, cfg)
    rp, op = dict(ref.named_parameters()), dict(ours.named_parameters())
    assert set(rp) == set(PARAMS) and set(op) == set(PARAMS.values()), (sorted(rp), sorted(op))
    same_feats = all(torch.equal(rp[k], op[v]) for k, v in PARAMS.items() if v.startswith("feat_embedding"))
    same_graph = torch.equal(ref.norm_adj.to_dense(), ours.norm_adj.to_dense())
    with torch.no_grad():
        for k, v in PARAMS.items():
            op[v].copy_(rp[k])
    opt, sched = build_optimizer(ours, cfg, torch.device("cpu"))
    masks = SharedMasks({"u": ours.n_users, "i": ours.n_items, "t": ours.n_items, "v": ours.n_items},
                        int(cfg["embedding_size"]), float(cfg["dropout"]), a.seed)
    sys.modules[type(ref).__module__].F = _Functional(masks.ref_dropout)
    ours_bm3.fast_dropout = masks.ours_dropout
    ev = task_for("BM3", data, cfg).evaluator("valid")
    pairs = torch.as_tensor(data.train[:, :2]).long()
    rng, bs = np.random.default_rng(a.seed), int(cfg["train_batch_size"])
    head = (f"BM3, {Path(a.data_dir).name}: MMRec (its model, Adam and LambdaLR) and ours (build_model, "
            f"build_optimizer, optimizer_step) from MMRec's initial weights, on the same batches with the same dropout "
            f"masks; learning_rate {a.lr}, seed {a.seed}, dropout {cfg['dropout']}, {a.threads} thread(s). Item "
            f"feature tables equal at start: {same_feats}; normalised adjacency equal: {same_graph}.")
    cols = ("epoch", "loss MMRec", "loss ours", "max abs param diff", "MMRec R@20", "ours R@20", "ours/ref",
            "MMRec N@20", "ours N@20")
    L = [head, "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for epoch in range(a.epochs):
        perm = torch.from_numpy(rng.permutation(len(pairs)))
        lr_sum, lo_sum = 0.0, 0.0
        ref.train()
        for b, s in enumerate(range(0, len(perm), bs)):
            users, items = pairs[perm[s:s + bs], 0], pairs[perm[s:s + bs], 1]
            masks.draw(users, items, ours.modalities)
            trainer.optimizer.zero_grad()
            loss = ref.calculate_loss(torch.stack([users, items]))
            loss.backward()
            trainer.optimizer.step()
            lr_sum += float(loss)
            lo_sum += optimizer_step(ours, opt, (users, items, items), None, epoch, b)
        trainer.lr_scheduler.step()
        sched.step()
        diff = max((op[v] - rp[k]).abs().max().item() for k, v in PARAMS.items())
        rv, ov = trainer.evaluate(valid_data), ev.evaluate(ours)
        L.append(f"| {epoch} | {lr_sum:.4f} | {lo_sum:.4f} | {diff:.1e} | {rv['recall@20']:.4f} | "
                 f"{ov['recall@20']:.4f} | {ov['recall@20'] / rv['recall@20']:.3f} | {rv['ndcg@20']:.4f} | "
                 f"{ov['ndcg@20']:.4f} |")
        print(L[-1], flush=True)
    return L


def main():
    ap = argparse.ArgumentParser(allow_abbrev=False)
    ap.add_argument("--mmrec-src", default="/tmp/mmrec/src")
    ap.add_argument("--data-dir", default=str(mp.WORK / "ml100k"))
    ap.add_argument("--epochs", type=int, default=25)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--seed", type=int, default=999)
    ap.add_argument("--split-seed", type=int, default=2024,
                    help="the split prepared when --data-dir has none yet (2024: the bench's own split)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--params", help="JSON object overlaid on mmrec_parity.MODELS['BM3'] (both sides)")
    ap.add_argument("--results", action="store_true", help="write the table to RESULTS_recommenders.md")
    ap.add_argument("--section", default="bm3-same-steps")
    a = ap.parse_args()
    a.model, a.stopping_step = "BM3", 1000
    mp.prepare(Path(a.data_dir), "ml-100k", split_seed=a.split_seed)
    a.data_dir = str(Path(a.data_dir).resolve())
    import torch
    torch.set_num_threads(a.threads)
    lines = run(a)
    print("\n".join(lines))
    if a.results:
        cmd = "python bench/graph/bm3_same_steps.py " + " ".join(sys.argv[1:])
        mp.update_results(Path(__file__).resolve().with_name("RESULTS_recommenders.md"), a.section,
                          [f"Command: `{cmd.strip()}`", ""] + lines)


if __name__ == "__main__":
    main()
