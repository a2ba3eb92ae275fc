"""MMRecUn-style machine unlearning for the user-item (graph) recommenders.

Given a trained model and a *forget set* (training interactions, or items whose every training interaction
is forgotten), fine-tune the model with

    L = retain_weight * BPR(retain batch) + forget_weight * reverse-BPR(forget batch)

where reverse BPR, ``-ln sigmoid(s_uj - s_ui)`` on a forgotten pair (u, i) and a sampled negative j, pushes the
forgotten positive *below* a non-interacted item, and the forward BPR on the retain set keeps what should
stay. Both terms go through the model's own ``calculate_loss`` (a forget triple is passed with positive and
negative swapped), so every model of the MMRec contract is supported with its own score function, auxiliary
losses (FREEDOM's modality BPRs) and regularizers, and no model code changes.

Protocol:

* the unlearned model is rebuilt on the *retain* data (``rebuild_graph``, default): its user-item graph, and
  FREEDOM's pruning edges, no longer contain the forgotten edges, so they cannot propagate at inference;
  the trained weights are copied in (graph buffers are not persistent, so a state dict carries weights only);
* one unlearning epoch = one shuffled pass over the retain set in ``train_batch_size`` batches; the forget
  set is reshuffled every epoch and spread over the epoch's steps (each forgotten pair is seen once per
  epoch), so each step carries one retain batch and one small forget batch. The objective is a sum over
  pairs, as the paper writes it (``normalize="pairs"``): with equal weights a forgotten pair weighs as much
  as a retained one; ``normalize="batches"`` weights the two batch means instead (much stronger forgetting:
  on ML-100K, 10 epochs at weights 1/1 drove LightGCN's retain Recall@20 from 0.36 to 0.10);
* negatives: retain batches draw from the retain set's complement (forgotten items are legitimate
  negatives, as they are for a model retrained without them); forget batches draw from the complement of
  the user's *original* training items, so a forgotten item is never pushed below another forgotten one.
  Candidates are the items that still have a retained training interaction (MMRec's sampler rule);
* metrics (the paper's): Recall/NDCG@K on the **forget set** (its pairs as targets, the retain training
  items masked: how much of the forgotten data the model still ranks on top; compare with a *gold* model
  retrained from scratch on the retain data) and on the **retain set** (the test split's retained rows:
  utility kept; compare with the original model), plus unlearning time vs retraining time. All models are
  scored on the same candidates (only retain training items masked), so their numbers compare.

Example::

    from mmfeat.recommenders import train
    from mmfeat.recommenders.unlearning import forget_set, retain_data, unlearn
    rec = train(data, "LightGCN", {"epochs": 50})
    forget = forget_set(data, kind="items", share=0.05, seed=0)
    res = unlearn(rec._model, data, forget, {"epochs": 3})
    res.unlearned["forget"]["recall@20"], res.unlearned["retain"]["recall@20"], res.unlearn_s

Reference:
    Paper: Yash Sinha, Murari Mandal, Mohan Kankanhalli. "Multi-Modal Recommendation Unlearning for Legal,
    Licensing, and Modality Constraints" (MMRecUn). AAAI 2025 (arXiv:2405.15328; v1 "Multi-Modal
    Recommendation Unlearning").
    Code: MachineUnlearn/MMRecUN (MMRec-based). Not retrievable from this workspace (no snapshot, and the
    paper's method section could not be read here): the defaults of :class:`UnlearnConfig` (weights 1/1 over
    pairs, 3 epochs, the model's own learning rate / batch size / optimizer) are ours, chosen on ML-100K
    (bench/graph/RESULTS_unlearning.md), not read from the reference.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict

from .config import ConfigError, check_keys, param, validate_values
from .data import InteractionData
from .evaluation import Evaluator
from .models.base import Recommender, build_model
from .sampler import NegativeSampler
from .tasks import accumulated_step
from .trainer import build_optimizer, seed_everything
from .splits import DEFAULT_SPLIT_SEED

log = logging.getLogger(__name__)

FORGET_KINDS = ("interactions", "items")


# ---------------------------------------------------------------------------- config
class UnlearnConfig(BaseModel):
    """Every key :func:`unlearn` reads; anything else is a :class:`ConfigError` (typos never pass silently).

    ``None`` for ``learning_rate`` / ``train_batch_size`` / ``weight_decay`` / ``learner`` means "the original
    model's own value" (its resolved training config), so unlearning fine-tunes the model as it was trained.
    """

    model_config = ConfigDict(extra="forbid", validate_default=True)

    #: unlearning epochs (passes over the retain set)
    epochs: int = param(3, ge=1)
    #: weight of the forward BPR on the retain set
    retain_weight: float = param(1.0, ge=0.0)
    #: weight of the reverse BPR on the forget set
    forget_weight: float = param(1.0, ge=0.0)
    #: "pairs": the objective is a sum over pairs, as the paper writes it (every forgotten and retained pair
    #: weighs the same times its weight: the forget batch mean is scaled by forget/retain batch size);
    #: "batches": the weights multiply the two batch means (a forget pair then weighs |D_r|/|D_f| times more)
    normalize: Literal["pairs", "batches"] = param("pairs")
    learning_rate: float | None = param(None, ge=0.0)
    train_batch_size: int | None = param(None, ge=1)
    #: forget triples per step; None: the forget set spread evenly over an epoch's steps
    forget_batch_size: int | None = param(None, ge=1)
    weight_decay: float | None = param(None, ge=0.0)
    learner: str | None = param(None)
    #: rebuild the model on the retain data (its graph without the forgotten edges) before fine-tuning
    rebuild_graph: bool = param(True)
    seed: int = param(999)
    topk: list[int] = param([10, 20], min_length=1)
    metrics: list[str] = param(["recall", "ndcg"], min_length=1)
    eval_batch_size: int = param(4096, ge=1)
    #: evaluate the original model too (the "before" row of the result)
    evaluate_original: bool = param(True)


def resolve_unlearn_config(config: Mapping[str, Any] | UnlearnConfig | None = None) -> dict:
    """``config`` checked against :class:`UnlearnConfig`, defaults filled.

    Raises:
        ConfigError: an undeclared key (naming the closest declared one) or a mistyped value.
    """
    if isinstance(config, UnlearnConfig):
        return config.model_dump()
    config = dict(config or {})
    check_keys(config, UnlearnConfig.model_fields, owner="unlearn", where="config")
    return validate_values(UnlearnConfig, config, owner="unlearn", where="config")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- forget sets
@dataclass(frozen=True)
class ForgetSet:
    """What to forget: distinct training pairs ``pairs`` [n, 2] (user, item); ``items`` in items mode."""

    kind: str
    pairs: np.ndarray
    items: np.ndarray | None = None
    share: float = 0.0
    seed: int | None = None

    def summary(self) -> dict:
        out = {"kind": self.kind, "share": self.share, "seed": self.seed, "n_pairs": int(len(self.pairs)),
               "n_users": int(len(np.unique(self.pairs[:, 0])))}
        if self.items is not None:
            out["n_items"] = int(len(self.items))
        return out

    def digest(self) -> str:
        """sha256 (12 hex) of the forgotten pairs, to name the retain split."""
        return hashlib.sha256(np.ascontiguousarray(self.pairs, np.int64).tobytes()).hexdigest()[:12]


def _keys(pairs: np.ndarray, n_items: int) -> np.ndarray:
    return pairs[:, 0].astype(np.int64) * n_items + pairs[:, 1].astype(np.int64)


def _pairs(keys: np.ndarray, n_items: int) -> np.ndarray:
    return np.stack([keys // n_items, keys % n_items], 1).astype(np.int64)


def forget_set(data: InteractionData, kind: str = "interactions", share: float = 0.05,
               seed: int = DEFAULT_SPLIT_SEED) -> ForgetSet:
    """Draw a forget set from ``data.train`` (seeded).

    Args:
        data: the split.
        kind: ``"interactions"`` (``share`` of the distinct training pairs, uniformly) or ``"items"``
            (``share`` of the items that have a training interaction; every training pair of those items).
        share: the fraction drawn, in (0, 1); at least one pair / item is drawn.
        seed: numpy seed of the draw.

    Returns:
        The :class:`ForgetSet` (pairs sorted by user, then item).

    Raises:
        ValueError: an unknown ``kind``, ``share`` outside (0, 1), or a split without training rows.

    Example::

        f = forget_set(data, "items", share=0.05, seed=0)   # 5% of the items, all their interactions
    """
    if kind not in FORGET_KINDS:
        raise ValueError(f"unknown forget-set kind {kind!r}; choose one of {', '.join(FORGET_KINDS)}")
    if not 0.0 < float(share) < 1.0:
        raise ValueError(f"share must be in (0, 1), got {share!r}")
    keys = np.unique(_keys(data.train, data.n_items))
    if len(keys) == 0:
        raise ValueError("the split has no training interactions to forget")
    rng = np.random.default_rng(seed)
    if kind == "interactions":
        n = max(1, int(round(share * len(keys))))
        chosen = np.sort(rng.choice(keys, n, replace=False))
        return ForgetSet(kind, _pairs(chosen, data.n_items), None, float(share), seed)
    items = np.unique(keys % data.n_items)
    n = max(1, int(round(share * len(items))))
    gone = np.sort(rng.choice(items, n, replace=False))
    chosen = keys[np.isin(keys % data.n_items, gone)]
    return ForgetSet(kind, _pairs(chosen, data.n_items), gone.astype(np.int64), float(share), seed)


def retain_data(data: InteractionData, forget: ForgetSet) -> InteractionData:
    """The split without the forget set: what a gold model is retrained on and the unlearned model's graph.

    Training rows whose (user, item) is forgotten are removed (duplicates included). In items mode the
    forgotten items' valid/test rows go too (they are no longer recommendable data). Valid/test rows of users
    left without any training row are dropped, as the data builder (MMRec) drops cold users. Item features
    and ``n_users`` / ``n_items`` are unchanged, so a model's weights transfer.

    Raises:
        ValueError: a forget pair that is not a training interaction of ``data``.
    """
    train_keys = _keys(data.train, data.n_items)
    fkeys = np.unique(_keys(forget.pairs, data.n_items))
    if not np.isin(fkeys, train_keys).all():
        raise ValueError("the forget set holds pairs that are not training interactions of this split")
    train = data.train[~np.isin(train_keys, fkeys)]
    has_train = np.zeros(data.n_users, bool)
    has_train[train[:, 0]] = True

    def keep(rows: np.ndarray) -> np.ndarray:
        ok = has_train[rows[:, 0]]
        if forget.items is not None:
            ok &= ~np.isin(rows[:, 1], forget.items)
        return rows[ok]

    # dataclasses.replace keeps every other field (features, ids, ...) and resets the cached graphs
    return dataclasses.replace(data, train=train, valid=keep(data.valid), test=keep(data.test),
                               item_features=dict(data.item_features),
                               split_hash=f"{data.split_hash}-forget-{forget.digest()}",
                               split_info={**dict(data.split_info), "forget": forget.summary()})


# ---------------------------------------------------------------------------- evaluation
class UnlearningEvaluator:
    """The paper's two evaluation sets, built once and reused for the original, unlearned and gold models.

    ``forget``: the forgotten pairs as targets; ``retain``: the retain data's test rows. Both mask only the
    retain training items, so a forgotten item competes for the top-K like any unseen item.
    """

    def __init__(self, data: InteractionData, forget: ForgetSet, topk=(10, 20), metrics=("recall", "ndcg"),
                 batch_size: int = 4096, retained: InteractionData | None = None):
        retained = retained if retained is not None else retain_data(data, forget)
        csr = retained.train_csr()
        kw = dict(topk=tuple(topk), metrics=tuple(m.lower() for m in metrics), batch_size=int(batch_size))
        self.evaluators = {"forget": Evaluator(csr, forget.pairs, **kw), "retain": Evaluator(csr, retained.test, **kw)}

    def evaluate(self, model: Recommender) -> dict[str, dict[str, float]]:
        """``{"forget": metrics, "retain": metrics}`` of ``model``."""
        return {name: ev.evaluate(model) for name, ev in self.evaluators.items()}


def evaluate_unlearning(model: Recommender, data: InteractionData, forget: ForgetSet,
                        config: Mapping[str, Any] | None = None) -> dict[str, dict[str, float]]:
    """Forget-set and retain-set metrics of ``model`` (see :class:`UnlearningEvaluator`); ``config`` may set
    ``topk`` / ``metrics`` / ``eval_batch_size`` (an :class:`UnlearnConfig` subset).

    Raises:
        ConfigError: an undeclared key.
    """
    cfg = resolve_unlearn_config(config)
    return UnlearningEvaluator(data, forget, cfg["topk"], cfg["metrics"], cfg["eval_batch_size"]).evaluate(model)


# ---------------------------------------------------------------------------- unlearning
@dataclass
class UnlearnResult:
    """What :func:`unlearn` did: the unlearned model, timings and the before / after (/ gold) metrics.

    ``original`` / ``unlearned`` / ``gold``: ``{"forget": {...}, "retain": {...}}`` (``gold`` only when a gold
    model was given; ``original`` empty when ``evaluate_original`` is false). ``unlearn_s``: wall time of the
    unlearning itself (rebuilding the model on the retain graph + fine-tuning), evaluation excluded.
    """

    model: Recommender = field(repr=False)
    model_name: str
    config: dict
    forget: dict
    unlearn_s: float = 0.0
    s_per_epoch: float = 0.0
    setup_s: float = 0.0
    epochs: list = field(default_factory=list)  # [{epoch, loss, retain_loss, forget_loss, train_s}]
    original: dict = field(default_factory=dict)
    unlearned: dict = field(default_factory=dict)
    gold: dict = field(default_factory=dict)
    eval_s: float = 0.0

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "model"}


def _rebuild(model: Recommender, retained: InteractionData, rebuild: bool) -> Recommender:
    """A copy of ``model`` to fine-tune (the caller's model is never changed): built on the retain data and
    loaded with the trained weights, or a deep copy when ``rebuild`` is false (graph with the forget edges)."""
    if not rebuild:
        return copy.deepcopy(model)
    new = build_model(type(model).model_name, retained, model.config).to(model.device)
    new.load_state_dict(model.state_dict())
    return new


def _optimizer(model: Recommender, cfg: dict, mcfg: dict) -> torch.optim.Optimizer:
    """The trainer's optimizer (:func:`mmfeat.recommenders.trainer.build_optimizer`) at a constant learning rate:
    ``cfg``'s learner / learning rate / weight decay, else the model's."""
    learner = (cfg["learner"] or mcfg.get("learner") or "adam").lower()
    if learner not in ("adam", "adamw"):
        raise ConfigError(f"unlearn: learner={learner!r} is not one of adam, adamw")
    lr = cfg["learning_rate"] if cfg["learning_rate"] is not None else mcfg.get("learning_rate", 1e-3)
    wd = cfg["weight_decay"] if cfg["weight_decay"] is not None else mcfg.get("weight_decay", 0.0)
    opt, _constant = build_optimizer(model, {"learner": learner, "learning_rate": lr, "weight_decay": wd,
                                             "learning_rate_scheduler": [1.0, 1]}, model.device)
    return opt


def unlearn(model: Recommender, data: InteractionData, forget: ForgetSet,
            config: Mapping[str, Any] | UnlearnConfig | None = None, *,
            gold: Recommender | None = None) -> UnlearnResult:
    """Make a trained ``model`` forget ``forget`` with MMRecUn's reverse + forward BPR fine-tuning.

    Args:
        model: a trained recommender of the MMRec contract (e.g. ``train(...)._model``); it is not modified.
        data: the split ``model`` was trained on (forget set included).
        forget: from :func:`forget_set` (or any :class:`ForgetSet` of training pairs of ``data``).
        config: :class:`UnlearnConfig` keys (or an instance); undeclared keys are errors.
        gold: optionally, a model retrained from scratch on :func:`retain_data` (evaluated into ``gold``).

    Returns:
        :class:`UnlearnResult` with the unlearned model (a new object), per-epoch losses, the unlearning time
        and forget/retain metrics of the original, unlearned (and gold) models. Expected behaviour (the band
        tests/test_unlearning.py checks on tiny clustered data, 10 epochs): the forget-set Recall@10 falls at
        least 0.3 (absolute) below the original's while the retain-set Recall@10 stays within 0.15 (absolute)
        of the original's.

    Raises:
        ConfigError: an undeclared config key, a mistyped value, an unknown learner.
        ValueError: a forget set that is not made of ``data``'s training pairs, or an empty retain set.
        FloatingPointError: a NaN loss.

    Example::

        forget = forget_set(data, "interactions", share=0.05, seed=0)
        res = unlearn(rec._model, data, forget, {"epochs": 5, "forget_weight": 1.0})
        print(res.original["forget"]["recall@20"], "->", res.unlearned["forget"]["recall@20"])
    """
    cfg = resolve_unlearn_config(config)
    retained = retain_data(data, forget)
    if len(retained.train) == 0:
        raise ValueError("the forget set covers every training interaction: nothing is left to retain")
    mcfg = dict(model.config)
    evaluator = UnlearningEvaluator(data, forget, cfg["topk"], cfg["metrics"], cfg["eval_batch_size"], retained)
    res = UnlearnResult(model=model, model_name=type(model).model_name, config=cfg, forget=forget.summary())
    t_eval = time.perf_counter()
    if cfg["evaluate_original"]:
        res.original = evaluator.evaluate(model)
    res.eval_s = time.perf_counter() - t_eval

    t0 = time.perf_counter()
    seed_everything(int(cfg["seed"]))
    rng = np.random.default_rng(int(cfg["seed"]))
    net = _rebuild(model, retained, bool(cfg["rebuild_graph"]))
    device = net.device
    opt = _optimizer(net, cfg, mcfg)
    retain_csr = retained.train_csr()
    candidates = np.flatnonzero(np.diff(retain_csr.tocsc().indptr) > 0)
    retain_sampler = NegativeSampler(retain_csr, candidates)
    forget_sampler = NegativeSampler(data.train_csr(), candidates)  # never another of the user's items
    train = torch.from_numpy(retained.train)
    fpairs = torch.from_numpy(forget.pairs)
    bs = int(cfg["train_batch_size"] or mcfg.get("train_batch_size", 2048))
    n_steps = -(-len(train) // bs)
    n_f = len(fpairs)
    fbs = int(cfg["forget_batch_size"] or -(-n_f // n_steps))
    w_r, w_f = float(cfg["retain_weight"]), float(cfg["forget_weight"])
    if cfg["normalize"] == "pairs":  # sum-over-pairs objective divided by the retain batch size
        w_f *= fbs / min(bs, len(train))
    clip = mcfg.get("clip_grad_norm")
    res.setup_s = time.perf_counter() - t0

    net.train()
    for epoch in range(int(cfg["epochs"])):
        te = time.perf_counter()
        net.pre_epoch()
        perm = torch.from_numpy(rng.permutation(len(train)))
        users, pos = train[perm, 0], train[perm, 1]
        neg = torch.from_numpy(retain_sampler.sample(users.numpy(), rng))
        # the forget set, reshuffled, spread over the steps (wrapping around when forget_batch_size asks more)
        fidx = torch.from_numpy(rng.permutation(n_f))[
            (torch.arange(n_steps)[:, None] * fbs + torch.arange(fbs)[None, :]) % n_f]
        fu, fi = fpairs[fidx, 0], fpairs[fidx, 1]  # [n_steps, fbs]
        fj = torch.from_numpy(forget_sampler.sample(fu.reshape(-1).numpy(), rng)).reshape(fu.shape)
        tot = np.zeros(2)
        for k in range(n_steps):
            s = slice(k * bs, (k + 1) * bs)
            parts = [((users[s].to(device), pos[s].to(device), neg[s].to(device)), w_r),
                     # reverse BPR: the forgotten item in the negative slot, the sampled negative as positive
                     ((fu[k].to(device), fj[k].to(device), fi[k].to(device)), w_f)]
            losses: list[float] = []
            accumulated_step(net, opt, parts, clip, epoch, k, losses=losses)
            tot += np.asarray(losses)
        res.epochs.append({"epoch": epoch, "loss": float(w_r * tot[0] + w_f * tot[1]), "retain_loss": float(tot[0]),
                           "forget_loss": float(tot[1]), "train_s": time.perf_counter() - te})
        log.info("unlearn %s epoch %d retain BPR %.4f reverse BPR %.4f (%.2fs)", res.model_name, epoch,
                 tot[0] / n_steps, tot[1] / n_steps, res.epochs[-1]["train_s"])
    res.unlearn_s = time.perf_counter() - t0
    res.s_per_epoch = float(np.mean([e["train_s"] for e in res.epochs]))
    net.eval()
    res.model = net

    t_eval = time.perf_counter()
    res.unlearned = evaluator.evaluate(net)
    if gold is not None:
        res.gold = evaluator.evaluate(gold)
    res.eval_s += time.perf_counter() - t_eval
    return res


__all__ = ["FORGET_KINDS", "ForgetSet", "UnlearnConfig", "UnlearnResult", "UnlearningEvaluator",
           "evaluate_unlearning", "forget_set", "resolve_unlearn_config", "retain_data", "unlearn"]
