"""Recommender base class (the MMRec contract), model registry and shared defaults."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Callable

import torch
import torch.nn.functional as F

from ..config import (ConfigError, TrainerConfig, check_keys, did_you_mean, grid_of, own_defaults, param,
                      validate_values)
from ..data import InteractionData

# Training/evaluation defaults shared by every model: MMRec's src/configs/overall.yaml (a plain dict view of
# TrainerConfig, for callers that print or merge it).
OVERALL_DEFAULTS: dict = TrainerConfig().model_dump()

# The item-feature roles of the multimodal models, in MMRec order (t_feat, v_feat). A model reads role r
# from data.item_features[config[f"{r}_feature"]] (None = do not use that role).
MULTIMODAL_ROLES: tuple[str, ...] = ("text", "image")


class MultimodalConfig(TrainerConfig):
    """Keys of every model with :data:`MULTIMODAL_ROLES`: the ``data.item_features`` key each role reads."""

    text_feature: str | None = param("text")
    image_feature: str | None = param("image")


MODEL_REGISTRY: dict[str, type["Recommender"]] = {}


def register(name: str) -> Callable[[type], type]:
    """Class decorator: ``@register("lightgcn")`` makes the model buildable by name (case-insensitive).

    Derives the class's ``defaults`` and ``grid`` from its ``config_class`` (the one declaration) and checks
    that every modality role has its ``<role>_feature`` key there.
    """
    def deco(cls):
        key = name.lower()
        if key in MODEL_REGISTRY and MODEL_REGISTRY[key] is not cls:
            raise ValueError(f"model {name!r} registered twice")
        missing = [f"{r}_feature" for r in cls.modality_roles if f"{r}_feature" not in cls.config_class.model_fields]
        if missing:
            raise TypeError(f"{name}: config_class {cls.config_class.__name__} does not declare {missing}")
        cls.defaults = own_defaults(cls.config_class)
        cls.grid = grid_of(cls.config_class)
        MODEL_REGISTRY[key] = cls
        cls.model_name = name
        return cls
    return deco


class UnknownModelError(ConfigError, KeyError):
    """A model name that is not registered (a KeyError too, for callers that look models up like a dict)."""

    def __str__(self) -> str:  # KeyError would print the message quoted
        return str(self.args[0])


def model_names() -> list[str]:
    """The registered models' display names (``FREEDOM``, ``LightGCN``, ...), sorted case-insensitively."""
    from . import _load_all  # import the model modules so that they register
    _load_all()
    return sorted((cls.model_name for cls in MODEL_REGISTRY.values()), key=str.lower)


def get_model_class(name: str) -> type["Recommender"]:
    """The registered class of ``name`` (case-insensitive).

    Raises:
        UnknownModelError: naming the closest registered model and listing them all.
    """
    from . import _load_all  # import the model modules so that they register
    _load_all()
    try:
        return MODEL_REGISTRY[name.lower()]
    except KeyError:
        names = model_names()
        raise UnknownModelError(f"unknown model {name!r};{did_you_mean(name, names)} models: {', '.join(names)}"
                                ) from None


def declared_keys(name: str) -> set[str]:
    """Every config key the trainer or model ``name`` reads: the fields of its ``config_class``."""
    return set(get_model_class(name).config_class.model_fields)


def check_hyper_parameters(name: str, keys: Iterable[str] | Mapping, where: str = "config", *,
                           candidates: bool | None = None) -> None:
    """Raise :class:`ConfigError` when a key of ``keys`` is not declared for ``name`` (closest key named), or,
    when ``keys`` is a mapping, when a value does not fit the key's declared type.

    Args:
        name: the model.
        keys: key names, or key -> value (``--set``), or key -> candidate values (``--grid``).
        where: where they came from, for the message (``"--set"``, ``"--grid"``, ``"grid"``, ``"config"``).
        candidates: whether a mapping's values are lists of candidates (a grid); default: ``"grid" in where``.
            A grid entry that is not a list is left to the caller's non-empty-list check.

    Raises:
        ConfigError: naming the unknown key and the closest declared one, or the key of a mistyped value.
    """
    cls = get_model_class(name)
    check_keys(keys, cls.config_class.model_fields, owner=cls.model_name, where=where)
    if not isinstance(keys, Mapping):
        return
    if candidates is None:
        candidates = "grid" in where
    if not candidates:
        validate_values(cls.config_class, keys, owner=cls.model_name, where=where)
        return
    for key, values in keys.items():
        if isinstance(values, (list, tuple)):
            for v in values:
                validate_values(cls.config_class, {key: v}, owner=cls.model_name, where=where)


def default_config(name: str) -> dict:
    """Every declared key of ``name`` at its default (MMRec overall.yaml overlaid with the model's yaml)."""
    return get_model_class(name).config_class().model_dump()


def resolve_config(name: str, config: Mapping | None = None, where: str = "config") -> dict:
    """Defaults of ``name`` overlaid with ``config``, whose keys must all be declared and whose values must
    fit the declared types (coerced to them: ``"1e-3"`` -> 0.001, ``2.0`` -> 2).

    Raises:
        ConfigError: a key of ``config`` that neither the trainer nor the model reads, or a mistyped value.
    """
    cls = get_model_class(name)
    config = dict(config or {})
    check_keys(config, cls.config_class.model_fields, owner=cls.model_name, where=where)
    return validate_values(cls.config_class, config, owner=cls.model_name, where=where)


def feature_keys(name: str, config: Mapping) -> dict[str, str]:
    """Role -> the ``data.item_features`` key model ``name`` reads it from, under ``config`` (roles set to
    None are left out). Empty for a model without modality roles (LightGCN, BPR)."""
    roles = get_model_class(name).modality_roles
    return {r: config[f"{r}_feature"] for r in roles if config.get(f"{r}_feature") is not None}


def check_features(name: str, feature_names: Iterable[str], config: Mapping,
                   alternatives: Iterable[Mapping] = ()) -> None:
    """Every feature given to model ``name`` must be read by one of its modality roles.

    Args:
        name: the model.
        feature_names: the ``data.item_features`` keys the caller provides (``--feature ROLE=...``).
        config: the resolved config (its ``<role>_feature`` keys map roles to feature names).
        alternatives: further resolved configs the features may be used under (grid combinations).

    Raises:
        ConfigError: a feature no role reads (a feature for a model without roles, or an unknown role).
    """
    cls = get_model_class(name)
    feature_names = list(feature_names)
    if feature_names and not cls.modality_roles:
        raise ConfigError(f"{cls.model_name} uses no item features (collaborative filtering only); drop "
                          f"{', '.join(repr(f) for f in feature_names)} or choose a multimodal model: "
                          f"{', '.join(multimodal_model_names())}")
    readable: set[str] = set()
    for cfg in (config, *alternatives):
        readable |= set(feature_keys(name, cfg).values())
    for f in feature_names:
        if f not in readable:
            raise ConfigError(f"{cls.model_name} has no modality role reading feature {f!r};"
                              f"{did_you_mean(f, readable)} it reads: {', '.join(sorted(readable)) or 'nothing'}")


def multimodal_model_names() -> list[str]:
    """The registered models that consume item features (have modality roles)."""
    return [n for n in model_names() if get_model_class(n).modality_roles]


class _DefaultConfigs(dict):
    """``DEFAULT_CONFIGS[name]`` -> merged defaults for a registered model (computed on access)."""

    def __missing__(self, key):
        return default_config(key)

    def __contains__(self, key):
        try:
            get_model_class(key)
            return True
        except KeyError:
            return False


DEFAULT_CONFIGS = _DefaultConfigs()


def build_model(name: str, data: InteractionData, config: dict | None = None) -> "Recommender":
    """Instantiate a registered model; ``config`` overrides the model's defaults.

    Raises:
        ConfigError: an unknown model, or a config key the model and trainer do not declare.
    """
    return get_model_class(name)(data, resolve_config(name, config))


class Recommender(torch.nn.Module):
    """Base of all general (user-item) recommenders: the MMRec contract.

    ``config_class``: the typed declaration of every key a config may set (a :class:`TrainerConfig`
    subclass; MMRec's src/configs/model/<NAME>.yaml, with the yaml's grid lists as ``param(grid=...)``).
    ``defaults`` (the model's own keys' defaults) and ``grid`` (its search space) are derived from it by
    :func:`register`; they are views, not declarations. ``modality_roles``: the item-feature roles it
    consumes (:data:`MULTIMODAL_ROLES` for the multimodal models, none for CF-only ones), each read through
    a ``<role>_feature`` key of the config class. ``config`` is a plain dict (:func:`build_model` validates
    it); a missing key raises KeyError via :meth:`hp`, never a silent ``None``.

    Every model's class docstring ends with a ``Reference:`` block naming the paper and the reference code.
    """

    config_class: type[TrainerConfig] = TrainerConfig
    defaults: dict = {}  # derived from config_class by register()
    grid: dict = {}  # derived from config_class by register(): MMRec's search space (name -> list)
    modality_roles: tuple[str, ...] = ()  # item-feature roles read via config["<role>_feature"]
    model_name: str = "base"
    #: False for closed-form models (MMRec's ``req_training: False``, e.g. ItemKNNCBF): the trainer evaluates
    #: them once and runs no optimizer step
    trainable: bool = True

    def __init__(self, data: InteractionData, config: dict):
        super().__init__()
        self.data = data
        self.config = dict(config)
        self.n_users = data.n_users
        self.n_items = data.n_items

    def hp(self, name: str):
        """A hyper-parameter from the config; KeyError naming the model and key when absent."""
        try:
            return self.config[name]
        except KeyError:
            raise KeyError(f"{type(self).__name__}: missing hyper-parameter {name!r} "
                           f"(config keys: {sorted(self.config)})") from None

    @property
    def device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        for b in self.buffers():
            return b.device
        return torch.device("cpu")

    def pre_epoch(self) -> None:
        """Called by the trainer before each training epoch (e.g. FREEDOM re-samples edges here)."""

    def calculate_loss(self, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def eval_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(users [n_users, d], items [n_items, d])`` whose dot products are the scores, for the models that
        score that way (the graph models): defining it gives :meth:`full_sort_predict` and the evaluation
        cache of :meth:`prepare_eval` / :meth:`end_eval`. Other models override :meth:`full_sort_predict`."""
        raise NotImplementedError(f"{type(self).__name__} defines neither eval_embeddings nor full_sort_predict")

    def full_sort_predict(self, users: torch.Tensor) -> torch.Tensor:
        """Scores [len(users), n_items] for every item (the trainer masks train items)."""
        cached = getattr(self, "_eval_cache", None)
        ue, ie = cached if cached is not None else self.eval_embeddings()
        return ue[users] @ ie.T

    def prepare_eval(self) -> None:
        """Called once before an evaluation pass: caches :meth:`eval_embeddings` (propagated once per pass)."""
        if type(self).eval_embeddings is not Recommender.eval_embeddings:
            with torch.no_grad():
                self._eval_cache = self.eval_embeddings()

    def end_eval(self) -> None:
        """Called after an evaluation pass (drops the cache made by :meth:`prepare_eval`)."""
        self._eval_cache = None


# ---------------------------------------------------------------------------- shared losses
def pair_margin(users: torch.Tensor, table: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """``<u_b, table[pos_b]> - <u_b, table[neg_b]>`` for ``users`` [B, d], the margin BPR losses read.

    Computed as ``<u_b, table[pos_b] - table[neg_b]>``: one batch-sized product instead of two, forward and
    backward (part of VBPR's faster step; on LIRDRec no difference was measurable). Positives and negatives are
    two ``index_select`` gathers from ``table`` (whose backward adds into a table-sized buffer), never slices
    of one gathered [2B, d] block: each slice's backward zero-fills a copy of the whole block, and those
    fresh allocations made VBPR's step 1.5x slower on ML-100K.
    """
    return (users * (table.index_select(0, pos) - table.index_select(0, neg))).sum(1)


def bpr_loss(pos_scores: torch.Tensor, neg_scores: torch.Tensor | None = None) -> torch.Tensor:
    """MMRec BPRLoss: -mean(log(1e-10 + sigmoid(pos - neg))); ``neg_scores`` None: ``pos_scores`` already
    holds the margins ``pos - neg`` (:func:`pair_margin`)."""
    margin = pos_scores if neg_scores is None else pos_scores - neg_scores
    return -torch.log(1e-10 + torch.sigmoid(margin)).mean()


def bpr_logsigmoid(pos_scores: torch.Tensor, neg_scores: torch.Tensor | None = None) -> torch.Tensor:
    """-mean(logsigmoid(pos - neg)) (FREEDOM/BM3 style); ``neg_scores`` None: ``pos_scores`` already holds the
    margins (:func:`pair_margin`)."""
    margin = pos_scores if neg_scores is None else pos_scores - neg_scores
    return -F.logsigmoid(margin).mean()


def fast_dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Inverted dropout, as ``nn.Dropout``: each element kept with probability 1 - p and scaled by
    1 / (1 - p). The keep mask is ``uniform[0, 1) >= p`` (exactly Bernoulli(1 - p)); on CPU this is ~4x
    faster than ``bernoulli_``, which made dropout ~15% of a DGVAE step
    on its [batch, K, n] inputs (and of a BM3 step)."""
    if not training or p == 0.0:
        return x
    keep = torch.rand(x.shape, device=x.device) >= p
    return x * keep.to(x.dtype).mul_(1.0 / (1.0 - p))


def distinct_ids(ids: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(uniq, inverse, counts)`` of integer ids in ``[0, n)``, as ``torch.unique(..., return_inverse=True,
    return_counts=True)`` returns them (``uniq`` sorted, ``uniq[inverse] == ids``), without its sort.

    A bincount over the id range and a lookup table cost O(n + len(ids)); a training step calls this per
    batch, where ``torch.unique``'s sort was the third-largest cost of a VBPR step on ML-100K.
    """
    counts = torch.bincount(ids, minlength=n)
    uniq = counts.nonzero().squeeze(1)
    position = torch.empty(n, dtype=torch.long, device=ids.device)
    position[uniq] = torch.arange(len(uniq), device=ids.device)
    return uniq, position[ids], counts[uniq]


def counted_norm(rows: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Frobenius norm of the batch ``rows[inverse]`` from the distinct ``rows`` and how often each occurs.

    ``||rows[inverse]||^2 = sum_k counts[k] * ||rows[k]||^2``: the same value as :func:`emb_loss`'s norm of the
    gathered batch, over the distinct rows only, so neither the forward nor the backward touches a
    batch-sized copy. ``counts`` [n] gives one norm; [m, n] gives m norms (one per row of counts) from one
    pass over ``rows``.
    """
    return (counts.to(rows.dtype) @ (rows * rows).sum(1)).sqrt()


def emb_loss(*embeddings: torch.Tensor) -> torch.Tensor:
    """MMRec EmbLoss: sum of Frobenius norms (not squared) divided by the batch size."""
    total = sum(torch.linalg.vector_norm(e) for e in embeddings)
    return total / embeddings[-1].shape[0]


def l2_loss(*embeddings: torch.Tensor) -> torch.Tensor:
    """MMRec L2Loss: 0.5 * sum of squares."""
    return sum((e ** 2).sum() for e in embeddings) * 0.5
