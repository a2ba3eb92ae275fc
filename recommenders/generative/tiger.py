"""TIGER: generative retrieval with semantic IDs (an encoder-decoder transformer that writes the next item's
code tuple).

Tokens: each item of a user's history becomes its ``levels`` code tokens (level l's code c is token
``1 + offset_l + c``; 0 pads), the encoder reads them, and the decoder generates the next item's tuple one level
at a time from a start token. Training is teacher-forced cross-entropy per level; ranking is beam search
constrained to the tuples of real items (:mod:`.trie`), which returns ``beam_size`` distinct items per user,
best first.

The evaluator is the sequential family's (leave-one-out, full ranking, RecBole's rules): the beam's items get
their beam scores and every other item -inf, so an item outside the beam ranks last, as it would in a top-K
list. Metrics therefore exist only up to ``beam_size`` (``topk`` larger than it is a ConfigError).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import model_validator
from torch import nn

from ..config import ConfigError, param
from ..models.base import register
from ..sequential.base import SequentialConfig, SequentialRecommender
from .trie import CodeTrie, constrained_beam_search


class TIGERConfig(SequentialConfig):
    """TIGER's architecture (the paper's, with heads of 32 so that 128 divides evenly) and its training set-up."""

    hidden_size: int = param(128, ge=1)
    inner_size: int = param(1024, ge=1)
    n_layers: int = param(4, ge=1)
    n_heads: int = param(4, ge=1)
    dropout_prob: float = param(0.1, ge=0.0, le=1.0)
    #: beams kept while decoding = items returned per user (metrics exist up to it)
    beam_size: int = param(20, ge=1)
    codes_feature: str | None = param("codes")
    # re-declared defaults of the sequential keys (TIGER: 20 items of history, metrics at 5 and 10)
    max_seq_length: int = param(20, ge=1)
    topk: list[int] = param([5, 10], min_length=1)
    metrics: list[str] = param(["recall", "ndcg"], min_length=1)
    #: one window of the newest max_seq_length items per user, every position a target (see batches.py)
    train_mode: str = param("last")
    learner: str = param("adamw")
    learning_rate: float = param(1e-3, ge=0.0, grid=[1e-3, 3e-4])
    weight_decay: float = param(0.01, ge=0.0)
    train_batch_size: int = param(1024, ge=1)
    eval_batch_size: int = param(128, ge=1)
    #: each target is its own encoder pass over max_seq_length x levels tokens: pieces of this many window tokens
    max_tokens_per_forward: int = param(640, ge=1)
    stopping_step: int = param(5, ge=0)
    item_repr: str = param("id")
    text_feature: str | None = param(None)
    image_feature: str | None = param(None)

    @model_validator(mode="after")
    def _ranked_within_the_beam(self) -> "TIGERConfig":
        if max(self.topk) > self.beam_size:
            raise ValueError(f"TIGER ranks beam_size={self.beam_size} items per user: topk {self.topk} must not "
                             f"exceed it (raise beam_size)")
        return self


@register("TIGER")
class TIGER(SequentialRecommender):
    """Encoder-decoder over semantic-ID tokens with trie-constrained beam search (module doc).

    Reference:
        Paper: Rajput et al., "Recommender Systems with Generative Retrieval", NeurIPS 2023 (TIGER); codes from an
        RQ-VAE of item text embeddings, as in MMGRec (Liu et al. 2024, graph-propagated features) and DAS
        (Ye et al. 2025, CF-aligned quantization), which the ``semantic_ids`` featurizer builds.
        Code: no official TIGER release; the architecture follows the paper (4+4 layers, 128-d, 6x64-d heads
        there, 1024-d MLP, dropout 0.1, 20 items of history). Not here: TIGER's hashed user token (the shared
        sequential batches carry no user ids), and T5's relative positions (learned absolute ones instead).
    """

    config_class = TIGERConfig
    model_name = "TIGER"
    modality_roles = ("codes",)
    #: the ``codes`` role reads a semantic-ID version (``semantic_ids`` featurizer), not embeddings
    feature_kinds = {"codes": "codes"}
    requires_features = True

    def __init__(self, data, config: dict):
        super().__init__(data, config)
        if self.loss_type != "CE":
            raise ConfigError("TIGER: loss_type is CE (per-level cross-entropy of the next item's codes)")
        if self.ce_negatives is not None:
            raise ConfigError(f"TIGER: ce_negatives={self.ce_negatives} samples the item softmax; TIGER's softmax is "
                              f"over each level's codes (every code scored): drop ce_negatives")
        if config.get("item_repr") != "id" or config.get("text_feature") or config.get("image_feature"):
            raise ConfigError("TIGER reads semantic IDs (--feature codes=FEATURE_SET) only: item_repr is id and "
                              "text_feature / image_feature are unset")
        codes = getattr(data, "item_codes", None)
        if codes is None:
            raise ConfigError("TIGER needs semantic IDs: pass --feature codes=FEATURE_SET (a semantic_ids version)")
        d, heads = int(config["hidden_size"]), int(config["n_heads"])
        if d % heads:
            raise ConfigError(f"TIGER: hidden_size={d} is not divisible by n_heads={heads}")
        self.beam = int(config["beam_size"])  # topk <= beam_size is checked by TIGERConfig
        self.trie = CodeTrie(codes)
        self.levels = self.trie.levels
        sizes = self.trie.sizes
        self.register_buffer("offsets", torch.from_numpy(np.concatenate([[0], np.cumsum(sizes)[:-1]])), persistent=False)
        self.register_buffer("sizes", torch.from_numpy(sizes), persistent=False)
        n_code_tokens = int(sizes.sum())
        item_tokens = np.zeros((self.n_items + 1, self.levels), np.int64)
        item_tokens[1:] = codes + 1 + self.offsets.numpy()[None, :]
        self.register_buffer("item_tokens", torch.from_numpy(item_tokens), persistent=False)
        self.token = nn.Embedding(1 + n_code_tokens + 1, d, padding_idx=0)
        self.bos = 1 + n_code_tokens
        self.enc_pos = nn.Embedding(self.max_len * self.levels, d)
        self.dec_pos = nn.Embedding(self.levels, d)
        p = float(config["dropout_prob"])
        self.encoder = nn.TransformerEncoder(
            nn.TransformerEncoderLayer(d, heads, int(config["inner_size"]), p, batch_first=True, norm_first=True),
            int(config["n_layers"]), enable_nested_tensor=False)
        self.decoder = nn.TransformerDecoder(
            nn.TransformerDecoderLayer(d, heads, int(config["inner_size"]), p, batch_first=True, norm_first=True),
            int(config["n_layers"]))
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, n_code_tokens)
        self._tables = None

    def item_repr(self) -> str:
        return "codes"

    # ------------------------------------------------------------------ encoder / decoder
    def encode_history(self, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder states [N, S, d] and the padding mask [N, S] of item-token histories ``items`` [N, max_len]."""
        tokens = self.item_tokens[items].flatten(1)  # [N, max_len * levels]; pad items -> 0
        pad = tokens == 0
        x = self.token(tokens) + self.enc_pos.weight[:tokens.shape[1]][None]
        return self.encoder(x, src_key_padding_mask=pad), pad

    def decode(self, prefix_codes: torch.Tensor, memory: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        """Decoder states [N, l + 1, d] after the start token and the decoded codes ``prefix_codes`` [N, l]."""
        tok = prefix_codes + 1 + self.offsets[:prefix_codes.shape[1]][None]
        tok = torch.cat([tok.new_full((len(tok), 1), self.bos), tok], 1)
        y = self.token(tok) + self.dec_pos.weight[:tok.shape[1]][None]
        causal = nn.Transformer.generate_square_subsequent_mask(tok.shape[1], device=tok.device)
        return self.norm(self.decoder(y, memory, tgt_mask=causal, tgt_is_causal=True, memory_key_padding_mask=pad))

    def level_logits(self, states: torch.Tensor, level: int) -> torch.Tensor:
        """Logits [N, size_level] of level ``level``'s codes (one softmax per level)."""
        a = int(self.offsets[level])
        return self.head(states)[..., a:a + int(self.sizes[level])]

    # ------------------------------------------------------------------ training
    def calculate_loss(self, batch) -> torch.Tensor:
        inputs, targets = batch
        rows, pos = (targets > 0).nonzero(as_tuple=True)
        keep = torch.arange(inputs.shape[1], device=inputs.device)[None, :] <= pos[:, None]
        history = torch.where(keep, inputs[rows], torch.zeros_like(inputs[rows]))
        memory, pad = self.encode_history(history)
        target_codes = self.item_tokens[targets[rows, pos]] - 1 - self.offsets[None, :]
        states = self.decode(target_codes[:, :-1], memory, pad)
        loss = 0.0
        for level in range(self.levels):
            loss = loss + F.cross_entropy(self.level_logits(states[:, level], level), target_codes[:, level])
        return loss / self.levels

    # ------------------------------------------------------------------ ranking
    def prepare_eval(self) -> None:
        self._tables = self.trie.tensors(self.device)

    def end_eval(self) -> None:
        self._tables = None

    def top_items(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``beam_size`` best items [B, beam] (0-based, -1 = none) and their log-probabilities per history."""
        tables = self._tables if self._tables is not None else self.trie.tensors(self.device)
        memory, pad = self.encode_history(inputs)
        beam = self.beam

        def step(prefix: torch.Tensor, level: int) -> torch.Tensor:
            width = len(prefix) // len(inputs)
            mem = memory.repeat_interleave(width, 0) if width > 1 else memory
            msk = pad.repeat_interleave(width, 0) if width > 1 else pad
            return F.log_softmax(self.level_logits(self.decode(prefix, mem, msk)[:, -1], level), -1)

        return constrained_beam_search(step, tables, len(inputs), beam, inputs.device)

    def full_sort_predict(self, inputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Scores [B, n_items]: the beam's items get their log-probabilities, every other item -inf."""
        items, scores = self.top_items(inputs)
        out = torch.full((len(inputs), self.n_items), -torch.inf, device=inputs.device)
        ok = items >= 0
        out[torch.arange(len(inputs), device=inputs.device)[:, None].expand_as(items)[ok], items[ok]] = scores[ok]
        return out
