"""TIGER: generative retrieval with semantic IDs (a T5 encoder-decoder that writes the next item's code tuple).

Tokens: each item of a user's history becomes its ``levels`` code tokens (level l's code c is token
``1 + offset_l + c``; 0 pads) followed by a learned separator, and the encoder reads them with T5's relative
position bias (:mod:`.t5`). The decoder starts from a learned start vector and generates the next item's tuple
one level at a time, reading the same token table as the encoder (the embeddings are shared, as in GRID); level
l's logits come from its own output rows (one head per level, no bias). Training is teacher-forced
cross-entropy per level over every sub-sequence of the train sequences (``train_mode: prefix``: each train
target with up to ``max_seq_length`` items before it, as TIGER and GRID train); ``train_sample_fraction``
draws a random share of them per epoch for budget runs. Ranking is beam search constrained to the tuples of
real items (:mod:`.trie`) with cached decoder keys and values, which returns ``beam_size`` distinct items per
user, best first.

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
from .t5 import T5Stack
from .trie import CodeTrie, constrained_beam_search


class TIGERConfig(SequentialConfig):
    """TIGER's architecture and training as the paper gives them (the ``tiger-cpu`` preset holds a CPU-sized
    model; ``train_mode: subsequences`` draws GRID's training samples)."""

    #: the paper's sizes: 128-d, 6 heads of 64, 1024-d MLP, 4 encoder and 4 decoder layers, dropout 0.1
    hidden_size: int = param(128, ge=1)
    n_heads: int = param(6, ge=1)
    #: width of each attention head (T5's d_kv; not tied to hidden_size / n_heads)
    head_size: int = param(64, ge=1)
    inner_size: int = param(1024, ge=1)
    n_layers: int = param(4, ge=1)
    dropout_prob: float = param(0.1, ge=0.0, le=1.0)
    #: beams kept while decoding = items returned per user (metrics exist up to it)
    beam_size: int = param(20, ge=1)
    codes_feature: str | None = param("codes")
    #: rank by each level's probabilities renormalised over the beam's valid child codes (snap-research/GRID's
    #: beam scores) instead of the model's own probability of the item's tuple (false, the default)
    beam_renormalise: bool = param(False)
    #: codes per level in the token table and the output heads: ``own`` (each level its codebook's size) or
    #: ``largest`` (every level as many as the largest codebook: snap-research/GRID's table and heads, e.g.
    #: 256 outputs for a 2-code de-duplication level; for parity runs against GRID)
    level_vocab: str = param("own")
    # re-declared defaults of the sequential keys (TIGER: 20 items of history, metrics at 5 and 10)
    max_seq_length: int = param(20, ge=1)
    topk: list[int] = param([5, 10], min_length=1)
    metrics: list[str] = param(["recall", "ndcg"], min_length=1)
    #: every train target with the items before it once per epoch; ``subsequences``: GRID's random draws of
    #: contiguous sub-sequences; see batches.py
    train_mode: str = param("prefix")
    learner: str = param("adamw")
    learning_rate: float = param(1e-3, ge=0.0, grid=[1e-3, 3e-4])
    weight_decay: float = param(0.01, ge=0.0)
    train_batch_size: int = param(1024, ge=1)
    eval_batch_size: int = param(128, ge=1)
    #: each target is its own encoder pass over its history's tokens: pieces of this many window tokens
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
    """T5 encoder-decoder over semantic-ID tokens with trie-constrained, KV-cached beam search (module doc).

    Reference:
        Paper: Rajput et al., "Recommender Systems with Generative Retrieval", NeurIPS 2023 (TIGER); codes from an
        RQ-VAE of item text embeddings, as in MMGRec (Liu et al. 2024, graph-propagated features) and DAS
        (Ye et al. 2025, CF-aligned quantization), which the ``semantic_ids`` featurizer builds.
        Code: no official TIGER release; snap-research/GRID (Ju et al., CIKM 2025,
        ``src/models/modules/semantic_id/tiger_generation_model.py``) is the reference implementation we compare
        with (``bench/generative/grid_tiger.py``): the same T5 blocks, shared token table, item separators,
        start vector, per-level heads and default init. Not here: TIGER's hashed user token (the shared
        sequential batches carry no user ids; GRID's TIGER config has none either) and GRID's optional
        two-hidden-layer MLP (``mlp_layers``; T5's one-layer MLP here, as in the paper).
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
        d = int(config["hidden_size"])
        self.beam = int(config["beam_size"])  # topk <= beam_size is checked by TIGERConfig
        self.renormalise = bool(config["beam_renormalise"])
        self.trie = CodeTrie(codes)
        self.levels = self.trie.levels
        if config["level_vocab"] not in ("own", "largest"):
            raise ConfigError(f"TIGER: level_vocab={config['level_vocab']!r} is not one of own, largest")
        sizes = self.trie.sizes
        if config["level_vocab"] == "largest":
            sizes = np.full_like(sizes, sizes.max())
        self.register_buffer("offsets", torch.from_numpy(np.concatenate([[0], np.cumsum(sizes)[:-1]])), persistent=False)
        self.register_buffer("sizes", torch.from_numpy(sizes), persistent=False)
        n_code_tokens = int(sizes.sum())
        item_tokens = np.zeros((self.n_items + 1, self.levels), np.int64)
        item_tokens[1:] = codes + 1 + self.offsets.numpy()[None, :]
        self.register_buffer("item_tokens", torch.from_numpy(item_tokens), persistent=False)
        self.token = nn.Embedding(1 + n_code_tokens, d, padding_idx=0)
        self.separator = nn.Parameter(torch.randn(d))
        self.start = nn.Parameter(torch.randn(d))
        shape = dict(d=d, heads=int(config["n_heads"]), head_size=int(config["head_size"]),
                     inner=int(config["inner_size"]), layers=int(config["n_layers"]),
                     dropout=float(config["dropout_prob"]))
        self.encoder = T5Stack(**shape, cross=False)
        self.decoder = T5Stack(**shape, cross=True)
        self.head = nn.Linear(d, n_code_tokens, bias=False)  # rows offset_l .. offset_l + size_l: level l's head
        self._tables = None

    def item_repr(self) -> str:
        return "codes"

    # ------------------------------------------------------------------ encoder / decoder
    def encode_history(self, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder states [N, S, d] and the padding mask [N, S] of left-aligned histories ``items`` [N, L]
        (columns after the longest history are dropped: they are padding in every row)."""
        longest = int((items > 0).sum(1).max())
        items = items[:, :max(longest, 1)]
        x = torch.cat([self.token(self.item_tokens[items]), self.separator.expand(*items.shape, 1, -1)], 2)
        pad = (items == 0)[:, :, None].expand(-1, -1, self.levels + 1).flatten(1)
        return self.encoder(x.flatten(1, 2), pad=pad), pad

    def decode(self, prefix_codes: torch.Tensor, memory: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        """Decoder states [N, l + 1, d] after the start vector and the decoded codes ``prefix_codes`` [N, l]."""
        tok = self.token(prefix_codes + 1 + self.offsets[:prefix_codes.shape[1]][None])
        y = torch.cat([self.start.expand(len(tok), 1, -1).to(tok.dtype), tok], 1)
        return self.decoder(y, memory=memory, memory_pad=pad)

    def level_logits(self, states: torch.Tensor, level: int) -> torch.Tensor:
        """Logits [N, size_level] of level ``level``'s codes (one softmax per level)."""
        a = int(self.offsets[level])
        return states @ self.head.weight[a:a + int(self.sizes[level])].T

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
            loss = loss + F.cross_entropy(self.level_logits(states[:, level], level).float(), target_codes[:, level])
        return loss / self.levels

    # ------------------------------------------------------------------ ranking
    def prepare_eval(self) -> None:
        self._tables = self.trie.tensors(self.device)

    def end_eval(self) -> None:
        self._tables = None

    def top_items(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``beam_size`` best items [B, beam] (0-based, -1 = none) and their log-probabilities per history.

        The encoder runs once per user; each level runs the decoder on one new token per beam, reusing the
        beams' cached self-attention keys / values (reordered to each beam's parent) and the users' encoder
        keys / values (:meth:`.t5.T5Stack.step`)."""
        tables = self._tables if self._tables is not None else self.trie.tensors(self.device)
        memory, pad = self.encode_history(inputs)
        memory_kv = self.decoder.memory_kv(memory)
        users = len(inputs)
        cache: list = [None]

        def step(prefix: torch.Tensor, level: int, parent: torch.Tensor | None) -> torch.Tensor:
            if level == 0:
                x = self.start.expand(users, -1)
            else:
                x = self.token(prefix[:, -1] + 1 + self.offsets[level - 1])
                rows = (torch.arange(users, device=x.device)[:, None] * cache[0][0][0].shape[0] // users
                        + parent).flatten()
                cache[0] = [(k[rows], v[rows]) for k, v in cache[0]]
            states, cache[0] = self.decoder.step(x, level, cache[0] if level else None, memory_kv, pad)
            return F.log_softmax(self.level_logits(states, level), -1)

        return constrained_beam_search(step, tables, users, self.beam, inputs.device, self.renormalise)

    def full_sort_predict(self, inputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Scores [B, n_items]: the beam's items get their log-probabilities, every other item -inf."""
        items, scores = self.top_items(inputs)
        out = torch.full((len(inputs), self.n_items), -torch.inf, device=inputs.device)
        ok = items >= 0
        out[torch.arange(len(inputs), device=inputs.device)[:, None].expand_as(items)[ok], items[ok]] = scores[ok]
        return out
