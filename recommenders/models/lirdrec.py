"""LIRDRec (Zhou et al., "Learning Item Representations Directly from Multimodal Features for Effective
Recommendation", 2025), following the reference enoche/LIRDRec src/models/lirdrec.py (an MMRec-layout
repository) and its src/configs/model/LIRDRec.yaml defaults and grid.

Why no item ID embeddings: the paper shows BPR's gradients favour the feature parameters over item IDs, so
items are represented *only* through their multimodal features:

* Modality-specific encoders: per modality m (image, text) an MLP ``Linear(d_m, 4d) -> LeakyReLU ->
  Linear(4d, d, no bias)`` of the fixed raw features.
* Multimodal transformation: the orthonormal DCT-II of each modality's raw features (along the feature
  axis), concatenated image ; text, feeds a third ("shared") MLP of the same shape: the frequency view mixes
  every dimension of every modality into one representation of what the modalities share.
* Users get one free preference vector per block (image, text, shared; xavier-normal). Per block, the
  [users ; items] matrix is L2-normalized row-wise, the blocks are concatenated (3d wide) and propagated
  ``n_ui_layers`` times over the normalized user-item graph; the layer outputs are *summed* (not averaged).
* Items: the propagated 3d representation plus ``n_mm_layers`` propagations of it over the frozen
  multimodal item-item kNN graph (``mm_image_weight * image + (1 - mm_image_weight) * text``, FREEDOM's).
* Users: progressive weight-copying fusion (:class:`ProgressiveWeightCopying`) of their three propagated
  blocks: per-user block weights ``softmax(w1 * gate(blocks) + w2 * theta)``; every epoch the weights of the
  last training forward are copied into ``theta`` and ``w1`` decays (``decay_base ** epoch``, renormalized
  against ``w2``), so the fusion moves from the gate networks to the copied, per-user learned weights.
* Loss: BPR (logsigmoid) + ``reg_weight * (mean(U ** 2) + mean(I ** 2))`` over all users and items.
* Optional degree-sensitive edge pruning (``dropout`` > 0, FREEDOM's; the reference default is 0 = off).

With a single modality the blocks are (that modality, shared) and the DCT input is that modality alone (the
reference requires both). Implementation notes and deviations are listed in the class docstring.
"""
from __future__ import annotations

import scipy.fft
import torch
import torch.nn.functional as F
from torch import nn

from ._graph import attach_freedom_graphs, spmm, sym_spmm
from ..config import param
from .base import MULTIMODAL_ROLES, MultimodalConfig, Recommender, bpr_logsigmoid, pair_margin, register
from .vbpr import item_modalities

#: Block order of the 3d representation, as the reference concatenates them (image, text, shared).
_BLOCK_ORDER = ("image", "text")


class LIRDRecConfig(MultimodalConfig):
    """enoche/LIRDRec src/configs/model/LIRDRec.yaml (list values = the reference's searched grid)."""

    embedding_size: int = param(64, ge=4)  # the fusion gates' hidden width is embedding_size // 4
    feat_embed_dim: int = param(64, ge=1)  # declared by the reference's yaml, read by neither its code nor ours
    knn_k: int = param(10, ge=1)
    n_mm_layers: int = param(1, ge=0)
    n_ui_layers: int = param(2, ge=0, grid=[2, 3, 4])
    mm_image_weight: float = param(0.1, ge=0.0, le=1.0, grid=[0.1, 0.2])
    reg_weight: float = param(0.01, ge=0.0, grid=[0.01, 0.001, 0.0001])
    dropout: float = param(0.0, ge=0.0, lt=1.0)  # share of user-item edges pruned per epoch (0 = off)
    decay_base: float = param(0.9, gt=0.0, le=1.0)  # w1 *= decay_base ** epoch each epoch
    decay_weight: float = param(0.9, ge=0.0, le=1.0, grid=[0.9, 0.95, 0.99])  # initial w1 (w2 = 1 - w1)
    learning_rate: float = param(1e-4, ge=0.0, grid=[0.0001])
    # The reference yaml also lists weight_decay [0, 1e-6, 1e-5] as searched, but its trainer builds Adam
    # without weight_decay, so those runs are identical; ours would really apply it. Not gridded here.
    weight_decay: float = param(0.0, ge=0.0)
    graph_cache_dir: str | None = param(None)  # where frozen kNN graphs are kept across processes


def dct_ortho(x: torch.Tensor) -> torch.Tensor:
    """Orthonormal DCT-II along the last axis (what ``torch_dct.dct(x, norm='ortho')`` computes).

    Computed once on the fixed raw features with scipy, so the model does not depend on torch-dct.
    """
    return torch.from_numpy(scipy.fft.dct(x.detach().cpu().double().numpy(), type=2, norm="ortho", axis=-1)
                            ).to(torch.float32)


def _encoder(d_in: int, d: int) -> nn.Sequential:
    """The reference's modality MLP: Linear(d_in, 4d) -> LeakyReLU(0.01) -> Linear(4d, d, no bias)."""
    return nn.Sequential(nn.Linear(d_in, 4 * d), nn.LeakyReLU(), nn.Linear(4 * d, d, bias=False))


def pwc_weights(w1: float, w2: float, epoch: int, base: float) -> tuple[float, float]:
    """One step of the reference's schedule: ``w1 * base ** epoch`` against ``w2``, renormalized to sum 1.

    Applied once per epoch to the *previous* (already decayed) weights, so ``w1`` shrinks like
    ``base ** (1 + 2 + ... + epoch)`` relative to ``w2``.
    """
    a = w1 * base ** epoch
    s = a + w2
    return a / s, w2 / s


class ProgressiveWeightCopying(nn.Module):
    """Per-user block weights ``softmax(w1 * [gate_k(block_k)]_k + w2 * theta)``; output = the weighted
    blocks concatenated.

    ``theta`` [n_users, n_blocks] is a trainable parameter; :meth:`step_epoch` (every epoch, before training)
    copies into it the weights of the last *training* forward and decays ``w1`` (:func:`pwc_weights`). The
    weights the gates produced are thus carried over ("copied") and, as ``w1`` -> 0, become the per-user
    weights themselves, still refined through ``theta``'s gradient. ``w1, w2``, the epoch counter and the
    last weights are buffers, so a state_dict snapshot (best-valid restore) carries the schedule too.
    """

    def __init__(self, n_users: int, n_blocks: int, d: int, decay_base: float, decay_weight: float):
        super().__init__()
        self.decay_base = float(decay_base)
        self.gates = nn.ModuleList(
            nn.Sequential(nn.Linear(d, d // 4), nn.LeakyReLU(), nn.Linear(d // 4, 1)) for _ in range(n_blocks))
        self.theta = nn.Parameter(nn.init.xavier_normal_(torch.empty(n_users, n_blocks)))
        self.register_buffer("w", torch.tensor([decay_weight, 1.0 - decay_weight], dtype=torch.float64))
        self.register_buffer("epoch", torch.zeros((), dtype=torch.long))
        # the reference starts from theta itself, so the first copy leaves theta unchanged
        self.register_buffer("last_weights", self.theta.detach().clone())

    def step_epoch(self) -> None:
        """Advance the schedule one epoch and copy the last training weights into ``theta``."""
        self.epoch += 1
        w1, w2 = pwc_weights(float(self.w[0]), float(self.w[1]), int(self.epoch), self.decay_base)
        self.w.copy_(torch.tensor([w1, w2], dtype=torch.float64))
        with torch.no_grad():
            self.theta.copy_(self.last_weights)

    def weights(self, blocks: list[torch.Tensor]) -> torch.Tensor:
        """[n_users, n_blocks] fusion weights for the users' propagated ``blocks`` (each [n_users, d])."""
        logits = torch.cat([g(b) for g, b in zip(self.gates, blocks)], 1)
        w = self.w.to(logits.dtype)
        return F.softmax(w[0] * logits + w[1] * self.theta, dim=1)

    def forward(self, blocks: list[torch.Tensor], record: bool = False) -> torch.Tensor:
        """The weighted blocks concatenated; ``record``: keep these weights for the next copy (training
        forwards only: the reference's forward runs only in ``calculate_loss``, never to evaluate)."""
        att = self.weights(blocks)
        if record:
            self.last_weights.copy_(att.detach())
        return torch.cat([att[:, k:k + 1] * b for k, b in enumerate(blocks)], 1)


@register("LIRDRec")
class LIRDRec(Recommender):
    """Items from features only: modality MLPs + a DCT "shared" MLP, LightGCN-sum, item kNN graph, and
    progressive weight-copying fusion of the user blocks (see the module docstring).

    Implementation notes (same math as the reference unless said):

    * The item-item graph is FREEDOM's frozen normalized kNN graph (``_graph.knn_normalized_graph``; the
      reference builds the same graph and caches it under a file name of k and the image weight only).
    * Evaluation (``prepare_eval``) runs one no-grad forward over the full graph with the current weights.
      The reference instead scores with the embeddings its *last training batch* computed (before that
      batch's optimizer step, on the pruned graph when dropout > 0); identical up to one step.
    * The raw features are buffers: the reference also keeps trainable ``nn.Embedding`` copies of them that
      its forward never reads (they only seed the kNN graph), so they never change there either.
    * Linear layers keep PyTorch's default init, as in the reference (no xavier pass there).
    * One modality: blocks (that modality, shared); the reference needs both image and text.

    Reference:
        Paper: Xin Zhou, Xiaoxiong Zhang, Dusit Niyato, Zhiqi Shen. "Learning Item Representations Directly
        from Multimodal Features for Effective Recommendation". arXiv:2505.04960, 2025.
        Code: enoche/LIRDRec src/models/lirdrec.py (protocol, defaults and grid followed here).
    """

    modality_roles = MULTIMODAL_ROLES
    config_class = LIRDRecConfig

    def __init__(self, data, config):
        super().__init__(data, config)
        self.d = d = int(self.hp("embedding_size"))
        self.knn_k = int(self.hp("knn_k"))
        self.n_mm_layers = int(self.hp("n_mm_layers"))
        self.n_ui_layers = int(self.hp("n_ui_layers"))
        self.mm_image_weight = float(self.hp("mm_image_weight"))
        self.reg_weight = float(self.hp("reg_weight"))
        self.dropout = float(self.hp("dropout"))

        feats = item_modalities(self, data)
        self.modalities = tuple(r for r in _BLOCK_ORDER if r in feats)
        for r in self.modalities:
            self.register_buffer(f"feat_{r}", feats[r], persistent=False)
        # multimodal transformation input: DCT of each modality, image ; text (fixed, computed once)
        self.register_buffer("dct_feat", torch.cat([dct_ortho(feats[r]) for r in self.modalities], 1),
                             persistent=False)
        self.encoders = nn.ModuleDict({r: _encoder(feats[r].shape[1], d) for r in self.modalities})
        self.shared_encoder = _encoder(self.dct_feat.shape[1], d)
        self.preferences = nn.ParameterDict(
            {r: nn.Parameter(nn.init.xavier_normal_(torch.empty(self.n_users, d))) for r in self.modalities})
        self.shared_preference = nn.Parameter(nn.init.xavier_normal_(torch.empty(self.n_users, d)))
        self.fusion = ProgressiveWeightCopying(self.n_users, len(self.modalities) + 1, d,
                                               float(self.hp("decay_base")), float(self.hp("decay_weight")))

        attach_freedom_graphs(self, data, {r: feats[r] for r in self.modalities}, self.knn_k, self.mm_image_weight,
                              self.hp("graph_cache_dir"), self.dropout)

    # ------------------------------------------------------------------------ graph
    def pre_epoch(self) -> None:
        """Advance the weight-copying schedule, then (dropout > 0) re-sample the degree-pruned graph."""
        self.fusion.step_epoch()
        if self.dropout <= 0.0:
            self.masked_adj = self.norm_adj
            return
        self.masked_adj = self._pruning.sample().to(self.norm_adj.device)

    # ------------------------------------------------------------------------ model
    def item_blocks(self) -> list[torch.Tensor]:
        """Per block [n_items, d]: each modality's encoder output, then the shared (DCT) encoder's."""
        return ([self.encoders[r](getattr(self, f"feat_{r}")) for r in self.modalities]
                + [self.shared_encoder(self.dct_feat)])

    def forward(self, adj: torch.Tensor, record: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(users [n_users, B*d] fused, items [n_items, B*d]) with B = number of blocks; ``record``: a
        training forward, whose fusion weights the next epoch copies into ``theta``."""
        users = [self.preferences[r] for r in self.modalities] + [self.shared_preference]
        x = torch.cat([F.normalize(torch.cat([u, i], 0), dim=1) for u, i in zip(users, self.item_blocks())], 1)
        acc = x
        for _ in range(self.n_ui_layers):
            x = sym_spmm(adj, x)  # norm/masked adj are symmetric
            acc = acc + x  # the reference sums the layers (no mean)
        user_rep, item_rep = acc[: self.n_users], acc[self.n_users:]
        user_rep = self.fusion(list(user_rep.split(self.d, dim=1)), record)
        h = item_rep
        for _ in range(self.n_mm_layers):
            h = spmm(self.mm_adj, h, self.mm_adj_t)
        return user_rep, item_rep + h

    def calculate_loss(self, batch):
        users, pos, neg = batch
        ue, ie = self.forward(self.masked_adj, record=True)
        u = ue.index_select(0, users)
        loss = bpr_logsigmoid(pair_margin(u, ie, pos, neg))
        return loss + self.reg_weight * ((ue ** 2).mean() + (ie ** 2).mean())

    def eval_embeddings(self):
        return self.forward(self.norm_adj)  # the full graph; a no-record forward (the copy keeps training weights)
