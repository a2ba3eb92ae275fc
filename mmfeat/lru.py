"""The project's one cache idiom: a small, thread-safe, bounded LRU.

Used for loaded models (:data:`mmfeat.featurizers.cache.MODELS`), kNN graphs and DGVAE's word
vocabularies (:mod:`mmfeat.recommenders.models._cache`): everything a long-lived process (a Prefect
runner, a notebook) would otherwise keep forever in a module-level dict. It lives at the package
root because both ``featurizers`` and ``recommenders`` use it and neither may import the other.

A miss builds the value while holding the (re-entrant) lock, so two threads asking for the same
missing key build it once -- for a model that is one copy in memory, not two -- and a builder may
itself use the cache. :func:`functools.lru_cache` cannot promise that, and its keys would be the raw
call arguments rather than normalized ones (resolved paths, the default device).

Example:
    >>> from mmfeat.lru import LRUCache
    >>> cache = LRUCache(maxsize=1, name="demo")
    >>> cache.get_or_create("a", lambda: 1), cache.get_or_create("b", lambda: 2), "a" in cache
    (1, 2, False)
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from typing import Callable, Generic, Hashable, TypeVar

log = logging.getLogger(__name__)

V = TypeVar("V")


class LRUCache(Generic[V]):
    """At most ``maxsize`` values; the least recently used one is dropped (logged) beyond that.

    Args:
        maxsize: the most entries kept (>= 1).
        name: what the cache holds, for log lines.

    Raises:
        ValueError: ``maxsize`` < 1.
    """

    def __init__(self, maxsize: int, name: str = "cache") -> None:
        if maxsize < 1:
            raise ValueError(f"{name}: maxsize must be >= 1, got {maxsize}")
        self.maxsize, self.name = int(maxsize), name
        self._items: OrderedDict[Hashable, V] = OrderedDict()
        self._lock = threading.RLock()

    def get(self, key: Hashable) -> V | None:
        """The value of ``key`` (now the most recently used), or None."""
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key: Hashable, value: V) -> None:
        """Store ``value`` as the most recently used entry, dropping the oldest beyond ``maxsize``."""
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.maxsize:
                old, _ = self._items.popitem(last=False)
                log.info("%s full (%d): dropped the least recently used entry %s", self.name, self.maxsize, old)

    def get_or_create(self, key: Hashable, factory: Callable[[], V]) -> V:
        """The cached value of ``key``, else ``factory()`` stored under it (called once per miss;
        an exception propagates and nothing is stored)."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            value = factory()
            self.put(key, value)
            return value

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._items

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def keys(self) -> list[Hashable]:
        """The keys, least recently used first (for diagnostics and benchmarks)."""
        with self._lock:
            return list(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
