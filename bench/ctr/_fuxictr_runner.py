"""Reference FuxiCTR runner (the WWW2025 MMCTR challenge's DIN baseline; the authors' QIN with
``--expid QIN_variety_v9``) for the CTR parity benchmark.

Runs ONLY with the FuxiCTR venv's python (built by ``bash bench/ctr/setup_fuxictr.sh``; default
/work/fuxictr-venv); it never imports mmfeat. The challenge code (``src/DIN.py``,
``src/mmctr_dataloader.py``, ``config/qin_config/*.yaml``) is imported from a checkout of the
salmon1802/QIN repository given by ``--qin-dir`` (nothing of it is copied into this repo):

    mkdir -p /work/qin-checkout && \
      git --git-dir=/work/.mirror/salmon1802+QIN/repo archive HEAD | tar -x -C /work/qin-checkout

Usage:
    /work/fuxictr-venv/bin/python bench/ctr/_fuxictr_runner.py --data DIR [--qin-dir /work/qin-checkout]
        [--epochs 100] [--max-train-batches M] [--seed 20242025] [--threads 2] [--num-workers 1]
        [--time-limit-s S] [--work WORKDIR] [--gpu -1] [--config '{"batch_size": 1024}']
        [--out result.json]

Input layout (the MicroLens_1M_MMCTR challenge layout, as our exporter writes it) in ``--data DIR``:
    train/valid/test.parquet: user_id int64, item_seq list<int64> (fixed length, left-padded with 0,
        most recent last), likes_level int64, views_level int64, item_id int64, label int64 (0/1).
    item_info.parquet: row k = item k (row 0 all-zero padding): item_id int64, item_tags list<int64>
        (0 = padding), item_emb_d{D} list<float32>.
DIR is never written: a work dir (``--work``, or a temp dir removed at the end) receives symlinks to
the four parquet files plus what FuxiCTR writes (feature_map.json, feature_processor.pkl,
feature_vocab.json, the checkpoint and the log).

Protocol (what run_expid.py of the challenge does, minus the submission zip):
    * params = Base + ``--expid`` (DIN_default) of the checkout's config/qin_config/model_config.yaml, then the
      dataset section of dataset_config.yaml with the feature columns and label of the export's own
      ``<name>.yaml`` as written (vocabularies, ``item_emb_d{D}`` with embedding_dim = pretrain_dim = D),
      then the runner's own settings (epochs, seed, gpu, paths, num_workers, verbose=0), then the
      ``--config`` JSON overlay (last word).
    * FeatureProcessor + build_dataset(rebuild_dataset=False) only write feature_map.json; the parquet
      rows are used as they are (no re-encoding).
    * seed_everything(seed); the experiment's model class from the checkout's ``src`` (as run_expid.py
      picks it); RankDataLoader(data_loader=MMCTRDataLoader);
      BaseModel.fit (valid AUC each epoch, LR x0.1 on plateau, early stop after early_stop_patience
      non-improving epochs, best checkpoint reloaded at the end); evaluate(valid) with the best
      weights; predict(test); test AUC = sklearn roc_auc_score, logloss = sklearn log_loss on float64
      predictions (sklearn clips to [eps, 1-eps], eps = float64 machine eps; exactly what FuxiCTR's
      own evaluate_metrics does).
    * ``--eval-state`` / ``--train-steps-from`` (the bench's crosscheck and samesteps): no fit(); our
      weights mapped to the challenge model's names, then predictions, or one train_step per given batch.
    * Timing: train_s = wall time of BaseModel.train_epoch minus the in-epoch validation step
      (eval_step: evaluate + checkpoint/LR bookkeeping); eval_s = the evaluate() call of that epoch.
      Batches are collated by MMCTRDataLoader (pandas item_info.iloc per batch), so train_s includes
      data-loading cost not hidden by --num-workers (the challenge Base config used num_workers=8).
      With --max-train-batches M each epoch stops after M batches (and validates then); s_per_epoch is
      then mean train_s scaled by full_batches / M.
    * --time-limit-s: checked after each epoch (after its validation); training stops there, and the
      best weights so far are restored as usual.

Output JSON (stdout and --out): impl, params, n_rows, per_epoch [{epoch, train_s, eval_s, valid_auc,
valid_logloss, lr}], best_epoch, valid_auc, valid_logloss, test_auc, test_logloss, s_per_epoch,
peak_rss_mib (+ children), n_params, ...
"""
import argparse
import copy
import json
import logging
import os
import re
import resource
import shutil
import sys
import tempfile
import time

SPLITS = ("train", "valid", "test")
CHALLENGE_DATASET_ID = "MicroLens_1M_x1"


def parse_args(argv=None):
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="dir with train/valid/test/item_info.parquet")
    p.add_argument("--qin-dir", default="/work/qin-checkout", help="checkout of salmon1802/QIN")
    p.add_argument("--work", default=None, help="work dir (kept); default: a temp dir, removed")
    p.add_argument("--epochs", type=int, default=None, help="epoch budget (default: DIN_default's 100)")
    p.add_argument("--max-train-batches", type=int, default=None, help="stop each epoch after M batches")
    p.add_argument("--seed", type=int, default=None, help="default: DIN_default's 20242025")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--num-workers", type=int, default=1, help="DataLoader workers (challenge: 8)")
    p.add_argument("--time-limit-s", type=float, default=None)
    p.add_argument("--gpu", type=int, default=-1, help="-1 = CPU")
    p.add_argument("--config", default=None, help="JSON overlay onto the params")
    p.add_argument("--expid", default="DIN_default")
    p.add_argument("--out", default=None, help="write the result JSON here")
    p.add_argument("--train-steps-from", default=None,
                   help="no fit(): load this state_dict of OUR model (mapped), then one model.train_step per row of "
                        "--rows (a [steps, batch] .npy of train row indices); writes the loss of each step")
    p.add_argument("--rows", default=None, help="with --train-steps-from: the batches' train row indices")
    p.add_argument("--eval-state", default=None,
                   help="no training: load this state_dict of OUR DIN / QIN (mapped to the challenge model's names; "
                        "--expid QIN_variety_v9 for QIN) and "
                        "predict valid and test (the bench's crosscheck: same weights, same predictions?)")
    return p.parse_args(argv)


def data_stats(data_dir):
    """Vocab sizes / widths from the data (reads, never writes)."""
    import numpy as np
    import pyarrow.parquet as pq
    info = pq.read_table(os.path.join(data_dir, "item_info.parquet"))
    emb_cols = [c for c in info.column_names if re.fullmatch(r"item_emb_d\d+", c)]
    if len(emb_cols) != 1:
        raise SystemExit(f"item_info.parquet needs exactly one item_emb_d{{D}} column, has {emb_cols}")
    emb_col = emb_cols[0]
    first = info.column(emb_col).slice(0, 1).to_pylist()[0]
    emb_dim = len(first)
    if emb_dim != int(emb_col.split("_d")[-1]):
        logging.warning("%s holds vectors of width %d", emb_col, emb_dim)
    ids = info.column("item_id").to_numpy()
    if not np.array_equal(ids, np.arange(len(ids))):
        raise SystemExit("item_info.parquet: row k must hold item_id k (MMCTRDataLoader uses iloc)")
    tags = info.column("item_tags").combine_chunks()
    tag_len = max(len(x) for x in tags.slice(0, min(len(tags), 1000)).to_pylist())
    tag_max = int(np.max(tags.flatten().to_numpy())) if len(tags.flatten()) else 0
    st = {"n_items_rows": info.num_rows, "emb_col": emb_col, "emb_dim": emb_dim,
          "tag_len": tag_len, "tag_vocab": tag_max + 1, "n_rows": {}, "seq_len": None}
    lv = {"likes_level": 0, "views_level": 0}
    for s in SPLITS:
        t = pq.read_table(os.path.join(data_dir, f"{s}.parquet"))
        st["n_rows"][s] = t.num_rows
        for c in lv:
            lv[c] = max(lv[c], int(np.max(t.column(c).to_numpy())))
        seq = t.column("item_seq").combine_chunks()
        st["seq_len"] = len(seq.slice(0, 1).to_pylist()[0])
        item_max = max(int(np.max(t.column("item_id").to_numpy())), int(np.max(seq.flatten().to_numpy())))
        if item_max >= info.num_rows:
            raise SystemExit(f"{s}: item id {item_max} >= rows of item_info ({info.num_rows})")
        if "label" not in t.column_names:
            raise SystemExit(f"{s}.parquet has no label column")
    st["likes_vocab"] = lv["likes_level"] + 1
    st["views_vocab"] = lv["views_level"] + 1
    return st


def exported_dataset_config(data_dir):
    """The dataset entry of the export's ``<name>.yaml`` in ``data_dir`` (the one FuxiCTR dataset config there)."""
    import yaml
    found = [f for f in sorted(os.listdir(data_dir)) if f.endswith(".yaml")]
    if len(found) != 1:
        raise SystemExit(f"{data_dir}: expected the export's one dataset config <name>.yaml, found {found} "
                         f"(write the folder with `mmfeat store export fuxictr`)")
    with open(os.path.join(data_dir, found[0])) as fh:
        cfg = yaml.safe_load(fh)
    if not isinstance(cfg, dict) or len(cfg) != 1 or "feature_cols" not in next(iter(cfg.values())):
        raise SystemExit(f"{found[0]}: not a FuxiCTR dataset config (one dataset id with feature_cols)")
    return next(iter(cfg.values()))


def build_params(args, qin_dir, work, st):
    from fuxictr.utils import load_model_config, load_dataset_config
    cfg_dir = os.path.join(qin_dir, "config", "qin_config")
    params = load_model_config(cfg_dir, args.expid)  # Base + DIN_default, model_id = expid
    ds = copy.deepcopy(load_dataset_config(cfg_dir, params["dataset_id"]))
    # the export's own dataset config, as written (feature columns, vocabularies, label): what a user of
    # `mmfeat store export fuxictr` hands to FuxiCTR; only the data paths are this run's
    exported = exported_dataset_config(args.data)
    feature_cols = copy.deepcopy(exported["feature_cols"])
    ds["label_col"] = copy.deepcopy(exported["label_col"])
    emb = [c for c in feature_cols if c.get("type") == "embedding"]
    if len(emb) != 1 or emb[0]["name"] != st["emb_col"]:
        raise SystemExit(f"the exported config's embedding column {[c['name'] for c in emb]} is not the data's "
                         f"{st['emb_col']}")
    data_root = os.path.join(work, "data")
    data_dir = os.path.join(data_root, CHALLENGE_DATASET_ID)
    ds.update({
        "data_root": data_root + os.sep,
        "feature_cols": feature_cols,
        "rebuild_dataset": False,
        "train_data": os.path.join(data_dir, "train.parquet"),
        "valid_data": os.path.join(data_dir, "valid.parquet"),
        "test_data": os.path.join(data_dir, "test.parquet"),
        "item_info": os.path.join(data_dir, "item_info.parquet"),
    })
    params.update(ds)
    params["dataset_id"] = CHALLENGE_DATASET_ID
    params["model_root"] = os.path.join(work, "checkpoints") + os.sep
    params["gpu"] = args.gpu
    params["num_workers"] = args.num_workers
    params["verbose"] = 0
    if args.epochs is not None:
        params["epochs"] = args.epochs
    if args.seed is not None:
        params["seed"] = args.seed
    if args.config:
        params.update(json.loads(args.config))
    return params, data_dir


class LimitedLoader:
    """First M batches of a DataLoader per pass; len() = M so that fit() validates after M steps."""

    def __init__(self, loader, m):
        self.loader, self.m = loader, min(m, len(loader))
        self.full_batches = len(loader)

    def __len__(self):
        return self.m

    def __iter__(self):
        for i, b in enumerate(self.loader):
            if i >= self.m:
                break
            yield b


def ours_to_challenge(ours, fx_keys, emb_col):
    """Our DIN's or QIN's state_dict under the challenge model's parameter names (FuxiCTR's FeatureEmbedding;
    DIN: DIN_Attention's and the DNN's MLP_Block, attention Linear layers matched in order since their
    Sequential indices depend on the dropout layers; QIN: W_q, W_k / W_v (our fused kv split in halves),
    W_o and the quadratic network's layer / norm / activation lists). Every key on both sides is used once."""
    emb = "embedding_layer.embedding_layer."
    fixed = {"level_emb.likes_level.weight": emb + "embedding_layers.likes_level.weight",
             "level_emb.views_level.weight": emb + "embedding_layers.views_level.weight",
             "item_id_emb.weight": emb + "embedding_layers.item_id.weight",
             "tag_emb.weight": emb + "embedding_layers.item_tags.weight",
             "item_emb_proj.weight": emb + f"feature_encoders.{emb_col}.weight",
             "attention.q.weight": "attention_layers.W_q.weight", "attention.o.weight": "attention_layers.W_o.weight"}
    fx_att = sorted({int(k.split(".")[3]) for k in fx_keys if k.startswith("attention_layers.attention_layer.mlp.")})
    our_att = ["attention.first"] + sorted({k.rsplit(".", 1)[0] for k in ours if k.startswith("attention.rest.")},
                                           key=lambda k: int(k.split(".")[2]))
    att = dict(zip(our_att, (f"attention_layers.attention_layer.mlp.{i}" for i in fx_att))) if fx_att else {}
    if fx_att and len(fx_att) != len(our_att):
        raise SystemExit(f"attention MLPs differ: {len(our_att)} linear layers (ours) vs {len(fx_att)}")
    qnn = {"0.linear": "layer.{}.linear.0", "1": "norm.{}", "2": "activation.{}"}
    out = {}
    for k, v in ours.items():
        head, leaf = k.rsplit(".", 1)
        if k in fixed:
            out[fixed[k]] = v
        elif k == "attention.kv.weight":
            out["attention_layers.W_k.weight"], out["attention_layers.W_v.weight"] = v.chunk(2, dim=0)
        elif k.startswith("dnn."):
            out["dnn.mlp." + k[4:]] = v
        elif head in att:
            out[f"{att[head]}.{leaf}"] = v
        elif k.startswith("qnn.blocks."):
            i, part = head.split(".")[2], ".".join(head.split(".")[3:])
            out[f"qnn.{qnn[part].format(i)}.{leaf}"] = v
        elif k.startswith("qnn.fc."):
            out[k] = v
        else:
            raise SystemExit(f"our key {k} has no counterpart in the challenge model")
    missing, extra = set(fx_keys) - set(out), set(out) - set(fx_keys)
    if missing or extra:
        raise SystemExit(f"state mapping incomplete: missing {sorted(missing)}, unknown {sorted(extra)}")
    return out


def evaluate_state(args, model, feature_map, params, data, st, valid_gen):
    """Predict valid and test with our trained weights loaded into the challenge model (no training)."""
    import numpy as np
    import pyarrow.parquet as pq
    import torch
    from fuxictr.pytorch.dataloaders import RankDataLoader
    from sklearn.metrics import log_loss, roc_auc_score

    ours = torch.load(args.eval_state, map_location="cpu")
    model.load_state_dict(ours_to_challenge(ours, model.state_dict().keys(), st["emb_col"]))
    result = {"impl": "fuxictr (our weights)", "eval_state": args.eval_state}
    gens = {"valid": valid_gen, "test": RankDataLoader(feature_map, stage="test", **params)}
    for split, gen in gens.items():
        p = np.asarray(model.predict(gen), np.float64)
        y = np.asarray(pq.read_table(os.path.join(data, f"{split}.parquet"), columns=["label"]).column(0).to_numpy(),
                       np.float64)
        result[split] = {"auc": float(roc_auc_score(y, p)), "logloss": float(log_loss(y, p))}
        if args.out:
            np.save(args.out[:-len(".json")] + f"-{split}.npy" if args.out.endswith(".json") else
                    args.out + f"-{split}.npy", p)
    if args.out:
        with open(args.out, "w") as f:
            f.write(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return result


def train_steps(args, model, feature_map, params, data, st):
    """The challenge model's own train_step (loss with its regularizer, backward, clipping at norm 10, Adam)
    from our initial weights on given batches: the loss of each step, to set beside ours."""
    import numpy as np
    import torch
    from src.mmctr_dataloader import BatchCollator, ParquetDataset

    ours = torch.load(args.train_steps_from, map_location="cpu")
    model.load_state_dict(ours_to_challenge(ours, model.state_dict().keys(), st["emb_col"]))
    train = ParquetDataset(os.path.join(data, "train.parquet"))
    collate = BatchCollator(feature_map, params["max_len"], train.column_index, os.path.join(data, "item_info.parquet"))
    model._max_gradient_norm = 10.0  # BaseModel.fit's default, which this loop does not call
    model.train()
    losses = []
    for i, rows in enumerate(np.load(args.rows)):
        model._batch_index = i
        losses.append(float(model.train_step(collate([train[int(j)] for j in rows]))))
        logging.info("step %d loss %.8f", i, losses[-1])
    result = {"impl": "fuxictr", "model": params["model"], "losses": losses}
    if args.out:
        with open(args.out, "w") as f:
            f.write(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return result


def main(argv=None):
    args = parse_args(argv)
    data = os.path.abspath(args.data)
    qin_dir = os.path.abspath(args.qin_dir)
    if not os.path.isfile(os.path.join(qin_dir, "src", "DIN.py")):
        raise SystemExit(f"--qin-dir {qin_dir} has no src/DIN.py (extract the salmon1802/QIN mirror)")
    for s in SPLITS + ("item_info",):
        if not os.path.isfile(os.path.join(data, f"{s}.parquet")):
            raise SystemExit(f"missing {data}/{s}.parquet")
    tmp = None
    if args.work:
        work = os.path.abspath(args.work)
        os.makedirs(work, exist_ok=True)
    else:
        work = tmp = tempfile.mkdtemp(prefix="fuxictr_din_")
    try:
        return run(args, data, qin_dir, work)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


def run(args, data, qin_dir, work):
    import numpy as np
    import torch
    torch.set_num_threads(args.threads)
    sys.path.insert(0, qin_dir)
    import fuxictr
    from fuxictr.utils import set_logger
    from fuxictr.features import FeatureMap
    from fuxictr.pytorch.dataloaders import RankDataLoader
    from fuxictr.pytorch.torch_utils import seed_everything
    from fuxictr.preprocess import FeatureProcessor, build_dataset
    from sklearn.metrics import roc_auc_score, log_loss
    import src as model_zoo  # as run_expid.py: the experiment's `model` names the class (DIN, QIN_variety_v9)
    from src.mmctr_dataloader import MMCTRDataLoader

    t_start = time.time()
    st = data_stats(data)
    params, data_dir = build_params(args, qin_dir, work, st)
    # fresh dataset dir in the work dir: symlinks to the (unmodified) parquet files
    if os.path.isdir(data_dir):
        shutil.rmtree(data_dir)
    os.makedirs(data_dir)
    for s in SPLITS + ("item_info",):
        os.symlink(os.path.join(data, f"{s}.parquet"), os.path.join(data_dir, f"{s}.parquet"))
    set_logger(params)  # log file: <work>/checkpoints/<dataset_id>/<model_id>.log (+ stderr)
    logging.info("runner params: %s", json.dumps(params, default=str))
    seed_everything(seed=params["seed"])

    feature_encoder = FeatureProcessor(**params)
    params["train_data"], params["valid_data"], params["test_data"] = build_dataset(feature_encoder, **params)
    feature_map = FeatureMap(params["dataset_id"], data_dir)
    feature_map.load(os.path.join(data_dir, "feature_map.json"), params)
    logging.info("Feature specs: %s", json.dumps(feature_map.features))

    model = getattr(model_zoo, params["model"])(feature_map, **params)
    n_params = int(sum(p.numel() for p in model.parameters() if p.requires_grad))

    # ---- instrumentation of BaseModel.fit (no change to what it computes) ----
    per_epoch = []
    cur = {}
    orig_evaluate, orig_eval_step, orig_train_epoch = model.evaluate, model.eval_step, model.train_epoch

    def evaluate(data_generator, metrics=None):
        t0 = time.time()
        logs = orig_evaluate(data_generator, metrics)
        cur["eval_s"] = cur.get("eval_s", 0.0) + time.time() - t0
        cur["logs"] = dict(logs)
        return logs

    def eval_step():
        t0 = time.time()
        orig_eval_step()
        cur["eval_step_s"] = cur.get("eval_step_s", 0.0) + time.time() - t0

    def train_epoch(data_generator):
        cur.clear()
        lr = model.optimizer.param_groups[0]["lr"]
        t0 = time.time()
        orig_train_epoch(data_generator)
        total = time.time() - t0
        logs = cur.get("logs", {})
        rec = {"epoch": model._epoch_index + 1,
               "train_s": round(total - cur.get("eval_step_s", 0.0), 3),
               "eval_s": round(cur.get("eval_s", 0.0), 3),
               "valid_auc": float(logs["AUC"]) if "AUC" in logs else None,
               "valid_logloss": float(logs["logloss"]) if "logloss" in logs else None,
               "lr": lr,
               "lr_after": model.optimizer.param_groups[0]["lr"],
               "improved": model._stopping_steps == 0}
        per_epoch.append(rec)
        logging.info("runner epoch %s", json.dumps(rec))
        if args.time_limit_s and time.time() - t_start > args.time_limit_s and not model._stop_training:
            logging.info("runner: time limit %.0fs reached after epoch %d", args.time_limit_s, rec["epoch"])
            model._stop_training = True
            cur["time_limited"] = True

    model.evaluate, model.eval_step, model.train_epoch = evaluate, eval_step, train_epoch

    params["data_loader"] = MMCTRDataLoader
    # 2.3.10's RankDataLoader is a function returning the loaders (2.3.7's was a class with
    # .make_iterator(), which run_expid.py calls)
    train_gen, valid_gen = RankDataLoader(feature_map, stage="train", **params)
    full_batches = len(train_gen)
    if args.max_train_batches:
        train_gen = LimitedLoader(train_gen, args.max_train_batches)
    if args.eval_state:
        return evaluate_state(args, model, feature_map, params, data, st, valid_gen)
    if args.train_steps_from:
        return train_steps(args, model, feature_map, params, data, st)
    t_fit = time.time()
    model.fit(train_gen, validation_data=valid_gen, **params)  # reloads the best checkpoint at the end
    fit_s = time.time() - t_fit
    time_limited = bool(cur.get("time_limited"))

    model.evaluate = orig_evaluate
    valid_logs = model.evaluate(valid_gen)
    test_gen = RankDataLoader(feature_map, stage="test", **params)
    t0 = time.time()
    y_pred = np.asarray(model.predict(test_gen), np.float64)
    test_pred_s = time.time() - t0
    import pyarrow.parquet as pq
    y_true = pq.read_table(os.path.join(data, "test.parquet"), columns=["label"]).column(0).to_numpy()
    y_true = np.asarray(y_true, np.float64)
    assert len(y_true) == len(y_pred), (len(y_true), len(y_pred))

    improved = [e for e in per_epoch if e["improved"]]
    best = max(improved, key=lambda e: e["valid_auc"]) if improved else None
    train_s = [e["train_s"] for e in per_epoch]
    batches_per_epoch = len(train_gen)
    s_per_epoch = float(np.mean(train_s)) if train_s else None
    if s_per_epoch is not None and batches_per_epoch < full_batches:
        s_per_epoch = s_per_epoch * full_batches / batches_per_epoch
    ru_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    ru_child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
    saved = {k: v for k, v in params.items() if k not in ("data_loader", "feature_cols", "label_col")}
    result = {
        "impl": f"fuxictr {fuxictr.__version__}",
        "torch": torch.__version__,
        "model": f"{params['model']} (salmon1802/QIN src/{params['model']}.py, MMCTRDataLoader)",
        "params": {k: (v if isinstance(v, (int, float, str, bool, list, dict, type(None))) else str(v))
                   for k, v in saved.items() if k not in ("train_data", "valid_data", "test_data",
                                                          "item_info", "data_root", "model_root")},
        "feature_specs": feature_map.features,
        "n_rows": st["n_rows"],
        "seq_len_in_data": st["seq_len"],
        "threads": args.threads,
        "num_workers": params.get("num_workers"),
        "batches_per_epoch": batches_per_epoch,
        "full_batches_per_epoch": full_batches,
        "per_epoch": per_epoch,
        "epochs_run": len(per_epoch),
        "best_epoch": best["epoch"] if best else None,
        "valid_auc": float(valid_logs["AUC"]),
        "valid_logloss": float(valid_logs["logloss"]),
        "test_auc": float(roc_auc_score(y_true, y_pred)),
        "test_logloss": float(log_loss(y_true, y_pred)),
        "s_per_epoch": s_per_epoch,
        "s_per_epoch_scaled": batches_per_epoch < full_batches,
        "eval_s_mean": float(np.mean([e["eval_s"] for e in per_epoch])) if per_epoch else None,
        "test_predict_s": round(test_pred_s, 3),
        "fit_s": round(fit_s, 3),
        "total_s": round(time.time() - t_start, 3),
        "time_limited": time_limited,
        "peak_rss_mib": round(ru_self, 1),
        "peak_rss_children_mib": round(ru_child, 1),
        "n_params": n_params,
    }
    text = json.dumps(result, indent=2)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            f.write(text + "\n")
    print(text)
    return result


if __name__ == "__main__":
    main()
