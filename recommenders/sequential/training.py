"""The sequential task for the shared trainer (:func:`mmfeat.recommenders.trainer.fit`): token windows
per epoch (:mod:`.batches`), next-item full ranking (:mod:`.evaluation`), sub-model metrics.

The trainer's loop, early stopping (MMRec's rounding), records and grid search are the same as for the
user-item models; only the samples and the evaluator differ.
"""
from __future__ import annotations

import numpy as np
import torch

from ..tasks import accumulated_step, register_task
from ..config import ConfigError
from .batches import epoch_batches, subsequence_batches, train_samples, with_empty_history
from .data import SequenceData
from .evaluation import SequentialEvaluator


@register_task("sequential")
class SequentialTask:
    """Leave-one-out next-item training and evaluation on :class:`SequenceData`."""

    def __init__(self, model_name: str, data, cfg: dict):
        if not isinstance(data, SequenceData):
            raise ConfigError(f"{model_name} is a sequential model: it trains on leave-one-out sequences "
                              f"(SequenceData, split method 'loo'), got {type(data).__name__}")
        self.data, self.cfg = data, cfg
        self.max_len = int(cfg["max_seq_length"])
        #: fMRLRec's key (its encoder ignores padding history); the other models never see a padding input
        self.first_item = bool(cfg.get("first_item_target", False))
        self.tokens, self.indptr = (with_empty_history(data.tokens, data.indptr) if self.first_item
                                    else (data.tokens, data.indptr))
        indptr = self.indptr
        try:
            self.starts, self.ends, self.n_targets = train_samples(indptr, self.max_len, cfg["train_mode"],
                                                                   cfg.get("train_stride"))
        except ValueError as exc:
            raise ConfigError(f"{model_name}: {exc}") from None
        self.subsequences = cfg["train_mode"] == "subsequences"
        self.users_per_batch = cfg.get("train_users_per_batch")
        if self.users_per_batch is not None and not self.subsequences:
            raise ConfigError(f"{model_name}: train_users_per_batch={self.users_per_batch} applies to "
                              f"train_mode=subsequences only, not {cfg['train_mode']}; drop it or set "
                              f"train_mode=subsequences")
        self.users_per_batch = int(self.users_per_batch or 32)
        if len(self.starts) == 0:
            raise ConfigError(f"{model_name}: no user has a train target (every user has exactly 3 interactions); "
                              f"nothing to train on")
        self.has_valid = data.n_users > 0
        self._evaluators: dict[str, SequentialEvaluator] = {}

    def train_epoch(self, model, opt, rng: np.random.Generator, device: torch.device, epoch: int) -> float:
        """One shuffled pass over the train samples (or a fresh random ``train_sample_fraction`` of them) in
        batches of ``train_batch_size`` targets (about) or samples (``train_batch_unit``); with
        ``train_mode: subsequences``, GRID's draws of ``train_batch_size`` sub-sequences per group of
        ``train_users_per_batch`` users (a fraction: of the users). The loss is the mean over the batch's
        targets."""

        model.train()
        model.pre_epoch()
        clip = self.cfg.get("clip_grad_norm")
        rows_per_part = max(1, int(self.cfg["max_tokens_per_forward"]) // self.max_len)
        total = 0.0
        starts, ends, n_targets = self.starts, self.ends, self.n_targets
        fraction = float(self.cfg.get("train_sample_fraction", 1.0))
        if self.subsequences:  # GRID's draws, per group of users (the fraction is one of the users)
            batches = subsequence_batches(self.tokens, self.indptr, self.max_len, self.users_per_batch,
                                          int(self.cfg["train_batch_size"]), rng, fraction)
        else:
            if fraction < 1.0:
                pick = rng.choice(len(starts), max(1, round(fraction * len(starts))), replace=False)
                starts, ends, n_targets = starts[pick], ends[pick], n_targets[pick]
            batches = epoch_batches(self.tokens, starts, ends, n_targets, self.max_len,
                                    int(self.cfg["train_batch_size"]), rng, self.cfg["train_batch_unit"])
        bf16 = self.cfg["train_precision"] == "bfloat16"
        for i, (inputs, targets) in enumerate(batches):
            n = float((targets > 0).sum())
            parts = [((inputs[a:a + rows_per_part].to(device), targets[a:a + rows_per_part].to(device)),
                      float((targets[a:a + rows_per_part] > 0).sum()) / n)
                     for a in range(0, len(inputs), rows_per_part)]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                total += accumulated_step(model, opt, parts, clip, epoch, i)
        return total

    def evaluator(self, split: str) -> SequentialEvaluator:
        if split not in self._evaluators:
            self._evaluators[split] = SequentialEvaluator(
                self.data, split, max_len=self.max_len, topk=tuple(self.cfg["topk"]),
                metrics=tuple(m.lower() for m in self.cfg["metrics"]), batch_size=int(self.cfg["eval_batch_size"]),
                mask_history=bool(self.cfg["mask_history"]))
        return self._evaluators[split]

    def sub_models(self, model) -> dict:
        """Valid and test metrics of every sub-model (fMRLRec's nested sizes) of the selected model."""
        out = {}
        for name, score_fn in model.sub_model_scorers().items():
            out[name] = {split: self.evaluator(split).evaluate(model, score_fn) for split in ("valid", "test")}
        return out

    def describe(self, model) -> dict:
        """The record's extra data facts: which item representation ran and the training samples."""
        return {"item_repr": model.item_repr(), "train_mode": self.cfg["train_mode"],
                "train_stride": self.cfg.get("train_stride"), "train_batch_unit": self.cfg["train_batch_unit"],
                **({"train_users_per_batch": self.users_per_batch} if self.subsequences else {}),
                "train_sample_fraction": float(self.cfg.get("train_sample_fraction", 1.0)),
                "first_item_target": self.first_item, "train_precision": self.cfg["train_precision"],
                "train_targets": int(self.n_targets.sum()),
                # subsequences: every contiguous sub-sequence of >= 2 train items can be drawn
                "train_samples": int(self._subsequence_count() if self.subsequences else len(self.starts)),
                "max_seq_length": self.max_len}

    def _subsequence_count(self) -> int:
        k = np.maximum(np.diff(self.indptr) - 2, 0)  # train items per user
        return int((k * (k - 1) // 2).sum())
