"""Model zoo. Each module registers its class with :func:`base.register` on import."""
import importlib

from .base import (DEFAULT_CONFIGS, MODEL_REGISTRY, MULTIMODAL_ROLES, OVERALL_DEFAULTS, MultimodalConfig, Recommender,
                   UnknownModelError, build_model, check_features, check_hyper_parameters, declared_keys,
                   default_config, feature_keys, get_model_class, model_names, register, resolve_config)

# Modules imported lazily by get_model_class (a model written concurrently may be absent).
_MODEL_MODULES = ["bpr", "lightgcn", "freedom", "vbpr", "lattice", "bm3", "dgvae", "itemknncbf", "mmhcl", "cm3", "lirdrec", "rearm",
                  "..sequential.sasrec", "..sequential.gru4rec", "..sequential.fmrlrec",
                  "..ctr.din", "..ctr.qin", "..generative.tiger"]
_loaded = False


def _load_all():
    global _loaded
    if _loaded:
        return
    for m in _MODEL_MODULES:
        try:
            importlib.import_module(m if m.startswith(".") else f".{m}", __name__)
        except ModuleNotFoundError as e:
            if not str(e.name).endswith(m.lstrip(".")):
                raise
    _loaded = True


__all__ = ["DEFAULT_CONFIGS", "MODEL_REGISTRY", "MULTIMODAL_ROLES", "OVERALL_DEFAULTS", "MultimodalConfig", "Recommender",
           "UnknownModelError", "build_model", "check_features", "check_hyper_parameters", "declared_keys",
           "default_config", "feature_keys", "get_model_class", "model_names", "register", "resolve_config"]
