"""Base of the CTR models: the contract, the shared config and the item/field embeddings.

Contract (DESIGN.md "CTR"): batches are dicts of tensors (``user``, ``item`` [B], ``likes_level``,
``views_level`` [B], ``item_seq`` [B, L] with 0 = padding, ``label`` [B]); ``calculate_loss(batch)`` is
the mean binary cross-entropy (plus the embedding regularizer), ``predict_proba(batch) -> [B]``.

The inputs are the MMCTR challenge's, embedded as FuxiCTR embeds them (so that a model here and the
challenge's FuxiCTR model read the same information): an item is ``[id embedding, mean of its tag
embeddings, the item embedding through a linear map]``; ``likes_level`` and ``views_level`` are categorical
fields. An item's representation is computed once per distinct item in a batch (the target and every
history item), not once per position.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ConfigError, TrainerConfig, param
from ..models.base import MULTIMODAL_ROLES
from .data import N_LEVELS

#: FuxiCTR's default embedding initializer: normal(std=1e-4)
EMBEDDING_STD = 1e-4
#: the modules :meth:`CTRRecommender.build_embeddings` makes: FuxiCTR's FeatureEmbeddingDict (tables + the
#: item-embedding map), the scope of its embedding regularizer
EMBEDDING_MODULES = ("item_id_emb", "tag_emb", "level_emb", "item_emb_proj")


class CTRConfig(TrainerConfig):
    """Keys of every CTR model: the MMCTR challenge's FuxiCTR ``Base`` + model config where it has them."""

    epochs: int = param(100, ge=1)
    #: FuxiCTR's early_stop_patience 5 stops at the 5th epoch without improvement; our counter stops after
    #: more than ``stopping_step`` such epochs, so 4 is the same rule
    stopping_step: int = param(4, ge=0)
    train_batch_size: int = param(4096, ge=1)
    learning_rate: float = param(1e-3, ge=0.0)
    metrics: list[str] = param(["auc", "logloss"], min_length=1)
    valid_metric: str = param("auc")
    eval_batch_size: int = param(8192, ge=1)
    #: FuxiCTR BaseModel: gradients clipped to norm 10
    clip_grad_norm: dict[str, float] | None = param({"max_norm": 10.0})
    #: FuxiCTR reduce_lr_on_plateau: lr *= factor after an epoch without a better valid metric (None: off)
    lr_decay_on_plateau: float | None = param(0.1, gt=0.0, le=1.0)
    #: L2 on the feature-embedding parameters (tables and the item-embedding map), FuxiCTR's
    #: (lambda / 2) * ||E||^2 per step
    embedding_regularizer: float = param(0.0, ge=0.0)
    #: items of history read (the challenge: the last 64); must not exceed the data's item_seq length
    max_len: int = param(64, ge=1)
    #: which store features build the item embedding (concatenated in role order, then PCA): see build.py
    text_feature: str | None = param("text")
    image_feature: str | None = param("image")


@dataclass
class BatchItems:
    """A batch's item representations: ``table`` [U, W] of its distinct items, ``target`` [B, W],
    ``seq_index`` [B, L] (rows of ``table``), ``mask`` [B, L] (True = a real history item)."""

    table: torch.Tensor
    target: torch.Tensor
    seq_index: torch.Tensor
    mask: torch.Tensor

    @property
    def seq(self) -> torch.Tensor:
        """History representations [B, L, W] (padding positions hold the padding item's)."""
        return self.table[self.seq_index]


class CTRRecommender(nn.Module):
    """Base of the CTR models; subclasses build their layers and implement :meth:`logits`.

    ``task = "ctr"`` tells the trainer to use :class:`mmfeat.recommenders.ctr.training.CTRTask` (rows with
    labels, AUC/logloss) and :class:`~.data.CTRData`.
    """

    task = "ctr"
    config_class: type[TrainerConfig] = CTRConfig
    defaults: dict = {}
    grid: dict = {}
    modality_roles: tuple[str, ...] = MULTIMODAL_ROLES
    #: item features are optional: without them an item is its id and tags
    requires_features = False
    model_name: str = "ctr"

    def __init__(self, data, config: dict):
        super().__init__()
        self.data, self.config = data, dict(config)
        self.max_len = int(config["max_len"])
        if self.max_len > data.seq_len:
            raise ConfigError(f"{self.model_name}: max_len={self.max_len} exceeds the data's item_seq length "
                              f"{data.seq_len}; build the set with a longer seq_len or lower max_len")
        self.embedding_regularizer = float(config["embedding_regularizer"])

    # ---- embeddings (FuxiCTR FeatureEmbedding semantics)
    def build_embeddings(self, dim: int) -> int:
        """Item id, tag and level tables and the item-embedding map; returns the item representation width."""
        d = self.data
        self.item_id_emb = nn.Embedding(d.n_items + 1, dim, padding_idx=0)
        self.tag_emb = nn.Embedding(d.n_tags, dim, padding_idx=0)
        # level 0 (unknown) is FuxiCTR's padding index: a frozen zero vector
        self.level_emb = nn.ModuleDict({k: nn.Embedding(N_LEVELS, dim, padding_idx=0)
                                        for k in ("likes_level", "views_level")})
        self.register_buffer("item_tags", torch.from_numpy(d.item_tags).long(), persistent=False)
        width = 2 * dim
        if d.item_emb is not None:
            self.register_buffer("item_emb", torch.from_numpy(d.item_emb).float(), persistent=False)
            self.item_emb_proj = nn.Linear(d.emb_dim, d.emb_dim, bias=False)
            width += d.emb_dim
        else:
            self.item_emb = None
        return width

    def reset_parameters(self) -> None:
        """FuxiCTR's initialisation: embeddings normal(std 1e-4) with a zero padding row, linear layers
        Xavier-normal with zero bias."""
        for m in self.modules():
            if isinstance(m, nn.Embedding):
                nn.init.normal_(m.weight, std=EMBEDDING_STD)
                if m.padding_idx is not None:
                    with torch.no_grad():
                        m.weight[m.padding_idx].zero_()
            elif isinstance(m, nn.Linear):
                nn.init.xavier_normal_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def item_repr(self, ids: torch.Tensor) -> torch.Tensor:
        """Representations [..., width] of item ids (0 = padding: the id and tag parts are zero, as the
        padding row of item_info is)."""
        tags = self.item_tags[ids]
        tag_mask = (tags > 0).unsqueeze(-1).float()
        tag_vec = (self.tag_emb(tags) * tag_mask).sum(-2) / tag_mask.sum(-2).clamp_min(1.0)
        parts = [self.item_id_emb(ids), tag_vec]
        if self.item_emb is not None:
            parts.append(self.item_emb_proj(self.item_emb[ids]))
        return torch.cat(parts, dim=-1)

    def batch_items(self, batch: dict) -> "BatchItems":
        """The batch's items with each distinct item embedded once (:class:`BatchItems`)."""
        seq = batch["item_seq"][:, -self.max_len:]
        ids = torch.cat([seq, batch["item"].unsqueeze(1)], dim=1)
        uniq, inverse = torch.unique(ids, return_inverse=True)
        table = self.item_repr(uniq)
        return BatchItems(table=table, target=table.index_select(0, inverse[:, -1]), seq_index=inverse[:, :-1],
                          mask=seq > 0)

    def field_embeddings(self, batch: dict) -> torch.Tensor:
        """The row's categorical fields, concatenated [B, 2 * dim]."""
        return torch.cat([self.level_emb[k](batch[k]) for k in ("likes_level", "views_level")], dim=-1)

    # ---- contract
    def logits(self, batch: dict) -> torch.Tensor:
        raise NotImplementedError

    def embedding_parameters(self) -> list[nn.Parameter]:
        """The trainable parameters of the feature-embedding part (:meth:`build_embeddings`): the id, tag
        and level tables and the item-embedding map.

        They are what FuxiCTR's ``FeatureEmbeddingDict`` holds (its ``feature_encoders`` include the
        ``Linear(D, D)`` on ``item_emb_d{D}``), so they are what its ``embedding_regularizer`` penalises.
        """
        mods = [getattr(self, n, None) for n in EMBEDDING_MODULES]
        return [p for m in mods if isinstance(m, nn.Module) for p in m.parameters() if p.requires_grad]

    def regularization(self) -> torch.Tensor | float:
        """FuxiCTR's embedding regularizer (BaseModel.regularization_loss, 2.3.7 and 2.3.10): (lambda / 2) *
        squared L2 norm of every parameter of the feature-embedding module (:meth:`embedding_parameters`),
        the item-embedding map included, not only the ``nn.Embedding`` tables; added to every batch's loss."""
        if not self.embedding_regularizer:
            return 0.0
        return sum(p.pow(2).sum() for p in self.embedding_parameters()) * (self.embedding_regularizer / 2)

    def calculate_loss(self, batch: dict) -> torch.Tensor:
        """FuxiCTR's loss: binary cross-entropy on the sigmoid's probabilities (``binary_crossentropy`` on the
        model's Sigmoid output), plus the embedding regularizer.

        Not ``binary_cross_entropy_with_logits``: the two differ once a prediction saturates. In float32,
        ``sigmoid(x)`` is exactly 1.0 above x of about 16.6, where torch's BCE clamps the log at -100 and the
        gradient through the sigmoid is exactly zero, so FuxiCTR ignores such rows while the logits form
        pushes them with full force. QIN's quadratic layers produce such logits from the first steps
        (same weights, same batch: cross-entropy 0.9669 vs the authors' 0.9766 before this was changed),
        DIN later in training.
        """
        return F.binary_cross_entropy(torch.sigmoid(self.logits(batch)), batch["label"]) + self.regularization()

    def predict_proba(self, batch: dict) -> torch.Tensor:
        return torch.sigmoid(self.logits(batch))

    def pre_epoch(self) -> None:
        """Nothing to refresh between epochs."""

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device


def mlp(dims: list[int], *, dropout: float = 0.0, batch_norm: bool = False, out: int | None = None) -> nn.Sequential:
    """FuxiCTR's MLP_Block: per hidden layer Linear -> [BatchNorm] -> ReLU -> [Dropout]; then an output Linear."""
    layers: list[nn.Module] = []
    for a, b in zip(dims[:-1], dims[1:]):
        layers.append(nn.Linear(a, b))
        if batch_norm:
            layers.append(nn.BatchNorm1d(b))
        layers.append(nn.ReLU())
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
    if out is not None:
        layers.append(nn.Linear(dims[-1], out))
    return nn.Sequential(*layers)
