"""Recommender base class (the MMRec contract), model registry and shared defaults."""
from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Callable

import torch
import torch.nn.functional as F

from ..config import ConfigError, check_keys, did_you_mean
from ..data import InteractionData

# Training/evaluation defaults shared by every model: MMRec's src/configs/overall.yaml.
OVERALL_DEFAULTS: dict = {
    "seed": 999,
    "embedding_size": 64,
    "weight_decay": 0.0,
    "epochs": 1000,
    "stopping_step": 20,
    "train_batch_size": 2048,
    "learner": "adam",
    "learning_rate": 1e-3,
    "learning_rate_scheduler": [1.0, 50],  # lr * s[0] ** (epoch / s[1]); [1.0, 50] = constant
    "eval_step": 1,
    "topk": [5, 10, 20, 50],
    "metrics": ["recall", "ndcg", "precision", "map"],
    "valid_metric": "recall@20",
    "eval_batch_size": 4096,
    "clip_grad_norm": None,
    # ours, not MMRec's:
    "device": None,  # None: cuda when available, else cpu
    "early_stopping": True,  # False: train exactly `epochs` epochs, report test at the last one (no selection)
}

# The item-feature roles of the multimodal models, in MMRec order (t_feat, v_feat). A model reads role r
# from data.item_features[config[f"{r}_feature"]] (None = do not use that role).
MULTIMODAL_ROLES: tuple[str, ...] = ("text", "image")

MODEL_REGISTRY: dict[str, type["Recommender"]] = {}


def register(name: str) -> Callable[[type], type]:
    """Class decorator: ``@register("lightgcn")`` makes the model buildable by name (case-insensitive)."""
    def deco(cls):
        key = name.lower()
        if key in MODEL_REGISTRY and MODEL_REGISTRY[key] is not cls:
            raise ValueError(f"model {name!r} registered twice")
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
    """Every config key the trainer or model ``name`` reads: OVERALL_DEFAULTS + its defaults + its grid."""
    cls = get_model_class(name)
    return set(OVERALL_DEFAULTS) | set(cls.defaults) | set(cls.grid)


def check_hyper_parameters(name: str, keys: Iterable[str], where: str = "config") -> None:
    """Raise :class:`ConfigError` when a key of ``keys`` is not declared for ``name`` (closest key named)."""
    check_keys(keys, declared_keys(name), owner=get_model_class(name).model_name, where=where)


def default_config(name: str) -> dict:
    """OVERALL_DEFAULTS overlaid with the model's own ``defaults`` (MMRec overall.yaml + model yaml)."""
    cls = get_model_class(name)
    cfg = copy.deepcopy(OVERALL_DEFAULTS)
    cfg.update(copy.deepcopy(cls.defaults))
    return cfg


def resolve_config(name: str, config: Mapping | None = None) -> dict:
    """Defaults of ``name`` overlaid with ``config``, whose keys must all be declared.

    Raises:
        ConfigError: a key of ``config`` that neither the trainer nor the model reads.
    """
    config = dict(config or {})
    check_hyper_parameters(name, config)
    cfg = default_config(name)
    cfg.update(config)
    return cfg


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

    ``defaults``: the model's hyper-parameter defaults (MMRec's src/configs/model/<NAME>.yaml, single
    values; the yaml's grid lists live in ``grid``). ``modality_roles``: the item-feature roles it
    consumes (:data:`MULTIMODAL_ROLES` for the multimodal models, none for CF-only ones). Together they
    declare every key a config may set (:func:`declared_keys`). ``config`` is a plain dict; a missing key
    raises KeyError via :meth:`hp`, never a silent ``None``.
    """

    defaults: dict = {}
    grid: dict = {}  # MMRec's hyper-parameter search space for this model (name -> list)
    modality_roles: tuple[str, ...] = ()  # item-feature roles read via config["<role>_feature"]
    model_name: str = "base"

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

    def full_sort_predict(self, users: torch.Tensor) -> torch.Tensor:
        """Scores [len(users), n_items] for every item (the trainer masks train items)."""
        raise NotImplementedError

    def prepare_eval(self) -> None:
        """Called once before an evaluation pass (models may cache propagated embeddings here)."""

    def end_eval(self) -> None:
        """Called after an evaluation pass (drop caches made by :meth:`prepare_eval`)."""


# ---------------------------------------------------------------------------- shared losses
def bpr_loss(pos_scores: torch.Tensor, neg_scores: torch.Tensor) -> torch.Tensor:
    """MMRec BPRLoss: -mean(log(1e-10 + sigmoid(pos - neg)))."""
    return -torch.log(1e-10 + torch.sigmoid(pos_scores - neg_scores)).mean()


def bpr_logsigmoid(pos_scores: torch.Tensor, neg_scores: torch.Tensor) -> torch.Tensor:
    """-mean(logsigmoid(pos - neg)) (FREEDOM/BM3 style)."""
    return -F.logsigmoid(pos_scores - neg_scores).mean()


def emb_loss(*embeddings: torch.Tensor) -> torch.Tensor:
    """MMRec EmbLoss: sum of Frobenius norms (not squared) divided by the batch size."""
    total = sum(torch.linalg.vector_norm(e) for e in embeddings)
    return total / embeddings[-1].shape[0]


def l2_loss(*embeddings: torch.Tensor) -> torch.Tensor:
    """MMRec L2Loss: 0.5 * sum of squares."""
    return sum((e ** 2).sum() for e in embeddings) * 0.5
