"""Standalone RecBole 1.2.1 runner for the sequential-recommender parity benchmark.

Run it with the RecBole venv's python (not the project's: it must not import mmfeat)::

    /work/recbole-venv/bin/python bench/sequential/_recbole_runner.py --data-dir DIR --dataset NAME \
        --model SASRec|GRU4Rec --config '{"epochs": 5, "train_batch_size": 256}' --out result.json

DIR/NAME/NAME.inter is a RecBole atomic file with the columns
``user_id:token item_id:token timestamp:float`` (timestamp = per-user rank, so no ties).

Protocol (fixed; the caller's --config overlays DEFAULTS, never FIXED):
  * no filtering of users/items, no duplicate removal; the three columns are loaded;
  * RecBole's prefix augmentation: a user with n items gives n-1 samples (target i_t, history
    the last MAX_ITEM_LIST_LENGTH items before it), then leave-one-out on those samples in time
    order ``eval_args = {split: {LS: valid_and_test}, order: TO, group_by: user, mode: full}``:
    target i_n -> test, i_{n-1} -> valid, i_2..i_{n-2} -> train (n=3: no valid sample);
  * CE loss over all items (padding id 0 included in the softmax), no negative sampling;
  * full-sort evaluation; only item 0 is masked (history items stay rankable);
  * metrics Recall/MRR/NDCG/Hit/Precision @ 5/10/20/50; early stopping on valid_metric.
Best-epoch weights are kept in memory (the Trainer's _save_checkpoint is overridden), so no
checkpoint is written or torch.load-ed: torch>=2.6's torch.load(weights_only=True) would
refuse RecBole's pickled Config. Epoch indices are RecBole's (0-based). RecBole writes its
tensorboard/log/saved folders into a temporary working directory that is removed at the end.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import warnings
from typing import Any

import torch

DEFAULTS: dict[str, Any] = {
    "MAX_ITEM_LIST_LENGTH": 50,
    "valid_metric": "NDCG@10",
    "seed": 2020,
    "metric_decimal_place": 6,
}
FIXED: dict[str, Any] = {
    "USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id", "TIME_FIELD": "timestamp",
    "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
    "rm_dup_inter": None, "val_interval": None, "filter_inter_by_user_or_item": False,
    "user_inter_num_interval": None, "item_inter_num_interval": None,
    "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"},
    "repeatable": True, "loss_type": "CE", "train_neg_sample_args": None,
    "metrics": ["Recall", "MRR", "NDCG", "Hit", "Precision"], "topk": [5, 10, 20, 50],
    "show_progress": False, "use_gpu": False, "gpu_id": "", "reproducibility": True,
    "save_dataset": False, "save_dataloaders": False, "log_wandb": False, "state": "WARNING",
}
REPORTED = [
    "hidden_size", "inner_size", "n_layers", "n_heads", "hidden_dropout_prob", "attn_dropout_prob",
    "hidden_act", "layer_norm_eps", "initializer_range", "embedding_size", "num_layers",
    "dropout_prob", "loss_type", "learner", "learning_rate", "weight_decay", "train_batch_size",
    "eval_batch_size", "epochs", "stopping_step", "eval_step", "valid_metric", "MAX_ITEM_LIST_LENGTH",
    "seed", "metrics", "topk", "eval_args", "shuffle", "clip_grad_norm", "metric_decimal_place",
]


def peak_rss_mb() -> float:
    """VmHWM (peak resident set size) of this process, in MiB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def lower_keys(result: dict[str, Any] | None) -> dict[str, float]:
    return {str(k).lower(): float(v) for k, v in (result or {}).items()}


def jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except TypeError:
        return str(value)


class FirstBatches:
    """A train loader that yields only its first ``n`` batches (speed runs on large data), delegating the rest."""

    def __init__(self, loader: Any, n: int) -> None:
        self.loader, self.n = loader, n

    def __iter__(self):
        for i, batch in enumerate(self.loader):
            if i >= self.n:
                break
            yield batch

    def __len__(self) -> int:
        return min(self.n, len(self.loader))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loader, name)


def make_trainer_class(base: type) -> type:
    """Trainer subclass that times _train_epoch/_valid_epoch and keeps the best state in memory."""

    class TimedTrainer(base):  # type: ignore[misc, valid-type]
        def __init__(self, config: Any, model: torch.nn.Module) -> None:
            super().__init__(config, model)
            self.epoch_log: list[dict[str, Any]] = []
            self.best_state: dict[str, torch.Tensor] | None = None
            self.best_epoch: int | None = None

        def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
            t0 = time.perf_counter()
            loss = super()._train_epoch(train_data, epoch_idx, loss_func=loss_func, show_progress=show_progress)
            train_s = time.perf_counter() - t0
            total = float(sum(loss)) if isinstance(loss, tuple) else float(loss)
            self.epoch_log.append({"epoch": epoch_idx, "train_s": train_s, "eval_s": None,
                                   "loss": total / max(len(train_data), 1), "loss_sum": total, "valid": None})
            return loss

        def _valid_epoch(self, valid_data, show_progress=False):
            t0 = time.perf_counter()
            score, result = super()._valid_epoch(valid_data, show_progress=show_progress)
            self.epoch_log[-1]["eval_s"] = time.perf_counter() - t0
            self.epoch_log[-1]["valid"] = lower_keys(result)
            return score, result

        def _save_checkpoint(self, epoch, verbose=True, **kwargs):
            # Called by fit() exactly when the valid metric improves (or ties): keep it in memory.
            self.best_state = copy.deepcopy(self.model.state_dict())
            self.best_epoch = epoch

    return TimedTrainer


def run(args: argparse.Namespace) -> dict[str, Any]:
    t_start = time.perf_counter()
    if args.dataset == "ml-100k":
        raise SystemExit("dataset name 'ml-100k' makes RecBole read its bundled copy: use another name")
    warnings.filterwarnings("ignore", category=FutureWarning)  # torch.cuda.amp.GradScaler notice
    sys.argv = sys.argv[:1]  # RecBole's Config parses --key=value from the command line
    if args.threads:
        torch.set_num_threads(args.threads)
    import recbole
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.trainer import Trainer
    from recbole.utils import get_model, init_seed

    user_cfg = json.loads(args.config) if args.config else {}
    config_dict = {**DEFAULTS, **user_cfg, **FIXED}
    config_dict["data_path"] = os.path.abspath(args.data_dir)
    config_dict["checkpoint_dir"] = "saved"
    config = Config(model=args.model, dataset=args.dataset, config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    t0 = time.perf_counter()
    dataset = create_dataset(config)
    n_interactions = len(dataset.inter_feat)  # before build(): raw rows, not augmented samples
    train_data, valid_data, test_data = data_preparation(config, dataset)
    data_s = time.perf_counter() - t0
    rss_after_data = peak_rss_mb()
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    trainer = make_trainer_class(Trainer)(config, model)
    full_batches = len(train_data)
    loader = FirstBatches(train_data, args.max_train_batches) if args.max_train_batches else train_data
    trainer.fit(loader, valid_data, verbose=False, saved=True, show_progress=False)
    if trainer.best_state is not None:
        model.load_state_dict(trainer.best_state)
    t0 = time.perf_counter()
    test_result = trainer.evaluate(test_data, load_best_model=False, show_progress=False)
    test_eval_s = time.perf_counter() - t0
    trainer.tensorboard.close()

    epochs = trainer.epoch_log
    evals = [e["eval_s"] for e in epochs if e["eval_s"] is not None]
    best = next((e for e in epochs if e["epoch"] == trainer.best_epoch), None)
    return {
        "model": args.model,
        "dataset": args.dataset,
        "config": {k: jsonable(config[k]) for k in REPORTED if k in config.final_config_dict},
        "n_users": int(dataset.user_num - 1),
        "n_items": int(dataset.item_num - 1),
        "n_interactions": int(n_interactions),
        "n_train_samples": int(len(train_data._dataset)),
        "n_valid_samples": int(len(valid_data._dataset)),
        "n_test_samples": int(len(test_data._dataset)),
        "epochs": epochs,
        "best_epoch": trainer.best_epoch,
        "best_valid": best["valid"] if best else None,
        "test": lower_keys(test_result),
        # with --max-train-batches: the timed batches scaled to the full epoch's batch count
        "s_per_epoch": sum(e["train_s"] for e in epochs) / max(len(epochs), 1) * full_batches / len(loader),
        "timed_batches": len(loader),
        "batches_per_epoch": full_batches,
        "s_per_eval": sum(evals) / max(len(evals), 1),
        "test_eval_s": test_eval_s,
        "data_s": data_s,
        "peak_rss_mb": peak_rss_mb(),
        "peak_rss_mb_after_data": rss_after_data,
        "wall_s": time.perf_counter() - t_start,
        "recbole_version": recbole.__version__,
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--model", required=True, choices=["SASRec", "GRU4Rec"])
    parser.add_argument("--config", default="{}", help="JSON object of RecBole parameters")
    parser.add_argument("--out", required=True)
    parser.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: leave)")
    parser.add_argument("--max-train-batches", type=int, default=0,
                        help="train on only the first N batches of each epoch and scale s_per_epoch to the full "
                             "epoch (a speed measurement; the metrics are then not the full epoch's)")
    args = parser.parse_args()
    out_path = os.path.abspath(args.out)
    args.data_dir = os.path.abspath(args.data_dir)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so `timeout` still cleans up
    workdir = tempfile.mkdtemp(prefix="recbole_run_")
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        result = run(args)
    finally:
        os.chdir(cwd)
        shutil.rmtree(workdir, ignore_errors=True)
    with open(out_path, "w") as fh:
        json.dump(result, fh, indent=2)
    print(json.dumps({k: result[k] for k in ("model", "best_epoch", "test", "s_per_epoch", "peak_rss_mb")}))


if __name__ == "__main__":
    main()
