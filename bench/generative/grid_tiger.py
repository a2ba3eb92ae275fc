"""snap-research/GRID's TIGER (the reference implementation) on our MovieLens leave-one-out split and our semantic IDs.

    bash bench/generative/setup_grid.sh                                   # /work/grid-venv + /work/grid-ref, once
    python bench/generative/grid_tiger.py export --dataset ml-100k        # our split + codes -> GRID's input format
    python bench/generative/grid_tiger.py run --dataset ml-100k --minutes 3 --d-model 64 --num-layers 2 \\
        --num-heads 2 --d-kv 32 --d-ff 256                                 # GRID trains + tests, prints one JSON

``export`` (this repo's venv) builds the :class:`SequenceData` our TIGER trains on, through the library's own path
(:func:`mmfeat.pipelines.training.run.load_training_data`, task ``sequential``: the manifest's interactions, the
leave-one-out split by time, items in the library's index order, the codes of ``--codes`` aligned to it), and
writes it under ``bench/_work/generative/grid/<dataset>/`` as GRID reads it:

* ``training/part-*.tfrecord.gz``: per user the train part of the sequence (positions 0 .. n-3; GRID's
  ``collate_with_sid_causal_duplicate`` makes every contiguous sub-sequence of >= 2 items a sample whose last item
  is the target, so the train targets are positions 1 .. n-3, never the first item), users in a seeded random
  order over 16 shards (GRID's row shuffle buffer is only 128 rows);
* ``evaluation/part-00000.tfrecord.gz``: positions 0 .. n-2 (GRID's ``NextKTokenMasking`` takes the last item, our
  valid target, as the label and the items before it as history); ``testing/``: positions 0 .. n-1 (test target);
* ``semantic_ids.pt``: int64 ``[levels, n_items]`` (GRID's ``D x N``), column i = our item index i (the item id
  GRID reads from ``sequence_data``); ``meta.json``: split hash, codes version, counts.

``sequence_data`` holds 0-based item indices and ``user_id`` our user index. After writing, the export checks
with GRID's own datamodule (composed from its ``tiger_train_flat`` config with the same overrides as ``run``) that
every valid / test row has exactly our target's code tuple as label and the codes of the newest ``--history``
items before it as input, and that sampled training rows are contiguous pieces of one user's train sequence.

``run`` launches GRID's ``src.train`` (``python -m src.train experiment=tiger_train_flat``, through the small
``LAUNCHER`` below) in GRID's venv (cwd: the GRID checkout) with Hydra command-line overrides only (printed in the
JSON): CPU, one device, ``strategy=auto``, fp32, the model and
optimizer sizes given here, ``sequence_length = (history + 1) x levels`` tokens (GRID trims the newest tokens
*including* the target's), beam ``top_k_for_generation`` constrained to real items (``should_check_prefix=true``;
setup_grid.sh patches the level-0 crash of that path), model selection and early stopping on ``--valid-metric``
every ``--val-every`` optimizer steps, ``trainer.max_time`` = ``--minutes``, then GRID's own test at the best
checkpoint. Numbers come from GRID's CSV logger and Lightning's SimpleProfiler (steps, seconds per step, of which
data loading). ``--nice`` and ``--threads`` keep it to one core (OMP/MKL/TF thread variables, ``nice``).
By default the launcher swaps two CPU-hostile GRID functions for equivalent ones after checking on the run's data
that they give identical results (``--prefix-check`` and ``--collate``, see ``LAUNCHER``); ``--prefix-check grid
--collate grid`` runs GRID's code unchanged apart from setup_grid.sh's two one-line fixes.

Defaults are our TIGER's bench configuration (generative_bench.py ``TIGER`` with the ``tiger-cpu`` preset and
TIGERConfig: 64-d, 2+2 layers, 2 heads of 32, T5's own 256-d feed-forward, dropout 0.1, AdamW lr 1e-3 wd 0.01,
1024 targets a step, beam 20 constrained, 20 items of history, valid NDCG@10, patience 5). GRID's own defaults
differ (128-d, 4+4 layers, 6 heads x 64, d_ff 1024 in a 2-hidden-layer MLP, dropout 0.15, Adam lr 1e-3 wd 1e-4,
32 users -> at most 512 samples a batch, 16 batches accumulated, beam 10 unconstrained, 29 items of history
(sequence_length 120 tokens at 4 levels), val/recall@5, patience 10); pass them to reproduce GRID's setting.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / "bench" / "_work" / "generative"
GRID_WORK = WORK / "grid"
GRID_PY = Path(os.environ.get("GRID_PYTHON", "/work/grid-venv/bin/python"))
GRID_SRC = Path(os.environ.get("GRID_SRC", "/work/grid-ref"))
MANIFESTS = {"ml-100k": "movielens-100k", "ml-1m": "movielens-1m"}
METRICS = ["recall@5", "recall@10", "ndcg@5", "ndcg@10"]
TRAIN_SHARDS = 16


# ---------------------------------------------------------------------------- export (this repo's venv)
def export_dir(dataset: str, codes: str, train_items: int) -> Path:
    tag = dataset + ("" if codes == "sid_rqvae" else f"-{codes}") + (f"-last{train_items}" if train_items else "")
    return GRID_WORK / tag


def export(dataset: str, codes: str = "sid_rqvae", train_items: int = 0, history: int = 20, seed: int = 0,
           force: bool = False) -> Path:
    """Write our split and codes in GRID's format (module doc); returns the folder. ``train_items`` > 0 keeps only
    each user's newest that many train items (0: all, every train target as GRID and our ``train_mode: prefix``)."""
    import numpy as np

    out = export_dir(dataset, codes, train_items)
    if (out / "meta.json").exists() and not force:
        print(f"[grid_tiger] export present: {out}", file=sys.stderr)
        return out
    from mmfeat.pipelines.environment import apply_defaults

    apply_defaults()
    from mmfeat.pipelines.training.run import load_training_data

    data, info = load_training_data(MANIFESTS[dataset], {"codes": codes}, task="sequential",
                                    store_root=str(WORK / "store"), runs_dir=str(WORK / "runs"))
    if data.item_codes is None:
        raise SystemExit(f"{codes} gave no codes")
    out.mkdir(parents=True, exist_ok=True)
    items = data.tokens - 1  # 0-based item index, time order inside each user
    np.savez(out / "sequences.npz", indptr=data.indptr, items=items, codes=data.item_codes)
    lengths = data.lengths
    kept_train = np.minimum(lengths - 2, train_items) if train_items else lengths - 2
    meta = {"dataset": dataset, "manifest": MANIFESTS[dataset], "codes": codes,
            "codes_version": data.feature_versions.get("codes"), "split_hash": data.split_hash,
            "split": info.get("split"), "n_users": int(data.n_users), "n_items": int(data.n_items),
            "n_interactions": len(items), "levels": int(data.item_codes.shape[1]),
            "codebook_sizes": (data.item_codes.max(0) + 1).tolist(),
            "train_items_per_user": train_items or "all",
            "n_train_targets": int((kept_train - 1).clip(min=0).sum()),
            "n_train_targets_ours_prefix": int((lengths - 3).sum()),
            "cold_targets": data.cold_targets(), "shuffle_seed": seed}
    subprocess.run([str(GRID_PY), __file__, "_write", str(out), "--train-items", str(train_items),
                    "--history", str(history), "--seed", str(seed)], check=True, cwd=str(GRID_SRC))
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
    print(f"[grid_tiger] exported {dataset} ({meta['n_users']} users, {meta['n_items']} items, {codes} "
          f"{meta['codes_version']}, split {meta['split_hash'][:12]}) to {out}", file=sys.stderr)
    return out


# ---------------------------------------------------------------------------- GRID's side (GRID's venv)
def data_overrides(data_dir: Path, levels: int, history: int, users_per_batch: int, samples_per_batch: int,
                   eval_batch: int, workers: int) -> list[str]:
    """The Hydra overrides that define GRID's data: ours, the sequence length, batch sizes, CPU loading."""
    dl = "data_loading.{}_dataloader_config.dataloader.{}"
    o = [f"data_dir={data_dir}", f"semantic_id_path={data_dir / 'semantic_ids.pt'}", f"num_hierarchies={levels}",
         f"sequence_length={(history + 1) * levels}",
         f"{dl.format('train', 'batch_size_per_device')}={users_per_batch}",
         f"{dl.format('train', 'collate_fn.max_batch_size')}={samples_per_batch}",
         f"{dl.format('val', 'batch_size_per_device')}={eval_batch}",
         f"{dl.format('test', 'batch_size_per_device')}={eval_batch}"]
    for split in ("train", "val", "test"):
        o += [f"{dl.format(split, 'num_workers')}={workers}", f"{dl.format(split, 'timeout')}={60 if workers else 0}"]
    if not workers:
        o.append(f"{dl.format('train', 'persistent_workers')}=false")
    return o


def _grid_write(out: Path, train_items: int, history: int, seed: int) -> None:
    """TFRecords + semantic_ids.pt from sequences.npz, then the check through GRID's own datamodule."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np
    import tensorflow as tf
    import torch

    z = np.load(out / "sequences.npz")
    indptr, items, codes = z["indptr"], z["items"], z["codes"]
    n_users = len(indptr) - 1
    torch.save(torch.from_numpy(np.ascontiguousarray(codes.T)).long(), out / "semantic_ids.pt")

    def example(u: int, seq: np.ndarray) -> bytes:
        f = {"sequence_data": tf.train.Feature(int64_list=tf.train.Int64List(value=seq.tolist())),
             "user_id": tf.train.Feature(int64_list=tf.train.Int64List(value=[u]))}
        return tf.train.Example(features=tf.train.Features(feature=f)).SerializeToString()

    opts = tf.io.TFRecordOptions(compression_type="GZIP")
    order = np.random.default_rng(seed).permutation(n_users)
    for split, users_per_file in (("training", np.array_split(order, TRAIN_SHARDS)),
                                  ("evaluation", [np.arange(n_users)]), ("testing", [np.arange(n_users)])):
        d = out / split
        d.mkdir(exist_ok=True)
        for old in d.glob("*.tfrecord.gz"):
            old.unlink()
        drop = {"training": 2, "evaluation": 1, "testing": 0}[split]
        for i, users in enumerate(users_per_file):
            with tf.io.TFRecordWriter(str(d / f"part-{i:05d}.tfrecord.gz"), opts) as w:
                for u in users:
                    seq = items[indptr[u]:indptr[u + 1] - drop]
                    if split == "training" and train_items:
                        seq = seq[-train_items:]
                    w.write(example(int(u), seq))
    check = _grid_check(out, indptr, items, codes, train_items, history)
    (out / "check.json").write_text(json.dumps(check, indent=1))
    print(f"[grid_tiger] GRID's datamodule reads the export as ours: {json.dumps(check)}", file=sys.stderr)


def _grid_datamodule(out: Path, levels: int, history: int):
    import types

    sys.path.insert(0, str(GRID_SRC))
    os.chdir(GRID_SRC)
    import hydra
    import src.utils  # GRID's own import order (src.data first is circular)
    import src.utils.custom_hydra_resolvers  # noqa: F401  (registers GRID's OmegaConf resolvers)
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(GRID_SRC / "configs"), version_base="1.3"):
        cfg = compose("train.yaml", overrides=["experiment=tiger_train_flat",
                                               *data_overrides(out, levels, history, 32, 512, 64, 0)])
    dm = hydra.utils.instantiate(cfg.data_loading.datamodule)
    dm.trainer = types.SimpleNamespace(world_size=1, global_rank=0)
    dm.setup("fit")
    return dm


def _grid_check(out: Path, indptr, items, codes, train_items: int, history: int) -> dict:
    """Every valid/test row: label = our target's codes, input = codes of the newest ``history`` items before it,
    attention mask = those tokens; 4 training batches: each row a contiguous piece of its user's train items."""
    import numpy as np
    import torch
    from lightning.pytorch.trainer.states import TrainerFn

    levels = codes.shape[1]
    dm = _grid_datamodule(out, levels, history)
    n_users = len(indptr) - 1
    report = {}
    for stage, name, offset in ((TrainerFn.VALIDATING, "valid", 2), (TrainerFn.TESTING, "test", 1)):
        seen = np.zeros(n_users, int)
        for model_input, labels in dm.get_dataloader(stage)[0]:
            seq = model_input.transformed_sequences["sequence_data"]
            users = model_input.transformed_sequences["user_id"][:, 0].numpy()
            lab = labels.labels["sequence_data"].reshape(len(users), levels).numpy()
            for r, u in enumerate(users):
                end = indptr[u + 1] - offset
                hist = items[max(indptr[u], end - history):end]
                want = codes[hist].reshape(-1)
                got = seq[r][seq[r] >= 0].numpy()
                assert np.array_equal(got, want), (name, u, got[:8], want[:8])
                assert np.array_equal(lab[r], codes[items[end]]), (name, u, lab[r], codes[items[end]])
                assert int(model_input.mask[r].sum()) == len(want), (name, u, "mask")
                seen[u] += 1
        assert (seen == 1).all(), (name, "users read", np.bincount(seen))
        report[f"{name}_rows_checked"] = int(seen.sum())
    tuple_to_item = {tuple(c): i for i, c in enumerate(codes.tolist())}
    hist_len, target_pos, rows = [], [], 0
    loader = iter(dm.get_dataloader(TrainerFn.FITTING)[0])
    for _ in range(4):
        model_input, labels = next(loader)
        seq = model_input.transformed_sequences["sequence_data"]
        users = model_input.transformed_sequences["user_id"][:, 0].numpy()
        lab = labels.labels["sequence_data"].reshape(len(users), levels).numpy()
        for r, u in enumerate(users):
            got = seq[r][seq[r] >= 0].numpy().reshape(-1, levels)
            hist = [tuple_to_item[tuple(c)] for c in got.tolist()]
            target = tuple_to_item[tuple(lab[r].tolist())]
            train = items[indptr[u]:indptr[u + 1] - 2]
            first = len(train) - train_items if train_items and len(train) > train_items else 0
            piece = np.array(hist + [target])
            ends = [e for e in range(first + len(hist), len(train))
                    if np.array_equal(train[e - len(hist):e + 1], piece)]
            assert ends, ("train", u, piece)
            hist_len.append(len(hist))
            target_pos.append(ends[-1])
            rows += 1
    report.update(train_rows_checked=rows, train_history_len_mean=float(np.mean(hist_len)),
                  train_history_len_max=int(np.max(hist_len)), train_target_pos_min=int(np.min(target_pos)),
                  train_target_pos_mean=float(np.mean(target_pos)))
    torch.set_num_threads(1)
    return report


# ---------------------------------------------------------------------------- run (any python)
#: ``python -c`` launcher of GRID's ``src.train`` (cwd: the GRID checkout). It can replace two GRID functions whose
#: CPU cost is out of proportion, each by an equivalent one, after asserting on the run's own data that both give
#: the same result (nothing else of GRID changes; ``--prefix-check grid --collate grid`` runs GRID's own):
#:
#: * GRID_TIGER_PREFIX_CHECK=fast: ``SemanticIDGenerativeRecommender._check_valid_prefix`` (which candidate
#:   prefixes of the constrained beam search are prefixes of some item's codes) compares every candidate with every
#:   item ([items, candidates, length] booleans; GRID's comment calls it a temporary solution): ~90 s per 64
#:   ML-100K users on one thread, about an hour per ML-1M evaluation. Replaced by integer keys and ``torch.isin``;
#:   checked on real prefixes, random ones and real prefixes with a random last code, at every length.
#: * GRID_TIGER_COLLATE=fast: ``collate_with_sid_causal_duplicate`` enumerates every contiguous sub-sequence of
#:   the batch's users in a Python loop, testing each enumeration index for membership in the
#:   ``torch.randint`` draw (O(sum of n^2) per batch: 3 s a step on ML-100K, 8 s on ML-1M). Replaced by the
#:   same draw (one ``torch.randint`` call, same arguments, so the same random numbers) decoded arithmetically
#:   into (user, end, start) in GRID's enumeration order; checked on training batches of the run's users under
#:   equal seeds (same sub-sequences in the same order, same inputs, masks, labels and label locations).
LAUNCHER = r"""
import os, runpy, sys, time
sys.argv = ["src/train.py"] + sys.argv[1:]
prefix_mode = os.environ.get("GRID_TIGER_PREFIX_CHECK", "grid")
collate_mode = os.environ.get("GRID_TIGER_COLLATE", "grid")
if "fast" in (prefix_mode, collate_mode):
    import types
    import numpy as np
    import torch
    import src.utils  # noqa: F401  (GRID's import order)
    sid = torch.load(os.environ["GRID_TIGER_SID"])  # [levels, items], as GRID reads it
    levels, items = sid.shape
if prefix_mode == "fast":
    from src.models.modules.semantic_id import tiger_generation_model as tgm

    cls = tgm.SemanticIDGenerativeRecommender
    grid_check = cls._check_valid_prefix

    def fast_check(self, prefix, batch_size=100000):
        if prefix.device != self.codebooks.device:
            self.codebooks = self.codebooks.to(prefix.device)
        h = prefix.shape[1]
        codes = self.codebooks[:, :h].long()
        prefix = prefix.long()
        base = max(int(codes.max()), int(prefix.max()) if prefix.numel() else 0) + 1
        w = base ** torch.arange(h - 1, -1, -1, device=prefix.device, dtype=torch.long)
        return torch.isin((prefix * w).sum(1), (codes * w).sum(1)) & (prefix >= 0).all(1)

    probe = types.SimpleNamespace(codebooks=sid.t(), num_embeddings_per_hierarchy=int(sid.max()) + 1)
    g = torch.Generator().manual_seed(0)
    n, size = 5000, int(sid.max()) + 1
    for h in range(1, levels + 1):
        real = probe.codebooks[torch.randint(0, items, (n,), generator=g), :h]
        mixed = real.clone()
        mixed[:, -1] = torch.randint(0, size, (n,), generator=g)
        p = torch.cat([real, torch.randint(0, size, (n, h), generator=g), mixed])
        assert torch.equal(grid_check(probe, p), fast_check(probe, p)), h
    cls._check_valid_prefix = fast_check
    print(f"[grid_tiger] prefix check: fast lookup, same mask as GRID's on {3 * n * levels} probes", flush=True)
if collate_mode == "fast":
    from src.data.loading.components import collate_functions as cf
    from src.data.loading.components.label_function import NextKTokenMasking

    grid_collate = cf.collate_with_sid_causal_duplicate

    def fast_collate(batch, sequence_field_name, sid_hierarchy, labels, sequence_length=200, masking_token=1,
                     padding_token=0, oov_token=None, max_batch_size=128):
        if isinstance(batch, list):
            batch = cf.combine_list_of_tensor_dicts(batch)
        seqs = batch[sequence_field_name]
        k = torch.tensor([q.shape[0] for q in seqs]) // sid_hierarchy
        per_row = (k - 1) * k // 2  # sub-sequences of >= 2 items per row, GRID's count
        total = torch.sum(per_row)
        if total > max_batch_size:
            select = torch.unique(torch.randint(low=0, high=total, size=(max_batch_size,)))  # GRID's draw, sorted
        else:
            select = torch.arange(total)
        ends_cum = torch.cumsum(per_row, 0)
        rows = torch.searchsorted(ends_cum, select, right=True)
        local = select - (ends_cum - per_row)[rows]
        # GRID enumerates ends e = 2..k (items), then starts s = 0..e-2: (e-1)(e-2)/2 indices come before end e
        e = ((3 + torch.sqrt(1 + 8 * local.double())) / 2).floor().long()
        e = e - ((e - 1) * (e - 2) // 2 > local).long()
        e = e + ((e * (e - 1) // 2) <= local).long()
        start = local - (e - 1) * (e - 2) // 2
        new_batch = {name: [] for name in batch}
        for r, en, st in zip(rows.tolist(), e.tolist(), start.tolist()):
            new_batch[sequence_field_name].append(seqs[r][st * sid_hierarchy:en * sid_hierarchy])
            for name in new_batch:
                if name != sequence_field_name:
                    new_batch[name].append(batch[name][r])
        return cf.collate_fn_train(batch=new_batch, labels=labels, sequence_length=sequence_length,
                                   masking_token=masking_token, padding_token=padding_token, oov_token=oov_token)

    z = np.load(os.path.join(os.path.dirname(os.environ["GRID_TIGER_SID"]), "sequences.npz"))
    indptr, seq_items = z["indptr"], z["items"]
    lab = {"sequence_data": types.SimpleNamespace(transform=NextKTokenMasking(next_k=levels))}
    kw = dict(sequence_field_name="sequence_data", sid_hierarchy=levels, labels=lab,
              sequence_length=int(os.environ["GRID_TIGER_SEQLEN"]), masking_token=-1, padding_token=-1,
              max_batch_size=int(os.environ["GRID_TIGER_MAXBATCH"]))
    rng = np.random.default_rng(0)
    t_grid = t_fast = 0.0
    for trial in range(4):
        users = rng.choice(len(indptr) - 1, size=8 if trial else 2, replace=False)
        rows = [{"sequence_data": sid[:, torch.from_numpy(seq_items[indptr[u]:indptr[u + 1] - 2])].t().reshape(-1),
                 "user_id": torch.tensor([int(u)])} for u in users]
        outs = []
        for fn in (grid_collate, fast_collate):
            torch.manual_seed(trial)
            t = time.time()
            outs.append(fn([dict(r) for r in rows], **kw))
            if fn is grid_collate:
                t_grid += time.time() - t
            else:
                t_fast += time.time() - t
        (a_in, a_lab), (b_in, b_lab) = outs
        assert torch.equal(a_in.mask, b_in.mask), trial
        for key in a_in.transformed_sequences:
            assert torch.equal(a_in.transformed_sequences[key], b_in.transformed_sequences[key]), (trial, key)
        for key in a_lab.labels:
            assert torch.equal(a_lab.labels[key], b_lab.labels[key]), (trial, key)
            assert torch.equal(a_lab.label_location[key], b_lab.label_location[key]), (trial, key)
    # Lightning pickles the datamodule's hyper-parameters (this partial among them) into every checkpoint
    fast_collate.__module__, fast_collate.__qualname__ = cf.__name__, "collate_with_sid_causal_duplicate"
    cf.collate_with_sid_causal_duplicate = fast_collate
    print(f"[grid_tiger] collate: fast decoding of GRID's draw, same batches as GRID's on 4 batches of the run's "
          f"users ({t_grid:.2f} s GRID, {t_fast:.2f} s fast)", flush=True)
record = os.environ.get("GRID_TIGER_RECORD")
if record:  # grid_replay.py: GRID's initial weights and every training batch with GRID's loss, as trained
    import torch
    from src.models.modules.huggingface.transformer_base_module import TransformerBaseModule

    grid_step, done = TransformerBaseModule.training_step, [0]

    def recording_step(self, batch, batch_idx):
        if done[0] == 0:
            torch.save({k: v.detach().clone() for k, v in self.state_dict().items()}, os.path.join(record, "init.pt"))
        model_input, label_data = batch[0]
        loss = grid_step(self, batch, batch_idx)
        torch.save({"sequence": model_input.transformed_sequences["sequence_data"].clone(),
                    "mask": model_input.mask.clone(), "labels": label_data.labels["sequence_data"].clone(),
                    "loss": float(loss.detach())}, os.path.join(record, f"step-{done[0]:05d}.pt"))
        done[0] += 1
        return loss

    TransformerBaseModule.training_step = recording_step
    print(f"[grid_tiger] recording initial weights and batches in {record}", flush=True)
runpy.run_module("src.train", run_name="__main__", alter_sys=True)
"""

def _hydra_str(s: str) -> str:
    return "'" + s.replace("'", "\\'") + "'"


def _dhms(seconds: float) -> str:
    """Lightning's max_time string DD:HH:MM:SS (Hydra hands a dict over as a DictConfig, which Lightning rejects)."""
    s = round(seconds)
    return f"{s // 86400:02d}:{s // 3600 % 24:02d}:{s // 60 % 60:02d}:{s % 60:02d}"


def build_overrides(a: argparse.Namespace, data_dir: Path, levels: int, run_dir: Path) -> list[str]:
    enc = "model.huggingface_model.config."
    opt = {"adamw": "torch.optim.AdamW", "adam": "torch.optim.Adam"}[a.optimizer]
    o = ["experiment=tiger_train_flat",
         *data_overrides(data_dir, levels, a.history, a.users_per_batch, a.batch_size, a.eval_batch_size, a.workers),
         f"seed={a.seed}", "++should_skip_retry=true", f"hydra.run.dir={run_dir}",
         f"{enc}d_model={a.d_model}", f"{enc}num_heads={a.num_heads}", f"{enc}d_kv={a.d_kv}", f"{enc}d_ff={a.d_ff}",
         f"{enc}num_layers={a.num_layers}", f"{enc}dropout_rate={a.dropout}",
         f"model.decoder.config.num_layers={a.num_layers}", f"model.decoder.config.dropout_rate={a.dropout}",
         f"model.mlp_layers={a.mlp_layers if a.mlp_layers > 0 else 'null'}",
         f"+model.top_k_for_generation={a.beam}", f"+model.should_check_prefix={str(not a.unconstrained).lower()}",
         f"optim.optimizer._target_={opt}", f"optim.optimizer.lr={a.lr}", f"optim.optimizer.weight_decay={a.weight_decay}",
         "trainer.accelerator=cpu", "trainer.devices=1", "trainer.strategy=auto", "trainer.sync_batchnorm=false",
         "trainer.precision=32-true", f"trainer.accumulate_grad_batches={a.accumulate}",
         f"trainer.val_check_interval={a.val_every * a.accumulate}", f"trainer.max_steps={a.max_steps}",
         f"+trainer.max_time={_hydra_str(_dhms(a.minutes * 60))}", "trainer.log_every_n_steps=1",
         "+trainer.enable_progress_bar=false",
         "trainer.profiler._target_=lightning.pytorch.profilers.SimpleProfiler",
         f"+trainer.profiler.dirpath={run_dir}", "+trainer.profiler.filename=profile",
         f"callbacks.model_checkpoint.monitor={_hydra_str('val/' + a.valid_metric)}",
         "callbacks.model_checkpoint.mode=max", f"callbacks.early_stopping.patience={a.patience}",
         "extras.print_config=false"]
    return o + list(a.extra)


def _profile(path: Path) -> dict:
    """Lightning SimpleProfiler report -> {action: (mean s, calls, total s)}."""
    out = {}
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        cells = [c.strip() for c in line.split("|") if c.strip()]
        if len(cells) >= 4:
            try:
                out[cells[0]] = (float(cells[1]), int(float(cells[2])), float(cells[3]))
            except ValueError:
                pass
    return out


def _metrics_csv(run_dir: Path) -> list[dict]:
    files = sorted(run_dir.glob("csv/version_*/metrics.csv"))
    if not files:
        return []
    with open(files[-1]) as f:
        return list(csv.DictReader(f))


def run(a: argparse.Namespace) -> dict:
    data_dir = export_dir(a.dataset, a.codes, a.train_items)
    if not (data_dir / "meta.json").exists():
        export(a.dataset, a.codes, a.train_items, a.history)
    meta = json.loads((data_dir / "meta.json").read_text())
    levels = int(meta["levels"])
    tag = (f"{a.tag + '-' if a.tag else ''}d{a.d_model}l{a.num_layers}h{a.num_heads}-s{a.seed}-"
           f"{time.strftime('%Y%m%d-%H%M%S')}")
    run_dir = data_dir / "runs" / tag
    run_dir.mkdir(parents=True, exist_ok=True)
    overrides = build_overrides(a, data_dir, levels, run_dir)
    t = str(a.threads)
    env = {**os.environ, "OMP_NUM_THREADS": t, "MKL_NUM_THREADS": t, "OPENBLAS_NUM_THREADS": t,
           "TF_NUM_INTRAOP_THREADS": t, "TF_NUM_INTEROP_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "3",
           "TOKENIZERS_PARALLELISM": "false", "HYDRA_FULL_ERROR": "1", "PYTHONUNBUFFERED": "1"}
    env.update(GRID_TIGER_PREFIX_CHECK=a.prefix_check, GRID_TIGER_COLLATE=a.collate,
               GRID_TIGER_SID=str(data_dir / "semantic_ids.pt"), GRID_TIGER_SEQLEN=str((a.history + 1) * levels),
               GRID_TIGER_MAXBATCH=str(a.batch_size))
    if a.record:
        (run_dir / "record").mkdir()
        env["GRID_TIGER_RECORD"] = str(run_dir / "record")
    cmd = ["nice", "-n", str(a.nice), str(GRID_PY), "-c", LAUNCHER, *overrides]
    shown = " ".join(["nice", "-n", str(a.nice), str(GRID_PY), "-m", "src.train", *overrides])
    (run_dir / "command.txt").write_text(f"cd {GRID_SRC} && {shown}\n(run as python -c grid_tiger.LAUNCHER, "
                                         f"GRID_TIGER_PREFIX_CHECK={a.prefix_check}, GRID_TIGER_COLLATE={a.collate})\n")
    print(f"[grid_tiger] cd {GRID_SRC} && GRID_TIGER_PREFIX_CHECK={a.prefix_check} "
          f"GRID_TIGER_COLLATE={a.collate} {shown}",
          file=sys.stderr,
          flush=True)
    t0 = time.time()
    log_path = run_dir / "grid.log"
    show = re.compile(r"prefix check|collate:|recording|Time limit|did not improve|reached|global step|Error|Traceback|Restor|Best ckpt|"
                      r"Metrics:|test/|Starting")
    with open(log_path, "w") as log:
        p = subprocess.Popen(cmd, cwd=str(GRID_SRC), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, bufsize=1)
        # a `kill` of this script (SIGTERM) or Ctrl-C also stops GRID's training, instead of leaving it running
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        try:
            for line in p.stdout:
                log.write(line)
                if a.verbose or show.search(line):
                    print("  grid| " + line.rstrip()[:300], file=sys.stderr, flush=True)
            rc = p.wait()
        finally:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
    wall = time.time() - t0
    text = re.sub(r"\x1b\[[0-9;]*m", "", log_path.read_text())  # GRID's colorlog
    if rc != 0:
        raise SystemExit(f"GRID exited {rc}; log: {log_path}\n" + "\n".join(text.splitlines()[-30:]))
    rows = _metrics_csv(run_dir)
    key = "val/" + a.valid_metric
    valid_curve = [{"step": int(r["step"]), **{m: float(r[f"val/{m}"]) for m in METRICS if r.get(f"val/{m}")}}
                   for r in rows if r.get(key)]
    # the CSV logs a validation at step global_step - 1; the checkpoint callback's lines carry the global step
    ckpt_steps = [int(x) for x in re.findall(r"global step (\d+): 'val/", text)]
    if len(ckpt_steps) == len(valid_curve):
        for row, step in zip(valid_curve, ckpt_steps):
            row["step"] = step
    test_row = next((r for r in reversed(rows) if r.get("test/recall@10")), None)
    if test_row is None:
        raise SystemExit(f"no test metrics in {run_dir}/csv; log: {log_path}")
    best = max(valid_curve, key=lambda r: r[a.valid_metric]) if valid_curve else None
    prof = _profile(run_dir / "fit-profile.txt")
    batch = prof.get("run_training_batch")
    fetch = prof.get("[_TrainingEpochLoop].train_dataloader_next")
    val_total = sum(v[2] for k, v in prof.items() if k.startswith("[Strategy]") and "validation_step" in k)
    n_batches = batch[1] if batch else max((int(r["step"]) for r in rows if r.get("train/loss_step")), default=0)
    ckpt = re.search(r"Best ckpt path: (\S+)", text)
    stop = ("time_limit" if "Time limit reached" in text else "early_stopping" if "did not improve" in text
            else "max_steps" if "max_steps=" in text and "reached" in text else "other")
    fit_prof = prof.get("run_training_epoch") or prof.get("[_TrainingEpochLoop].run") or None
    result = {
        "implementation": "snap-research/GRID TIGER", "dataset": a.dataset, "codes": a.codes,
        "codes_version": meta["codes_version"], "split_hash": meta["split_hash"],
        "test": {m: float(test_row[f"test/{m}"]) for m in METRICS},
        "best_valid": ({"metric": a.valid_metric, "value": best[a.valid_metric], "step": best["step"], **best}
                       if best else None),
        "valid_curve": valid_curve, "tested_checkpoint": ckpt.group(1) if ckpt else None,
        "optimizer_steps": n_batches // max(a.accumulate, 1), "train_batches": n_batches,
        "user_passes": round(n_batches * a.users_per_batch / meta["n_users"], 2),
        "samples_seen_max": n_batches * a.batch_size, "validations": len(valid_curve), "stop_reason": stop,
        "wall_s": round(wall, 1),
        "s_per_step": round((batch[0] + (fetch[0] if fetch else 0.0)) * a.accumulate, 4) if batch else None,
        "s_per_step_compute": round(batch[0] * a.accumulate, 4) if batch else None,
        "s_per_step_data": round(fetch[0] * a.accumulate, 4) if fetch else None,
        "validation_s_total": round(val_total, 1), "fit_s": round(fit_prof[2], 1) if fit_prof else None,
        "prefix_check": a.prefix_check, "collate": a.collate, "seed": a.seed, "threads": a.threads, "run_dir": str(run_dir), "overrides": overrides,
    }
    (run_dir / "result.json").write_text(json.dumps(result, indent=1))
    return result


def main() -> None:
    ap = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="mode", required=True)
    ex = sub.add_parser("export", help="our split + codes -> GRID's TFRecords (this repo's venv)")
    rn = sub.add_parser("run", help="GRID's TIGER train + test in its venv; prints one JSON line")
    for p in (ex, rn):
        p.add_argument("--dataset", choices=sorted(MANIFESTS), default="ml-100k")
        p.add_argument("--codes", default="sid_rqvae", help="semantic-ID feature set in bench/_work/generative/store")
        p.add_argument("--train-items", type=int, default=0,
                       help="keep each user's newest N train items only (0 = all, as GRID and our train_mode prefix)")
        p.add_argument("--history", type=int, default=20, help="items of history before a target (ours: max_seq_length)")
    ex.add_argument("--seed", type=int, default=0, help="order of users over the training shards")
    ex.add_argument("--force", action="store_true", help="rewrite an existing export")
    g = rn.add_argument_group("model (GRID's T5 encoder-decoder)")
    g.add_argument("--d-model", type=int, default=64)
    g.add_argument("--num-heads", type=int, default=2)
    g.add_argument("--d-kv", type=int, default=32, help="per-head size (T5: heads x d_kv need not equal d_model)")
    g.add_argument("--d-ff", type=int, default=256)
    g.add_argument("--num-layers", type=int, default=2, help="encoder layers = decoder layers")
    g.add_argument("--mlp-layers", type=int, default=0,
                   help="0: T5's own feed-forward (d->d_ff->d, no biases; ours); N: GRID's MLP of N hidden layers of "
                        "d_ff with biases (GRID: 2)")
    g.add_argument("--dropout", type=float, default=0.1)
    g.add_argument("--beam", type=int, default=20, help="top_k_for_generation (metrics exist up to it)")
    g.add_argument("--unconstrained", action="store_true", help="GRID's default beam search (invalid tuples allowed)")
    g.add_argument("--prefix-check", choices=["fast", "grid"], default="fast",
                   help="constrained beam's valid-prefix test: GRID's own all-pairs comparison (grid, ~1 h per ML-1M "
                        "evaluation on one thread) or an equivalent lookup checked against it at start (fast)")
    g.add_argument("--collate", choices=["fast", "grid"], default="fast",
                   help="training batches: GRID's collate_with_sid_causal_duplicate (grid: a Python loop over every "
                        "sub-sequence, 3-8 s a step here) or the same draw decoded arithmetically, checked against "
                        "GRID's at start (fast)")
    t = rn.add_argument_group("training")
    t.add_argument("--optimizer", choices=["adamw", "adam"], default="adamw", help="GRID: adam (L2 in the gradient)")
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--weight-decay", type=float, default=0.01)
    t.add_argument("--batch-size", type=int, default=1024,
                   help="samples (= targets) a batch: collate max_batch_size, drawn from --users-per-batch users")
    t.add_argument("--users-per-batch", type=int, default=32, help="rows read per batch (GRID: 32)")
    t.add_argument("--accumulate", type=int, default=1, help="batches per optimizer step (GRID: 16)")
    t.add_argument("--eval-batch-size", type=int, default=64, help="users per validation/test batch")
    t.add_argument("--minutes", type=float, default=20.0, help="wall-clock training budget (trainer.max_time)")
    t.add_argument("--max-steps", type=int, default=-1)
    t.add_argument("--val-every", type=int, default=100, help="optimizer steps between validations")
    t.add_argument("--patience", type=int, default=5, help="validations without improvement before stopping")
    t.add_argument("--valid-metric", default="ndcg@10", choices=METRICS)
    t.add_argument("--seed", type=int, default=2024, help="Lightning seed_everything (0 = unseeded in GRID)")
    t.add_argument("--threads", type=int, default=1, help="torch / TF threads")
    t.add_argument("--workers", type=int, default=0, help="DataLoader workers (0: data prepared in the main process)")
    t.add_argument("--nice", type=int, default=10)
    t.add_argument("--tag", default="")
    t.add_argument("--record", action="store_true",
                   help="save the initial weights and every training batch with its loss under RUN/record "
                        "(grid_replay.py replays them in ours)")
    t.add_argument("--verbose", action="store_true", help="echo GRID's whole log")
    t.add_argument("extra", nargs="*", help="further Hydra overrides, passed last (e.g. trainer.max_epochs=1)")
    wr = sub.add_parser("_write")
    wr.add_argument("out")
    wr.add_argument("--train-items", type=int, default=0)
    wr.add_argument("--history", type=int, default=20)
    wr.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    if a.mode == "_write":
        _grid_write(Path(a.out), a.train_items, a.history, a.seed)
    elif a.mode == "export":
        export(a.dataset, a.codes, a.train_items, a.history, a.seed, a.force)
    else:
        print(json.dumps(run(a)))


if __name__ == "__main__":
    main()
