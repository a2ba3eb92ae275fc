"""mmfeat: an offline multimodal feature factory for recommender systems, and the recommenders
that consume it.

The public API, for notebooks and scripts (the CLI ``mmfeat`` and the Prefect deployments run the
same code):

- :class:`FeatureStore` -- read versions (``read_matrix``, ``read_table``), verify, tag, list.
- :func:`load_manifest` -- read and validate a manifest (a name in the shipped manifests, or a path).
- :func:`extract` -- build (or find) the feature versions of a manifest, in this process.
- :func:`train` -- train and evaluate a recommender on store versions, in this process.

Names resolve on first use, so ``import mmfeat`` is cheap and changes nothing in the process.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__all__ = ["FeatureStore", "load_manifest", "extract", "train", "StoreError", "ManifestError"]

_LAZY = {
    "FeatureStore": "mmfeat.pipelines.store.feature_store",
    "StoreError": "mmfeat.pipelines.store.feature_store",
    "load_manifest": "mmfeat.pipelines.manifest",
    "ManifestError": "mmfeat.pipelines.manifest",
    "extract": "mmfeat.api",
    "train": "mmfeat.api",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mmfeat' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
