"""Base of the sequential (next-item) recommenders: the contract, the shared config and item tables.

Contract (DESIGN.md "sequential"): batches of ``(inputs [B, L], targets [B, L])`` token windows
(:mod:`.batches`; tokens are item index + 1, 0 pads), ``calculate_loss(batch)``, and
``full_sort_predict(inputs, lengths) -> [B, n_items]`` scoring every item after each history. A model
implements :meth:`SequentialRecommender.encode` (causal: the output at position j depends on inputs
0..j only) and gets the losses, scoring and item representations from here.

Item representations (``item_repr``): ``id`` (an embedding per item), ``feature`` (the frozen store
features of the model's roles, concatenated or summed, through a learned projection: items never seen in
training still get a vector), ``id+feature`` (their sum), or ``auto`` (the default: ``feature`` when the
run passes item features, else ``id``; the record's ``data.item_repr`` says which ran). Passing features
with ``item_repr=id`` or asking for features without passing any is a :class:`ConfigError`: nothing given
is ignored.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import ConfigError, TrainerConfig, param
from ..models.base import MULTIMODAL_ROLES, bpr_loss
from .batches import BATCH_UNITS, TRAIN_MODES

ITEM_REPRS = ("auto", "id", "feature", "id+feature")
FEATURE_FUSIONS = ("concat", "sum")
LOSS_TYPES = ("CE", "BPR")
TRAIN_PRECISIONS = ("float32", "bfloat16")


class SequentialConfig(TrainerConfig):
    """Keys of every sequential model: RecBole 1.2.1's overall.yaml where it has them, and ours."""

    epochs: int = param(300, ge=1)
    stopping_step: int = param(10, ge=0)
    topk: list[int] = param([5, 10, 20, 50], min_length=1)
    metrics: list[str] = param(["hit", "ndcg", "mrr", "recall"], min_length=1)
    valid_metric: str = param("ndcg@10")
    #: histories per evaluation forward pass (metrics do not depend on it; 512 is the fastest on CPU,
    #: measured on ML-100K against 64..4096)
    eval_batch_size: int = param(512, ge=1)
    #: the longest history a model reads (RecBole MAX_ITEM_LIST_LENGTH 50; MicroLens feeds 10)
    max_seq_length: int = param(50, ge=1)
    #: prefix (default: RecBole's samples, one per target, untruncated prefixes computed as one window),
    #: window (every train target once per epoch, ``train_stride`` targets per pass: faster, less context per
    #: target), last (one window per user, original SASRec / fMRLRec), subsequences (GRID's TIGER: random
    #: sub-sequences of a few users per batch, drawn each epoch); see batches.py
    train_mode: str = param("prefix")
    #: what ``train_batch_size`` counts: targets (default: about that many targets per batch, whole samples, so
    #: every mode makes about RecBole's number of steps) or samples (that many windows per batch; with
    #: ``train_mode: last`` a window is a user, the batch of the original SASRec and fMRLRec loaders)
    train_batch_unit: str = param("targets")
    #: subsequences mode (snap-research/GRID's TIGER samples, see batches.py) only: users whose sub-sequences
    #: make one batch of ``train_batch_size`` draws; None = GRID's 32
    train_users_per_batch: int | None = param(None, ge=1)
    #: window mode: targets per window (the window's last positions); None = max_seq_length (non-overlapping
    #: windows, fastest), 1 = prefix (RecBole's samples); see batches.py
    train_stride: int | None = param(None, ge=1)
    #: the share of the train samples drawn (uniformly, without replacement, anew each epoch) for an epoch:
    #: 1.0 (default) trains on all of them; less makes shorter epochs, so a time budget validates more often
    #: (the record's ``data.train_sample_fraction`` says which ran)
    train_sample_fraction: float = param(1.0, gt=0.0, le=1.0)
    #: a batch larger than this many input tokens is run in pieces whose gradients are accumulated into one
    #: step (the same update up to float rounding; bounds activation memory: RecBole-style prefix batches
    #: are 2048 x 50 tokens; on ML-100K SASRec 4096 -> 1.0 GB peak RSS, 8192 -> 1.6 GB, 16384 -> 2.0 GB,
    #: within 10% of the same speed)
    max_tokens_per_forward: int = param(4096, ge=1)
    #: CE: softmax over all items; BPR: one uniformly sampled negative (not the target) per target
    loss_type: str = param("CE")
    #: CE only: None (default, RecBole) = softmax over every item; k = sampled softmax over the target and k
    #: items drawn uniformly without replacement, shared by the batch (a drawn item equal to a row's target
    #: is masked for that row); about n_items / k times less softmax work per step
    ce_negatives: int | None = param(None, ge=1)
    #: float32 (default) or bfloat16: the training forward and backward under ``torch.autocast`` in bfloat16
    #: (matrix products in bfloat16, the softmax and the loss in float32; weights, optimizer and evaluation stay
    #: float32). On this CPU (avx512_bf16) a SASRec / GRU4Rec step on ML-1M is 1.5x faster; the converged
    #: metrics against float32 are in docs/benchmarks.md
    train_precision: str = param("float32")
    #: mask the user's history items in ranking: RecBole 1.2.1 and fMRLRec false, MicroLens true
    mask_history: bool = param(False)
    item_repr: str = param("auto")
    feature_fusion: str = param("concat")
    text_feature: str | None = param("text")
    image_feature: str | None = param("image")


def _choice(model: str, key: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ConfigError(f"{model}: {key}={value!r} is not one of {', '.join(allowed)}")
    return value


class ItemTable(nn.Module):
    """The item representation table [n_items + 1, dim] (row 0: padding, always zero)."""

    def __init__(self, data, config: dict, dim: int, roles: tuple[str, ...], model: str):
        super().__init__()
        names = [config.get(f"{r}_feature") for r in roles]
        present = [n for n in names if n is not None and n in data.item_features]
        mode = _choice(model, "item_repr", config["item_repr"], ITEM_REPRS)
        fusion = _choice(model, "feature_fusion", config["feature_fusion"], FEATURE_FUSIONS)
        if mode == "auto":
            mode = "feature" if present else "id"
        if mode == "id" and present:
            raise ConfigError(f"{model}: item_repr=id reads no item features, but {', '.join(present)} were given; "
                              f"set item_repr=feature or id+feature, or drop the features")
        if mode != "id" and not present:
            raise ConfigError(f"{model}: item_repr={mode} needs item features; pass --feature ROLE=FEATURE_SET "
                              f"for a role among {', '.join(roles)}")
        self.mode, self.fusion, self.used = mode, fusion, present
        n = data.n_items
        self.id_embedding = nn.Embedding(n + 1, dim, padding_idx=0) if mode in ("id", "id+feature") else None
        self.projections = nn.ModuleList()
        for i, name in enumerate(present if mode != "id" else []):
            mat = np.zeros((n + 1, data.item_features[name].shape[1]), np.float32)
            mat[1:] = data.item_features[name]
            self.register_buffer(f"feature_{i}", torch.from_numpy(mat), persistent=False)
        if mode != "id":
            dims = [getattr(self, f"feature_{i}").shape[1] for i in range(len(present))]
            ins = [sum(dims)] if fusion == "concat" else dims
            self.projections.extend(nn.Linear(d, dim) for d in ins)

    def forward(self) -> torch.Tensor:
        parts = []
        if self.projections:
            feats = [getattr(self, f"feature_{i}") for i in range(len(self.used))]
            if self.fusion == "concat":
                parts.append(self.projections[0](torch.cat(feats, 1)))
            else:
                parts.append(sum(p(f) for p, f in zip(self.projections, feats)))
        if self.id_embedding is not None:
            parts.append(self.id_embedding.weight)
        table = sum(parts)
        return torch.cat([torch.zeros_like(table[:1]), table[1:]], 0)  # padding row stays zero

    def padding_row(self) -> torch.Tensor:
        """[dim]: the feature projection of the padding token's all-zero features (its biases; zero for ID
        items), which :meth:`forward` replaces by zeros. fMRLRec's reference feeds this vector at padding
        positions (its padding features go through the same projection), including the empty history its
        first-item targets are predicted from."""
        if not self.projections:
            return torch.zeros(self.id_embedding.embedding_dim, device=self.id_embedding.weight.device)
        return sum(p.bias for p in self.projections)


class SequentialRecommender(nn.Module):
    """Base of the next-item models (see the module doc); subclasses implement :meth:`encode`.

    ``task = "sequential"`` tells the trainer to use leave-one-out sequences
    (:class:`mmfeat.recommenders.sequential.data.SequenceData`) and the next-item evaluator.
    """

    task = "sequential"
    config_class: type[TrainerConfig] = SequentialConfig
    defaults: dict = {}
    grid: dict = {}
    modality_roles: tuple[str, ...] = MULTIMODAL_ROLES
    #: item features are optional: without them the items are ID embeddings (``item_repr`` auto)
    requires_features = False
    model_name: str = "sequential"

    def __init__(self, data, config: dict):
        super().__init__()
        self.data, self.config = data, dict(config)
        self.n_items = data.n_items
        self.max_len = int(config["max_seq_length"])
        _choice(self.model_name, "train_mode", config["train_mode"], TRAIN_MODES)
        _choice(self.model_name, "train_batch_unit", config["train_batch_unit"], BATCH_UNITS)
        self.loss_type = _choice(self.model_name, "loss_type", config["loss_type"], LOSS_TYPES)
        _choice(self.model_name, "train_precision", config["train_precision"], TRAIN_PRECISIONS)
        self.ce_negatives = config.get("ce_negatives")
        if self.ce_negatives is not None and self.loss_type != "CE":
            raise ConfigError(f"{self.model_name}: ce_negatives={self.ce_negatives} samples the CE softmax, but "
                              f"loss_type={self.loss_type}; drop ce_negatives or set loss_type=CE")
        if self.ce_negatives is not None and self.ce_negatives >= self.n_items:
            raise ConfigError(f"{self.model_name}: ce_negatives={self.ce_negatives} is not below the {self.n_items} "
                              f"items; set ce_negatives=null for the softmax over every item")
        self._eval_table: torch.Tensor | None = None

    def item_table_module(self, dim: int) -> ItemTable:
        """The item table of this model (call once in ``__init__``)."""
        return ItemTable(self.data, self.config, dim, self.modality_roles, self.model_name)

    @property
    def device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        return torch.device("cpu")

    def item_repr(self) -> str:
        """The item representation that ran (``auto`` resolved)."""
        return self.items.mode

    # ------------------------------------------------------------------ to implement
    def encode(self, inputs: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """Hidden states [B, L, dim] of the token windows ``inputs`` [B, L] (causal), given the item table."""
        raise NotImplementedError

    # ------------------------------------------------------------------ shared
    def pre_epoch(self) -> None:
        """Called by the trainer before each epoch."""

    def table(self) -> torch.Tensor:
        return self._eval_table if self._eval_table is not None else self.items()

    def calculate_loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        inputs, targets = batch
        table = self.items()
        sel = targets > 0
        return self.loss_at(self.hidden_at(inputs, sel, table), targets[sel] - 1, table)

    def loss_at(self, hidden: torch.Tensor, targets: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """CE over all items (or the target and ``ce_negatives`` shared uniform items), or BPR with one uniform
        negative that is not the target. The softmax is float32 under autocast."""
        if self.loss_type == "CE" and self.ce_negatives is None:
            return F.cross_entropy((hidden @ table[1:].T).float(), targets)
        if self.loss_type == "CE":
            neg = torch.randperm(self.n_items, device=targets.device)[:self.ce_negatives]
            pos = (hidden * table[targets + 1]).sum(-1, keepdim=True)
            others = (hidden @ table[neg + 1].T).masked_fill(neg[None, :] == targets[:, None], float("-inf"))
            logits = torch.cat([pos.to(others.dtype), others], 1).float()
            return F.cross_entropy(logits, torch.zeros(len(targets), dtype=torch.long, device=targets.device))
        neg = (targets + torch.randint(1, self.n_items, targets.shape, device=targets.device)) % self.n_items
        pos_s = (hidden * table[targets + 1]).sum(-1)
        neg_s = (hidden * table[neg + 1]).sum(-1)
        return bpr_loss(pos_s, neg_s)

    def hidden_at(self, inputs: torch.Tensor, sel: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """Hidden states [P, dim] at the positions ``sel`` (bool [B, L]) in row-major order, i.e.
        ``encode(inputs, table)[sel]``; models override it to compute only what those positions need."""
        return self.encode(inputs, table)[sel]

    def last_hidden(self, inputs: torch.Tensor, lengths: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """Hidden state [B, dim] at each row's last real position (``lengths``: real items per row)."""
        sel = torch.zeros(inputs.shape, dtype=torch.bool, device=inputs.device)
        sel[torch.arange(len(inputs), device=inputs.device), lengths - 1] = True
        return self.hidden_at(inputs, sel, table)

    def full_sort_predict(self, inputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Scores [B, n_items] of every item after each history (``lengths``: real items per row)."""
        table = self.table()
        return self.last_hidden(inputs, lengths, table) @ table[1:].T

    def prepare_eval(self) -> None:
        with torch.no_grad():
            self._eval_table = self.items()

    def end_eval(self) -> None:
        self._eval_table = None

    def sub_model_scorers(self) -> dict:
        """Name -> ``score_fn(inputs, lengths)`` of sub-models evaluated next to the full model (none here;
        fMRLRec's nested sizes)."""
        return {}


def rand_dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """Inverted dropout whose keep-mask is ``torch.rand >= p`` (float32 uniforms, whatever ``x``'s dtype).

    The same distribution as :func:`torch.nn.functional.dropout` (each element kept with probability
    ``1 - p``, kept ones scaled by ``1 / (1 - p)``), drawn about 3.5x faster on CPU: ``bernoulli_`` fills about
    30M elements/s here, and a RecBole SASRec step on ML-1M spent 14% of its time in it. The random stream
    differs from ``F.dropout``'s, so a seed gives other masks than before (not other statistics).
    """
    if not training or p == 0.0:
        return x
    if p >= 1.0:
        return torch.zeros_like(x)
    return torch.where(torch.rand(x.shape, device=x.device) >= p, x * (1.0 / (1.0 - p)), 0.0)


class Dropout(nn.Dropout):
    """:class:`torch.nn.Dropout` with the mask of :func:`rand_dropout` (same ``p``, same statistics, faster)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rand_dropout(x, self.p, self.training)


def init_normal(module: nn.Module, std: float = 0.02) -> None:
    """RecBole's SASRec init: N(0, std) for Linear and Embedding weights, zero biases, unit LayerNorm."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, std)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    for m in module.modules():
        if isinstance(m, nn.Embedding) and m.padding_idx is not None:
            with torch.no_grad():
                m.weight[m.padding_idx].zero_()
