"""fMRLRec-style: multimodal item features, an LRU sequence encoder, Matryoshka losses at nested sizes."""
from __future__ import annotations

import torch
from torch import nn

from ..config import ConfigError, param
from ..models.base import register
from .base import SequentialConfig, SequentialRecommender
from .lru import LRUBlock


class FMRLRecConfig(SequentialConfig):
    """The reference's defaults (yueqirex/fMRLRec config.py; the README's Beauty run uses dropouts 0.6)."""

    hidden_size: int = param(1024, ge=8)
    #: nested sizes, increasing, the last = hidden_size; None: 8, 16, 32, ... up to hidden_size
    mrl_sizes: list[int] | None = param(None)
    lru_num_blocks: int = param(1, ge=1)
    lru_dropout: float = param(0.1, ge=0.0, le=1.0)
    lru_attn_dropout: float = param(0.1, ge=0.0, le=1.0)
    lru_r_min: float = param(0.0, ge=0.0, lt=1.0)
    lru_r_max: float = param(0.1, gt=0.0, le=1.0)
    learner: str = param("adamw")
    learning_rate: float = param(1e-4, ge=0.0)
    weight_decay: float = param(0.01, ge=0.0)
    clip_grad_norm: dict[str, float] | None = param({"max_norm": 5.0})
    epochs: int = param(500, ge=1)
    #: the reference's batch: 32 users, each one window of its newest max_seq_length inputs with every target in it
    train_batch_size: int = param(32, ge=1)
    train_batch_unit: str = param("samples")
    train_mode: str = param("last")
    #: also predict each user's first item, from an empty history (the reference's padding position before it:
    #: the padding input, no recurrent state); false: the first item is only history, as in RecBole
    first_item_target: bool = param(True)


def nested_sizes(hidden: int, given: list[int] | None) -> list[int]:
    """The Matryoshka sizes: ``given`` checked, or powers of two from 8 below ``hidden``, then ``hidden``.

    Raises:
        ConfigError: sizes that are not increasing or do not end at ``hidden``.
    """
    if given is None:
        sizes, s = [], 8
        while s < hidden:
            sizes.append(s)
            s *= 2
        return sizes + [hidden]
    sizes = [int(s) for s in given]
    if not sizes or sizes[-1] != hidden or any(b <= a for a, b in zip(sizes, sizes[1:])) or sizes[0] < 1:
        raise ConfigError(f"fMRLRec: mrl_sizes={given} must increase and end at hidden_size={hidden}")
    return sizes


@register("fMRLRec")
class FMRLRec(SequentialRecommender):
    """Multimodal items (text and image versions concatenated, or summed, through one dense projection;
    IDs optional), LRU blocks, and the mean of the cross-entropy losses at every nested size, so the first
    ``s`` dimensions form a trained model of size ``s`` for each size (see :mod:`.lru`).

    The run record's ``sub_models`` holds valid and test metrics at every size, from this one training
    (the full size is the selected model; selection is on its valid metric, as in the reference).

    Trained as the reference trains it: batches of 32 users (``train_batch_unit: samples`` with one window per
    user, ``train_mode: last``), each window's every target including the user's first item, predicted from
    the padding position before it (``first_item_target``, :meth:`encode`); complex LRU projections with
    trained imaginary parts and per-chunk fan-in init (:mod:`.lru`). Differences from the reference: constant
    learning rate (the reference warms up 100 steps, then a cosine schedule), weight decay on biases too (the
    reference exempts them), the padding token outside the softmax (the reference's softmax includes it).

    Reference:
        Paper: Yueqi Wang et al., "Train Once, Deploy Anywhere: Matryoshka Representation Learning for
        Multimodal Recommendation" (fMRLRec), Findings of EMNLP 2024.
        Code: github.com/yueqirex/fMRLRec. LRU: Orvieto et al., "Resurrecting Recurrent Neural Networks for
        Long Sequences", ICML 2023.
    """

    config_class = FMRLRecConfig

    def __init__(self, data, config: dict):
        super().__init__(data, config)
        d = int(config["hidden_size"])
        self.sizes = nested_sizes(d, config["mrl_sizes"])
        if config["lru_r_min"] >= config["lru_r_max"]:
            raise ConfigError(f"fMRLRec: lru_r_min={config['lru_r_min']} must be below lru_r_max={config['lru_r_max']}")
        self.items = self.item_table_module(d)
        if self.items.id_embedding is not None:  # ID items (the reference has none): SASRec's small init
            nn.init.normal_(self.items.id_embedding.weight, 0.0, 0.02)
        self.drop = nn.Dropout(float(config["lru_dropout"]))
        self.blocks = nn.ModuleList(LRUBlock(self.sizes, float(config["lru_r_min"]), float(config["lru_r_max"]),
                                             float(config["lru_dropout"]), float(config["lru_attn_dropout"]))
                                    for _ in range(int(config["lru_num_blocks"])))

    def encode(self, inputs: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """Padding positions read the item layer's padding row (the reference's projection of the zero
        padding features: its bias) and pass no recurrent state on, so a real position sees its real history
        only and the padding position before a user's first item is the empty history it is predicted from."""
        real = inputs > 0
        x = torch.where(real[..., None], table[inputs], self.items.padding_row())
        x = self.drop(x)
        for block in self.blocks:
            x = block(x, real)
        return x

    def loss_at(self, hidden: torch.Tensor, targets: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """Mean over the nested sizes of the shared loss (CE over every item or ``ce_negatives`` sampled ones, or
        BPR) on the first ``s`` dimensions; with ``ce_negatives`` each size draws its own negatives."""
        return torch.stack([super(FMRLRec, self).loss_at(hidden[:, :s], targets, table[:, :s])
                            for s in self.sizes]).mean()

    def sub_model_scorers(self) -> dict:
        def scorer(size: int):
            def score(inputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
                table = self.table()
                return self.last_hidden(inputs, lengths, table)[:, :size] @ table[1:, :size].T
            return score
        return {f"d{s}": scorer(s) for s in self.sizes[:-1]}
