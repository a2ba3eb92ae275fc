"""The pieces of a training loop every family shares, and the registry of the families' tasks.

A *task* is one family's protocol for the shared trainer (:func:`mmfeat.recommenders.trainer.fit`): how an epoch
samples and steps, which evaluator scores valid/test, the stopping rule. :class:`GeneralTask` (user-item, MMRec's
protocol) lives here; the sequential and CTR families register theirs with :func:`register_task` when their
package is imported, so the trainer imports no family module and no family imports the trainer.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from .config import ConfigError
from .data import InteractionData
from .evaluation import Evaluator
from .sampler import NegativeSampler

log = logging.getLogger(__name__)

#: MMRec's TopKEvaluator rounds every metric to this many decimals; early stopping compares those values.
VALID_SCORE_DECIMALS = 4


@dataclass
class EarlyStopping:
    """MMRec's ``early_stopping`` (src/utils/utils.py, ``bigger=True``) on MMRec's rounded scores.

    MMRec compares ``valid_result[valid_metric]``, which its TopKEvaluator has already rounded with
    ``round(np.float64, 4)``; we round the same way here (not in the evaluator, so records keep full
    precision). A strictly greater rounded score is a new best and resets the counter; anything else
    counts one bad evaluation, and more than ``stopping_step`` in a row stops training.
    """

    stopping_step: int
    best: float = -np.inf
    bad_evals: int = 0
    #: scores are compared rounded to this many decimals (MMRec: 4); None compares them as they are
    decimals: int | None = VALID_SCORE_DECIMALS
    #: a new best must exceed the old by at least this much (after rounding); 0 = strictly greater
    min_delta: float = 0.0

    def rounded(self, score: float) -> float:
        """``score`` as it is compared (MMRec: numpy half-to-even rounding to 4 decimals)."""
        return float(score) if self.decimals is None else float(np.round(np.float64(score), self.decimals))

    def update(self, score: float) -> tuple[bool, bool]:
        """Record one validation score; returns (is a new best, stop now)."""
        score = self.rounded(score)
        if score > self.best and (self.min_delta == 0.0 or score >= self.best + self.min_delta):
            self.best, self.bad_evals = score, 0
            return True, False
        self.bad_evals += 1
        return False, self.bad_evals > self.stopping_step


def optimizer_step(model, opt, batch, clip: dict | None, epoch: int, index: int) -> float:
    """One step on ``batch``: loss, NaN check, backward, optional gradient clipping, update; returns the loss.

    Raises:
        FloatingPointError: a NaN loss (naming the epoch and batch).
    """
    return accumulated_step(model, opt, [(batch, 1.0)], clip, epoch, index)


def accumulated_step(model, opt, parts: list, clip: dict | None, epoch: int, index: int,
                     losses: list | None = None) -> float:
    """One optimizer step over a batch given as ``(part, weight)`` pieces: the gradient of
    ``sum(weight * loss(part))``, accumulated piece by piece so that only one piece's activations live at a
    time (with weights = each piece's share of the batch's targets, the gradient of the whole batch's mean
    loss, up to float rounding). Returns the weighted loss.

    Raises:
        FloatingPointError: a NaN loss (naming the epoch and batch).
    """
    opt.zero_grad(set_to_none=True)
    total = 0.0
    for part, weight in parts:
        raw = model.calculate_loss(part)
        if torch.isnan(raw):
            raise FloatingPointError(f"{type(model).__name__}: NaN loss at epoch {epoch}, batch {index}")
        if losses is not None:
            losses.append(float(raw.detach()))
        if weight:
            loss = raw * weight
            loss.backward()
            total += float(loss.detach())
    if clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), **clip)
    opt.step()
    return total


class GeneralTask:
    """User-item training and evaluation (MMRec's protocol): pairs with one uniform negative per positive,
    full ranking with the user's train items masked. The sequential models' counterpart is
    :class:`mmfeat.recommenders.sequential.training.SequentialTask`."""

    def __init__(self, model_name: str, data: InteractionData, cfg: dict):
        if not isinstance(data, InteractionData):
            raise ConfigError(f"{model_name} trains on user-item pairs (InteractionData), got {type(data).__name__}; "
                              f"sequential data is for the sequential models")
        self.data, self.cfg = data, cfg
        self.csr = data.train_csr()
        self.sampler = NegativeSampler(self.csr)
        self.train = torch.from_numpy(data.train)
        self.has_valid = len(data.valid) > 0

    def train_epoch(self, model, opt, rng: np.random.Generator, device: torch.device, epoch: int) -> float:
        """One shuffled pass with one uniform negative per positive; returns the summed loss."""
        bs, clip = int(self.cfg["train_batch_size"]), self.cfg.get("clip_grad_norm")
        model.train()
        model.pre_epoch()
        perm = torch.from_numpy(rng.permutation(len(self.train)))
        users, pos = self.train[perm, 0], self.train[perm, 1]
        neg = torch.from_numpy(self.sampler.sample(users.numpy(), rng))
        total = 0.0
        for s in range(0, len(perm), bs):
            b = (users[s:s + bs].to(device), pos[s:s + bs].to(device), neg[s:s + bs].to(device))
            total += optimizer_step(model, opt, b, clip, epoch, s // bs)
        return total

    def evaluator(self, split: str) -> Evaluator:
        rows = self.data.valid if split == "valid" else self.data.test
        return Evaluator(self.csr, rows, tuple(self.cfg["topk"]), tuple(m.lower() for m in self.cfg["metrics"]),
                         self.cfg["eval_batch_size"], candidates=self.data.eval_candidates.get(split))

    def sub_models(self, model) -> dict:
        """Name -> valid/test metrics of sub-models of the selected model (none for user-item models)."""
        return {}

    def describe(self, model) -> dict:
        """What the record's ``data`` adds about how this model read the data: on a cold-start split, that only
        cold items were ranked, and (logged as a warning too) when the model reads no item content, so its
        cold-item scores come from embeddings that never trained."""
        if not self.data.eval_candidates:
            return {}
        reads_content = bool(getattr(type(model), "modality_roles", ()))
        if not reads_content:
            log.warning("%s reads no item content: on this cold-start split its cold items keep their initial "
                        "embeddings, so its metrics are a chance baseline", type(model).__name__)
        return {"cold_start": {"ranked": "each split's cold items only",
                               "candidates": {k: int(len(v)) for k, v in self.data.eval_candidates.items()},
                               "model_reads_content": reads_content}}



#: task name (a model class's ``task`` attribute) -> the task class; each family registers its own on import
TASKS: dict[str, type] = {}


def register_task(name: str):
    """Class decorator: the training/evaluation protocol the trainer runs for models whose ``task`` is ``name``.

    A family registers its task in its own package (``recommenders/sequential/training.py`` registers
    ``"sequential"``), so the trainer imports no family module.
    """
    def deco(cls: type) -> type:
        TASKS[name] = cls
        return cls
    return deco


def task_for(model_name: str, data, cfg: dict):
    """The task object of ``model_name``'s family (``task = "general"`` unless the model class says otherwise).

    Raises:
        ConfigError: the family's task does not accept ``data`` (each task checks its data type).
    """
    from .models.base import get_model_class

    name = getattr(get_model_class(model_name), "task", "general")  # importing the model registers its task
    if name == "general":
        return GeneralTask(model_name, data, cfg)
    return TASKS[name](model_name, data, cfg)
