"""The one process-wide cache of loaded models: a small, thread-safe, bounded LRU.

Why it exists: building a featurizer loads its weights, and one process often builds several
featurizers on the same weights (a flow's ``title_minilm`` and ``description_minilm``; a caption
and a video description with one VLM; a test suite building the same tiny model many times).
Loading once per process saves seconds to minutes per build.

Why it is bounded, and why the bound is 4: a long-lived worker (a Prefect runner, a notebook)
that walks through many backbones must not keep every model it ever loaded alive. A manifest uses
at most three or four distinct models (the microlens demo: MiniLM, SmolLM2, CLIP), so four keeps
every model of one run resident while capping what a long session holds (four 7B VLMs in bf16 is
already ~56 GB). Evicting a model only drops the cache's reference: a featurizer that still holds
it keeps working, and the next build of that backbone loads it again.

Why not :func:`functools.lru_cache`: see :mod:`mmfeat.lru` (one build per miss, normalized keys).
The lock is held while a model loads, so concurrent builds of any model wait for one another: loads
are rare and large, and two at once would only compete for the same memory and cores.

Example:
    >>> from mmfeat.featurizers.cache import ModelCache
    >>> cache = ModelCache(maxsize=2)
    >>> cache.get_or_create(("demo", "a"), lambda: object()) is cache.get_or_create(("demo", "a"), lambda: None)
    True
"""

from __future__ import annotations

from mmfeat.lru import LRUCache

#: How many loaded models the process keeps (see the module docstring for why 4).
DEFAULT_MAXSIZE = 4


class ModelCache(LRUCache):
    """A thread-safe LRU of loaded models, keyed by a tuple such as ``(kind, path, device, ...)``
    (:class:`mmfeat.lru.LRUCache`; start a key with the kind of model so two loaders never collide).

    Args:
        maxsize: the most models kept.
    """

    def __init__(self, maxsize: int = DEFAULT_MAXSIZE) -> None:
        super().__init__(maxsize, name="model cache")


#: The process-wide model cache every featurizer module loads through.
MODELS = ModelCache()


__all__ = ["ModelCache", "MODELS", "DEFAULT_MAXSIZE"]
