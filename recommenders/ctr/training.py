"""The CTR task for the shared trainer (:func:`mmfeat.recommenders.trainer.fit`): shuffled labelled rows,
AUC/logloss on valid (selection) and test, FuxiCTR's reduce-LR-on-plateau.

The trainer's loop, early stopping, records and grid search are the ones every family uses; only the
samples, the evaluator and the plateau rule differ.
"""
from __future__ import annotations

import logging

import numpy as np
import torch

from ..tasks import EarlyStopping, optimizer_step, register_task
from ..config import ConfigError, TrainerConfig
from .data import CTRData, CTRSplit
from .metrics import auc, group_auc, logloss

log = logging.getLogger(__name__)
METRICS = {"auc", "logloss", "gauc"}
#: bigger is better for these (the trainer's early stopping maximises)
SELECTABLE = ("auc", "gauc")
#: FuxiCTR's floor of the decayed learning rate
MIN_LR = 1e-6


def batch_of(split: CTRSplit, rows: np.ndarray, device: torch.device) -> dict[str, torch.Tensor]:
    """The model's input dict for ``rows`` of ``split``."""
    return {"user": torch.from_numpy(split.user[rows]).to(device),
            "item": torch.from_numpy(split.item[rows]).to(device),
            "likes_level": torch.from_numpy(split.likes_level[rows]).to(device),
            "views_level": torch.from_numpy(split.views_level[rows]).to(device),
            "item_seq": torch.from_numpy(split.item_seq[rows].astype(np.int64)).to(device),
            "label": torch.from_numpy(split.label[rows]).to(device)}


class CTREvaluator:
    """AUC / logloss (and gAUC by user) of a model's probabilities on one split."""

    def __init__(self, split: CTRSplit, metrics: tuple[str, ...], batch_size: int):
        self.split, self.metrics, self.batch_size = split, metrics, batch_size

    @torch.no_grad()
    def predict(self, model) -> np.ndarray:
        """Probabilities for every row, in row order."""
        was = model.training
        model.eval()
        device = model.device
        out = np.empty(len(self.split), np.float64)
        for s in range(0, len(self.split), self.batch_size):
            rows = np.arange(s, min(s + self.batch_size, len(self.split)))
            out[rows] = model.predict_proba(batch_of(self.split, rows, device)).double().cpu().numpy()
        model.train(was)
        return out

    def evaluate(self, model) -> dict[str, float]:
        if len(self.split) == 0:
            return {m: float("nan") for m in self.metrics}
        p, y = self.predict(model), self.split.label
        fns = {"auc": lambda: auc(y, p), "logloss": lambda: logloss(y, p),
               "gauc": lambda: group_auc(y, p, self.split.user)}
        return {m: fns[m]() for m in self.metrics}


@register_task("ctr")
class CTRTask:
    """Binary click prediction on :class:`CTRData`."""

    def __init__(self, model_name: str, data, cfg: dict):
        if not isinstance(data, CTRData):
            raise ConfigError(f"{model_name} is a CTR model: it trains on labelled impressions (CTRData: "
                              f"mmfeat.recommenders.ctr.build_ctr_set or read_layout), got {type(data).__name__}")
        unknown = sorted({m.lower() for m in cfg["metrics"]} - METRICS)
        if unknown:
            raise ConfigError(f"{model_name}: metrics {unknown} are not CTR metrics ({', '.join(sorted(METRICS))})")
        if cfg["valid_metric"].lower() not in SELECTABLE:
            raise ConfigError(f"{model_name}: valid_metric={cfg['valid_metric']!r}: select on one of "
                              f"{', '.join(SELECTABLE)} (bigger is better)")
        if list(cfg["topk"]) != TrainerConfig.model_fields["topk"].default:
            raise ConfigError(f"{model_name}: topk does not apply to CTR metrics (AUC/logloss have no cut-off); "
                              f"drop it")
        if len(data.splits["train"]) == 0:
            raise ConfigError(f"{model_name}: the train split has no rows")
        self.data, self.cfg = data, cfg
        self.metric_names = tuple(m.lower() for m in cfg["metrics"])
        self.has_valid = len(data.splits["valid"]) > 0
        self._evaluators: dict[str, CTREvaluator] = {}

    def computed_metrics(self) -> list[str]:
        """The metric names the evaluator reports (the trainer checks ``valid_metric`` against them)."""
        return list(self.metric_names)

    def train_epoch(self, model, opt, rng: np.random.Generator, device: torch.device, epoch: int) -> float:
        """One shuffled pass over the train rows; returns the summed batch losses."""
        model.train()
        train = self.data.splits["train"]
        perm = rng.permutation(len(train))
        bs, clip = int(self.cfg["train_batch_size"]), self.cfg.get("clip_grad_norm")
        cuts = list(range(0, len(perm), bs)) + [len(perm)]
        if len(cuts) > 2 and cuts[-1] - cuts[-2] == 1:  # BatchNorm cannot train on a 1-row batch: merge it
            del cuts[-2]
        total = 0.0
        for i, (a, b) in enumerate(zip(cuts[:-1], cuts[1:])):
            total += optimizer_step(model, opt, batch_of(train, perm[a:b], device), clip, epoch, i)
        return total

    def early_stopping(self, stopping_step: int):
        """FuxiCTR's rule: a valid metric at least 1e-6 above the best is an improvement (no rounding)."""
        return EarlyStopping(stopping_step, decimals=None, min_delta=1e-6)

    def on_plateau(self, opt, scheduler) -> None:
        """FuxiCTR's reduce_lr_on_plateau: scale every learning rate by ``lr_decay_on_plateau`` (the epoch
        scheduler's base rates too, so its next step keeps the decay)."""
        factor = self.cfg.get("lr_decay_on_plateau")
        if not factor or factor == 1.0:
            return
        for group in opt.param_groups:
            group["lr"] = max(group["lr"] * float(factor), MIN_LR)
        scheduler.base_lrs = [max(lr * float(factor), MIN_LR) for lr in scheduler.base_lrs]
        log.info("no better valid %s: learning rate now %.2e", self.cfg["valid_metric"], opt.param_groups[0]["lr"])

    def evaluator(self, split: str) -> CTREvaluator:
        if split not in self._evaluators:
            self._evaluators[split] = CTREvaluator(self.data.splits[split], self.metric_names,
                                                   int(self.cfg["eval_batch_size"]))
        return self._evaluators[split]

    def sub_models(self, model) -> dict:
        return {}

    def describe(self, model) -> dict:
        """The record's extra data facts: rows, positive rates, history selection, embedding width."""
        d = self.data
        return {"max_len": int(self.cfg["max_len"]), "rows": {k: len(s) for k, s in d.splits.items()},
                "item_width": int(getattr(model, "item_dim", 0))}
