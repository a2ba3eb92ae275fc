"""Recommenders that consume mmfeat features: data, splits, samplers, models, trainer, evaluator.

Main API::

    from mmfeat.recommenders import from_split_frame, split_interactions, train, grid_search
    data = from_split_frame(split_interactions(interactions_df), features={"text": (ids, mat)})
    rec = train(data, "FREEDOM", {"epochs": 50}, runs_dir="runs")   # -> RunRecord

Configs are strict and typed: every key must be declared by the trainer or the model (a
:class:`TrainerConfig` subclass, ``Model.config_class``; :func:`declared_keys`), else :class:`ConfigError`
names the closest valid one; a value of the wrong type is a :class:`ConfigError` naming the key.
"""
from .config import ConfigError, TrainerConfig, param
from .data import InteractionData, align_features, from_split_frame, hash_split_frame
from .evaluation import Evaluator, metrics_from_hits
from .models import (DEFAULT_CONFIGS, MODEL_REGISTRY, Recommender, UnknownModelError, build_model, check_features,
                     check_hyper_parameters, declared_keys, default_config, feature_keys, get_model_class,
                     model_names, register, resolve_config)
from .sampler import NegativeSampler
from .splits import (DEFAULT_SPLIT_SEED, k_core, load_split, resolve_split_method, save_split,
                     split_interactions)
from .tasks import EarlyStopping
from .trainer import GridResult, RunRecord, fit, grid_search, seed_everything, train
from .unlearning import UnlearnConfig, UnlearnResult, forget_set, retain_data, unlearn

__all__ = ["ConfigError", "TrainerConfig", "param", "InteractionData", "align_features", "from_split_frame", "hash_split_frame", "Evaluator",
           "metrics_from_hits", "DEFAULT_CONFIGS", "MODEL_REGISTRY", "Recommender", "UnknownModelError",
           "build_model", "check_features", "check_hyper_parameters", "declared_keys", "default_config",
           "feature_keys", "get_model_class", "model_names", "register", "resolve_config", "NegativeSampler",
           "DEFAULT_SPLIT_SEED", "k_core", "load_split", "resolve_split_method", "save_split",
           "split_interactions", "EarlyStopping", "GridResult", "RunRecord", "fit", "grid_search",
           "seed_everything", "train", "UnlearnConfig", "UnlearnResult", "forget_set", "retain_data", "unlearn"]
