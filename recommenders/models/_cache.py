"""The item-item kNN graph cache of the model zoo, built on the project's one LRU (:mod:`mmfeat.lru`).

Why: the frozen kNN graphs of FREEDOM, LATTICE and DGVAE depend only on the features' content and ``k``,
never on hyper-parameters, so a grid search (or the two arms of ``--versus``) builds each graph once. Before,
FREEDOM/DGVAE and LATTICE each kept their own unbounded module-level dict plus their own disk code; a
long-lived process (a Prefect worker training many versions) grew without limit. Now there is one LRU of
``maxsize`` entries (a graph is O(n_items * k), ~12 MB for 100k items at k = 10) and one disk format.
"""
from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

import torch

from mmfeat.lru import LRUCache

log = logging.getLogger(__name__)

Graph = torch.Tensor | tuple[torch.Tensor, ...]


class KnnGraphCache(LRUCache[Graph]):
    """kNN graphs (a sparse tensor, or a tuple of edge-list tensors) by key, in memory and, per call, on disk.

    On disk a graph is ``<cache_dir>/<key>.pt`` (``torch.save`` of the tensor, or of the tuple as a list),
    written atomically (temporary file, then rename), read with ``weights_only=True``.
    """

    def get_or_build(self, key: str, build: Callable[[], Graph],
                     cache_dir: str | os.PathLike | None = None) -> Graph:
        """The graph of ``key``: from memory, else from ``cache_dir``, else ``build()`` (then saved there)."""
        hit = self.get(key)
        if hit is not None:
            return hit
        path = Path(cache_dir) / f"{key}.pt" if cache_dir else None
        if path is not None and path.exists():
            loaded = torch.load(path, weights_only=True)
            graph = tuple(loaded) if isinstance(loaded, list) else loaded
            log.debug("%s: read %s", self.name, path)
        else:
            graph = build()
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(f".tmp{os.getpid()}-{threading.get_ident()}")
                torch.save(list(graph) if isinstance(graph, tuple) else graph, tmp)
                os.replace(tmp, path)
        self.put(key, graph)
        return graph


#: The process's kNN graphs (FREEDOM, LATTICE, DGVAE): a few datasets x modalities x k at a time.
KNN_GRAPHS = KnnGraphCache(maxsize=16, name="knn-graphs")
